"""Latency backends by name: ``BACKENDS`` is filled by ``@BACKENDS.register(...)`` in each
backend's module, imported on the first lookup. Those modules import their runtime (torch,
TensorRT, ONNX Runtime, CUDA) inside methods only, so a lookup stays cheap and the torch-free
timing worker (``python -m hwnas.latency.worker``) never loads torch."""

from __future__ import annotations

import dataclasses

from hwnas.latency.backends.base import Backend, BackendOptions, Loaded
from hwnas.latency.errors import BackendUnavailableError
from hwnas.registry import Registry, UnknownNameError

#: Backend classes by name. Precision is an option, not part of the name, except for native
#: TensorRT, whose engines are built per precision (``trt-fp16`` etc., registered with a fixed
#: ``precision``).
BACKENDS: Registry[type[Backend]] = Registry(
    "latency backend",
    (
        "hwnas.latency.backends.ort",
        "hwnas.latency.backends.tensorrt",
        "hwnas.latency.backends.torch_backend",
    ),
)


def backend_names() -> tuple[str, ...]:
    """Every registered backend name, sorted (argparse choices, config checks)."""
    return BACKENDS.names()


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name``; ``BackendUnavailableError`` naming the known ones."""
    try:
        return BACKENDS.get(name)
    except UnknownNameError as exc:
        raise BackendUnavailableError(str(exc)) from None


def get_backend(name: str, options: BackendOptions | None = None) -> Backend:
    """The backend registered as ``name``, configured with ``options`` (its fixed settings,
    e.g. ``trt-fp16``'s precision, win)."""
    cls = backend_class(name)
    options = dataclasses.replace(options or BackendOptions(), **BACKENDS.fixed(name))
    return cls(options)


def backend_artefact(name: str) -> str:
    """What the backend loads: ``"onnx"`` (an exported file) or ``"torch"`` (the module)."""
    return backend_class(name).artefact


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendOptions",
    "BackendUnavailableError",
    "Loaded",
    "backend_artefact",
    "backend_class",
    "backend_names",
    "get_backend",
]
