"""A simulation of the Determined 0.37 master's side of a custom search (no master runs here).

The adapter and runner are driven through this model of what the master does, written from
Determined's Go sources at tag ``0.37.0`` (``git show 0.37.0:<path>`` in
github.com/determined-ai/determined); each behaviour's docstring names the file and function it
follows. The trials run the real trial entrypoint, ``hwnas.trials.train.run_trial``, through
Core API contexts wired to this master (``SimSearcherContext``), with training replaced by a
``trial_factory`` (``tests/fake_trials.py``); what a trial reports is therefore exactly what
``trials/train.py`` reports.

The client side is Determined's own code: ``RemoteSearchRunner.run`` and
``SearchRunner.run_experiment`` (through hwnas's subclass), reached through
``SimulatedSearchRunner``, which only replaces the two REST calls (events, operations) and the
SDK calls that create the experiment and hand out the session.

Time: the master does nothing while the searcher thinks. When the searcher asks for events and
none is queued, the master lets one thing happen (``_step``): a trial's finished process is
reaped (``trial.go`` ``exit`` runs its callback in a goroutine, so ``trialClosed`` arrives after
the batch that caused it), or one trial runs its pending operation to the end. When nothing can
happen and no event is queued, ``SearchStalled`` is raised: a real master would leave the
searcher waiting forever.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import patch

import determined as det
import numpy as np
from determined import core
from determined import searcher as det_searcher
from determined.common.api import bindings
from determined.experimental import client as det_client

from hwnas.driver.determined.runner import HwnasSearchRunner
from hwnas.trials.train import run_trial

S = bindings.experimentv1State
Reason = bindings.v1TrialExitedEarlyExitedReason

#: ``model.StoppingToTerminalStates`` (master/pkg/model/experiment.go).
STOPPING_TO_TERMINAL = {
    S.STOPPING_KILLED: S.CANCELED,
    S.STOPPING_CANCELED: S.CANCELED,
    S.STOPPING_COMPLETED: S.COMPLETED,
    S.STOPPING_ERROR: S.ERROR,
}
#: ``isActiveExperimentState`` (master/internal/api_experiment.go): only these poll for events.
ACTIVE_STATES = {S.ACTIVE, S.PULLING, S.QUEUED, S.RUNNING, S.STARTING}
#: What ``trial.transition`` passes to ``exit`` for a terminal trial state (trial.go), as the
#: searcher sees it (``ExitedReason.ToSearcherProto``, model/experiment.go): ErrorState ->
#: Errored -> UNSPECIFIED; CanceledState -> UserCanceled -> USER_CANCELED; CompletedState ->
#: no reason (``trialClosed`` only).
EXIT_REASON_OF_TERMINAL = {S.ERROR: Reason.UNSPECIFIED, S.CANCELED: Reason.USER_CANCELED}
#: ``InvalidHPKillDelay`` (trial.go): a trial alive this long after reporting InvalidHP is killed.
INVALID_HP_KILL_DELAY_S = 10.0

#: main(core_context, hparams, latest_checkpoint): what the trial's process runs.
TrialMain = Callable[[core.Context, dict[str, Any], str | None], None]


class ProtocolError(AssertionError):
    """The searcher did something the master rejects, or that can only hang the search."""


class SearchStalled(AssertionError):
    """No event is queued and nothing can happen: the searcher would wait forever."""


class SimulatedCrash(RuntimeError):
    """Injected crash of the searcher process."""


def to_struct_value(value: Any) -> Any:
    """What ``structpb.NewValue`` + protojson make of a JSON-ish Python value: numbers become
    floats, non-finite floats the strings ``"NaN"``/``"Infinity"``/``"-Infinity"``."""
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
    """One trial: ``experiment.TrialSearcherState`` (Create, Op, Complete, Closed) plus what
    ``trial.go``'s ``trial`` keeps (state, restarts, allocation, latest checkpoint)."""

    request_id: str
    hparams: dict[str, Any]
    op_length: int | None = None  # state.Op.Length
    complete: bool = True  # state.Complete (a Create starts complete: no op yet)
    closed: bool = False  # state.Closed (the searcher sent Close)
    state: bindings.experimentv1State = S.ACTIVE  # the trial's own state (trialv1 mirrors it)
    completed_length: int = 0
    restarts: int = 0
    process_starts: int = 0
    latest_checkpoint: str | None = None
    exited: bool = False  # exit() ran: the trial's callback is queued or done
    gone: bool = False  # trialClosed delivered to the experiment (deleted from e.trials)
    validations: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    progress_reports: list[float] = field(default_factory=list)

    @property
    def runnable(self) -> bool:
        """``maybeAllocateTask``: an active trial whose operation is not complete."""
        return self.state == S.ACTIVE and not self.complete and not self.exited


