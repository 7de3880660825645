"""Operations a search method emits, in Determined's shape, plus their JSON round trip.

Runners translate these into whatever their engine needs (Determined's
``determined.searcher`` operations, local child processes, table look-ups).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Union


class ExitReason(str, enum.Enum):
    """Why a trial ended before its pending operations completed (Determined's reasons)."""

    ERRORED = "errored"
    USER_CANCELED = "user_canceled"
    INVALID_HP = "invalid_hp"


@dataclass(frozen=True)
class Create:
    """Start a new trial with these hyperparameters (a pure-JSON dict)."""

    trial_id: int
    hparams: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class ValidateAfter:
    """Train trial ``trial_id`` until ``length`` cumulative epochs, then report metrics."""

    trial_id: int
    length: int


@dataclass(frozen=True)
class Close:
    """The trial gets no more work; the runner may end and clean it up."""

    trial_id: int


@dataclass(frozen=True)
class Shutdown:
    """The search is over (``failure=True`` when it ended because of an error)."""

    failure: bool = False


Operation = Union[Create, ValidateAfter, Close, Shutdown]  # noqa: UP007 (runtime alias)


def operation_to_json(op: Operation) -> dict[str, Any]:
    """A JSON-native dict naming the operation's kind and its fields."""
    if isinstance(op, Create):
        return {"kind": "create", "trial_id": op.trial_id, "hparams": op.hparams}
    if isinstance(op, ValidateAfter):
        return {"kind": "validate_after", "trial_id": op.trial_id, "length": op.length}
    if isinstance(op, Close):
        return {"kind": "close", "trial_id": op.trial_id}
    if isinstance(op, Shutdown):
        return {"kind": "shutdown", "failure": op.failure}
    raise TypeError(f"not an operation: {op!r}")


def operation_from_json(d: dict[str, Any]) -> Operation:
    """Inverse of ``operation_to_json``."""
    kind = d.get("kind")
    if kind == "create":
        return Create(int(d["trial_id"]), dict(d["hparams"]))
    if kind == "validate_after":
        return ValidateAfter(int(d["trial_id"]), int(d["length"]))
    if kind == "close":
        return Close(int(d["trial_id"]))
    if kind == "shutdown":
        return Shutdown(bool(d.get("failure", False)))
    raise ValueError(f"unknown operation kind {kind!r} in {d!r}")


__all__ = [
    "Close",
    "Create",
    "ExitReason",
    "Operation",
    "Shutdown",
    "ValidateAfter",
    "operation_from_json",
    "operation_to_json",
]
