"""What an architecture COSTS: ONNX export, runtimes, timing protocol, device facts, cache,
predictors.

* ``MeasurementTarget(backend="ort-cpu", precision=None, batch=1, input_shape=(3, 32, 32),
  num_classes=10, threads=1, clock="auto", ...)``: what is measured and on what, validated
  once; everything in it is part of the cache key.
* ``measure_architecture(space, arch, target, *, cache_path=None, ...) -> LatencyResult``;
  ``.to_metrics()`` gives the trial contract's ``latency_*`` keys. ONNX backends export here
  and time in a torch-free ``python -m hwnas.latency.worker`` child (fresh session per
  measurement); call it after training, never inside a timed loop.
* ``cached_latency(space, arch, target, *, cache_path)`` reads the cache without measuring;
  ``LatencyPredictor.load(path or "table:<device>")`` predicts milliseconds (``predict``,
  ``predict_many``).
* Backends (``BACKENDS``, ``backend_names()``): ``ort-cpu``, ``ort-cuda``, ``ort-trt``,
  ``trt-fp32/fp16/int8``, ``torch-cpu``, ``torch-cuda``. GPU backends import their runtime
  lazily and raise ``BackendUnavailableError`` naming what is missing. The native TensorRT
  backend (TensorRT 10 or 11, strongly typed: fp16/int8 live in the ONNX) is tested only
  through test doubles: it awaits verification on hardware (``scripts/gpu-check``).
* CPU backends on one thread time with the calling thread's CPU time (``clock="auto"``; the
  host wall clock is kept as ``host_median_ms``): on a shared machine that removes the time
  the OS gives other processes, though not the slowdown load causes (caches, memory
  bandwidth). ``clock="wall"`` restores plain wall-clock timing.

Importing this package does not import torch (the timing worker relies on that); the names
below load their modules on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "measure_architecture": "hwnas.latency.measure",
    "MeasurementTarget": "hwnas.latency.target",
    "cached_latency": "hwnas.latency.measure",
    "LatencyResult": "hwnas.latency.result",
    "TimingConfig": "hwnas.latency.timing",
    "TimingStats": "hwnas.latency.timing",
    "time_callable": "hwnas.latency.timing",
    "export_onnx": "hwnas.latency.export",
    "ExportResult": "hwnas.latency.export",
    "LatencyCache": "hwnas.latency.cache",
    "LatencyPredictor": "hwnas.latency.predictor",
    "get_backend": "hwnas.latency.backends",
    "BACKENDS": "hwnas.latency.backends",
    "backend_names": "hwnas.latency.backends",
    "LatencyError": "hwnas.latency.errors",
    "ExportError": "hwnas.latency.errors",
    "BackendUnavailableError": "hwnas.latency.errors",
    "MeasurementError": "hwnas.latency.errors",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'latency' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
