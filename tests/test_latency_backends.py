"""GPU backends on a CPU-only machine fail with one clear error each; the TensorRT engine
build is exercised through a test double of the ``tensorrt`` module (TensorRT cannot be
installed here; the double follows TensorRT 10's documented Python API)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
import torch

from hwnas.latency.backends import (
    BACKENDS,
    BackendOptions,
    backend_artefact,
    backend_names,
    get_backend,
)
from hwnas.latency.backends import ort as ort_backends
from hwnas.latency.backends.tensorrt import TensorrtBackend, build_engine
from hwnas.latency.device import cpu_facts, gpu_facts
from hwnas.latency.errors import BackendUnavailableError, MeasurementError
from hwnas.latency.export import export_onnx
from hwnas.latency.measure import measure_architecture
from hwnas.latency.target import MeasurementTarget
from hwnas.spaces import get_space

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|skip_connect~2|"


@needs_no_cuda
@pytest.mark.parametrize(
    ("backend", "names"),
    [
        ("torch-cuda", "CUDA GPU"),
        ("ort-cuda", "CUDAExecutionProvider"),
        ("ort-trt", "TensorrtExecutionProvider"),
        ("trt-fp16", "tensorrt"),
    ],
)
def test_gpu_backend_on_cpu_machine_names_what_is_missing(backend, names):
    if backend.startswith("trt-") and importlib.util.find_spec("tensorrt"):
        pytest.skip("tensorrt is installed here")
    with pytest.raises(BackendUnavailableError, match=names):
        measure_architecture(get_space("nb201", C=4, N=1), ARCH, MeasurementTarget(backend))


def test_unknown_backend_and_precision_are_named():
    with pytest.raises(BackendUnavailableError, match=r"ort-gpu.*known: ort-cpu"):
        get_backend("ort-gpu")
    with pytest.raises(BackendUnavailableError, match=r"latency backend 'ort-gpu'.*torch-cpu"):
        backend_artefact("ort-gpu")
    with pytest.raises(BackendUnavailableError, match="precision 'int4'"):
        get_backend("torch-cuda", BackendOptions(precision="int4"))


def test_every_backend_registers_itself_by_name():
    assert backend_names() == (
        "ort-cpu", "ort-cuda", "ort-trt", "torch-cpu", "torch-cuda", "trt-fp16", "trt-fp32",
        "trt-int8",
    )  # fmt: skip
    for name in backend_names():
        backend = get_backend(name)  # constructing one imports no runtime
        assert backend.name == name
        assert backend_artefact(name) == backend.artefact
        assert backend.artefact == ("torch" if name.startswith("torch-") else "onnx")
    # One TensorRT class serves three names, each with its precision fixed.
    assert {BACKENDS.get(f"trt-{p}") for p in ("fp32", "fp16", "int8")} == {TensorrtBackend}
    assert get_backend("trt-fp16").options.precision == "fp16"
    assert get_backend("trt-int8", BackendOptions(precision="fp32")).options.precision == "int8"


# Runs in a fresh interpreter: look ort-cpu up through the registry (which imports every
# built-in backend module) and time a real ONNX file as the worker does; torch, TensorRT and
# CUDA must never load.
_TORCH_FREE_WORKER = """
import json, sys
from hwnas.latency.worker import handle
reply = handle(json.loads(sys.argv[1]))
heavy = sorted(m for m in ("torch", "tensorrt", "pynvml") if m in sys.modules)
loaded = sorted(m for m in sys.modules if m.startswith("hwnas.latency.backends."))
print(json.dumps({"ok": reply["ok"], "reply": reply, "heavy": heavy, "loaded": loaded}))
"""


def test_timing_worker_never_imports_torch(onnx_file):
    request = {
        "onnx_path": onnx_file,
        "backend": "ort-cpu",
        "batch": 1,
        "input_shape": [3, 8, 8],
        "options": {"threads": 1},
        "timing": {"warmup_s": 0.01, "min_runs": 3, "min_duration_s": 0.01, "max_attempts": 1},
    }
    done = subprocess.run(
        [sys.executable, "-c", _TORCH_FREE_WORKER, json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = json.loads(done.stdout)
    assert out["ok"], out["reply"]
    assert out["reply"]["stats"]["median_ms"] > 0
    assert out["heavy"] == []
    assert out["loaded"] == [
        "hwnas.latency.backends.base",
        "hwnas.latency.backends.ort",
        "hwnas.latency.backends.tensorrt",
        "hwnas.latency.backends.torch_backend",
    ]


def test_mixed_onnxruntime_install_is_refused_for_gpu(monkeypatch):
    monkeypatch.setattr(
        ort_backends,
        "installed_ort_distributions",
        lambda: ["onnxruntime", "onnxruntime-gpu"],
    )
    with pytest.raises(BackendUnavailableError, match="onnxruntime and onnxruntime-gpu"):
        get_backend("ort-cuda").check_available()


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_silent_cpu_fallback_is_not_reported_as_gpu(tmp_path, monkeypatch):
    """onnxruntime on a machine without CUDA runs a CUDA-provider session on the CPU."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 10))
    path = export_onnx(model, tmp_path / "m.onnx", input_shape=(3, 2, 2)).path
    # Pretend the provider is available so the session is really created and falls back.
    available = ort.get_available_providers()
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: [*available, "CUDAExecutionProvider"]
    )
    backend = get_backend("ort-cuda")
    with pytest.raises(BackendUnavailableError, match="refusing to report"):
        backend.create_session(Path(path))


