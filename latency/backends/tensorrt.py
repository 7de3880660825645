"""Native TensorRT backends (``trt-fp32``, ``trt-fp16``, ``trt-int8``), TensorRT 10 and 11.

Precision comes from the ONNX's tensor types on both versions: a strongly typed network.
TensorRT 11 removed the weakly typed precision flags (``BuilderFlag.FP16``/``INT8``) and the
INT8 calibrator (10.12 and 10.1 deprecated them), so ``trt-fp16`` builds from the ONNX
converted to float16 and ``trt-int8`` from a Q/DQ ONNX quantised on calibration images from
the trial's dataset (``onnx_precision``). On TensorRT 10 the network is created with
``STRONGLY_TYPED``, so a figure means the same engine on either version.

Device memory, the stream and the events come from cuda-python (``cuda_runtime``), never torch:
this runs in the torch-free timing worker. The buffers TensorRT is bound to live as long as the
returned ``Loaded``. Engines and timing caches in ``cache_dir`` are keyed by ONNX digest,
precision, batch, TensorRT version, GPU name and compute capability; a cached engine that no
longer deserialises (``deserialize_cuda_engine`` returns ``None``) is rebuilt, and a timing
cache TensorRT refuses (``set_timing_cache`` returns ``False``) is replaced by a new one.

Not yet run on hardware: TensorRT cannot be installed on the project's machines. The logic is
tested with test doubles of ``tensorrt`` and ``cuda.bindings.runtime`` that model documented
behaviour; ``scripts/gpu-check`` runs it on a GPU where TensorRT is installed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.atomic import atomic_open
from hwnas.latency.backends import BACKENDS
from hwnas.latency.backends.base import Backend, Loaded
from hwnas.latency.errors import BackendUnavailableError, MeasurementError

WORKSPACE_BYTES = 1 << 30
#: Distributions that install the ``tensorrt`` module (the metapackage, or one CUDA flavour).
_TRT_DISTS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11")


def import_tensorrt() -> Any:
    """The ``tensorrt`` module (10.x or 11.x), or one clear error naming what is missing."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailableError(
            "TensorRT backends need NVIDIA TensorRT 10 or 11 (pip install 'hwnas[tensorrt]' "
            "on a machine with a CUDA GPU that reaches NVIDIA's package index); "
            f"module 'tensorrt' could not be imported: {exc}"
        ) from exc
    major = _major(getattr(tensorrt, "__version__", "0"))
    if major < 10:
        raise BackendUnavailableError(
            f"TensorRT {tensorrt.__version__} is too old: hwnas needs TensorRT 10 or 11"
        )
    return tensorrt


def _major(version: str) -> int:
    match = re.match(r"\d+", version)
    return int(match.group()) if match else 0


def tensorrt_version(trt: Any = None) -> str:
    """The installed TensorRT version: package metadata (a bare ``tensorrt-cu13`` install has
    no ``tensorrt`` distribution), else the module's ``__version__``, else ``"missing"``."""
    for dist in _TRT_DISTS:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    if trt is None:  # installed without pip metadata (tarball, system package)
        try:
            import tensorrt as trt
        except ImportError:
            return "missing"
    return str(getattr(trt, "__version__", "missing"))


def weakly_typed_api(trt: Any) -> bool:
    """True on TensorRT 10 (``BuilderFlag.FP16`` exists); TensorRT 11 removed weak typing."""
    return hasattr(trt.BuilderFlag, "FP16")


def network_flags(trt: Any) -> int:
    """``create_network`` flags: strongly typed. TensorRT 10 needs ``STRONGLY_TYPED`` for the
    ONNX types to decide precision; in 11 strong typing is always on (the flag is ignored)."""
    if weakly_typed_api(trt):
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def _attach_timing_cache(trt: Any, config: Any, blob: bytes) -> tuple[Any, str]:
    """Attach a timing cache made from ``blob`` (``b""``: a new one); returns (cache, status).

    ``set_timing_cache`` returns ``False`` when the cache's device properties differ from this
    GPU's or the blob is not a cache this TensorRT reads; such a cache would later break
    ``serialize()``, so it is replaced by a new, empty one."""
    cache = config.create_timing_cache(blob)
    if cache is not None and config.set_timing_cache(cache, False):
        return cache, "reused" if blob else "new"
    if not blob:
        return None, "off: TensorRT refused a new timing cache"
    cache = config.create_timing_cache(b"")
    if cache is not None and config.set_timing_cache(cache, False):
        return cache, "replaced: TensorRT refused the stored timing cache"
    return None, "off: TensorRT refused the stored and a new timing cache"


