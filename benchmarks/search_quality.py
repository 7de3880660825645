"""Search quality of hwnas's strategies against peers on NAS-Bench-201 with device latency.

Every method (each registered hwnas strategy driven through ``SearchMethod``, and the peers:
Optuna's random, TPE, NSGA-II and GP samplers, Syne Tune's multi-objective regularized
evolution) runs in this process through the same driver loop over the tabular backend
(``hwnas.driver.tabular``): the same query model, the same per-seed noise (common random
numbers) and budget. A peer that repeats an architecture pays a query for it; hwnas strategies
never repeat (their filter dedupes by canonical key). Runs are full-fidelity (the table has no
learning curves). Figures are defined in ``benchmarks/search_quality_metrics.py``:

* ``mo``: multi-objective runs (validation accuracy up, ``latency_ms`` on the device down) for
  each dataset x device: (a) hypervolume ratio to the true front, (b) test accuracy of the best
  architecture by validation under the latency bound (the device's median latency);
  single-objective strategies (evolution, local search) get an MnasNet scalarisation with
  that bound as target;
* ``so``: single-objective runs (validation accuracy only) per dataset: (c) test accuracy of
  the best-by-validation pick;
* ``con``: the constrained scenario per device: (d) test-accuracy regret (percentage points) of
  the best-by-validation pick under a latency bound at the 25th percentile of the device's
  latencies. hwnas strategies get the bound as the constraint ``latency_ms <= bound``; peers
  as an Optuna constraint (``latency_ms - bound <= 0``), learnt from trained queries.

hwnas runs in ``mo`` and ``con`` name the table as their cost source (``latency.predictor:
table:<device>``, a stand-in for measuring on the device): latency is cheap, training is not,
so hwnas spends training queries only on candidates whose latency meets the bound. Distinct
architectures whose latency was looked up are counted per run (``latency_lookups``) apart from
the training queries. Next to each figure the report prints the noise ceiling: what an oracle
reaches that trains the best cells and picks by one noisy seed.

One run per method/setting/seed at the largest budget gives every smaller budget as a prefix.
Every run is cached under ``--cache``: a peer's by its library's version, an hwnas strategy's
by a digest of hwnas's code and its options, so a re-run (or a grid run in parts, by seed)
computes each run once. ``optuna-gp`` (0.1-1.5 s per ask) runs ``--slow-peer-seeds`` seeds
(default 10).

    .venv/bin/python -m benchmarks.search_quality --jobs 2 --out runs/search_quality   # full
    .venv/bin/python -m benchmarks.search_quality --quick --out runs/sq_quick           # minutes
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.search_quality_metrics import Reference, curves, make_reference, oracle_curves
from benchmarks.search_quality_peers import (
    DEFAULT_PEERS,
    MO_ONLY_PEERS,
    PEERS,
    make_peer,
    peer_unavailable,
)
from hwnas.atomic import write_json_atomic
from hwnas.driver.tabular import NB201Benchmark, run_on_table, table_config
from hwnas.searchers.config import parse_config
from hwnas.searchers.method import SearchMethod
from hwnas.searchers.strategies import STRATEGIES

#: NB201's training length (epochs); every query is a full-length trial.
NB201_EPOCHS = 200
DEFAULT_DEVICES = ("raspi4", "pixel2", "1080ti_1", "eyeriss")
DEFAULT_DATASETS = ("cifar10", "cifar100")
#: CIFAR-100 runs on fewer devices by default, to keep the default grid under 20 minutes.
DEFAULT_CIFAR100_DEVICES = ("raspi4", "eyeriss")
#: The constrained scenario: devices, dataset and the latency quantile of its bound.
DEFAULT_CONSTRAINED_DEVICES = ("raspi4", "pixel2", "eyeriss", "1080ti_1")
DEFAULT_CONSTRAINED_DATASETS = ("cifar10",)
CONSTRAINED_QUANTILE = 0.25
FIGURES = {"mo": ("hv_ratio", "constrained_test"), "so": ("best_test",), "con": ("regret",)}
#: Peers too slow for the default seed count (seconds per ask).
SLOW_PEERS = frozenset({"optuna-gp"})
#: Bump when a change alters what a cached peer run would produce.
CACHE_VERSION = 1


@dataclass(frozen=True)
class RunSpec:
    """One search: mode ``mo`` (accuracy + latency), ``so`` (accuracy only) or ``con``
    (accuracy under a latency bound)."""

    mode: str
    dataset: str
    device: str
    method: str
    seed: int
    budget: int

    @property
    def setting(self) -> str:
        return self.dataset if self.mode == "so" else f"{self.dataset}/{self.device}"


# -- one run (in a worker process) ------------------------------------------------------------
_TABLE: Any = None
_BENCH: dict[tuple[str, str, str], tuple[NB201Benchmark, Reference]] = {}


def _bench(
    table_path: str, dataset: str, device: str, mode: str = "mo"
) -> tuple[NB201Benchmark, Reference]:
    """The benchmark and the reference of a setting (the bound differs in ``con`` mode)."""
    global _TABLE
    if _TABLE is None:
        from hwnas.spaces.nb201_table import load_table

        _TABLE = load_table(table_path)
    kind = "con" if mode == "con" else "mo"
    key = (dataset, device, kind)
    if key not in _BENCH:
        bench = NB201Benchmark.from_table(_TABLE, dataset, device)
        bound = None
        if kind == "con":
            bound = float(np.quantile(bench.latency_ms, CONSTRAINED_QUANTILE))
        _BENCH[key] = (bench, make_reference(bench, bound))
    return _BENCH[key]


class TableCost:
    """The table's latency of the run's device as a cost source (a stand-in for measuring
    on the device); counts the distinct architectures looked up."""

    def __init__(self, bench: NB201Benchmark) -> None:
        from hwnas.spaces import get_space
        from hwnas.spaces.nb201_table import TABLE_NETWORK

        self.bench = bench
        self.space = get_space(TABLE_NETWORK["space"], **TABLE_NETWORK["space_options"])
        self.looked_up: set[str] = set()

    def predict(self, arch: str) -> float:
        arch = self.space.validate(arch)
        self.looked_up.add(arch)
        return float(self.bench.latency_ms[self.bench.row_of(arch)])


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
    if spec.mode != "so":  # the cost source: latency is cheap, training is not
        raw["latency"]["predictor"] = f"table:{spec.device}"
    if spec.mode == "con":
        raw["constraints"] = [f"latency_ms <= {ref.latency_bound_ms!r}"]
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
    spec: RunSpec,
    table_path: str,
    options: dict[str, Any] | None = None,
    repeat_rule: str = "pay",
) -> dict[str, Any]:
    """Run one search and return its figure curves (lists of floats, one per query).

    ``options`` are strategy options for an hwnas method (defaults when None);
    ``repeat_rule`` is the peers' (``pay`` or ``free``; see ``search_quality_peers``).
    """
    _one_blas_thread()
    bench, ref = _bench(table_path, spec.dataset, spec.device, spec.mode)
    started = time.perf_counter()
    cpu_started = time.process_time()
    lookups = None
    if spec.method in PEERS:
        objectives = [("validation_accuracy", "maximize")]
        if spec.mode == "mo":
            objectives.append(("latency_ms", "minimize"))
        method = make_peer(
            spec.method,
            objectives,
            seed=spec.seed,
            budget=spec.budget,
            length=NB201_EPOCHS,
            constraint=("latency_ms", ref.latency_bound_ms) if spec.mode == "con" else None,
            repeat_rule=repeat_rule,  # type: ignore[arg-type]
            hparams_base={"training": {"max_epochs": NB201_EPOCHS}},
        )
        result = run_on_table(method, bench, max_queries=spec.budget, seed=spec.seed)
        if repeat_rule == "pay":  # every paid query, repeats included
            rows = [bench.row_of(a) for a, _ in method.log]
            observed = [float(m["validation_accuracy"]) for _, m in method.log]
        else:
            rows, observed = result.rows, result.observed_accuracy
        repeats = method.repeats
    else:
        config = parse_config(hwnas_config(spec, ref, options), f"<{spec.method} config>")
        config = table_config(config)  # the table's network: full cells, one key per row
        cost = TableCost(bench) if spec.mode != "so" else None
        search = SearchMethod(config, cost_predictor=cost, measured=bench.target)
        result = run_on_table(
            search,
            bench,
            max_queries=config.budget.max_trials,
            max_concurrent=config.budget.max_concurrent,
            seed=spec.seed,
        )
        rows, observed = result.rows, result.observed_accuracy
        repeats = result.duplicates
        lookups = None if cost is None else len(cost.looked_up)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    keep = FIGURES[spec.mode]
    figs = curves(ref, rows, observed, keep)
    oracle = oracle_curves(ref, lambda r: bench.seed_accuracy(r, spec.seed), spec.budget, keep)
    return {
        "spec": asdict(spec),
        "curves": {k: _floats(figs[k]) for k in keep},
        "oracle": {k: _floats(oracle[k]) for k in keep},
        "queries": len(rows),
        "duplicates": repeats,
        "stalled": result.stalled,
        "latency_lookups": lookups,
        "sim_time_h": result.sim_time_s / 3600.0,
        "wall_s": wall,
        "cpu_s": cpu,
    }


def _floats(values: Any) -> list[float | None]:
    return [None if np.isnan(x) else float(x) for x in values]


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
            if method in SLOW_PEERS and seed >= args.seed0 + args.slow_peer_seeds:
                continue
            for dataset in args.datasets:
                devices = devices_for(args, dataset)
                for device in devices:
                    specs.append(RunSpec("mo", dataset, device, method, seed, budget))
                if method in MO_ONLY_PEERS:
                    continue
                specs.append(RunSpec("so", dataset, devices[0], method, seed, budget))
            if method in MO_ONLY_PEERS:
                continue
            for dataset in args.constrained_datasets:
                for device in args.constrained_devices:
                    specs.append(RunSpec("con", dataset, device, method, seed, budget))
    slow = {"optuna-gp": 0, "auto": 1, "predictor": 1, "arch2vec": 1, "optuna-tpe": 2}
    return sorted(specs, key=lambda s: (slow.get(s.method, 3), s.mode != "mo"))


@functools.cache
def _source_digest() -> str:
    """A digest of the code an hwnas run executes (its rooms and this benchmark's runner),
    docstrings and comments left out."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    files = [
        root / "benchmarks" / "search_quality.py",
        root / "benchmarks" / "search_quality_metrics.py",
    ]
    for room in ("hwnas", "searchers", "spaces", "driver", "latency"):
        files += sorted((root / room).rglob("*.py"))
    for f in files:
        digest.update(f.relative_to(root).as_posix().encode())
        digest.update(_code_only(f.read_text(encoding="utf-8")).encode())
    return digest.hexdigest()[:12]


