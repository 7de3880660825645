"""Where a trial invocation's wall time goes, per rung: start-up, data, build, restore, train,
validate, latency, checkpoint, and the fixed cost a rung pays besides its training, validation
and latency measurement.

The same ASHA-like schedule (every trial to length 1, then the first half promoted to length 2)
runs in each mode, the modes taking turns round by round so they share the machine's load:

* ``warm``: the local backend's warm workers (``hwnas.driver.workers``), one slot;
* ``fresh``: a fresh ``python -m hwnas.trials.local`` per run (``runner.warm_workers: false``);
* ``core-api``: the Determined entrypoint run off-cluster, a process per run
  (``python -m hwnas.trials.train --hparams F --length N --checkpoint-storage D
  [--latest-checkpoint ID]``), as a task (re)start pays it;
* ``baseline`` (with ``--baseline-root DIR``): a fresh child of another checkout's code (e.g.
  ``git archive`` of the commit before), wall time only (its child reports no phases).

Phases come from the trial itself (the result's ``timings``; the entrypoint's ``hwnas
timings`` log line); ``wall`` is what the parent saw from launch to outcome, ``other`` what no
phase covers (result hand-over, process exit). ``cpu`` is the CPU time of the trial's processes
(ONNX timing child included). Medians per mode and rung.

    .venv/bin/python -m benchmarks.trial_overhead                  # 6 trials, 2 rounds
    .venv/bin/python -m benchmarks.trial_overhead --trials 4 --rounds 1 --modes warm,fresh
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.driver.processes import DEFAULT_TRIAL_COMMAND, TrialPool
from hwnas.driver.workers import WorkerPool
from hwnas.searchers.method import trial_seed
from hwnas.spaces import get_space
from hwnas.trials.session import PHASES

MODES = ("warm", "fresh", "core-api", "baseline")
FIXED = ("startup", "data", "build", "restore", "checkpoint", "other")
#: Runs ``hwnas.trials.local`` from the checkout named by the next argument, not this one.
BASELINE_BOOT = (
    "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
    "runpy.run_module('hwnas.trials.local', run_name='__main__', alter_sys=True)"
)


def workload(trials: int, seed: int, subset: int | None) -> list[dict[str, Any]]:
    """The demo's trials (``experiment_yamls/local_demo.yaml``): NB201 C=24 N=2 cells on
    digits, ORT CPU latency; ``subset`` trains on fewer images (faster, same fixed costs)."""
    space = get_space("nb201", C=24, N=2)
    rng = np.random.default_rng(seed)
    archs: list[str] = []
    while len(archs) < trials:
        arch = space.sample(rng)
        if all(space.canonical_key(arch) != space.canonical_key(a) for a in archs):
            archs.append(arch)
    data: dict[str, Any] = {"dataset": "digits", "val_fraction": 0.2}
    if subset:
        data["train_subset"] = subset
    return [
        {
            "space": "nb201",
            "space_options": {"C": 24, "N": 2},
            "arch": arch,
            "seed": trial_seed(seed, i + 1),
            "data": data,
            "training": {"batch_size": 64, "lr": 0.05, "optimizer": "sgd", "max_epochs": 2},
            "latency": {"enabled": True, "backend": "ort-cpu", "batch": 1, "threads": 1},
        }
        for i, arch in enumerate(archs)
    ]


def schedule(trials: int) -> list[tuple[int, int]]:
    """``(trial index, length)``: every trial to 1, then the first half to 2."""
    return [(i, 1) for i in range(trials)] + [(i, 2) for i in range(max(1, trials // 2))]


def group_cpu_s(pgid: int) -> float:
    """CPU seconds used so far by the live processes of process group ``pgid``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5: process group
            total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return total


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_pool(mode: str, pool: Any, hparams: list[dict[str, Any]], folder: Path) -> list[dict]:
    rows = []
    for index, length in schedule(len(hparams)):
        trial_dir = folder / str(index + 1)
        request = {
            "hparams": hparams[index],
            "length": length,
            "checkpoint_dir": str((trial_dir / "checkpoint").resolve()),
            "trial_id": index + 1,
        }
        cpu0 = children_cpu_s()
        worker = None
        pool.launch(index + 1, length, request, trial_dir)
        if isinstance(pool, WorkerPool):
            worker = pool.running[index + 1].worker
            cpu0 = group_cpu_s(worker.pid)
        (outcome,) = pool.wait(0.02)
        if not outcome.ok:
            raise RuntimeError(f"{mode}: trial {index + 1} failed: {outcome.message}")
        cpu = group_cpu_s(worker.pid) - cpu0 if worker else children_cpu_s() - cpu0
        result = json.loads((trial_dir / f"result_{length}.json").read_text())
        rows.append(_row(mode, length, outcome.seconds, result.get("timings"), cpu))
    return rows