class SimOperation(core.DummySearcherOperation):
    """``core.SearcherOperation`` whose two reports reach the simulated master as its REST
    calls would (``/trials/{id}/progress`` without ``is_raw``;
    ``/trials/{id}/searcher/completed_operation``)."""

    def __init__(self, master: SimulatedMaster, trial: SimTrial, length: int) -> None:
        super().__init__(length, is_chief=True)
        self.master, self.trial = master, trial

    def report_progress(self, length: float) -> None:
        super().report_progress(length)
        self.master._trial_progress(self.trial, float(length))

    def report_completed(self, searcher_metric: Any) -> None:
        super().report_completed(searcher_metric)
        wire = json.loads(det.util.json_encode(searcher_metric))  # the trial's JSON body
        self.master._complete_operation(self.trial, self.length, wire)


class SimSearcherContext(core.DummySearcherContext):
    """``core.SearcherContext.operations`` (harness/determined/core/_searcher.py) against the
    simulated master: ask for the current operation until it is complete, then acknowledge
    being out of operations (``ack_preemption``) and stop."""

    def __init__(self, dist: core.DistributedContext, master: SimulatedMaster, trial: SimTrial):
        super().__init__(dist)
        self.master, self.trial = master, trial
        self.acked = False

    def operations(self, *args: Any, **kwargs: Any) -> Iterator[core.SearcherOperation]:
        while True:
            # GetCurrentTrialSearcherOperation (api_trials.go): the op, and whether it is done.
            if self.trial.complete or self.trial.op_length is None:
                self.acknowledge_out_of_ops()
                return
            op = SimOperation(self.master, self.trial, self.trial.op_length)
            yield op
            if not op._completed:
                raise RuntimeError("you must call op.report_completed() on each operation")

    def acknowledge_out_of_ops(self) -> None:
        self.acked = True


class SimTrainContext(core.DummyTrainContext):
    """Records the trial's metric reports and its early-exit report."""

    def __init__(self) -> None:
        super().__init__()
        self.early_exit: Any = None

    def _report_trial_metrics(self, group: str, steps_completed: int, metrics: dict, *a) -> None:
        if group == "validation":
            self._get_serializable_metrics(metrics)  # the real context refuses None values

    def report_early_exit(self, reason: core.EarlyExitReason) -> None:
        # POST /trials/{id}/early_exit -> experiment.go UserInitiatedEarlyTrialExit ->
        # trial.go SetUserInitiatedEarlyExit: only records the reason and arms the kill timer.
        self.early_exit = reason


class SimCheckpointContext(core.DummyCheckpointContext):
    """Checkpoints in a directory; the master remembers each trial's latest
    (``db.LatestCheckpointForTrial``, handed to the next process as ``latest_checkpoint``)."""

    def __init__(self, dist: Any, storage_manager: Any, trial: SimTrial) -> None:
        super().__init__(dist, storage_manager)
        self.trial = trial

    def _report_checkpoint(self, storage_id: str, resources: Any = None, metadata: Any = None):
        super()._report_checkpoint(storage_id, resources, metadata)
        self.trial.latest_checkpoint = storage_id


