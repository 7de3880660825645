"""One trial record and one status enum, shared by the search method, every backend and the
report.

A record holds the facts about one trial once: what it is (arch, canonical key, seed, predicted
cost), where it stands (status, pending target length, message) and every result it reported
(metrics by length, each with its arrival number ``seq``). Everything else a search keeps —
front, hypervolume, early-stopping rungs, the strategy's history, the dedupe set — is derived
from records.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class TrialStatus(str, enum.Enum):
    """Where a trial stands.

    ``running``: an operation is pending; ``paused``: waiting at an early-stopping rung (may be
    resumed); ``completed``: reached the full length; ``stopped``: ended by early stopping or
    by the end of the search; ``failed``: errored (crash, out of memory, NaN, timeout);
    ``invalid``: its hyperparameters cannot run; ``canceled``: stopped by a user or engine.
    """

    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"
    INVALID = "invalid"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        """The trial will report nothing more."""
        return self not in (TrialStatus.RUNNING, TrialStatus.PAUSED)

    @property
    def is_failure(self) -> bool:
        """Ended by an error of its own (what ``max_consecutive_failures`` counts)."""
        return self in (TrialStatus.FAILED, TrialStatus.INVALID)


def jsonable(value: Any) -> Any:
    """A JSON-native copy of a metrics value (numpy scalars unwrapped, NaN/inf -> None)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


@dataclass(frozen=True)
class Result:
    """One reported result: cumulative length, metrics (JSON-native), arrival number."""

    length: int
    metrics: dict[str, Any]
    seq: int

    def to_json(self) -> dict[str, Any]:
        return {"length": self.length, "seq": self.seq, "metrics": self.metrics}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Result:
        return cls(int(data["length"]), dict(data["metrics"]), int(data["seq"]))


@dataclass
class TrialRecord:
    """Everything known about one trial (see the module docstring)."""

    trial_id: int
    arch: str
    key: str
    seed: int
    status: TrialStatus = TrialStatus.RUNNING
    #: Length of the pending operation (None unless running).
    target: int | None = None
    #: Results in ascending length.
    results: list[Result] = field(default_factory=list)
    predicted_cost: float | None = None
    #: Position in the order trials were told to the strategy (None: not told yet) and the
    #: length whose metrics it was told (None with ``told`` set: told as a failure).
    told: int | None = None
    told_length: int | None = None
    message: str = ""

    # -- views -------------------------------------------------------------------------------
    @property
    def length(self) -> int | None:
        """The longest length reported (None before any result)."""
        return self.results[-1].length if self.results else None

    @property
    def metrics(self) -> dict[str, Any] | None:
        """The latest (longest) result's metrics, or None."""
        return self.results[-1].metrics if self.results else None

    def result_at(self, length: int) -> dict[str, Any] | None:
        """The metrics reported at ``length``, or None."""
        return next((r.metrics for r in self.results if r.length == length), None)

    def told_metrics(self) -> dict[str, Any] | None:
        """What the strategy was told about this trial (None: a failure, or not told)."""
        return None if self.told_length is None else self.result_at(self.told_length)

    # -- JSON ---------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            "arch": self.arch,
            "key": self.key,
            "seed": self.seed,
            "status": self.status.value,
            "target": self.target,
            "results": [r.to_json() for r in self.results],
            "predicted_cost": self.predicted_cost,
            "told": self.told,
            "told_length": self.told_length,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialRecord:
        return cls(
            trial_id=int(data["trial_id"]),
            arch=str(data["arch"]),
            key=str(data["key"]),
            seed=int(data["seed"]),
            status=TrialStatus(data["status"]),
            target=None if data["target"] is None else int(data["target"]),
            results=[Result.from_json(r) for r in data["results"]],
            predicted_cost=data["predicted_cost"],
            told=None if data["told"] is None else int(data["told"]),
            told_length=None if data["told_length"] is None else int(data["told_length"]),
            message=str(data["message"]),
        )


__all__ = ["Result", "TrialRecord", "TrialStatus", "jsonable"]
