"""A faithful simulation of the Determined 0.37 master's side of a custom search (no master).

No Determined master can run here, so the adapter is driven through this model of what the
master does, written from Determined's own sources:

* ``master/pkg/searcher/custom_searcher_events_queue.go``: events get ids 1, 2, 3, ... as they
  are enqueued; ``GetSearcherEvents`` returns every event not yet acknowledged (long poll);
  ``PostSearcherOperations`` removes events up to ``triggeredByEvent.id`` and fails when that
  id is not queued.
* ``master/pkg/searcher/custom_search.go``: which event each trial transition enqueues
  (``initialOperations`` at start, ``trialCreated``, ``validationCompleted`` carrying the
  metric the trial passed to ``op.report_completed`` and the op's length, ``trialExitedEarly``,
  ``trialClosed``, ``trialProgress``).
* ``master/pkg/searcher/searcher.go``: a ValidateAfter completes once; a trial exits once;
  ``Create`` operations are counted and the experiment shuts itself down when every requested
  trial is closed (``TrialsRequested == len(TrialsClosed)``).
* ``master/internal/api_experiment.go`` (``GetSearcherEvents``): while the experiment is not
  active the answer is a single ``experimentInactive`` event with id -1 (events still queued
  are not delivered); Determined's runner keeps polling while it is paused.
* ``master/internal/experiment.go``: a trial that exits early is reported as exited, and then,
  when its task stops, as closed; operations are recorded before they are processed.
* The metric travels as a protobuf ``Value`` (``structpb.NewValue``): every number comes back as
  a float and non-finite floats as the strings ``"NaN"``/``"Infinity"``/``"-Infinity"``.
* A trial's process ends when it has no pending operation; a later ValidateAfter starts a new
  process, which must resume from its checkpoint (``start_length`` passed to the train
  function is the length of that checkpoint).

The client side is Determined's own code: ``RemoteSearchRunner.run`` and
``SearchRunner.run_experiment`` (through hwnas's subclass), reached through
``SimulatedSearchRunner``, which only replaces the two REST calls (events, operations) and the
SDK calls that create the experiment and hand out the session.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from unittest.mock import patch

import numpy as np
from determined import searcher as det_searcher
from determined.common.api import bindings
from determined.experimental import client as det_client

from hwnas.driver.determined.runner import HwnasSearchRunner

#: train(hparams, start_length, length) -> metrics dict; raises TrialFailure to fail.
TrainFn = Callable[[dict[str, Any], int, int], dict[str, Any]]

EXIT_REASONS = {
    "errored": bindings.v1TrialExitedEarlyExitedReason.UNSPECIFIED,
    "invalid_hp": bindings.v1TrialExitedEarlyExitedReason.INVALID_HP,
    "user_requested_stop": bindings.v1TrialExitedEarlyExitedReason.USER_REQUESTED_STOP,
    "user_canceled": bindings.v1TrialExitedEarlyExitedReason.USER_CANCELED,
}


class TrialFailure(Exception):
    """Raised by a train function: ``kind`` is ``"errored"`` or ``"invalid_hp"``."""

    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(message or kind)
        self.kind = kind


class ProtocolError(AssertionError):
    """The searcher did something the master would reject or that breaks the protocol."""


class SearchStalled(AssertionError):
    """No event is queued and no trial has work: the searcher would wait forever."""


class SimulatedCrash(RuntimeError):
    """Injected crash of the searcher process."""


def to_struct_value(value: Any) -> Any:
    """What ``structpb.NewValue`` + protojson make of a JSON-ish Python value."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        v = float(value)
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    if isinstance(value, dict):
        return {str(k): to_struct_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_struct_value(v) for v in value]
    raise TypeError(f"illegal type for metrics: {type(value).__name__}")


@dataclass
class SimTrial:
    """The master's view of one trial."""

    request_id: str
    hparams: dict[str, Any]
    completed_length: int = 0
    pending_length: int | None = None
    close_requested: bool = False
    closed: bool = False
    exited: bool = False
    process_running: bool = False
    process_starts: int = 0
    restarts: int = 0
    validations: list[tuple[int, dict[str, Any]]] = field(default_factory=list)


