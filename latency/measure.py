"""``measure_architecture``: build, export, time (in a torch-free worker), cache.

ONNX backends: the module is exported here (legacy exporter, checked against torch), then timed
in a ``python -m hwnas.latency.worker`` child that never imports torch (DESIGN.md: ORT figures are
steadiest away from torch's thread pools), with a fresh session per measurement. Torch
backends time the module in-process. A trial calls this once, after its training step, never
inside a timed training loop. torch and the spaces are imported lazily so the worker, which
imports this package, stays torch-free.
"""

from __future__ import annotations

import copy
import importlib.metadata
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hwnas.latency.backends import Backend
from hwnas.latency.cache import LatencyCache, cache_key
from hwnas.latency.device import cpu_model
from hwnas.latency.errors import BackendUnavailableError
from hwnas.latency.result import LatencyResult
from hwnas.latency.target import MeasurementTarget
from hwnas.latency.timing import TimingConfig, TimingStats, time_callable

if TYPE_CHECKING:
    from torch import nn

    from hwnas.latency.worker import OnnxWorker
    from hwnas.spaces.base import SearchSpace


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def target_fields(
    space: SearchSpace, arch: str, target: MeasurementTarget, backend: Backend
) -> dict[str, Any]:
    """Everything that changes a figure: the cache key's contents. ``arch`` is validated and
    ``backend`` is ``target.create_backend()`` (it resolves the precision and the clock).

    The layout is the one caches were written with; a test holds it to the old recipe, since
    any change would orphan every existing cache."""
    name = target.backend
    libs = {"torch": _version("torch")} if backend.artefact == "torch" else {}
    if backend.artefact == "onnx":
        libs.update({"onnxruntime": _version("onnxruntime")})
        libs.update({"onnxruntime-gpu": _version("onnxruntime-gpu")})
        if name.startswith("trt-"):
            libs["tensorrt"] = backend.versions()["tensorrt"]
    if backend.device_kind == "cpu":
        device = f"cpu:{cpu_model()}:t{target.threads}"
    else:
        device = _gpu_key(backend.options.device_index)
    fields: dict[str, Any] = {
        "space": space.name,
        "space_options": space.space_options(),
        "canonical_key": space.canonical_key(arch),
        "backend": name,
        "precision": backend.options.precision,
        "batch": target.batch,
        "input_shape": list(target.input_shape),
        "num_classes": target.num_classes,
        "device": device,
        "versions": libs,
        "clock": backend.clock(),
    }
    if backend.artefact == "torch":
        fields.update(compile=target.compile, cuda_graph=target.cuda_graph)
    if target.reference:
        fields["reference"] = True
    if backend.needs_calibration():
        from hwnas.latency.backends.onnx_precision import INT8_RECIPE

        fields["quantization"] = INT8_RECIPE
    return fields


def _gpu_key(index: int) -> str:
    """``gpu:<name>:sm<cc>`` of CUDA device ``index``; a GPU that cannot be named raises
    rather than share a key with every other unnamed GPU."""
    from hwnas.latency.device import gpu_identity, gpu_key

    identity = gpu_identity(index)
    if "error" in identity:
        raise BackendUnavailableError(
            f"{identity['error']}; install nvidia-ml-py or cuda-bindings so GPU figures are "
            "cached per GPU model"
        )
    return gpu_key(identity)


def _check_calibration(calibration: np.ndarray | None, target: MeasurementTarget) -> np.ndarray:
    """``calibration`` as float32 ``(N, *input_shape)``, or one error saying what is wrong."""
    if calibration is None:
        raise BackendUnavailableError(
            f"backend {target.backend!r} needs calibration images: pass "
            "measure_architecture(..., calibration=images of shape (N, "
            + ", ".join(map(str, target.input_shape))
            + ")); a trial passes its validation images. Without them TensorRT would build "
            "an engine that is not int8"
        )
    images = np.asarray(calibration, dtype=np.float32)
    if images.ndim != 4 or images.shape[1:] != tuple(target.input_shape) or not len(images):
        raise ValueError(
            f"calibration images have shape {tuple(images.shape)}; backend {target.backend!r} "
            f"needs (N, {', '.join(map(str, target.input_shape))}) with N >= 1"
        )
    return images


