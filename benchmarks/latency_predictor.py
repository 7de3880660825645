"""Held-out accuracy of the latency predictors (lookup table, ridge) at n = 50/100/200.

Part 1 measures NB201 (C=16, N=5) architectures on ONNX Runtime CPU (batch 1, 1 thread) with
the default protocol, keeps a fixed held-out set, fits on the first n of the rest and prints
Spearman, Kendall and MAPE. Part 2 does the same on the NB201 table's measured device columns
(no measuring; a check that the predictors carry to other hardware). Target: Spearman >= 0.95
at n = 100 on ONNX Runtime CPU.

    .venv/bin/python -m benchmarks.latency_predictor --save runs/lat250.jsonl    # ~10 min
    .venv/bin/python -m benchmarks.latency_predictor --load runs/lat250.jsonl    # refit only
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from rich.progress import Progress

from hwnas.latency.predictor import PREDICTOR_KINDS, evaluate_predictor, fit_predictor
from hwnas.latency.profile import measure_many, sample_unique
from hwnas.latency.target import MeasurementTarget
from hwnas.spaces import get_space
from hwnas.spaces.nb201_table import default_table_path, load_table

SIZES = (50, 100, 200)


def report(space, archs, y, n_test, seed, label) -> None:
    y = np.asarray(y, dtype=np.float64)
    order = np.random.default_rng(seed).permutation(len(archs))
    test, pool = order[:n_test], order[n_test:]
    test_archs = [archs[i] for i in test]
    for n in SIZES:
        if n > pool.size:
            print(f"  {label:28} n={n:3}: only {pool.size} training architectures, skipped")
            continue
        train = pool[:n]
        cells = []
        for kind in PREDICTOR_KINDS:
            predictor = fit_predictor(kind, space, [archs[i] for i in train], y[train])
            f = evaluate_predictor(predictor, test_archs, y[test])
            cells.append(
                f"{kind}: Spearman {f['spearman']:.3f} Kendall {f['kendall']:.3f} "
                f"MAPE {f['mape']:6.1%}"
            )
        print(f"  {label:28} n={n:3}: " + " | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-test", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None, help="write the measurements (JSONL)")
    parser.add_argument("--load", default=None, help="reuse measurements instead of measuring")
    args = parser.parse_args()
    space = get_space("nb201", C=16, N=5)
    if args.load:
        rows = [json.loads(line) for line in Path(args.load).read_text().splitlines() if line]
        print(f"loaded {len(rows)} measurements from {args.load}")
    else:
        total = max(SIZES) + args.n_test
        archs = sample_unique(space, total, np.random.default_rng(args.seed))
        print(f"load average at start: {os.getloadavg()}  (2-core machine shared with others)")
        started = time.perf_counter()
        with Progress() as progress:
            task = progress.add_task("measuring on ort-cpu", total=len(archs))
            results = measure_many(
                space, archs, MeasurementTarget(), on_result=lambda _: progress.advance(task)
            )
        print(
            f"measured {len(results)} in {time.perf_counter() - started:.0f} s; "
            f"load average at end: {os.getloadavg()}"
        )
        rows = [r.summary() for r in results]
        if args.save:
            Path(args.save).parent.mkdir(parents=True, exist_ok=True)
            Path(args.save).write_text("".join(json.dumps(r) + "\n" for r in rows))
    archs = [r["arch"] for r in rows]
    print(f"Part 1: ONNX Runtime CPU, held-out {args.n_test} of {len(rows)} NB201 architectures")
    report(
        space, archs, [r["median_ms"] for r in rows], args.n_test, args.seed, "median (latency_ms)"
    )
    report(
        space, archs, [r["min_ms"] for r in rows], args.n_test, args.seed, "min (latency_min_ms)"
    )
    path = default_table_path()
    if path is None:
        print("Part 2 skipped: NB201 table not found (set HWNAS_NB201_TABLE)")
        return
    table = load_table(path)
    order = np.random.default_rng(args.seed).permutation(table.num_rows)[: max(SIZES) + 500]
    table_archs = [table.archs[i] for i in order]
    print(f"Part 2: NB201 table devices, held-out 500, {len(order)} architectures")
    for device in ("gold_6226", "1080ti_1", "pixel2", "raspi4"):
        column = table.latency(device)[order]
        report(space, table_archs, column, 500, args.seed, f"table:{device}")


if __name__ == "__main__":
    main()