class SimulatedMaster:
    """The master's custom-searcher bookkeeping for one multi-trial experiment."""

    def __init__(
        self,
        train: TrainFn,
        *,
        experiment_id: int = 7,
        max_restarts: int = 0,
        seed: int = 0,
    ) -> None:
        self.train = train
        self.experiment_id = experiment_id
        self.max_restarts = max_restarts
        self.restarts_used = 0
        self.rng = np.random.default_rng(seed)
        self.queue: list[bindings.v1SearcherEvent] = []
        self.event_count = 0
        self.trials: dict[str, SimTrial] = {}
        self.trials_requested = 0
        self.failures: set[str] = set()
        self.completed_ops: set[tuple[str, int]] = set()
        self.state = bindings.experimentv1State.ACTIVE
        self.progress: list[float] = []
        self.ignored_after_shutdown: list[dict[str, Any]] = []
        self.posts = 0
        self.paused_polls = 0
        self._enqueue(initialOperations=bindings.v1InitialOperations())

    # -- the queue (custom_searcher_events_queue.go) ------------------------------------------
    def _enqueue(self, **event: Any) -> None:
        self.event_count += 1
        self.queue.append(bindings.v1SearcherEvent(id=self.event_count, **event))

    def get_events(self) -> list[bindings.v1SearcherEvent]:
        """``GET /experiments/{id}/searcher_events``: long poll until something is queued.

        An experiment that is not active (paused, completed, errored, canceled) answers with
        one synthesised ``experimentInactive`` event of id -1 and nothing of the queue
        (``GetSearcherEvents`` in master/internal/api_experiment.go)."""
        if self.paused_polls > 0:
            self.paused_polls -= 1
            return [self._inactive(bindings.experimentv1State.PAUSED)]
        while self.active and not self.queue:
            if not self._step():
                raise SearchStalled(
                    "no searcher event is queued and no trial has a pending operation: "
                    f"{self.describe()}"
                )
        if not self.active:
            return [self._inactive(self.state)]
        # Through JSON, as the REST client receives them.
        return [bindings.v1SearcherEvent.from_json(e.to_json()) for e in self.queue]

    @staticmethod
    def _inactive(state: bindings.experimentv1State) -> bindings.v1SearcherEvent:
        inactive = bindings.v1ExperimentInactive(experimentState=state)
        return bindings.v1SearcherEvent(id=-1, experimentInactive=inactive)

    def pause_for(self, polls: int) -> None:
        """A user pauses the experiment; it is activated again after ``polls`` event polls."""
        self.paused_polls = polls

    def post_operations(self, body: dict[str, Any]) -> None:
        """``POST /experiments/{id}/searcher_operations`` with the request's JSON body."""
        request = bindings.v1PostSearcherOperationsRequest.from_json(body)
        self.posts += 1
        event_id = request.triggeredByEvent.id
        ids = [e.id for e in self.queue]
        if event_id not in ids:
            raise ProtocolError(f"event {event_id} not found in queue {ids}")
        self.queue = self.queue[ids.index(event_id) + 1 :]
        operations = request.searcherOperations or []
        if not self.active:
            self.ignored_after_shutdown.extend(op.to_json(omit_unset=True) for op in operations)
            return
        self.trials_requested += sum(1 for op in operations if op.createTrial is not None)
        for op in operations:
            self._process(op)

    # -- operations (experiment.go processOperations) ------------------------------------------
    @property
    def active(self) -> bool:
        return self.state == bindings.experimentv1State.ACTIVE

    def _process(self, op: bindings.v1SearcherOperation) -> None:
        if not self.active:
            self.ignored_after_shutdown.append(op.to_json(omit_unset=True))
            return
        if op.createTrial is not None:
            rid = op.createTrial.requestId
            if rid in self.trials:
                raise ProtocolError(f"Create for existing request id {rid}")
            hparams = json.loads(op.createTrial.hyperparams)
            self.trials[rid] = SimTrial(rid, hparams)
            self._enqueue(trialCreated=bindings.v1TrialCreated(requestId=rid))
        elif op.trialOperation is not None:
            va = op.trialOperation.validateAfter
            trial = self._trial(va.requestId, "ValidateAfter")
            length = int(va.length)
            if trial.closed or trial.close_requested:
                raise ProtocolError(f"ValidateAfter({length}) for closed trial {trial.request_id}")
            if trial.pending_length is not None:
                raise ProtocolError(
                    f"ValidateAfter({length}) while ValidateAfter({trial.pending_length}) "
                    f"is pending for {trial.request_id}"
                )
            if length <= trial.completed_length:
                raise ProtocolError(
                    f"ValidateAfter({length}) is not beyond the {trial.completed_length} "
                    f"units {trial.request_id} already trained (lengths are cumulative)"
                )
            trial.pending_length = length
        elif op.closeTrial is not None:
            trial = self._trial(op.closeTrial.requestId, "Close")
            if trial.closed:
                return  # the master ignores closing a closed trial
            trial.close_requested = True
            if trial.pending_length is None:
                self._close(trial)
        elif op.setSearcherProgress is not None:
            p = float(op.setSearcherProgress.progress)
            if not 0.0 <= p <= 1.0:
                raise ProtocolError(f"progress {p} outside [0, 1]")
            self.progress.append(p)
        elif op.shutDown is not None:
            self._shutdown(failure=bool(op.shutDown.failure), cancel=bool(op.shutDown.cancel))
        else:
            raise ProtocolError(f"unknown operation {op.to_json()}")

    def _trial(self, rid: str, what: str) -> SimTrial:
        try:
            return self.trials[rid]
        except KeyError:
            raise ProtocolError(f"{what} for unknown request id {rid}") from None

    def _close(self, trial: SimTrial) -> None:
        trial.closed = True
        trial.process_running = False
        trial.pending_length = None
        self._enqueue(trialClosed=bindings.v1TrialClosed(requestId=trial.request_id))
        closed = sum(1 for t in self.trials.values() if t.closed)
        if self.trials_requested == closed:  # searcher.go TrialClosed
            self._shutdown(failure=len(self.failures) >= self.trials_requested, cancel=False)

    def _shutdown(self, *, failure: bool, cancel: bool) -> None:
        if cancel:
            state = bindings.experimentv1State.CANCELED
        elif failure:
            state = bindings.experimentv1State.ERROR
        else:
            state = bindings.experimentv1State.COMPLETED
        self.state = state
        for t in self.trials.values():
            t.process_running = False

    def _exit_early(self, trial: SimTrial, reason: str) -> None:
        if trial.exited:
            raise ProtocolError(f"trial {trial.request_id} reported an exit twice")
        trial.exited = True
        if reason == "errored":
            self.failures.add(trial.request_id)
        self._enqueue(
            trialExitedEarly=bindings.v1TrialExitedEarly(
                requestId=trial.request_id, exitedReason=EXIT_REASONS[reason]
            )
        )
        self._close(trial)

    # -- trials doing work ---------------------------------------------------------------------
    def runnable(self) -> list[SimTrial]:
        return [t for t in self.trials.values() if t.pending_length is not None and not t.closed]

    def _step(self) -> bool:
        """Let one trial (chosen by the seeded rng) finish its pending operation."""
        if not self.active:
            return False
        runnable = self.runnable()
        if not runnable:
            return False
        trial = runnable[int(self.rng.integers(len(runnable)))]
        assert trial.pending_length is not None
        length = trial.pending_length
        if not trial.process_running:
            trial.process_starts += 1
            trial.process_running = True
        try:
            metrics = self.train(dict(trial.hparams), trial.completed_length, length)
        except TrialFailure as failure:
            trial.process_running = False
            if failure.kind == "errored" and self.restarts_used < self.max_restarts:
                self.restarts_used += 1
                trial.restarts += 1
                return True  # restarted from its checkpoint; tries again later
            self._exit_early(trial, failure.kind)
            return True
        # op.report_progress(epoch) before op.report_completed (trials/train.py does both).
        self._enqueue(
            trialProgress=bindings.v1TrialProgress(
                requestId=trial.request_id, partialUnits=float(length)
            )
        )
        key = (trial.request_id, length)
        if key in self.completed_ops:
            raise ProtocolError(f"operation {key} was already completed")
        self.completed_ops.add(key)
        trial.completed_length = length
        trial.pending_length = None
        trial.validations.append((length, metrics))
        # The process asks for its next operation; the searcher has not answered yet, so it
        # exits (a later ValidateAfter starts it again from its checkpoint).
        trial.process_running = False
        self._enqueue(
            validationCompleted=bindings.v1ValidationCompleted(
                requestId=trial.request_id,
                metric=to_struct_value(metrics),
                validateAfterLength=str(length),
            )
        )
        if trial.close_requested:
            self._close(trial)
        return True

    def cancel_trial(self, request_id: str, reason: str = "user_canceled") -> None:
        """A user kills a trial from the CLI / web UI (or the trial stops itself)."""
        trial = self._trial(request_id, "cancel")
        trial.process_running = False
        trial.pending_length = None
        self._exit_early(trial, reason)

    # -- reading the outcome ---------------------------------------------------------------
    def describe(self) -> str:
        parts = [
            f"{rid[:8]}: len={t.completed_length} pending={t.pending_length} closed={t.closed}"
            for rid, t in self.trials.items()
        ]
        return f"state={self.state.value}; trials: " + "; ".join(parts)


