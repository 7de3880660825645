"""The search's Pareto front, reference point and hypervolume, computed in one place.

``ParetoArchive`` holds each trial's latest result; the front is the non-dominated set of
those that are feasible. The hypervolume's reference point follows ``searchers.pareto``'s
rules, its data-derived parts from the range of every feasible result seen (all lengths).
The search method keeps one archive up to date result by result; the report replays the trial
records through one (``replay``) and gets the same front, so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from hwnas.searchers.objectives import Objectives
from hwnas.searchers.pareto import (
    configured_reference,
    fill_reference,
    hypervolume,
    nondominated_mask,
)


class ParetoArchive:
    """Incremental front over each trial's latest feasible result (see the module docstring).

    A new point costs one comparison with the front; a full recompute happens only when a front
    member's own point changes (a promoted trial reports a longer result).
    """

    def __init__(self, objectives: Objectives) -> None:
        self.objectives = objectives
        m = len(objectives.objectives)
        self._ref = configured_reference(objectives)  # NaN: from data (see pareto)
        self._hi = np.full(m, -np.inf)  # worst / best feasible values seen
        self._lo = np.full(m, np.inf)
        self._vectors: dict[int, np.ndarray] = {}  # feasible latest vector per trial
        self.front: list[int] = []  # trial ids, in the order they joined
        self._front_set: set[int] = set()
        self._front_F: np.ndarray | None = None

    def add(self, trial_id: int, metrics: Mapping[str, Any]) -> None:
        """File ``metrics`` as the latest result of ``trial_id``."""
        self._observe_range(metrics)
        self._vectors.pop(trial_id, None)
        if self.objectives.feasible(metrics):
            v = self.objectives.vector(metrics)
            if np.all(np.isfinite(v)):
                self._vectors[trial_id] = v
        self._update_front(trial_id)

    def reference(self) -> np.ndarray:
        """The reference point (minimisation space) from the config and the data so far."""
        return fill_reference(self._ref, self._hi, self._lo)

    def front_matrix(self) -> np.ndarray:
        """The front's minimisation vectors, rows aligned with ``front``."""
        if self._front_F is None or len(self._front_F) != len(self.front):
            m = len(self.objectives.objectives)
            self._front_F = np.array([self._vectors[t] for t in self.front]).reshape(-1, m)
        return self._front_F

    def hypervolume(self, reference: np.ndarray | None = None) -> float:
        """Hypervolume of the front against ``reference`` (default: ``reference()``)."""
        ref = self.reference() if reference is None else reference
        return hypervolume(self.front_matrix(), ref)

    def _observe_range(self, metrics: Mapping[str, Any]) -> None:
        if not self.objectives.feasible(metrics):
            return
        v = self.objectives.vector(metrics)
        if np.all(np.isfinite(v)):
            np.maximum(self._hi, v, out=self._hi)
            np.minimum(self._lo, v, out=self._lo)

    def _set_front(self, ids: list[int]) -> None:
        self.front = ids
        self._front_set = set(ids)
        self._front_F = None

    def _update_front(self, trial_id: int) -> None:
        if trial_id in self._front_set:
            ids = sorted(self._vectors)
            m = len(self.objectives.objectives)
            F = np.array([self._vectors[t] for t in ids]).reshape(len(ids), m)
            self._set_front([ids[i] for i in np.flatnonzero(nondominated_mask(F))])
            return
        v = self._vectors.get(trial_id)
        if v is None:
            return
        F = self.front_matrix()
        if len(F):
            # Dominated (or equal to a front point): stays off the front.
            if np.any(np.all(v >= F, axis=1)):
                return
            keep = ~(np.all(v <= F, axis=1) & np.any(v < F, axis=1))
            if not keep.all():
                self.front = [t for t, k in zip(self.front, keep, strict=True) if k]
                self._front_set = set(self.front)
                F = F[keep]
        self.front.append(trial_id)
        self._front_set.add(trial_id)
        self._front_F = np.vstack([F.reshape(-1, len(v)), v[None, :]])


def replay(
    results: Iterable[tuple[int, Mapping[str, Any]]], objectives: Objectives
) -> ParetoArchive:
    """An archive after ``(trial_id, metrics)`` results in arrival order."""
    archive = ParetoArchive(objectives)
    for trial_id, metrics in results:
        archive.add(trial_id, metrics)
    return archive


def hypervolume_history(
    results: Iterable[tuple[int, Mapping[str, Any]]], objectives: Objectives
) -> list[float]:
    """The front's hypervolume after each result, all measured against the final reference
    point (so the curve compares like with like; its last value is the final hypervolume)."""
    results = list(results)
    reference = replay(results, objectives).reference()
    archive = ParetoArchive(objectives)
    history = []
    for trial_id, metrics in results:
        archive.add(trial_id, metrics)
        history.append(archive.hypervolume(reference))
    return history


__all__ = ["ParetoArchive", "hypervolume_history", "replay"]
