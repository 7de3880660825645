"""Pareto maths on minimisation vectors: non-dominated sorting, crowding, front, hypervolume.

Every function takes an ``(n, m)`` array ``F`` of objective values *to minimise*
(``Objectives.vector`` negates maximised metrics). Rows containing NaN (a missing metric)
are never on a front and rank last.

Hypervolume reference point
---------------------------
The hypervolume is the area (volume) dominated by the front and bounded by a reference point
``r`` that every counted point must strictly dominate. The config's ``reference_point`` gives
it in each metric's own units (e.g. ``{validation_accuracy: 0.0, latency_ms: 50.0}``). Where it
is not given, ``reference_point`` below fills it in this order: an accuracy metric's worst
value (0.0); the bound of a hard constraint on that metric (e.g. ``latency_ms <= 5`` gives 5,
since nothing beyond it is feasible anyway); otherwise the worst value seen so far plus 10% of
the observed range (data-dependent, so hypervolumes computed at different times are comparable
only when the reference point is configured).
"""

from __future__ import annotations

import math

import moocore
import numpy as np

from hwnas.searchers.objectives import Objectives


def _finite_rows(F: np.ndarray) -> np.ndarray:
    F = np.asarray(F, dtype=float)
    if F.ndim != 2:
        raise ValueError(f"expected a 2-D array of objective vectors, got shape {F.shape}")
    return np.all(np.isfinite(F), axis=1)


def nondominated_mask(F: np.ndarray) -> np.ndarray:
    """Boolean mask of rows not dominated by any other row (duplicates: first one kept)."""
    F = np.asarray(F, dtype=float)
    ok = _finite_rows(F)
    mask = np.zeros(len(F), dtype=bool)
    if ok.any():
        mask[ok] = moocore.is_nondominated(F[ok])
    return mask


def pareto_ranks(F: np.ndarray) -> np.ndarray:
    """Non-dominated sorting: rank 0 is the front, 1 the front once 0 is removed, and so on.

    Rows with NaN get rank ``max_rank + 1``.
    """
    F = np.asarray(F, dtype=float)
    ok = _finite_rows(F)
    ranks = np.zeros(len(F), dtype=np.int64)
    if ok.any():
        ranks[ok] = moocore.pareto_rank(F[ok])
        ranks[~ok] = ranks[ok].max() + 1
    return ranks


