"""The acquisition shared by the model-based strategies (``predictor``, ``arch2vec``).

A strategy builds a candidate pool (``candidate_pool``, or every unproposed architecture of a
listable space), predicts each candidate's modelled metrics, and asks ``pick`` which one to
query. Each candidate comes with a posterior *mean* and one Thompson *draw* per metric (a GP
posterior draw, or one random member of an ensemble whose mean is the ensemble mean).

Constraints are judged on the mean: a candidate is feasible when its predicted values meet
every hard constraint, i.e. when feasibility is more likely than not under a symmetric
posterior. The draw says only how *good* a candidate may be (exploration); judging feasibility
on it would let a lucky draw on a constrained metric spend a query on an architecture the model
itself expects to break the bound. Among infeasible candidates the smallest mean violation
comes first, so an all-infeasible pool still yields the one closest to feasible.

* single objective (one objective, or a scalarisation): feasible first, then the best drawn
  ``Objectives.scores``, ties to the lowest index (the pool order);
* multi-objective: the largest hypervolume improvement of a feasible drawn point over the
  current feasible front (``acquisition="hvi"``); when none improves it, or with
  ``acquisition="parego"``, ParEGO: the best draw under random Chebyshev weights on
  range-normalised objectives, feasible first.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from typing import Literal

import numpy as np

from hwnas.searchers.objectives import Objectives
from hwnas.searchers.pareto import hypervolume, nondominated_mask, reference_point
from hwnas.spaces.base import SearchSpace

Acquisition = Literal["hvi", "parego"]


def candidate_pool(
    space: SearchSpace,
    rng: np.random.Generator,
    parents: Sequence[str],
    size: int,
    exclude: Container[str],
    mutation_fraction: float = 0.5,
) -> list[str]:
    """Up to ``size`` architectures of new canonical keys: mutants of ``parents``, then samples."""
    # The first attempts mutate a random parent, the rest sample uniformly; keys in ``exclude``
    # or already pooled are skipped. Bounded: a small or exhausted space must not loop.
    n_mutants = round(size * mutation_fraction)
    pool: dict[str, str] = {}
    for i in range(3 * size):
        if len(pool) >= size:
            break
        if i < n_mutants and parents:
            arch = space.mutate(parents[int(rng.integers(len(parents)))], rng)
        else:
            arch = space.sample(rng)
        key = space.canonical_key(arch)
        if key not in exclude:
            pool.setdefault(key, arch)
    return list(pool.values())


def pick(
    objectives: Objectives,
    means: Mapping[str, np.ndarray],
    draws: Mapping[str, np.ndarray],
    told: Sequence[Mapping[str, float]],
    rng: np.random.Generator,
    acquisition: Acquisition = "hvi",
) -> int:
    """Index of the candidate to query: feasibility from ``means``, quality from ``draws``."""
    # ``told``: the results so far, whose feasible front a multi-objective pick must improve;
    # ``rng`` is used only by a ParEGO pick (one Dirichlet weight vector).
    violation = objectives.violations(means)
    if len(violation) == 0:
        raise ValueError("pick needs at least one candidate")
    if objectives.is_multi_objective:
        return pick_multi(objectives, draws, violation, told, rng, acquisition)
    return pick_single(objectives, draws, violation)


def pick_single(
    objectives: Objectives, draws: Mapping[str, np.ndarray], violation: np.ndarray
) -> int:
    """Least violation first, then the highest drawn score (NaN last), then the lowest index."""
    score = objectives.scores(draws)
    return _first(violation, np.where(np.isnan(score), np.inf, -score))


def pick_multi(
    objectives: Objectives,
    draws: Mapping[str, np.ndarray],
    violation: np.ndarray,
    told: Sequence[Mapping[str, float]],
    rng: np.random.Generator,
    acquisition: Acquisition = "hvi",
) -> int:
    """The largest hypervolume improvement of a feasible draw (``hvi``), else ParEGO."""
    C = objectives.matrix(draws)
    feasible = violation == 0
    if acquisition == "hvi":
        gains = hypervolume_improvements(objectives, C, feasible, told)
        if gains.max() > 0:
            return int(np.argmax(gains))
    return parego_pick(C, violation, rng)


def hypervolume_improvements(
    objectives: Objectives,
    C: np.ndarray,
    feasible: np.ndarray,
    told: Sequence[Mapping[str, float]],
) -> np.ndarray:
    """Each draw's hypervolume gain over the feasible front of ``told`` (-1: not computed)."""
    # Rows of ``C`` are minimisation vectors. Infeasible draws get -1; so do draws dominated by
    # another candidate: they never have the largest gain, so only the pool's own feasible
    # front needs a hypervolume each.
    k = len(objectives.objectives)
    F = np.array(
        [objectives.vector(v) for v in told if objectives.feasible(v)], dtype=float
    ).reshape(-1, k)
    front = F[nondominated_mask(F)] if len(F) else F
    ref = reference_point(objectives, np.vstack([F, C]) if len(F) else C)
    base = hypervolume(front, ref)
    gains = np.full(len(C), -1.0)
    idx = np.flatnonzero(feasible)
    if len(idx):
        for i in idx[nondominated_mask(C[idx])]:
            gains[i] = hypervolume(np.vstack([front, C[i][None]]), ref) - base
    return gains


def parego_pick(C: np.ndarray, violation: np.ndarray, rng: np.random.Generator) -> int:
    """ParEGO: least violation, then the best random-weight Chebyshev score on normalised ``C``."""
    # One Dirichlet weight vector per pick; objectives normalised to the pool's range.
    lo, hi = np.nanmin(C, axis=0), np.nanmax(C, axis=0)
    norm = (C - lo) / np.where(hi > lo, hi - lo, 1.0)
    w = rng.dirichlet(np.ones(C.shape[1]))
    cheb = np.nanmax(norm * w, axis=1)
    return _first(violation, np.where(np.isnan(cheb), np.inf, cheb))


def _first(violation: np.ndarray, badness: np.ndarray) -> int:
    """Index of the least ``violation``, ties broken by the least ``badness``, then by index."""
    order = np.lexsort((np.arange(len(badness)), badness, violation))
    return int(order[0])


__all__ = [
    "Acquisition",
    "candidate_pool",
    "hypervolume_improvements",
    "parego_pick",
    "pick",
    "pick_multi",
    "pick_single",
]
