"""The on-cluster search runner: Determined's ``RemoteSearchRunner`` with JSON state and reports.

Determined 0.37's ``RemoteSearchRunner`` checkpoints after every event: the runner's
``SearcherState``, the method's state (``save_method_state``) and the operations it is about to
post, pickled. This subclass keeps that protocol and changes three things:

* the pending operations are stored as JSON (``ops.json``), never pickle;
* each checkpoint also holds the search report (``report/``: Pareto front JSON/CSV/PNG) and
  the searcher experiment reports its own metrics (trials done, front size, hypervolume, best
  feasible accuracy) so the web UI charts the search;
* ``latest_checkpoint`` is an argument, so the same runner can be driven off-cluster (tests
  drive it through ``tests/master_simulation.py``);
* after it posted ``Shutdown`` it posts nothing more: the events still in the batch it is
  working through (a ``trialClosed`` that arrived with the exit that ended the search) need no
  answer, and the 0.37 master may already have ended the experiment (``experiment.go``:
  ``updateState`` -> ``stop`` -> ``unregister`` when no trial is left), where a post fails with
  "not found" and Determined's runner would crash.
"""

from __future__ import annotations

import json
import logging
import math
import pathlib
import shutil
import tempfile
import time
import uuid
import warnings
from typing import Any, Protocol

import determined as det
from determined import searcher as det_searcher
from determined.common.api import bindings

from hwnas.atomic import write_json_atomic
from hwnas.driver.determined.adapter import HwnasSearchMethod

logger = logging.getLogger("hwnas.determined")

OPS_FILE = "ops.json"
REPORT_DIR = "report"


class Reporter(Protocol):
    """What the runner needs to show a search (``progress.SearchReporter`` implements it)."""

    def metrics(self, method: Any) -> dict[str, float]:
        """The numbers to chart for the method's current results (cheap)."""

    def write(self, method: Any, directory: pathlib.Path) -> None:
        """Write the report files (JSON, CSV, plots) into ``directory`` (slower: plots)."""


# -- Determined operations <-> JSON (for the pending-operations file) ----------------------
def det_operation_to_json(op: det_searcher.Operation) -> dict[str, Any]:
    """A JSON dict for one ``determined.searcher`` operation."""
    if isinstance(op, det_searcher.Create):
        # Create keeps its hparams already JSON-encoded (what goes on the wire).
        return {"kind": "create", "request_id": str(op.request_id), "hparams": op.hparams}
    if isinstance(op, det_searcher.ValidateAfter):
        return {"kind": "validate_after", "request_id": str(op.request_id), "length": op.length}
    if isinstance(op, det_searcher.Close):
        return {"kind": "close", "request_id": str(op.request_id)}
    if isinstance(op, det_searcher.Progress):
        return {"kind": "progress", "progress": op.progress}
    if isinstance(op, det_searcher.Shutdown):
        return {"kind": "shutdown", "cancel": op.cancel, "failure": op.failure}
    raise TypeError(f"not a determined.searcher operation: {op!r}")


def det_operation_from_json(d: dict[str, Any]) -> det_searcher.Operation:
    """Inverse of ``det_operation_to_json``."""
    kind = d.get("kind")
    if kind == "create":
        return det_searcher.Create(
            uuid.UUID(d["request_id"]), json.loads(d["hparams"]), checkpoint=None
        )
    if kind == "validate_after":
        return det_searcher.ValidateAfter(uuid.UUID(d["request_id"]), int(d["length"]))
    if kind == "close":
        return det_searcher.Close(uuid.UUID(d["request_id"]))
    if kind == "progress":
        return det_searcher.Progress(float(d["progress"]))
    if kind == "shutdown":
        return det_searcher.Shutdown(cancel=bool(d["cancel"]), failure=bool(d["failure"]))
    raise ValueError(f"{OPS_FILE}: unknown operation kind {kind!r} in {d!r}")