def build_engine(
    trt: Any,
    onnx_path: str | Path,
    *,
    batch: int,
    label: str = "",
    timing_cache_path: str | Path | None = None,
    workspace_bytes: int = WORKSPACE_BYTES,
) -> tuple[bytes, dict[str, Any]]:
    """Parse ``onnx_path`` into a strongly typed network and build a serialised engine; reuse
    and update the timing cache. Returns (engine bytes, notes for ``Loaded.info``)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes(), str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise MeasurementError(
            f"TensorRT could not parse {onnx_path}: " + ("; ".join(errors) or "unknown error")
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
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
    blob = b""
    if timing_cache_path is not None and Path(timing_cache_path).exists():
        blob = Path(timing_cache_path).read_bytes()
    cache, status = _attach_timing_cache(trt, config, blob)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise MeasurementError(
            f"TensorRT failed to build {label or 'an'} engine for {onnx_path} (see its log)"
        )
    if timing_cache_path is not None and cache is not None:
        try:
            data = bytes(config.get_timing_cache().serialize())
        except Exception as exc:  # a lost timing cache only costs build time
            status += f"; not saved: {type(exc).__name__}: {exc}"
        else:
            with atomic_open(timing_cache_path, "wb") as fh:
                fh.write(data)
    return bytes(serialized), {"timing_cache": status}


class BoundEngine:
    """An execution context with the device buffers and stream it is bound to.

    TensorRT: releasing memory registered with ``set_tensor_address`` before the stream has
    synchronised is undefined behaviour; so everything lives here until ``close()``, which
    synchronises first. ``run`` is the timing protocol's callable (device seconds)."""

    def __init__(self, engine: Any, context: Any, buffers: Any, timer: Any) -> None:
        self.engine, self.context, self.buffers, self.timer = engine, context, buffers, timer

    def _enqueue(self, stream: int) -> None:
        if not self.context.execute_async_v3(stream):
            raise MeasurementError("TensorRT execute_async_v3 returned False")

    def run(self) -> float:
        return self.timer.time(self._enqueue)

    def close(self) -> None:
        self.timer.close()  # synchronises the stream before the buffers are freed
        self.buffers.close()
        self.context = self.engine = None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "unknown"


