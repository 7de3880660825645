"""Random search: uniform samples from the space (the baseline every strategy must beat), or
from a given list of architectures (e.g. the ones a learning-curve table holds)."""

from __future__ import annotations

from pydantic import Field

from hwnas.searchers.strategies.base import STRATEGIES, Strategy, StrategyOptions


class RandomOptions(StrategyOptions):
    #: Sample only these architectures (None: the whole space). The dedupe filter makes it
    #: sampling without replacement; once every one was tried, its rejection limit ends the
    #: search.
    archs: list[str] | None = Field(None, min_length=1)


@STRATEGIES.register("random")
class RandomSearch(Strategy):
    """Each ask is an independent uniform sample of the space (or of ``options.archs``)."""

    name = "random"
    Options = RandomOptions
    multi_objective = True  # ignores objectives entirely, so any number is fine

    def ask(self) -> str:
        archs = self.options.archs  # type: ignore[attr-defined]
        if archs:
            return archs[int(self.rng.integers(len(archs)))]
        return self.space.sample(self.rng)