class HwnasSearchRunner(det_searcher.RemoteSearchRunner):
    """``RemoteSearchRunner`` that checkpoints JSON, stores the report, and charts progress."""

    def __init__(
        self,
        search_method: HwnasSearchMethod,
        context: det.core.Context,
        *,
        latest_checkpoint: str | None = None,
        reporter: Reporter | None = None,
        report_interval_s: float = 30.0,
    ) -> None:
        # RemoteSearchRunner.__init__ only asserts it is on-cluster and reads
        # ``det.get_cluster_info().latest_checkpoint``; take that value as an argument instead
        # (``from_cluster`` reads it) so the runner also runs under the master simulation.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            det_searcher.SearchRunner.__init__(self, search_method)
        self.context = context
        self.latest_checkpoint = latest_checkpoint
        self.reporter = reporter
        self.last_metrics: dict[str, float] | None = None
        #: The searcher's latest checkpoint (what Determined resumes a restarted task from).
        self.last_storage_id: str | None = latest_checkpoint
        #: Redraw the report files at most this often (plots take about a second); the metrics are
        #: always current, and the files are rewritten when the search shuts down.
        self.report_interval_s = report_interval_s
        self._report_cache: pathlib.Path | None = None
        self._report_key: Any = None
        self._report_time = -math.inf
        self._metrics_key: Any = None
        self._metrics: dict[str, float] = {}
        self._progress_only = False
        #: A Shutdown reached the master: later batches are not posted (see the docstring).
        self.shutdown_posted = False

    @classmethod
    def from_cluster(
        cls,
        search_method: HwnasSearchMethod,
        context: det.core.Context,
        *,
        reporter: Reporter | None = None,
    ) -> HwnasSearchRunner:
        """The runner for a searcher experiment's task (resumes from its latest checkpoint)."""
        info = det.get_cluster_info()
        if info is None:
            raise RuntimeError(
                "the Determined searcher must run inside a Determined experiment "
                "(det experiment create ...); for a run on this machine use `hwnas search`"
            )
        return cls(
            search_method, context, latest_checkpoint=info.latest_checkpoint, reporter=reporter
        )

    # -- events ---------------------------------------------------------------------------
    def _get_operations(self, event: bindings.v1SearcherEvent) -> list[det_searcher.Operation]:
        exited = event.trialExitedEarly
        if (
            exited is not None
            and exited.exitedReason == bindings.v1TrialExitedEarlyExitedReason.USER_CANCELED
        ):
            # 0.37's ExitedReason._from_bindings maps USER_REQUESTED_STOP but raises on
            # USER_CANCELED (a kill from the CLI or web UI), which would crash the searcher
            # into a restart loop; both mean "a user stopped this trial".
            exited.exitedReason = bindings.v1TrialExitedEarlyExitedReason.USER_REQUESTED_STOP
        self._progress_only = event.trialProgress is not None
        return super()._get_operations(event)

    def post_operations(
        self,
        session: Any,
        experiment_id: int,
        event: bindings.v1SearcherEvent,
        operations: list[det_searcher.Operation],
    ) -> None:
        if self.shutdown_posted:
            logger.info("event %d: the search has shut down; nothing more to post", event.id)
            return
        self.post_to_master(session, experiment_id, event, operations)
        self.shutdown_posted = any(isinstance(op, det_searcher.Shutdown) for op in operations)

    def post_to_master(
        self,
        session: Any,
        experiment_id: int,
        event: bindings.v1SearcherEvent,
        operations: list[det_searcher.Operation],
    ) -> None:
        """The REST call (Determined's own ``post_operations``)."""
        super().post_operations(session, experiment_id, event, operations)

    def run_experiment(self, *args: Any, **kwargs: Any) -> None:
        """Determined's event loop; afterwards the report cache (a temp dir) is removed."""
        try:
            super().run_experiment(*args, **kwargs)
        finally:
            if self._report_cache is not None:
                shutil.rmtree(self._report_cache, ignore_errors=True)
                self._report_cache, self._report_key = None, None

    # -- checkpoints ----------------------------------------------------------------------
    def save_state(self, experiment_id: int, operations: list[det_searcher.Operation]) -> None:
        if self._progress_only and all(isinstance(op, det_searcher.Progress) for op in operations):
            # Trials report progress every epoch; a checkpoint for each would multiply the
            # searcher's checkpoints several-fold. Skipping is safe: such an event changes no
            # search state, and after a restart the master's queue starts past it (it was
            # acknowledged) or it is simply handled again.
            return
        steps_completed = self.state.last_event_id
        metadata = {"steps_completed": steps_completed, "hwnas_experiment_id": experiment_id}
        with self.context.checkpoint.store_path(metadata) as (path, storage_id):
            path = pathlib.Path(path)
            self.search_method.save(self.state, path, experiment_id=experiment_id)
            write_json_atomic(
                path / OPS_FILE, [det_operation_to_json(op) for op in operations], allow_nan=True
            )
            final = any(isinstance(op, det_searcher.Shutdown) for op in operations)
            metrics = self._write_report(path / REPORT_DIR, final=final)
        self.last_storage_id = storage_id
        if metrics is not None and metrics != self.last_metrics:
            self.context.train.report_validation_metrics(
                steps_completed=steps_completed, metrics=metrics
            )
            self.last_metrics = metrics

    def load_state(self, storage_id: str) -> tuple[int, list[det_searcher.Operation]]:
        with self.context.checkpoint.restore_path(storage_id) as path:
            path = pathlib.Path(path)
            self.state, experiment_id = self.search_method.load(path)
            ops_file = path / OPS_FILE
            try:
                with open(ops_file, encoding="utf-8") as fh:
                    operations = [det_operation_from_json(d) for d in json.load(fh)]
            except (OSError, ValueError) as exc:
                raise ValueError(
                    f"checkpoint {storage_id}: cannot read {OPS_FILE} ({exc}); was it written "
                    "by hwnas's runner?"
                ) from exc
        logger.info(
            "resuming experiment %d after event %d; operations to re-post if unacknowledged: %s",
            experiment_id,
            self.state.last_event_id,
            self.search_method.from_determined(operations),
        )
        return experiment_id, operations

    def _write_report(self, directory: pathlib.Path, *, final: bool) -> dict[str, float] | None:
        """Copy the cached report into ``directory``, redrawing it when results changed (at
        most every ``report_interval_s``, always on ``final``); the current metrics."""
        if self.reporter is None:
            return None
        method = self.search_method.method
        key = _results_key(method)
        if key != self._metrics_key:
            self._metrics, self._metrics_key = self.reporter.metrics(method), key
        due = time.monotonic() - self._report_time >= self.report_interval_s
        if self._report_cache is None or (key != self._report_key and (due or final)):
            if self._report_cache is None:
                self._report_cache = pathlib.Path(tempfile.mkdtemp(prefix="hwnas-report-"))
            self.reporter.write(method, self._report_cache)
            self._report_key, self._report_time = key, time.monotonic()
        shutil.copytree(self._report_cache, directory)
        return dict(self._metrics)


def _results_key(method: Any) -> Any:
    """Changes whenever a trial reports or ends (cheap: result counts and statuses)."""
    return tuple((r.trial_id, len(r.results), r.status.value) for r in method.records())


__all__ = [
    "OPS_FILE",
    "REPORT_DIR",
    "HwnasSearchRunner",
    "Reporter",
    "det_operation_from_json",
    "det_operation_to_json",
]
