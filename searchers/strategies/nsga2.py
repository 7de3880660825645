"""Multi-objective evolution in the style of NSGA-II (Deb et al. 2002), steady state.

Until ``population`` results are in, asks are uniform samples. Then each ask picks two parents
by binary tournament on the crowded comparison (constrained domination, then non-dominated
rank, then crowding distance), crosses them over with probability ``crossover_prob`` and
mutates the child. Each successful tell joins the population; when it exceeds ``population``
the worst member by the same comparison leaves (the asynchronous, steady-state form of
NSGA-II's environmental selection, so it works with any number of trials in flight).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from hwnas.searchers.pareto import rank_and_crowding_order
from hwnas.searchers.strategies.base import STRATEGIES, Strategy, StrategyOptions


class NSGA2Options(StrategyOptions):
    population: int = Field(20, ge=2)
    crossover_prob: float = Field(0.9, ge=0.0, le=1.0)


@STRATEGIES.register("nsga2")
class NSGA2(Strategy):
    """Non-dominated sorting + crowding selection, crossover and mutation."""

    name = "nsga2"
    Options = NSGA2Options
    multi_objective = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.population: list[tuple[str, dict[str, float]]] = []
        self._cache: list[tuple[np.ndarray, float]] = []  # (vector, violation) per member

    def _order(self) -> np.ndarray:
        """Population indices best first (crowded comparison with constraints)."""
        if len(self._cache) != len(self.population):  # derived; rebuilt after a load
            self._cache = [self._key(v) for _, v in self.population]
        F = np.array([f for f, _ in self._cache], dtype=float)
        viol = np.array([c for _, c in self._cache])
        return rank_and_crowding_order(F, viol)

    def _key(self, values: dict[str, float]) -> tuple[np.ndarray, float]:
        return self.objectives.vector(values), self.objectives.violation(values)

    def _tournament(self, position: np.ndarray) -> int:
        a, b = self.rng.choice(len(self.population), size=2, replace=False)
        return int(a) if position[a] < position[b] else int(b)

    def ask(self) -> str:
        opts: NSGA2Options = self.options  # type: ignore[assignment]
        if len(self.population) < opts.population:
            return self.space.sample(self.rng)
        position = np.empty(len(self.population), dtype=np.int64)
        position[self._order()] = np.arange(len(self.population))
        p1 = self.population[self._tournament(position)][0]
        if self.rng.random() < opts.crossover_prob:
            p2 = self.population[self._tournament(position)][0]
            child = self.space.crossover(p1, p2, self.rng)
        else:
            child = p1
        return self.space.mutate(child, self.rng)

    def _observe(self, arch: str, values: dict[str, float] | None) -> None:
        if values is None:
            return
        self._order()  # makes sure the cache matches the population
        self.population.append((arch, values))
        self._cache.append(self._key(values))
        opts: NSGA2Options = self.options  # type: ignore[assignment]
        if len(self.population) > opts.population:
            worst = int(self._order()[-1])
            self.population.pop(worst)
            self._cache.pop(worst)
