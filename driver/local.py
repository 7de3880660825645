"""Local backend: trials as child processes on this machine, and ``run_search`` around the loop.

``LocalBackend`` runs each requested length in the trial's folder ``OUT/trials/<id>/``
(request and result files, checkpoint, per-trial ``log.txt``), one run per slot at a time: one
slot per visible GPU, else on the CPU. By default each slot has a warm worker
(``hwnas.driver.workers``: ``python -m hwnas.trials.worker``, its own log in
``OUT/workers/``) that serves run after run without a process start, and continues a promoted
trial it still holds in memory; ``runner.warm_workers: false`` or a ``trial_command`` starts
one child ``python -m hwnas.trials.local`` (or that command) per run instead
(``hwnas.driver.processes``). Either way a run's result file outlives an interruption, so a
resumed search uses it instead of training again.

``run_search`` drives a ``SearchMethod`` over it with the driver loop (``hwnas.driver.loop``).
After every event the method's, the loop's and the backend's state are written atomically to
``OUT/state.json``, with the config copied to ``OUT/config.yaml``. ``run_search(None, OUT,
resume=True)`` (``hwnas search --resume OUT``) continues from there: runs that were in flight
start again first, and a trial resumes from its checkpoint (or its already-written result is
used, so nothing trains twice). Ctrl-C and SIGTERM take effect at the next safe point (between
events); trial processes run in their own process groups, die with the search (Linux
``PR_SET_PDEATHSIG``) and are killed as a group on timeout (``runner.trial_timeout_s``).
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.atomic import atomic_open, atomic_path, write_json_atomic
from hwnas.driver.backend import TrialBackend, TrialOutcome
from hwnas.driver.loop import SearchLoop
from hwnas.driver.preflight import preflight
from hwnas.driver.processes import (
    DEFAULT_TRIAL_COMMAND,
    TrialPool,
    kill_stale_child,
    outcome_from_result,
    read_result,
    visible_gpus,
)
from hwnas.driver.progress import ProgressView, SearchStatus
from hwnas.driver.resume import resumed_config, with_budget
from hwnas.driver.run_lock import RunBusyError, RunLock
from hwnas.driver.workers import WORKER_COMMAND, WorkerPool
from hwnas.searchers.config import ConfigError, SearchConfig, load_config
from hwnas.searchers.method import SearchMethod, StateVersionError

STATE_FILE = "state.json"
CONFIG_FILE = "config.yaml"
#: Version 2: the driver loop's layout (method, loop and backend sections).
STATE_VERSION = 2

#: ``factory(config, out_dir, log)`` -> the backend a search runs on (default: LocalBackend).
BackendFactory = Callable[[SearchConfig, Path, Callable[[str], None]], TrialBackend]


class RunnerError(RuntimeError):
    """A local search cannot start or continue (bad output folder, corrupt state)."""


class StopRequested(Exception):
    """Raised at a safe point after Ctrl-C / SIGTERM, or by the ``stop_after_events`` hook."""


class LocalBackend(TrialBackend):
    """Trials as child processes in ``out_dir/trials/<id>/``; see the module docstring."""

    def __init__(
        self,
        out_dir: Path,
        slots: list[str | None],
        *,
        threads_per_trial: int,
        timeout_s: float | None = None,
        command: Sequence[str] | None = None,
        log: Any = None,
        warm_workers: bool = False,
        latency: bool = True,
        worker_command: Sequence[str] | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.pool: TrialPool | WorkerPool
        if warm_workers and not command:
            self.pool = WorkerPool(
                slots,
                trials_dir=self.out_dir / "trials",
                log_dir=self.out_dir / "workers",
                timeout_s=timeout_s,
                threads_per_trial=threads_per_trial,
                extra_env=_python_path_env(),
                latency=latency,
                command=tuple(worker_command) if worker_command else WORKER_COMMAND,
            )
        else:
            self.pool = TrialPool(
                tuple(command) if command else DEFAULT_TRIAL_COMMAND,
                slots,
                timeout_s=timeout_s,
                threads_per_trial=threads_per_trial,
                extra_env=_python_path_env(),
            )
        self.log = log or (lambda message: None)
        self.elapsed_before = 0.0
        self._started = time.monotonic()

    @staticmethod
    def trial_folder(out_dir: Path, trial_id: int) -> Path:
        """Where trial ``trial_id`` of the search in ``out_dir`` keeps its files."""
        return Path(out_dir) / "trials" / str(trial_id)

    def trial_dir(self, trial_id: int) -> Path:
        return self.trial_folder(self.out_dir, trial_id)

    @property
    def free_slots(self) -> int:
        return self.pool.free_slots

    def create(self, trial_id: int, hparams: Mapping[str, Any]) -> None:
        (self.trial_dir(trial_id) / "checkpoint").mkdir(parents=True, exist_ok=True)

    def answer(self, trial_id: int, hparams: Mapping[str, Any], length: int) -> TrialOutcome | bool:
        existing = read_result(self.trial_dir(trial_id) / f"result_{length}.json")
        if existing is None:
            return False
        # Finished before an interruption but not yet delivered: use it, don't retrain.
        self.log(f"trial {trial_id}: using the saved result for length {length}")
        return outcome_from_result(trial_id, length, existing)

    def start(self, trial_id: int, hparams: Mapping[str, Any], length: int) -> None:
        trial_dir = self.trial_dir(trial_id)
        request = {
            "hparams": dict(hparams),
            "length": length,
            "checkpoint_dir": str((trial_dir / "checkpoint").resolve()),
            "trial_id": trial_id,
        }
        self.pool.launch(trial_id, length, request, trial_dir)
        self.log(f"trial {trial_id}: training to length {length}")

    def wait(self, timeout_s: float) -> list[TrialOutcome]:
        outcomes = self.pool.wait(0.2, max_wait_s=timeout_s)
        for o in outcomes:
            if o.ok:
                self.log(
                    f"trial {o.trial_id}: length {o.length} done in {o.seconds:.1f} s "
                    f"({_short_metrics(o.metrics)})"
                )
        return outcomes

    def running(self) -> list[tuple[int, int]]:
        return [(p.trial_id, p.length) for p in self.pool.running.values()]

    def stop_all(self) -> list[tuple[int, int]]:
        running = self.running()
        self.pool.kill_all()
        return running

    def close(self, trial_id: int) -> None:
        if isinstance(self.pool, WorkerPool):
            self.pool.forget(trial_id)  # no more rungs: its worker need not hold it

    def shutdown(self) -> None:
        """Stop every trial process (the search ends or was interrupted)."""
        if isinstance(self.pool, WorkerPool):
            self.pool.close()
        else:
            self.pool.kill_all()

    def elapsed_s(self) -> float:
        return self.elapsed_before + (time.monotonic() - self._started)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            # Trial process ids, so a resume after a hard kill can stop any that outlived us.
            "pids": {str(p.trial_id): p.pid for p in self.pool.running.values()},
            "elapsed_s": self.elapsed_s(),
        }
        if isinstance(self.pool, WorkerPool):
            state["workers"] = self.pool.pids()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        for tid, pid in state.get("pids", {}).items():
            marker = str(self.trial_dir(int(tid)).resolve())
            if kill_stale_child(int(pid), marker):
                self.log(f"trial {tid}: stopped child {pid} left by the previous run")
        # An idle warm worker's command line names the trial folder, not a trial.
        marker = f"{(self.out_dir / 'trials').resolve()}{os.sep}"
        for pid in state.get("workers", []):
            if kill_stale_child(int(pid), marker):
                self.log(f"stopped trial worker {pid} left by the previous run")


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
    #: ``finished`` (budget spent or proposals exhausted), ``stopped`` (gave up after
    #: ``budget.max_consecutive_failures`` failures in a row) or ``interrupted``.
    outcome: str = "finished"
    #: The last failed trial's message (the likely reason a search stopped).
    last_failure: str = ""
    #: The objectives (``{"metric", "goal"}``) and the ranked front as ``pareto.json`` has it.
    objectives: list[dict[str, str]] = field(default_factory=list)
    front: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["out_dir"] = str(self.out_dir)
        return data


def resolve_slots(config: SearchConfig, override: int | None) -> tuple[list[str | None], int]:
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


@contextlib.contextmanager
def _deferred_interrupts(flag: dict[str, str]) -> Iterator[None]:
    """Turn SIGINT/SIGTERM into a request honoured between events (``flag["reason"]``), so
    state.json never misses an operation that was half carried out. A second Ctrl-C
    interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def request(signum: int, frame: Any) -> None:
        flag["reason"] = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {sig: signal.signal(sig, request) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def search_status(loop: SearchLoop, method: SearchMethod, backend: TrialBackend) -> SearchStatus:
    """A snapshot of a search for the progress display."""
    from hwnas.report import front_summary

    records = method.records()
    try:
        front = front_summary(method)
    except Exception as exc:  # the display must never stop the search
        front = {"error": str(exc)}
    return SearchStatus(
        running=len(backend.running()),
        waiting=len(loop.waiting),
        created=len(records),
        closed=sum(1 for r in records if r.status.terminal and not r.status.is_failure),
        failed=sum(1 for r in records if r.status.is_failure),
        events=loop.events,
        evaluations=sum(len(r.results) for r in records),
        elapsed_s=backend.elapsed_s(),
        progress=float(method.progress()),
        front=front,
    )


def _save(out: Path, loop: SearchLoop, method: SearchMethod, backend: TrialBackend) -> None:
    state = {
        "version": STATE_VERSION,
        "method": method.state_dict(),
        "loop": loop.state_dict(),
        "backend": backend.state_dict(),
    }
    write_json_atomic(out / STATE_FILE, state, allow_nan=True)


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
    if not isinstance(state, dict):
        raise RunnerError(f"{path}: not an hwnas search state")
    if state.get("version") != STATE_VERSION:
        raise RunnerError(
            f"{path}: search state version {state.get('version')!r} was written by another "
            f"hwnas (this one reads version {STATE_VERSION}); finish that search with the "
            "hwnas that started it, or start a new one"
        )
    return state


def restore_method(state: Mapping[str, Any], path: Path) -> SearchMethod:
    """The search method of a saved state; ``RunnerError`` naming the file when it is bad."""
    try:
        return SearchMethod.from_state(state["method"])
    except StateVersionError as exc:
        raise RunnerError(f"{path}: {exc}") from None
    except Exception as exc:  # a hand-edited or truncated section: any shape may be there
        raise RunnerError(
            f'{path}: the saved search\'s "method" section is malformed ({_brief(exc)})'
        ) from None


def restore_loop(
    loop: SearchLoop, backend: LocalBackend, state: Mapping[str, Any], path: Path
) -> None:
    """Load the loop's and the backend's sections; ``RunnerError`` naming the file if bad."""
    for section, target in (("loop", loop), ("backend", backend)):
        try:
            target.load_state_dict(state[section])
        except Exception as exc:
            raise RunnerError(
                f'{path}: the saved search\'s "{section}" section is malformed ({_brief(exc)})'
            ) from None


def _brief(exc: BaseException) -> str:
    """An exception in one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def run_search(
    config: str | Path | SearchConfig | None,
    out_dir: str | Path,
    *,
    resume: bool = False,
    budget: Mapping[str, Any] | None = None,
    concurrency: int | None = None,
    trial_command: Sequence[str] | None = None,
    progress: ProgressView | None = None,
    stop_after_events: int | None = None,
    write_report: bool = True,
    check_machine: bool = True,
    backend_factory: BackendFactory | None = None,
    on_change: Callable[[SearchLoop, SearchMethod], None] | None = None,
    warm_start: Sequence[Mapping[str, Any]] | None = None,
) -> RunSummary:
    """Run (or, with ``resume=True``, continue) a local search writing into ``out_dir``.

    ``config`` is a YAML path or a validated ``SearchConfig``. On resume it is optional: the
    copy in ``out_dir/config.yaml`` is used, and a given config may change only the budget and
    the runner (``hwnas.driver.resume``). ``budget`` overrides budget fields (``{"max_trials":
    50}``); a search that had ended continues while the new budget allows.
    ``trial_command`` replaces ``python -m hwnas.trials.local`` (it gets ``--request REQ
    --result RES`` appended); ``stop_after_events`` interrupts the run after that many events,
    as a Ctrl-C would (for tests); ``check_machine=False`` skips the preflight (tests whose
    trial command needs neither a dataset nor a latency backend, and backends whose trials run
    elsewhere).

    ``backend_factory`` runs the trials elsewhere (the Determined SDK backend) with the same
    state.json machinery; ``on_change(loop, method)`` is called after every save (e.g. to
    report the search's progress); ``warm_start`` records seed a fresh search
    (``SearchMethod.warm_start``).

    Before any trial starts and before anything is written: ``ConfigError`` for an invalid
    config, ``PreflightError`` (a ``ConfigError``) when the latency backend or the dataset is
    unusable here, ``RunnerError`` for an unusable folder or saved state, ``RunBusyError``
    when another process runs a search in ``out_dir``.
    """
    out = Path(out_dir)
    with contextlib.ExitStack() as held:
        if resume:
            load_state(out)  # a clear error before anything else when there is nothing here
            held.enter_context(_run_lock(out))
            state = load_state(out)  # again, under the lock
            saved = load_config(out / CONFIG_FILE)
            given = None
            if config is not None:
                given = config if isinstance(config, SearchConfig) else load_config(config)
            cfg = resumed_config(saved, str(out / CONFIG_FILE), given, _source(config), budget)
            changed = cfg.model_dump(mode="json") != saved.model_dump(mode="json")
        else:
            if config is None:
                raise RunnerError("a config is needed to start a search")
            cfg = config if isinstance(config, SearchConfig) else load_config(config)
            cfg = with_budget(cfg, budget)
            _refuse_existing(out)
            changed = False
        if check_machine:
            preflight(cfg, _source(config) if config is not None else str(out / CONFIG_FILE))
        # After the cheap checks: a method may load models (arch2vec) as it is built.
        method = restore_method(state, out / STATE_FILE) if resume else SearchMethod(cfg)
        if not resume:
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RunnerError(f"{out}: cannot create the folder: {exc.strerror}") from None
            held.enter_context(_run_lock(out))
            _refuse_existing(out)  # again, under the lock
            _write_config_copy(config, cfg, out / CONFIG_FILE, exact=budget is None)
        elif changed:
            _write_config_copy(cfg, cfg, out / CONFIG_FILE)
        return _drive(
            out,
            cfg,
            method,
            state if resume else None,
            budget_changed=changed,
            concurrency=concurrency,
            trial_command=trial_command,
            progress=progress,
            stop_after_events=stop_after_events,
            write_report=write_report,
            backend_factory=backend_factory,
            on_change=on_change,
            warm_start=warm_start,
        )


def _drive(
    out: Path,
    cfg: SearchConfig,
    method: SearchMethod,
    state: Mapping[str, Any] | None,
    *,
    budget_changed: bool,
    concurrency: int | None,
    trial_command: Sequence[str] | None,
    progress: ProgressView | None,
    stop_after_events: int | None,
    write_report: bool,
    backend_factory: BackendFactory | None,
    on_change: Callable[[SearchLoop, SearchMethod], None] | None,
    warm_start: Sequence[Mapping[str, Any]] | None,
) -> RunSummary:
    """Run the loop of a prepared search (fresh when ``state`` is None) to its end."""
    view = progress if progress is not None else ProgressView.for_stream(sys.stderr)
    backend: TrialBackend
    if backend_factory is not None:
        backend = backend_factory(cfg, out, view.log)
    else:
        slots, threads = resolve_slots(cfg, concurrency)
        backend = LocalBackend(
            out,
            slots,
            threads_per_trial=threads,
            timeout_s=cfg.runner.trial_timeout_s,
            command=trial_command or cfg.runner.trial_command,
            log=view.log,
            warm_workers=cfg.runner.warm_workers,
            latency=cfg.latency.enabled,
        )
    if warm_start and state is None:
        counts = method.warm_start(list(warm_start))
        view.log(f"warm start: {len(warm_start)} earlier results ({counts})")
    interrupt: dict[str, str] = {}

    def after_event(loop: SearchLoop) -> None:
        """A safe point: save, show, and stop here if asked to."""
        _save(out, loop, method, backend)
        if on_change is not None:
            on_change(loop, method)
        view.update(search_status(loop, method, backend))
        if stop_after_events is not None and loop.events >= stop_after_events:
            raise StopRequested(f"stopped after {loop.events} events (test hook)")
        if interrupt:
            raise StopRequested(interrupt["reason"])

    def while_waiting(loop: SearchLoop) -> None:
        view.update(search_status(loop, method, backend))
        if interrupt:
            raise StopRequested(interrupt["reason"])

    loop = SearchLoop(method, backend, on_change=after_event, on_wait=while_waiting, log=view.log)
    resume = state is not None
    if state is not None:
        restore_loop(loop, backend, state, out / STATE_FILE)
        view.log(
            f"resuming {out}: {loop.events} events so far, "
            f"{len(loop.waiting)} operation(s) to issue again"
        )
    interrupted, reason = False, ""
    with view, _deferred_interrupts(interrupt):
        try:
            if not resume:
                loop.start()
            elif budget_changed or method.shut_down:
                if method.abort_reason:
                    view.log(f"continuing a search that had stopped: {method.abort_reason}")
                loop.continue_with(
                    "search continued",
                    lambda: method.on_continue(cfg.budget if budget_changed else None),
                )
            reason = loop.run()
        except (KeyboardInterrupt, StopRequested) as exc:
            interrupted = True
            reason = f"interrupted: {str(exc) or 'Ctrl-C'}"
            view.log(f"{reason}; state saved, continue with: hwnas search --resume {out}")
        finally:
            _save(out, loop, method, backend)  # runs stopped above are queued to start again
            if isinstance(backend, LocalBackend):
                backend.shutdown()
    from hwnas.report import compute_front, front_rows

    files: list[str] = []
    if write_report and not interrupted:
        files = [str(p) for p in report_search(out, cfg, method, loop.timeline)]
    records = method.records()
    if interrupted:
        outcome = "interrupted"
    elif method.abort_reason:
        outcome, reason = "stopped", f"stopped: {method.abort_reason}"
    else:
        outcome, reason = "finished", _finish_reason(method, reason)
    return RunSummary(
        out_dir=out,
        finished=outcome == "finished",
        interrupted=interrupted,
        events=loop.events,
        trials=len(records),
        completed=sum(1 for r in records if r.results and not r.status.is_failure),
        failed=sum(1 for r in records if r.status.is_failure),
        elapsed_s=backend.elapsed_s(),
        reason=reason,
        report_files=files,
        outcome=outcome,
        last_failure=_last_failure(records),
        objectives=[{"metric": o.metric, "goal": o.goal} for o in method.objectives.objectives],
        front=front_rows(compute_front(records, method.objectives)),
    )


def _finish_reason(method: SearchMethod, loop_reason: str) -> str:
    """Why a search that did not fail ended, in words."""
    budget = method.config.budget
    if method.exhausted:
        return (
            f"finished: the strategy found no acceptable new architecture in "
            f"{budget.max_consecutive_rejections} proposals in a row"
        )
    if loop_reason in ("shutdown", "idle"):
        return f"finished: {len(method.trials)} of budget.max_trials={budget.max_trials} run"
    return f"finished: {loop_reason}"


def _source(config: Any) -> str:
    return str(config) if isinstance(config, (str, Path)) else "<config>"


def _refuse_existing(out: Path) -> None:
    if (out / STATE_FILE).exists():
        raise RunnerError(
            f"{out} already holds a search ({STATE_FILE}); use --resume {out} to continue "
            "it or choose another --out"
        )


@contextlib.contextmanager
def _run_lock(out: Path) -> Iterator[None]:
    """Hold ``out``'s run lock (``RunBusyError`` if another search has it)."""
    lock = RunLock(out)
    try:
        lock.acquire()
    except OSError as exc:
        raise RunnerError(f"{out}: cannot write in the output folder: {exc.strerror}") from None
    try:
        yield
    finally:
        lock.release()


def _last_failure(records: Sequence[Any]) -> str:
    """The message of the most recent failed trial (why a search stopped on failures)."""
    failed = [r for r in records if r.status.is_failure and r.message]
    return failed[-1].message.strip().splitlines()[-1] if failed else ""


def report_search(
    out_dir: Path, config: SearchConfig, method: SearchMethod, timeline: list[dict[str, Any]]
) -> list[Path]:
    """Write the report files of a search folder from its method's records."""
    from hwnas.report import write_report

    meta = {
        "name": config.name,
        "space": {"name": config.space.name, "options": dict(config.space.options)},
        "dataset": config.data.dataset,
        "latency_backend": config.latency.backend,
    }
    return write_report(method.records(), out_dir, method.objectives, timeline=timeline, meta=meta)


def render_report(out_dir: str | Path) -> list[Path]:
    """Re-render the report of a search folder from its ``state.json`` (``hwnas report``)."""
    out = Path(out_dir)
    state = load_state(out)
    config = load_config(out / CONFIG_FILE)
    method = restore_method(state, out / STATE_FILE)
    try:
        timeline = list(state["loop"]["timeline"])
    except (KeyError, TypeError) as exc:
        raise RunnerError(f"{out / STATE_FILE}: the saved loop has no timeline ({exc!r})") from None
    return report_search(out, config, method, timeline)


def _write_config_copy(source: Any, cfg: SearchConfig, target: Path, *, exact: bool = True) -> None:
    """Keep the config with the results so ``--resume`` and ``report`` need nothing else:
    the file itself (comments kept) when ``exact``, else ``cfg`` as YAML."""
    if exact and isinstance(source, (str, Path)):
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        return
    import yaml

    with atomic_open(target) as fh:
        fh.write(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def _python_path_env() -> dict[str, str]:
    """Let children import hwnas even when the search was started from elsewhere: the folder
    holding the ``hwnas`` package (a checkout's root, or site-packages), never the rooms."""
    import hwnas

    root = str(Path(hwnas.__file__).resolve().parents[1])
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


__all__ = [
    "CONFIG_FILE",
    "STATE_FILE",
    "BackendFactory",
    "ConfigError",
    "LocalBackend",
    "RunBusyError",
    "RunSummary",
    "RunnerError",
    "load_state",
    "render_report",
    "report_search",
    "resolve_slots",
    "restore_method",
    "run_search",
    "search_status",
]
