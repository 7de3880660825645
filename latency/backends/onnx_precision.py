"""ONNX files whose tensor types ARE the precision: float16 weights, or int8 Q/DQ nodes.

TensorRT 11 builds strongly typed networks only: precision comes from the ONNX's types, not
from builder flags (``BuilderFlag.FP16``/``INT8`` and the INT8 calibrator are gone; NVIDIA's
10.x-to-11.x migration guide names FP16 ONNX models and Q/DQ nodes as their replacements).
Both conversions use what ``onnxruntime`` (``onnxruntime-gpu``) ships, so no extra package:

* ``convert_fp16``: ``onnxruntime.transformers.float16.convert_float_to_float16`` (ORT's copy
  of onnxconverter-common's float16 converter) with fp32 inputs and outputs kept, so callers
  feed the same fp32 arrays.
* ``quantize_int8``: ``onnxruntime.quantization.quant_pre_process``, then ``quantize_static`` in
  QDQ format with symmetric
  int8 activations and weights (TensorRT quantises symmetrically: zero points must be 0), per
  output channel for weights, biases left in float (TensorRT's quantized types are INT8, FP8,
  INT4 and FP4, not INT32), scales from calibration images by min/max.

Each checks its output (fp16 weights present; Q/DQ nodes present with zero points 0), because
a silently unconverted model would build an fp32 engine and report it under another name.
"""

from __future__ import annotations

import inspect
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.latency.errors import BackendUnavailableError, MeasurementError

#: Recipes, part of the engine cache key: change one when its conversion changes.
FP16_RECIPE = "ort-float16-keep-io"
INT8_RECIPE = "ort-qdq-minmax-symmetric-perchannel-convgemm"
#: Operators given Q/DQ inputs: the ones TensorRT runs as INT8 kernels in these networks.
INT8_OPS = ("Conv", "Gemm", "MatMul")


def _onnx() -> Any:
    import onnx

    return onnx


def initializer_types(model: Any) -> dict[str, int]:
    """How many initializers of each ONNX element type (``FLOAT``, ``FLOAT16``, ``INT8``...)."""
    onnx = _onnx()
    return dict(
        Counter(onnx.TensorProto.DataType.Name(t.data_type) for t in model.graph.initializer)
    )


def convert_fp16(src: str | Path, dst: str | Path) -> dict[str, Any]:
    """Write ``src`` with float16 weights and arithmetic to ``dst``; fp32 I/O is kept."""
    onnx = _onnx()
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as exc:
        raise BackendUnavailableError(
            "trt-fp16 converts the ONNX to float16 with onnxruntime's converter "
            f"(onnxruntime.transformers.float16), which could not be imported: {exc}; "
            "install onnxruntime-gpu"
        ) from exc
    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    types = initializer_types(model)
    if not types.get("FLOAT16"):
        raise MeasurementError(
            f"float16 conversion of {src} produced no float16 weights ({types}); an engine "
            "built from it would run in fp32, so it is not reported as trt-fp16"
        )
    onnx.save(model, str(dst))
    return {"recipe": FP16_RECIPE, "initializers": types}


def _calibration_reader(input_name: str, images: np.ndarray, batch: int) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    if len(images) < batch:  # the exported batch is fixed: repeat images to fill one
        images = np.resize(images, (batch, *images.shape[1:]))
    feeds = [
        {input_name: np.ascontiguousarray(images[i : i + batch], dtype=np.float32)}
        for i in range(0, len(images) - batch + 1, batch)
    ]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    return Reader()


def quantize_int8(src: str | Path, dst: str | Path, calibration: np.ndarray) -> dict[str, Any]:
    """Write ``src`` as a Q/DQ int8 ONNX to ``dst``, scales from ``calibration`` images
    (``(N, C, H, W)`` float32, preprocessed as the model sees them)."""
    onnx = _onnx()
    try:
        from onnxruntime import quantization as q
    except ImportError as exc:
        raise BackendUnavailableError(
            "trt-int8 quantises the ONNX with onnxruntime.quantization, which could not be "
            f"imported: {exc}; install onnxruntime-gpu"
        ) from exc
    model = onnx.load(str(src))
    graph_input = model.graph.input[0]
    dims = graph_input.type.tensor_type.shape.dim
    batch = dims[0].dim_value if dims and dims[0].dim_value > 0 else 1
    images = np.asarray(calibration, dtype=np.float32)
    expected = tuple(d.dim_value for d in dims[1:])
    if images.ndim != len(dims) or tuple(images.shape[1:]) != expected or len(images) == 0:
        raise ValueError(
            f"calibration images have shape {images.shape}; {src} takes (N, "
            + ", ".join(map(str, expected))
            + ")"
        )
    # ORT's recommended pre-processing (shape inference, basic graph optimisation): it folds
    # the exporter's Identity-wrapped weights and biases into initializers the quantiser sees.
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = Path(dst).with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(prepared))
    kwargs: dict[str, Any] = {}
    if "calibration_providers" in inspect.signature(q.quantize_static).parameters:
        kwargs["calibration_providers"] = ["CPUExecutionProvider"]  # calibrate off the GPU
    q.quantize_static(
        str(prepared),
        str(dst),
        _calibration_reader(graph_input.name, images, batch),
        quant_format=q.QuantFormat.QDQ,
        op_types_to_quantize=list(INT8_OPS),
        per_channel=True,
        activation_type=q.QuantType.QInt8,
        weight_type=q.QuantType.QInt8,
        calibrate_method=q.CalibrationMethod.MinMax,
        extra_options={
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "QuantizeBias": False,
        },
        **kwargs,
    )
    prepared.unlink(missing_ok=True)
    out = onnx.load(str(dst))
    ops = Counter(node.op_type for node in out.graph.node)
    nonzero = nonzero_zero_points(out)
    if not ops.get("QuantizeLinear") or not ops.get("DequantizeLinear"):
        raise MeasurementError(
            f"int8 quantisation of {src} inserted no Q/DQ nodes (no {'/'.join(INT8_OPS)} to "
            "quantise?); an engine built from it would not run in int8"
        )
    if nonzero:
        raise MeasurementError(
            f"int8 quantisation of {src} left non-zero zero points ({', '.join(nonzero[:3])}); "
            "TensorRT supports symmetric quantisation only"
        )
    return {
        "recipe": INT8_RECIPE,
        "calibration_images": len(images),
        "quantize_nodes": ops["QuantizeLinear"],
        "dequantize_nodes": ops["DequantizeLinear"],
    }


def nonzero_zero_points(model: Any) -> list[str]:
    """Names of Q/DQ zero-point initializers that hold anything but 0."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    bad = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zero_point = inits.get(node.input[2])
            if zero_point is not None and np.any(numpy_helper.to_array(zero_point) != 0):
                bad.append(zero_point.name)
    return bad
