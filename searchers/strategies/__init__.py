"""Search strategies behind one ask/tell interface (see ``base.Strategy``)."""

from __future__ import annotations

from searchers.strategies import random  # noqa: F401  (registers)
from searchers.strategies.base import (
    STRATEGIES,
    Strategy,
    StrategyOptions,
    UnknownStrategyError,
    make_strategy,
    register,
    strategy_class,
    validate_strategy_options,
)

__all__ = [
    "STRATEGIES",
    "Strategy",
    "StrategyOptions",
    "UnknownStrategyError",
    "make_strategy",
    "register",
    "strategy_class",
    "validate_strategy_options",
]