def _code_only(source: str) -> str:
    """``source``'s syntax tree without docstrings (comments are not in it): a change to the
    words around the code keeps the cached runs."""
    import ast

    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return ast.dump(tree)


def _cache_file(
    cache: Path,
    spec: RunSpec,
    table_path: str,
    repeat_rule: str,
    options: dict[str, Any] | None = None,
) -> Path:
    """Where a run's result is cached: the spec, the table's size and ``CACHE_VERSION`` name
    it; for a peer also its library's version and the repeat rule, for an hwnas strategy a
    digest of hwnas's code and the strategy options (any change runs it again)."""
    from importlib.metadata import PackageNotFoundError, version

    size = os.path.getsize(table_path)
    if spec.method not in PEERS:
        opts = hashlib.sha256(json.dumps(options or {}, sort_keys=True).encode()).hexdigest()[:8]
        name = (
            f"{spec.mode}-{spec.dataset}-{spec.device}-s{spec.seed}-b{spec.budget}"
            f"-hwnas{_source_digest()}-o{opts}-t{size}-v{CACHE_VERSION}.json"
        )
        return cache / spec.method / name
    package = "syne-tune" if spec.method.startswith("synetune") else "optuna"
    try:
        lib = version(package)
    except PackageNotFoundError:
        lib = "none"
    name = (
        f"{spec.mode}-{spec.dataset}-{spec.device}-s{spec.seed}-b{spec.budget}-{repeat_rule}"
        f"-{package}{lib}-t{size}-v{CACHE_VERSION}.json"
    )
    return cache / spec.method / name


