"""One trial run served the same way in a fresh process and in a warm worker.

``TrialSession.run(request)`` trains ``request["hparams"]``' architecture to the cumulative
``request["length"]``, checkpointing into ``request["checkpoint_dir"]``, and returns the result
dict of the trial contract (``hwnas.contract``) with ``"timings"``: where the run's time went,
by phase (``PHASES``). The fresh child (``python -m hwnas.trials.local``) serves one run with a
new session; a warm worker (``python -m hwnas.trials.worker``) serves many with one session,
which keeps what the next run can reuse:

* decoded datasets (``trials.data.DataCache``); every trial still gets its own seeded split;
* the last ``hold`` trials it trained, so a promoted trial continues without a rebuild or a
  restore. A held trial is used only while its checkpoint file is still the one this session
  wrote (same inode, size and mtime), and continues from the RNG state saved in it, so it
  trains bitwise as a fresh process resuming from that file would;
* a torch-free ONNX timing process (``hwnas.latency.worker.OnnxWorker``).

A supernet trial (``kind: supernet``) runs ``trials.supernet.run.train_supernet_to`` unchanged:
in a warm worker it saves the process start and the imports, nothing more.

Two changes from a plain ``trials.loop.train_to``, both outside what training computes: the
latency is measured *before* training (it depends on the architecture only, so the epoch's
checkpoint already carries it and no second checkpoint is written for it), and a checkpoint is
written by a background thread from a copy of the state, overlapping validation; the result is
written only after the checkpoint is on disk, so a resumed search never sees a result whose
checkpoint is missing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.contract import failed_result, ok_result
from hwnas.trials.errors import TrialError, TrialOutOfMemory

log = logging.getLogger("hwnas.trials.session")

#: Where a run's wall time goes. ``startup``: from the request's ``launched_at`` (the parent's
#: clock when it launched the run) until the session can work (process start and imports in a
#: fresh process; the hand-over in a warm worker); ``other``: the rest of the run (result
#: writing, what no phase covers).
PHASES = ("startup", "data", "build", "restore", "train", "validate", "latency", "checkpoint")


def seconds_since_process_start() -> float:
    """Wall seconds since this process started (Linux ``/proc``; 0.0 where unknown)."""
    import os

    try:
        stat = Path("/proc/self/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: start time, clock ticks
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def exit_without_teardown(code: int) -> None:
    """End a trial process once its result is written: flush what it printed, then leave
    without the interpreter's teardown, which takes 1-2 s once torch and its compiler stack
    are loaded (measured on 2 busy cores) and does nothing a finished trial needs."""
    import os
    import sys

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


class PhaseTimer:
    """Wall seconds per phase; a phase inside another is not counted twice."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._inner: list[float] = []  # per open phase: seconds of the phases inside it

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        self._inner.append(0.0)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            inner = self._inner.pop()
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - inner
            if self._inner:
                self._inner[-1] += elapsed

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + max(0.0, seconds)


