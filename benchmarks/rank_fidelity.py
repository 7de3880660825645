"""Rank fidelity of early rungs: does an architecture's accuracy after a few epochs rank it as
its final accuracy does? ASHA promotes on exactly that.

For each space (NB201 cells and MobileNet-style blocks, small enough for two shared CPU
cores) the script trains ``--n`` sampled architectures on scikit-learn's offline digits to the
full length, and after every epoch validates each one twice from the same training run:
in eval mode with the training's running BatchNorm statistics, and with statistics
recalibrated for the current weights (``hwnas.trials.batchnorm``; what trials report now).
It prints, per epoch, the Spearman correlation between that epoch's accuracy and the final
accuracy, for both, with a bootstrap 95% interval (over architectures) of the difference at
the first rung.

The learning curves are cached as curve tables (``hwnas.driver.curves``, JSON) in
``--cache`` (default ``$HWNAS_CACHE_DIR/curves`` or ``~/.cache/hwnas/curves``), one file per
space and settings, written after every architecture: a re-run (or an interrupted one)
trains only what is missing. ``benchmarks/early_stopping_savings.py`` replays the same tables.

    .venv/bin/python -m benchmarks.rank_fidelity --out runs/rank_fidelity            # ~30 min
    .venv/bin/python -m benchmarks.rank_fidelity --n 8 --epochs 3 --out /tmp/rf      # a check
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.atomic import write_json_atomic
from hwnas.driver.curves import CurveRow, CurveTable, load_curve_table
from hwnas.paths import user_cache_dir

#: Small networks for 16x16 digits, so that both spaces train in well under an hour on two
#: shared cores. NB201 as in the smoke config; MobileNet with four stages, a stride-2 stem
#: and a narrow head (~0.1-0.3 M parameters, 1-16 inverted-residual blocks).
SPACES: dict[str, dict[str, Any]] = {
    "nb201": {"C": 8, "N": 1},
    "mobilenet": {
        "stage_channels": [16, 24, 32, 48],
        "stage_strides": [1, 2, 2, 1],
        "stage_activations": ["relu6", "relu6", "hswish", "hswish"],
        "stem_channels": 16,
        "stem_stride": 2,
        "head_channels": 128,
    },
}
#: Four fifths of digits held out. With 359 training images (6 steps an epoch) the task no longer
#: saturates (final accuracies 0.55-0.97) and 1,438 validation images resolve 0.07%, so the final
#: ranking is signal (test-retest ceiling ~0.99). At a half split every architecture ended at
#: 96.5-99.4% and the ceiling was ~0.57; at the contract's default 0.2, within a few images of
#: 99%. ``--val-fraction`` measures either. Training settings are the trial contract's defaults,
#: single-threaded.
DATA = {"dataset": "digits", "val_fraction": 0.8}
TRAINING = {"batch_size": 64, "lr": 0.05, "cpu_threads": 1, "bn_recalibration_batches": 20}
ACCURACY, RUNNING = "validation_accuracy", "validation_accuracy_running"


def default_cache_dir() -> Path:
    """``curves`` in hwnas's cache folder (``hwnas.paths.user_cache_dir``)."""
    return user_cache_dir() / "curves"


def settings_for(
    space: str, epochs: int, seed: int, val_fraction: float = DATA["val_fraction"]
) -> dict[str, Any]:
    """Everything that determines the curves (the cache file is named by its hash)."""
    return {
        "space": space,
        "space_options": SPACES[space],
        "data": {**DATA, "val_fraction": val_fraction},
        "training": {**TRAINING, "max_epochs": epochs},
        "epochs": epochs,
        "sample_seed": seed,
    }


