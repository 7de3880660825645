"""How well does a weight-sharing supernet rank architectures? NB201 on an offline dataset.

1. Ground truth: ``--archs`` NB201 cells (distinct canonical keys, seeded) trained stand-alone
   with the trial loop (``TrialRun``), plus ``--landmarks`` further cells for the landmark
   set; validation accuracy after ``--gt-epochs``, averaged over ``--gt-seeds`` training
   seeds. Kendall's tau between two single seeds shows how reproducible a stand-alone figure
   is at all (digits is easy: most cells land within a few validation images of each other).
   Cached in ``OUT/ground_truth.json``.
2. Supernets: for each update (GAEA, DARTS), without and with landmarks, and each seed, a
   supernet trial (``SupernetRun``) trained ``--epochs`` epochs; each evaluation cell scored
   as a sub-network on the same validation split. Kendall's tau and Spearman between supernet
   and stand-alone accuracy (and with the supernet's negative loss), CPU seconds per run.
   Cached per run in ``OUT/supernets/``.
3. Hardware-aware demo: GAEA with the expected-latency term at several weights, from a lookup
   predictor (``--predictor``: a lookup JSON or ``table:<device>`` with ``HWNAS_NB201_TABLE``),
   the derived cell's predicted latency, its measured ONNX Runtime latency at the benchmark's
   size, and its stand-alone accuracy.

Every stand-alone and supernet run shares one data split (data seed 0): the supernet is scored
on exactly the validation images the ground truth was measured on, and never trains on them.
Seeds vary weight and architecture initialisation, landmark pairs and (DARTS) logits.

    .venv/bin/python -m benchmarks.supernet_ranking --out runs/supernet_ranking
    .venv/bin/python -m benchmarks.supernet_ranking --quick --out /tmp/sr   # a smoke run

Prints a markdown table and writes ``OUT/supernet_ranking.json`` and ``OUT/table.md``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.atomic import write_json_atomic

DATA_SEED = 0


# -- settings ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.supernet_ranking", description=__doc__)
    p.add_argument("--out", default="runs/supernet_ranking")
    p.add_argument("--dataset", default="digits", choices=("digits", "cifar10", "cifar100"))
    p.add_argument("--data-root", default=None, help="CIFAR python batches (never downloaded)")
    p.add_argument("--C", type=int, default=8)
    p.add_argument("--N", type=int, default=1)
    p.add_argument("--archs", type=int, default=100, help="evaluation cells (ground truth)")
    p.add_argument("--landmarks", type=int, default=20, help="landmark cells (disjoint)")
    p.add_argument("--gt-seeds", type=int, default=2, help="stand-alone seeds averaged")
    p.add_argument("--gt-epochs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10, help="supernet epochs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--updates", nargs="+", default=["gaea", "darts"], choices=("gaea", "darts"))
    p.add_argument("--levels", type=int, default=1, choices=(1, 2))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--landmark-weight", type=float, default=10.0)
    p.add_argument("--landmark-warmup", type=int, default=2)
    p.add_argument(
        "--predictor",
        default="table:raspi4",
        help="latency predictor for the hardware-aware demo ('' to skip)",
    )
    p.add_argument("--latency-weights", type=float, nargs="+", default=[0.0, 1.0, 4.0])
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of the code")
    args = p.parse_args(argv)
    if args.quick:
        args.archs, args.landmarks = 8, 4
        args.gt_epochs, args.epochs, args.seeds = 1, 1, [0]
        args.latency_weights = args.latency_weights[:2]
    if args.dataset != "digits" and not args.data_root:
        p.error(f"--dataset {args.dataset} needs --data-root (nothing is downloaded)")
    return args


def data_settings(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"dataset": args.dataset}
    if args.data_root:
        out["root"] = args.data_root
    return out


def training(args: argparse.Namespace, epochs: int) -> dict[str, Any]:
    return {"max_epochs": epochs, "batch_size": args.batch, "lr": args.lr, "cpu_threads": 1}


def pick_archs(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Evaluation cells and landmark cells: uniform samples with distinct canonical keys."""
    from hwnas.spaces import get_space

    space = get_space("nb201", C=args.C, N=args.N)
    rng = np.random.default_rng(12345)
    archs: list[str] = []
    keys: set[str] = set()
    while len(archs) < args.archs + args.landmarks:
        arch = space.sample(rng)
        key = space.canonical_key(arch)
        if key not in keys:
            keys.add(key)
            archs.append(arch)
    return archs[: args.archs], archs[args.archs :]


