"""Per-candidate latency overhead (build + export + ORT session + timing) on ONNX Runtime CPU.

Two ways a candidate is measured: ``one-shot`` (``measure_architecture`` with a fresh
torch-free worker process, what a trial pays once) and ``shared`` (one worker reused across
candidates, what ``python -m hwnas.latency profile`` pays). Target: < 1.5 s per NB201 candidate.

    .venv/bin/python -m benchmarks.latency_overhead            # 8 candidates per space and mode
    .venv/bin/python -m benchmarks.latency_overhead --n 3      # quicker
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

from hwnas.latency.measure import measure_architecture
from hwnas.latency.profile import sample_unique
from hwnas.latency.target import MeasurementTarget
from hwnas.latency.worker import OnnxWorker
from hwnas.spaces import get_space

SPACES = {"nb201": {"C": 16, "N": 5}, "mobilenet": {}}


def run(space_name: str, n: int, mode: str, seed: int) -> dict[str, float]:
    space = get_space(space_name, **SPACES[space_name])
    archs = sample_unique(space, n, np.random.default_rng(seed))
    worker = OnnxWorker() if mode == "shared" else None
    rows = []
    try:
        for arch in archs:
            start, cpu = time.perf_counter(), time.process_time()
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = measure_architecture(space, arch, MeasurementTarget(), worker=worker)
            wall = time.perf_counter() - start
            cpu = time.process_time() - cpu
            if worker is None:  # the one-shot worker has exited: its whole CPU, imports included
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu += (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
            else:
                cpu += result.info["worker_cpu_s"]
            rows.append(
                (
                    wall,
                    result.info["build_s"],
                    result.export["export_s"],
                    result.info["load_s"],
                    result.info["timing_s"],
                    result.median_ms,
                    cpu,
                )
            )
    finally:
        if worker is not None:
            worker.close()
    a = np.array(rows)
    return dict(
        zip(("total_s", "build_s", "export_s", "session_s", "timing_s", "median_ms", "cpu_s"),
            np.median(a, axis=0), strict=True),
        max_total_s=float(a[:, 0].max()),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="candidates per space and mode")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}  (2-core machine shared with others)")
    print(
        f"{'space':10} {'mode':9} {'total_s':>8} {'max_s':>6} {'build':>6} {'export':>7} "
        f"{'session':>8} {'timing':>7} {'median_ms':>9} {'cpu_s':>6}   (medians over {args.n} "
        "candidates; cpu_s: CPU seconds of this process and the worker)"
    )
    for space_name in SPACES:
        for mode in ("one-shot", "shared"):
            r = run(space_name, args.n, mode, args.seed)
            print(
                f"{space_name:10} {mode:9} {r['total_s']:8.3f} {r['max_total_s']:6.2f} "
                f"{r['build_s']:6.3f} {r['export_s']:7.3f} {r['session_s']:8.3f} "
                f"{r['timing_s']:7.3f} {r['median_ms']:9.3f} {r['cpu_s']:6.3f}"
            )
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
