"""Search-quality figures of a tabular run, as curves over the number of queries.

All three figures are evaluated after every query ``k = 1..n`` of a run, so one run at the
largest budget also gives the figures at every smaller budget (anytime performance; the
strategies and peers compared here do not plan around the budget).

(a) ``hv_ratio``: hypervolume of the front of the architectures queried so far divided by the
    hypervolume of the true front of the whole table. Both fronts use the *true* (mean over
    training seeds) validation accuracy, so the figure rates which architectures a search
    found, not the noise it happened to see. Objectives in minimisation form:
    ``(-validation_accuracy/100, latency_ms / max latency over the space)``, reference point
    ``(0.0, 1.0)``: zero accuracy and the slowest cell's latency.
(b) ``constrained_test``: test accuracy (%) of the architecture with the best *observed*
    validation accuracy among those queried that meet the latency bound (by default the
    median latency over the space, so about half the cells qualify); NaN while none does.
(c) ``best_test``: test accuracy (%) of the architecture with the best observed validation
    accuracy (what a user would deploy after a single-objective search).
(d) ``regret``: the constrained scenario's figure, in percentage points: the best test accuracy
    of any architecture within the latency bound (the 25th percentile of the device's latencies
    there) minus the test accuracy of ``constrained_test``'s pick; lower is better.

Noise ceiling (``oracle_curves``): what an oracle reaches that knows the true mean validation
accuracies, trains the best cells in that order (within the bound for (b) and (d); for (a) the
true front, largest hypervolume contribution first) and picks by the one noisy seed it
observes, as a search does. It shows how much room the noisy-query protocol leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hwnas.driver.tabular import NB201Benchmark
from hwnas.searchers.pareto import hypervolume, nondominated_mask

#: Hypervolume reference point in the normalised minimisation space.
REFERENCE_POINT = np.array([0.0, 1.0])


@dataclass(frozen=True)
class Reference:
    """What a run of one dataset/device is measured against."""

    dataset: str
    device: str
    latency_max_ms: float
    latency_bound_ms: float
    true_hv: float
    #: Normalised minimisation vectors of every row: (-mean valid/100, latency/max).
    points: np.ndarray
    #: Mean test accuracy (%) of every row.
    test: np.ndarray
    #: Row indices on the true front.
    front_rows: np.ndarray
    #: Best mean test accuracy (%) of any row within the latency bound.
    feasible_best_test: float


def make_reference(bench: NB201Benchmark, latency_bound_ms: float | None = None) -> Reference:
    """The true front and its hypervolume for ``bench``'s dataset and device."""
    lat_max = float(np.max(bench.latency_ms))
    points = np.column_stack([-bench.valid_mean / 100.0, bench.latency_ms / lat_max])
    front = np.flatnonzero(nondominated_mask(points))
    bound = float(np.median(bench.latency_ms)) if latency_bound_ms is None else latency_bound_ms
    return Reference(
        dataset=bench.dataset,
        device=bench.device,
        latency_max_ms=lat_max,
        latency_bound_ms=bound,
        true_hv=hypervolume(points[front], REFERENCE_POINT),
        points=points,
        test=bench.test.copy(),
        front_rows=front,
        feasible_best_test=float(np.max(bench.test[bench.latency_ms <= bound])),
    )


def hv_ratio_curve(ref: Reference, rows: list[int]) -> np.ndarray:
    """``hv_ratio`` after each of the first ``len(rows)`` queries."""
    out = np.zeros(len(rows))
    front: list[int] = []
    hv = 0.0
    for k, row in enumerate(rows):
        p = ref.points[row]
        F = ref.points[front] if front else np.empty((0, 2))
        dominated = bool(len(F)) and bool(np.any(np.all(p >= F, axis=1)))
        if not dominated:
            front = [r for r in front if not np.all(p <= ref.points[r])] + [row]
            hv = hypervolume(ref.points[front], REFERENCE_POINT)
        out[k] = hv / ref.true_hv
    return out


