"""Asynchronous successive halving (ASHA) and its multi-objective variant (MO-ASHA).

Rungs sit at ``min_length * eta**k`` epochs (``eta`` = reduction factor) for every ``k`` with
a length below ``max_length``, and a last rung at ``max_length``. When a trial reports at rung
``k`` (not the last), the rung's ``n`` recorded results are ranked and the best
``floor(n / eta)`` are promoted to rung ``k + 1`` if not promoted before; that may be the trial
that just reported or an earlier, paused one. Nothing ever waits for a rung to fill, so any
number of concurrent trials works (Li et al., "A System for Massively Parallel
Hyperparameter Tuning", 2020).

Ranking: single-objective ASHA orders by ``Objectives.ranking_key`` (feasible first, then the
scalarised score). MO-ASHA orders by Deb's constrained domination, then non-dominated rank,
then crowding distance over the objective vector at that rung (e.g. accuracy at this rung and
latency) — Schmucker et al., "Multi-objective ASHA", 2021, with NSGA-II's crowded comparison.
Ties go to the lower trial id, so decisions are deterministic.

The object is pure: no I/O, state as JSON via ``state_dict``/``load_state_dict``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from searchers.objectives import Objectives
from searchers.pareto import rank_and_crowding_order


def rung_lengths(min_length: int, max_length: int, reduction_factor: int) -> list[int]:
    """``[min, min*eta, min*eta**2, ...]`` below ``max_length``, then ``max_length``."""
    if min_length < 1 or max_length < min_length or reduction_factor < 2:
        raise ValueError(
            f"need 1 <= min_length <= max_length and reduction_factor >= 2, got "
            f"min_length={min_length}, max_length={max_length}, "
            f"reduction_factor={reduction_factor}"
        )
    out = []
    length = min_length
    while length < max_length:
        out.append(length)
        length *= reduction_factor
    out.append(max_length)
    return out


class _Rung:
    """Results recorded at one rung: parallel lists for fast array building."""

    def __init__(self) -> None:
        self.trial_ids: list[int] = []
        self.vectors: list[list[float]] = []  # minimisation objective vectors (MO)
        self.scores: list[float] = []  # scalar score, higher better (SO)
        self.violations: list[float] = []
        self.promoted: set[int] = set()
        self.index: dict[int, int] = {}

    def to_json(self) -> dict[str, Any]:
        return {
            "trial_ids": self.trial_ids,
            "vectors": [[_nan_to_none(x) for x in v] for v in self.vectors],
            "scores": [_nan_to_none(x) for x in self.scores],
            "violations": [_nan_to_none(x) for x in self.violations],
            "promoted": sorted(self.promoted),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> _Rung:
        r = cls()
        r.trial_ids = [int(t) for t in d["trial_ids"]]
        r.vectors = [[_none_to_nan(x) for x in v] for v in d["vectors"]]
        r.scores = [_none_to_nan(x) for x in d["scores"]]
        r.violations = [_none_to_nan(x) for x in d["violations"]]
        r.promoted = {int(t) for t in d["promoted"]}
        r.index = {t: i for i, t in enumerate(r.trial_ids)}
        return r


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else (x if math.isfinite(x) else (1e308 if x > 0 else -1e308))


def _none_to_nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


class ASHA:
    """Promotion decisions for (MO-)ASHA; see the module docstring."""

    def __init__(
        self,
        min_length: int,
        max_length: int,
        reduction_factor: int,
        objectives: Objectives,
        multi_objective: bool = True,
    ) -> None:
        self.lengths = rung_lengths(min_length, max_length, reduction_factor)
        self.eta = reduction_factor
        self.objectives = objectives
        self.multi_objective = multi_objective
        self.rungs = [_Rung() for _ in self.lengths]

    @property
    def max_length(self) -> int:
        return self.lengths[-1]

    def rung_of(self, length: int) -> int:
        """Index of the rung at ``length``; ``ValueError`` if it is not a rung length."""
        try:
            return self.lengths.index(int(length))
        except ValueError:
            raise ValueError(f"length {length} is not a rung length {self.lengths}") from None

    def next_length(self, length: int) -> int | None:
        """The rung length after ``length`` (None at the last rung)."""
        k = self.rung_of(length)
        return self.lengths[k + 1] if k + 1 < len(self.lengths) else None

    def record(self, trial_id: int, length: int, values: Mapping[str, Any]) -> list[int]:
        """File ``values`` of ``trial_id`` at rung ``length``; return trials promoted now.

        Recording the same trial twice at one rung keeps the first result.
        """
        k = self.rung_of(length)
        rung = self.rungs[k]
        if trial_id not in rung.index:
            rung.index[trial_id] = len(rung.trial_ids)
            rung.trial_ids.append(trial_id)
            rung.vectors.append([float(x) for x in self.objectives.vector(values)])
            score = self.objectives.score(values)
            rung.scores.append(score)
            rung.violations.append(self.objectives.violation(values))
        if k + 1 == len(self.lengths):
            return []
        n_promote = len(rung.trial_ids) // self.eta
        if n_promote == 0:
            return []
        order = self._order(rung)
        promoted = []
        for i in order[:n_promote]:
            t = rung.trial_ids[i]
            if t not in rung.promoted:
                rung.promoted.add(t)
                promoted.append(t)
        return promoted

    def _order(self, rung: _Rung) -> np.ndarray:
        """Indices into the rung's lists, best first."""
        viol = np.asarray(rung.violations, dtype=float)
        if self.multi_objective:
            return rank_and_crowding_order(np.asarray(rung.vectors, dtype=float), viol)
        scores = np.asarray(rung.scores, dtype=float)
        scores = np.where(np.isnan(scores), -np.inf, scores)
        viol = np.where(np.isnan(viol), np.inf, viol)
        ids = np.asarray(rung.trial_ids)
        return np.lexsort((ids, -scores, viol))

    def is_promoted(self, trial_id: int, length: int) -> bool:
        """Whether ``trial_id`` has been promoted out of the rung at ``length``."""
        return trial_id in self.rungs[self.rung_of(length)].promoted

    def state_dict(self) -> dict[str, Any]:
        """Pure-JSON state."""
        return {
            "lengths": self.lengths,
            "eta": self.eta,
            "multi_objective": self.multi_objective,
            "rungs": [r.to_json() for r in self.rungs],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from ``state_dict`` output (the rung lengths must match)."""
        if list(state["lengths"]) != self.lengths:
            raise ValueError(f"state rungs {state['lengths']} differ from {self.lengths}")
        self.rungs = [_Rung.from_json(r) for r in state["rungs"]]


__all__ = ["ASHA", "rung_lengths"]
