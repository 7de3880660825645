"""Search strategies behind one ask/tell interface (see ``base.Strategy``)."""

from __future__ import annotations

# Representation-learning search lives in its own package (model, pretraining, strategy).
from hwnas.searchers.arch2vec import strategy as _arch2vec  # noqa: F401

# Importing the modules registers their strategies in STRATEGIES.
from hwnas.searchers.strategies import (  # noqa: F401
    evolution,
    local_search,
    nsga2,
    predictor,
    random,
)
from hwnas.searchers.strategies.base import (
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
