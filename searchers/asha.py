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

from hwnas.searchers.objectives import Objectives
from hwnas.searchers.pareto import top_k


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
    """Results recorded at one rung, in growing numpy buffers (no per-event list->array)."""

    def __init__(self, m: int) -> None:
        self.m = m
        self.n = 0
        self._ids = np.zeros(16, dtype=np.int64)
        self._vectors = np.zeros((16, m))  # minimisation objective vectors (MO)
        self._scores = np.zeros(16)  # scalar score, higher better (SO)
        self._violations = np.zeros(16)
        self._promoted = np.zeros(16, dtype=bool)  # by row, mirrors ``promoted``
        self.promoted: set[int] = set()
        self.index: dict[int, int] = {}

    @property
    def trial_ids(self) -> np.ndarray:
        return self._ids[: self.n]

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors[: self.n]

    @property
    def scores(self) -> np.ndarray:
        return self._scores[: self.n]

    @property
    def violations(self) -> np.ndarray:
        return self._violations[: self.n]

    @property
    def promoted_mask(self) -> np.ndarray:
        return self._promoted[: self.n]

    def add(self, trial_id: int, vector: np.ndarray, score: float, violation: float) -> None:
        if self.n == len(self._ids):
            cap = 2 * len(self._ids)
            self._ids = np.resize(self._ids, cap)
            self._vectors = np.resize(self._vectors, (cap, self.m))
            self._scores = np.resize(self._scores, cap)
            self._violations = np.resize(self._violations, cap)
            self._promoted = np.concatenate([self._promoted, np.zeros(cap - self.n, bool)])
        i = self.n
        # Infinities become +-1e308 now, exactly as a JSON round trip stores them, so a
        # restored rung and a never-stopped one compare identically.
        self._ids[i] = trial_id
        self._vectors[i] = np.clip(vector, -1e308, 1e308)
        self._scores[i] = np.clip(score, -1e308, 1e308)
        self._violations[i] = np.clip(violation, -1e308, 1e308)
        self._promoted[i] = False
        self.index[trial_id] = i
        self.n += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "trial_ids": self.trial_ids.tolist(),
            "vectors": [[_nan_to_none(x) for x in v] for v in self.vectors.tolist()],
            "scores": [_nan_to_none(x) for x in self.scores.tolist()],
            "violations": [_nan_to_none(x) for x in self.violations.tolist()],
            "promoted": sorted(self.promoted),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any], m: int) -> _Rung:
        r = cls(m)
        for t, v, s, c in zip(
            d["trial_ids"], d["vectors"], d["scores"], d["violations"], strict=True
        ):
            r.add(int(t), np.array([_none_to_nan(x) for x in v]), _none_to_nan(s), _none_to_nan(c))
        r.promoted = {int(t) for t in d["promoted"]}
        for t in r.promoted:
            r._promoted[r.index[t]] = True
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
        self.rungs = [_Rung(len(objectives.objectives)) for _ in self.lengths]

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
            rung.add(
                trial_id,
                self.objectives.vector(values),
                self.objectives.score(values),
                self.objectives.violation(values),
            )
        if k + 1 == len(self.lengths):
            return []
        n_promote = rung.n // self.eta
        if n_promote == 0:
            return []
        top = self._top(rung, n_promote)
        fresh = top[~rung.promoted_mask[top]]  # in the top k and not promoted before
        promoted = [int(t) for t in rung.trial_ids[fresh]]
        rung.promoted_mask[fresh] = True
        rung.promoted.update(promoted)
        return promoted

    def _top(self, rung: _Rung, k: int) -> np.ndarray:
        """Indices into the rung's lists of its best ``k`` results."""
        viol = rung.violations
        if self.multi_objective:
            return top_k(rung.vectors, viol, k)
        scores = np.where(np.isnan(rung.scores), -np.inf, rung.scores)
        viol = np.where(np.isnan(viol), np.inf, viol)
        return np.lexsort((rung.trial_ids, -scores, viol))[:k]

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
        m = len(self.objectives.objectives)
        self.rungs = [_Rung.from_json(r, m) for r in state["rungs"]]


__all__ = ["ASHA", "rung_lengths"]