class SimulatedMaster:
    """The 0.37 master's side of one custom-search experiment; see the module docstring.

    ``trial_factory`` builds each trial process's training state (``FakeTrials``);
    ``trial_main`` replaces the whole process (default: ``hwnas.trials.train.run_trial``).
    ``max_restarts`` is the experiment config's, counted per trial. ``fail_create(hparams)``
    makes the master fail to create that trial (``newTrial`` failing on the DB or the resource
    manager)."""

    def __init__(
        self,
        trial_factory: Callable[[dict[str, Any]], Any],
        *,
        experiment_id: int = 7,
        max_restarts: int = 0,
        seed: int = 0,
        storage: str | Path | None = None,
        trial_main: TrialMain | None = None,
        fail_create: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self.trial_factory = trial_factory
        self.trial_main = trial_main or (
            lambda ctx, hp, latest: run_trial(ctx, hp, latest, trial_factory=self.trial_factory)
        )
        self.fail_create = fail_create
        self.experiment_id = experiment_id
        self.max_restarts = max_restarts
        self.rng = np.random.default_rng(seed)
        if storage is None:
            storage = tempfile.mkdtemp(prefix="hwnas-sim-")
            weakref.finalize(self, shutil.rmtree, storage, True)
        self.storage = Path(storage)
        self.queue: list[bindings.v1SearcherEvent] = []
        self.event_count = 0
        self.trials: dict[str, SimTrial] = {}  # every trial ever created
        self.searcher_state: set[str] = set()  # e.TrialSearcherState keys: every Create seen
        self.failed_creates: list[str] = []
        self.to_reap: list[tuple[SimTrial, Any]] = []  # exit callbacks not yet run
        self.state = S.ACTIVE
        self.state_history: list[bindings.experimentv1State] = [S.ACTIVE]
        self.progress: list[float] = []
        self.ignored_ops: list[dict[str, Any]] = []
        self.posts = 0
        self.paused_polls = 0
        # custom_search.go initialOperations: the first event of every custom search.
        self._enqueue(initialOperations=bindings.v1InitialOperations())

    # -- the event queue (custom_searcher_events_queue.go) -----------------------------------
    def _enqueue(self, **event: Any) -> None:
        """``SearcherEventQueue.Enqueue``: ids 1, 2, 3, ... in order."""
        self.event_count += 1
        self.queue.append(bindings.v1SearcherEvent(id=self.event_count, **event))

    def get_events(self) -> list[bindings.v1SearcherEvent]:
        """``GET /experiments/{id}/searcher_events`` (api_experiment.go ``GetSearcherEvents``).

        An experiment that is not active (paused, every STOPPING_* state, terminal) answers with
        one synthesised ``experimentInactive`` event of id -1 carrying its exact state, and
        nothing of the queue; an active one long-polls until something is queued and returns
        every unacknowledged event."""
        if self.paused_polls > 0:
            self.paused_polls -= 1
            return [self._inactive(S.PAUSED)]
        while self.state in ACTIVE_STATES and not self.queue:
            if not self._step():
                raise SearchStalled(
                    "no searcher event is queued and nothing can happen; a real master leaves "
                    f"the searcher waiting forever (did it forget Shutdown?): {self.describe()}"
                )
        if self.state not in ACTIVE_STATES:
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
        """``POST /experiments/{id}/searcher_operations`` (experiment.go
        ``PerformSearcherOperations``): remove events up to ``triggeredByEvent.id`` (an error
        when it is not queued), then ``processOperations``."""
        if self.state not in ACTIVE_STATES and self.state not in STOPPING_TO_TERMINAL:
            # stop() unregistered it; api_experiment.go PostSearcherOperations: NotFoundErrs.
            raise ProtocolError(f"experiment {self.experiment_id} not found (it has ended)")
        request = bindings.v1PostSearcherOperationsRequest.from_json(body)
        self.posts += 1
        event_id = request.triggeredByEvent.id
        ids = [e.id for e in self.queue]
        if event_id not in ids:
            raise ProtocolError(f"event {event_id} not found in queue {ids}")
        self.queue = self.queue[ids.index(event_id) + 1 :]
        self._process_operations(request.searcherOperations or [])

    # -- experiment.go processOperations --------------------------------------------------------
    def _process_operations(self, operations: list[bindings.v1SearcherOperation]) -> None:
        """In a stopping state only an all-Shutdown batch is processed; trials whose searcher
        state changed are patched after the whole batch (``updatedTrials``)."""
        if self.state in STOPPING_TO_TERMINAL and not all(op.shutDown for op in operations):
            self.ignored_ops.extend(op.to_json(omit_unset=True) for op in operations)
            return
        updated: list[SimTrial] = []
        for op in operations:
            if op.createTrial is not None:
                self._create(op.createTrial)
            elif op.trialOperation is not None:
                trial = self._known(op, op.trialOperation.validateAfter.requestId)
                if trial is not None:
                    self._validate_after(trial, int(op.trialOperation.validateAfter.length))
                    updated.append(trial)
            elif op.closeTrial is not None:
                trial = self._known(op, op.closeTrial.requestId)
                if trial is not None:
                    trial.closed = True
                    updated.append(trial)
            elif op.setSearcherProgress is not None:
                p = float(op.setSearcherProgress.progress)
                if not 0.0 <= p <= 1.0:
                    raise ProtocolError(f"progress {p} outside [0, 1]")
                self.progress.append(p)
            elif op.shutDown is not None:
                # case searcher.Shutdown: Failure -> STOPPING_ERROR, Cancel -> STOPPING_CANCELED,
                # else STOPPING_COMPLETED.
                if op.shutDown.failure:
                    self._update_state(S.STOPPING_ERROR)
                elif op.shutDown.cancel:
                    self._update_state(S.STOPPING_CANCELED)
                else:
                    self._update_state(S.STOPPING_COMPLETED)
            else:
                raise ProtocolError(f"unknown operation {op.to_json()}")
        for trial in updated:
            if not trial.exited:
                self._patch_searcher_state(trial)

    def _known(self, op: bindings.v1SearcherOperation, rid: str) -> SimTrial | None:
        """A trial the experiment still holds. Operations for a trial that is gone are logged
        and skipped (``processOperations invalid requestID``); for a request id no Create ever
        named, the searcher is confused: a ProtocolError."""
        if rid not in self.searcher_state:
            raise ProtocolError(f"operation for unknown request id {rid}: {op.to_json()}")
        trial = self.trials.get(rid)
        if trial is None or trial.exited:
            self.ignored_ops.append(op.to_json(omit_unset=True))
            return None
        return trial

    def _create(self, create: bindings.v1CreateTrialOperation) -> None:
        """``case searcher.Create``: the searcher state is recorded first; when ``newTrial``
        fails, ``trialClosed(rid, Errored)`` runs at once: the searcher gets exited-early
        (UNSPECIFIED) and closed for a trial it never saw created."""
        rid = create.requestId
        if rid in self.searcher_state:
            raise ProtocolError(f"Create for existing request id {rid}")
        self.searcher_state.add(rid)
        hparams = json.loads(create.hyperparams)
        if self.fail_create is not None and self.fail_create(hparams):
            self.failed_creates.append(rid)
            self._trial_closed_events(rid, Reason.UNSPECIFIED)
            return
        self.trials[rid] = SimTrial(rid, hparams)
        self._enqueue(trialCreated=bindings.v1TrialCreated(requestId=rid))

    def _validate_after(self, trial: SimTrial, length: int) -> None:
        """``case searcher.ValidateAfter``: state.Op = op, Complete = false. (The master would
        accept any length; these checks catch searcher bugs that can only hang or repeat.)"""
        if trial.closed:
            raise ProtocolError(f"ValidateAfter({length}) for closed trial {trial.request_id}")
        if not trial.complete:
            raise ProtocolError(
                f"ValidateAfter({length}) while ValidateAfter({trial.op_length}) is pending "
                f"for {trial.request_id}"
            )
        if length <= trial.completed_length:
            raise ProtocolError(
                f"ValidateAfter({length}) is not beyond the {trial.completed_length} units "
                f"{trial.request_id} already trained (lengths are cumulative)"
            )
        trial.op_length, trial.complete = length, False

    def _patch_searcher_state(self, trial: SimTrial) -> None:
        """trial.go ``PatchSearcherState``: not complete -> allocate (the trial becomes
        runnable); complete and closed -> STOPPING_COMPLETED, which for a trial without a
        running process goes straight to COMPLETED and exits (``transition``)."""
        if trial.complete and trial.closed:
            self._trial_terminal(trial, S.COMPLETED)

    def _update_state(self, state: bindings.experimentv1State) -> None:
        """experiment.go ``updateState`` -> ``patchTrialsState``: every trial the experiment
        holds gets the same stopping state; none has a process running between steps here,
        so each goes to its terminal state (``StoppingToTerminalStates``) and exits
        (``trial.go transition``). The experiment itself stays in the stopping state until
        the last exit callback ran (``canTerminate`` -> ``stop``)."""
        if self.state in STOPPING_TO_TERMINAL or self.state not in ACTIVE_STATES:
            return  # Transition refuses less severe or repeated stops (simplified)
        self._set_state(state)
        for trial in list(self.trials.values()):
            if not trial.exited:
                self._trial_terminal(trial, STOPPING_TO_TERMINAL[state])
        self._maybe_terminate()

    def _set_state(self, state: bindings.experimentv1State) -> None:
        self.state = state
        self.state_history.append(state)

    def _maybe_terminate(self) -> None:
        """``canTerminate``: a stopping experiment with no trials left becomes terminal."""
        if self.state in STOPPING_TO_TERMINAL and all(t.gone for t in self.trials.values()):
            self._set_state(STOPPING_TO_TERMINAL[self.state])

    # -- trials ending (trial.go exit / experiment.go trialClosed) -----------------------------
    def _trial_terminal(self, trial: SimTrial, state: bindings.experimentv1State) -> None:
        """``transition`` to a terminal state -> ``exit(reason)``: the exit callback runs in
        a goroutine, later (``_reap``)."""
        trial.state, trial.exited = state, True
        self.to_reap.append((trial, EXIT_REASON_OF_TERMINAL.get(state)))

    def _reap(self) -> None:
        trial, reason = self.to_reap.pop(0)
        trial.gone = True
        self._trial_closed_events(trial.request_id, reason)
        self._maybe_terminate()

    def _trial_closed_events(self, rid: str, reason: Any) -> None:
        """experiment.go ``trialClosed``: with a reason, ``trialReportEarlyExit`` (its deferred
        ``TrialExitedEarly``) first, then ``searcher.TrialClosed``; custom_search.go enqueues
        one event for each. (Events enqueued while stopping are never delivered.)"""
        if reason is not None:
            exited = bindings.v1TrialExitedEarly(requestId=rid, exitedReason=reason)
            self._enqueue(trialExitedEarly=exited)
        self._enqueue(trialClosed=bindings.v1TrialClosed(requestId=rid))

    # -- a trial's process ------------------------------------------------------------------
    def _step(self) -> bool:
        """Let one thing happen: reap a finished trial, or run one runnable trial's process
        (chosen by the seeded rng). False when nothing can happen."""
        if self.to_reap:
            self._reap()
            return True
        if self.state not in ACTIVE_STATES:
            return False
        runnable = [t for t in self.trials.values() if t.runnable]
        if not runnable:
            return False
        self._run_process(runnable[int(self.rng.integers(len(runnable)))])
        return True

    def _run_process(self, trial: SimTrial) -> None:
        """One allocation of ``trial``: the trial's main under a Core API context wired to this
        master, then ``handleAllocationExit`` on how the process ended."""
        trial.process_starts += 1
        ctx = core._dummy_init(checkpoint_storage=str(self.storage))
        searcher = SimSearcherContext(ctx.distributed, self, trial)
        ctx.searcher, ctx.train = searcher, SimTrainContext()
        ctx.checkpoint = SimCheckpointContext(
            ctx.distributed, ctx.checkpoint._storage_manager, trial
        )
        code, hang = 0, False
        try:
            with ctx:  # core.Context.__exit__ turns det.InvalidHP into report + exit(0)
                self.trial_main(ctx, dict(trial.hparams), trial.latest_checkpoint)
        except SystemExit as exc:
            code = int(exc.code or 0)
            # exit(0) raised while det.InvalidHP (raised from the trial's own error) was being
            # handled; a HangingInvalidTrial's process is taken to outlive the grace period.
            invalid = exc.__context__
            hang = ctx.train.early_exit is not None and bool(
                getattr(getattr(invalid, "__cause__", None), "hang", False)
            )
        except Exception:
            code = 1
        self._allocation_exited(trial, code, acked=searcher.acked, hang=hang)

    def _allocation_exited(self, trial: SimTrial, code: int, *, acked: bool, hang: bool) -> None:
        """trial.go ``handleAllocationExit`` with allocation.go ``calculateExitStatus``:

        * complete and closed -> COMPLETED (``trialClosed`` only);
        * an error exit -> ``restarts++`` (per trial, persisted with the trial) and a new
          process, until ``restarts > max_restarts`` -> ERROR (exited-early UNSPECIFIED);
        * a clean exit that did not acknowledge being out of operations
          (``UserRequestedStop``: a trial stopping on its own, or exit(0) after reporting
          InvalidHP) -> COMPLETED (``trialClosed`` only: the ``userInitiatedExit`` case after
          it is unreachable on this path);
        * a process still alive ``InvalidHPKillDelay`` after reporting InvalidHP -> killed
          (STOPPING_KILLED -> CANCELED: exited-early USER_CANCELED);
        * a clean, acknowledged exit -> the trial waits for its next operation."""
        if hang:
            self._trial_terminal(trial, S.CANCELED)
        elif trial.complete and trial.closed:
            self._trial_terminal(trial, S.ERROR if code else S.COMPLETED)
        elif code != 0:
            trial.restarts += 1
            if trial.restarts > self.max_restarts:
                self._trial_terminal(trial, S.ERROR)
        elif not acked:
            self._trial_terminal(trial, S.COMPLETED)

    def _trial_progress(self, trial: SimTrial, length: float) -> None:
        """``POST /trials/{id}/progress`` without ``is_raw`` (api_trials.go
        ``ReportTrialProgress`` -> experiment.go ``TrialReportProgress`` -> searcher.go
        ``SetTrialProgress`` -> custom_search.go ``trialProgress``): one event per call."""
        trial.progress_reports.append(length)
        self._enqueue(
            trialProgress=bindings.v1TrialProgress(
                requestId=trial.request_id, partialUnits=float(length)
            )
        )

    def _complete_operation(self, trial: SimTrial, length: int, metric: Any) -> None:
        """``/searcher/completed_operation`` (experiment.go ``TrialCompleteOperation``): an
        operation completes once; state.Complete = true; custom_search.go enqueues
        ``validationCompleted`` with the metric as a protobuf Value and the op's length."""
        if trial.complete or length != trial.op_length:
            raise ProtocolError(f"received op {length} which was previously completed")
        trial.complete, trial.completed_length = True, length
        trial.validations.append((length, metric))
        self._enqueue(
            validationCompleted=bindings.v1ValidationCompleted(
                requestId=trial.request_id,
                metric=to_struct_value(metric),
                validateAfterLength=str(length),
            )
        )

    # -- user actions ------------------------------------------------------------------------
    def kill_trial(self, request_id: str) -> None:
        """``det trial kill`` / the web UI (api_trials.go ``KillTrial``): STOPPING_KILLED ->
        CANCELED -> exited-early USER_CANCELED, then closed."""
        trial = self.trials[request_id]
        if not trial.exited:
            self._trial_terminal(trial, S.CANCELED)

    def kill_experiment(self) -> None:
        """``det experiment kill`` (experiment.go ``KillExperiment``): STOPPING_KILLED."""
        self._update_state(S.STOPPING_KILLED)

    def finish(self) -> bindings.experimentv1State:
        """Let every remaining exit callback run (the searcher no longer polls); the state."""
        while self.to_reap:
            self._reap()
        return self.state

    # -- reading the outcome ---------------------------------------------------------------
    def describe(self) -> str:
        parts = [
            f"{rid[:8]}: len={t.completed_length} op={t.op_length} complete={t.complete} "
            f"closed={t.closed} state={t.state.value}"
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
        self.inactive_seen: list[bindings.experimentv1State] = []

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
        events = self.master.get_events()
        self.inactive_seen += [e.experimentInactive.experimentState for e in events if e.id == -1]
        return events

    def post_to_master(
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
    "INVALID_HP_KILL_DELAY_S",
    "ProtocolError",
    "SearchStalled",
    "SimTrial",
    "SimulatedCrash",
    "SimulatedMaster",
    "SimulatedSearchRunner",
    "to_struct_value",
]