def best_test_curve(ref: Reference, rows: list[int], observed: list[float]) -> np.ndarray:
    """Test accuracy (%) of the best-by-observed-validation row after each query."""
    out = np.empty(len(rows))
    best = -np.inf
    best_row = -1
    for k, (row, acc) in enumerate(zip(rows, observed, strict=True)):
        if acc > best:  # ties keep the earlier pick, as a user reading a sorted list would
            best, best_row = acc, row
        out[k] = ref.test[best_row]
    return out


def constrained_test_curve(ref: Reference, rows: list[int], observed: list[float]) -> np.ndarray:
    """Like ``best_test_curve`` among rows within the latency bound (NaN until one is)."""
    out = np.full(len(rows), np.nan)
    best = -np.inf
    best_row = -1
    for k, (row, acc) in enumerate(zip(rows, observed, strict=True)):
        lat = ref.points[row, 1] * ref.latency_max_ms
        if lat <= ref.latency_bound_ms and acc > best:
            best, best_row = acc, row
        if best_row >= 0:
            out[k] = ref.test[best_row]
    return out


def regret_curve(ref: Reference, rows: list[int], observed: list[float]) -> np.ndarray:
    """``regret`` (percentage points) after each query (NaN until a row meets the bound)."""
    return ref.feasible_best_test - constrained_test_curve(ref, rows, observed)


#: Which way each figure improves.
HIGHER_IS_BETTER = {"hv_ratio": True, "constrained_test": True, "best_test": True, "regret": False}


def curves(
    ref: Reference, rows: list[int], observed: list[float], figures: tuple[str, ...] | None = None
) -> dict[str, np.ndarray]:
    """The figures' curves for one run (``observed``: the validation accuracies the searcher
    saw, in any unit: only their order matters); all four unless ``figures`` names some."""
    makers = {
        "hv_ratio": lambda: hv_ratio_curve(ref, rows),
        "constrained_test": lambda: constrained_test_curve(ref, rows, observed),
        "best_test": lambda: best_test_curve(ref, rows, observed),
        "regret": lambda: regret_curve(ref, rows, observed),
    }
    return {f: makers[f]() for f in figures or tuple(makers)}


def oracle_rows(ref: Reference, figure: str, n: int) -> list[int]:
    """The first ``n`` rows the noise-ceiling oracle trains for ``figure``."""
    valid = -ref.points[:, 0]
    if figure == "hv_ratio":
        return _greedy_front(ref, n)
    rows = np.argsort(-valid, kind="stable")
    if figure in ("constrained_test", "regret"):
        lat = ref.points[:, 1] * ref.latency_max_ms
        rows = rows[lat[rows] <= ref.latency_bound_ms]
    return [int(r) for r in rows[:n]]


def _greedy_front(ref: Reference, n: int) -> list[int]:
    """True-front rows, each next one the largest hypervolume gain (ties: row order)."""
    left = [int(r) for r in ref.front_rows]
    chosen: list[int] = []
    while left and len(chosen) < n:
        gains = [hypervolume(ref.points[[*chosen, r]], REFERENCE_POINT) for r in left]
        chosen.append(left.pop(int(np.argmax(gains))))
    return chosen


def oracle_curves(
    ref: Reference, noisy: Callable[[int], float], n: int, figures: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """The noise ceiling of ``figures`` over ``n`` queries; ``noisy(row)`` is the validation
    accuracy the run's seed shows for ``row``. A short oracle list keeps its last value."""
    out = {}
    for fig in figures:
        rows = oracle_rows(ref, fig, n)
        curve = curves(ref, rows, [noisy(r) for r in rows], (fig,))[fig]
        out[fig] = np.concatenate([curve, np.full(n - len(curve), curve[-1])])
    return out


def queries_to_reach(mean_curve: np.ndarray, target: float) -> int | None:
    """Smallest number of queries whose mean figure reaches ``target`` (None if never)."""
    hit = np.flatnonzero(np.nan_to_num(mean_curve, nan=-np.inf) >= target)
    return int(hit[0]) + 1 if len(hit) else None


__all__ = [
    "HIGHER_IS_BETTER",
    "REFERENCE_POINT",
    "Reference",
    "best_test_curve",
    "constrained_test_curve",
    "curves",
    "hv_ratio_curve",
    "make_reference",
    "oracle_curves",
    "oracle_rows",
    "queries_to_reach",
    "regret_curve",
]
