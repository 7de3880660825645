"""Random search: uniform samples from the space (the baseline every strategy must beat)."""

from __future__ import annotations

from hwnas.searchers.strategies.base import STRATEGIES, Strategy


@STRATEGIES.register("random")
class RandomSearch(Strategy):
    """Each ask is an independent uniform sample of the space."""

    name = "random"
    multi_objective = True  # ignores objectives entirely, so any number is fine

    def ask(self) -> str:
        return self.space.sample(self.rng)