def test_device_facts_without_gpu():
    facts = cpu_facts(threads=1)
    assert facts["kind"] == "cpu" and facts["threads"] == 1 and facts["name"]
    if not torch.cuda.is_available():
        gpu = gpu_facts()
        assert gpu["kind"] == "gpu" and "nvml_error" in gpu


# -- TensorRT through a test double ----------------------------------------------------------


class FakeTrt:
    """The slice of TensorRT 10's Python API that ``build_engine`` uses, recording calls."""

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    class BuilderFlag:
        FP16 = "FP16"
        INT8 = "INT8"

    class MemoryPoolType:
        WORKSPACE = "WORKSPACE"

    def __init__(self, *, parse_ok=True, build_ok=True, input_shape=(1, 3, 8, 8)):
        self.parse_ok, self.build_ok, self.input_shape = parse_ok, build_ok, input_shape
        self.flags: list[str] = []
        self.cache_seen: list[bytes] = []
        self.profiles: list[tuple] = []
        fake = self

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
                assert data.startswith(b"\x08")  # ONNX protobuf: field 1 (ir_version)
                return fake.parse_ok

            def get_error(self, i):
                return "In node 3 (Conv): unsupported padding mode"

        class TimingCache:
            def __init__(self, data):
                self.data = data

            def serialize(self):
                return self.data + b"+tuned"

        class Config:
            int8_calibrator = None

            def set_memory_pool_limit(self, pool, size):
                assert pool == "WORKSPACE" and size > 0

            def set_flag(self, flag):
                fake.flags.append(flag)

            def create_timing_cache(self, data):
                fake.cache_seen.append(bytes(data))
                return TimingCache(bytes(data))

            def set_timing_cache(self, cache, ignore_mismatch):
                self.cache = cache

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
                assert flags == 0  # explicit batch is implicit in TensorRT 10
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return b"ENGINE" if fake.build_ok else None

        self.Builder, self.OnnxParser = Builder, Parser


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10)
    )
    model(torch.zeros(1, 3, 8, 8))
    return export_onnx(model, tmp_path_factory.mktemp("trt") / "m.onnx", input_shape=(3, 8, 8)).path


@pytest.mark.parametrize(
    ("precision", "flags"), [("fp32", []), ("fp16", ["FP16"]), ("int8", ["FP16", "INT8"])]
)
def test_trt_engine_precision_flags(precision, flags, onnx_file):
    trt = FakeTrt()
    assert build_engine(trt, onnx_file, precision=precision, batch=1) == b"ENGINE"
    assert trt.flags == flags
    assert trt.profiles == []  # static batch: no optimisation profile


def test_trt_timing_cache_is_reused_and_updated(onnx_file, tmp_path):
    cache = tmp_path / "timing.cache"
    first = FakeTrt()
    build_engine(first, onnx_file, precision="fp16", batch=1, timing_cache_path=cache)
    assert first.cache_seen == [b""] and cache.read_bytes() == b"+tuned"
    second = FakeTrt()
    build_engine(second, onnx_file, precision="fp16", batch=1, timing_cache_path=cache)
    assert second.cache_seen == [b"+tuned"] and cache.read_bytes() == b"+tuned+tuned"


def test_trt_dynamic_batch_gets_a_profile_pinned_to_the_batch(onnx_file):
    trt = FakeTrt(input_shape=(-1, 3, 8, 8))
    build_engine(trt, onnx_file, precision="fp32", batch=4)
    assert trt.profiles == [("input", (4, 3, 8, 8), (4, 3, 8, 8), (4, 3, 8, 8))]


def test_trt_parse_and_build_failures_are_clear(onnx_file):
    with pytest.raises(MeasurementError, match=r"could not parse.*unsupported padding mode"):
        build_engine(FakeTrt(parse_ok=False), onnx_file, precision="fp16", batch=1)
    with pytest.raises(MeasurementError, match="failed to build a fp16 engine"):
        build_engine(FakeTrt(build_ok=False), onnx_file, precision="fp16", batch=1)


def test_trt_backend_caches_engines_per_onnx_and_precision(onnx_file, tmp_path):
    trt = FakeTrt()
    backend = TensorrtBackend(BackendOptions(precision="fp16", cache_dir=str(tmp_path)), trt=trt)
    assert backend.name == "trt-fp16"
    assert backend.engine(onnx_file, 1) == b"ENGINE"
    assert backend.engine(onnx_file, 1) == b"ENGINE"
    assert len(trt.cache_seen) == 1  # second call loaded the engine file, no rebuild
    assert len(list(tmp_path.glob("*-fp16-b1.engine"))) == 1
