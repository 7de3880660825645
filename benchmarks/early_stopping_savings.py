"""What adaptive early stopping buys: ASHA and MO-ASHA against full-length training at equal
budgets of epochs, replayed on real learning curves.

The curve tables of ``benchmarks/rank_fidelity.py`` (digits, ``--n`` architectures per space
trained to 9 epochs; trained here first when the cache lacks them) answer the real search
method through the driver loop (``hwnas.driver.curves.CurveBackend``): random search over the
table's architectures (strategy ``pool``), objectives validation accuracy (up) and FLOPs
(down), ``max_concurrent`` trials on a simulated clock, and an epoch budget that every method
spends alike (a promoted trial pays only the epochs it adds). Early stopping: ``none`` (every
trial trains 9 epochs), ``asha`` (promotes by accuracy) and ``mo-asha`` (by non-dominated
rank), rungs at 1, 3 and 9 epochs. ASHA and MO-ASHA also run on the curves as trials reported
them before BatchNorm recalibration (``running BN``), to show what that cost.

Quality is judged on what a search delivers, the architectures it trained to the end, with
each one's final accuracy: the hypervolume of their (accuracy, FLOPs) front as a fraction of
the whole table's front (reference: accuracy 0, the table's largest FLOPs), and the best
final accuracy (and how often it is the table's best). Mean ± std over ``--seeds`` searches.

    .venv/bin/python -m benchmarks.early_stopping_savings --out runs/early_stopping_savings
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.rank_fidelity import ACCURACY, RUNNING, SPACES, ensure_curves
from hwnas.atomic import write_json_atomic
from hwnas.driver.curves import CurveTable, run_on_curves
from hwnas.searchers.config import parse_config
from hwnas.searchers.method import SearchMethod
from hwnas.searchers.pareto import hypervolume

#: (label, stopper, which accuracy the trials report)
METHODS = (
    ("none", "none", ACCURACY),
    ("asha", "asha", ACCURACY),
    ("mo-asha", "mo-asha", ACCURACY),
    ("asha (running BN)", "asha", RUNNING),
    ("mo-asha (running BN)", "mo-asha", RUNNING),
)


def search_config(table: CurveTable, stopper: str, seed: int, concurrency: int) -> Any:
    es: dict[str, Any] = {"name": stopper, "max_length": table.max_epochs}
    if stopper != "none":
        es.update(min_length=1, reduction_factor=3)
    return parse_config(
        {
            "name": f"savings-{table.space_name}-{stopper}",
            "seed": seed,
            "space": {"name": table.space_name, "options": table.space_options},
            "objectives": [
                {"metric": "validation_accuracy", "goal": "maximize"},
                {"metric": "flops", "goal": "minimize"},
            ],
            "strategy": {"name": "pool", "options": {"archs": table.archs}},
            "early_stopping": es,
            "budget": {"max_trials": len(table), "max_concurrent": concurrency},
            "latency": {"enabled": False},
        },
        f"<savings {table.space_name} {stopper}>",
    )


class Yardstick:
    """The table's truth: each architecture's final accuracy and FLOPs, and its best front."""

    def __init__(self, table: CurveTable) -> None:
        self.final = table.final(ACCURACY)
        self.flops = {a: float(table.rows_of(a)[0].metrics["flops"]) for a in self.final}
        self.ref = np.array([0.0, max(self.flops.values())])
        self.best = max(self.final.values())
        self.hv = self.hypervolume(self.final)

    def hypervolume(self, archs: Any) -> float:
        """Hypervolume of ``archs``' (final accuracy, FLOPs) points, minimisation form."""
        points = np.array([[-self.final[a], self.flops[a]] for a in archs]).reshape(-1, 2)
        return hypervolume(points, self.ref) if len(points) else 0.0