def crowding_distance(F: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance within one set of points (boundary points get ``inf``)."""
    F = np.asarray(F, dtype=float)
    n, m = F.shape
    dist = np.zeros(n)
    if n <= 2:
        dist[:] = math.inf
        return dist
    for j in range(m):
        order = np.argsort(F[:, j], kind="stable")
        col = F[order, j]
        span = col[-1] - col[0]
        dist[order[0]] = dist[order[-1]] = math.inf
        if span > 0:
            dist[order[1:-1]] += (col[2:] - col[:-2]) / span
    return dist


def grouped_crowding_distance(F: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``crowding_distance`` within each group of rows (e.g. each front), vectorised."""
    F = np.asarray(F, dtype=float)
    groups = np.asarray(groups)
    n, m = F.shape
    dist = np.zeros(n)
    if n == 0:
        return dist
    for j in range(m):
        order = np.lexsort((F[:, j], groups))
        g = groups[order]
        f = F[order, j]
        change = g[1:] != g[:-1]
        first = np.concatenate([[True], change])
        last = np.concatenate([change, [True]])
        gid = np.cumsum(first) - 1
        span = (f[last] - f[first])[gid]
        prev = np.concatenate([[f[0]], f[:-1]])
        nxt = np.concatenate([f[1:], [f[-1]]])
        with np.errstate(divide="ignore", invalid="ignore"):
            contrib = np.where(span > 0, (nxt - prev) / span, 0.0)
        contrib[first | last] = math.inf
        dist[order] += contrib
    return dist


def rank_and_crowding_order(F: np.ndarray, violation: np.ndarray | None = None) -> np.ndarray:
    """Indices of ``F`` best first: feasible rows by (rank, -crowding, index), then infeasible
    rows by total constraint violation, then rows with missing values.

    This is NSGA-II's crowded comparison with Deb's constrained domination.
    """
    F = np.asarray(F, dtype=float)
    n = len(F)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    viol = np.zeros(n) if violation is None else np.asarray(violation, dtype=float)
    finite = _finite_rows(F)
    feasible = finite & (viol == 0)
    idx_f = np.flatnonzero(feasible)
    ranks = pareto_ranks(F[idx_f]) if len(idx_f) else np.zeros(0, dtype=np.int64)
    crowd = grouped_crowding_distance(F[idx_f], ranks)
    order_f = idx_f[np.lexsort((idx_f, -crowd, ranks))]
    idx_i = np.flatnonzero(finite & (viol != 0))
    order_i = idx_i[np.lexsort((idx_i, viol[idx_i]))]
    rest = np.flatnonzero(~finite)
    return np.concatenate([order_f, order_i, rest]).astype(np.int64)


def top_k(F: np.ndarray, violation: np.ndarray, k: int) -> np.ndarray:
    """The same set as ``rank_and_crowding_order(F, violation)[:k]``, computing crowding only
    for the one front that the cut at ``k`` splits (cheap for large ``F``). Fronts above the
    cut come in (rank, index) order, then the split front by crowding."""
    F = np.asarray(F, dtype=float)
    viol = np.asarray(violation, dtype=float)
    finite = _finite_rows(F)
    idx_f = np.flatnonzero(finite & (viol == 0))
    if k >= len(idx_f):
        return rank_and_crowding_order(F, viol)[:k]
    ranks = moocore.pareto_rank(F[idx_f])
    counts = np.bincount(ranks)
    cum = np.cumsum(counts)
    r_cut = int(np.searchsorted(cum, k))  # the front the cut falls in
    above = idx_f[ranks < r_cut]
    above = above[np.lexsort((above, ranks[ranks < r_cut]))]
    members = idx_f[ranks == r_cut]
    crowd = crowding_distance(F[members])
    split = members[np.lexsort((members, -crowd))][: k - len(above)]
    return np.concatenate([above, split]).astype(np.int64)


def hypervolume(F: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of the rows of ``F`` that strictly dominate ``ref`` (0.0 when none do)."""
    F = np.asarray(F, dtype=float)
    ref = np.asarray(ref, dtype=float)
    if F.size == 0:
        return 0.0
    F = F[_finite_rows(F)]
    F = F[np.all(ref > F, axis=1)]
    if len(F) == 0:
        return 0.0
    return float(moocore.hypervolume(F, ref=ref))


def configured_reference(objectives: Objectives) -> np.ndarray:
    """The reference point from the config, accuracy defaults and constraint bounds; NaN
    where it must come from data (minimisation space)."""
    ref = objectives.reference_vector()
    for i, o in enumerate(objectives.objectives):
        if not math.isnan(ref[i]):
            continue
        worst_side = "<" if o.goal == "minimize" else ">"
        for c in objectives.constraints:
            if c.metric == o.metric and c.op.startswith(worst_side):
                ref[i] = o.to_min(c.bound)
                break
    return ref


def fill_reference(ref: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Fill NaN entries of ``ref`` with the worst value seen (``hi``) plus 10% of the range."""
    ref = np.array(ref, dtype=float)
    missing = np.isnan(ref)
    if missing.any():
        hi = np.asarray(hi, dtype=float)
        lo = np.asarray(lo, dtype=float)
        with np.errstate(invalid="ignore"):  # hi = -inf before any data: filled with 1.0
            span = np.where(hi > lo, hi - lo, np.maximum(np.abs(hi), 1.0))
            fill = np.where(np.isfinite(hi), hi + 0.1 * span, 1.0)
        ref[missing] = fill[missing]
    return ref


def reference_point(objectives: Objectives, F: np.ndarray | None = None) -> np.ndarray:
    """The reference point (minimisation space) following the module docstring's rules."""
    ref = configured_reference(objectives)
    m = len(ref)
    Fa = np.zeros((0, m)) if F is None else np.asarray(F, dtype=float).reshape(-1, m)
    Fa = Fa[_finite_rows(Fa)]
    if len(Fa) == 0:
        return fill_reference(ref, np.full(m, np.nan), np.full(m, np.nan))
    return fill_reference(ref, Fa.max(axis=0), Fa.min(axis=0))


__all__ = [
    "configured_reference",
    "crowding_distance",
    "fill_reference",
    "grouped_crowding_distance",
    "hypervolume",
    "nondominated_mask",
    "pareto_ranks",
    "rank_and_crowding_order",
    "reference_point",
    "top_k",
]
