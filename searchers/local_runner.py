"""Local runner: Determined's event loop in miniature, driving one ``SearchMethod`` in-process.

Create -> the trial gets a folder ``OUT/trials/<id>/`` (checkpoint, per-trial ``log.txt``) and
the method hears ``on_trial_created``. ValidateAfter -> a child ``python -m hwnas.trials.local``
trains the trial to that cumulative length (one child per visible GPU, else on the CPU);
its result becomes ``on_validation_completed`` or ``on_trial_exited_early`` (invalid ->
``invalid_hp``; crash, out of memory, NaN, timeout -> ``errored``), followed, as Determined's
master does, by ``on_trial_closed`` once the trial has exited. Close -> ``on_trial_closed`` when
the trial has no work left. Shutdown -> the search ends.

After every event the method's state and the runner's own (trials, their folders, pending
operations, child pids, a timeline of results) are written atomically to ``OUT/state.json``,
with the config copied to ``OUT/config.yaml``. ``run_search(None, OUT, resume=True)``
(``hwnas search --resume OUT``) continues from there: operations that were in flight are issued
again, and a trial resumes from its checkpoint (or its already-written result is used, so
nothing trains twice). Ctrl-C and SIGTERM take effect at the next safe point (between steps);
children run in their own process groups, die with the runner (Linux ``PR_SET_PDEATHSIG``) and
are killed as a group on timeout (``runner.trial_timeout_s``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.atomic import atomic_open, write_json_atomic
from hwnas.searchers.config import ConfigError, SearchConfig, load_config
from hwnas.searchers.local_progress import ProgressView, SearchStatus
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
from hwnas.searchers.trial_processes import (
    DEFAULT_TRIAL_COMMAND,
    TrialOutcome,
    TrialPool,
    kill_stale_child,
    outcome_from_result,
    read_result,
    visible_gpus,
)

STATE_FILE = "state.json"
CONFIG_FILE = "config.yaml"
STATE_VERSION = 1

# Trial statuses the runner keeps (the method keeps its own view).
CREATED, RUNNING, IDLE, CLOSED, EXITED = "created", "running", "idle", "closed", "exited"


class RunnerError(RuntimeError):
    """The local runner cannot start or continue (bad output folder, corrupt state)."""


class _StopRequested(Exception):
    """Raised at a safe point after Ctrl-C / SIGTERM, or by the ``stop_after_events`` hook."""


@contextlib.contextmanager
def _deferred_interrupts(runner: LocalRunner) -> Iterator[None]:
    """Turn SIGINT/SIGTERM into a request the runner honours between steps, so state.json
    never misses an operation that was half launched. A second Ctrl-C interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def request(signum: int, frame: Any) -> None:
        runner.interrupt = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {sig: signal.signal(sig, request) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class RunSummary:
    """What a finished (or interrupted) local search did."""

    out_dir: Path
    finished: bool
    interrupted: bool
    events: int
    trials: int
    completed: int
    failed: int
    elapsed_s: float
    reason: str = ""
    report_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["out_dir"] = str(self.out_dir)
        return data


def _resolve_concurrency(
    config: SearchConfig, override: int | None
) -> tuple[list[str | None], int]:
    """Slots (CUDA device per slot, None = CPU) and threads per CPU trial."""
    cpus = os.cpu_count() or 1
    devices = config.runner.devices
    if devices == "cpu":
        gpus: list[str] = []
    elif devices == "auto":
        gpus = visible_gpus()
    else:
        gpus = [str(d) for d in devices]
    if override is not None and override < 1:
        raise RunnerError(f"--concurrency must be >= 1, got {override}")
    if gpus:
        n = override or len(gpus)
        slots: list[str | None] = [gpus[i % len(gpus)] for i in range(n)]
        return slots, max(1, cpus // n)
    n = override or max(1, min(config.budget.max_concurrent, 2, cpus))
    return [None] * n, max(1, cpus // n)


class LocalRunner:
    """Drives one search method with trial child processes; state in ``out_dir/state.json``."""

    def __init__(
        self,
        config: SearchConfig,
        out_dir: Path,
        method: Any,
        *,
        concurrency: int | None = None,
        trial_command: Sequence[str] | None = None,
        progress: ProgressView | None = None,
        stop_after_events: int | None = None,
        poll_interval_s: float = 0.2,
    ) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.method = method
        slots, threads = _resolve_concurrency(config, concurrency)
        self.pool = TrialPool(
            tuple(trial_command) if trial_command else DEFAULT_TRIAL_COMMAND,
            slots,
            timeout_s=config.runner.trial_timeout_s,
            threads_per_trial=threads,
            extra_env=_python_path_env(),
        )
        self.progress = progress
        self.stop_after_events = stop_after_events
        self.poll_interval_s = poll_interval_s
        # Runner state (saved with the method's in state.json).
        self.trials: dict[int, dict[str, Any]] = {}
        self.queue: deque[Operation] = deque()  # operations not yet acted on, in order
        self.waiting: deque[tuple[int, int]] = deque()  # ValidateAfter not yet launched
        self.interrupt = ""  # set by a signal handler; honoured at the next safe point
        self.events = 0
        self.last_event = ""
        self.shutdown = False
        self.shutdown_failure = False
        self.timeline: list[dict[str, Any]] = []  # one entry per finished child run
        self.elapsed_before = 0.0
        self._started = time.monotonic()

    # -- state ---------------------------------------------------------------------------------
    def elapsed_s(self) -> float:
        return self.elapsed_before + (time.monotonic() - self._started)

    def state_dict(self) -> dict[str, Any]:
        running = [[p.trial_id, p.length] for p in self.pool.running.values()]
        return {
            "version": STATE_VERSION,
            "method": self.method.state_dict(),
            "runner": {
                "trials": {str(k): v for k, v in self.trials.items()},
                # In-flight work first: on resume it is issued again before anything new.
                "waiting": _unique(running + [list(w) for w in self.waiting]),
                # Child pids, so a resume after a hard kill can stop any that outlived us.
                "pids": {str(p.trial_id): p.popen.pid for p in self.pool.running.values()},
                "queue": [operation_to_json(op) for op in self.queue],
                "events": self.events,
                "last_event": self.last_event,  # for people reading the file
                "shutdown": self.shutdown,
                "shutdown_failure": self.shutdown_failure,
                "timeline": self.timeline,
                "elapsed_s": self.elapsed_s(),
            },
        }

    def load_runner_state(self, state: dict[str, Any]) -> None:
        """Restore the runner's part of ``state.json`` (the method is restored by the caller)."""
        runner = state["runner"]
        self.trials = {int(k): dict(v) for k, v in runner["trials"].items()}
        self.waiting = deque((int(t), int(n)) for t, n in runner["waiting"])
        self.queue = deque(operation_from_json(op) for op in runner["queue"])
        self.events = int(runner["events"])
        self.last_event = str(runner.get("last_event", ""))
        self.shutdown = bool(runner["shutdown"])
        self.shutdown_failure = bool(runner.get("shutdown_failure", False))
        self.timeline = list(runner.get("timeline", []))
        self.elapsed_before = float(runner.get("elapsed_s", 0.0))
        for tid, _ in self.waiting:
            if self.trials.get(tid, {}).get("status") == RUNNING:
                self.trials[tid]["status"] = IDLE
        for tid, pid in runner.get("pids", {}).items():
            trial_dir = self._trial_dir(int(tid)).resolve()
            if kill_stale_child(int(pid), str(trial_dir)):
                self._log(f"trial {tid}: stopped child {pid} left by the previous run")

    def save(self) -> None:
        write_json_atomic(self.out_dir / STATE_FILE, self.state_dict(), allow_nan=True)

    # -- events --------------------------------------------------------------------------------
    def _event(self, name: str, handler: Callable[[], list[Operation]]) -> None:
        """Deliver one event to the method, queue its operations, save the state."""
        ops = handler()
        self.queue.extend(ops)
        self.events += 1
        self.last_event = name
        self.save()
        if self.progress is not None:
            self.progress.update(self.status())
        if self.stop_after_events is not None and self.events >= self.stop_after_events:
            raise _StopRequested(f"stopped after {self.events} events (test hook)")
        self._check_interrupt()

    def _check_interrupt(self) -> None:
        """A safe point: everything so far is saved, so an interruption may stop here."""
        if self.interrupt:
            raise _StopRequested(self.interrupt)

    def _trial_dir(self, trial_id: int) -> Path:
        return self.out_dir / "trials" / str(trial_id)

    def _process_queue(self) -> None:
        """Act on queued operations in order until the queue is empty or the search ends."""
        while self.queue and not self.shutdown:
            op = self.queue[0]
            if isinstance(op, Create):
                trial_dir = self._trial_dir(op.trial_id)
                (trial_dir / "checkpoint").mkdir(parents=True, exist_ok=True)
                self.trials[op.trial_id] = {
                    "hparams": op.hparams,
                    "dir": str(trial_dir.relative_to(self.out_dir)),
                    "status": CREATED,
                    "lengths": [],
                    "close_requested": False,
                    "failure": None,
                }
                self.queue.popleft()
                self._event(
                    f"trial {op.trial_id} created",
                    lambda op=op: self.method.on_trial_created(op.trial_id),
                )
            elif isinstance(op, ValidateAfter):
                self.queue.popleft()
                trial = self._require_trial(op.trial_id, "ValidateAfter")
                if trial["status"] in (CLOSED, EXITED):
                    self._log(f"ignoring ValidateAfter for trial {op.trial_id} ({trial['status']})")
                else:
                    self.waiting.append((op.trial_id, op.length))
                self.save()
            elif isinstance(op, Close):
                self.queue.popleft()
                trial = self._require_trial(op.trial_id, "Close")
                trial["close_requested"] = True
                self._close_if_idle(op.trial_id)
                self.save()
            elif isinstance(op, Shutdown):
                self.queue.popleft()
                self.shutdown = True
                self.shutdown_failure = op.failure
                self.save()
            else:
                raise RunnerError(f"search method returned a non-operation: {op!r}")

    def _require_trial(self, trial_id: int, what: str) -> dict[str, Any]:
        trial = self.trials.get(trial_id)
        if trial is None:
            raise RunnerError(f"search method sent {what} for unknown trial {trial_id}")
        return trial

    def _has_work(self, trial_id: int) -> bool:
        return trial_id in self.pool.running or any(t == trial_id for t, _ in self.waiting)

    def _close_if_idle(self, trial_id: int) -> None:
        trial = self.trials[trial_id]
        if trial["status"] == CLOSED or self._has_work(trial_id):
            return
        trial["status"] = CLOSED  # a failed trial keeps its "failure" entry
        self._event(f"trial {trial_id} closed", lambda: self.method.on_trial_closed(trial_id))

    # -- children ------------------------------------------------------------------------------
    def _launch_waiting(self) -> None:
        while self.waiting and self.pool.free_slots > 0:
            # The first waiting operation whose trial has no running child.
            index = next(
                (i for i, (t, _) in enumerate(self.waiting) if t not in self.pool.running), None
            )
            if index is None:
                return
            trial_id, length = self.waiting[index]
            trial = self.trials[trial_id]
            trial_dir = self._trial_dir(trial_id)
            existing = read_result(trial_dir / f"result_{length}.json")
            if existing is not None:
                # Finished before an interruption but not yet delivered: use it, don't retrain.
                del self.waiting[index]
                self._log(f"trial {trial_id}: using the saved result for length {length}")
                self._deliver(outcome_from_result(trial_id, length, existing))
                continue
            request = {
                "hparams": trial["hparams"],
                "length": length,
                "checkpoint_dir": str((trial_dir / "checkpoint").resolve()),
                "trial_id": trial_id,
            }
            self.pool.launch(trial_id, length, request, trial_dir)
            del self.waiting[index]  # only now: it is in the pool's running set
            trial["status"] = RUNNING
            self._log(f"trial {trial_id}: training to length {length}")
            self.save()

    def _deliver(self, outcome: TrialOutcome) -> None:
        """File one child's outcome with the method (and close the trial when due)."""
        trial_id, length = outcome.trial_id, outcome.length
        trial = self.trials[trial_id]
        self.timeline.append(
            {
                "trial_id": trial_id,
                "length": length,
                "ok": outcome.ok,
                "kind": outcome.kind,
                "seconds": round(outcome.seconds, 3),
                "elapsed_s": round(self.elapsed_s(), 3),
            }
        )
        if outcome.ok:
            trial["status"] = IDLE
            trial["lengths"].append(length)
            self._log(
                f"trial {trial_id}: length {length} done in {outcome.seconds:.1f} s "
                f"({_short_metrics(outcome.metrics)})"
            )
            self._event(
                f"trial {trial_id} validated at {length}",
                lambda: self.method.on_validation_completed(
                    trial_id, dict(outcome.metrics), length
                ),
            )
            if trial["close_requested"]:
                self._close_if_idle(trial_id)
            return
        reason = ExitReason.INVALID_HP if outcome.kind == "invalid" else ExitReason.ERRORED
        trial["status"] = EXITED
        trial["failure"] = {"kind": outcome.kind, "message": outcome.message, "length": length}
        # The trial is gone: any further work queued for it is dropped.
        self.waiting = deque(w for w in self.waiting if w[0] != trial_id)
        self._log(f"trial {trial_id} failed ({outcome.kind}): {outcome.message}")
        self._event(
            f"trial {trial_id} exited early ({reason.value})",
            lambda: self.method.on_trial_exited_early(trial_id, reason, outcome.message),
        )
        self._close_if_idle(trial_id)

    # -- the loop ------------------------------------------------------------------------------
    def status(self) -> SearchStatus:
        values = list(self.trials.values())
        return SearchStatus(
            running=len(self.pool.running),
            waiting=len(self.waiting),
            created=len(values),
            closed=sum(1 for t in values if t["status"] == CLOSED and not t["failure"]),
            failed=sum(1 for t in values if t["failure"]),
            events=self.events,
            evaluations=sum(1 for e in self.timeline if e["ok"]),
            elapsed_s=self.elapsed_s(),
            progress=float(self.method.progress()),
            front=self._front_summary(),
        )

    def _front_summary(self) -> dict[str, Any]:
        try:
            from hwnas.searchers.report import front_summary

            return front_summary(self.method.records(), self.config.to_objectives())
        except Exception as exc:  # the display must never stop the search
            return {"error": str(exc)}

    def _log(self, message: str) -> None:
        if self.progress is not None:
            self.progress.log(message)

    def start(self) -> None:
        """A fresh search: the initial operations."""
        self._event("initial operations", self.method.initial_operations)

    def _close_settled(self) -> None:
        """Close trials that exited or were asked to close but whose close event was lost
        (an interruption between the two events)."""
        for trial_id, trial in list(self.trials.items()):
            if trial["status"] != CLOSED and (trial["close_requested"] or trial["failure"]):
                self._close_if_idle(trial_id)

    def run(self) -> str:
        """Process events until Shutdown, idleness or an interruption; why it stopped."""
        try:
            self._close_settled()
            while True:
                self._check_interrupt()
                self._process_queue()
                if self.shutdown:
                    return "shutdown"
                self._launch_waiting()
                if self.queue:
                    continue  # delivering a saved result produced operations
                if not self.pool.running:
                    if self.waiting:
                        continue
                    return "idle"  # the method asked for nothing more and did not shut down
                finished = self.pool.wait(self.poll_interval_s, max_wait_s=1.0)
                for outcome in finished:
                    self._deliver(outcome)
                if not finished and self.progress is not None:
                    self.progress.update(self.status())
        finally:
            self._stop_children()

    def _stop_children(self) -> None:
        """Kill children left running (interruption, shutdown) and save where they were."""
        running = [(p.trial_id, p.length) for p in self.pool.running.values()]
        if not running:
            return
        self.pool.kill_all()
        # Re-issued on resume, before anything else; the trial resumes from its checkpoint.
        self.waiting = deque(tuple(w) for w in _unique([*running, *self.waiting]))
        for tid, _ in running:
            self.trials[tid]["status"] = IDLE
        self.save()


def _unique(pairs: Sequence[Sequence[int]]) -> list[list[int]]:
    """``[trial_id, length]`` pairs without repeats, first occurrence kept."""
    seen: set[tuple[int, int]] = set()
    out = []
    for t, n in pairs:
        if (t, n) not in seen:
            seen.add((t, n))
            out.append([t, n])
    return out


def _python_path_env() -> dict[str, str]:
    """Let children import the project even when the runner was started from elsewhere."""
    root = str(Path(__file__).resolve().parents[1])
    current = os.environ.get("PYTHONPATH", "")
    parts = [root, *(p for p in current.split(os.pathsep) if p and p != root)]
    return {"PYTHONPATH": os.pathsep.join(parts)}


def _short_metrics(metrics: dict[str, Any]) -> str:
    shown = []
    for key in ("validation_accuracy", "latency_ms", "params"):
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            shown.append(f"{key}={value:.4g}")
    return ", ".join(shown) or "no metrics"


def _make_method(config: SearchConfig) -> Any:
    from hwnas.searchers.method import SearchMethod

    return SearchMethod(config)


def _restore_method(state: dict[str, Any]) -> Any:
    from hwnas.searchers.method import SearchMethod

    return SearchMethod.from_state(state)


def load_state(out_dir: str | Path) -> dict[str, Any]:
    """The saved ``state.json`` of a search folder, with a clear error when missing/corrupt."""
    path = Path(out_dir) / STATE_FILE
    try:
        with open(path, encoding="utf-8") as fh:
            state = json.load(fh)
    except FileNotFoundError:
        raise RunnerError(f"{path}: no saved search here (nothing to resume or report)") from None
    except (OSError, ValueError) as exc:
        raise RunnerError(f"{path}: cannot read the saved search: {exc}") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise RunnerError(f"{path}: not a version-{STATE_VERSION} hwnas search state")
    return state


def run_search(
    config: str | Path | SearchConfig | None,
    out_dir: str | Path,
    *,
    resume: bool = False,
    concurrency: int | None = None,
    trial_command: Sequence[str] | None = None,
    progress: ProgressView | None = None,
    stop_after_events: int | None = None,
    write_report: bool = True,
) -> RunSummary:
    """Run (or, with ``resume=True``, continue) a local search writing into ``out_dir``.

    ``config`` is a YAML path or a validated ``SearchConfig`` (ignored on resume: the copy in
    ``out_dir/config.yaml`` is used). ``trial_command`` replaces ``python -m hwnas.trials.local``
    (it gets ``--request REQ --result RES`` appended); ``stop_after_events`` interrupts the run
    after that many events, as a Ctrl-C would (for tests). Raises ``ConfigError`` before any
    trial starts when the config is invalid.
    """
    out = Path(out_dir)
    if resume:
        state = load_state(out)
        cfg = load_config(out / CONFIG_FILE)
        method = _restore_method(state["method"])
    else:
        if config is None:
            raise RunnerError("a config is needed to start a search")
        cfg = config if isinstance(config, SearchConfig) else load_config(config)
        if (out / STATE_FILE).exists():
            raise RunnerError(
                f"{out} already holds a search ({STATE_FILE}); use --resume {out} to continue "
                "it or choose another --out"
            )
        out.mkdir(parents=True, exist_ok=True)
        _write_config_copy(config, cfg, out / CONFIG_FILE)
        method = _make_method(cfg)
    view = progress if progress is not None else ProgressView.for_stream(sys.stderr)
    runner = LocalRunner(
        cfg,
        out,
        method,
        concurrency=concurrency,
        trial_command=trial_command,
        progress=view,
        stop_after_events=stop_after_events,
    )
    if resume:
        runner.load_runner_state(state)
        view.log(
            f"resuming {out}: {runner.events} events so far, "
            f"{len(runner.waiting)} operation(s) to issue again"
        )
    interrupted, reason = False, ""
    with view, _deferred_interrupts(runner):
        try:
            if not resume:
                runner.start()
            reason = runner.run()
        except (KeyboardInterrupt, _StopRequested) as exc:
            interrupted = True
            reason = f"interrupted: {str(exc) or 'Ctrl-C'}"
            view.log(f"{reason}; state saved, continue with: hwnas search --resume {out}")
    files: list[str] = []
    if write_report and not interrupted:
        files = [str(p) for p in report_search(out, cfg, method, runner.timeline)]
    values = list(runner.trials.values())
    return RunSummary(
        out_dir=out,
        finished=reason == "shutdown",
        interrupted=interrupted,
        events=runner.events,
        trials=len(values),
        completed=sum(1 for t in values if t["lengths"] and not t["failure"]),
        failed=sum(1 for t in values if t["failure"]),
        elapsed_s=runner.elapsed_s(),
        reason=reason,
        report_files=files,
    )


def report_search(
    out_dir: Path, config: SearchConfig, method: Any, timeline: list[dict[str, Any]]
) -> list[Path]:
    """Write the report files of a search folder from its method's records."""
    from hwnas.searchers.report import write_report

    meta = {
        "name": config.name,
        "space": {"name": config.space.name, "options": dict(config.space.options)},
        "dataset": config.data.dataset,
        "latency_backend": config.latency.backend,
    }
    return write_report(
        method.records(), out_dir, config.to_objectives(), timeline=timeline, meta=meta
    )


def render_report(out_dir: str | Path) -> list[Path]:
    """Re-render the report of a search folder from its ``state.json`` (``hwnas report``)."""
    out = Path(out_dir)
    state = load_state(out)
    config = load_config(out / CONFIG_FILE)
    method = _restore_method(state["method"])
    return report_search(out, config, method, list(state["runner"].get("timeline", [])))


def _write_config_copy(source: Any, cfg: SearchConfig, target: Path) -> None:
    """Keep the config with the results so ``--resume`` and ``report`` need nothing else."""
    if isinstance(source, (str, Path)):
        shutil.copyfile(source, target)
        return
    import yaml

    with atomic_open(target) as fh:
        fh.write(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


__all__ = [
    "CONFIG_FILE",
    "STATE_FILE",
    "ConfigError",
    "LocalRunner",
    "RunSummary",
    "RunnerError",
    "load_state",
    "render_report",
    "report_search",
    "run_search",
]
