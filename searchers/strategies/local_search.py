"""Local search (White et al. 2021, "Local search is state of the art for NAS"), single-objective.

Start from a random architecture; propose its neighbours (``space.neighbours``) in a shuffled
order; as soon as a told result beats the current architecture (feasible first, then higher
``Objectives.score``), move there and start on its neighbours (first improvement). When every
neighbour has been proposed without improvement (a local optimum), restart from a random
architecture.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hwnas.searchers.strategies.base import STRATEGIES, Strategy, StrategyOptions


class LocalSearchOptions(StrategyOptions):
    pass


@STRATEGIES.register("local_search")
class LocalSearch(Strategy):
    """First-improvement hill climbing over one-choice neighbours, with random restarts."""

    name = "local_search"
    Options = LocalSearchOptions
    multi_objective = False
    replay_observations = False  # _observe shuffles neighbours: its state is kept instead

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.current: str | None = None
        self.current_values: dict[str, float] | None = None
        self.current_told: int | None = None  # history position of current_values
        self.queue: list[str] = []
        self.restarts = 0

    def ask(self) -> str:
        if self.current is None or not self.queue:
            # Start or restart: a random point becomes the centre once its result arrives.
            if self.current is not None:
                self.restarts += 1
            self.current, self.current_values, self.current_told = None, None, None
            arch = self.space.sample(self.rng)
            self.current = arch
            return arch
        return self.queue.pop(0)

    def _observe(self, arch: str, values: dict[str, float] | None) -> None:
        if values is None:
            return
        told = len(self.history) - 1  # ``tell`` appended this result before observing it
        if arch == self.current and self.current_values is None:
            self.current_values, self.current_told = values, told
            self._reload_queue(arch)
            return
        if self.current_values is None or self.objectives.ranking_key(
            values
        ) > self.objectives.ranking_key(self.current_values):
            self.current, self.current_values, self.current_told = arch, values, told
            self._reload_queue(arch)

    def _reload_queue(self, arch: str) -> None:
        neighbours = self.space.neighbours(arch)
        order = self.rng.permutation(len(neighbours))
        self.queue = [neighbours[int(i)] for i in order]

    def _extra_state(self) -> dict[str, Any]:
        return {
            "current": self.current,
            # The centre's values are a told result: kept as its position in the history.
            "current_told": self.current_told,
            "queue": self.queue,
            "restarts": self.restarts,
        }

    def _load_extra_state(self, extra: Mapping[str, Any]) -> None:
        self.current = extra.get("current")
        told = extra.get("current_told")
        self.current_told = None if told is None else int(told)
        self.current_values = None if told is None else dict(self.history[int(told)][1] or {})
        self.queue = list(extra.get("queue", []))
        self.restarts = int(extra.get("restarts", 0))
