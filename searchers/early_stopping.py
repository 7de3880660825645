"""Early stoppers: on each result of a trial, decide whether it trains on, pauses or stops, and
which paused trials to resume.

The search method owns the trials; a stopper only sees results (trial id, cumulative length,
metrics) and answers with a ``Decision``. Stoppers are chosen by name in the config
(``early_stopping: {name: asha, max_length: 27, min_length: 1, reduction_factor: 3}``: every
key but ``name`` and ``max_length`` is the stopper's own option) and registered in
``STOPPERS`` like strategies. Built in: ``none`` (train every trial to ``max_length``),
``asha`` and ``mo-asha`` (``searchers.asha``).

State: whatever a stopper derives from results (rungs, curves) is rebuilt from the trial
records on load (``rebuild``); only decisions that results cannot reproduce go into
``state_dict`` (e.g. which trials ASHA has promoted), so a result is stored once, in its record.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from hwnas.registry import Registry
from hwnas.searchers.objectives import Objectives


class StopperOptions(BaseModel):
    """Base of every stopper's options model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Decision:
    """What happens after a result.

    ``action`` concerns the trial that reported: ``continue`` to ``length`` epochs, ``pause``
    (it may be resumed later by a ``promote``), or ``stop`` (it trains no more). ``promote``
    resumes paused trials: ``(trial_id, length)`` pairs, oldest first.
    """

    action: Literal["continue", "pause", "stop"]
    length: int | None = None
    promote: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if (self.action == "continue") != (self.length is not None):
            raise ValueError(f"a {self.action!r} decision takes a length only to continue")


@dataclass(frozen=True)
class Observation:
    """One result as a stopper sees it (used to rebuild its state from trial records)."""

    seq: int
    trial_id: int
    length: int
    metrics: Mapping[str, Any]


class EarlyStopper(ABC):
    """Decides promote / pause / stop from results; see the module docstring.

    Subclasses set ``name`` and ``Options``; the constructor receives the search's objectives,
    the full training length and the validated options.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[StopperOptions]] = StopperOptions

    def __init__(self, objectives: Objectives, max_length: int, **options: Any) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.objectives = objectives
        self.max_length = int(max_length)
        self.options = self.Options(**options)

    @property
    @abstractmethod
    def first_length(self) -> int:
        """The length a new trial trains to first."""

    @abstractmethod
    def on_result(self, trial_id: int, length: int, metrics: Mapping[str, Any]) -> Decision:
        """File a result and decide. A result at ``max_length`` always ends the trial (the
        method completes it); it is still filed, since it can change other decisions."""

    def rebuild(self, observations: Iterable[Observation]) -> None:  # noqa: B027
        """Re-derive state from every result so far, in arrival order (after a restart)."""

    def state_dict(self) -> dict[str, Any]:
        """Decisions the results cannot reproduce, as JSON (``{}`` when there are none)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027
        """Inverse of ``state_dict``; called after ``rebuild``."""


#: Early stoppers by name; each registers itself with ``@STOPPERS.register("name")``.
STOPPERS: Registry[type[EarlyStopper]] = Registry(
    "early stopper", ("hwnas.searchers.early_stopping", "hwnas.searchers.asha")
)


@STOPPERS.register("none")
class NoStopping(EarlyStopper):
    """Every trial trains straight to ``max_length`` (one result each)."""

    name = "none"

    @property
    def first_length(self) -> int:
        return self.max_length

    def on_result(self, trial_id: int, length: int, metrics: Mapping[str, Any]) -> Decision:
        if length >= self.max_length:
            return Decision("stop")
        return Decision("continue", self.max_length)


def make_stopper(
    name: str, objectives: Objectives, max_length: int, options: Mapping[str, Any] | None = None
) -> EarlyStopper:
    """Construct the early stopper registered as ``name`` with validated ``options``."""
    return STOPPERS.create(name, objectives, max_length, **dict(options or {}))


__all__ = [
    "STOPPERS",
    "Decision",
    "EarlyStopper",
    "NoStopping",
    "Observation",
    "StopperOptions",
    "make_stopper",
]
