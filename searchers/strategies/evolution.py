"""Regularized (aging) evolution, Real et al. 2019: single-objective on the scalarised score.

Until ``population`` results are in, asks are uniform samples. Then each ask draws
``sample_size`` members uniformly, takes the best (feasible first, then highest
``Objectives.score``) and returns a mutation of it. Every successful tell joins the population
and the oldest member leaves (aging), so no architecture lives forever on a lucky result.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from hwnas.searchers.strategies.base import STRATEGIES, Strategy, StrategyOptions


class EvolutionOptions(StrategyOptions):
    population: int = Field(20, ge=2)
    sample_size: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _sample_fits(self) -> EvolutionOptions:
        if self.sample_size > self.population:
            raise ValueError(
                f"sample_size ({self.sample_size}) must be <= population ({self.population})"
            )
        return self


@STRATEGIES.register("evolution")
class RegularizedEvolution(Strategy):
    """Tournament selection + mutation with an aging population."""

    name = "evolution"
    Options = EvolutionOptions
    multi_objective = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: ``[arch, values]`` oldest first, at most ``population`` long.
        self.population: list[tuple[str, dict[str, float]]] = []

    def ask(self) -> str:
        opts: EvolutionOptions = self.options  # type: ignore[assignment]
        if len(self.population) < opts.population:
            return self.space.sample(self.rng)
        picks = self.rng.choice(len(self.population), size=opts.sample_size, replace=False)
        # Best of the tournament; ties go to the younger (later) member, deterministically.
        best = max(
            sorted(int(i) for i in picks),
            key=lambda i: (self.objectives.ranking_key(self.population[i][1]), i),
        )
        return self.space.mutate(self.population[best][0], self.rng)

    def _observe(self, arch: str, values: dict[str, float] | None) -> None:
        if values is None:
            return
        self.population.append((arch, values))
        opts: EvolutionOptions = self.options  # type: ignore[assignment]
        if len(self.population) > opts.population:
            self.population.pop(0)