def build_model(space: SearchSpace, arch: str, num_classes: int, input_shape: tuple[int, ...]):
    """Build ``arch`` without disturbing the caller's global torch RNG (a trial's seed)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return space.build(arch, num_classes=num_classes, input_shape=tuple(input_shape))


def cached_latency(
    space: SearchSpace, arch: str, target: MeasurementTarget, *, cache_path: str | Path
) -> LatencyResult | None:
    """The cached figure for ``arch`` on ``target``, or ``None``; never measures (for the
    searcher's pre-filter, which must not spend compute on candidates)."""
    if not Path(cache_path).exists():
        return None
    arch = space.validate(arch)
    try:
        fields = target_fields(space, arch, target, target.create_backend())
    except BackendUnavailableError:  # e.g. no GPU here to name: nothing cached can match
        return None
    with LatencyCache(cache_path) as cache:
        hit = cache.get(cache_key(fields))
    return LatencyResult.from_dict(hit, cached=True) if hit is not None else None


def measure_architecture(
    space: SearchSpace,
    arch: str,
    target: MeasurementTarget,
    *,
    cache_path: str | Path | None = None,
    engine_cache_dir: str | None = None,
    model: nn.Module | None = None,
    timing: TimingConfig | None = None,
    worker: OnnxWorker | None = None,
    isolate: bool = True,
    calibration: np.ndarray | None = None,
) -> LatencyResult:
    """Measure ``arch`` on ``target``; reuse the cached figure in ``cache_path`` if any.

    ``engine_cache_dir`` keeps TensorRT engines and timing caches between calls.
    ``model`` measures an already built module (e.g. the trained one) instead of a fresh build.
    ``timing`` is the protocol (``TimingConfig()`` by default).
    ``worker`` reuses a running ``OnnxWorker`` (profiling many architectures); ``isolate=False``
    times ONNX backends in this process (only for processes that do no torch compute).
    ``calibration``: images ``(N, C, H, W)``, preprocessed as the model sees them, for the
    int8 backends' quantisation scales (a trial passes its validation images); ``trt-int8``
    refuses to run without them.
    """
    start = time.perf_counter()
    arch = space.validate(arch)
    backend = target.create_backend(engine_cache_dir)
    if backend.device_kind == "gpu":
        backend.check_available()  # a missing runtime is named before the GPU is looked up
    if backend.needs_calibration():
        calibration = _check_calibration(calibration, target)
    fields = target_fields(space, arch, target, backend)
    key = cache_key(fields)
    cache = LatencyCache(cache_path) if cache_path is not None else None
    try:
        if cache is not None:
            hit = cache.get(key)
            if hit is not None:
                return LatencyResult.from_dict(hit, cached=True)
        backend.check_available()  # fail before spending time on export
        build_start = time.perf_counter()
        if model is None:
            model = build_model(space, arch, target.num_classes, target.input_shape)
        build_s = time.perf_counter() - build_start
        common = {
            "space": space.name,
            "arch": arch,
            "canonical_key": fields["canonical_key"],
            "backend": target.backend,
            "precision": backend.options.precision,
            "batch": target.batch,
            "input_shape": target.input_shape,
            "threads": target.threads,
        }
        if backend.artefact == "torch":
            result = _measure_torch(backend, target, model, common, timing, start)
        else:
            result = _measure_onnx(
                backend, target, model, common, timing, worker, isolate, start, calibration
            )
        result.info["build_s"] = build_s
        if cache is not None:
            cache.put(key, fields, result.to_dict())
        return result
    finally:
        if cache is not None:
            cache.close()


def _measure_torch(
    backend: Backend,
    target: MeasurementTarget,
    model: nn.Module,
    common: dict[str, Any],
    timing: TimingConfig | None,
    start: float,
) -> LatencyResult:
    """Time ``model`` in this process (torch backends)."""
    from hwnas.latency.device import device_facts

    loaded = backend.load(model, batch=target.batch, input_shape=target.input_shape)
    try:
        stats = time_callable(loaded.run, timing)
    finally:
        loaded.close()
    facts = device_facts(
        backend.device_kind, threads=target.threads, index=backend.options.device_index
    )
    return LatencyResult(
        **common,
        stats=stats,
        device=facts,
        versions=backend.versions(),
        overhead_s=time.perf_counter() - start,
        info=loaded.info,
    )


def _measure_onnx(
    backend: Backend,
    target: MeasurementTarget,
    model: nn.Module,
    common: dict[str, Any],
    timing: TimingConfig | None,
    worker: OnnxWorker | None,
    isolate: bool,
    start: float,
    calibration: np.ndarray | None = None,
) -> LatencyResult:
    """Export ``model`` and time the ONNX file in the torch-free worker (or here)."""
    from hwnas.latency.export import export_onnx
    from hwnas.latency.worker import OnnxWorker, handle

    label = f"{common['space']} architecture {common['arch']}"
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper -> the module it wraps
    if any(p.device.type != "cpu" for p in model.parameters()):
        model = copy.deepcopy(model).cpu()  # leave the caller's (GPU) model where it is
    with tempfile.TemporaryDirectory(prefix="hwnas-latency-") as tmp:
        exported = export_onnx(
            model,
            Path(tmp) / "model.onnx",
            input_shape=target.input_shape,
            batch=target.batch,
            label=label,
        )
        request = {
            "onnx_path": exported.path,
            "backend": target.backend,
            "batch": target.batch,
            "input_shape": list(target.input_shape),
            "options": {
                "threads": backend.options.threads,
                "precision": backend.options.precision,
                "device_index": backend.options.device_index,
                "cache_dir": backend.options.cache_dir,
                "clock": backend.options.clock,
            },
            "timing": (timing or TimingConfig()).to_dict(),
        }
        if calibration is not None:
            calibration_path = Path(tmp) / "calibration.npy"
            np.save(calibration_path, calibration, allow_pickle=False)
            request["options"]["extra"] = {"calibration_path": str(calibration_path)}
        if target.reference:
            from hwnas.latency.reference import reference_model

            ref = reference_model(target.input_shape, target.num_classes)
            request["reference_onnx_path"] = export_onnx(
                ref,
                Path(tmp) / "reference.onnx",
                input_shape=target.input_shape,
                batch=target.batch,
                label="the reference network",
            ).path
        if not isolate:
            reply = handle(request)
            if not reply["ok"]:
                from hwnas.latency.errors import BackendUnavailableError, MeasurementError

                kind = reply["kind"]
                raise (BackendUnavailableError if kind == "unavailable" else MeasurementError)(
                    reply["message"]
                )
        elif worker is not None:
            reply = worker.measure(request)
        else:
            with OnnxWorker() as one_shot:
                reply = one_shot.measure(request)
    export = exported.to_dict()
    export.pop("path")
    return LatencyResult(
        **common,
        stats=TimingStats.from_dict(reply["stats"]),
        device=reply["device"],
        versions=reply["versions"],
        export=export,
        overhead_s=time.perf_counter() - start,
        info={
            **reply["info"],
            "load_s": reply["load_s"],
            "timing_s": reply["timing_s"],
            "worker_cpu_s": reply["cpu_s"],
            **({"reference": reply["reference"]} if reply.get("reference") else {}),
        },
    )
