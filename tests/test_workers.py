"""Warm trial workers: the pool's isolation (a dead, hung or failed worker costs only its run),
searches and resumes over them, and the same metrics as a fresh process.

Searches run over ``tests/fake_trial_worker.py`` (the real worker's command loop with fake
training, so they take seconds); the determinism tests train real NB201 cells in real worker
processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from hwnas.driver.local import LocalBackend, load_state, run_search
from hwnas.driver.processes import DEFAULT_TRIAL_COMMAND, TrialPool
from hwnas.driver.workers import WorkerPool
from hwnas.searchers.config import parse_config
from hwnas.trials.checkpoint import load_checkpoint
from hwnas.trials.loop import TIMING_KEYS
from hwnas.trials.session import TrialSession
from tests.test_local_runner import _alive, _final, _quiet

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FAKE_WORKER = TESTS / "fake_trial_worker.py"
ARCH_A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
ARCH_B = "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_3x3~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"

CONFIG = {
    "name": "workers-test",
    "seed": 7,
    "space": {"name": "nb201", "options": {"C": 8, "N": 1}},
    "data": {"dataset": "digits"},
    "objectives": [
        {"metric": "validation_accuracy", "goal": "maximize"},
        {"metric": "latency_ms", "goal": "minimize"},
    ],
    "strategy": {"name": "random"},
    "early_stopping": {"name": "mo-asha", "min_length": 1, "max_length": 3, "reduction_factor": 3},
    "budget": {"max_trials": 8, "max_concurrent": 2},
    "runner": {"trial_timeout_s": 20, "devices": "cpu"},
}


def _fake_backend(*faults: str, timeout_s: float = 20.0, slots: int = 2, sleep: float = 0.0):
    """A backend factory for ``run_search``: warm workers running ``fake_trial_worker.py``
    with ``faults`` (e.g. ``"--kill", "2"``); returns the factory and the backends it made."""
    made: list[LocalBackend] = []

    def factory(config: Any, out: Path, log: Any) -> LocalBackend:
        ledger = out.parent / f"{out.name}.ledger"
        command = [sys.executable, str(FAKE_WORKER), "--ledger", str(ledger), *faults]
        command += ["--sleep", str(sleep)]
        backend = LocalBackend(
            out,
            [None] * slots,
            threads_per_trial=1,
            timeout_s=timeout_s,
            log=log,
            warm_workers=True,
            worker_command=command,
        )
        made.append(backend)
        return backend

    return factory, made


def _ledger(out: Path) -> list[tuple[int, int, int, int]]:
    path = out.parent / f"{out.name}.ledger"
    if not path.exists():
        return []
    return [tuple(int(x) for x in line.split()) for line in path.read_text().splitlines()]


# -- isolation: a failing worker costs only its run -------------------------------------------
def test_dead_hung_and_failed_workers_are_replaced_and_the_search_completes(tmp_path):
    out = tmp_path / "out"
    factory, made = _fake_backend(
        "--crash", "1", "--kill", "2", "--hang", "3", "--error", "4", "--invalid", "5",
        timeout_s=3.0,
    )  # fmt: skip
    summary = run_search(
        parse_config(CONFIG, "test"), out, backend_factory=factory, progress=_quiet()
    )
    assert summary.finished and summary.trials == 8 and summary.failed == 5
    final = _final(out)
    assert [final[t][2] for t in (1, 2, 3, 4, 5)] == ["crash", "oom", "timeout", "error", "invalid"]
    assert all(lengths and kind is None for _, lengths, kind in (final[t] for t in (6, 7, 8)))
    pool = made[0].pool
    assert isinstance(pool, WorkerPool)
    # Two workers at the start; crash, kill, hang and error each cost one; invalid none.
    assert pool.started == 2 + 4
    ledger = _ledger(out)
    assert len(ledger) == len({(t, n) for t, n, _, _ in ledger})  # nothing trained twice
    assert "fake crash of trial 1" in (out / "trials" / "1" / "log.txt").read_text()
    messages = {t["trial_id"]: t["message"] for t in load_state(out)["method"]["trials"]}
    assert "code 3" in messages[1] and "fake crash of trial 1" in messages[1]
    # Every worker, replacements included, is gone once the search has ended.
    time.sleep(0.2)
    assert _processes_naming(str((out / "trials").resolve())) == []


def _processes_naming(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in text and _alive(int(cmdline.parent.name)):
            found.append(int(cmdline.parent.name))
    return found


def test_a_promoted_trial_goes_back_to_the_worker_that_holds_it(tmp_path):
    out = tmp_path / "out"
    factory, _ = _fake_backend(slots=1)
    config = parse_config({**CONFIG, "budget": {"max_trials": 6, "max_concurrent": 1}}, "test")
    summary = run_search(config, out, backend_factory=factory, progress=_quiet())
    assert summary.finished and summary.failed == 0
    ledger = _ledger(out)
    assert any(start > 0 for _, _, start, _ in ledger)  # someone was promoted
    assert len({pid for *_, pid in ledger}) == 1  # one slot, one worker for the whole search
    logs = (out / "trials" / "1" / "log.txt").read_text()
    assert logs.count("done in worker") == len([r for r in ledger if r[0] == 1])


def test_resume_after_interruptions_with_warm_workers_gives_the_same_search(tmp_path):
    config = parse_config({**CONFIG, "budget": {"max_trials": 6, "max_concurrent": 2}}, "test")
    reference, run = tmp_path / "ref", tmp_path / "run"
    factory, _ = _fake_backend(slots=1)
    run_search(config, reference, backend_factory=factory, progress=_quiet())
    first = run_search(config, run, backend_factory=factory, progress=_quiet(), stop_after_events=5)
    assert first.interrupted
    again = run_search(
        None, run, resume=True, backend_factory=factory, progress=_quiet(), stop_after_events=11
    )
    assert again.interrupted
    last = run_search(None, run, resume=True, backend_factory=factory, progress=_quiet())
    assert last.finished
    assert _final(run) == _final(reference)
    ledger = _ledger(run)
    assert len(ledger) == len({(t, n) for t, n, _, _ in ledger})


def test_hard_kill_of_the_runner_takes_its_workers_and_resume_trains_nothing_twice(tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "budget": {"max_trials": 6, "max_concurrent": 2}}))
    script = tmp_path / "drive.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from tests.test_workers import _fake_backend\n"
        "from hwnas.driver.local import run_search\n"
        "factory, _ = _fake_backend(sleep=0.3)\n"
        f"run_search(sys.argv[1], {str(out)!r}, backend_factory=factory)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), str(config)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = load_state(out) if (out / "state.json").exists() else {}
        if state and state["backend"]["pids"] and state["loop"]["events"] >= 6:
            break
        time.sleep(0.05)
    workers = load_state(out)["backend"]["workers"]
    proc.kill()
    proc.wait(timeout=30)
    time.sleep(0.5)
    assert workers and not any(_alive(pid) for pid in workers)  # died with the runner
    factory, _ = _fake_backend(sleep=0.3)
    summary = run_search(None, out, resume=True, backend_factory=factory, progress=_quiet())
    assert summary.finished and summary.trials == 6 and summary.failed == 0
    ledger = _ledger(out)
    assert len(ledger) == len({(t, n) for t, n, _, _ in ledger})


# -- the same training as a fresh process --------------------------------------------------------
def _hparams(arch: str, seed: int, **training: Any) -> dict[str, Any]:
    return {
        "space": "nb201",
        "space_options": {"C": 8, "N": 1},
        "arch": arch,
        "seed": seed,
        "data": {"dataset": "digits", "train_subset": 128},
        "training": {"max_epochs": 3, "batch_size": 64, **training},
        "latency": {"enabled": False},
    }


def _request(trial_id: int, hparams: dict[str, Any], length: int, folder: Path) -> dict:
    return {
        "hparams": hparams,
        "length": length,
        "checkpoint_dir": str(folder / str(trial_id) / "checkpoint"),
        "trial_id": trial_id,
    }


def _same_training(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Metrics equal but for wall-clock ones; the checkpoints' weights and optimizer bitwise."""
    drop = set(TIMING_KEYS)
    assert {k: v for k, v in a.items() if k not in drop} == {
        k: v for k, v in b.items() if k not in drop
    }


