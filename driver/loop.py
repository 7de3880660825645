"""The driver loop: one event loop that runs a search method over a trial backend.

In the spirit of Syne Tune's ``Tuner`` over a ``TrialBackend``, and of Determined's master:
the loop owns the event queue and each trial's engine lifecycle (created, busy, closed), and
turns the method's operations into backend calls and the backend's outcomes into events:

* ``Create`` -> ``backend.create`` and the ``trial created`` event;
* ``ValidateAfter`` -> answered at once when the backend can (a saved result, a repeated
  table query), else queued and started on the backend when a slot is free; its outcome
  becomes ``validation completed``, or ``exited early`` (``invalid`` -> invalid
  hyperparameters, ``canceled`` -> user canceled, other failures -> errored) followed, as
  Determined's master does, by ``trial closed``;
* ``Close`` -> ``trial closed`` once the trial has no work in flight (``backend.close``);
* ``Shutdown`` -> the run ends.

The loop itself saves nothing: after every event and every run it starts it calls
``on_change(loop)``, where a driver saves its state (``state_dict`` of the loop, method and
backend), refreshes a display, or raises to stop at that safe point; ``on_wait(loop)`` is called
when a wait for outcomes ended empty (redraw a clock, honour Ctrl-C). ``run`` returns why it
stopped: ``shutdown``, ``idle`` (the method asked for nothing more), or a backend's own reason
(``BackendStop``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from hwnas.driver.backend import BackendStop, TrialBackend, TrialOutcome, exit_reason
from hwnas.searchers.operations import (
    Close,
    Create,
    ExitReason,
    Operation,
    Shutdown,
    ValidateAfter,
    operation_from_json,
    operation_to_json,
)

LOOP_STATE_VERSION = 1


class MethodLike(Protocol):
    """The event handlers of ``hwnas.searchers.method.SearchMethod`` the loop calls (baseline
    methods, e.g. the benchmark's Optuna peers, implement the same five)."""

    def initial_operations(self) -> list[Operation]: ...
    def on_trial_created(self, trial_id: int) -> list[Operation]: ...
    def on_validation_completed(
        self, trial_id: int, metrics: dict[str, Any], length: int
    ) -> list[Operation]: ...
    def on_trial_closed(self, trial_id: int) -> list[Operation]: ...
    def on_trial_exited_early(
        self, trial_id: int, reason: ExitReason, message: str = ""
    ) -> list[Operation]: ...


class LoopError(RuntimeError):
    """The method sent an operation the loop cannot carry out (e.g. for an unknown trial)."""


class SearchLoop:
    """Drives ``method`` over ``backend``; see the module docstring."""

    def __init__(
        self,
        method: MethodLike,
        backend: TrialBackend,
        *,
        on_change: Callable[[SearchLoop], None] | None = None,
        on_wait: Callable[[SearchLoop], None] | None = None,
        log: Callable[[str], None] | None = None,
        wait_s: float = 1.0,
    ) -> None:
        self.method = method
        self.backend = backend
        self.on_change = on_change
        self.on_wait = on_wait
        self.log = log or (lambda message: None)
        self.wait_s = wait_s
        self.queue: deque[Operation] = deque()  # operations not yet acted on, in order
        self.waiting: deque[tuple[int, int]] = deque()  # ValidateAfter not yet started
        self.hparams: dict[int, dict[str, Any]] = {}  # from each trial's Create
        self.exited: set[int] = set()  # ended early (no more work)
        self.close_requested: set[int] = set()
        self.closed: set[int] = set()
        self.events = 0
        self.last_event = ""
        self.shutdown = False
        self.shutdown_failure = False
        #: One entry per finished run: trial, length, ok, failure kind, seconds, elapsed.
        self.timeline: list[dict[str, Any]] = []

    # -- running -----------------------------------------------------------------------------
    def start(self) -> None:
        """A fresh search: the method's initial operations."""
        self._event("initial operations", self.method.initial_operations)

    def run(self) -> str:
        """Process events until Shutdown, idleness or a backend stop; why it stopped. Runs
        still in flight when it returns early (an exception from ``on_change``) are stopped
        and queued again, so ``state_dict`` resumes them."""
        try:
            self._close_settled()
            while True:
                self._process_queue()
                if self.shutdown:
                    return "shutdown"
                self._launch_waiting()
                if not self.backend.running():
                    if self.waiting and not self.backend.exhausted:
                        continue
                    return "backend budget spent" if self.waiting else "idle"
                outcomes = self.backend.wait(self.wait_s)
                for outcome in outcomes:
                    # One outcome at a time, its operations carried out before the next.
                    self._deliver(outcome)
                    self._process_queue()
                if not outcomes and self.on_wait is not None:
                    self.on_wait(self)  # nothing changed: a chance to redraw or stop
        except BackendStop as exc:
            return str(exc)
        finally:
            self._requeue_running()

    def continue_with(self, name: str, handler: Callable[[], list[Operation]]) -> None:
        """Deliver one event from outside the engine (e.g. a resumed search whose budget
        changed) and, if it had shut down, run again on what the method answers."""
        self.shutdown = False
        self.shutdown_failure = False
        self._event(name, handler)

    def busy(self, trial_id: int) -> bool:
        """Whether the trial has a run in flight or waiting."""
        return any(t == trial_id for t, _ in self.backend.running()) or any(
            t == trial_id for t, _ in self.waiting
        )

    # -- events ------------------------------------------------------------------------------
    def _event(self, name: str, handler: Callable[[], list[Operation]]) -> None:
        """Deliver one event to the method and queue its operations."""
        self.queue.extend(handler())
        self.events += 1
        self.last_event = name
        if self.on_change is not None:
            self.on_change(self)

    def _process_queue(self) -> None:
        """Act on queued operations in order until the queue is empty or the search ends."""
        while self.queue and not self.shutdown:
            op = self.queue.popleft()
            if isinstance(op, Create):
                self.hparams[op.trial_id] = dict(op.hparams)
                self.backend.create(op.trial_id, op.hparams)
                self._event(
                    f"trial {op.trial_id} created",
                    lambda op=op: self.method.on_trial_created(op.trial_id),
                )
            elif isinstance(op, ValidateAfter):
                self._require(op.trial_id, "ValidateAfter")
                if op.trial_id in self.closed or op.trial_id in self.exited:
                    self.log(f"ignoring ValidateAfter for trial {op.trial_id} (it has ended)")
                    continue
                answer = self.backend.answer(op.trial_id, self.hparams[op.trial_id], op.length)
                if isinstance(answer, TrialOutcome):
                    self._deliver(answer)
                elif not answer:
                    self.waiting.append((op.trial_id, op.length))
            elif isinstance(op, Close):
                self._require(op.trial_id, "Close")
                self.close_requested.add(op.trial_id)
                self._close_if_idle(op.trial_id)
            elif isinstance(op, Shutdown):
                self.shutdown = True
                self.shutdown_failure = op.failure
            else:
                raise LoopError(f"search method returned a non-operation: {op!r}")

    def _require(self, trial_id: int, what: str) -> None:
        if trial_id not in self.hparams:
            raise LoopError(f"search method sent {what} for unknown trial {trial_id}")

    def _close_if_idle(self, trial_id: int) -> None:
        if trial_id in self.closed or self.busy(trial_id):
            return
        self.closed.add(trial_id)
        self.backend.close(trial_id)
        self._event(f"trial {trial_id} closed", lambda: self.method.on_trial_closed(trial_id))

    def _close_settled(self) -> None:
        """Close trials that exited or were asked to close but whose close event was lost
        (an interruption between the two events)."""
        for trial_id in sorted(self.close_requested | self.exited):
            self._close_if_idle(trial_id)

    def _launch_waiting(self) -> None:
        """Start waiting runs while the backend has slots (one run per trial at a time)."""
        while self.waiting and self.backend.free_slots > 0:
            running = {t for t, _ in self.backend.running()}
            index = next((i for i, (t, _) in enumerate(self.waiting) if t not in running), None)
            if index is None:
                return
            trial_id, length = self.waiting[index]
            del self.waiting[index]
            try:
                self.backend.start(trial_id, self.hparams[trial_id], length)
            except BaseException:
                # Not started (e.g. a remote backend lost its connection): keep the request,
                # so the saved state still holds it and a resumed loop asks again.
                self.waiting.appendleft((trial_id, length))
                raise
            if self.on_change is not None:
                self.on_change(self)  # e.g. save the child's pid before anything else happens

    def _deliver(self, outcome: TrialOutcome) -> None:
        """File one run's outcome with the method (and close the trial when due)."""
        trial_id, length = outcome.trial_id, outcome.length
        self.timeline.append(
            {
                "trial_id": trial_id,
                "length": length,
                "ok": outcome.ok,
                "kind": outcome.kind,
                "seconds": round(outcome.seconds, 3),
                "elapsed_s": round(self.backend.elapsed_s(), 3),
            }
        )
        if outcome.ok:
            self._event(
                f"trial {trial_id} validated at {length}",
                lambda: self.method.on_validation_completed(
                    trial_id, dict(outcome.metrics), length
                ),
            )
            if trial_id in self.close_requested:
                self._close_if_idle(trial_id)
            return
        reason = exit_reason(outcome.kind)
        self.exited.add(trial_id)
        # The trial is gone: any further work queued for it is dropped.
        self.waiting = deque(w for w in self.waiting if w[0] != trial_id)
        self.log(f"trial {trial_id} failed ({outcome.kind}): {outcome.message}")
        self._event(
            f"trial {trial_id} exited early ({reason.value})",
            lambda: self.method.on_trial_exited_early(trial_id, reason, outcome.message),
        )
        self._close_if_idle(trial_id)

    def _requeue_running(self) -> None:
        """Stop runs still in flight and queue them first again (resumed from checkpoints)."""
        stopped = self.backend.stop_all()
        if stopped:
            self.waiting = deque(_unique([*stopped, *self.waiting]))

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The loop's part of a saved search (JSON); in-flight runs come first in
        ``waiting``, so a resumed loop starts them again before anything new."""
        return {
            "version": LOOP_STATE_VERSION,
            "queue": [operation_to_json(op) for op in self.queue],
            "waiting": [list(w) for w in _unique([*self.backend.running(), *self.waiting])],
            "hparams": {str(t): h for t, h in sorted(self.hparams.items())},
            "exited": sorted(self.exited),
            "close_requested": sorted(self.close_requested),
            "closed": sorted(self.closed),
            "events": self.events,
            "last_event": self.last_event,  # for people reading the file
            "shutdown": self.shutdown,
            "shutdown_failure": self.shutdown_failure,
            "timeline": self.timeline,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``state_dict`` (the method and backend are restored by the caller)."""
        if state.get("version") != LOOP_STATE_VERSION:
            raise ValueError(f"driver loop state version {state.get('version')!r} is unknown")
        self.queue = deque(operation_from_json(op) for op in state["queue"])
        self.waiting = deque((int(t), int(n)) for t, n in state["waiting"])
        self.hparams = {int(t): dict(h) for t, h in state["hparams"].items()}
        self.exited = {int(t) for t in state["exited"]}
        self.close_requested = {int(t) for t in state["close_requested"]}
        self.closed = {int(t) for t in state["closed"]}
        self.events = int(state["events"])
        self.last_event = str(state["last_event"])
        self.shutdown = bool(state["shutdown"])
        self.shutdown_failure = bool(state["shutdown_failure"])
        self.timeline = list(state["timeline"])


def _unique(pairs: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """``(trial_id, length)`` pairs without repeats, first occurrence kept."""
    seen: set[tuple[int, int]] = set()
    out = []
    for t, n in pairs:
        pair = (int(t), int(n))
        if pair not in seen:
            seen.add(pair)
            out.append(pair)
    return out


__all__ = ["LOOP_STATE_VERSION", "LoopError", "MethodLike", "SearchLoop"]