def run_core_api(hparams: list[dict[str, Any]], folder: Path) -> list[dict]:
    rows = []
    latest: dict[int, str] = {}
    for index, length in schedule(len(hparams)):
        storage = folder / str(index + 1)
        storage.mkdir(parents=True, exist_ok=True)
        hp_file = storage / "hparams.json"
        hp_file.write_text(json.dumps(hparams[index]))
        argv = [sys.executable, "-m", "hwnas.trials.train", "--hparams", str(hp_file)]
        argv += ["--length", str(length), "--checkpoint-storage", str(storage)]
        if index in latest:
            argv += ["--latest-checkpoint", latest[index]]
        before = {p.name for p in storage.iterdir()}
        cpu0 = children_cpu_s()
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, env=_env(), check=False)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"core-api: trial {index + 1} failed:\n{proc.stderr[-2000:]}")
        found = re.findall(r"hwnas timings (\{.*\})", proc.stderr)
        new = sorted(
            (p for p in storage.iterdir() if p.is_dir() and p.name not in before),
            key=lambda p: p.stat().st_mtime,
        )
        if new:
            latest[index] = new[-1].name
        timings = json.loads(found[-1]) if found else None
        rows.append(_row("core-api", length, wall, timings, children_cpu_s() - cpu0))
    return rows


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = "1"
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _row(mode: str, length: int, wall: float, timings: dict | None, cpu: float) -> dict:
    row: dict[str, Any] = {"mode": mode, "rung": length, "wall": wall, "cpu": cpu}
    if timings:
        row.update({k: float(timings.get(k, 0.0)) for k in PHASES})
        row["other"] = max(0.0, wall - sum(row[k] for k in PHASES))
        row["fixed"] = sum(row[k] for k in FIXED)
    else:  # the baseline child: only what the parent sees
        row["fixed"] = float("nan")
    return row


def make_pool(mode: str, baseline_root: str | None, folder: Path) -> Any:
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    if mode == "warm":
        return WorkerPool(
            [None],
            trials_dir=folder,
            log_dir=folder / "workers",
            timeout_s=None,
            threads_per_trial=1,
            extra_env=env,
        )
    if mode == "baseline":
        command = [sys.executable, "-c", BASELINE_BOOT, str(Path(baseline_root).resolve())]
        return TrialPool(command, [None], timeout_s=None, threads_per_trial=1)
    return TrialPool(DEFAULT_TRIAL_COMMAND, [None], timeout_s=None, threads_per_trial=1)


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for mode in MODES:
        for rung in sorted({r["rung"] for r in rows}):
            sel = [r for r in rows if r["mode"] == mode and r["rung"] == rung]
            if not sel:
                continue
            keys = ["wall", "cpu", *PHASES, "other", "fixed"]
            med = {k: statistics.median(r.get(k, float("nan")) for r in sel) for k in keys}
            out.append({"mode": mode, "rung": rung, "n": len(sel), **med})
    return out


def print_table(summary: list[dict]) -> None:
    keys = ["wall", "cpu", *PHASES, "other", "fixed"]
    print(f"{'mode':9s} {'rung':>4s} {'n':>3s} " + " ".join(f"{k[:8]:>8s}" for k in keys))
    for s in summary:
        cells = " ".join(f"{s[k]:8.3f}" for k in keys)
        print(f"{s['mode']:9s} {s['rung']:4d} {s['n']:3d} {cells}")
    print(
        "\nmedian seconds per run; fixed = startup + data + build + restore + checkpoint + "
        "other (what a rung pays besides train, validate and latency)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=6, help="trials per round (rung 1)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per mode, interleaved")
    parser.add_argument("--modes", default="warm,fresh,core-api", help="comma-separated")
    parser.add_argument("--baseline-root", help="a checkout whose child to time as 'baseline'")
    parser.add_argument("--subset", type=int, default=None, help="training images per trial")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows and medians here")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.baseline_root and "baseline" not in modes:
        modes.append("baseline")
    for mode in modes:
        if mode not in MODES:
            parser.error(f"--modes: unknown mode {mode!r} (known: {', '.join(MODES)})")
    if "baseline" in modes and not args.baseline_root:
        parser.error("mode 'baseline' needs --baseline-root DIR")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="hwnas-overhead-") as tmp:
        for round_no in range(args.rounds):
            # Each round its own trials (nothing cached across rounds but the warm worker).
            hparams = workload(args.trials, args.seed + round_no, args.subset)
            for mode in modes:
                folder = Path(tmp) / f"{mode}-{round_no}"
                print(f"round {round_no + 1}/{args.rounds}: {mode}", file=sys.stderr, flush=True)
                if mode == "core-api":
                    rows += run_core_api(hparams, folder)
                    continue
                pool = make_pool(mode, args.baseline_root, folder)
                try:
                    rows += run_pool(mode, pool, hparams, folder)
                finally:
                    if isinstance(pool, WorkerPool):
                        print(
                            f"  warm worker ready after {pool.workers[0].ready_s or 0:.2f} s "
                            "(once per slot, before its first run)",
                            file=sys.stderr,
                        )
                        pool.close()
    summary = summarise(rows)
    print_table(summary)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
