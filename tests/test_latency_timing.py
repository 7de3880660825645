"""The timing protocol over deterministic, noisy and host-timed callables."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hwnas.latency.timing import TimingConfig, summarise, time_callable, time_paired

FAST = {"warmup_s": 0.0, "min_duration_s": 0.0}


def test_steady_callable_gives_exact_figures_in_one_attempt():
    config = TimingConfig(min_runs=25, max_runs=25, **FAST)
    stats = time_callable(lambda: 0.004, config)  # reports 4 ms of "device time" per call
    assert stats.median_ms == pytest.approx(4.0)
    assert stats.p99_ms == pytest.approx(4.0)
    assert stats.cv == pytest.approx(0.0, abs=1e-12)
    assert (stats.runs, stats.attempts, stats.unstable) == (25, 1, False)


def test_noisy_callable_is_remeasured_then_flagged_unstable():
    rng = np.random.default_rng(0)
    config = TimingConfig(min_runs=40, max_runs=40, cv_threshold=0.05, max_attempts=3, **FAST)
    stats = time_callable(lambda: float(rng.lognormal(np.log(0.002), 0.8)), config)
    assert stats.unstable is True
    assert stats.attempts == 3
    assert stats.cv > 0.05


def test_noise_that_settles_is_remeasured_and_kept_stable():
    calls = {"n": 0}
    rng = np.random.default_rng(1)

    def settling() -> float:
        calls["n"] += 1
        # 1 warm-up call + the first 20-run attempt are noisy; later attempts are steady.
        return float(rng.uniform(0.001, 0.01)) if calls["n"] <= 21 else 0.003

    config = TimingConfig(min_runs=20, max_runs=20, max_attempts=3, **FAST)
    stats = time_callable(settling, config)
    assert (stats.attempts, stats.unstable) == (2, False)
    assert stats.median_ms == pytest.approx(3.0)


def test_min_count_and_min_duration_both_bind():
    now = {"t": 0.0}

    def clock() -> float:
        return now["t"]

    def step() -> None:
        now["t"] += 1 / 64  # exact in binary: no rounding at the boundary

    by_duration = time_callable(
        step, TimingConfig(warmup_s=0.0, min_runs=5, min_duration_s=0.25), clock=clock
    )
    assert by_duration.runs == 16  # 16 * 1/64 = 0.25 s
    assert by_duration.median_ms == pytest.approx(1000 / 64)
    by_count = time_callable(
        step, TimingConfig(warmup_s=0.0, min_runs=30, min_duration_s=0.25), clock=clock
    )
    assert by_count.runs == 30


def test_warmup_is_by_time():
    now = {"t": 0.0}
    calls = {"n": 0}

    def step() -> None:
        calls["n"] += 1
        now["t"] += 1 / 64

    config = TimingConfig(warmup_s=10 / 64, min_runs=2, max_runs=2, min_duration_s=0.0)
    time_callable(step, config, clock=lambda: now["t"])
    assert calls["n"] == 10 + 2  # 10/64 s of warm-up calls, then the two timed runs


def test_host_clock_used_when_callable_reports_nothing():
    config = TimingConfig(warmup_s=0.0, min_runs=5, max_runs=5, min_duration_s=0.0)
    stats = time_callable(lambda: time.sleep(0.002), config)
    assert stats.min_ms >= 2.0


def test_bad_config_and_too_few_samples_are_named():
    with pytest.raises(ValueError, match="min_runs"):
        TimingConfig(min_runs=1)
    with pytest.raises(ValueError, match="max_runs"):
        TimingConfig(min_runs=10, max_runs=5)
    with pytest.raises(ValueError, match="at least 2"):
        summarise([0.1])


def test_paired_timing_cancels_load_shared_by_both_calls():
    rng = np.random.default_rng(0)
    state = {"load": 1.0}

    def candidate() -> float:
        return 0.002 * state["load"]

    def reference() -> float:
        seconds = 0.001 * state["load"]
        state["load"] = float(rng.uniform(1.0, 3.0))  # the machine's load drifts between pairs
        return seconds

    config = TimingConfig(min_runs=50, max_runs=50, max_attempts=2, **FAST)
    paired = time_paired(candidate, reference, config)
    assert paired.candidate.unstable and paired.candidate.attempts == 2  # raw figure is noisy
    assert paired.ratio == pytest.approx(2.0)  # the ratio is not
    assert paired.ratio_cv == pytest.approx(0.0, abs=1e-12)
    assert paired.reference.runs == paired.candidate.runs == 50
