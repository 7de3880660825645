"""Torch baselines: eager or ``torch.compile`` on the CPU, and on CUDA with CUDA events and
optional CUDA-graph capture (so Python and launch overhead stay out of the figure)."""

from __future__ import annotations

import copy
from typing import Any

from hwnas.latency.backends import BACKENDS
from hwnas.latency.backends.base import Backend, Loaded
from hwnas.latency.errors import BackendUnavailableError, MeasurementError

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@BACKENDS.register("torch-cpu")
class TorchCpuBackend(Backend):
    """Eager (or compiled) torch on the CPU with ``torch.set_num_threads(options.threads)``."""

    name = "torch-cpu"
    artefact = "torch"
    device_kind = "cpu"
    precisions = ("fp32", "bf16")

    def check_available(self) -> None:
        import torch  # noqa: F401  (torch is a core dependency)

    def versions(self) -> dict[str, str]:
        import torch

        return {"torch": torch.__version__}

    def load(self, artefact: Any, *, batch: int, input_shape: tuple[int, ...]) -> Loaded:
        import torch

        dtype = getattr(torch, _DTYPES[self.options.precision])
        model = copy.deepcopy(artefact).eval().to(dtype=dtype)  # never alter the caller's
        if self.options.compile:
            model = torch.compile(model)
        x = torch.randn((batch, *input_shape), generator=torch.Generator().manual_seed(0))
        x = x.to(dtype)
        previous = torch.get_num_threads()
        torch.set_num_threads(int(self.options.threads))

        def forward() -> None:
            with torch.inference_mode():
                model(x)

        def close() -> None:
            torch.set_num_threads(previous)

        info = {"compiled": self.options.compile, "clock": self.clock()}
        return Loaded(run=self.timed(forward), close=close, info=info)


@BACKENDS.register("torch-cuda")
class TorchCudaBackend(Backend):
    """Torch on CUDA: fp32/fp16/bf16, eager or compiled, optionally replayed as a CUDA graph."""

    name = "torch-cuda"
    artefact = "torch"
    device_kind = "gpu"
    precisions = ("fp32", "fp16", "bf16")

    def check_available(self) -> None:
        import torch

        if not torch.cuda.is_available():
            build = torch.__version__
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no GPU"
            raise BackendUnavailableError(
                f"backend 'torch-cuda' needs a CUDA GPU: torch.cuda.is_available() is False "
                f"({why}; torch {build})"
            )

    def versions(self) -> dict[str, str]:
        import torch

        return {"torch": torch.__version__, "cuda": str(torch.version.cuda)}

    def load(self, artefact: Any, *, batch: int, input_shape: tuple[int, ...]) -> Loaded:
        self.check_available()
        import torch

        device = torch.device("cuda", self.options.device_index)
        dtype = getattr(torch, _DTYPES[self.options.precision])
        model = copy.deepcopy(artefact).eval().to(device=device, dtype=dtype)
        if self.options.compile:
            model = torch.compile(model)
        generator = torch.Generator().manual_seed(0)
        x = torch.randn((batch, *input_shape), generator=generator).to(device=device, dtype=dtype)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)

        def forward() -> None:
            with torch.inference_mode():
                model(x)

        step = forward
        if self.options.cuda_graph:
            step = self._capture(forward, torch)

        def once() -> float:
            start.record()
            step()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3  # ms -> s: device time only

        info = {
            "compiled": self.options.compile,
            "cuda_graph": self.options.cuda_graph,
            "clock": "cuda_events",
        }
        return Loaded(run=once, info=info)

    @staticmethod
    def _capture(forward: Any, torch: Any) -> Any:
        """Record ``forward`` into a CUDA graph (after side-stream warm-up, as torch requires)."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                forward()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                forward()
        except Exception as exc:
            raise MeasurementError(f"CUDA graph capture failed: {exc}") from exc
        return graph.replay
