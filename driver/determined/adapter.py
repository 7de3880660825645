"""Determined's custom-searcher interface over hwnas's engine-neutral ``SearchMethod``.

``HwnasSearchMethod`` subclasses ``determined.searcher.SearchMethod`` (Determined 0.19.6 to
0.37.x; custom searchers were removed in 0.38) and forwards every event to the wrapped
``hwnas.searchers.method.SearchMethod``. It owns the one thing Determined adds: request ids. The
master names trials by UUID, the method by int; both maps are kept here and saved with the
method's own state, so a restarted searcher answers for the trials it created before.
"""

from __future__ import annotations

import json
import logging
import math
import pathlib
import uuid
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from determined import searcher as det_searcher

from hwnas.atomic import write_json_atomic
from hwnas.contract import is_failed_result
from hwnas.driver.backend import exit_reason
from hwnas.searchers import operations as ops

logger = logging.getLogger("hwnas.determined")

#: File, inside the directory Determined hands to ``save_method_state``, holding our state.
METHOD_STATE_FILE = "hwnas_method.json"
STATE_FORMAT = 1

#: Determined's reasons -> the engine-neutral ones (one-to-one).
EXIT_REASONS: dict[det_searcher.ExitedReason, ops.ExitReason] = {
    det_searcher.ExitedReason.ERRORED: ops.ExitReason.ERRORED,
    det_searcher.ExitedReason.USER_CANCELED: ops.ExitReason.USER_CANCELED,
    det_searcher.ExitedReason.INVALID_HP: ops.ExitReason.INVALID_HP,
}
DET_EXIT_REASONS: dict[ops.ExitReason, det_searcher.ExitedReason] = {
    v: k for k, v in EXIT_REASONS.items()
}


#: How protobuf's JSON writes non-finite floats (the master relays metrics as a ``Value``).
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def decode_metrics(metric: dict[str, Any]) -> dict[str, Any]:
    """The trial's metrics dict with the master's protobuf trip undone where it loses meaning:
    non-finite floats arrive as the strings ``"NaN"``/``"Infinity"`` and become floats again
    (every number arrives as a float, which the method accepts as it is)."""
    out: dict[str, Any] = {}
    for key, value in metric.items():
        if isinstance(value, str) and value in _NON_FINITE:
            value = _NON_FINITE[value]
        out[key] = value
    return out


def _load_engine_method(state: dict[str, Any]) -> Any:
    """``hwnas.searchers.method.SearchMethod.from_state``, imported when first needed."""
    from hwnas.searchers.method import SearchMethod

    return SearchMethod.from_state(state)


