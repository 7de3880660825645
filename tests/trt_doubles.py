"""Test doubles of ``tensorrt`` (10.x and 11.x) and ``cuda.bindings.runtime``.

Neither TensorRT nor a CUDA device exists on the project's machines, so the native TensorRT
backend is driven through these. Each modelled behaviour names its source (research notes:
/tmp/research/tensorrt.md, which cite NVIDIA/TensorRT at tag v10.16 and at main = 11.1):

* ``BuilderFlag``: 10.x has ``FP16``/``INT8``/``BF16``/``TF32``; 11.x removed every weak typing
  flag and keeps ``TF32`` (migration guide "Removed Python APIs and Replacements"; research
  §2; 11.x raises ``AttributeError: ... 'BuilderFlag' has no attribute 'FP16'``).
* ``IBuilderConfig.int8_calibrator``: gone in 11.x (``pyInt8Doc.h`` empty at main; research
  §2): assigning it raises ``AttributeError`` here (``__slots__``).
* ``NetworkDefinitionCreationFlag``: ``kSTRONGLY_TYPED = 1`` (``include/NvInfer.h``); 10.x also
  has ``EXPLICIT_BATCH = 0`` (ignored), removed in 11.x, where strong typing is always on and
  ``STRONGLY_TYPED`` is kept but ignored (research §1).
* ``Runtime.deserialize_cuda_engine``: "returns The ICudaEngine, or None if it could not be
  deserialized" (``pyCoreDoc.h`` 10.16 and 11; ``NvInferRuntime.h`` main line 1961): engines
  work only with the TensorRT version and GPU that built them (research §4). Here an engine
  is ``ENGINE|<version>|<gpu>|...``; anything else deserialises to ``None``.
* ``IBuilderConfig.set_timing_cache(cache, ignore_mismatch) -> bool``: "A failure will be
  reported if the CUDA device property in the provided cache is different from current
  environment" (``pyCoreDoc.h`` main ~1666; ``NvInfer.h`` ~10941: "true if set successfully,
  false otherwise"). ``create_timing_cache`` does not raise on a foreign blob (research §3).
  A refused cache that is still used breaks ``serialize()`` (issue 14's report): modelled by
  ``serialize`` raising for a cache whose device differs.
* ``IExecutionContext.execute_async_v3``: "Modifying or releasing memory that has been
  registered for the tensors before stream synchronization ... results in undefined
  behavior" (``NvInferRuntime.h`` main 4626-4645): the double fails the run when any bound
  address is no longer a live allocation of the fake CUDA runtime.
* ``cuda.bindings.runtime``: every call returns ``(err, *results)`` and does not raise, also
  without a driver (``cudaErrorInsufficientDriver (35)``, research §6, seen with
  cuda-bindings 13.5.0 here); ``cudaGetDeviceProperties`` gives ``name`` as NUL-padded bytes.
"""

from __future__ import annotations

import ctypes
import enum
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx

V10 = "10.16.1.11"
V11 = "11.4.0.106"


