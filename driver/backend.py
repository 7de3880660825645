"""The trial backend interface: where the driver loop's trials run.

A backend trains (or looks up) one trial to a cumulative length at a time and reports what
came of it; it knows nothing of search methods, early stopping or the event protocol, which
belong to the loop (``hwnas.driver.loop``). Built in: local child processes
(``hwnas.driver.local``) and the NAS-Bench-201 table (``hwnas.driver.tabular``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hwnas.searchers.operations import ExitReason

#: Failure kinds a trial run can end with. ``invalid``: its hyperparameters cannot run (the
#: method records it as invalid); ``canceled``: a user (or the engine) stopped it (recorded
#: as canceled, not counted as a failure); the others are errors (failed).
FAILURE_KINDS = ("invalid", "oom", "nan", "error", "timeout", "crash", "canceled")


def exit_reason(kind: str) -> ExitReason:
    """The method's exit reason for a failure kind (see ``FAILURE_KINDS``)."""
    if kind == "invalid":
        return ExitReason.INVALID_HP
    if kind == "canceled":
        return ExitReason.USER_CANCELED
    return ExitReason.ERRORED


@dataclass(frozen=True)
class TrialOutcome:
    """What one run of a trial to ``length`` produced: metrics, or a failure kind and message."""

    trial_id: int
    length: int
    ok: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    kind: str = ""
    message: str = ""
    seconds: float = 0.0


class BackendStop(Exception):
    """Raised by a backend that cannot go on (e.g. a table run whose method only repeats);
    the loop ends with the message as its reason, keeping everything so far."""


class TrialBackend(ABC):
    """Runs trials; see the module docstring. All lengths are cumulative epochs."""

    @property
    @abstractmethod
    def free_slots(self) -> int:
        """How many more runs may start now."""

    @property
    def exhausted(self) -> bool:
        """True when this backend will start no more runs (a budget of its own is spent)."""
        return False

    def create(self, trial_id: int, hparams: Mapping[str, Any]) -> None:  # noqa: B027
        """A new trial exists (prepare its resources, e.g. a folder)."""

    def answer(self, trial_id: int, hparams: Mapping[str, Any], length: int) -> TrialOutcome | bool:
        """Called when a run is requested, before it queues for a slot: an outcome that needs
        no run (a result saved before an interruption, a repeated table query); True when the
        backend takes the request without a slot and delivers it through ``wait`` (a repeat
        of a query in flight); False to queue it for ``start``."""
        return False

    @abstractmethod
    def start(self, trial_id: int, hparams: Mapping[str, Any], length: int) -> None:
        """Start (or resume from its checkpoint) ``trial_id`` training to ``length`` in a free
        slot; the outcome comes from ``wait``."""

    @abstractmethod
    def wait(self, timeout_s: float) -> list[TrialOutcome]:
        """Outcomes of runs that finished, waiting up to ``timeout_s`` for at least one."""

    @abstractmethod
    def running(self) -> list[tuple[int, int]]:
        """``(trial_id, length)`` of the runs in flight (taken requests included)."""

    def stop_all(self) -> list[tuple[int, int]]:
        """Stop every run in flight (interruption, end of search); what was running. A stopped
        run is started again by the loop after a resume."""
        return []

    def close(self, trial_id: int) -> None:  # noqa: B027
        """The trial gets no more work: release what it holds."""

    @abstractmethod
    def elapsed_s(self) -> float:
        """Time spent so far (wall clock, or a simulated clock)."""

    def state_dict(self) -> dict[str, Any]:
        """The backend's own resources as JSON (e.g. child pids), saved with the search."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027
        """Inverse of ``state_dict`` after a restart (e.g. stop children left running)."""


__all__ = ["FAILURE_KINDS", "BackendStop", "TrialBackend", "TrialOutcome", "exit_reason"]