def replay(
    table: CurveTable,
    truth: Yardstick,
    stopper: str,
    seed: int,
    budget: int,
    concurrency: int,
) -> dict[str, Any]:
    """One search; what it spent and what it delivered."""
    method = SearchMethod(search_config(table, stopper, seed, concurrency))
    result = run_on_curves(
        method, table, max_concurrent=concurrency, max_epochs=budget, noise_seed=seed
    )
    records = [r for r in method.records() if r.results]
    full = [r.arch for r in records if r.length == table.max_epochs]
    best = max((truth.final[a] for a in full), default=0.0)
    return {
        "epochs": result.epochs,
        "trials": len(records),
        "full_length": len(full),
        "hv_ratio": truth.hypervolume(full) / truth.hv,
        "best_accuracy": best,
        "found_best": float(best >= truth.best),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = np.array([r[key] for r in runs], dtype=float)
        out[key] = {"mean": float(values.mean()), "std": float(values.std())}
    return out


def print_table(space: str, n: int, rows: dict[str, dict[int, dict[str, Any]]]) -> None:
    print(f"\n{space} ({n} architectures, 9 epochs each at full length)")
    print(
        f"{'budget':>7} {'method':<21} {'epochs spent':>12} {'trials':>7} {'full':>5}"
        f" {'HV / table HV':>15} {'best final acc':>16} {'found best':>10}"
    )
    for budget in sorted(next(iter(rows.values()))):
        for label, by_budget in rows.items():
            s = by_budget[budget]
            print(
                f"{budget:>7} {label:<21} {s['epochs']['mean']:12.1f} "
                f"{s['trials']['mean']:7.1f} {s['full_length']['mean']:5.1f} "
                f"{s['hv_ratio']['mean']:8.3f} ± {s['hv_ratio']['std']:.3f} "
                f"{s['best_accuracy']['mean']:9.4f} ± {s['best_accuracy']['std']:.4f} "
                f"{s['found_best']['mean']:10.2f}"
            )


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spaces = list(results)
    fig, axes = plt.subplots(1, len(spaces), figsize=(5 * len(spaces), 3.6), squeeze=False)
    for ax, space in zip(axes[0], spaces, strict=True):
        for label, by_budget in results[space]["methods"].items():
            budgets = sorted(by_budget, key=int)
            x = [by_budget[b]["epochs"]["mean"] for b in budgets]
            y = [by_budget[b]["hv_ratio"]["mean"] for b in budgets]
            ax.plot(x, y, "o--" if "running" in label else "o-", label=label)
        ax.set_title(space)
        ax.set_xlabel("epochs spent")
        ax.set_ylabel("hypervolume / table's")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.early_stopping_savings",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--spaces", nargs="+", default=list(SPACES), choices=list(SPACES))
    parser.add_argument("--n", type=int, default=60, help="architectures per curve table")
    parser.add_argument("--epochs", type=int, default=9, help="full training length")
    parser.add_argument("--seeds", type=int, default=20, help="searches per method and budget")
    parser.add_argument(
        "--budgets",
        type=int,
        nargs="+",
        default=[3, 6, 12],
        help="epoch budgets, in full-length trainings (x epochs)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="trials at once")
    parser.add_argument("--workers", type=int, default=2, help="processes to train curves")
    parser.add_argument("--cache", type=Path, default=None, help="curve table folder")
    parser.add_argument("--out", type=Path, default=Path("runs/early_stopping_savings"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results: dict[str, Any] = {}
    for space in args.spaces:
        table = ensure_curves(
            space, n=args.n, epochs=args.epochs, workers=args.workers, cache=args.cache
        )
        tables = {ACCURACY: table, RUNNING: table.with_metric(ACCURACY, RUNNING)}
        truth = Yardstick(table)
        methods: dict[str, dict[int, dict[str, Any]]] = {}
        for label, stopper, metric in METHODS:
            methods[label] = {}
            for units in args.budgets:
                budget = units * table.max_epochs
                runs = [
                    replay(tables[metric], truth, stopper, seed, budget, args.concurrency)
                    for seed in range(args.seeds)
                ]
                methods[label][budget] = summarise(runs)
        results[space] = {"n": len(table), "curve_table": table.source, "methods": methods}
        print_table(space, len(table), methods)
    write_json_atomic(args.out / "early_stopping_savings.json", results, indent=1)
    plot(results, args.out / "early_stopping_savings.png")
    print(
        f"\nwrote {args.out}/early_stopping_savings.json and .png "
        f"({time.perf_counter() - start:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
