"""The latency module's error types: one per way a measurement can fail."""

from __future__ import annotations


class LatencyError(RuntimeError):
    """Base class: a latency figure could not be produced."""


class ExportError(LatencyError):
    """A module could not be exported to ONNX, or the export does not match torch."""


class BackendUnavailableError(LatencyError):
    """The requested backend cannot run here; the message names what is missing."""


class MeasurementError(LatencyError):
    """The backend loaded but running or timing the model failed."""
