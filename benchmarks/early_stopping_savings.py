"""What adaptive early stopping buys: ASHA and MO-ASHA against full-length training at equal
budgets of epochs, replayed on real learning curves.

The curve tables of ``benchmarks/rank_fidelity.py`` (digits, ``--n`` architectures per space
trained to 9 epochs; trained here first when the cache lacks them) answer the real search method
through the driver loop (``hwnas.driver.curves.CurveBackend``): random search over the table's
architectures (strategy ``random`` with ``archs``), objectives validation accuracy (up) and
FLOPs (down), ``max_concurrent`` trials on a simulated clock, and an epoch budget that every
method spends alike (a promoted trial pays only the epochs it adds). Early stopping: ``none``
(every trial trains 9 epochs), ``asha`` (promotes by accuracy) and ``mo-asha`` (by non-dominated
rank), rungs at 1, 3 and 9 epochs. ASHA and MO-ASHA also run on the curves as trials reported
them before BatchNorm recalibration (``running BN``), to show what that cost.

Quality is judged on what a search delivers: every architecture it trained, with the accuracy
its checkpoint has at the length it reached (recalibrated, whatever the trials reported), so a
trial ASHA stopped at epoch 3 counts with its epoch-3 accuracy. Figures: the hypervolume of the
delivered (accuracy, FLOPs) front as a fraction of the whole table's front at full length
(reference: the table's worst final accuracy and largest FLOPs), the best delivered accuracy,
and how often the table's best architecture was trained to the end. Mean ± std over ``--seeds``
searches.

    .venv/bin/python -m benchmarks.early_stopping_savings --out runs/early_stopping_savings
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.rank_fidelity import ACCURACY, DATA, RUNNING, SPACES, ensure_curves
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
            "strategy": {"name": "random", "options": {"archs": table.archs}},
            "early_stopping": es,
            "budget": {"max_trials": len(table), "max_concurrent": concurrency},
            "latency": {"enabled": False},
        },
        f"<savings {table.space_name} {stopper}>",
    )


class Yardstick:
    """The table's truth: each architecture's recalibrated accuracy after every epoch (mean
    over its curves), its FLOPs, and the table's front at full length."""

    def __init__(self, table: CurveTable) -> None:
        self.accuracy = {
            a: np.mean([[c[ACCURACY] for c in r.curve] for r in table.rows_of(a)], axis=0)
            for a in table.archs
        }
        self.flops = {a: float(table.rows_of(a)[0].metrics["flops"]) for a in table.archs}
        full = {a: table.max_epochs for a in table.archs}
        finals = [self.at(a, n) for a, n in full.items()]
        # Reference: the table's worst final accuracy and largest FLOPs. From accuracy 0, every
        # front would be mostly the same 0.97 x FLOPs slab on digits; from the worst final
        # accuracy, what counts is how close to the best each cost level gets (a model worse
        # than every fully trained one adds nothing).
        self.ref = np.array([-min(finals), max(self.flops.values())])
        self.best = max(finals)
        self.best_archs = {a for a, n in full.items() if self.at(a, n) >= self.best}
        self.hv = self.hypervolume(full)

    def at(self, arch: str, length: int) -> float:
        return float(self.accuracy[arch][length - 1])

    def hypervolume(self, reached: dict[str, int]) -> float:
        """Hypervolume of the (accuracy at the length reached, FLOPs) points."""
        points = [[-self.at(a, n), self.flops[a]] for a, n in reached.items()]
        return hypervolume(np.array(points).reshape(-1, 2), self.ref) if points else 0.0


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
    reached = {r.arch: int(r.length) for r in method.records() if r.results}
    full = {a for a, n in reached.items() if n == table.max_epochs}
    return {
        "epochs": result.epochs,
        "trials": len(reached),
        "full_length": len(full),
        "hv_ratio": truth.hypervolume(reached) / truth.hv,
        "best_accuracy": max((truth.at(a, n) for a, n in reached.items()), default=0.0),
        "found_best": float(bool(full & truth.best_archs)),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = np.array([r[key] for r in runs], dtype=float)
        out[key] = {"mean": float(values.mean()), "std": float(values.std())}
    return out


def print_table(space: str, n: int, rows: dict[str, dict[int, dict[str, Any]]]) -> None:
    print(f"\n{space} ({n} architectures; accuracy of what each search trained, at its length)")
    print(
        f"{'budget':>7} {'method':<21} {'epochs spent':>12} {'trials':>7} {'full':>5}"
        f" {'HV / table HV':>15} {'best accuracy':>16} {'found best':>10}"
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
    parser.add_argument("--val-fraction", type=float, default=DATA["val_fraction"])
    parser.add_argument(
        "--budgets",
        type=int,
        nargs="+",
        default=[3, 6, 12, 24],
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
            space,
            n=args.n,
            epochs=args.epochs,
            val_fraction=args.val_fraction,
            workers=args.workers,
            cache=args.cache,
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
