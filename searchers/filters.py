"""The filter chain in front of every strategy (NNI-style middleware).

``CandidateFilter.propose(strategy)`` asks the strategy until a proposal passes, in order:

1. validity — ``space.validate`` (an ``ArchitectureError`` is a rejection, not a crash);
2. dedupe — the canonical key was never proposed before (a duplicate never trains twice);
3. hard constraints on predicted/cached cost — a ``cost_predictor`` (any object with
   ``predict(arch) -> float``, e.g. ``hwnas.latency.predictor.LatencyPredictor``; ``CachedLatency``
   puts the latency cache's measured figures in front of it) gives the cost metric's value
   before anything trains; a candidate whose cost breaks a constraint on that metric is
   dropped. No figure (None) means no rejection.

Retries are bounded: after ``max_consecutive_rejections`` rejections in a row ``propose``
returns None, and the search method ends the search gracefully instead of spinning (e.g. a
small space whose every architecture was tried, or a constraint nothing satisfies).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from hwnas.searchers.objectives import Objectives
from hwnas.searchers.strategies.base import Strategy
from hwnas.spaces.base import ArchitectureError, SearchSpace


class CostPredictor(Protocol):
    """Anything with ``predict(arch)``: a cost in the cost metric's units (None: unknown)."""

    def predict(self, arch: str) -> float | None: ...


def load_cost_predictor(spec: str | None) -> CostPredictor | None:
    """The latency engineer's predictor for ``spec`` (a saved JSON path or ``table:<device>``).

    Imported lazily: ``searchers`` depends on ``latency`` only for this pre-filter.
    """
    if not spec:
        return None
    from hwnas.latency.predictor import LatencyPredictor
    from hwnas.searchers.config import ConfigError

    try:
        return LatencyPredictor.load(spec)
    except Exception as exc:  # any failure to load is a config problem, named as such
        raise ConfigError(f"hwnas.latency.predictor: cannot load {spec!r}: {exc}") from exc


class CachedLatency:
    """Cost from the latency cache's measured figure when there is one, else ``fallback``.

    Uses ``hwnas.latency.measure.cached_latency``, which never measures; any failure to read the
    cache (missing file, no device facts in this process) counts as a miss, since the
    pre-filter is best effort and must never stop a search.
    """

    def __init__(
        self,
        space: SearchSpace,
        cache_path: str,
        *,
        backend: str,
        batch: int,
        threads: int,
        input_shape: tuple[int, int, int],
        num_classes: int,
        fallback: CostPredictor | None = None,
    ) -> None:
        self.space = space
        self.cache_path = cache_path
        # Settings, not a MeasurementTarget yet: one that fails validation must be a miss at
        # predict time, like any other cache problem, not an error here.
        self.target_settings = {
            "backend": backend,
            "batch": batch,
            "threads": threads,
            "input_shape": input_shape,
            "num_classes": num_classes,
        }
        self.fallback = fallback
        self.hits = 0

    def predict(self, arch: str) -> float | None:
        try:
            from hwnas.latency.measure import cached_latency
            from hwnas.latency.target import MeasurementTarget

            target = MeasurementTarget(**self.target_settings)
            hit = cached_latency(self.space, arch, target, cache_path=self.cache_path)
        except Exception:  # best effort: a cache we cannot read is a miss
            hit = None
        if hit is not None:
            self.hits += 1
            return float(hit.median_ms)
        return None if self.fallback is None else float(self.fallback.predict(arch))


class CandidateFilter:
    """Validity, dedupe and constraint pre-filter with rejection accounting."""

    def __init__(
        self,
        space: SearchSpace,
        objectives: Objectives,
        cost_predictor: CostPredictor | None = None,
        cost_metric: str = "latency_ms",
        max_consecutive_rejections: int = 1000,
    ) -> None:
        self.space = space
        self.objectives = objectives
        self.cost_predictor = cost_predictor
        self.cost_metric = cost_metric
        self.max_consecutive_rejections = max_consecutive_rejections
        self.cost_constraints = tuple(c for c in objectives.constraints if c.metric == cost_metric)
        self.seen: set[str] = set()
        self.counts = {"proposed": 0, "accepted": 0, "invalid": 0, "duplicate": 0, "constraint": 0}
        self.consecutive_rejections = 0

    def predicted_cost(self, arch: str) -> float | None:
        """The predictor's value for ``arch`` (None without a predictor or a figure)."""
        if self.cost_predictor is None:
            return None
        cost = self.cost_predictor.predict(arch)
        return None if cost is None else float(cost)

    def check(self, arch: str) -> tuple[str | None, str, float | None]:
        """``(normalised arch or None, reason, predicted cost)`` for one proposal."""
        try:
            arch = self.space.validate(arch)
        except ArchitectureError:
            return None, "invalid", None
        if self.space.canonical_key(arch) in self.seen:
            return None, "duplicate", None
        cost = None
        if self.cost_constraints:
            cost = self.predicted_cost(arch)
            if cost is not None and not all(c.satisfied(cost) for c in self.cost_constraints):
                return None, "constraint", cost
        return arch, "accepted", cost

    def propose(self, strategy: Strategy) -> tuple[str, float | None] | None:
        """The next accepted proposal and its predicted cost, or None when retries ran out."""
        while self.consecutive_rejections < self.max_consecutive_rejections:
            self.counts["proposed"] += 1
            arch, reason, cost = self.check(strategy.ask())
            self.counts[reason] += 1
            if arch is not None:
                self.seen.add(self.space.canonical_key(arch))
                self.consecutive_rejections = 0
                return arch, cost
            self.consecutive_rejections += 1
        return None

    def state_dict(self) -> dict[str, Any]:
        """Counters only: ``seen`` is the canonical keys of the trials and warm-start results,
        which the search method restores from its records."""
        return {
            "counts": dict(self.counts),
            "consecutive_rejections": self.consecutive_rejections,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.counts = {k: int(v) for k, v in state["counts"].items()}
        self.consecutive_rejections = int(state["consecutive_rejections"])


__all__ = [
    "CachedLatency",
    "CandidateFilter",
    "CostPredictor",
    "load_cost_predictor",
]
