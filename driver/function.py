"""Function backend: trials answered by a Python function instead of training.

``FunctionBackend(metrics)`` runs each requested length as ``metrics(arch, length)`` (a dict of
metrics, or raise ``TrialFailed`` to fail the run). With ``order_seed=None`` every run is
answered at once, in request order; with a seed, runs are accepted and finish in a seeded
random order, the way completions arrive out of order on a cluster. For tests, overhead
benchmarks and simulations of a search over a known objective.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hwnas.driver.backend import TrialBackend, TrialOutcome

MetricsFn = Callable[[str, int], dict[str, Any]]


class TrialFailed(Exception):
    """Raised by a metrics function: the run fails with ``kind`` (``invalid``, ``error``...)."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind


class FunctionBackend(TrialBackend):
    """See the module docstring. ``created``, ``arch`` and ``validated`` record what ran."""

    def __init__(self, metrics: MetricsFn, *, order_seed: int | None = None) -> None:
        self.metrics = metrics
        self.rng = None if order_seed is None else np.random.default_rng(order_seed)
        self.jobs: list[tuple[int, int]] = []
        self.arch: dict[int, str] = {}
        self.created: list[int] = []
        self.validated: list[tuple[int, int]] = []

    @property
    def free_slots(self) -> int:
        return 1_000_000  # the method's max_concurrent is the only limit

    def create(self, trial_id: int, hparams: Mapping[str, Any]) -> None:
        self.arch[trial_id] = str(hparams["arch"])
        self.created.append(trial_id)

    def answer(self, trial_id: int, hparams: Mapping[str, Any], length: int) -> TrialOutcome | bool:
        return False if self.rng is not None else self._run(trial_id, length)

    def start(self, trial_id: int, hparams: Mapping[str, Any], length: int) -> None:
        self.jobs.append((trial_id, length))

    def wait(self, timeout_s: float) -> list[TrialOutcome]:
        if not self.jobs or self.rng is None:
            return []
        trial_id, length = self.jobs.pop(int(self.rng.integers(len(self.jobs))))
        return [self._run(trial_id, length)]

    def running(self) -> list[tuple[int, int]]:
        return list(self.jobs)

    def elapsed_s(self) -> float:
        return float(len(self.validated))

    def _run(self, trial_id: int, length: int) -> TrialOutcome:
        try:
            metrics = self.metrics(self.arch[trial_id], length)
        except TrialFailed as exc:
            return TrialOutcome(trial_id, length, False, kind=exc.kind, message=str(exc))
        self.validated.append((trial_id, length))
        return TrialOutcome(trial_id, length, True, dict(metrics))


__all__ = ["FunctionBackend", "MetricsFn", "TrialFailed"]
