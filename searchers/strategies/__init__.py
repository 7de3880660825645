"""Search strategies behind one ask/tell interface (see ``base.Strategy``); ``STRATEGIES``
names them (``STRATEGIES.get(name)``, ``STRATEGIES.names()``)."""

from __future__ import annotations

from hwnas.searchers.strategies.base import STRATEGIES, Strategy, StrategyOptions, make_strategy

__all__ = ["STRATEGIES", "Strategy", "StrategyOptions", "make_strategy"]
