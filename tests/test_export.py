"""torch -> ONNX export: every NB201 op and MobileNet stage option exports, passes
onnx.checker and matches torch in ONNX Runtime within 1e-4 + 1e-4 * max|output|
(DEFAULT_ATOL / DEFAULT_RTOL; observed max abs diff on these tiny nets is ~1e-6)."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from hwnas.latency.errors import ExportError
from hwnas.latency.export import DEFAULT_ATOL, export_onnx
from hwnas.spaces import get_space
from hwnas.spaces.nb201 import EDGES, OPS

TINY_MOBILENET = {
    "stage_channels": (8, 16),
    "stage_strides": (1, 2),
    "stage_activations": ("relu6", "hswish"),
    "stem_channels": 8,
    "head_channels": 32,
}


def _uniform_nb201(op: str) -> str:
    """All six edges carry ``op``."""
    nodes = [[f"{op}~{src}" for to2, src in EDGES if to2 == to] for to in (1, 2, 3)]
    return "+".join("|" + "|".join(node) + "|" for node in nodes)


def _check(space, arch, tmp_path, **kwargs):
    model = space.build(arch, num_classes=10, input_shape=(3, 16, 16))
    result = export_onnx(model, tmp_path / "m.onnx", input_shape=(3, 16, 16), label=arch, **kwargs)
    assert result.max_abs_diff <= DEFAULT_ATOL
    onnx.checker.check_model(result.path)  # again, independently of export_onnx
    return result


@pytest.mark.parametrize("op", OPS)
def test_every_nb201_op_exports_and_matches_torch(op, tmp_path):
    space = get_space("nb201", C=4, N=1)
    _check(space, _uniform_nb201(op), tmp_path)


def _mobilenet_options():
    space = get_space("mobilenet", **TINY_MOBILENET)
    for field, values in space._choices.items():
        for value in values:
            yield field, value
    for activation in ("relu", "relu6", "hswish"):
        yield "activation", activation


@pytest.mark.parametrize(("field", "value"), list(_mobilenet_options()))
def test_every_mobilenet_stage_option_exports_and_matches_torch(field, value, tmp_path):
    options = dict(TINY_MOBILENET)
    if field == "activation":
        options["stage_activations"] = (value, value)
        stage = {"d": 1, "k": 3, "e": 3, "w": 1.0, "se": 1}
    else:
        stage = {"d": 1, "k": 3, "e": 3, "w": 1.0, "se": 0, field: value}
    space = get_space("mobilenet", **options)
    text = "-".join(f"{f}{stage[f]}" for f in ("d", "k", "e", "w", "se"))
    _check(space, space.validate(f"{text}|{text}"), tmp_path)


def test_dynamic_batch_runs_any_batch_and_static_is_single_file(tmp_path):
    space = get_space("nb201", C=4, N=1)
    arch = _uniform_nb201("nor_conv_3x3")
    result = _check(space, arch, tmp_path, dynamic_batch=True, batch=2)
    session = ort.InferenceSession(result.path, providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": np.zeros((5, 3, 16, 16), np.float32)})[0]
    assert out.shape == (5, 10)
    assert not (tmp_path / "m.onnx.data").exists()
    assert result.exporter == "torchscript" and result.opset == 17


def test_external_data_is_written_next_to_the_model(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 10))
    result = export_onnx(model, tmp_path / "big.onnx", input_shape=(3, 8, 8), external_data=True)
    assert (tmp_path / "big.onnx.data").stat().st_size > 40_000
    assert result.size_bytes > (tmp_path / "big.onnx").stat().st_size
    assert result.max_abs_diff <= DEFAULT_ATOL


class _Spectral(nn.Module):
    """Uses an FFT, which the TorchScript ONNX exporter rejects."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft(x).abs().mean(dim=(1, 2, 3)).unsqueeze(1)


def test_unexportable_op_raises_one_clear_error(tmp_path):
    with pytest.raises(ExportError) as info:
        export_onnx(_Spectral(), tmp_path / "bad.onnx", label="nb201 architecture |fft~0|")
    message = str(info.value)
    assert "nb201 architecture |fft~0|" in message
    assert "aten::fft_rfft" in message


class _CallCounter(nn.Module):
    """Its output depends on Python state the tracer bakes in as a constant."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x.flatten(1)[:, :10] * float(self.calls)


def test_numeric_mismatch_against_torch_is_caught(tmp_path):
    with pytest.raises(ExportError, match="does not match torch"):
        export_onnx(_CallCounter(), tmp_path / "drift.onnx", label="drifting model")


def test_model_state_is_restored_after_export(tmp_path):
    model = get_space("nb201", C=4, N=1).build(_uniform_nb201("nor_conv_1x1"))
    model.train()
    export_onnx(model, tmp_path / "m.onnx")
    assert model.training


@pytest.mark.skipif(importlib.util.find_spec("onnxscript") is not None, reason="onnxscript here")
def test_dynamo_exporter_without_onnxscript_names_the_missing_module(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 10))
    with pytest.raises(ExportError, match="onnxscript"):
        export_onnx(model, tmp_path / "d.onnx", input_shape=(3, 2, 2), dynamo=True)


def test_large_logits_are_judged_relative_to_their_scale(tmp_path):
    """A random NB201 net without convolutions on most edges outputs logits of ~1e5; float32
    leaves ~1e-7 of that scale as error on small elements, which is a faithful export."""
    space = get_space("nb201", C=16, N=5)
    arch = (
        "|skip_connect~0|+|avg_pool_3x3~0|avg_pool_3x3~1|"
        "+|nor_conv_1x1~0|skip_connect~1|avg_pool_3x3~2|"
    )
    torch.manual_seed(0)
    model = space.build(arch)
    result = export_onnx(model, tmp_path / "big.onnx", label=arch)
    assert result.max_abs_diff < 1.0
