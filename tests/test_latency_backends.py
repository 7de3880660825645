"""GPU backends on a CPU-only machine fail with one clear error each; ONNX Runtime reports where
its nodes run. The native TensorRT backend has its own tests (test_latency_tensorrt.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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
from hwnas.latency.backends.cuda_runtime import require_device
from hwnas.latency.backends.tensorrt import TensorrtBackend
from hwnas.latency.cache import LatencyCache
from hwnas.latency.device import cpu_facts, gpu_facts, gpu_identity, gpu_key
from hwnas.latency.errors import BackendUnavailableError
from hwnas.latency.export import export_onnx
from hwnas.latency.measure import cached_latency, measure_architecture, target_fields
from hwnas.latency.result import LatencyResult
from hwnas.latency.target import MeasurementTarget
from hwnas.latency.timing import summarise
from hwnas.spaces import get_space
from tests.trt_doubles import FakeCudart

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
        "ort-cpu",
        "ort-cuda",
        "ort-trt",
        "torch-cpu",
        "torch-cuda",
        "trt-fp16",
        "trt-fp32",
        "trt-int8",
    )
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


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10)
    )
    model(torch.zeros(1, 3, 8, 8))
    return export_onnx(model, tmp_path_factory.mktemp("trt") / "m.onnx", input_shape=(3, 8, 8)).path


# -- where ONNX Runtime runs the nodes -------------------------------------------------------


def test_ort_cpu_session_reports_every_node_on_its_provider(onnx_file):
    import onnx

    loaded = get_backend("ort-cpu").load(onnx_file, batch=1, input_shape=(3, 8, 8))
    nodes = len(onnx.load(onnx_file).graph.node)
    assert loaded.info["placement"] == "full"
    assert loaded.info["nodes_by_provider"] == {"CPUExecutionProvider": nodes}
    assert loaded.info["off_target_nodes"] == 0


def test_placement_is_unknown_when_the_session_did_not_record_it(onnx_file):
    # A real session made without the config entry: ORT refuses to answer (Fail).
    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    info = ort_backends.node_placement(session, "CPUExecutionProvider")
    assert (
        info["placement"] == "unknown"
        and "record_ep_graph_assignment_info" in info["placement_note"]
    )
    assert ort_backends.node_placement(object(), "CUDAExecutionProvider")["placement"] == (
        "unknown"
    )  # an onnxruntime too old for get_provider_graph_assignment_info


class AssignedSession:
    """A GPU session's placement answer, shaped as onnxruntime 1.32's real one here:
    ``get_provider_graph_assignment_info()`` -> ``OrtEpAssignedSubgraph`` objects with
    ``ep_name`` and ``get_nodes()`` (nodes with ``name``, ``op_type``, ``domain``); checked
    against a real CPU session above. No CUDA EP runs here, so GPU placements are modelled."""

    def __init__(self, placement: dict[str, int]) -> None:
        self._subgraphs = [
            SimpleNamespace(
                ep_name=ep,
                get_nodes=lambda n=n: [
                    SimpleNamespace(name=f"n{i}", op_type="Conv", domain="") for i in range(n)
                ],
            )
            for ep, n in placement.items()
        ]

    def get_provider_graph_assignment_info(self):
        return self._subgraphs


def test_partial_gpu_placement_is_flagged_in_the_metrics():
    cuda = ort_backends.node_placement(
        AssignedSession({"CUDAExecutionProvider": 5, "CPUExecutionProvider": 2}),
        "CUDAExecutionProvider",
    )
    assert cuda == {
        "placement": "partial",
        "nodes_by_provider": {"CUDAExecutionProvider": 5, "CPUExecutionProvider": 2},
        "cpu_nodes": 2,
        "off_target_nodes": 2,
    }
    # ort-trt: nodes TensorRT left to the CUDA EP are off target too, though none is on CPU.
    trt = ort_backends.node_placement(
        AssignedSession({"TensorrtExecutionProvider": 4, "CUDAExecutionProvider": 1}),
        "TensorrtExecutionProvider",
    )
    assert trt["placement"] == "partial" and trt["cpu_nodes"] == 0 and trt["off_target_nodes"] == 1
    stats = summarise([1e-3, 2e-3, 3e-3], host_samples_s=[2e-3, 3e-3, 4e-3])
    common = dict(
        space="nb201",
        arch="a",
        canonical_key="a",
        backend="ort-cuda",
        precision="fp32",
        batch=1,
        input_shape=(3, 8, 8),
        threads=1,
        stats=stats,
        versions={},
    )
    gpu = LatencyResult(**common, device={"kind": "gpu", "name": "NVIDIA H200"}, info=cuda)
    metrics = gpu.to_metrics()
    assert metrics["latency_placement"] == "partial"
    assert metrics["latency_cpu_nodes"] == 2 and metrics["latency_off_target_nodes"] == 2
    assert metrics["latency_host_median_ms"] == pytest.approx(3.0)
    cpu = LatencyResult(**common, device={"kind": "cpu", "name": "x"}, info={"placement": "full"})
    assert "latency_placement" not in cpu.to_metrics()


# -- naming the GPU a figure belongs to ------------------------------------------------------


def test_gpu_identity_reads_the_device_asked_for_in_cuda_order():
    cudart = FakeCudart(name="NVIDIA H100 80GB HBM3", devices=2)
    identity = gpu_identity(1, cudart=cudart)
    assert identity == {
        "name": "NVIDIA H100 80GB HBM3",  # NUL padding stripped
        "compute_capability": "9.0",
        "source": "cuda-runtime",
    }
    assert cudart.props_asked == [1]
    assert gpu_key(identity) == "gpu:NVIDIA H100 80GB HBM3:sm90"


def test_gpu_identity_without_any_source_says_why(monkeypatch):
    class NoNvml:
        class NVMLError(Exception):
            pass

        def nvmlInit(self):
            raise self.NVMLError("NVML Shared Library Not Found")

    identity = gpu_identity(0, cudart=FakeCudart(driver=False), nvml=NoNvml())
    assert set(identity) == {"error"}
    assert "cannot identify CUDA device 0" in identity["error"]
    assert "cuda-runtime" in identity["error"] and "NVML Shared Library" in identity["error"]


@needs_no_cuda
def test_gpu_cache_key_needs_a_named_gpu(tmp_path):
    """Without a GPU to name, a GPU key is refused (it was ``gpu:unknown:unknown``, shared by
    every GPU), and the searcher's cache peek is a miss rather than an error."""
    space = get_space("nb201", C=4, N=1)
    target = MeasurementTarget("ort-cuda")
    with pytest.raises(BackendUnavailableError, match="cannot identify CUDA device 0"):
        target_fields(space, ARCH, target, target.create_backend())
    cache = tmp_path / "lat.sqlite"
    LatencyCache(cache).close()
    assert cached_latency(space, ARCH, target, cache_path=cache) is None


def test_real_cuda_bindings_and_nvml_without_a_driver_are_named():
    """The real modules (where installed) on this GPU-less machine: cuda-python returns an
    error code, NVML raises; both become one clear message."""
    cudart = pytest.importorskip("cuda.bindings.runtime")
    with pytest.raises(BackendUnavailableError, match=r"no usable CUDA device: .*cudaError"):
        require_device(cudart, 0)
    for name in FakeCudart.api():  # the double only models functions the real module has
        assert hasattr(cudart, name), name
    identity = gpu_identity(0)
    assert "error" in identity and "cuda-runtime" in identity["error"]
