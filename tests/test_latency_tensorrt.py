"""The native TensorRT backend through test doubles of TensorRT 10/11 and cuda-python
(tests/trt_doubles.py cites the documented behaviour each double models). The ONNX
conversions that carry the precision run for real in ONNX Runtime here."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from hwnas.latency.backends import BackendOptions, cuda_runtime
from hwnas.latency.backends import tensorrt as trt_backend
from hwnas.latency.backends.onnx_precision import convert_fp16, quantize_int8
from hwnas.latency.backends.tensorrt import TensorrtBackend, build_engine, import_tensorrt
from hwnas.latency.errors import BackendUnavailableError, MeasurementError
from hwnas.latency.export import export_onnx
from hwnas.latency.measure import measure_architecture
from hwnas.latency.target import MeasurementTarget
from hwnas.latency.timing import TimingConfig
from hwnas.spaces import get_space
from tests.trt_doubles import V10, V11, FakeCudart, FakeTrt

QUICK = TimingConfig(warmup_s=0.0, min_runs=3, min_duration_s=0.0, max_attempts=1)
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"
SHAPE = (3, 8, 8)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = get_space("nb201", C=4, N=1).build(ARCH, num_classes=10, input_shape=SHAPE).eval()
    return export_onnx(model, tmp_path_factory.mktemp("trt") / "m.onnx", input_shape=SHAPE).path


@pytest.fixture
def calibration(tmp_path) -> Path:
    path = tmp_path / "calibration.npy"
    np.save(path, np.random.default_rng(1).standard_normal((8, *SHAPE)).astype(np.float32))
    return path


def backend(precision, *, trt, cudart, cache_dir=None, calibration=None) -> TensorrtBackend:
    extra = {"calibration_path": str(calibration)} if calibration else {}
    options = BackendOptions(precision=precision, cache_dir=cache_dir, extra=extra)
    return TensorrtBackend(options, trt=trt, cudart=cudart)


def run_once(onnx_path, **kwargs):
    """Load through the backend, run three times, close: what the timing protocol does."""
    loaded = backend(**kwargs).load(onnx_path, batch=1, input_shape=SHAPE)
    try:
        return [loaded.run() for _ in range(3)], loaded.info
    finally:
        loaded.close()


# -- precision comes from the ONNX types (TensorRT 11 has no precision flags) ----------------


def test_the_trt11_double_lacks_the_removed_apis():
    trt = FakeTrt(V11)
    with pytest.raises(AttributeError):
        trt.BuilderFlag.FP16  # noqa: B018
    with pytest.raises(AttributeError):
        trt.Builder(None).create_builder_config().int8_calibrator = object()
    assert not hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")


@pytest.mark.parametrize("version", [V10, V11])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_each_precision_is_in_the_onnx_and_no_flag_is_set(
    version, precision, onnx_file, calibration
):
    cudart = FakeCudart()
    trt = FakeTrt(version, cudart=cudart)
    times, info = run_once(
        onnx_file, precision=precision, trt=trt, cudart=cudart, calibration=calibration
    )
    assert times == [0.25e-3] * 3  # device time from the CUDA events, in seconds
    assert trt.flags_set == []  # TensorRT 11 has none; on 10 they are deprecated
    # TensorRT 10 builds weakly typed unless STRONGLY_TYPED (kSTRONGLY_TYPED = 1) is set.
    assert trt.network_flags == [2 if version == V10 else 0]
    parsed = trt.parsed_types[-1]
    if precision == "fp32":
        assert parsed.get("FLOAT") and not parsed.get("FLOAT16") and not parsed["QuantizeLinear"]
    elif precision == "fp16":
        assert parsed.get("FLOAT16") and not parsed.get("FLOAT")
    else:
        assert parsed["QuantizeLinear"] > 0 and parsed.get("INT8")
    assert info["precision"] == precision and info["strongly_typed"] is True
    assert info["tensorrt"] == version and info["engine"] == "built"


def test_fp16_onnx_runs_in_onnx_runtime_close_to_fp32(onnx_file, tmp_path):
    out = tmp_path / "fp16.onnx"
    info = convert_fp16(onnx_file, out)
    assert info["initializers"].get("FLOAT16") and not info["initializers"].get("FLOAT")
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 I/O
    x = np.random.default_rng(0).standard_normal((1, *SHAPE)).astype(np.float32)
    ref = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )
    half = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )
    assert half[0].dtype == np.float32
    np.testing.assert_allclose(half[0], ref[0], atol=2e-2 * float(np.abs(ref[0]).max()))


def test_int8_qdq_onnx_is_symmetric_and_runs_in_onnx_runtime(onnx_file, tmp_path):
    out = tmp_path / "int8.onnx"
    images = np.random.default_rng(1).standard_normal((4, *SHAPE)).astype(np.float32)
    info = quantize_int8(onnx_file, out, images)
    assert info["quantize_nodes"] > 0 and info["calibration_images"] == 4
    model = onnx.load(str(out))
    zero_points = [
        onnx.numpy_helper.to_array(t)
        for t in model.graph.initializer
        if any(
            n.op_type.endswith("QuantizeLinear") and t.name in n.input[2:] for n in model.graph.node
        )
    ]
    assert zero_points and all(np.all(z == 0) for z in zero_points)  # TensorRT: symmetric only
    x = images[:1]
    ref = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )
    q = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    np.testing.assert_allclose(q[0], ref[0], atol=0.1 * float(np.abs(ref[0]).max()))
    with pytest.raises(ValueError, match=r"calibration images have shape \(4, 3, 9, 9\)"):
        quantize_int8(onnx_file, out, np.zeros((4, 3, 9, 9), np.float32))


def test_int8_without_calibration_is_refused(onnx_file):
    cudart = FakeCudart()
    trt = FakeTrt(V11, cudart=cudart)
    with pytest.raises(BackendUnavailableError, match="trt-int8' needs calibration images"):
        run_once(onnx_file, precision="int8", trt=trt, cudart=cudart)
    assert trt.builds == 0


def test_tensorrt_older_than_10_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTrt("8.6.1"))
    with pytest.raises(BackendUnavailableError, match=r"TensorRT 8\.6\.1 is too old"):
        import_tensorrt()


# -- device buffers live as long as the engine runs -----------------------------------------


def test_bound_buffers_stay_alive_until_close(onnx_file):
    cudart = FakeCudart()
    trt = FakeTrt(V11, cudart=cudart)
    loaded = backend("fp32", trt=trt, cudart=cudart).load(onnx_file, batch=1, input_shape=SHAPE)
    gc.collect()  # nothing but the Loaded holds the buffers now
    assert len(cudart.live) == 2 and cudart.copies  # input uploaded, output allocated
    assert loaded.run() == 0.25e-3 and trt.runs == 1
    # The double does catch memory released under a bound engine (enqueueV3's rule) ...
    pointer = next(iter(cudart.live))
    size = cudart.live.pop(pointer)
    with pytest.raises(AssertionError, match="released before synchronisation"):
        loaded.run()
    cudart.live[pointer] = size
    # ... and close() syncs, then frees everything it allocated and the stream.
    loaded.close()
    assert cudart.live == {} and len(cudart.freed) == 2 and cudart.streams_open == 0


# -- caches keyed by TensorRT version and GPU ----------------------------------------------


def test_engine_and_timing_cache_names_carry_version_and_gpu(onnx_file, tmp_path):
    def names(version, gpu_name, cc):
        cudart = FakeCudart(name=gpu_name, cc=cc)
        b = backend("fp16", trt=FakeTrt(version, cudart=cudart), cudart=cudart, cache_dir=tmp_path)
        return b.engine_path(onnx_file, 1).name, b.timing_cache_path().name

    h200 = names(V11, "NVIDIA H200", (9, 0))
    assert h200[0].endswith("-fp16-b1-trt11.4.0.106-NVIDIA-H200-sm90.engine")
    assert h200[1] == "trt11.4.0.106-NVIDIA-H200-sm90.timing-cache"
    a100 = names(V11, "NVIDIA A100-SXM4-80GB", (8, 0))
    trt10 = names(V10, "NVIDIA H200", (9, 0))
    assert len({h200, a100, trt10}) == 3
    assert len({h200[1], a100[1], trt10[1]}) == 3


def test_cached_engine_is_reused_and_a_stale_one_rebuilt(onnx_file, tmp_path):
    cudart = FakeCudart()
    trt = FakeTrt(V11, gpu="NVIDIA H200:9.0", cudart=cudart)
    kwargs = {"precision": "fp16", "trt": trt, "cudart": cudart, "cache_dir": tmp_path}
    assert run_once(onnx_file, **kwargs)[1]["engine"] == "built"
    assert run_once(onnx_file, **kwargs)[1]["engine"] == "cached" and trt.builds == 1
    # An engine this TensorRT/GPU cannot load at the same name (a driver or plugin change,
    # a truncated file): deserialize_cuda_engine returns None, so it is rebuilt, not failed.
    engine_path = backend(**kwargs).engine_path(onnx_file, 1)
    engine_path.write_bytes(b"ENGINE|10.0.0|NVIDIA H200:9.0")
    times, info = run_once(onnx_file, **kwargs)
    assert info["engine"].startswith("rebuilt") and trt.builds == 2 and times
    assert trt.deserialized[-2:] == [False, True]
    assert engine_path.read_bytes() == f"ENGINE|{V11}|NVIDIA H200:9.0".encode()


def test_an_engine_that_never_deserialises_is_one_clear_error(onnx_file, tmp_path):
    cudart = FakeCudart()
    trt = FakeTrt(V11, cudart=cudart)
    trt.Runtime = type(
        "Runtime",
        (),
        {"__init__": lambda s, logger: None, "deserialize_cuda_engine": lambda s, data: None},
    )
    with pytest.raises(MeasurementError, match="could not deserialise the engine"):
        run_once(onnx_file, precision="fp32", trt=trt, cudart=cudart, cache_dir=tmp_path)
    assert trt.builds == 1  # built once, not rebuilt in a loop


def test_timing_cache_is_reused_and_a_refused_one_replaced(onnx_file, tmp_path):
    cache = tmp_path / "timing.cache"
    first = FakeTrt(V11, gpu="NVIDIA H200:9.0")
    _, info = build_engine(first, onnx_file, batch=1, timing_cache_path=cache)
    assert first.cache_blobs == [b""] and info["timing_cache"] == "new"
    assert cache.read_bytes() == b"NVIDIA H200:9.0|tuned"
    second = FakeTrt(V11, gpu="NVIDIA H200:9.0")
    _, info = build_engine(second, onnx_file, batch=1, timing_cache_path=cache)
    assert second.cache_blobs == [b"NVIDIA H200:9.0|tuned"] and info["timing_cache"] == "reused"
    # A cache another GPU wrote: set_timing_cache returns False; using it anyway would break
    # serialize(). It is replaced by a new cache, and the build and the save go through.
    other = FakeTrt(V11, gpu="NVIDIA A100:8.0")
    _, info = build_engine(other, onnx_file, batch=1, timing_cache_path=cache)
    assert info["timing_cache"].startswith("replaced")
    assert other.cache_blobs == [b"NVIDIA H200:9.0|tuned", b""]
    assert cache.read_bytes() == b"NVIDIA A100:8.0|tuned"


def test_dynamic_batch_gets_a_profile_pinned_to_the_batch(onnx_file):
    trt = FakeTrt(V11, input_shape=(-1, *SHAPE))
    build_engine(trt, onnx_file, batch=4)
    assert trt.profiles == [("input", (4, *SHAPE), (4, *SHAPE), (4, *SHAPE))]


def test_parse_and_build_failures_are_clear(onnx_file):
    with pytest.raises(MeasurementError, match=r"could not parse.*unsupported padding mode"):
        build_engine(FakeTrt(parse_ok=False), onnx_file, batch=1)
    with pytest.raises(MeasurementError, match="failed to build a fp16 engine"):
        build_engine(FakeTrt(build_ok=False), onnx_file, batch=1, label="a fp16")


def test_no_cuda_device_is_named_before_any_build(onnx_file):
    trt = FakeTrt(V11)
    with pytest.raises(BackendUnavailableError, match="cudaErrorInsufficientDriver"):
        run_once(onnx_file, precision="fp32", trt=trt, cudart=FakeCudart(driver=False))
    with pytest.raises(BackendUnavailableError, match="CUDA device 1 does not exist"):
        TensorrtBackend(BackendOptions(device_index=1), trt=trt, cudart=FakeCudart()).load(
            onnx_file, batch=1, input_shape=SHAPE
        )
    assert trt.builds == 0


# -- end to end: measure_architecture -> worker request -> backend --------------------------


@pytest.fixture
def fake_gpu(monkeypatch):
    """Install the doubles where the backend and the device module import from."""
    cudart = FakeCudart()
    trt = FakeTrt(V11, cudart=cudart)
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(cuda_runtime, "import_cudart", lambda: cudart)
    return trt


def test_measure_int8_passes_calibration_images_to_the_engine(fake_gpu, tmp_path):
    space = get_space("nb201", C=4, N=1)
    target = MeasurementTarget("trt-int8", input_shape=SHAPE)
    with pytest.raises(BackendUnavailableError, match="needs calibration images"):
        measure_architecture(space, ARCH, target, isolate=False, timing=QUICK)
    images = np.random.default_rng(2).standard_normal((16, *SHAPE)).astype(np.float32)
    result = measure_architecture(
        space,
        ARCH,
        target,
        isolate=False,
        timing=QUICK,
        calibration=images,
        cache_path=tmp_path / "lat.sqlite",
        engine_cache_dir=str(tmp_path / "engines"),
    )
    assert result.median_ms == pytest.approx(0.25)
    assert result.info["onnx"]["calibration_images"] == 16
    assert fake_gpu.parsed_types[-1]["QuantizeLinear"] > 0
    assert list((tmp_path / "engines").glob("*-int8-b1-trt11.4.0.106-NVIDIA-H200-sm90.engine"))
    with pytest.raises(ValueError, match=r"calibration images have shape \(2, 3, 4, 4\)"):
        measure_architecture(space, ARCH, target, isolate=False, calibration=np.zeros((2, 3, 4, 4)))


def test_trial_passes_its_validation_images_for_int8(fake_gpu, monkeypatch):
    from hwnas.latency import measure
    from hwnas.trials.loop import TrialRun

    real = measure.measure_architecture
    seen = {}

    def in_process(*args, **kwargs):  # the doubles live in this process, not in a worker
        seen.update(kwargs)
        return real(*args, **kwargs, isolate=False, timing=QUICK)

    monkeypatch.setattr(measure, "measure_architecture", in_process)
    hp = {
        "space": "nb201",
        "space_options": {"C": 4, "N": 1},
        "arch": ARCH,
        "data": {"dataset": "digits", "train_subset": 128},
        "training": {"max_epochs": 1, "batch_size": 32, "cpu_threads": 1},
        "latency": {"enabled": True, "backend": "trt-int8"},
    }
    run = TrialRun(hp)
    metrics = run.measure_latency()
    assert metrics["latency_backend"] == "trt-int8" and metrics["latency_ms"] == pytest.approx(0.25)
    images = seen["calibration"]
    assert images.shape[1:] == run.data.info.input_shape and images.dtype == np.float32
    assert 1 <= len(images) <= 64 and abs(float(images.mean())) < 1.0  # normalised
    assert fake_gpu.parsed_types[-1]["QuantizeLinear"] > 0


# The worker process (torch-free) with the doubles installed as the real module names.
_WORKER_WITH_DOUBLES = """
import json, sys, types
sys.path.insert(0, sys.argv[2])
from trt_doubles import FakeCudart, FakeTrt
cudart = FakeCudart()
sys.modules["tensorrt"] = FakeTrt("11.4.0.106", cudart=cudart)
bindings = types.ModuleType("cuda.bindings"); bindings.runtime = cudart
sys.modules["cuda"] = types.ModuleType("cuda"); sys.modules["cuda.bindings"] = bindings
sys.modules["cuda.bindings.runtime"] = cudart
from hwnas.latency.worker import handle
reply = handle(json.loads(sys.argv[1]))
print(json.dumps({"reply": reply, "torch": "torch" in sys.modules, "live": len(cudart.live)}))
"""


def test_tensorrt_backend_in_the_worker_imports_no_torch(onnx_file, tmp_path):
    request = {
        "onnx_path": onnx_file,
        "backend": "trt-fp16",
        "batch": 1,
        "input_shape": list(SHAPE),
        "options": {"precision": "fp16", "cache_dir": str(tmp_path)},
        "timing": QUICK.to_dict(),
    }
    tests_dir = str(Path(__file__).resolve().parent)
    done = subprocess.run(
        [sys.executable, "-c", _WORKER_WITH_DOUBLES, json.dumps(request), tests_dir],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["reply"]["ok"], out["reply"]
    assert out["reply"]["stats"]["median_ms"] == pytest.approx(0.25)
    assert out["reply"]["info"]["gpu"]["name"] == "NVIDIA H200"
    assert out["torch"] is False and out["live"] == 0  # no torch; every buffer freed