def table_path(cache: Path, settings: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return cache / f"{settings['space']}-digits-{settings['epochs']}ep-{digest}.json"


def sample_archs(space_name: str, n: int, seed: int) -> list[str]:
    """``n`` distinct (by canonical key) architectures, in a seeded order: a longer list
    starts with the shorter one, so growing ``--n`` reuses the cache."""
    from hwnas.spaces import get_space

    space = get_space(space_name, **SPACES[space_name])
    rng = np.random.default_rng(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        arch = space.sample(rng)
        key = space.canonical_key(arch)
        if key not in seen:
            seen.add(key)
            out.append(arch)
    return out


def train_curve(settings: dict[str, Any], arch: str, index: int) -> dict[str, Any]:
    """Train ``arch`` to the full length; after every epoch validate with the running and
    with recalibrated BatchNorm statistics. One curve-table row (JSON)."""
    import torch

    from hwnas.trials.loop import TrialRun

    torch.set_num_threads(1)
    seed = 1000 + index  # the architecture's training seed
    hparams = {
        "space": settings["space"],
        "space_options": settings["space_options"],
        "arch": arch,
        "seed": seed,
        "data": settings["data"],
        "training": settings["training"],
        "latency": {"enabled": False},
    }
    run = TrialRun(hparams, device="cpu")
    curve = []
    for _ in range(settings["epochs"]):
        train = run.train_epoch()
        running = run.evaluate(running_stats=True)
        recalibrated = run.evaluate()
        bn = run.bn_recalibration or {}
        curve.append(
            {
                "epoch": run.epoch,
                ACCURACY: recalibrated["validation_accuracy"],
                "validation_loss": recalibrated["validation_loss"],
                RUNNING: running["validation_accuracy"],
                "validation_loss_running": running["validation_loss"],
                "train_accuracy": train["train_accuracy"],
                "train_loss": train["train_loss"],
                "epoch_time_s": train["epoch_time_s"],
                "bn_recalibration_s": float(bn.get("seconds", 0.0)),
            }
        )
    fixed = {**run.cost(), "val_size": run.data.val_size}
    return CurveRow(arch, seed, fixed, tuple(curve)).to_json()


def ensure_curves(
    space: str,
    *,
    n: int,
    epochs: int,
    seed: int = 0,
    val_fraction: float = DATA["val_fraction"],
    workers: int = 2,
    cache: Path | None = None,
    log=print,
) -> CurveTable:
    """The curve table of ``n`` architectures of ``space``: from the cache, training (in
    ``workers`` processes) only what it lacks, saving after every architecture."""
    settings = settings_for(space, epochs, seed, val_fraction)
    path = table_path(cache or default_cache_dir(), settings)
    rows: dict[str, dict[str, Any]] = {}
    if path.is_file():
        rows = {r.arch: r.to_json() for r in load_curve_table(path).rows}
    archs = sample_archs(space, n, seed)
    missing = [(i, a) for i, a in enumerate(archs) if a not in rows]
    log(f"{space}: {len(archs) - len(missing)} of {len(archs)} curves cached in {path}")

    def save() -> None:
        table = {
            "format": "hwnas-curves",
            "version": 1,
            "space": space,
            "space_options": SPACES[space],
            "max_epochs": epochs,
            "settings": settings,
            "rows": [rows[a] for a in archs if a in rows]
            + [r for a, r in rows.items() if a not in set(archs)],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, table, indent=None)

    if missing:
        start = time.perf_counter()
        # Spawned workers: a fresh torch per process, one thread each.
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(train_curve, settings, a, i): a for i, a in missing}
            for done, future in enumerate(as_completed(futures), start=1):
                row = future.result()
                rows[row["arch"]] = row
                save()
                last = row["curve"][-1]
                log(
                    f"  {space} {done}/{len(missing)} ({time.perf_counter() - start:.0f} s): "
                    f"epoch-1 acc {row['curve'][0][RUNNING]:.3f} running / "
                    f"{row['curve'][0][ACCURACY]:.3f} recalibrated, final "
                    f"{last[ACCURACY]:.3f}"
                )
    table = load_curve_table(path)
    keep = set(archs)
    return CurveTable(
        table.space_name,
        table.space_options,
        [r for r in table.rows if r.arch in keep],
        max_epochs=epochs,
        settings=table.settings,
        source=str(path),
    )


# -- analysis -----------------------------------------------------------------------------------
def accuracy_matrix(table: CurveTable, metric: str) -> np.ndarray:
    """(architectures, epochs) of ``metric``."""
    return np.array([[c[metric] for c in r.curve[: table.max_epochs]] for r in table.rows])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0  # a constant ranking carries no information
    return float(spearmanr(a, b).statistic)


def rank_fidelity(table: CurveTable, boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Per-epoch Spearman correlation with the final accuracy, running vs recalibrated."""
    recal, running = accuracy_matrix(table, ACCURACY), accuracy_matrix(table, RUNNING)
    n, epochs = recal.shape
    out: dict[str, Any] = {"n": n, "epochs": epochs, "per_epoch": []}
    for e in range(epochs):
        out["per_epoch"].append(
            {
                "epoch": e + 1,
                "rho_recalibrated": spearman(recal[:, e], recal[:, -1]),
                "rho_running": spearman(running[:, e], running[:, -1]),
                # Both against one yardstick: the final recalibrated accuracy.
                "rho_running_vs_final_recalibrated": spearman(running[:, e], recal[:, -1]),
                "mean_acc_recalibrated": float(recal[:, e].mean()),
                "mean_acc_running": float(running[:, e].mean()),
                "near_chance_running": int((running[:, e] < 0.15).sum()),
                "near_chance_recalibrated": int((recal[:, e] < 0.15).sum()),
            }
        )
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(boot):
        idx = rng.integers(n, size=n)
        diffs.append(
            spearman(recal[idx, 0], recal[idx, -1]) - spearman(running[idx, 0], running[idx, -1])
        )
    out["rung1_difference"] = {
        "rho": out["per_epoch"][0]["rho_recalibrated"] - out["per_epoch"][0]["rho_running"],
        "ci95": [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))],
    }
    final = recal[:, -1]
    out["final_spread"] = {
        "min": float(final.min()),
        "median": float(np.median(final)),
        "max": float(final.max()),
    }
    # How far the final accuracies themselves rank reliably: the share of their variance
    # that is not binomial noise of a finite validation set. sqrt(reliability) bounds the
    # (Pearson) correlation any rung can reach with them.
    n_val = np.array([float(r.metrics.get("val_size", np.nan)) for r in table.rows])
    noise = float(np.nanmean(final * (1 - final) / n_val))
    reliability = max(0.0, 1.0 - noise / float(final.var())) if final.var() > 0 else 0.0
    out["final_reliability"] = reliability
    out["ceiling"] = float(np.sqrt(reliability))
    cost = np.array(
        [[c["epoch_time_s"], c["bn_recalibration_s"]] for r in table.rows for c in r.curve]
    )
    out["recalibration_cost_ratio_median"] = float(np.median(cost[:, 1] / cost[:, 0]))
    return out


def print_report(space: str, result: dict[str, Any]) -> None:
    print(f"\n{space}: {result['n']} architectures, {result['epochs']} epochs on digits")
    print(
        "epoch  rho(recalibrated)  rho(running)  mean acc recal / running"
        "  near-chance recal/running"
    )
    for row in result["per_epoch"]:
        print(
            f"{row['epoch']:5d}  {row['rho_recalibrated']:17.3f}  {row['rho_running']:12.3f}"
            f"  {row['mean_acc_recalibrated']:10.3f} / {row['mean_acc_running']:.3f}"
            f"  {row['near_chance_recalibrated']:12d} / {row['near_chance_running']}"
        )
    d = result["rung1_difference"]
    spread = result["final_spread"]
    print(
        f"rung 1: rho recalibrated - running = {d['rho']:+.3f} "
        f"(bootstrap 95% CI {d['ci95'][0]:+.3f} .. {d['ci95'][1]:+.3f}); final accuracy "
        f"min/median/max {spread['min']:.3f}/{spread['median']:.3f}/{spread['max']:.3f} "
        f"(validation noise leaves a correlation ceiling of ~{result['ceiling']:.2f}); "
        f"recalibration costs {100 * result['recalibration_cost_ratio_median']:.0f}% of an "
        "epoch (median)"
    )


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6), squeeze=False)
    for ax, (space, result) in zip(axes[0], results.items(), strict=True):
        epochs = [r["epoch"] for r in result["per_epoch"]]
        ax.plot(
            epochs,
            [r["rho_recalibrated"] for r in result["per_epoch"]],
            "o-",
            label="recalibrated BN",
        )
        ax.plot(
            epochs,
            [r["rho_running"] for r in result["per_epoch"]],
            "s--",
            label="running BN statistics",
        )
        ax.set_title(f"{space} ({result['n']} architectures)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("Spearman with final accuracy")
        ax.set_ylim(-0.2, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.rank_fidelity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--spaces", nargs="+", default=list(SPACES), choices=list(SPACES))
    parser.add_argument("--n", type=int, default=60, help="architectures per space")
    parser.add_argument("--epochs", type=int, default=9, help="full training length")
    parser.add_argument("--seed", type=int, default=0, help="architecture sample seed")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=DATA["val_fraction"],
        help="share of digits held out for validation (the trial contract's default is 0.2)",
    )
    parser.add_argument("--workers", type=int, default=2, help="training processes")
    parser.add_argument("--cache", type=Path, default=None, help="curve table folder")
    parser.add_argument("--out", type=Path, default=Path("runs/rank_fidelity"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for space in args.spaces:
        table = ensure_curves(
            space,
            n=args.n,
            epochs=args.epochs,
            seed=args.seed,
            val_fraction=args.val_fraction,
            workers=args.workers,
            cache=args.cache,
        )
        results[space] = {**rank_fidelity(table), "curve_table": table.source}
    for space, result in results.items():
        print_report(space, result)
    write_json_atomic(args.out / "rank_fidelity.json", results, indent=1)
    plot(results, args.out / "rank_fidelity.png")
    print(f"\nwrote {args.out}/rank_fidelity.json and .png ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