# -- workers -------------------------------------------------------------------------------------
_DATA: dict[str, Any] = {}


def _init_worker(settings: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(1)
    from hwnas.contract import DataSettings
    from hwnas.trials.data import load_data

    _DATA["data"] = load_data(DataSettings(**settings), DATA_SEED)


def train_standalone(task: dict[str, Any]) -> dict[str, Any]:
    """One cell trained stand-alone: its validation accuracy and loss, CPU seconds."""
    from hwnas.trials.loop import TrialRun

    start = time.process_time()
    run = TrialRun(task["hparams"], device="cpu", data=_DATA["data"])
    run.train_to(task["hparams"]["training"]["max_epochs"])
    scores = run.evaluate()
    return {
        "arch": task["hparams"]["arch"],
        "seed": task["hparams"]["seed"],
        "accuracy": scores["validation_accuracy"],
        "loss": scores["validation_loss"],
        "cpu_s": time.process_time() - start,
    }


def train_supernet(task: dict[str, Any]) -> dict[str, Any]:
    """One supernet: scores of every evaluation cell, derived cell, landmark fit, CPU s."""
    from hwnas.trials.supernet.run import SupernetRun

    start = time.process_time()
    run = SupernetRun(task["hparams"], device="cpu", data=_DATA["data"])
    run.train_to(task["hparams"]["training"]["max_epochs"])
    train_cpu = time.process_time() - start
    scores = {arch: run.score(arch) for arch in task["archs"]}
    derived = run.derive()
    tau, _ = run.landmark_correlation()
    out = {
        "name": task["name"],
        "seed": task["hparams"]["seed"],
        "scores": {a: {"accuracy": s[0], "loss": s[1]} for a, s in scores.items()},
        "derived_arch": derived,
        "derived_supernet_accuracy": run.score(derived)[0],
        "mixed_accuracy": run.evaluate_mixture()[0],
        "arch_entropy": run.arch.entropy(),
        "landmark_fit_kendall": tau,
        "train_cpu_s": train_cpu,
        "cpu_s": time.process_time() - start,
    }
    expected = run.expected_latency_ms()
    if expected is not None:
        out["expected_latency_ms"] = expected
        out["predicted_latency_ms"] = run.latency_term.predict(derived)  # type: ignore[union-attr]
    return out


def measure(task: dict[str, Any]) -> dict[str, Any]:
    """Measured ONNX Runtime CPU latency of a cell at the benchmark's size."""
    from hwnas import latency
    from hwnas.spaces import get_space

    info = _DATA["data"].info
    target = latency.MeasurementTarget(
        backend="ort-cpu", input_shape=info.input_shape, num_classes=info.num_classes
    )
    space = get_space("nb201", **task["space_options"])
    result = latency.measure_architecture(space, task["arch"], target)
    return {"arch": task["arch"], "latency_ms": result.median_ms}


# -- phases --------------------------------------------------------------------------------------
def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _pool(args: argparse.Namespace) -> concurrent.futures.ProcessPoolExecutor:
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=args.jobs, initializer=_init_worker, initargs=(data_settings(args),)
    )