def _cpu_copy(value: Any) -> Any:
    """``value`` with every tensor copied to the CPU (a snapshot training cannot change)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _cpu_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(v) for v in value)
    return value


class CheckpointWriter:
    """Writes checkpoints in a background thread, one at a time and in order; ``wait``
    returns when the last one is on disk (and raises what writing it raised)."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, directory: str | Path, state: dict[str, Any]) -> None:
        from hwnas.trials.checkpoint import save_checkpoint

        self.wait()

        def write() -> None:
            try:
                save_checkpoint(directory, state)
            except BaseException as exc:  # handed to the trial's thread by wait()
                self._error = exc

        self._thread = threading.Thread(target=write, name="hwnas-checkpoint", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


@dataclass
class _Held:
    """A trial kept in memory after its run: the training state and what proves that its
    checkpoint file is still the one it wrote."""

    run: Any  # hwnas.trials.loop.TrialRun
    hparams: dict[str, Any]
    checkpoint: Path
    fingerprint: tuple[int, int, int]
    rng: dict[str, Any]


def _fingerprint(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class TrialSession:
    """Serves trial runs; see the module docstring. ``hold``: how many trained trials to keep
    in memory for their next rung (0: none, a fresh process); ``keep_data``: keep decoded
    datasets; ``keep_latency_worker``: keep one ONNX timing process."""

    def __init__(
        self, *, hold: int = 0, keep_data: bool = False, keep_latency_worker: bool = False
    ) -> None:
        from hwnas.trials.data import DataCache

        self.hold = max(0, int(hold))
        self.data_cache = DataCache() if keep_data else None
        self.keep_latency_worker = keep_latency_worker
        self._latency_worker: Any = None
        self._held: OrderedDict[int, _Held] = OrderedDict()
        self._threads: int | None = None  # torch's thread count when the session began
        self.runs = 0

    # -- what the session keeps ----------------------------------------------------------------
    def held(self) -> list[int]:
        """Trial ids kept in memory, oldest first."""
        return list(self._held)

    def forget(self, trial_id: int) -> None:
        """Drop a kept trial (it is closed, or another process continues it)."""
        if self._held.pop(trial_id, None) is not None:
            self._release_device_memory()

    def start_latency_worker(self) -> None:
        """Start the ONNX timing process now (a warm worker does so while it is idle)."""
        if self.keep_latency_worker and self._latency_worker is None:
            from hwnas.latency.worker import OnnxWorker

            self._latency_worker = OnnxWorker()

    def close(self) -> None:
        self._held.clear()
        if self._latency_worker is not None:
            self._latency_worker.close()
            self._latency_worker = None

    # -- one run ---------------------------------------------------------------------------------
    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Serve one request of the trial contract; never raises for a trial's own failure.
        ``request["launched_at"]`` (``time.time()`` at launch, optional) dates ``startup``."""
        timer = PhaseTimer()
        begun = time.perf_counter()
        trial_id = request.get("trial_id")
        try:
            with timer.phase("startup"):
                # Imported here so a broken install still yields a result, not a traceback.
                import torch  # noqa: F401

                from hwnas.trials.loop import TrialRun  # noqa: F401
            launched = request.get("launched_at")
            if isinstance(launched, (int, float)):
                before = time.time() - (time.perf_counter() - begun)
                timer.add("startup", before - launched)
            try:
                metrics = self._train(request, timer)
            except TrialOutOfMemory:
                if not self._held:
                    raise
                # The trials held for later may be what filled the device: let them go and
                # run again from the checkpoint (epochs done before the failure are kept).
                log.warning("out of memory with %d trials held: retrying without", len(self._held))
                self._held.clear()
                self._release_device_memory()
                metrics = self._train(request, timer)
            result = ok_result(metrics)
        except TrialError as exc:
            log.error("trial failed (%s): %s", exc.kind, exc)
            result = failed_result(exc.kind, str(exc))
        except Exception as exc:
            traceback.print_exc()
            result = failed_result("error", f"{type(exc).__name__}: {exc}")
        if not result["ok"] and isinstance(trial_id, int):
            self.forget(trial_id)  # a failed trial is never continued from memory
        self.runs += 1
        if result["ok"]:
            timings = {k: round(timer.seconds.get(k, 0.0), 4) for k in PHASES}
            timings["run"] = round(time.perf_counter() - begun + timer.seconds["startup"], 4)
            result["timings"] = timings
        return result

    def _train(self, request: dict[str, Any], timer: PhaseTimer) -> dict[str, Any]:
        import torch

        from hwnas.trials.data import load_data
        from hwnas.trials.hparams import parse_hparams
        from hwnas.trials.loop import TrialRun
        from hwnas.trials.supernet.settings import is_supernet

        hparams = request["hparams"]
        length = int(request["length"])
        directory = Path(request["checkpoint_dir"])
        trial_id = request.get("trial_id")
        if is_supernet(hparams):
            # A weight-sharing supernet (``kind: supernet``): its own entry, which loads its own
            # data and writes its ranking; the worker saves only the process start and imports.
            from hwnas.trials.supernet.run import train_supernet_to

            with timer.phase("train"):
                return train_supernet_to(hparams, length, directory)
        hp = parse_hparams(hparams)
        if self._threads is None:
            self._threads = torch.get_num_threads()
        # What a fresh process starts with, whatever the previous trial here set.
        torch.set_num_threads(self._threads)
        held = self._take_held(trial_id, hparams, directory)
        if hp.training.compile and held is None and self.runs:
            # A new model in a process that compiled others: start with dynamo's recompile
            # budget (per code object, shared by every model of the space) unspent.
            torch._dynamo.reset()
        with timer.phase("data"):
            data = load_data(hp.data, hp.seed, self.data_cache)
        if held is not None:
            from hwnas.trials.checkpoint import restore_rng_state

            run = held.run
            run.data = data  # a held trial keeps no dataset (see _keep)
            if run.device.type == "cpu" and hp.training.cpu_threads is not None:
                torch.set_num_threads(hp.training.cpu_threads)
            restore_rng_state(held.rng)  # as the checkpoint holds it: others trained since
            log.info("trial %s: continuing in memory from epoch %d", trial_id, run.epoch)
        else:
            with timer.phase("build"):
                run = TrialRun(hparams, data=data)
            with timer.phase("restore"):
                run.restore(directory)

        # Latency first: it depends on the architecture alone, so the first epoch's checkpoint
        # carries it (no checkpoint of its own); the measurement leaves every RNG as it was.
        measured = False
        if run.hp.latency.enabled and run.latency is None:
            with timer.phase("latency"):
                try:
                    run.measure_latency(worker=self._timing_worker())
                except BaseException:
                    self._drop_timing_worker()  # it may be what failed: the next gets a new one
                    raise
            measured = True

        writer = CheckpointWriter()
        saved_rng: dict[str, Any] = {}

        def after_epoch(epoch: int, train_metrics: dict[str, Any]) -> None:
            with timer.phase("checkpoint"):
                state = run.state_dict()
                saved_rng["rng"] = state["rng"]
                writer.submit(directory, _cpu_copy(state))

        try:
            with timer.phase("train"):
                run.train_to(length, after_epoch=after_epoch)
            if measured and not saved_rng:  # nothing trained (already at the length)
                after_epoch(run.epoch, {})
            with timer.phase("validate"):
                metrics = run.metrics()
        finally:
            with timer.phase("checkpoint"):
                writer.wait()
        if self.hold and isinstance(trial_id, int):
            self._keep(trial_id, run, hparams, directory, saved_rng.get("rng"))
        return metrics

    # -- held trials -------------------------------------------------------------------------
    def _take_held(self, trial_id: Any, hparams: dict[str, Any], directory: Path) -> _Held | None:
        held = self._held.pop(trial_id, None) if isinstance(trial_id, int) else None
        if held is None:
            return None
        from hwnas.trials.checkpoint import CHECKPOINT_FILE

        path = directory / CHECKPOINT_FILE
        if (
            held.hparams != hparams
            or held.checkpoint != path
            or _fingerprint(path) != held.fingerprint
        ):
            log.info("trial %s: its checkpoint changed since this worker held it", trial_id)
            return None
        return held

    def _keep(
        self,
        trial_id: int,
        run: Any,
        hparams: dict[str, Any],
        directory: Path,
        rng: dict[str, Any] | None,
    ) -> None:
        from hwnas.trials.checkpoint import CHECKPOINT_FILE, load_checkpoint

        path = directory / CHECKPOINT_FILE
        if rng is None:  # trained nothing this run: the file's RNG is the one to resume with
            state = load_checkpoint(directory)
            if state is None:
                return
            rng = state["rng"]
        fingerprint = _fingerprint(path)
        if fingerprint is None:
            return
        run.data = None  # re-split from the session's cache when continued: holds no copy
        self._held[trial_id] = _Held(run, hparams, path, fingerprint, rng)
        while len(self._held) > self.hold:
            self._held.popitem(last=False)
            self._release_device_memory()

    @staticmethod
    def _release_device_memory() -> None:
        import sys

        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _timing_worker(self) -> Any:
        if self.keep_latency_worker and self._latency_worker is None:
            self.start_latency_worker()
        return self._latency_worker

    def _drop_timing_worker(self) -> None:
        if self._latency_worker is not None:
            self._latency_worker.kill()
            self._latency_worker = None


__all__ = [
    "PHASES",
    "CheckpointWriter",
    "PhaseTimer",
    "TrialSession",
    "exit_without_teardown",
    "seconds_since_process_start",
]
