"""Native TensorRT backend (``trt-fp32``, ``trt-fp16``, ``trt-int8``), TensorRT 10 Python API.

Not yet verified on hardware: TensorRT cannot be installed on the project's machines. The
engine-build logic (parse, precision flags, timing cache, errors) is tested with a test double
of the ``tensorrt`` module; execution uses torch CUDA tensors for buffers and CUDA events for
device time. The module ``tensorrt`` is imported lazily, or injected (``trt=``) for tests.

``trt-int8`` sets the INT8 and FP16 flags; pass an ``IInt8Calibrator`` as
``BackendOptions.extra["calibrator"]`` (or export a Q/DQ model) for layers to run in INT8 —
without scales TensorRT keeps them in FP16, so the figure is then an FP16 one.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.atomic import atomic_open
from hwnas.latency.backends import BACKENDS
from hwnas.latency.backends.base import Backend, Loaded
from hwnas.latency.errors import BackendUnavailableError, MeasurementError

WORKSPACE_BYTES = 1 << 30


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or one clear error naming what is missing."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailableError(
            "TensorRT backends need NVIDIA TensorRT 10 (pip install 'hwnas[tensorrt]' on a "
            "machine with a CUDA GPU and NVIDIA's package index); module 'tensorrt' is missing"
        ) from exc
    return tensorrt


def build_engine(
    trt: Any,
    onnx_path: str | Path,
    *,
    precision: str,
    batch: int,
    timing_cache_path: str | Path | None = None,
    workspace_bytes: int = WORKSPACE_BYTES,
    calibrator: Any = None,
) -> bytes:
    """Parse ``onnx_path`` and build a serialised engine; reuse and update the timing cache."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    data = Path(onnx_path).read_bytes()
    if not parser.parse(data, str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise MeasurementError(
            f"TensorRT could not parse {onnx_path}: " + ("; ".join(errors) or "unknown error")
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 layers fall back to FP16, not FP32
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if calibrator is not None:
            config.int8_calibrator = calibrator
    # A dynamic batch dimension needs an optimisation profile pinned to the measured batch.
    profile = None
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tuple(tensor.shape)
        if any(d < 0 for d in shape):
            fixed = (batch, *shape[1:])
            profile = profile or builder.create_optimization_profile()
            profile.set_shape(tensor.name, fixed, fixed, fixed)
    if profile is not None:
        config.add_optimization_profile(profile)
    cache_bytes = b""
    if timing_cache_path is not None and Path(timing_cache_path).exists():
        cache_bytes = Path(timing_cache_path).read_bytes()
    timing_cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(timing_cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise MeasurementError(
            f"TensorRT failed to build a {precision} engine for {onnx_path} (see its log)"
        )
    if timing_cache_path is not None:
        with atomic_open(timing_cache_path, "wb") as fh:
            fh.write(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


@BACKENDS.register("trt-fp32", precision="fp32")
@BACKENDS.register("trt-fp16", precision="fp16")
@BACKENDS.register("trt-int8", precision="int8")
class TensorrtBackend(Backend):
    """Engine built per precision from the ONNX file; timed with CUDA events."""

    name = "trt"
    artefact = "onnx"
    device_kind = "gpu"
    precisions = ("fp32", "fp16", "int8")

    def __init__(self, options: Any = None, *, trt: Any = None) -> None:
        super().__init__(options)
        self.name = f"trt-{self.options.precision}"
        self._trt = trt

    @property
    def trt(self) -> Any:
        if self._trt is None:
            self._trt = import_tensorrt()
        return self._trt

    def check_available(self) -> None:
        self.trt  # noqa: B018  (raises BackendUnavailableError when missing)
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"backend {self.name!r} needs a CUDA GPU for buffers and timing: "
                "torch.cuda.is_available() is False"
            )

    def versions(self) -> dict[str, str]:
        try:
            version = importlib.metadata.version("tensorrt")
        except importlib.metadata.PackageNotFoundError:
            version = getattr(self._trt, "__version__", "missing")
        return {"tensorrt": version}

    def timing_cache_path(self) -> Path | None:
        if not self.options.cache_dir:
            return None
        return Path(self.options.cache_dir) / f"trt-{self.versions()['tensorrt']}.timing-cache"

    def engine(self, onnx_path: str | Path, batch: int) -> bytes:
        """The serialised engine, built once per (ONNX bytes, precision, batch) in cache_dir."""
        engine_path = None
        if self.options.cache_dir:
            digest = hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()[:20]
            name = f"{digest}-{self.options.precision}-b{batch}.engine"
            engine_path = Path(self.options.cache_dir) / name
            if engine_path.exists():
                return engine_path.read_bytes()
        data = build_engine(
            self.trt,
            onnx_path,
            precision=self.options.precision,
            batch=batch,
            timing_cache_path=self.timing_cache_path(),
            calibrator=self.options.extra.get("calibrator"),
        )
        if engine_path is not None:
            with atomic_open(engine_path, "wb") as fh:
                fh.write(data)
        return data

    def load(self, artefact: Any, *, batch: int, input_shape: tuple[int, ...]) -> Loaded:
        self.check_available()
        import torch

        trt = self.trt
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
            self.engine(artefact, batch)
        )
        if engine is None:
            raise MeasurementError(f"TensorRT could not deserialise the engine for {artefact}")
        context = engine.create_execution_context()
        device = torch.device("cuda", self.options.device_index)
        buffers = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(engine.get_tensor_shape(name))
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                shape = (batch, *input_shape) if any(d < 0 for d in shape) else shape
                context.set_input_shape(name, shape)
            else:
                shape = tuple(context.get_tensor_shape(name))
            dtype = torch.from_numpy(np.zeros(1, trt.nptype(engine.get_tensor_dtype(name)))).dtype
            tensor = torch.randn(shape, device=device).to(dtype)
            context.set_tensor_address(name, tensor.data_ptr())
            buffers.append(tensor)
        stream = torch.cuda.Stream(device)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)

        def once() -> float:
            start.record(stream)
            if not context.execute_async_v3(stream.cuda_stream):
                raise MeasurementError("TensorRT execute_async_v3 returned False")
            end.record(stream)
            end.synchronize()
            return start.elapsed_time(end) / 1e3

        info = {
            "buffers": len(buffers),
            "precision": self.options.precision,
            "clock": "cuda_events",
        }
        return Loaded(run=once, info=info)
