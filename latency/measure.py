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

from hwnas.latency.backends import BackendOptions, backend_artefact, get_backend
from hwnas.latency.cache import LatencyCache, cache_key
from hwnas.latency.device import cpu_model
from hwnas.latency.result import LatencyResult
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
    space: SearchSpace,
    arch: str,
    *,
    backend: str,
    precision: str,
    batch: int,
    input_shape: tuple[int, ...],
    num_classes: int,
    threads: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything that changes a figure: the cache key's contents."""
    artefact = backend_artefact(backend)
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
    }


def _gpu_name() -> str:
    from hwnas.latency.device import gpu_facts

    facts = gpu_facts()
    return f"{facts.get('name', 'unknown')}:{facts.get('driver', 'unknown')}"


def resolve_space(space: SearchSpace | str, space_options: dict[str, Any] | None) -> SearchSpace:
    """A ``SearchSpace`` from an instance or a registered name plus options."""
    if isinstance(space, str):
        from hwnas.spaces import get_space

        return get_space(space, **(space_options or {}))
    return space


def build_model(space: SearchSpace, arch: str, num_classes: int, input_shape: tuple[int, ...]):
    """Build ``arch`` without disturbing the caller's global torch RNG (a trial's seed)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return space.build(arch, num_classes=num_classes, input_shape=tuple(input_shape))


def _target(
    space: SearchSpace | str,
    arch: str,
    *,
    space_options: dict[str, Any] | None,
    backend: str,
    batch: int,
    input_shape: tuple[int, ...],
    num_classes: int,
    threads: int,
    precision: str | None,
    compile: bool = False,
    cuda_graph: bool = False,
    engine_cache_dir: str | None = None,
    clock: str = "auto",
) -> tuple[SearchSpace, str, Any, dict[str, Any]]:
    """(space, normalised arch, configured backend, cache-key fields) for one target."""
    space = resolve_space(space, space_options)
    arch = space.validate(arch)
    input_shape = tuple(int(d) for d in input_shape)
    options = BackendOptions(
        threads=threads,
        compile=compile,
        cuda_graph=cuda_graph,
        cache_dir=engine_cache_dir,
        clock=clock,
    )
    if precision is not None:
        options.precision = precision
    target = get_backend(backend, options)
    extra: dict[str, Any] = {"clock": target.clock()}
    if target.artefact == "torch":
        extra.update(compile=compile, cuda_graph=cuda_graph)
    fields = target_fields(
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
    return space, arch, target, fields


def cached_latency(
    space: SearchSpace | str,
    arch: str,
    *,
    cache_path: str | Path,
    backend: str = "ort-cpu",
    batch: int = 1,
    input_shape: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
    threads: int = 1,
    precision: str | None = None,
    space_options: dict[str, Any] | None = None,
    clock: str = "auto",
) -> LatencyResult | None:
    """The cached figure for this target, or ``None``; never measures (for the searcher's
    pre-filter, which must not spend compute on candidates)."""
    if not Path(cache_path).exists():
        return None
    _, _, _, fields = _target(
        space,
        arch,
        space_options=space_options,
        backend=backend,
        batch=batch,
        input_shape=input_shape,
        num_classes=num_classes,
        threads=threads,
        precision=precision,
        clock=clock,
    )
    with LatencyCache(cache_path) as cache:
        hit = cache.get(cache_key(fields))
    return LatencyResult.from_dict(hit, cached=True) if hit is not None else None


def measure_architecture(
    space: SearchSpace | str,
    arch: str,
    *,
    backend: str = "ort-cpu",
    batch: int = 1,
    input_shape: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
    threads: int = 1,
    cache_path: str | Path | None = None,
    precision: str | None = None,
    space_options: dict[str, Any] | None = None,
    model: nn.Module | None = None,
    timing: TimingConfig | None = None,
    compile: bool = False,
    cuda_graph: bool = False,
    engine_cache_dir: str | None = None,
    clock: str = "auto",
    reference: bool = False,
    worker: OnnxWorker | None = None,
    isolate: bool = True,
) -> LatencyResult:
    """Measure ``arch`` on ``backend``; reuse a cached figure for the same target if any.

    ``space`` is a ``SearchSpace`` or a registered name (then ``space_options`` apply).
    ``model`` measures an already built module (e.g. the trained one) instead of a fresh build.
    ``clock``: CPU backends time with the thread's CPU time on one thread (``auto``), see
    ``Backend.clock``; ``"wall"`` forces the host clock.
    ``reference=True`` (ONNX backends) times the candidate alternately with a fixed reference
    network and adds ``latency_ref_ratio`` (candidate / reference): the figure to rank by on a
    machine whose load drifts.
    ``worker`` reuses a running ``OnnxWorker`` (profiling many architectures); ``isolate=False``
    times ONNX backends in this process (only for processes that do no torch compute).
    """
    start = time.perf_counter()
    space, arch, target, fields = _target(
        space,
        arch,
        space_options=space_options,
        backend=backend,
        batch=batch,
        input_shape=input_shape,
        num_classes=num_classes,
        threads=threads,
        precision=precision,
        compile=compile,
        cuda_graph=cuda_graph,
        engine_cache_dir=engine_cache_dir,
        clock=clock,
    )
    input_shape = tuple(fields["input_shape"])
    precision = target.options.precision
    if reference:
        if target.artefact != "onnx":
            raise ValueError(f"reference=True needs an ONNX backend, not {backend!r}")
        fields["reference"] = True
    key = cache_key(fields)
    cache = LatencyCache(cache_path) if cache_path is not None else None
    try:
        if cache is not None:
            hit = cache.get(key)
            if hit is not None:
                return LatencyResult.from_dict(hit, cached=True)
        target.check_available()  # fail before spending time on export
        build_start = time.perf_counter()
        if model is None:
            model = build_model(space, arch, num_classes, input_shape)
        build_s = time.perf_counter() - build_start
        common = {
            "space": space.name,
            "arch": arch,
            "canonical_key": fields["canonical_key"],
            "backend": backend,
            "precision": precision,
            "batch": batch,
            "input_shape": input_shape,
            "threads": threads,
        }
        if target.artefact == "torch":
            result = _measure_torch(target, model, common, timing, start)
        else:
            result = _measure_onnx(
                target, model, common, timing, worker, isolate, start, reference, num_classes
            )
        result.info["build_s"] = build_s
        if cache is not None:
            cache.put(key, fields, result.to_dict())
        return result
    finally:
        if cache is not None:
            cache.close()


def _measure_torch(target, model, common, timing, start) -> LatencyResult:
    from hwnas.latency.device import device_facts

    loaded = target.load(model, batch=common["batch"], input_shape=common["input_shape"])
    try:
        stats = time_callable(loaded.run, timing)
    finally:
        loaded.close()
    facts = device_facts(
        target.device_kind, threads=common["threads"], index=target.options.device_index
    )
    return LatencyResult(
        **common,
        stats=stats,
        device=facts,
        versions=target.versions(),
        overhead_s=time.perf_counter() - start,
        info=loaded.info,
    )


def _measure_onnx(
    target, model, common, timing, worker, isolate, start, reference=False, num_classes=10
) -> LatencyResult:
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
            input_shape=common["input_shape"],
            batch=common["batch"],
            label=label,
        )
        request = {
            "onnx_path": exported.path,
            "backend": common["backend"],
            "batch": common["batch"],
            "input_shape": list(common["input_shape"]),
            "options": {
                "threads": target.options.threads,
                "precision": target.options.precision,
                "device_index": target.options.device_index,
                "cache_dir": target.options.cache_dir,
                "clock": target.options.clock,
            },
            "timing": (timing or TimingConfig()).to_dict(),
        }
        if reference:
            from hwnas.latency.reference import reference_model

            ref = reference_model(common["input_shape"], num_classes)
            request["reference_onnx_path"] = export_onnx(
                ref,
                Path(tmp) / "reference.onnx",
                input_shape=common["input_shape"],
                batch=common["batch"],
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
