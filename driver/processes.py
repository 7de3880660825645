"""Trial child processes for the local backend: launch, watch, time out, collect the result.

Each ``ValidateAfter`` becomes one child ``python -m hwnas.trials.local --request REQ --result RES``
in its own process group (so a timeout kills the trial and anything it forked). The child's
stdout and stderr go to the trial's ``log.txt``. Nothing here knows about search methods.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from hwnas.atomic import write_json_atomic
from hwnas.driver.backend import FAILURE_KINDS, TrialOutcome

#: The child command; the runner appends ``--request REQ --result RES``.
DEFAULT_TRIAL_COMMAND = (sys.executable, "-m", "hwnas.trials.local")


@dataclass
class TrialProcess:
    """One running child: its process, files, slot and deadline."""

    trial_id: int
    length: int
    popen: subprocess.Popen
    result_path: Path
    log: TextIO
    slot: int
    started: float
    deadline: float | None
    timed_out: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid


def _die_with_parent() -> None:  # pragma: no cover (runs in the forked child)
    """Linux: the child gets SIGKILL when the runner dies (even by SIGKILL), so a killed
    runner leaves no orphan trial training into a checkpoint that a resume will use."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def kill_stale_child(pid: int, marker: str) -> bool:
    """Kill the process group of ``pid`` if it still runs a command containing ``marker``
    (a trial child left by a runner that died); True when one was killed."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    if marker not in cmdline:
        return False  # the pid was reused by something else
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
        return True
    return False


def read_result(path: Path) -> dict[str, Any] | None:
    """The child's result JSON, or None when absent or unreadable (a crash mid-write)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "ok" in data else None


def outcome_from_result(
    trial_id: int, length: int, result: dict[str, Any], seconds: float = 0.0
) -> TrialOutcome:
    """Turn a result dict of the trial contract into a ``TrialOutcome``."""
    if result.get("ok"):
        metrics = result.get("metrics")
        if not isinstance(metrics, dict):
            return TrialOutcome(
                trial_id,
                length,
                False,
                kind="error",
                message="result has ok=true but no metrics dict",
                seconds=seconds,
            )
        return TrialOutcome(trial_id, length, True, metrics=metrics, seconds=seconds)
    kind = str(result.get("kind", "error"))
    if kind not in FAILURE_KINDS:
        kind = "error"
    return TrialOutcome(
        trial_id, length, False, kind=kind, message=str(result.get("message", "")), seconds=seconds
    )


def child_env(
    device: str | None, threads_per_trial: int, extra_env: dict[str, str]
) -> dict[str, str]:
    """The environment of a trial process on one slot: its thread slice and its device."""
    env = dict(os.environ)
    env.update(extra_env)
    threads = str(threads_per_trial)
    # Concurrent trials share the cores: each gets its own slice of threads.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = threads
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    elif "CUDA_VISIBLE_DEVICES" not in extra_env:
        env["CUDA_VISIBLE_DEVICES"] = ""  # CPU slot: keep the trial off any GPU
    return env


def isolated_process() -> dict[str, Any]:
    """``subprocess.Popen`` arguments for a trial process: its own process group (killable as
    a whole, immune to the terminal's ^C) that dies with the runner (Linux)."""
    return {
        "start_new_session": True,
        "preexec_fn": _die_with_parent if sys.platform.startswith("linux") else None,
    }


def close_ended_run(
    trial_id: int,
    length: int,
    result_path: Path,
    returncode: int | None,
    *,
    timed_out: bool,
    timeout_s: float | None,
    log: TextIO,
    seconds: float,
    ended: str,
) -> TrialOutcome:
    """The outcome of a run whose process ended (or was killed), with a last line in its log
    (``ended``: how the process ended) and the log closed."""
    outcome = ended_run_outcome(
        trial_id,
        length,
        result_path,
        returncode,
        timed_out=timed_out,
        timeout_s=timeout_s,
        log_name=log.name,
        seconds=seconds,
    )
    status = "ok" if outcome.ok else f"{outcome.kind}: {outcome.message}"
    log.write(f"=== hwnas: {ended}, {seconds:.1f} s, {status} ===\n")
    log.close()
    return outcome


def ended_run_outcome(
    trial_id: int,
    length: int,
    result_path: Path,
    returncode: int | None,
    *,
    timed_out: bool,
    timeout_s: float | None,
    log_name: str,
    seconds: float,
) -> TrialOutcome:
    """The outcome of a run whose process ended (or was killed): its result file when it
    wrote one, else why it has none (timeout, SIGKILL: most likely out of memory, a crash)."""
    # A result written before the kill still counts (e.g. a child stuck in its teardown).
    result = read_result(result_path)
    if result is not None:
        return outcome_from_result(trial_id, length, result, seconds)
    if timed_out:
        message = f"killed after exceeding the trial timeout of {timeout_s:g} s"
        return TrialOutcome(
            trial_id, length, False, kind="timeout", message=message, seconds=seconds
        )
    if returncode == -signal.SIGKILL:  # not ours: most likely the kernel's out-of-memory killer
        return TrialOutcome(
            trial_id,
            length,
            False,
            kind="oom",
            message="trial process killed by SIGKILL (out of memory?)",
            seconds=seconds,
        )
    return TrialOutcome(
        trial_id,
        length,
        False,
        kind="crash",
        message=f"trial process exited with code {returncode} and no result"
        f"{_last_words(log_name)}; see {log_name}",
        seconds=seconds,
    )


