"""Importing ONNX Runtime with its telemetry off.

Since 1.29 the official Linux and macOS builds of ONNX Runtime collect telemetry: a plain
``import onnxruntime`` writes a device id and an offline event store under
``~/.cache/Microsoft/DeveloperTools/.onnxruntime/`` (``$XDG_CACHE_HOME`` if set). Only the
environment variable ``ORT_DISABLE_TELEMETRY``, set before the first import, turns that off
(``onnxruntime.disable_telemetry_events()`` after the import is too late; ``CI=true`` also
suppresses it, which is why a test must unset ``CI`` to see it). So every hwnas import of
onnxruntime goes through ``import_onnxruntime()``, and the torch-free timing worker is started
with the variable set. A value the user set (e.g. ``0``) is respected.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

TELEMETRY_VARIABLE = "ORT_DISABLE_TELEMETRY"


def telemetry_off(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's environment) with ONNX Runtime's telemetry off,
    unless it already says otherwise."""
    result = dict(os.environ if env is None else env)
    result.setdefault(TELEMETRY_VARIABLE, "1")
    return result


def import_onnxruntime() -> Any:
    """``import onnxruntime`` with telemetry off (raises ``ImportError`` when not installed)."""
    os.environ.setdefault(TELEMETRY_VARIABLE, "1")
    import onnxruntime

    return onnxruntime


__all__ = ["TELEMETRY_VARIABLE", "import_onnxruntime", "telemetry_off"]