@BACKENDS.register("trt-fp32", precision="fp32")
@BACKENDS.register("trt-fp16", precision="fp16")
@BACKENDS.register("trt-int8", precision="int8")
class TensorrtBackend(Backend):
    """Engine built per precision from the ONNX file; timed with CUDA events."""

    name = "trt"
    artefact = "onnx"
    device_kind = "gpu"
    precisions = ("fp32", "fp16", "int8")

    def __init__(self, options: Any = None, *, trt: Any = None, cudart: Any = None) -> None:
        super().__init__(options)
        self.name = f"trt-{self.options.precision}"
        self._trt = trt
        self._cudart = cudart
        self._gpu: dict[str, Any] | None = None

    @property
    def trt(self) -> Any:
        if self._trt is None:
            self._trt = import_tensorrt()
        return self._trt

    @property
    def cudart(self) -> Any:
        if self._cudart is None:
            from hwnas.latency.backends.cuda_runtime import import_cudart

            self._cudart = import_cudart()
        return self._cudart

    def needs_calibration(self) -> bool:
        return self.options.precision == "int8"

    def check_available(self) -> None:
        from hwnas.latency.backends.cuda_runtime import require_device

        self.trt  # noqa: B018  (raises BackendUnavailableError when missing)
        require_device(self.cudart, self.options.device_index)

    def versions(self) -> dict[str, str]:
        return {"tensorrt": tensorrt_version(self._trt)}

    def gpu(self) -> dict[str, Any]:
        """Name and compute capability of the GPU engines are built for (CUDA's order)."""
        if self._gpu is None:
            from hwnas.latency.device import gpu_identity

            identity = gpu_identity(self.options.device_index, cudart=self.cudart)
            if "error" in identity:
                raise BackendUnavailableError(identity["error"])
            self._gpu = identity
        return self._gpu

    def cache_tag(self) -> str:
        """TensorRT version and GPU, as in ``trt10.16.1.11-NVIDIA-H200-sm90``: an engine or
        timing cache from any other pair is not used."""
        gpu = self.gpu()
        cc = gpu["compute_capability"].replace(".", "")
        return f"trt{_slug(tensorrt_version(self.trt))}-{_slug(gpu['name'])}-sm{cc}"

    def timing_cache_path(self) -> Path | None:
        if not self.options.cache_dir:
            return None
        return Path(self.options.cache_dir) / f"{self.cache_tag()}.timing-cache"

    def _calibration_path(self) -> Path:
        path = self.options.extra.get("calibration_path")
        if not path:
            raise BackendUnavailableError(
                "backend 'trt-int8' needs calibration images (measure_architecture(..., "
                "calibration=...); a trial passes its validation images): TensorRT 11 has no "
                "INT8 calibrator, and without scales the engine would not be an int8 one"
            )
        return Path(path)

    def engine_path(self, onnx_path: str | Path, batch: int) -> Path | None:
        """Where the engine for (ONNX bytes, calibration, precision, batch, TensorRT, GPU)
        is cached, or ``None`` without ``cache_dir``."""
        if not self.options.cache_dir:
            return None
        from hwnas.latency.backends import onnx_precision

        digest = hashlib.sha256(Path(onnx_path).read_bytes())
        recipe = {"fp16": onnx_precision.FP16_RECIPE, "int8": onnx_precision.INT8_RECIPE}
        digest.update(recipe.get(self.options.precision, "").encode())
        if self.needs_calibration():
            digest.update(self._calibration_path().read_bytes())
        name = (
            f"{digest.hexdigest()[:20]}-{self.options.precision}-b{batch}-{self.cache_tag()}.engine"
        )
        return Path(self.options.cache_dir) / name

    def prepare_onnx(self, onnx_path: str | Path, workdir: str | Path) -> tuple[Path, dict]:
        """The ONNX file whose types are this backend's precision, and how it was made."""
        from hwnas.latency.backends import onnx_precision

        precision = self.options.precision
        if precision == "fp32":
            return Path(onnx_path), {"recipe": "as exported"}
        out = Path(workdir) / f"model-{precision}.onnx"
        if precision == "fp16":
            return out, onnx_precision.convert_fp16(onnx_path, out)
        images = np.load(self._calibration_path(), allow_pickle=False)
        return out, onnx_precision.quantize_int8(onnx_path, out, images)

    def engine(
        self, onnx_path: str | Path, batch: int, *, rebuild: bool = False
    ) -> tuple[bytes, dict[str, Any]]:
        """The serialised engine from ``cache_dir`` (unless ``rebuild``) or built now."""
        engine_path = self.engine_path(onnx_path, batch)
        if engine_path is not None and engine_path.exists() and not rebuild:
            return engine_path.read_bytes(), {"engine": "cached"}
        with tempfile.TemporaryDirectory(prefix="hwnas-trt-") as tmp:
            prepared, onnx_info = self.prepare_onnx(onnx_path, tmp)
            data, info = build_engine(
                self.trt,
                prepared,
                batch=batch,
                label=f"a {self.options.precision}",
                timing_cache_path=self.timing_cache_path(),
            )
        if engine_path is not None:
            engine_path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(engine_path, "wb") as fh:
                fh.write(data)
        return data, {**info, "engine": "built", "onnx": onnx_info}

    def deserialize(self, onnx_path: str | Path, batch: int) -> tuple[Any, dict[str, Any]]:
        """A ``ICudaEngine``; a cached engine that does not deserialise is rebuilt once."""
        trt = self.trt
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        data, info = self.engine(onnx_path, batch)
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None and info["engine"] == "cached":
            data, info = self.engine(onnx_path, batch, rebuild=True)
            info["engine"] = "rebuilt: the cached engine did not deserialise"
            engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise MeasurementError(f"TensorRT could not deserialise the engine for {onnx_path}")
        return engine, info

    def load(self, artefact: Any, *, batch: int, input_shape: tuple[int, ...]) -> Loaded:
        from hwnas.latency.backends.cuda_runtime import DeviceBuffers, EventTimer

        self.check_available()
        trt, cudart = self.trt, self.cudart
        engine, info = self.deserialize(artefact, batch)
        context = engine.create_execution_context()
        buffers = DeviceBuffers(cudart)
        try:
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            rng = np.random.default_rng(0)
            for name in inputs:  # inputs first: output shapes follow from them
                shape = tuple(engine.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    shape = (batch, *input_shape)
                    context.set_input_shape(name, shape)
                dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
                self._bind(context, name, buffers.upload(rng.standard_normal(shape).astype(dtype)))
            for name in names:
                if name in inputs:
                    continue
                shape = tuple(context.get_tensor_shape(name))
                dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
                self._bind(context, name, buffers.alloc(int(np.prod(shape)) * dtype.itemsize))
            timer = EventTimer(cudart)
        except BaseException:
            buffers.close()
            raise
        bound = BoundEngine(engine, context, buffers, timer)
        info.update(
            buffers=len(buffers),
            precision=self.options.precision,
            clock="cuda_events",
            tensorrt=self.versions()["tensorrt"],
            strongly_typed=True,
            gpu=self.gpu(),
        )
        return Loaded(run=bound.run, close=bound.close, info=info)

    @staticmethod
    def _bind(context: Any, name: str, pointer: int) -> None:
        if not context.set_tensor_address(name, pointer):
            raise MeasurementError(f"TensorRT set_tensor_address({name!r}) returned False")
