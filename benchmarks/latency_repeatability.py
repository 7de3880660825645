"""Repeatability of ONNX Runtime CPU latency figures for NB201 (C=16, N=5, batch 1, 1 thread).

(a) CV of the median across 5 fresh sessions, each in a fresh worker process, per architecture;
(b) Spearman (and Kendall) of the median between two independent passes over >= 100
architectures (each pass its own worker process, a fresh session per architecture, the second
pass in another order).
Both for the default clock (calling thread's CPU time) and the host wall clock measured around
the same calls, and for the minimum (the figure least disturbed by other processes on a shared
machine). (c) the same two passes with each candidate timed alternately with a fixed reference
network (``reference=True``): the candidate / reference ratio. Target: pass-to-pass Spearman
>= 0.98.

    .venv/bin/python -m benchmarks.latency_repeatability                 # 100 archs, ~8-13 min
    .venv/bin/python -m benchmarks.latency_repeatability --n 20 --cv-archs 2   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from hwnas.latency.export import export_onnx
from hwnas.latency.measure import build_model
from hwnas.latency.profile import sample_unique
from hwnas.latency.reference import reference_model
from hwnas.latency.timing import TimingConfig
from hwnas.latency.worker import OnnxWorker
from hwnas.spaces import get_space


def _request(path: str, reference: str | None = None) -> dict:
    return {
        "reference_onnx_path": reference,
        "onnx_path": path,
        "backend": "ort-cpu",
        "batch": 1,
        "input_shape": [3, 32, 32],
        "options": {"threads": 1},
        "timing": TimingConfig().to_dict(),
    }


def one_pass(paths: list[str], order: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(thread-CPU medians, host medians, thread-CPU minima, unstable count), ``paths`` order."""
    cpu = np.zeros(len(paths))
    host = np.zeros(len(paths))
    low = np.zeros(len(paths))
    unstable = 0
    with OnnxWorker() as worker:
        for i in order:
            stats = worker.measure(_request(paths[i]))["stats"]
            cpu[i], host[i], low[i] = stats["median_ms"], stats["host_median_ms"], stats["min_ms"]
            unstable += bool(stats["unstable"])
    return cpu, host, low, unstable


def paired_pass(paths: list[str], order: np.ndarray, ref: str) -> tuple[np.ndarray, np.ndarray]:
    """(candidate / reference ratios, candidate medians) in ``paths`` order."""
    ratio = np.zeros(len(paths))
    cand = np.zeros(len(paths))
    with OnnxWorker() as worker:
        for i in order:
            reply = worker.measure(_request(paths[i], ref))
            ratio[i], cand[i] = reply["reference"]["ratio"], reply["stats"]["median_ms"]
    return ratio, cand


def _print_agreement(name: str, a: np.ndarray, b: np.ndarray) -> None:
    print(
        f"  {name:31}: Spearman {spearmanr(a, b).statistic:.4f}, "
        f"Kendall {kendalltau(a, b).statistic:.4f}, median |pass1-pass2|/pass1 "
        f"{np.median(np.abs(a - b) / a):.2%}, range {a.min():.3g}-{a.max():.3g}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="architectures for the two passes")
    parser.add_argument("--cv-archs", type=int, default=5, help="architectures for (a)")
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write per-architecture figures (JSON)")
    args = parser.parse_args()
    space = get_space("nb201", C=16, N=5)
    rng = np.random.default_rng(args.seed)
    archs = sample_unique(space, args.n, rng)
    print(f"load average at start: {os.getloadavg()}  (2-core machine shared with others)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hwnas-repeat-") as tmp:
        paths = []
        for k, arch in enumerate(archs):
            model = build_model(space, arch, 10, (3, 32, 32))
            paths.append(export_onnx(model, Path(tmp) / f"{k}.onnx", label=arch).path)
        print(f"exported {len(paths)} architectures in {time.perf_counter() - started:.0f} s")

        print(f"(a) median across {args.sessions} fresh sessions (fresh worker process each)")
        cvs_cpu, cvs_host = [], []
        for k in range(args.cv_archs):
            medians = np.array(
                [one_pass([paths[k]], np.array([0]))[:2] for _ in range(args.sessions)]
            )[:, :, 0]
            cv_cpu = medians[:, 0].std(ddof=1) / medians[:, 0].mean()
            cv_host = medians[:, 1].std(ddof=1) / medians[:, 1].mean()
            cvs_cpu.append(cv_cpu)
            cvs_host.append(cv_host)
            print(
                f"  arch {k}: thread-cpu median {medians[:, 0].mean():.3f} ms, CV {cv_cpu:.2%}; "
                f"wall median {medians[:, 1].mean():.3f} ms, CV {cv_host:.2%}"
            )
        print(
            f"  mean CV of the median: thread-cpu {np.mean(cvs_cpu):.2%}, "
            f"wall {np.mean(cvs_host):.2%}"
        )

        print(f"(b) two independent passes over {len(paths)} architectures")
        first = one_pass(paths, np.arange(len(paths)))
        second = one_pass(paths, rng.permutation(len(paths)))
        figures = (
            ("thread-cpu median (latency_ms)", first[0], second[0]),
            ("wall-clock median", first[1], second[1]),
            ("thread-cpu min (latency_min_ms)", first[2], second[2]),
        )
        for name, a, b in figures:
            _print_agreement(name, a, b)
        print(f"  unstable-flagged measurements: {first[3]} + {second[3]} of {2 * len(paths)}")

        print("(c) two passes again, each candidate timed alternately with a reference network")
        ref_path = export_onnx(reference_model(), Path(tmp) / "reference.onnx").path
        orders = (np.arange(len(paths)), rng.permutation(len(paths)))
        paired = [paired_pass(paths, order, ref_path) for order in orders]
        for name, k in (("ratio (latency_ref_ratio)", 0), ("candidate median, paired", 1)):
            _print_agreement(name, paired[0][k], paired[1][k])
    print(f"total {time.perf_counter() - started:.0f} s; load average at end: {os.getloadavg()}")
    if args.out:
        rows = [
            {"arch": a, "pass1_ms": float(x), "pass2_ms": float(y), "pass1_wall_ms": float(w)}
            for a, x, y, w in zip(archs, first[0], second[0], first[1], strict=True)
        ]
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
