"""What an architecture COSTS: ONNX export, runtimes, timing protocol, device facts, cache,
predictors.

Importing this package does not import torch (the timing worker relies on that); the names
below load their modules on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "measure_architecture": "latency.measure",
    "cached_latency": "latency.measure",
    "LatencyResult": "latency.result",
    "TimingConfig": "latency.timing",
    "TimingStats": "latency.timing",
    "time_callable": "latency.timing",
    "export_onnx": "latency.export",
    "ExportResult": "latency.export",
    "LatencyCache": "latency.cache",
    "LatencyPredictor": "latency.predictor",
    "get_backend": "latency.backends",
    "BACKEND_NAMES": "latency.backends",
    "LatencyError": "latency.errors",
    "ExportError": "latency.errors",
    "BackendUnavailableError": "latency.errors",
    "MeasurementError": "latency.errors",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'latency' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
