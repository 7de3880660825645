"""The ask/tell interface every strategy implements, and the strategy registry.

A strategy proposes architectures (``ask``) and learns from results (``tell``); it never
sees trials, lengths or engines. Filters (dedupe, constraint pre-filter) sit in front of it
in ``hwnas.searchers.filters``; early stopping is ``hwnas.searchers.asha``'s business.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from hwnas.registry import Registry
from hwnas.searchers.objectives import Objectives
from hwnas.spaces.base import SearchSpace


class StrategyOptions(BaseModel):
    """Base of every strategy's options model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Strategy(ABC):
    """Proposes architectures one at a time and learns from their results.

    Subclasses set ``name``, ``Options`` (a ``StrategyOptions`` subclass) and
    ``multi_objective`` (False: the strategy ranks by ``objectives.score``, so a config with
    several objectives needs a scalarisation). All randomness comes from ``self.rng``.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[StrategyOptions]] = StrategyOptions
    multi_objective: ClassVar[bool] = False

    def __init__(
        self,
        space: SearchSpace,
        objectives: Objectives,
        rng: np.random.Generator,
        **options: Any,
    ) -> None:
        self.space = space
        self.objectives = objectives
        self.rng = rng
        self.options = self.Options(**options)
        #: Every result told, in order: ``(arch, values or None for a failure)``.
        self.history: list[tuple[str, dict[str, float] | None]] = []

    # -- the interface ------------------------------------------------------------------
    @abstractmethod
    def ask(self) -> str:
        """One proposal (a valid architecture string of ``self.space``)."""

    def tell(self, arch: str, values: Mapping[str, float] | None) -> None:
        """Record the result of ``arch``: its metric values, or ``None`` when it failed.

        Only the metrics the objectives read are kept (numeric, finite), which keeps the
        history small in the search state.
        """
        clean = None if values is None else _clean_values(values, self.objectives.needed_metrics)
        self.history.append((arch, clean))
        self._observe(arch, clean)

    def _observe(self, arch: str, values: dict[str, float] | None) -> None:  # noqa: B027
        """Hook for subclasses: update internal state after ``tell``."""

    # -- state --------------------------------------------------------------------------
    #: Whether ``_observe`` can be replayed over the history on load to rebuild the derived
    #: state (populations); False for strategies whose ``_observe`` draws random numbers.
    replay_observations: ClassVar[bool] = True

    def state_dict(self) -> dict[str, Any]:
        """What the history cannot reproduce, as JSON: options, rng, ``_extra_state``.

        The history itself is not stored here: the search method keeps each result once, in
        its trial records, and passes the history back to ``load_state_dict``."""
        return {
            "name": self.name,
            "options": self.options.model_dump(mode="json"),
            "rng": _jsonable_rng_state(self.rng.bit_generator.state),
            "extra": self._extra_state(),
        }

    def load_state_dict(
        self,
        state: Mapping[str, Any],
        history: Sequence[tuple[str, Mapping[str, Any] | None]] = (),
    ) -> None:
        """Restore from ``state_dict()`` output and the results told so far, in order."""
        if state.get("name") != self.name:
            raise ValueError(f"state is for strategy {state.get('name')!r}, not {self.name!r}")
        self.history = []
        needed = self.objectives.needed_metrics
        for arch, values in history:
            clean = None if values is None else _clean_values(values, needed)
            self.history.append((str(arch), clean))
            if self.replay_observations:
                self._observe(str(arch), clean)
        self.rng.bit_generator.state = dict(state["rng"])
        self._load_extra_state(state.get("extra") or {})

    def _extra_state(self) -> dict[str, Any]:
        """Subclass state that replaying the history does not rebuild (JSON)."""
        return {}

    def _load_extra_state(self, extra: Mapping[str, Any]) -> None:  # noqa: B027
        """Inverse of ``_extra_state`` (the history is already restored)."""

    # -- helpers for subclasses ---------------------------------------------------------
    def successes(self) -> list[tuple[str, dict[str, float]]]:
        """Told results that did not fail, in order."""
        return [(a, v) for a, v in self.history if v is not None]


def _clean_values(values: Mapping[str, Any], keep: tuple[str, ...]) -> dict[str, float]:
    """The ``keep`` metrics as floats (non-numeric, NaN and inf dropped: pure JSON)."""
    out: dict[str, float] = {}
    for k in keep:
        v = values.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            continue
        f = float(v)
        if math.isfinite(f):
            out[str(k)] = f
    return out


def _jsonable_rng_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """``bit_generator.state`` with numpy scalars/arrays turned into JSON natives."""

    def conv(x: Any) -> Any:
        if isinstance(x, Mapping):
            return {str(k): conv(v) for k, v in x.items()}
        if isinstance(x, np.ndarray):
            return x.tolist()
        if isinstance(x, np.integer):
            return int(x)
        return x

    return conv(state)


#: Strategies by name; each registers itself with ``@STRATEGIES.register("name")``.
STRATEGIES: Registry[type[Strategy]] = Registry(
    "strategy",
    (
        "hwnas.searchers.strategies.random",
        "hwnas.searchers.strategies.evolution",
        "hwnas.searchers.strategies.nsga2",
        "hwnas.searchers.strategies.local_search",
        "hwnas.searchers.strategies.predictor",
        "hwnas.searchers.arch2vec.strategy",
        "hwnas.searchers.strategies.supernet",
    ),
)


def make_strategy(
    name: str,
    space: SearchSpace,
    objectives: Objectives,
    rng: np.random.Generator,
    options: Mapping[str, Any] | None = None,
) -> Strategy:
    """Construct the strategy registered as ``name`` with validated ``options``."""
    return STRATEGIES.get(name)(space, objectives, rng, **dict(options or {}))


__all__ = [
    "STRATEGIES",
    "Strategy",
    "StrategyOptions",
    "make_strategy",
]
