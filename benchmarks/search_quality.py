"""Search quality of hwnas's strategies against peers on NAS-Bench-201 with device latency.

Every method (each registered hwnas strategy driven through ``SearchMethod``, and the Optuna
peers: random, TPE, NSGA-II) runs in this process through the same driver loop over the tabular
backend (``hwnas.driver.tabular``): the same query model, the same per-seed noise (common random
numbers), the same duplicate rule and budget. Runs are full-fidelity (the table has no
learning curves). Figures are defined in ``benchmarks/search_quality_metrics.py``:

* multi-objective runs (validation accuracy up, ``latency_ms`` on the device down) for each
  dataset x device: (a) hypervolume ratio to the true front, (b) test accuracy of the best
  architecture by validation under the latency bound (the device's median latency);
  single-objective strategies (evolution, local search) get an MnasNet scalarisation with
  that bound as target;
* single-objective runs (validation accuracy only) per dataset: (c) test accuracy of the
  best-by-validation pick.

One run per method/setting/seed at the largest budget gives every smaller budget as a prefix.

    .venv/bin/python -m benchmarks.search_quality --out runs/search_quality          # full
    .venv/bin/python -m benchmarks.search_quality --quick --out runs/sq_quick        # ~1 min
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.search_quality_metrics import Reference, curves, make_reference
from benchmarks.search_quality_peers import PEERS, OptunaMethod
from hwnas.driver.tabular import NB201Benchmark, run_on_table, run_search_on_table
from hwnas.searchers.config import parse_config
from hwnas.searchers.strategies import STRATEGIES

#: NB201's training length (epochs); every query is a full-length trial.
NB201_EPOCHS = 200
DEFAULT_DEVICES = ("raspi4", "pixel2", "1080ti_1", "eyeriss")
DEFAULT_DATASETS = ("cifar10", "cifar100")
#: CIFAR-100 runs on fewer devices by default, to keep the default grid under 20 minutes.
DEFAULT_CIFAR100_DEVICES = ("raspi4", "eyeriss")
MO_FIGURES = ("hv_ratio", "constrained_test")
SO_FIGURES = ("best_test",)


@dataclass(frozen=True)
class RunSpec:
    """One search: mode ``mo`` (accuracy + latency) or ``so`` (accuracy only)."""

    mode: str
    dataset: str
    device: str
    method: str
    seed: int
    budget: int

    @property
    def setting(self) -> str:
        return f"{self.dataset}/{self.device}" if self.mode == "mo" else self.dataset


# -- one run (in a worker process) ------------------------------------------------------------
_TABLE: Any = None
_BENCH: dict[tuple[str, str], tuple[NB201Benchmark, Reference]] = {}


def _bench(table_path: str, dataset: str, device: str) -> tuple[NB201Benchmark, Reference]:
    global _TABLE
    if _TABLE is None:
        from hwnas.spaces.nb201_table import load_table

        _TABLE = load_table(table_path)
    key = (dataset, device)
    if key not in _BENCH:
        bench = NB201Benchmark.from_table(_TABLE, dataset, device)
        _BENCH[key] = (bench, make_reference(bench))
    return _BENCH[key]


def hwnas_config(
    spec: RunSpec, ref: Reference, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The search config a user would write for this run (full fidelity, one at a time)."""
    raw: dict[str, Any] = {
        "name": f"sq-{spec.method}-{spec.setting}-{spec.seed}",
        "seed": spec.seed,
        "space": {"name": "nb201", "options": {"C": 16, "N": 5}},
        "data": {"dataset": spec.dataset},
        "strategy": {"name": spec.method, "options": dict(options or {})},
        "early_stopping": {"name": "none", "max_length": NB201_EPOCHS},
        "budget": {"max_trials": spec.budget, "max_concurrent": 1},
        "latency": {"enabled": False},
    }
    if spec.mode == "mo":
        raw["objectives"] = [
            {"metric": "validation_accuracy", "goal": "maximize"},
            {"metric": "latency_ms", "goal": "minimize"},
        ]
        raw["reference_point"] = {"validation_accuracy": 0.0, "latency_ms": ref.latency_max_ms}
        if not STRATEGIES.get(spec.method).multi_objective:
            raw["scalarization"] = {"kind": "mnasnet", "target": ref.latency_bound_ms}
    return raw


