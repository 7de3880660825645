"""``MeasurementTarget``: what a latency figure is of, apart from the architecture.

One frozen, validated value instead of the same dozen keyword arguments on every function
that measures, looks up or profiles: the backend and its settings, the input and the clock.
Everything here changes the figure, so everything here is part of the cache key. Where the
caches live (``cache_path``, the TensorRT engine directory) and how the timing runs (protocol,
worker process) do not change the figure and stay arguments of ``measure_architecture``.
Importing this module loads no runtime (the timing worker stays torch-free).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

from hwnas.latency.backends import BACKENDS, Backend, BackendOptions, backend_class, get_backend
from hwnas.latency.errors import BackendUnavailableError

#: ``auto``: a CPU backend on one thread times the thread's CPU time, else the wall clock
#: (``Backend.clock``); GPU backends use their own clock whatever is asked.
CLOCKS = ("auto", "wall", "thread_cpu")


def _positive_int(field: str, value: object) -> int:
    """``value`` as an ``int`` >= 1, or a ``ValueError`` naming the field and the value."""
    try:
        number = operator.index(value)  # ints and numpy integers, not floats or strings
    except TypeError:
        number = 0
    if isinstance(value, bool) or number < 1:
        raise ValueError(f"MeasurementTarget.{field} must be an integer >= 1, got {value!r}")
    return number


@dataclass(frozen=True)
class MeasurementTarget:
    """The backend, precision, input and clock one latency figure is measured with."""

    #: A registered backend name (``hwnas.latency.backends.backend_names()``).
    backend: str = "ort-cpu"
    #: ``None``: the backend's default (``fp32``; ``trt-fp16`` and friends fix their own).
    precision: str | None = None
    batch: int = 1
    #: One sample's shape, channels first: (C, H, W).
    input_shape: tuple[int, int, int] = (3, 32, 32)
    num_classes: int = 10
    #: Intra-op threads of CPU backends (also part of the CPU device's identity).
    threads: int = 1
    #: One of ``CLOCKS``.
    clock: str = "auto"
    #: Torch backends: ``torch.compile`` the module first.
    compile: bool = False
    #: ``torch-cuda``: replay the forward pass as a captured CUDA graph.
    cuda_graph: bool = False
    #: ONNX backends: time alternately with a fixed reference network and add the ratio
    #: candidate / reference (``latency_ref_ratio``), the figure to rank by under drifting load.
    reference: bool = False

    def __post_init__(self) -> None:
        try:
            cls = backend_class(self.backend)
        except BackendUnavailableError as exc:
            raise BackendUnavailableError(f"MeasurementTarget.backend: {exc}") from None
        for name in ("batch", "num_classes", "threads"):
            object.__setattr__(self, name, _positive_int(name, getattr(self, name)))
        object.__setattr__(self, "input_shape", _input_shape(self.input_shape))
        if self.precision is not None:
            fixed = BACKENDS.fixed(self.backend).get("precision")
            if fixed is not None and self.precision != fixed:
                raise ValueError(
                    f"MeasurementTarget.precision={self.precision!r} contradicts backend "
                    f"{self.backend!r}, which is always {fixed}; leave precision unset"
                )
            if self.precision not in cls.precisions:
                raise ValueError(
                    f"MeasurementTarget.precision={self.precision!r} is not one backend "
                    f"{self.backend!r} runs; choose one of {', '.join(cls.precisions)}"
                )
        if self.clock not in CLOCKS:
            raise ValueError(
                f"MeasurementTarget.clock={self.clock!r} is unknown; choose {', '.join(CLOCKS)}"
            )
        if self.clock == "thread_cpu" and self.threads != 1:
            raise ValueError(
                f"MeasurementTarget.clock='thread_cpu' needs threads=1 (got {self.threads}): "
                "the other threads' time would be missing; use 'wall'"
            )
        if self.reference and cls.artefact != "onnx":
            raise ValueError(
                f"MeasurementTarget.reference=True needs an ONNX backend, not {self.backend!r}"
            )

    def create_backend(self, engine_cache_dir: str | None = None) -> Backend:
        """The configured backend; ``engine_cache_dir`` keeps TensorRT engines and timing
        caches between measurements (it speeds builds up and does not change the figure)."""
        options = BackendOptions(
            threads=self.threads,
            compile=self.compile,
            cuda_graph=self.cuda_graph,
            cache_dir=engine_cache_dir,
            clock=self.clock,
        )
        if self.precision is not None:
            options.precision = self.precision
        return get_backend(self.backend, options)


def _input_shape(value: Sequence[int]) -> tuple[int, int, int]:
    """``value`` as a (C, H, W) tuple of positive ints, or a ``ValueError`` naming it."""
    message = f"MeasurementTarget.input_shape must be three integers >= 1 (C, H, W), got {value!r}"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 3:
        raise ValueError(message)
    try:
        channels, height, width = (_positive_int("input_shape", d) for d in value)
    except ValueError:
        raise ValueError(message) from None
    return channels, height, width


__all__ = ["CLOCKS", "MeasurementTarget"]
