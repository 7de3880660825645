"""The interface every latency backend implements (the registry is ``hwnas.latency.backends``).

A backend turns an artefact (an ONNX file, or a torch module for the torch backends) into a
zero-argument callable that runs one inference; ``hwnas.latency.timing`` times that callable. The
callable returns its own elapsed seconds where the backend can measure device time (CUDA
events), else ``None`` (host clock). Nothing here imports a runtime: each backend imports its
own lazily so a CPU-only machine never touches CUDA, TensorRT or NVML.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TimedCall = Callable[[], "float | None"]


@dataclass
class BackendOptions:
    """Settings shared by all backends; each reads the ones it understands."""

    threads: int = 1
    precision: str = "fp32"
    compile: bool = False
    cuda_graph: bool = False
    device_index: int = 0
    cache_dir: str | None = None  # TensorRT engine / timing caches
    clock: str = "auto"  # CPU backends: "wall", "thread_cpu", or "auto" (see Backend.clock)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Loaded:
    """A ready-to-time inference and what must be released afterwards."""

    run: TimedCall
    close: Callable[[], None] = lambda: None
    info: dict[str, Any] = field(default_factory=dict)  # e.g. providers actually used


class Backend(ABC):
    """One runtime on one device class."""

    #: Registry name, e.g. ``"ort-cpu"``.
    name: str
    #: ``"onnx"`` (loads an ONNX file) or ``"torch"`` (loads an ``nn.Module``).
    artefact: str = "onnx"
    #: ``"cpu"`` or ``"gpu"``: which device facts to record.
    device_kind: str = "cpu"
    #: Precisions this backend accepts; the first is the default.
    precisions: tuple[str, ...] = ("fp32",)
    #: How a GPU backend times a call (its callable reports device time or not).
    gpu_clock: str = "cuda_events"

    def __init__(self, options: BackendOptions | None = None) -> None:
        self.options = options or BackendOptions()
        if self.options.precision not in self.precisions:
            from hwnas.latency.errors import BackendUnavailableError

            raise BackendUnavailableError(
                f"backend {self.name!r} does not support precision "
                f"{self.options.precision!r}; choose one of {', '.join(self.precisions)}"
            )

    def clock(self) -> str:
        """The clock behind the figure: ``"thread_cpu"``, ``"wall"`` or ``"cuda_events"``.

        CPU backends on one thread default (``auto``) to the calling thread's CPU time: the
        inference runs inline on that thread, so its CPU time is its latency minus the time the
        OS ran other processes instead. On a shared machine that removes preemption noise
        (the wall clock is still recorded as ``host_median_ms``). It still rises with machine
        load: other processes evict the thread's caches and share memory bandwidth, an SMT
        sibling shares its core, and clocks change. More threads: wall clock.
        """
        if self.device_kind == "gpu":
            return self.gpu_clock
        clock, threads = self.options.clock, int(self.options.threads)
        if clock == "auto":
            return "thread_cpu" if threads == 1 else "wall"
        if clock not in ("wall", "thread_cpu"):
            raise ValueError(f"unknown clock {clock!r}; choose auto, wall or thread_cpu")
        if clock == "thread_cpu" and threads != 1:
            raise ValueError(f"clock 'thread_cpu' needs threads=1 (got {threads}): use 'wall'")
        return clock

    def timed(self, run: Callable[[], Any]) -> TimedCall:
        """``run`` as a timing-protocol callable under this backend's CPU clock."""
        if self.clock() != "thread_cpu":
            return lambda: (run(), None)[1]
        thread_time = time.thread_time

        def once() -> float:
            start = thread_time()
            run()
            return thread_time() - start

        return once

    def needs_calibration(self) -> bool:
        """True when the backend needs calibration images (``extra["calibration_path"]``, an
        ``.npy`` of ``(N, C, H, W)`` float32): int8 engines take their scales from them."""
        return False

    @abstractmethod
    def check_available(self) -> None:
        """Raise ``BackendUnavailableError`` naming what is missing; cheap, no model needed."""

    @abstractmethod
    def load(self, artefact: Any, *, batch: int, input_shape: tuple[int, ...]) -> Loaded:
        """Prepare one inference on a fixed random input of shape ``(batch, *input_shape)``."""

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Library versions that affect the figure (part of the cache key)."""
