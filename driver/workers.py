"""Warm trial workers for the local backend: one long-lived trial process per device slot.

A fresh child per run (``hwnas.driver.processes.TrialPool``) pays a process start, torch's
imports, the dataset's decoding and the model's rebuild and restore on every rung: seconds per
rung, against rungs of tens of seconds. ``WorkerPool`` keeps one ``python -m
hwnas.trials.worker`` per slot instead and hands it one run at a time (the same request and
result files as the child), and sends a promoted trial back to the worker that still holds it
in memory.

Isolation is kept where it matters: each worker is its own process group on its own device,
dying with the runner (Linux ``PR_SET_PDEATHSIG``). A run past its deadline is killed with its
worker; a worker that dies (crash, out-of-memory kill, ``os._exit`` in a trial) fails only the
run it held, and a new worker takes its slot; a run that fails with an out-of-memory or
unexpected error retires its worker, so no later trial inherits its state. Nothing is
held across an interruption: the files are what a resumed search uses.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from hwnas.atomic import write_json_atomic
from hwnas.driver.backend import TrialOutcome
from hwnas.driver.processes import (
    child_env,
    close_ended_run,
    isolated_process,
    outcome_from_result,
    read_result,
)

#: The worker command; the pool appends ``--trials-dir DIR/ --hold N [--latency]``.
WORKER_COMMAND = (sys.executable, "-m", "hwnas.trials.worker")
#: Failure kinds after which a worker is replaced rather than reused: its process state may be
#: what failed (a fragmented allocator, a library left half-way). ``invalid`` and ``nan`` are
#: the trial's own and leave the process sound.
RETIRE_AFTER = ("oom", "error")


@dataclass
class WorkerRun:
    """One run handed to a worker: the running pool's entry for its trial."""

    trial_id: int
    length: int
    worker: Worker
    result_path: Path
    log: TextIO
    started: float
    deadline: float | None
    timed_out: bool = False

    @property
    def pid(self) -> int:
        return self.worker.popen.pid


@dataclass
class Worker:
    """One ``python -m hwnas.trials.worker`` process bound to a slot."""

    slot: int
    popen: subprocess.Popen
    log: TextIO
    held: OrderedDict[int, None] = field(default_factory=OrderedDict)
    run: WorkerRun | None = None
    buffer: bytes = b""
    ready_s: float | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def send(self, command: dict[str, Any]) -> bool:
        """Write one command; False when the worker is gone."""
        assert self.popen.stdin is not None
        try:
            self.popen.stdin.write((json.dumps(command) + "\n").encode())
            self.popen.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return True

    def read(self) -> tuple[list[dict[str, Any]], bool]:
        """Messages that have arrived (without blocking), and whether the channel closed."""
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        closed = False
        while select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                closed = True
                break
            self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        messages = []
        for line in lines:
            with contextlib.suppress(ValueError):
                messages.append(json.loads(line))
        return messages, closed