class TrialPool:
    """Runs at most ``len(slots)`` trial children at once; slot ``i`` maps to a device."""

    def __init__(
        self,
        command: tuple[str, ...] | list[str],
        slots: list[str | None],
        *,
        timeout_s: float | None,
        threads_per_trial: int,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        if not slots:
            raise ValueError("a trial pool needs at least one slot")
        self.command = list(command)
        self.slots = list(slots)  # CUDA_VISIBLE_DEVICES value per slot, None = CPU
        self.timeout_s = timeout_s
        self.threads_per_trial = max(1, int(threads_per_trial))
        self.extra_env = dict(extra_env or {})
        self.running: dict[int, TrialProcess] = {}  # by trial id

    @property
    def free_slots(self) -> int:
        return len(self.slots) - len(self.running)

    def _free_slot(self) -> int:
        used = {p.slot for p in self.running.values()}
        return next(i for i in range(len(self.slots)) if i not in used)

    def _env(self, slot: int) -> dict[str, str]:
        return child_env(self.slots[slot], self.threads_per_trial, self.extra_env)

    def launch(self, trial_id: int, length: int, request: dict[str, Any], trial_dir: Path) -> None:
        """Write the request file and start the child for ``trial_id`` up to ``length``."""
        if trial_id in self.running:
            raise RuntimeError(f"trial {trial_id} already has a running child")
        if self.free_slots <= 0:
            raise RuntimeError("no free slot to launch a trial")
        trial_dir = trial_dir.resolve()
        trial_dir.mkdir(parents=True, exist_ok=True)
        request_path = trial_dir / f"request_{length}.json"
        result_path = trial_dir / f"result_{length}.json"
        result_path.unlink(missing_ok=True)
        slot = self._free_slot()
        log = open(trial_dir / "log.txt", "a", encoding="utf-8")  # noqa: SIM115 (closed on reap)
        log.write(
            f"\n=== hwnas: trial {trial_id} to length {length} "
            f"({time.strftime('%Y-%m-%d %H:%M:%S')}) ===\n"
        )
        log.flush()
        argv = [*self.command, "--request", str(request_path), "--result", str(result_path)]
        request = {**request, "launched_at": time.time()}  # dates the child's start-up
        write_json_atomic(request_path, request, allow_nan=True)
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._env(slot),
            **isolated_process(),
        )
        now = time.monotonic()
        deadline = now + self.timeout_s if self.timeout_s else None
        self.running[trial_id] = TrialProcess(
            trial_id, length, popen, result_path, log, slot, now, deadline
        )

    def _kill(self, proc: TrialProcess) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait()

    def poll(self) -> list[TrialOutcome]:
        """Reap finished children (killing those past their deadline); their outcomes."""
        done: list[TrialOutcome] = []
        now = time.monotonic()
        for trial_id, proc in list(self.running.items()):
            if proc.popen.poll() is None:
                if proc.deadline is None or now < proc.deadline:
                    continue
                proc.timed_out = True
                self._kill(proc)
            del self.running[trial_id]
            done.append(self._reap(proc))
        return done

    def _reap(self, proc: TrialProcess) -> TrialOutcome:
        seconds = time.monotonic() - proc.started
        rc = proc.popen.returncode
        return close_ended_run(
            proc.trial_id,
            proc.length,
            proc.result_path,
            rc,
            timed_out=proc.timed_out,
            timeout_s=self.timeout_s,
            log=proc.log,
            seconds=seconds,
            ended=f"exit code {rc}",
        )

    def wait(
        self, poll_interval_s: float = 0.2, max_wait_s: float | None = None
    ) -> list[TrialOutcome]:
        """Block until at least one child finishes (or ``max_wait_s`` passes)."""
        start = time.monotonic()
        while True:
            done = self.poll()
            if done or not self.running:
                return done
            if max_wait_s is not None and time.monotonic() - start >= max_wait_s:
                return []
            time.sleep(poll_interval_s)

    def kill_all(self) -> list[int]:
        """Kill every running child (Ctrl-C, shutdown); the trial ids that were running."""
        ids = list(self.running)
        for proc in self.running.values():
            self._kill(proc)
            proc.log.write("=== hwnas: killed by the runner (interrupted) ===\n")
            proc.log.close()
        self.running.clear()
        return ids


def visible_gpus() -> list[str]:
    """GPU ids a child may use: ``CUDA_VISIBLE_DEVICES`` if set, else torch's count."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch  # lazily: the runner itself needs no torch on CPU-only use
    except ImportError:
        return []
    try:
        count = torch.cuda.device_count()
    except Exception:
        return []
    return [str(i) for i in range(count)]


def _last_words(log_path: str) -> str:
    """``" (LAST LINE)"``: the last line a crashed child wrote (usually its exception), or
    nothing when its log is empty or unreadable."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
            lines = fh.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    if not last or last.startswith("=== hwnas:"):
        return ""
    return f" ({last[:300]})"


__all__ = [
    "DEFAULT_TRIAL_COMMAND",
    "TrialPool",
    "child_env",
    "close_ended_run",
    "ended_run_outcome",
    "isolated_process",
    "kill_stale_child",
    "outcome_from_result",
    "read_result",
    "visible_gpus",
]