def _longer_peer_runs(cache: Path, spec: RunSpec, table_path: str, repeat_rule: str) -> list[Path]:
    """Cached runs of the same peer and seed at a larger budget, smallest first: a peer's
    budget only stops it (its sampler never sees it), so their first ``spec.budget`` queries
    are this run's. Their curves are longer (the report reads them at its budgets); their
    wall time and repeat count are the longer run's."""
    if spec.method not in PEERS:
        return []
    name = _cache_file(cache, spec, table_path, repeat_rule).name
    head, tail = name.split(f"-b{spec.budget}-", 1)
    found = []
    for longer in (cache / spec.method).glob(f"{head}-b*-{tail}"):
        budget = longer.name[len(head) + 2 :].split("-", 1)[0]
        if budget.isdigit() and int(budget) > spec.budget:
            found.append((int(budget), longer))
    return [p for _, p in sorted(found)]


def run_cached(
    spec: RunSpec,
    table_path: str,
    options: dict[str, Any] | None,
    repeat_rule: str,
    cache: Path | None,
) -> dict[str, Any]:
    """``run_one``, reusing (and writing) the run's cached result under ``cache``: a re-run,
    or a grid run in parts (``--seed0``/``--seeds``), computes each run once."""
    if cache is None:
        return run_one(spec, table_path, options, repeat_rule)
    path = _cache_file(cache, spec, table_path, repeat_rule, options)
    for found in [path, *_longer_peer_runs(cache, spec, table_path, repeat_rule)]:
        try:
            result = json.loads(found.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # a broken cache file is a miss
        result["cached"] = True
        return result
    result = run_one(spec, table_path, options, repeat_rule)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    return result


def run_grid(
    specs: list[RunSpec],
    table_path: str,
    jobs: int,
    options: dict[str, dict[str, Any]] | None = None,
    repeat_rule: str = "pay",
    cache: Path | None = None,
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
        args = [(s, table_path, opts.get(s.method), repeat_rule, cache) for s in specs]
        if jobs <= 1:
            for i, a in enumerate(args):
                done(i, run_cached(*a), progress, task)
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = {pool.submit(run_cached, *a): i for i, a in enumerate(args)}
                for fut in as_completed(futures):
                    done(futures[fut], fut.result(), progress, task)
    return [r for r in results if r is not None]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.search_quality",
        description="hwnas strategies vs Optuna and Syne Tune peers on the NB201 table.",
    )
    p.add_argument("--out", type=Path, default=Path("runs/search_quality"))
    p.add_argument(
        "--table", help="NB201 table (default: $HWNAS_NB201_TABLE, else the packaged one)"
    )
    p.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 200])
    p.add_argument("--seeds", type=int, default=20, help="seeds per setting (default 20)")
    p.add_argument("--seed0", type=int, default=0, help="first seed")
    p.add_argument(
        "--slow-peer-seeds",
        type=int,
        default=10,
        help=f"seeds for the slow peers {sorted(SLOW_PEERS)} (default 10; at most --seeds)",
    )
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
        "--constrained-devices",
        nargs="*",
        default=list(DEFAULT_CONSTRAINED_DEVICES),
        help="devices of the constrained scenario (default raspi4 pixel2 eyeriss 1080ti_1)",
    )
    p.add_argument(
        "--constrained-datasets",
        nargs="*",
        default=list(DEFAULT_CONSTRAINED_DATASETS),
        help="datasets of the constrained scenario (default cifar10; none: no such runs)",
    )
    p.add_argument(
        "--strategies",
        nargs="+",
        default=None,
        help="hwnas strategies (default: every registered one that runs without options: "
        f"{', '.join(_default_strategies())})",
    )
    p.add_argument(
        "--peers",
        nargs="*",
        default=None,
        help=f"peers to compare (default: those installed of {', '.join(DEFAULT_PEERS)})",
    )
    p.add_argument(
        "--repeat-rule",
        choices=("pay", "free"),
        default="pay",
        help="pay: a peer's repeated architecture costs a query (default); free: the old rule",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=Path("runs/search_quality_cache"),
        help="folder of cached runs (default runs/search_quality_cache)",
    )
    p.add_argument("--no-cache", action="store_true", help="run everything again")
    p.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="STRATEGY.OPTION=VALUE",
        help="a strategy option (e.g. evolution.population=10); repeatable",
    )
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument(
        "--quick",
        action="store_true",
        help="3 seeds, budgets 25/50, cifar10 on raspi4 (mo, so, con), no slow peers by default",
    )
    args = p.parse_args(argv)
    if args.strategies is None:
        args.strategies = _default_strategies()
    explicit_peers = args.peers is not None
    if args.peers is None:
        args.peers = list(DEFAULT_PEERS)
    if args.quick:
        args.seeds, args.budgets = min(args.seeds, 3), [25, 50]
        args.datasets, args.devices = ["cifar10"], [args.devices[0]]
        args.cifar100_devices = []
        args.constrained_datasets = ["cifar10"]
        args.constrained_devices = [args.devices[0]]
        if not explicit_peers:
            args.peers = [x for x in args.peers if x not in SLOW_PEERS]
    unknown = [s for s in args.strategies if s not in STRATEGIES]
    if unknown:
        p.error(f"unknown strategy {unknown}; registered: {', '.join(STRATEGIES.names())}")
    bad_peers = [s for s in args.peers if s not in PEERS]
    if bad_peers:
        p.error(f"unknown peer {bad_peers}; known: {', '.join(PEERS)}")
    skipped = {x: peer_unavailable(x) for x in args.peers}
    for why in skipped.values():
        if why:
            print(f"search_quality: {why}", file=sys.stderr)
    args.peers = [x for x in args.peers if not skipped[x]]
    if min(args.budgets) < 1 or args.seeds < 1 or args.slow_peer_seeds < 1:
        p.error("budgets, --seeds and --slow-peer-seeds must be >= 1")
    args.budgets = sorted(set(args.budgets))
    args.slow_peer_seeds = min(args.slow_peer_seeds, args.seeds)
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
    missing = sorted(
        {*args.devices, *args.cifar100_devices, *args.constrained_devices} - set(devices)
    )
    if missing:
        print(f"search_quality: unknown device(s) {missing}; table has {devices}", file=sys.stderr)
        return 2
    specs = build_specs(args)
    started = time.perf_counter()
    cache = None if args.no_cache else args.cache
    results = run_grid(
        specs, str(table_path), args.jobs, args.strategy_options, args.repeat_rule, cache
    )
    elapsed = time.perf_counter() - started
    summary = summarise(results, args, elapsed)
    write_outputs(summary, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
