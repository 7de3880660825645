"""MeasurementTarget: one validated description of what is measured, and the cache key it
builds is the one the keyword-argument API built (existing caches stay valid), but for the two
changes issue 14 made on purpose to GPU keys: the GPU is named by name and compute capability
of the device asked for (it was GPU 0's name and driver, or ``unknown:unknown`` without NVML),
and ``trt-int8`` keys say how the model was quantised (its old figures were FP16 engines)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
from typing import Any

import numpy as np
import pytest

from hwnas.latency import device as latency_device
from hwnas.latency.backends import BackendOptions, backend_names, get_backend
from hwnas.latency.backends.onnx_precision import INT8_RECIPE
from hwnas.latency.cache import cache_key
from hwnas.latency.device import cpu_model
from hwnas.latency.errors import BackendUnavailableError
from hwnas.latency.measure import target_fields
from hwnas.latency.target import MeasurementTarget
from hwnas.spaces import get_space

ARCH = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"


# -- the cache key as the code before MeasurementTarget built it (hwnas.latency.measure's
# target_fields and _target at commit dc6d38c, copied unchanged but for names) ---------------


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


#: The GPU the GPU keys below are built for (issue 14: name and compute capability).
GPU = {"name": "NVIDIA H200", "compute_capability": "9.0", "source": "test"}


def _gpu_name() -> str:
    return "NVIDIA H200:sm90"  # was f"{facts['name']}:{facts['driver']}" of GPU 0


def old_target_fields(
    space, arch, *, backend, precision, batch, input_shape, num_classes, threads, extra=None
) -> dict[str, Any]:
    artefact = "torch" if backend.startswith("torch-") else "onnx"
    libs = {"torch": _version("torch")} if artefact == "torch" else {}
    if artefact == "onnx":
        libs.update({"onnxruntime": _version("onnxruntime")})
        libs.update({"onnxruntime-gpu": _version("onnxruntime-gpu")})
        if backend.startswith("trt-"):
            libs["tensorrt"] = _version("tensorrt")
    kind = "gpu" if ("cuda" in backend or "trt" in backend) else "cpu"
    device = f"cpu:{cpu_model()}:t{threads}" if kind == "cpu" else f"gpu:{_gpu_name()}"
    return {
        "space": space.name,
        "space_options": space.space_options(),
        "canonical_key": space.canonical_key(arch),
        "backend": backend,
        "precision": precision,
        "batch": batch,
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "device": device,
        "versions": libs,
        **(extra or {}),
        **({"quantization": INT8_RECIPE} if backend == "trt-int8" else {}),  # issue 14
    }


def old_key(
    space,
    arch,
    *,
    backend="ort-cpu",
    batch=1,
    input_shape=(3, 32, 32),
    num_classes=10,
    threads=1,
    precision=None,
    compile=False,
    cuda_graph=False,
    clock="auto",
    reference=False,
) -> str:
    arch = space.validate(arch)
    input_shape = tuple(int(d) for d in input_shape)
    options = BackendOptions(threads=threads, compile=compile, cuda_graph=cuda_graph, clock=clock)
    if precision is not None:
        options.precision = precision
    target = get_backend(backend, options)
    extra: dict[str, Any] = {"clock": target.clock()}
    if target.artefact == "torch":
        extra.update(compile=compile, cuda_graph=cuda_graph)
    fields = old_target_fields(
        space,
        arch,
        backend=backend,
        precision=target.options.precision,
        batch=batch,
        input_shape=input_shape,
        num_classes=num_classes,
        threads=threads,
        extra=extra,
    )
    if reference:
        fields["reference"] = True
    return cache_key(fields)


SETTINGS = [
    {},
    {"batch": 4, "input_shape": (1, 16, 16), "num_classes": 100},
    {"threads": 2},
    {"clock": "wall"},
    {"clock": "thread_cpu"},
    {"reference": True},
    {"backend": "ort-cuda"},
    {"backend": "ort-trt", "precision": "fp16"},
    {"backend": "trt-fp16"},
    {"backend": "trt-int8", "batch": 8},
    {"backend": "torch-cpu"},
    {"backend": "torch-cpu", "precision": "bf16", "compile": True},
    {"backend": "torch-cuda", "precision": "fp16", "cuda_graph": True},
    {"backend": "torch-cuda", "compile": True, "clock": "wall", "threads": 4},
]


@pytest.mark.parametrize(
    "settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items())
)
def test_cache_key_is_the_one_the_keyword_api_built(settings, monkeypatch):
    monkeypatch.setattr(latency_device, "gpu_identity", lambda index=0, **_: GPU)
    space = get_space("nb201", C=4, N=1)
    target = MeasurementTarget(**settings)
    new = cache_key(target_fields(space, ARCH, target, target.create_backend()))
    assert new == old_key(space, ARCH, **settings)


def test_every_backend_is_covered_by_the_key_check():
    assert {s.get("backend", "ort-cpu") for s in SETTINGS} >= set(backend_names()) - {"trt-fp32"}


def test_defaults_and_normalised_values():
    target = MeasurementTarget()
    assert (target.backend, target.precision, target.batch, target.threads) == (
        "ort-cpu",
        None,
        1,
        1,
    )
    assert target.input_shape == (3, 32, 32) and target.clock == "auto"
    loose = MeasurementTarget(batch=np.int64(2), input_shape=[1, np.int32(8), 8], threads=1)
    assert loose.batch == 2 and type(loose.batch) is int
    assert loose.input_shape == (1, 8, 8) and all(type(d) is int for d in loose.input_shape)
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.batch = 2  # type: ignore[misc]
    assert MeasurementTarget("trt-fp16").create_backend().options.precision == "fp16"
    assert MeasurementTarget("torch-cpu", "bf16").create_backend().options.precision == "bf16"


BAD = [
    ({"batch": 0}, r"MeasurementTarget.batch must be an integer >= 1, got 0"),
    ({"batch": 1.5}, r"MeasurementTarget.batch .* got 1.5"),
    ({"batch": True}, r"MeasurementTarget.batch .* got True"),
    ({"threads": -1}, r"MeasurementTarget.threads .* got -1"),
    ({"num_classes": 0}, r"MeasurementTarget.num_classes .* got 0"),
    ({"input_shape": (3, 32)}, r"input_shape must be three .* got \(3, 32\)"),
    ({"input_shape": (3, 0, 32)}, r"input_shape .* got \(3, 0, 32\)"),
    ({"input_shape": "3x32x32"}, r"input_shape .* got '3x32x32'"),
    ({"precision": "int4"}, r"precision='int4' is not one backend 'ort-cpu' runs; choose .*fp32"),
    ({"backend": "trt-fp16", "precision": "fp32"}, r"'fp32' contradicts .* always fp16"),
    ({"clock": "tsc"}, r"clock='tsc' is unknown; choose auto, wall, thread_cpu"),
    ({"clock": "thread_cpu", "threads": 2}, r"clock='thread_cpu' needs threads=1 \(got 2\)"),
    ({"backend": "torch-cpu", "reference": True}, r"needs an ONNX backend, not 'torch-cpu'"),
]


@pytest.mark.parametrize(("settings", "message"), BAD)
def test_invalid_settings_are_one_line_errors_naming_field_and_value(settings, message):
    with pytest.raises(ValueError, match=message) as caught:
        MeasurementTarget(**settings)
    assert "\n" not in str(caught.value)


def test_unknown_backend_is_the_error_get_backend_raises():
    with pytest.raises(
        BackendUnavailableError, match=r"backend: unknown latency backend 'ort-gpu'; known: ort-cpu"
    ):
        MeasurementTarget("ort-gpu")
