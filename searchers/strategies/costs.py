"""The search's cost source as a model-based strategy uses it: look-ups remembered.

Latency is cheap next to training (``StrategyContext.cost``: a predictor, the latency cache,
a table), so a strategy may look a candidate's cost up before proposing it, propose only
candidates that meet the hard bounds on the cost metric, and train its cost model on every
look-up. Each architecture is looked up once; the figures go into the strategy's state, in
look-up order, so a resumed search neither repeats a measurement nor fits a different model.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from hwnas.searchers.objectives import Objectives
from hwnas.searchers.strategies.base import StrategyContext


class CostLookups:
    """Costs looked up in the search's cost source (``values``: architecture -> cost)."""

    def __init__(self, context: StrategyContext, objectives: Objectives, enabled: bool = True):
        self.source = context.cost if enabled else None
        self.metric = context.cost_metric
        self.bounds = tuple(c for c in objectives.constraints if c.metric == self.metric)
        self.values: dict[str, float] = {}

    @property
    def available(self) -> bool:
        """Whether there is a cost source to look up."""
        return self.source is not None

    @property
    def bounded(self) -> bool:
        """Whether look-ups can tell a candidate breaks a hard bound before it trains."""
        return self.source is not None and bool(self.bounds)

    def look_up(self, arch: str) -> float | None:
        """The source's figure for ``arch`` (remembered; None when it has none)."""
        if arch in self.values:
            return self.values[arch]
        if self.source is None:
            return None
        try:
            value = self.source.predict(arch)
        except Exception:  # a cost source is best effort, as in the filter chain
            value = None
        if value is None or not math.isfinite(float(value)):
            return None
        self.values[arch] = float(value)
        return float(value)

    def meets_bounds(self, value: float) -> bool:
        """Whether a cost of ``value`` satisfies every hard bound on the cost metric."""
        return all(c.satisfied(value) for c in self.bounds)

    def known_infeasible(self, arch: str) -> bool:
        """Whether ``arch`` was looked up and breaks a bound."""
        value = self.values.get(arch)
        return value is not None and not self.meets_bounds(value)

    def untold(self, told: Collection[str], limit: int) -> list[tuple[str, float]]:
        """The latest ``limit`` look-ups of architectures not in ``told``, in look-up order:
        the cost model's training data beside the trained results."""
        return [(a, v) for a, v in self.values.items() if a not in told][-limit:]

    def state(self) -> dict[str, float]:
        """The look-ups, in look-up order (JSON)."""
        return dict(self.values)

    def load_state(self, values: Mapping[str, Any]) -> None:
        self.values = {str(k): float(v) for k, v in values.items()}


__all__ = ["CostLookups"]
