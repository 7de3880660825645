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

Registered as the early stoppers ``asha`` and ``mo-asha`` (``searchers.early_stopping``);
options ``min_length`` (first rung, default 1) and ``reduction_factor`` (``eta``, default 3).
Pure: no I/O. The rungs are rebuilt from the trial records; the state holds only which trials
each rung has promoted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from pydantic import Field

from hwnas.searchers.early_stopping import (
    STOPPERS,
    Decision,
    EarlyStopper,
    Observation,
    StopperOptions,
)
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
        self._ids[i] = trial_id
        self._vectors[i] = vector
        self._scores[i] = score
        self._violations[i] = violation
        self._promoted[i] = False
        self.index[trial_id] = i
        self.n += 1


class ASHAOptions(StopperOptions):
    #: The first rung, in epochs.
    min_length: int = Field(1, ge=1)
    #: ``eta``: rungs grow by this factor and the top ``1/eta`` of a rung is promoted.
    reduction_factor: int = Field(3, ge=2)


@STOPPERS.register("asha", multi_objective=False)
@STOPPERS.register("mo-asha", multi_objective=True)
class ASHA(EarlyStopper):
    """Promotion decisions for (MO-)ASHA; see the module docstring."""

    Options = ASHAOptions

    def __init__(
        self,
        objectives: Objectives,
        max_length: int,
        *,
        multi_objective: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(objectives, max_length, **options)
        opts: ASHAOptions = self.options  # type: ignore[assignment]
        if opts.min_length > max_length:
            raise ValueError(f"min_length ({opts.min_length}) must be <= max_length ({max_length})")
        self.name = "mo-asha" if multi_objective else "asha"
        self.lengths = rung_lengths(opts.min_length, max_length, opts.reduction_factor)
        self.eta = opts.reduction_factor
        self.multi_objective = multi_objective
        self.rungs = [_Rung(len(objectives.objectives)) for _ in self.lengths]

    @property
    def first_length(self) -> int:
        return self.lengths[0]

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

    def on_result(self, trial_id: int, length: int, metrics: Mapping[str, Any]) -> Decision:
        promoted = self.record(trial_id, length, metrics)
        if length >= self.max_length:
            return Decision("stop")
        nxt = self.next_length(length)
        assert nxt is not None
        others = tuple((t, nxt) for t in promoted if t != trial_id)
        if trial_id in promoted:
            return Decision("continue", nxt, others)
        return Decision("pause", None, others)

    def _add(self, trial_id: int, length: int, values: Mapping[str, Any]) -> _Rung | None:
        """File a result in its rung (a second result at one rung is ignored)."""
        rung = self.rungs[self.rung_of(length)]
        if trial_id in rung.index:
            return None
        rung.add(
            trial_id,
            self.objectives.vector(values),
            self.objectives.score(values),
            self.objectives.violation(values),
        )
        return rung

    def record(self, trial_id: int, length: int, values: Mapping[str, Any]) -> list[int]:
        """File ``values`` of ``trial_id`` at rung ``length``; return trials promoted now.

        Recording the same trial twice at one rung keeps the first result.
        """
        k = self.rung_of(length)
        self._add(trial_id, length, values)
        rung = self.rungs[k]
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

    def rebuild(self, observations: Iterable[Observation]) -> None:
        """Refill the rungs from results in arrival order (promotions come from the state)."""
        self.rungs = [_Rung(len(self.objectives.objectives)) for _ in self.lengths]
        for obs in observations:
            if obs.length in self.lengths:
                self._add(obs.trial_id, obs.length, obs.metrics)

    def state_dict(self) -> dict[str, Any]:
        """Which trials each rung promoted (the rungs' results live in the trial records)."""
        return {
            "lengths": self.lengths,
            "promoted": [sorted(r.promoted) for r in self.rungs],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from ``state_dict`` output (the rung lengths must match); after ``rebuild``."""
        if list(state["lengths"]) != self.lengths:
            raise ValueError(f"state rungs {state['lengths']} differ from {self.lengths}")
        for rung, promoted in zip(self.rungs, state["promoted"], strict=True):
            rung.promoted = {int(t) for t in promoted}
            for t in rung.promoted:
                rung.promoted_mask[rung.index[t]] = True


__all__ = ["ASHA", "ASHAOptions", "rung_lengths"]
