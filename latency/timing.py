"""A trtexec-like timing protocol over any callable, with no runtime of its own.

Warm up for a fixed time, then time single calls until both a minimum count and a minimum
duration are reached. If the coefficient of variation exceeds a threshold the timed phase is
repeated (up to ``max_attempts``) and the steadiest attempt kept; a result that stays noisy is
flagged ``unstable`` rather than hidden. The callable may return its own elapsed seconds (e.g.
from CUDA events, so host overhead does not count); if it returns ``None`` it is timed with the
host clock.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

TimedCall = Callable[[], "float | None"]


@dataclass(frozen=True)
class TimingConfig:
    """Knobs of the protocol; defaults suit millisecond-scale CPU inference."""

    warmup_s: float = 0.2
    min_runs: int = 30
    min_duration_s: float = 0.3
    max_runs: int = 100_000
    max_duration_s: float = 10.0
    cv_threshold: float = 0.05
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.min_runs < 2:
            raise ValueError(f"TimingConfig.min_runs must be >= 2, got {self.min_runs}")
        if self.max_runs < self.min_runs:
            raise ValueError(
                f"TimingConfig.max_runs ({self.max_runs}) must be >= min_runs ({self.min_runs})"
            )
        if self.max_attempts < 1:
            raise ValueError(f"TimingConfig.max_attempts must be >= 1, got {self.max_attempts}")
        for name in ("warmup_s", "min_duration_s", "max_duration_s", "cv_threshold"):
            if getattr(self, name) < 0:
                raise ValueError(f"TimingConfig.{name} must be >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimingConfig:
        return cls(**data)


@dataclass(frozen=True)
class TimingStats:
    """Summary of one timed phase, in milliseconds; ``cv`` is std / mean."""

    median_ms: float
    mean_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    cv: float
    runs: int
    attempts: int
    unstable: bool
    cv_threshold: float
    #: Median host wall-clock per call; differs from ``median_ms`` when the callable reports
    #: its own time (CUDA events, thread CPU time).
    host_median_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimingStats:
        return cls(**data)


def summarise(
    samples_s: list[float] | np.ndarray,
    *,
    attempts: int = 1,
    cv_threshold: float = 0.05,
    host_samples_s: list[float] | np.ndarray | None = None,
) -> TimingStats:
    """Statistics of per-call durations given in seconds."""
    ms = np.asarray(samples_s, dtype=np.float64) * 1e3
    host = samples_s if host_samples_s is None else host_samples_s
    if ms.size < 2:
        raise ValueError(f"need at least 2 timed runs to summarise, got {ms.size}")
    mean = float(ms.mean())
    std = float(ms.std(ddof=1))
    cv = std / mean if mean > 0 else math.inf
    return TimingStats(
        median_ms=float(np.median(ms)),
        mean_ms=mean,
        p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)),
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
        std_ms=std,
        cv=cv,
        runs=int(ms.size),
        attempts=attempts,
        unstable=cv > cv_threshold,
        cv_threshold=cv_threshold,
        host_median_ms=float(np.median(np.asarray(host, dtype=np.float64) * 1e3)),
    )


def _call(fn: TimedCall, clock: Callable[[], float]) -> tuple[float, float]:
    """(the call's duration: reported if any, else host; the host duration)."""
    start = clock()
    reported = fn()
    elapsed = clock() - start
    return (float(reported) if reported is not None else elapsed), elapsed


def _timed_phase(
    fn: TimedCall, config: TimingConfig, clock: Callable[[], float]
) -> tuple[list[float], list[float]]:
    samples: list[float] = []
    host: list[float] = []
    start = clock()
    while True:
        sample, host_sample = _call(fn, clock)
        samples.append(sample)
        host.append(host_sample)
        elapsed = clock() - start
        enough = len(samples) >= config.min_runs and elapsed >= config.min_duration_s
        capped = len(samples) >= config.max_runs or (
            elapsed >= config.max_duration_s and len(samples) >= 2
        )
        if enough or capped:
            return samples, host


def time_callable(
    fn: TimedCall,
    config: TimingConfig | None = None,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> TimingStats:
    """Time ``fn`` with the protocol above and return the steadiest attempt's statistics."""
    config = config or TimingConfig()
    start = clock()
    _call(fn, clock)  # at least one warm-up call, however short warmup_s is
    while clock() - start < config.warmup_s:
        _call(fn, clock)
    best: TimingStats | None = None
    for attempt in range(1, config.max_attempts + 1):
        samples, host = _timed_phase(fn, config, clock)
        stats = summarise(
            samples, attempts=attempt, cv_threshold=config.cv_threshold, host_samples_s=host
        )
        if best is None or stats.cv < best.cv:
            best = stats
        if not stats.unstable:
            break
    assert best is not None
    # Report the attempt count actually spent, with the steadiest attempt's figures.
    return TimingStats(**{**best.to_dict(), "attempts": attempt})


@dataclass(frozen=True)
class PairedStats:
    """A candidate timed in alternation with a fixed reference model.

    ``ratio`` is the median over pairs of candidate time / reference time: both calls of a
    pair see the same machine state, so load that drifts over seconds cancels out.
    """

    candidate: TimingStats
    reference: TimingStats
    ratio: float
    ratio_cv: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate.to_dict(),
            "reference": self.reference.to_dict(),
            "ratio": self.ratio,
            "ratio_cv": self.ratio_cv,
        }


def time_paired(
    fn: TimedCall,
    reference: TimedCall,
    config: TimingConfig | None = None,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> PairedStats:
    """Time ``fn`` and ``reference`` alternately (same protocol as ``time_callable``, with
    counts and durations over pairs; re-measured while the candidate's CV is too high)."""
    config = config or TimingConfig()
    start = clock()
    _call(fn, clock), _call(reference, clock)
    while clock() - start < config.warmup_s:
        _call(fn, clock), _call(reference, clock)
    best: PairedStats | None = None
    for attempt in range(1, config.max_attempts + 1):
        pairs: list[tuple[tuple[float, float], tuple[float, float]]] = []
        phase = clock()
        while True:
            pairs.append((_call(fn, clock), _call(reference, clock)))
            elapsed = clock() - phase
            enough = len(pairs) >= config.min_runs and elapsed >= config.min_duration_s
            if enough or len(pairs) >= config.max_runs or elapsed >= config.max_duration_s:
                break
        (cand, cand_host), (ref, ref_host) = (np.array(x).T for x in zip(*pairs, strict=True))
        kwargs = {"attempts": attempt, "cv_threshold": config.cv_threshold}
        ratios = cand / ref
        paired = PairedStats(
            candidate=summarise(cand, host_samples_s=cand_host, **kwargs),
            reference=summarise(ref, host_samples_s=ref_host, **kwargs),
            ratio=float(np.median(ratios)),
            ratio_cv=float(ratios.std(ddof=1) / ratios.mean()),
        )
        if best is None or paired.candidate.cv < best.candidate.cv:
            best = paired
        if not paired.candidate.unstable:
            break
    assert best is not None
    spent = {"attempts": attempt}
    return dataclasses.replace(
        best,
        candidate=dataclasses.replace(best.candidate, **spent),
        reference=dataclasses.replace(best.reference, **spent),
    )
