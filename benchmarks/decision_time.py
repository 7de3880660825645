"""Decision time per proposal of every strategy, after 200 and after 10,000 told results.

Each strategy is told ``n`` results (random architectures with the fake accuracy/latency
trade-off of ``benchmarks/searcher_overhead.py``, one latency bound), then asked for
``--asks`` proposals, each told back before the next; every ``ask`` is timed in thread CPU
time (a busy shared machine inflates it less than wall time). The first proposal is shown
apart: it builds what a strategy keeps for the whole search (the candidate pool of a listable
space, arch2vec's embeddings); median and max are over the later ones. NB201 has only
15,625 cells, so the 10,000-result runs use the larger MobileNet space. A cost source (the
fake latency) is given to the strategies that use one (``StrategyContext``).

    python -m benchmarks.decision_time                      # every strategy, 200 and 10,000
    python -m benchmarks.decision_time --strategies auto --trials 200
    python -m benchmarks.decision_time --strategies auto --trials 200 --full-cells

Targets (issue 15): under 100 ms per proposal at 200 results, under 1 s at 10,000.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from pydantic import ValidationError

from benchmarks.searcher_overhead import fake_objective
from hwnas.atomic import write_json_atomic
from hwnas.searchers.objectives import Objective, Objectives, parse_constraint
from hwnas.searchers.strategies.base import STRATEGIES, StrategyContext, make_strategy
from hwnas.spaces import get_space

TARGET_MS = {200: 100.0, 10_000: 1000.0}


class _FakeCost:
    def __init__(self, metrics: Any) -> None:
        self.metrics = metrics

    def predict(self, arch: str) -> float:
        return float(self.metrics(arch, 1)["latency_ms"])


def time_strategy(
    name: str, trials: int, asks: int, seed: int = 0, full_cells: bool = False
) -> dict[str, Any]:
    """Thread-CPU milliseconds of ``asks`` proposals after ``trials`` told results
    (``full_cells``: NB201 as the table's network, 15,625 keys instead of 5,425)."""
    if trials <= 2000:
        space = get_space("nb201", **({"prune": False} if full_cells else {}))
    else:
        space = get_space("mobilenet")
    metrics = fake_objective(space, seed)
    probe = [metrics(space.sample(np.random.default_rng(i)), 9)["latency_ms"] for i in range(200)]
    bound = float(np.median(probe))
    multi = STRATEGIES.get(name).multi_objective
    objectives = Objectives(
        (Objective("validation_accuracy", "maximize"),)
        + ((Objective("latency_ms", "minimize"),) if multi else ()),
        (parse_constraint(f"latency_ms <= {bound}"),),
        reference_point={"validation_accuracy": 0.0, "latency_ms": 2 * max(probe)},
    )
    options = {"population": 50} if name in ("nsga2", "evolution") else {}
    context = StrategyContext(max_trials=trials + asks, cost=_FakeCost(metrics))
    strategy = make_strategy(name, space, objectives, np.random.default_rng(seed), options, context)
    rng = np.random.default_rng(seed + 1)
    for _ in range(trials):
        arch = space.sample(rng)
        strategy.tell(arch, metrics(arch, 9))
    ms = []
    for _ in range(asks):
        t0 = time.thread_time()
        arch = strategy.ask()
        ms.append((time.thread_time() - t0) * 1e3)
        strategy.tell(arch, metrics(space.validate(arch), 9))
    later = ms[1:] or ms
    return {
        "strategy": name,
        "space": space.name + (" (full cells)" if full_cells and space.name == "nb201" else ""),
        "trials": trials,
        "asks": asks,
        "first_ms": float(ms[0]),
        "median_ms": float(np.median(later)),
        "max_ms": float(np.max(later)),
        "target_ms": TARGET_MS.get(trials),
    }


def runnable_without_options(name: str) -> bool:
    """Whether ``name`` builds with no options (``supernet`` needs a trained supernet's ranking
    file and is left out of the default list: it only reads that order)."""
    try:
        STRATEGIES.get(name).Options()
    except ValidationError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strategies", nargs="+", default=None, help="default: every registered one")
    p.add_argument("--trials", type=int, nargs="+", default=[200, 10_000])
    p.add_argument("--asks", type=int, default=10)
    p.add_argument(
        "--full-cells",
        action="store_true",
        help="NB201 with prune: false (the table's network, as tabular searches run it)",
    )
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    from benchmarks.search_quality import _one_blas_thread

    _one_blas_thread()  # as in the search-quality runs: small factorisations, one thread
    results = []
    for n in args.trials:
        for name in args.strategies or [
            n for n in STRATEGIES.names() if runnable_without_options(n)
        ]:
            r = time_strategy(name, n, args.asks, full_cells=args.full_cells)
            results.append(r)
            target = r["target_ms"]
            verdict = "" if target is None else (" ok" if r["median_ms"] < target else " OVER")
            print(
                f"{name:>12} after {n:>6} results ({r['space']}): median {r['median_ms']:8.1f} ms, "
                f"max {r['max_ms']:8.1f} ms per proposal (target < {target} ms){verdict}; "
                f"first proposal {r['first_ms']:.0f} ms (builds pools and models once)",
                flush=True,
            )
    if args.json:
        write_json_atomic(args.json, results, indent=2, allow_nan=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