class CudaError(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100


class _Stream:
    """A ``cudaStream_t``: ``int(stream)`` is the handle ``execute_async_v3`` takes."""

    def __int__(self) -> int:
        return 42


class FakeCudart:
    """``cuda.bindings.runtime`` over a pretend device; tracks live allocations."""

    cudaError_t = CudaError
    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1)

    def __init__(
        self,
        *,
        name: str = "NVIDIA H200",
        cc: tuple[int, int] = (9, 0),
        devices: int = 1,
        driver: bool = True,
    ) -> None:
        self.name, self.cc, self.devices, self.driver = name, cc, devices, driver
        self.live: dict[int, int] = {}  # pointer -> size
        self.freed: list[int] = []
        self.copies: list[tuple[int, bytes]] = []
        self.selected: int | None = None
        self.props_asked: list[int] = []
        self._next = 0x7F0000000000
        self.streams_open = 0

    @classmethod
    def api(cls) -> list[str]:
        """The names of ``cuda.bindings.runtime`` this double models."""
        return [name for name in vars(cls) if name.startswith("cuda")]

    def _ok(self, *values: Any) -> tuple:
        if not self.driver:
            return (CudaError.cudaErrorInsufficientDriver, *([None] * len(values)))
        return (CudaError.cudaSuccess, *values)

    def cudaGetErrorName(self, err):
        return (CudaError.cudaSuccess, CudaError(err).name.encode())

    def cudaGetDeviceCount(self):
        return self._ok(self.devices)

    def cudaSetDevice(self, index):
        if self.driver and not 0 <= index < self.devices:
            return (CudaError.cudaErrorInvalidValue,)
        self.selected = index
        return self._ok()

    def cudaGetDeviceProperties(self, index):
        self.props_asked.append(index)
        prop = SimpleNamespace(
            name=self.name.encode().ljust(256, b"\x00"), major=self.cc[0], minor=self.cc[1]
        )
        return self._ok(prop)

    def cudaMalloc(self, size):
        self._next += 256 * (1 + size // 256)  # TensorRT wants 256-byte alignment
        self.live[self._next] = size
        return self._ok(self._next)

    def cudaFree(self, pointer):
        assert self.live.pop(pointer, None) is not None, "double free"
        self.freed.append(pointer)
        return self._ok()

    def cudaMemcpy(self, dst, src, count, kind):
        assert kind == 1 and self.live.get(dst, -1) >= count, "copy outside an allocation"
        self.copies.append((dst, ctypes.string_at(src, count)))
        return self._ok()

    def cudaStreamCreate(self):
        self.streams_open += 1
        return self._ok(_Stream())

    def cudaStreamSynchronize(self, stream):
        return self._ok()

    def cudaStreamDestroy(self, stream):
        self.streams_open -= 1
        return self._ok()

    def cudaEventCreate(self):
        return self._ok(object())

    def cudaEventRecord(self, event, stream):
        return self._ok()

    def cudaEventSynchronize(self, event):
        return self._ok()

    def cudaEventElapsedTime(self, start, end):
        return self._ok(0.25)  # milliseconds

    def cudaEventDestroy(self, event):
        return self._ok()


class FakeTrt:
    """The slice of the ``tensorrt`` module the backend uses, as 10.x or 11.x."""

    def __init__(
        self,
        version: str = V11,
        *,
        gpu: str = "NVIDIA H200:9.0",
        cudart: FakeCudart | None = None,
        parse_ok: bool = True,
        build_ok: bool = True,
        input_shape: tuple[int, ...] = (1, 3, 8, 8),
    ) -> None:
        self.__version__ = version
        self.gpu = gpu
        self.cudart = cudart
        self.parse_ok, self.build_ok, self.input_shape = parse_ok, build_ok, input_shape
        self.network_flags: list[int] = []
        self.parsed_types: list[dict[str, int]] = []  # initializer types of each parsed ONNX
        self.flags_set: list[Any] = []
        self.cache_blobs: list[bytes] = []
        self.profiles: list[tuple] = []
        self.builds = 0
        self.deserialized: list[bool] = []
        self.runs = 0
        fake = self
        v10 = version.startswith("10.")

        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, level: None})
        self.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
        self.TensorIOMode = SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
        self.DataType = SimpleNamespace(FLOAT="FLOAT", HALF="HALF")
        if v10:
            self.BuilderFlag = SimpleNamespace(FP16="FP16", INT8="INT8", BF16="BF16", TF32="TF32")
            self.NetworkDefinitionCreationFlag = SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
        else:
            self.BuilderFlag = SimpleNamespace(TF32="TF32")
            self.NetworkDefinitionCreationFlag = SimpleNamespace(
                STRONGLY_TYPED=1, PREFER_JIT_PYTHON_PLUGINS=2, PREFER_AOT_PYTHON_PLUGINS=3
            )

        class Tensor:
            name = "input"
            shape = fake.input_shape

        class Network:
            num_inputs = 1

            def get_input(self, i):
                return Tensor()

        class Parser:
            num_errors = 0 if parse_ok else 1

            def __init__(self, network, logger):
                pass

            def parse(self, data, path):
                model = onnx.load_from_string(data)
                types: dict[str, int] = {}
                for init in model.graph.initializer:
                    name = onnx.TensorProto.DataType.Name(init.data_type)
                    types[name] = types.get(name, 0) + 1
                types["QuantizeLinear"] = sum(
                    n.op_type == "QuantizeLinear" for n in model.graph.node
                )
                fake.parsed_types.append(types)
                return fake.parse_ok

            def get_error(self, i):
                return "In node 3 (Conv): unsupported padding mode"

        class TimingCache:
            def __init__(self, blob: bytes):
                self.device = blob.split(b"|")[0].decode() if blob else fake.gpu

            def serialize(self):
                if self.device != fake.gpu:
                    raise RuntimeError("timing cache from another device cannot be serialised")
                return f"{fake.gpu}|tuned".encode()

        slots = ("cache",) if not v10 else ("cache", "int8_calibrator")

        class Config:
            __slots__ = slots

            def set_memory_pool_limit(self, pool, size):
                assert pool == "WORKSPACE" and size > 0

            def set_flag(self, flag):
                fake.flags_set.append(flag)

            def create_timing_cache(self, blob):
                fake.cache_blobs.append(bytes(blob))
                return TimingCache(bytes(blob))

            def set_timing_cache(self, cache, ignore_mismatch):
                self.cache = cache
                return cache.device == fake.gpu

            def get_timing_cache(self):
                return self.cache

            def add_optimization_profile(self, profile):
                fake.profiles.append(profile.shapes)

        class Profile:
            def set_shape(self, name, lo, opt, hi):
                self.shapes = (name, lo, opt, hi)

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                fake.network_flags.append(flags)
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                fake.builds += 1
                if not fake.build_ok:
                    return None
                return f"ENGINE|{fake.__version__}|{fake.gpu}".encode()

        class Context:
            def __init__(self):
                self.addresses: dict[str, int] = {}

            def set_input_shape(self, name, shape):
                return True

            def get_tensor_shape(self, name):
                return (fake.input_shape[0], 10)

            def set_tensor_address(self, name, pointer):
                if name not in ("input", "output"):
                    return False
                self.addresses[name] = pointer
                return True

            def execute_async_v3(self, stream):
                assert stream == 42
                dead = [n for n, p in self.addresses.items() if p not in fake.cudart.live]
                assert not dead, f"bound memory released before synchronisation: {dead}"
                fake.runs += 1
                return True

        class Engine:
            num_io_tensors = 2

            def get_tensor_name(self, i):
                return ("input", "output")[i]

            def get_tensor_mode(self, name):
                return "INPUT" if name == "input" else "OUTPUT"

            def get_tensor_shape(self, name):
                return fake.input_shape if name == "input" else (fake.input_shape[0], 10)

            def get_tensor_dtype(self, name):
                return "FLOAT"

            def create_execution_context(self):
                return Context()

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, data):
                ok = bytes(data) == f"ENGINE|{fake.__version__}|{fake.gpu}".encode()
                fake.deserialized.append(ok)
                return Engine() if ok else None

        self.Builder, self.OnnxParser, self.Runtime = Builder, Parser, Runtime

    @staticmethod
    def nptype(dtype):
        return {"FLOAT": np.float32, "HALF": np.float16}[dtype]
