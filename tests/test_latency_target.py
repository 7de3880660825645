"""MeasurementTarget: one validated description of what is measured."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hwnas.latency.errors import BackendUnavailableError
from hwnas.latency.target import MeasurementTarget


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