class SimulatedSearchRunner(HwnasSearchRunner):
    """hwnas's runner with the REST calls routed to a ``SimulatedMaster``.

    ``crash_after_posts=n`` raises ``SimulatedCrash`` when the n-th batch of operations is
    about to be posted: the state for that event is already checkpointed, the master has not
    seen the operations (the window Determined's resubmission logic exists for).
    """

    def __init__(
        self,
        master: SimulatedMaster,
        *args: Any,
        crash_after_posts: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.master = master
        self.crash_after_posts = crash_after_posts
        self.posted = 0
        self.created_experiments: list[tuple[Any, Any]] = []

    def run_simulated(self, exp_config: dict[str, Any] | None = None, model_dir: str = ".") -> int:
        """Determined's own ``RemoteSearchRunner.run`` (create the experiment or resume from
        ``latest_checkpoint``), with the SDK's three calls answered here instead of a master."""

        def create_experiment(config: Any, context: Any, includes: Any = None) -> Any:
            self.created_experiments.append((config, context))
            return SimpleNamespace(id=self.master.experiment_id)

        with (
            patch.object(det_client, "create_experiment", create_experiment),
            patch.object(det_client, "_require_singleton", lambda fn: fn),
            patch.object(det_client, "_determined", SimpleNamespace(_session=None)),
        ):
            return self.run(exp_config or {"searcher": {"name": "custom"}}, model_dir=model_dir)

    def run_experiment(
        self,
        experiment_id: int,
        session: Any,
        prior_operations: list[det_searcher.Operation] | None,
        sleep_time: float = 1.0,
    ) -> None:
        # Determined sleeps a second between long polls; the simulated master never blocks.
        super().run_experiment(experiment_id, session, prior_operations, sleep_time=0.0)

    def get_events(self, session: Any, experiment_id: int) -> list[bindings.v1SearcherEvent]:
        assert experiment_id == self.master.experiment_id
        return self.master.get_events()

    def post_operations(
        self,
        session: Any,
        experiment_id: int,
        event: bindings.v1SearcherEvent,
        operations: list[det_searcher.Operation],
    ) -> None:
        if self.crash_after_posts is not None and self.posted + 1 >= self.crash_after_posts:
            raise SimulatedCrash(f"searcher crashed before posting operations for event {event.id}")
        body = bindings.v1PostSearcherOperationsRequest(
            experimentId=self.state.experiment_id,
            searcherOperations=[op._to_searcher_operation() for op in operations],
            triggeredByEvent=event,
        )
        self.master.post_operations(body.to_json())
        self.posted += 1


__all__ = [
    "ProtocolError",
    "SearchStalled",
    "SimTrial",
    "SimulatedCrash",
    "SimulatedMaster",
    "SimulatedSearchRunner",
    "TrialFailure",
    "to_struct_value",
]
