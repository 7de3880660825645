"""Measure a sample of a space and fit predictors on it (``python -m hwnas.latency profile``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hwnas.latency.measure import measure_architecture
from hwnas.latency.predictor import PREDICTOR_KINDS, evaluate_predictor, fit_predictor
from hwnas.latency.result import LatencyResult
from hwnas.latency.target import MeasurementTarget
from hwnas.latency.timing import TimingConfig


def sample_unique(
    space: Any, n: int, rng: np.random.Generator, *, max_tries: int = 100
) -> list[str]:
    """``n`` architectures with distinct canonical keys (fewer only if the space runs out)."""
    archs: list[str] = []
    seen: set[str] = set()
    tries = 0
    while len(archs) < n and tries < n * max_tries:
        tries += 1
        arch = space.sample(rng)
        key = space.canonical_key(arch)
        if key not in seen:
            seen.add(key)
            archs.append(arch)
    return archs


def measure_many(
    space: Any,
    archs: Sequence[str],
    target: MeasurementTarget,
    *,
    cache_path: str | None = None,
    timing: TimingConfig | None = None,
    on_result: Callable[[LatencyResult], None] | None = None,
) -> list[LatencyResult]:
    """Measure each architecture on ``target``, reusing one torch-free worker for all ONNX
    backends."""
    from hwnas.latency.backends import backend_artefact
    from hwnas.latency.worker import OnnxWorker

    worker = OnnxWorker() if backend_artefact(target.backend) == "onnx" else None
    results = []
    try:
        for arch in archs:
            result = measure_architecture(
                space, arch, target, cache_path=cache_path, timing=timing, worker=worker
            )
            results.append(result)
            if on_result is not None:
                on_result(result)
    except BaseException:
        if worker is not None:
            worker.kill()  # interrupted: do not wait for the measurement in flight
        raise
    if worker is not None:
        worker.close()
    return results


def fit_and_evaluate(
    space: Any,
    archs: Sequence[str],
    latencies_ms: Sequence[float],
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Held-out figures for each predictor kind, and each kind refitted on all the data."""
    y = np.asarray(latencies_ms, dtype=np.float64)
    order = np.random.default_rng(seed).permutation(y.size)
    n_test = max(1, round(y.size * test_fraction))
    test, train = order[:n_test], order[n_test:]
    report: dict[str, Any] = {"n_train": int(train.size), "n_test": int(test.size), "kinds": {}}
    for kind in PREDICTOR_KINDS:
        held_out = fit_predictor(kind, space, [archs[i] for i in train], y[train], meta=meta)
        figures = evaluate_predictor(held_out, [archs[i] for i in test], y[test])
        final = fit_predictor(kind, space, list(archs), y, meta={**(meta or {}), **figures})
        report["kinds"][kind] = {"held_out": figures, "predictor": final}
    return report