def _same_checkpoints(a: Path, b: Path) -> None:
    one, two = load_checkpoint(a), load_checkpoint(b)
    assert one["epoch"] == two["epoch"]
    for key, tensor in one["model"].items():
        assert torch.equal(tensor, two["model"][key]), key
    for index, state in one["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, two["optimizer"]["state"][index][key]), (index, key)
    assert torch.equal(one["rng"]["torch"], two["rng"]["torch"])
    # The BatchNorm statistics validation used (recalibrated from their own seed stream).
    bn_one, bn_two = one["bn_recalibration"], two["bn_recalibration"]
    assert bn_one is not None and bn_two is not None and bn_one["epoch"] == bn_two["epoch"]
    assert bn_one["buffers"].keys() == bn_two["buffers"].keys()
    for key, tensor in bn_one["buffers"].items():
        assert torch.equal(tensor, bn_two["buffers"][key]), key


@pytest.fixture
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_a_trial_continued_in_memory_trains_as_one_resumed_from_its_checkpoint(
    tmp_path, _keep_torch_threads
):
    """In-process sessions: A to 1, B to 2 (another seed, other threads), A to 2 continued in
    memory == A to 2 restored from a copy of its checkpoint by a new session."""
    threads = torch.get_num_threads()  # what a fresh process here starts with
    a, b = _hparams(ARCH_A, 3), _hparams(ARCH_B, 4, cpu_threads=threads + 1)
    warm = TrialSession(hold=2, keep_data=True)
    assert warm.run(_request(1, a, 1, tmp_path / "warm"))["ok"]
    shutil.copytree(tmp_path / "warm" / "1", tmp_path / "cold" / "1")
    assert warm.run(_request(2, b, 2, tmp_path / "warm"))["ok"]
    continued = warm.run(_request(1, a, 2, tmp_path / "warm"))
    assert continued["ok"] and warm.held() == [2, 1]
    assert continued["timings"]["build"] == 0.0 and continued["timings"]["restore"] == 0.0
    torch.set_num_threads(threads)  # as in a new process
    resumed = TrialSession().run(_request(1, a, 2, tmp_path / "cold"))
    assert resumed["ok"] and resumed["timings"]["restore"] > 0.0
    _same_training(continued["metrics"], resumed["metrics"])
    _same_checkpoints(tmp_path / "warm/1/checkpoint", tmp_path / "cold/1/checkpoint")

    # A checkpoint that changed behind the session's back is restored, not the held copy.
    path = tmp_path / "warm/1/checkpoint/checkpoint.pt"
    shutil.copy(tmp_path / "cold/1/checkpoint/checkpoint.pt", path)
    again = warm.run(_request(1, a, 3, tmp_path / "warm"))
    assert again["ok"] and again["timings"]["restore"] > 0.0


@pytest.mark.slow  # ~25 s on 2 busy cores: a worker and two fresh children train
def test_warm_worker_and_fresh_processes_give_the_same_metrics(tmp_path):
    """Real processes: a warm worker running A to 1, B to 1, then A to 2 (in memory), against a
    fresh ``python -m hwnas.trials.local`` per run; the same metrics and checkpoints."""
    a, b = _hparams(ARCH_A, 3), _hparams(ARCH_B, 4, cpu_threads=2)
    env = {"PYTHONPATH": str(REPO)}
    warm = WorkerPool(
        [None],
        trials_dir=tmp_path / "warm",
        log_dir=tmp_path / "warm-logs",
        timeout_s=300,
        threads_per_trial=1,
        extra_env=env,
        latency=False,
    )
    fresh = TrialPool(DEFAULT_TRIAL_COMMAND, [None], timeout_s=300, threads_per_trial=1)
    results: dict[str, list[dict[str, Any]]] = {"warm": [], "fresh": []}
    try:
        for name, pool, runs in (
            ("warm", warm, [(1, a, 1), (2, b, 1), (1, a, 2)]),
            ("fresh", fresh, [(1, a, 1), (1, a, 2)]),
        ):
            for trial_id, hp, length in runs:
                request = _request(trial_id, hp, length, tmp_path / name)
                pool.launch(trial_id, length, request, tmp_path / name / str(trial_id))
                (outcome,) = pool.wait(0.05)
                assert outcome.ok, outcome.message
                results[name].append(outcome.metrics)
        assert warm.started == 1
        log = (tmp_path / "warm" / "1" / "log.txt").read_text()
        assert "continuing in memory from epoch 1" in log
    finally:
        warm.close()
        fresh.kill_all()
    _same_training(results["warm"][0], results["fresh"][0])
    _same_training(results["warm"][2], results["fresh"][1])
    _same_checkpoints(tmp_path / "warm/1/checkpoint", tmp_path / "fresh/1/checkpoint")


@pytest.mark.slow  # ~15 s on 2 busy cores: two workers start, one trains a whole epoch
def test_a_worker_killed_mid_training_fails_only_its_run_and_is_replaced(tmp_path):
    """A real worker SIGKILLed while it trains: that run fails, the next runs in a new one."""
    hp = _hparams(ARCH_A, 3)
    hp["data"] = {"dataset": "digits"}  # the whole set: an epoch lasts long enough to kill
    hp["space_options"] = {"C": 16, "N": 2}
    pool = WorkerPool(
        [None],
        trials_dir=tmp_path,
        log_dir=tmp_path / "logs",
        timeout_s=300,
        threads_per_trial=1,
        extra_env={"PYTHONPATH": str(REPO)},
        latency=False,
    )
    try:
        pool.launch(1, 1, _request(1, hp, 1, tmp_path), tmp_path / "1")
        victim = pool.running[1].pid
        log = tmp_path / "1" / "log.txt"
        deadline = time.monotonic() + 120
        while "training to 1 epochs" not in log.read_text() and time.monotonic() < deadline:
            assert not pool.poll(), "the run ended before it could be killed"
            time.sleep(0.05)
        time.sleep(0.2)
        os.kill(victim, signal.SIGKILL)
        (outcome,) = pool.wait(0.05)
        assert (outcome.ok, outcome.kind) == (False, "oom")
        assert not _alive(victim)
        small = _hparams(ARCH_B, 4)
        pool.launch(2, 1, _request(2, small, 1, tmp_path), tmp_path / "2")
        assert pool.running[2].pid != victim
        (outcome,) = pool.wait(0.05)
        assert outcome.ok, outcome.message
        assert pool.started == 2
    finally:
        pool.close()
    assert not any(_alive(pid) for pid in pool.pids())


def test_stale_workers_are_recognised_by_their_trials_folder(tmp_path):
    """A resumed search stops a worker its dead predecessor left, and nothing else."""
    out = tmp_path / "out"
    backend = LocalBackend(out, [None], threads_per_trial=1, warm_workers=True)
    marker = f"{(out / 'trials').resolve()}/"
    stray = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "--trials-dir", marker],
        start_new_session=True,
    )
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "--trials-dir", "/elsewhere/"],
        start_new_session=True,
    )
    try:
        backend.load_state_dict({"elapsed_s": 1.0, "workers": [stray.pid, other.pid]})
        assert stray.wait(timeout=10) == -signal.SIGKILL
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
        stray.kill()
        stray.wait()
    assert json.loads(json.dumps(backend.state_dict()))["workers"] == []