def _one_blas_thread() -> None:
    """Pin BLAS to one thread: the predictor's small Cholesky factorisations run ~60x slower
    when a multithreaded BLAS competes with the other worker for 2 cores."""
    import scipy.linalg  # noqa: F401  (loads scipy's own BLAS, so the limit reaches it too)

    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:
        return
    threadpool_limits(1)


def run_one(
    spec: RunSpec, table_path: str, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run one search and return its figure curves (lists of floats, one per query).

    ``options`` are strategy options for an hwnas method (defaults when None).
    """
    _one_blas_thread()
    bench, ref = _bench(table_path, spec.dataset, spec.device)
    started = time.perf_counter()
    cpu_started = time.process_time()
    if spec.method in PEERS:
        objectives = [("validation_accuracy", "maximize")]
        if spec.mode == "mo":
            objectives.append(("latency_ms", "minimize"))
        method = OptunaMethod(
            spec.method,
            objectives,
            seed=spec.seed,
            length=NB201_EPOCHS,
            hparams_base={"training": {"max_epochs": NB201_EPOCHS}},
        )
        result = run_on_table(method, bench, max_queries=spec.budget, seed=spec.seed)
    else:
        config = parse_config(hwnas_config(spec, ref, options), f"<{spec.method} config>")
        _, result = run_search_on_table(config, bench, noise_seed=spec.seed)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    figs = curves(ref, result.rows, result.observed_accuracy)
    keep = MO_FIGURES if spec.mode == "mo" else SO_FIGURES
    return {
        "spec": asdict(spec),
        "curves": {k: [None if np.isnan(x) else float(x) for x in figs[k]] for k in keep},
        "queries": len(result.queries),
        "duplicates": result.duplicates,
        "stalled": result.stalled,
        "sim_time_h": result.sim_time_s / 3600.0,
        "wall_s": wall,
        "cpu_s": cpu,
    }


# -- the grid ------------------------------------------------------------------------------------
def devices_for(args: argparse.Namespace, dataset: str) -> list[str]:
    """Devices of the multi-objective runs on ``dataset``."""
    if dataset == "cifar100" and args.cifar100_devices:
        return list(args.cifar100_devices)
    return list(args.devices)


def build_specs(args: argparse.Namespace) -> list[RunSpec]:
    """Every run of the grid, slowest methods first (better packing across workers)."""
    budget = max(args.budgets)
    methods = [*args.strategies, *args.peers]
    specs: list[RunSpec] = []
    for seed in range(args.seed0, args.seed0 + args.seeds):
        for method in methods:
            for dataset in args.datasets:
                devices = devices_for(args, dataset)
                for device in devices:
                    specs.append(RunSpec("mo", dataset, device, method, seed, budget))
                specs.append(RunSpec("so", dataset, devices[0], method, seed, budget))
    slow = {"predictor": 0, "arch2vec": 0, "optuna-tpe": 1}
    return sorted(specs, key=lambda s: (slow.get(s.method, 2), s.mode != "mo"))


def run_grid(
    specs: list[RunSpec],
    table_path: str,
    jobs: int,
    options: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Run every spec (in ``jobs`` processes) with progress shown; results in spec order."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    opts = options or {}
    console = Console(stderr=True)
    results: list[dict[str, Any] | None] = [None] * len(specs)
    started = time.perf_counter()
    step = max(1, len(specs) // 20)

    def done(i: int, result: dict[str, Any], progress: Progress, task: Any) -> None:
        results[i] = result
        progress.advance(task)
        finished = sum(r is not None for r in results)
        if not console.is_terminal and (finished % step == 0 or finished == len(specs)):
            # no live bar in a log file: a line every 5%
            elapsed = time.perf_counter() - started
            console.print(f"search_quality: {finished}/{len(specs)} runs, {elapsed:.0f} s")

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("search-quality runs", total=len(specs))
        if jobs <= 1:
            for i, spec in enumerate(specs):
                done(i, run_one(spec, table_path, opts.get(spec.method)), progress, task)
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = {
                    pool.submit(run_one, s, table_path, opts.get(s.method)): i
                    for i, s in enumerate(specs)
                }
                for fut in as_completed(futures):
                    done(futures[fut], fut.result(), progress, task)
    return [r for r in results if r is not None]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.search_quality",
        description="hwnas strategies vs random search and Optuna on the NB201 table.",
    )
    p.add_argument("--out", type=Path, default=Path("runs/search_quality"))
    p.add_argument(
        "--table", help="NB201 table (default: $HWNAS_NB201_TABLE, else the packaged one)"
    )
    p.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 200])
    p.add_argument("--seeds", type=int, default=20, help="seeds per setting (default 20)")
    p.add_argument("--seed0", type=int, default=0, help="first seed")
    p.add_argument(
        "--datasets",
        nargs="+",
        default=list(DEFAULT_DATASETS),
        help="cifar10, cifar100, ImageNet16-120 or any dataset prefix of the table",
    )
    p.add_argument("--devices", nargs="+", default=list(DEFAULT_DEVICES))
    p.add_argument(
        "--cifar100-devices",
        nargs="*",
        default=list(DEFAULT_CIFAR100_DEVICES),
        help="devices for CIFAR-100 (default raspi4 eyeriss; none given: same as --devices)",
    )
    p.add_argument(
        "--strategies",
        nargs="+",
        default=None,
        help="hwnas strategies (default: every registered one that runs without options: "
        f"{', '.join(_default_strategies())})",
    )
    p.add_argument("--peers", nargs="*", default=list(PEERS), help="Optuna peers to compare")
    p.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="STRATEGY.OPTION=VALUE",
        help="a strategy option (e.g. evolution.population=10); repeatable",
    )
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--quick", action="store_true", help="3 seeds, budgets 25/50, cifar10 on raspi4")
    args = p.parse_args(argv)
    if args.strategies is None:
        args.strategies = _default_strategies()
    if args.quick:
        args.seeds, args.budgets = min(args.seeds, 3), [25, 50]
        args.datasets, args.devices = ["cifar10"], [args.devices[0]]
        args.cifar100_devices = []
    unknown = [s for s in args.strategies if s not in STRATEGIES]
    if unknown:
        p.error(f"unknown strategy {unknown}; registered: {', '.join(STRATEGIES.names())}")
    bad_peers = [s for s in args.peers if s not in PEERS]
    if bad_peers:
        p.error(f"unknown peer {bad_peers}; known: {', '.join(PEERS)}")
    if min(args.budgets) < 1 or args.seeds < 1:
        p.error("budgets and --seeds must be >= 1")
    args.budgets = sorted(set(args.budgets))
    args.strategy_options = _parse_options(p, args.options, args.strategies)
    return args


def _default_strategies() -> list[str]:
    """Registered strategies that need no options (``supernet`` needs a ranking file)."""
    out = []
    for name in STRATEGIES.names():
        try:
            STRATEGIES.get(name).Options()
        except ValueError:
            continue
        out.append(name)
    return out


def _parse_options(
    p: argparse.ArgumentParser, items: list[str], strategies: list[str]
) -> dict[str, dict[str, Any]]:
    """``["evolution.population=10"]`` -> ``{"evolution": {"population": 10}}`` (YAML values)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, dot, rest = item.partition(".")
        key, eq, value = rest.partition("=")
        if not (dot and eq and key):
            p.error(f"--set {item!r}: expected STRATEGY.OPTION=VALUE")
        if name not in strategies:
            p.error(f"--set {item!r}: {name!r} is not among --strategies {strategies}")
        out.setdefault(name, {})[key] = yaml.safe_load(value)
    for name, options in out.items():
        try:
            STRATEGIES.get(name).Options(**options)
        except (TypeError, ValueError) as exc:
            p.error(f"--set: bad options for {name}: {exc}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the grid, print the tables, write ``search_quality.json`` and plots to ``--out``."""
    from benchmarks.search_quality_report import summarise, write_outputs
    from hwnas.driver.tabular import TabularError, dataset_prefix
    from hwnas.spaces.nb201_table import TableError, load_table

    args = parse_args(argv)
    try:
        table = load_table(args.table)  # None: $HWNAS_NB201_TABLE, else the packaged table
        for dataset in args.datasets:
            dataset_prefix(table, dataset)
    except (TableError, TabularError) as exc:
        print(f"search_quality: {exc}", file=sys.stderr)
        return 2
    table_path, devices = table.path, table.devices
    missing = sorted({*args.devices, *args.cifar100_devices} - set(devices))
    if missing:
        print(f"search_quality: unknown device(s) {missing}; table has {devices}", file=sys.stderr)
        return 2
    specs = build_specs(args)
    started = time.perf_counter()
    results = run_grid(specs, str(table_path), args.jobs, args.strategy_options)
    elapsed = time.perf_counter() - started
    summary = summarise(results, args, elapsed)
    write_outputs(summary, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