def _run_all(pool, fn, tasks: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any] | None] = [None] * len(tasks)
    futures = {pool.submit(fn, t): i for i, t in enumerate(tasks)}
    for done, future in enumerate(concurrent.futures.as_completed(futures), start=1):
        results[futures[future]] = future.result()
        if done % max(1, len(tasks) // 10) == 0 or done == len(tasks):
            print(f"  {label}: {done}/{len(tasks)}", file=sys.stderr, flush=True)
    return [r for r in results if r is not None]


def standalone_hparams(args: argparse.Namespace, arch: str, seed: int) -> dict[str, Any]:
    return {
        "space": "nb201",
        "space_options": {"C": args.C, "N": args.N},
        "arch": arch,
        "seed": seed,
        "data": data_settings(args),
        "training": training(args, args.gt_epochs),
        "latency": {"enabled": False},
    }


def ground_truth(args: argparse.Namespace, pool, out: Path) -> dict[str, Any]:
    """Stand-alone accuracies (cached by settings)."""
    evaluation, landmarks = pick_archs(args)
    settings = {
        "dataset": args.dataset,
        "C": args.C,
        "N": args.N,
        "gt_epochs": args.gt_epochs,
        "batch": args.batch,
        "lr": args.lr,
        "archs": evaluation,
        "landmarks": landmarks,
        "seeds": args.gt_seeds,
    }
    path = out / "ground_truth.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("key") == _key(settings):
            print(f"ground truth: cached in {path}", file=sys.stderr)
            return cached
    tasks = [
        {"hparams": standalone_hparams(args, a, seed)}
        for seed in range(args.gt_seeds)
        for a in evaluation + landmarks
    ]
    print(f"ground truth: training {len(tasks)} cells stand-alone", file=sys.stderr)
    rows = _run_all(pool, train_standalone, tasks, "stand-alone")
    per_seed: dict[int, dict[str, float]] = {}
    for r in rows:
        per_seed.setdefault(r["seed"], {})[r["arch"]] = r["accuracy"]
    cells = evaluation + landmarks
    result = {
        "key": _key(settings),
        "settings": settings,
        "accuracy": {a: float(np.mean([per_seed[s][a] for s in per_seed])) for a in cells},
        "per_seed_accuracy": {str(s): per_seed[s] for s in sorted(per_seed)},
        "cpu_s": sum(r["cpu_s"] for r in rows),
        "cpu_s_per_cell": float(np.median([r["cpu_s"] for r in rows])),
    }
    write_json_atomic(path, result, indent=1)
    return result


def supernet_hparams(
    args: argparse.Namespace, update: str, seed: int, landmarks_file: Path | None, **extra: Any
) -> dict[str, Any]:
    supernet: dict[str, Any] = {"update": update, "levels": args.levels, "rank_candidates": 0}
    if landmarks_file is not None:
        supernet["landmarks"] = {
            "source": "file",
            "path": str(landmarks_file),
            "metric": "accuracy",
            "count": args.landmarks,
            "weight": args.landmark_weight,
            "warmup_epochs": min(args.landmark_warmup, max(0, args.epochs - 1)),
        }
    supernet.update(extra)
    return {
        "kind": "supernet",
        "space": "nb201",
        "space_options": {"C": args.C, "N": args.N},
        "seed": seed,
        "data": data_settings(args),
        "training": training(args, args.epochs),
        "latency": {"enabled": False},
        "supernet": supernet,
    }


def supernets(args: argparse.Namespace, pool, out: Path, gt: dict[str, Any]) -> list[dict]:
    """Every (update, landmarks, seed) supernet, cached per run."""
    evaluation, landmarks = gt["settings"]["archs"], gt["settings"]["landmarks"]
    landmarks_file = out / "landmarks.json"
    write_json_atomic(
        landmarks_file, [{"arch": a, "accuracy": gt["accuracy"][a]} for a in landmarks], indent=1
    )
    tasks, cached = [], []
    folder = out / "supernets"
    folder.mkdir(parents=True, exist_ok=True)
    for update in args.updates:
        for with_landmarks in (False, True):
            for seed in args.seeds:
                name = f"{update}{'+landmarks' if with_landmarks else ''}"
                hp = supernet_hparams(
                    args, update, seed, landmarks_file if with_landmarks else None
                )
                task = {"name": name, "hparams": hp, "archs": evaluation}
                key = _key({"task": task, "gt": gt["key"]})
                path = folder / f"{name.replace('+', '_')}-s{seed}-{key}.json"
                if path.is_file():
                    cached.append(json.loads(path.read_text()))
                else:
                    tasks.append({**task, "_path": str(path)})
    print(f"supernets: {len(cached)} cached, {len(tasks)} to train", file=sys.stderr)
    results = _run_all(pool, train_supernet, tasks, "supernets")
    for task, result in zip(tasks, results, strict=True):
        write_json_atomic(task["_path"], result, indent=1, allow_nan=True)
    return cached + results


def latency_demo(args: argparse.Namespace, pool, out: Path, gt: dict[str, Any]) -> list[dict]:
    """GAEA with the expected-latency term at each weight (seed 0)."""
    if not args.predictor:
        return []
    tasks = []
    for weight in args.latency_weights:
        extra = {"latency_predictor": args.predictor, "latency_weight": weight}
        hp = supernet_hparams(args, "gaea", args.seeds[0], None, **extra)
        tasks.append({"name": f"gaea latency_weight={weight:g}", "hparams": hp, "archs": []})
    print(f"latency demo: {len(tasks)} GAEA supernets", file=sys.stderr)
    try:
        runs = _run_all(pool, train_supernet, tasks, "latency demo")
    except Exception as exc:  # e.g. table:<device> without the NB201 table
        print(f"latency demo skipped: {exc}", file=sys.stderr)
        return []
    derived = [r["derived_arch"] for r in runs]
    alone = {a: gt["accuracy"][a] for a in derived if a in gt["accuracy"]}
    missing = sorted({a for a in derived if a not in alone})
    tasks_alone = [
        {"hparams": standalone_hparams(args, a, seed)}
        for a in missing
        for seed in range(args.gt_seeds)
    ]
    rows = _run_all(pool, train_standalone, tasks_alone, "derived stand-alone")
    for arch in missing:
        alone[arch] = float(np.mean([r["accuracy"] for r in rows if r["arch"] == arch]))
    measured: dict[str, float] = {
        r["arch"]: r["latency_ms"]
        for r in _run_all(
            pool,
            measure,
            [{"arch": a, "space_options": {"C": args.C, "N": args.N}} for a in set(derived)],
            "latency",
        )
    }
    return [
        {
            "latency_weight": w,
            "derived_arch": r["derived_arch"],
            "expected_latency_ms": r.get("expected_latency_ms"),
            "predicted_latency_ms": r.get("predicted_latency_ms"),
            "measured_ort_cpu_ms": measured.get(r["derived_arch"]),
            "standalone_accuracy": alone.get(r["derived_arch"]),
            "supernet_accuracy": r["derived_supernet_accuracy"],
            "cpu_s": r["cpu_s"],
        }
        for w, r in zip(args.latency_weights, runs, strict=True)
    ]


# -- statistics ----------------------------------------------------------------------------------
def correlations(run: dict[str, Any], gt: dict[str, Any]) -> dict[str, float]:
    from scipy.stats import kendalltau, spearmanr

    archs = gt["settings"]["archs"]
    truth = [gt["accuracy"][a] for a in archs]
    acc = [run["scores"][a]["accuracy"] for a in archs]
    neg_loss = [-run["scores"][a]["loss"] for a in archs]
    top = set(sorted(archs, key=lambda a: -gt["accuracy"][a])[: max(1, len(archs) // 10)])
    picked = set(sorted(archs, key=lambda a: -run["scores"][a]["accuracy"])[: len(top)])
    return {
        "kendall": float(kendalltau(acc, truth).statistic),
        "spearman": float(spearmanr(acc, truth).statistic),
        "kendall_neg_loss": float(kendalltau(neg_loss, truth).statistic),
        "top10pct_overlap": len(top & picked) / len(top),
    }


def _ms(values: list[float]) -> str:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1):.3f}"


def summarise(args, gt: dict[str, Any], runs: list[dict], demo: list[dict]) -> dict[str, Any]:
    from scipy.stats import kendalltau, spearmanr

    rows = []
    names = [f"{u}{lm}" for u in args.updates for lm in ("", "+landmarks")]
    for name in names:
        mine = sorted((r for r in runs if r["name"] == name), key=lambda r: r["seed"])
        stats = [correlations(r, gt) for r in mine]
        rows.append(
            {
                "name": name,
                "seeds": [r["seed"] for r in mine],
                "per_seed": stats,
                "kendall": [s["kendall"] for s in stats],
                "spearman": [s["spearman"] for s in stats],
                "kendall_neg_loss": [s["kendall_neg_loss"] for s in stats],
                "top10pct_overlap": [s["top10pct_overlap"] for s in stats],
                "landmark_fit_kendall": [r["landmark_fit_kendall"] for r in mine],
                "cpu_s": [r["cpu_s"] for r in mine],
                "derived": [r["derived_arch"] for r in mine],
                "derived_standalone": [gt["accuracy"].get(r["derived_arch"]) for r in mine],
            }
        )
    archs = gt["settings"]["archs"]
    seeds = gt["per_seed_accuracy"]
    ceiling = {"cells": len(archs), "kendall": math.nan, "spearman": math.nan}
    if len(seeds) >= 2:
        first, second = ([seeds[s][a] for a in archs] for s in sorted(seeds)[:2])
        ceiling["kendall"] = float(kendalltau(first, second).statistic)
        ceiling["spearman"] = float(spearmanr(first, second).statistic)
    accs = [gt["accuracy"][a] for a in gt["settings"]["archs"]]
    return {
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "ground_truth": {
            "cells": len(accs),
            "accuracy_min_median_max": [
                float(np.min(accs)),
                float(np.median(accs)),
                float(np.max(accs)),
            ],
            "cpu_s": gt["cpu_s"],
            "cpu_s_per_cell": gt["cpu_s_per_cell"],
            "seed_to_seed": ceiling,
        },
        "supernets": rows,
        "latency_demo": demo,
    }


def table(summary: dict[str, Any]) -> str:
    s, gt = summary["settings"], summary["ground_truth"]
    lines = [
        f"NB201 C={s['C']} N={s['N']} on {s['dataset']}: {gt['cells']} cells stand-alone "
        f"({s['gt_epochs']} epochs, mean of {s['gt_seeds']} seeds; accuracy min/median/max "
        + "/".join(f"{v:.3f}" for v in gt["accuracy_min_median_max"])
        + f"), supernets {s['epochs']} epochs, levels={s['levels']}, seeds {s['seeds']}.",
        "",
        "| supernet | Kendall τ | Spearman ρ | τ (−loss) | top-10% overlap | landmark-fit τ "
        "| CPU s / run |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary["supernets"]:
        lines.append(
            f"| {row['name']} | {_ms(row['kendall'])} | {_ms(row['spearman'])} | "
            f"{_ms(row['kendall_neg_loss'])} | {_ms(row['top10pct_overlap'])} | "
            f"{_ms(row['landmark_fit_kendall'])} | {_ms(row['cpu_s'])} |"
        )
    c = gt["seed_to_seed"]
    lines += [
        "",
        f"Stand-alone seed 0 vs seed 1 on the {c['cells']} cells (reproducibility of one run): "
        f"Kendall τ {c['kendall']:.3f}, Spearman ρ {c['spearman']:.3f}. Ground truth cost "
        f"{gt['cpu_s']:.0f} CPU s ({gt['cpu_s_per_cell']:.1f} s per cell).",
    ]
    if summary["latency_demo"]:
        lines += [
            "",
            f"Hardware-aware GAEA (predictor {s['predictor']}):",
            "",
            "| latency weight | E[latency] ms | predicted ms | measured ort-cpu ms | "
            "stand-alone acc | supernet acc | derived cell |",
            "|---|---|---|---|---|---|---|",
        ]
        for d in summary["latency_demo"]:
            cells = [
                f"{d[k]:.4f}" if isinstance(d[k], float) else "n/a"
                for k in (
                    "expected_latency_ms",
                    "predicted_latency_ms",
                    "measured_ort_cpu_ms",
                    "standalone_accuracy",
                    "supernet_accuracy",
                )
            ]
            lines.append(
                f"| {d['latency_weight']:g} | {' | '.join(cells)} | `{d['derived_arch']}` |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with _pool(args) as pool:
        gt = ground_truth(args, pool, out)
        runs = supernets(args, pool, out, gt)
        demo = latency_demo(args, pool, out, gt)
    summary = summarise(args, gt, runs, demo)
    summary["wall_s"] = time.perf_counter() - start
    write_json_atomic(out / "supernet_ranking.json", summary, indent=1, allow_nan=True)
    text = table(summary)
    (out / "table.md").write_text(text + "\n")
    print(text)
    print(f"\n(wall {summary['wall_s']:.0f} s; {out / 'supernet_ranking.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
