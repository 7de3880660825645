"""Latency backends by name; each module imports its runtime lazily."""

from __future__ import annotations

import dataclasses
import importlib

from hwnas.latency.backends.base import Backend, BackendOptions, Loaded
from hwnas.latency.errors import BackendUnavailableError

# name -> (module, class); precision is an option, not part of the name, except for TensorRT
# whose engines are built per precision (trt-fp16 etc., as the project's configs spell them).
_REGISTRY: dict[str, tuple[str, str, dict]] = {
    "ort-cpu": ("hwnas.latency.backends.ort", "OrtCpuBackend", {}),
    "ort-cuda": ("hwnas.latency.backends.ort", "OrtCudaBackend", {}),
    "ort-trt": ("hwnas.latency.backends.ort", "OrtTensorrtBackend", {}),
    "trt-fp32": ("hwnas.latency.backends.tensorrt", "TensorrtBackend", {"precision": "fp32"}),
    "trt-fp16": ("hwnas.latency.backends.tensorrt", "TensorrtBackend", {"precision": "fp16"}),
    "trt-int8": ("hwnas.latency.backends.tensorrt", "TensorrtBackend", {"precision": "int8"}),
    "torch-cpu": ("hwnas.latency.backends.torch_backend", "TorchCpuBackend", {}),
    "torch-cuda": ("hwnas.latency.backends.torch_backend", "TorchCudaBackend", {}),
}
BACKEND_NAMES = tuple(_REGISTRY)


def get_backend(name: str, options: BackendOptions | None = None) -> Backend:
    """The backend registered as ``name``, configured with ``options``."""
    if name not in _REGISTRY:
        raise BackendUnavailableError(
            f"unknown latency backend {name!r}; known: {', '.join(BACKEND_NAMES)}"
        )
    module_name, class_name, fixed = _REGISTRY[name]
    options = dataclasses.replace(options or BackendOptions(), **fixed)
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(options)


def backend_artefact(name: str) -> str:
    """``"onnx"`` or ``"torch"`` without importing the backend's module."""
    if name not in _REGISTRY:
        raise BackendUnavailableError(
            f"unknown latency backend {name!r}; known: {', '.join(BACKEND_NAMES)}"
        )
    return "torch" if name.startswith("torch-") else "onnx"


__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "BackendOptions",
    "BackendUnavailableError",
    "Loaded",
    "backend_artefact",
    "get_backend",
]