class WorkerPool:
    """Runs at most ``len(slots)`` trial runs at once, each in its slot's warm worker; the
    surface of ``TrialPool`` (``launch``, ``wait``, ``running``, ``kill_all``) plus ``forget``
    and ``close``."""

    def __init__(
        self,
        slots: list[str | None],
        *,
        trials_dir: Path,
        log_dir: Path,
        timeout_s: float | None,
        threads_per_trial: int,
        extra_env: dict[str, str] | None = None,
        hold: int = 4,
        latency: bool = True,
        command: tuple[str, ...] | list[str] = WORKER_COMMAND,
    ) -> None:
        if not slots:
            raise ValueError("a worker pool needs at least one slot")
        self.slots = list(slots)
        self.trials_dir = Path(trials_dir).resolve()
        self.log_dir = Path(log_dir)
        self.timeout_s = timeout_s
        self.threads_per_trial = max(1, int(threads_per_trial))
        self.extra_env = dict(extra_env or {})
        self.hold = max(0, int(hold))
        self.latency = latency
        self.command = list(command)
        self.workers: dict[int, Worker] = {}  # by slot
        self.running: dict[int, WorkerRun] = {}  # by trial id
        #: Workers started so far (the first one per slot included): replacements show here.
        self.started = 0

    # -- workers ---------------------------------------------------------------------------------
    @property
    def marker(self) -> str:
        """What a worker's command line holds (to recognise one a dead runner left)."""
        return f"{self.trials_dir}{os.sep}"

    def _spawn(self, slot: int) -> Worker:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"slot-{slot}.log", "a", encoding="utf-8")  # noqa: SIM115
        log.write(f"\n=== hwnas: worker for slot {slot} ({time.strftime('%H:%M:%S')}) ===\n")
        log.flush()
        argv = [*self.command, "--trials-dir", self.marker, "--hold", str(self.hold)]
        if self.latency:
            argv.append("--latency")
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            bufsize=0,
            env=child_env(self.slots[slot], self.threads_per_trial, self.extra_env),
            **isolated_process(),
        )
        worker = Worker(slot, popen, log)
        self.workers[slot] = worker
        self.started += 1
        return worker

    def _retire(self, worker: Worker, *, spawn_again: bool) -> None:
        """Kill a worker (and whatever it started) and, if asked, start its replacement."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker.popen.pid, signal.SIGKILL)
        worker.popen.wait()
        for pipe in (worker.popen.stdin, worker.popen.stdout):
            with contextlib.suppress(OSError):
                pipe.close()  # type: ignore[union-attr]
        worker.log.close()
        if self.workers.get(worker.slot) is worker:
            del self.workers[worker.slot]
        if spawn_again:
            self._spawn(worker.slot)  # imports while the other slots train

    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [w.pid for w in self.workers.values()]

    # -- runs --------------------------------------------------------------------------------------
    @property
    def free_slots(self) -> int:
        return len(self.slots) - len(self.running)

    def _choose_slot(self, trial_id: int) -> int:
        busy = {r.worker.slot for r in self.running.values()}
        free = [s for s in range(len(self.slots)) if s not in busy]
        holding = [s for s in free if s in self.workers and trial_id in self.workers[s].held]
        started = [s for s in free if s in self.workers]
        return (holding or started or free)[0]

    def launch(self, trial_id: int, length: int, request: dict[str, Any], trial_dir: Path) -> None:
        """Write the request file and hand ``trial_id`` (to ``length``) to a free worker."""
        if trial_id in self.running:
            raise RuntimeError(f"trial {trial_id} already has a running worker")
        if self.free_slots <= 0:
            raise RuntimeError("no free slot to launch a trial")
        trial_dir = trial_dir.resolve()
        trial_dir.mkdir(parents=True, exist_ok=True)
        request_path = trial_dir / f"request_{length}.json"
        result_path = trial_dir / f"result_{length}.json"
        result_path.unlink(missing_ok=True)
        slot = self._choose_slot(trial_id)
        for other in self.workers.values():
            if other.slot != slot and trial_id in other.held:
                del other.held[trial_id]  # it continues elsewhere: that copy is stale
                other.send({"op": "forget", "trial_id": trial_id})
        log = open(trial_dir / "log.txt", "a", encoding="utf-8")  # noqa: SIM115 (closed on reap)
        log.write(
            f"\n=== hwnas: trial {trial_id} to length {length} "
            f"({time.strftime('%Y-%m-%d %H:%M:%S')}) ===\n"
        )
        log.flush()
        command = {"op": "run", "request": str(request_path), "result": str(result_path)}
        command["log"] = str(trial_dir / "log.txt")
        for _attempt in range(2):
            worker = self.workers.get(slot) or self._spawn(slot)
            write_json_atomic(request_path, {**request, "launched_at": time.time()}, allow_nan=True)
            if worker.send(command):
                break
            self._retire(worker, spawn_again=False)  # died while idle: a new one, once
        else:
            log.close()
            raise RuntimeError(f"cannot start a trial worker for slot {slot}")
        now = time.monotonic()
        deadline = now + self.timeout_s if self.timeout_s else None
        run = WorkerRun(trial_id, length, worker, result_path, log, now, deadline)
        worker.run = run
        self.running[trial_id] = run

    def forget(self, trial_id: int) -> None:
        """The trial is closed: whichever worker holds it lets it go."""
        for worker in self.workers.values():
            if trial_id in worker.held:
                del worker.held[trial_id]
                worker.send({"op": "forget", "trial_id": trial_id})

    def poll(self) -> list[TrialOutcome]:
        """Outcomes of runs that ended (killing those past their deadline)."""
        done: list[TrialOutcome] = []
        now = time.monotonic()
        for worker in list(self.workers.values()):
            messages, closed = worker.read()
            for message in messages:
                if message.get("event") == "ready":
                    worker.ready_s = float(message.get("startup_s", 0.0))
                elif message.get("event") == "done" and worker.run is not None:
                    done.append(self._finish(worker))
            if self.workers.get(worker.slot) is not worker:
                continue  # replaced after its run failed
            run = worker.run
            if closed or worker.popen.poll() is not None:
                if run is not None:
                    done.append(self._died(worker, run))
                else:
                    self._retire(worker, spawn_again=False)  # idle: replaced when next needed
            elif run is not None and run.deadline is not None and now >= run.deadline:
                run.timed_out = True
                done.append(self._died(worker, run))
        return done

    def _finish(self, worker: Worker) -> TrialOutcome:
        run = worker.run
        assert run is not None
        worker.run = None
        del self.running[run.trial_id]
        seconds = time.monotonic() - run.started
        result = read_result(run.result_path)
        if result is None:
            outcome = TrialOutcome(
                run.trial_id,
                run.length,
                False,
                kind="crash",
                message=f"the worker reported no readable result in {run.result_path}",
                seconds=seconds,
            )
        else:
            outcome = outcome_from_result(run.trial_id, run.length, result, seconds)
        status = "ok" if outcome.ok else f"{outcome.kind}: {outcome.message}"
        run.log.write(f"=== hwnas: done in worker {worker.pid}, {seconds:.1f} s, {status} ===\n")
        run.log.close()
        if outcome.ok and self.hold:
            worker.held[run.trial_id] = None
            worker.held.move_to_end(run.trial_id)
            while len(worker.held) > self.hold:
                worker.held.popitem(last=False)
        else:
            worker.held.pop(run.trial_id, None)
        if not outcome.ok and outcome.kind in RETIRE_AFTER:
            worker.log.write(f"=== hwnas: replacing worker {worker.pid} after {outcome.kind} ===\n")
            self._retire(worker, spawn_again=True)
        return outcome

    def _died(self, worker: Worker, run: WorkerRun) -> TrialOutcome:
        """The worker holding ``run`` is dead or past the deadline: kill it, replace it."""
        if not run.timed_out:
            # It closed its channel: let it finish dying, so its own exit status is reported.
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.popen.wait(timeout=1.0)
        self._retire(worker, spawn_again=True)
        worker.run = None
        del self.running[run.trial_id]
        seconds = time.monotonic() - run.started
        rc = worker.popen.returncode
        if run.timed_out:
            rc = None  # ours: not a crash
        return close_ended_run(
            run.trial_id,
            run.length,
            run.result_path,
            rc,
            timed_out=run.timed_out,
            timeout_s=self.timeout_s,
            log=run.log,
            seconds=seconds,
            ended=f"worker {worker.pid} ended (exit code {worker.popen.returncode})",
        )

    def wait(
        self, poll_interval_s: float = 0.2, max_wait_s: float | None = None
    ) -> list[TrialOutcome]:
        """Block until at least one run ends (or ``max_wait_s`` passes)."""
        start = time.monotonic()
        while True:
            done = self.poll()
            if done or not self.running:
                return done
            left = poll_interval_s
            if max_wait_s is not None:
                left = min(left, max_wait_s - (time.monotonic() - start))
                if left <= 0:
                    return []
            channels = [w.popen.stdout.fileno() for w in self.workers.values() if w.popen.stdout]
            select.select(channels, [], [], left)  # wakes as soon as a worker answers

    def kill_all(self) -> list[int]:
        """Kill the workers with a run in flight (Ctrl-C, shutdown); the trial ids."""
        ids = list(self.running)
        for run in list(self.running.values()):
            run.log.write("=== hwnas: killed by the runner (interrupted) ===\n")
            run.log.close()
            run.worker.run = None
            self._retire(run.worker, spawn_again=False)
        self.running.clear()
        return ids

    def close(self) -> None:
        """Stop every worker (the search ends or is interrupted): idle ones exit on request,
        any that do not within a few seconds are killed."""
        self.kill_all()
        workers = list(self.workers.values())
        for worker in workers:
            worker.send({"op": "exit"})
        deadline = time.monotonic() + 5.0
        for worker in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            self._retire(worker, spawn_again=False)


__all__ = ["RETIRE_AFTER", "WORKER_COMMAND", "Worker", "WorkerPool", "WorkerRun"]