class HwnasSearchMethod(det_searcher.SearchMethod):
    """A ``determined.searcher.SearchMethod`` delegating every event to hwnas's method."""

    def __init__(
        self,
        method: Any,
        *,
        method_loader: Callable[[dict[str, Any]], Any] = _load_engine_method,
        request_id_factory: Callable[[], uuid.UUID] = uuid.uuid4,
    ) -> None:
        with warnings.catch_warnings():
            # Determined 0.36+ warns that custom searchers are deprecated; we know (docs say so).
            warnings.simplefilter("ignore", FutureWarning)
            super().__init__()
        self.method = method
        self._method_loader = method_loader
        self._new_request_id = request_id_factory
        self._request_ids: dict[int, uuid.UUID] = {}
        self._trial_ids: dict[uuid.UUID, int] = {}
        #: Closes held back by an older hwnas (state format 1 with ``deferred_closes``); sent
        #: with the next batch.
        self._held_closes: set[int] = set()

    # -- id maps ------------------------------------------------------------------------------
    def request_id(self, trial_id: int) -> uuid.UUID:
        """The UUID the master knows trial ``trial_id`` by (KeyError if never created)."""
        return self._request_ids[trial_id]

    def trial_id(self, request_id: uuid.UUID) -> int | None:
        """The method's trial id for ``request_id``, or None for a trial we did not create."""
        return self._trial_ids.get(request_id)

    def _bind(self, trial_id: int) -> uuid.UUID:
        if trial_id in self._request_ids:
            raise ValueError(f"search method created trial {trial_id} twice")
        rid = self._new_request_id()
        self._request_ids[trial_id] = rid
        self._trial_ids[rid] = trial_id
        return rid

    # -- operations: engine-neutral -> Determined ---------------------------------------------
    def to_determined(self, operations: Iterable[ops.Operation]) -> list[det_searcher.Operation]:
        """Translate the method's operations into ``determined.searcher`` operations.

        Closes go out at once: the 0.37 master ends a custom search only on ``Shutdown`` (or a
        user action), never because every trial so far is closed (``searcher.go``:
        ``TrialClosed`` skips its automatic shutdown for ``customSearch``). ``Shutdown`` carries
        ``failure=True`` also when every trial failed, the rule the master applies to its own
        searchers (``Failure: len(Failures) >= TrialsRequested``)."""
        out: list[det_searcher.Operation] = [
            det_searcher.Close(self.request_id(t)) for t in sorted(self._held_closes)
        ]
        self._held_closes.clear()
        for op in operations:
            if isinstance(op, ops.Create):
                rid = self._bind(op.trial_id)
                out.append(det_searcher.Create(request_id=rid, hparams=op.hparams, checkpoint=None))
            elif isinstance(op, ops.ValidateAfter):
                out.append(det_searcher.ValidateAfter(self.request_id(op.trial_id), op.length))
            elif isinstance(op, ops.Close):
                out.append(det_searcher.Close(self.request_id(op.trial_id)))
            elif isinstance(op, ops.Shutdown):
                failure = op.failure or self._every_trial_failed()
                out.append(det_searcher.Shutdown(cancel=False, failure=failure))
            else:
                raise TypeError(f"search method returned a non-operation: {op!r}")
        return out

    def _every_trial_failed(self) -> bool:
        records = self.method.records()
        return bool(records) and all(r.status.is_failure for r in records)

    # -- operations: Determined -> engine-neutral ---------------------------------------------
    def from_determined(self, operations: Iterable[det_searcher.Operation]) -> list[ops.Operation]:
        """The inverse of ``to_determined`` for trials we created (``Progress`` has no
        engine-neutral form and is left out): what the master was asked, in the method's
        terms (for logs, resubmitted operations and tests)."""
        out: list[ops.Operation] = []
        for op in operations:
            if isinstance(op, det_searcher.Create):
                out.append(ops.Create(self._trial_ids[op.request_id], json.loads(op.hparams)))
            elif isinstance(op, det_searcher.ValidateAfter):
                out.append(ops.ValidateAfter(self._trial_ids[op.request_id], int(op.length)))
            elif isinstance(op, det_searcher.Close):
                out.append(ops.Close(self._trial_ids[op.request_id]))
            elif isinstance(op, det_searcher.Shutdown):
                out.append(ops.Shutdown(failure=op.failure))
            elif not isinstance(op, det_searcher.Progress):
                raise TypeError(f"not a determined.searcher operation: {op!r}")
        return out

    def _known(self, request_id: uuid.UUID, event: str) -> int | None:
        tid = self._trial_ids.get(request_id)
        if tid is None:
            logger.warning("%s for unknown request id %s; ignored", event, request_id)
        return tid

    # -- Determined's event handlers ----------------------------------------------------------
    def initial_operations(
        self, searcher_state: det_searcher.SearcherState
    ) -> list[det_searcher.Operation]:
        return self.to_determined(self.method.initial_operations())

    def on_trial_created(
        self, searcher_state: det_searcher.SearcherState, request_id: uuid.UUID
    ) -> list[det_searcher.Operation]:
        tid = self._known(request_id, "trial created")
        if tid is None:
            return []
        return self.to_determined(self.method.on_trial_created(tid))

    def on_validation_completed(
        self,
        searcher_state: det_searcher.SearcherState,
        request_id: uuid.UUID,
        metric: Any,
        train_length: int,
    ) -> list[det_searcher.Operation]:
        tid = self._known(request_id, "validation completed")
        if tid is None:
            return []
        if is_failed_result(metric):
            # The trial's own report of why it ends (hwnas.trials.train) before it raises
            # InvalidHP; the master will only send trialClosed, or exited-early USER_CANCELED
            # if the trial outlives the 10 s it is given (trial.go InvalidHPKillDelay).
            kind, message = str(metric["kind"]), str(metric.get("message", ""))
            neutral = self.method.on_trial_exited_early(tid, exit_reason(kind), message)
            return [*self.to_determined(neutral), det_searcher.Close(request_id)]
        if not isinstance(metric, dict):
            # The trial passed a bare number to op.report_completed(): the objectives are lost.
            # Count it as a failed trial and close it rather than crash the searcher (which the
            # master would restart into the same event forever).
            message = (
                f"trial reported {type(metric).__name__} {metric!r} to op.report_completed(); "
                "hwnas trials must report the whole metrics dict"
            )
            logger.error("request %s: %s", request_id, message)
            neutral = self.method.on_trial_exited_early(tid, ops.ExitReason.ERRORED, message)
            return [*self.to_determined(neutral), det_searcher.Close(request_id)]
        return self.to_determined(
            self.method.on_validation_completed(tid, decode_metrics(metric), int(train_length))
        )

    def on_trial_closed(
        self, searcher_state: det_searcher.SearcherState, request_id: uuid.UUID
    ) -> list[det_searcher.Operation]:
        tid = self._known(request_id, "trial closed")
        if tid is None:
            return []
        return self.to_determined(self.method.on_trial_closed(tid))

    def on_trial_exited_early(
        self,
        searcher_state: det_searcher.SearcherState,
        request_id: uuid.UUID,
        exited_reason: det_searcher.ExitedReason,
    ) -> list[det_searcher.Operation]:
        tid = self._known(request_id, "trial exited early")
        if tid is None:
            return []
        reason = EXIT_REASONS[exited_reason]
        message = f"Determined reported {exited_reason.value}"
        return self.to_determined(self.method.on_trial_exited_early(tid, reason, message))

    def progress(self, searcher_state: det_searcher.SearcherState) -> float:
        return min(1.0, max(0.0, float(self.method.progress())))

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Pure-JSON state: the method's own plus both id maps."""
        return {
            "format": STATE_FORMAT,
            "method": self.method.state_dict(),
            "request_ids": {str(t): str(r) for t, r in sorted(self._request_ids.items())},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of ``state_dict``: rebuilds the method and the id maps."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(
                f"{METHOD_STATE_FILE}: unsupported format {state.get('format')!r} "
                f"(this hwnas reads format {STATE_FORMAT})"
            )
        self.method = self._method_loader(state["method"])
        self._request_ids = {int(t): uuid.UUID(r) for t, r in state["request_ids"].items()}
        self._trial_ids = {r: t for t, r in self._request_ids.items()}
        self._held_closes = {int(t) for t in state.get("deferred_closes", [])}

    def save_method_state(self, path: pathlib.Path) -> None:
        write_json_atomic(pathlib.Path(path) / METHOD_STATE_FILE, self.state_dict(), allow_nan=True)

    def load_method_state(self, path: pathlib.Path) -> None:
        file = pathlib.Path(path) / METHOD_STATE_FILE
        try:
            with open(file, encoding="utf-8") as fh:
                state = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read searcher state {file}: {exc}") from exc
        self.load_state_dict(state)


__all__ = [
    "DET_EXIT_REASONS",
    "EXIT_REASONS",
    "METHOD_STATE_FILE",
    "HwnasSearchMethod",
    "decode_metrics",
]
