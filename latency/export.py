"""torch -> ONNX export with a structural check (``onnx.checker``) and a numeric check in ORT.

The legacy TorchScript exporter (``dynamo=False``) is the default: ~0.2 s per small candidate
against ~1.8 s for the dynamo exporter, with the same numerics (DESIGN.md). The model is written
as one self-contained file unless ``external_data=True`` (a model over protobuf's 2 GiB limit
needs ``external_data=True``; turning an external-data export into one file above it is an error).
"""

from __future__ import annotations

import contextlib
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from hwnas.latency.errors import ExportError

#: Opset 17 is supported by every onnxruntime >= 1.13 and TensorRT 10, and by both exporters.
DEFAULT_OPSET = 17
#: Allowed max |ORT - torch| on the same input: ``atol + rtol * max|torch output|``. Relative
#: to the output's scale, not per element: randomly initialised nets (BN at its initial
#: statistics) can output logits of 1e5, where float32 cancellation leaves errors of ~1e-7 of
#: the scale on the small elements (measured: 0.043 on an element of 0.8, scale 2.7e5).
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
_PROTOBUF_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class ExportResult:
    """Where the ONNX file is and how faithful it is to the torch module."""

    path: str
    opset: int
    exporter: str
    batch: int
    dynamic_batch: bool
    external_data: bool
    max_abs_diff: float
    atol: float
    rtol: float
    export_s: float
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _failed_op(message: str) -> str | None:
    """The operator named in an exporter error message, if any (e.g. ``aten::fft_rfft``)."""
    match = re.search(r"(aten::\w+|prim::\w+|onnx::\w+)", message)
    return match.group(1) if match else None


def _export_error(label: str, exc: BaseException) -> ExportError:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    op = _failed_op(str(exc))
    where = f" (operator {op})" if op else ""
    return ExportError(f"could not export {label} to ONNX{where}: {type(exc).__name__}: {message}")


@contextlib.contextmanager
def _single_torch_thread() -> Iterator[None]:
    """Run torch on one thread, then restore the caller's setting.

    Export traces tiny batch-1 graphs: a second intra-op thread gains nothing, and on a loaded
    machine its spin-waiting cost ~6x the CPU time (measured: export 2.0 s vs 0.33 s CPU).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _run_export(model, example, path, *, opset, dynamic_batch, dynamo, external_data) -> None:
    kwargs: dict[str, Any] = {
        "input_names": [INPUT_NAME],
        "output_names": [OUTPUT_NAME],
        "opset_version": opset,
    }
    if dynamo:
        if dynamic_batch:
            kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
        torch.onnx.export(
            model, (example,), str(path), dynamo=True, external_data=external_data, **kwargs
        )
        return
    if dynamic_batch:
        kwargs["dynamic_axes"] = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in torch 2.9+; we choose it knowingly (speed).
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        torch.onnx.export(model, (example,), str(path), dynamo=False, **kwargs)


def _settle_external_data(path: Path, external_data: bool) -> None:
    """Make the file single or external-data form as requested, whatever the exporter did."""
    proto = onnx.load(str(path), load_external_data=True)
    has_external = any(
        init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer
    )
    if external_data:
        onnx.save_model(
            proto,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=path.name + ".data",
            size_threshold=1024,
        )
    elif has_external:
        if proto.ByteSize() > _PROTOBUF_LIMIT:
            raise ExportError(
                f"{path} exceeds protobuf's 2 GiB limit; export with external_data=True"
            )
        onnx.save_model(proto, str(path))
        stale = path.with_name(path.name + ".data")
        if stale.exists():
            stale.unlink()


def _ort_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    from hwnas.latency.ort_runtime import import_onnxruntime

    ort = import_onnxruntime()

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    input_shape: tuple[int, ...] = (3, 32, 32),
    batch: int = 1,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    dynamo: bool = False,
    external_data: bool = False,
    check: bool = True,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    label: str = "model",
    seed: int = 0,
) -> ExportResult:
    """Export ``model`` (eval mode, CPU, fp32) to ``path``; check it and compare with torch.

    ``label`` names the architecture in error messages. Raises ``ExportError`` when the exporter
    rejects an operator, ``onnx.checker`` rejects the graph, or the outputs differ by more than
    ``atol + rtol * max|torch output|``.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model = model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if device.type != "cpu":
        raise ExportError(f"export {label}: move the model to the CPU first (it is on {device})")
    generator = torch.Generator().manual_seed(seed)
    example = torch.randn((batch, *input_shape), generator=generator)
    start = time.perf_counter()
    try:
        with torch.no_grad(), _single_torch_thread():
            _run_export(
                model,
                example,
                path,
                opset=opset,
                dynamic_batch=dynamic_batch,
                dynamo=dynamo,
                external_data=external_data,
            )
        if external_data or path.with_name(path.name + ".data").exists():
            _settle_external_data(path, external_data)
    except ExportError:
        raise
    except ModuleNotFoundError as exc:
        raise ExportError(
            f"could not export {label} with the dynamo exporter: module {exc.name!r} is missing "
            "(pip install onnxscript, or use dynamo=False)"
        ) from exc
    except Exception as exc:
        raise _export_error(label, exc) from exc
    finally:
        model.train(was_training)
    export_s = time.perf_counter() - start
    max_abs_diff = float("nan")
    if check:
        try:
            onnx.checker.check_model(str(path), full_check=True)
        except Exception as exc:
            raise ExportError(f"onnx.checker rejected the export of {label}: {exc}") from exc
        model.eval()
        try:
            with torch.no_grad(), _single_torch_thread():
                expected = model(example).numpy()
        finally:
            model.train(was_training)
        actual = _ort_outputs(path, example.numpy())
        if actual.shape != expected.shape:
            raise ExportError(
                f"export of {label}: ONNX output shape {actual.shape} != torch {expected.shape}"
            )
        diff = np.abs(actual - expected)
        max_abs_diff = float(diff.max()) if diff.size else 0.0
        scale = float(np.abs(expected).max()) if expected.size else 0.0
        if not np.isfinite(max_abs_diff) or max_abs_diff > atol + rtol * scale:
            raise ExportError(
                f"export of {label} does not match torch: max abs diff {max_abs_diff:.3g} "
                f"exceeds atol={atol:g} + rtol={rtol:g} * max|out| ({scale:.3g})"
            )
    size = path.stat().st_size
    data_file = path.with_name(path.name + ".data")
    if data_file.exists():
        size += data_file.stat().st_size
    return ExportResult(
        path=str(path),
        opset=opset,
        exporter="dynamo" if dynamo else "torchscript",
        batch=batch,
        dynamic_batch=dynamic_batch,
        external_data=external_data,
        max_abs_diff=max_abs_diff,
        atol=atol,
        rtol=rtol,
        export_s=export_s,
        size_bytes=size,
    )
