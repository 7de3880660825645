"""ONNX Runtime backends: CPU, CUDA execution provider and TensorRT execution provider.

``onnxruntime`` and ``onnxruntime-gpu`` install the same module and break each other, and the
GPU build silently falls back to the CPU provider when CUDA is missing. So GPU backends check
the installed distributions and the providers the session actually uses, and refuse to report
a CPU figure as a GPU one. A registered provider still need not run every node: ORT places
the nodes it cannot run on the next provider (CUDA, then CPU) without an error. Each session
records where its nodes run (``node_placement``), and the result says ``placement: partial``
with the count of nodes off the wanted provider.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.latency.backends import BACKENDS
from hwnas.latency.backends.base import Backend, Loaded
from hwnas.latency.errors import BackendUnavailableError, MeasurementError
from hwnas.latency.ort_runtime import import_onnxruntime

_ORT_DISTS = ("onnxruntime", "onnxruntime-gpu")
#: Session config entry that makes ``get_provider_graph_assignment_info`` answer (added by
#: microsoft/onnxruntime#26781; an unknown entry is ignored by older releases).
PLACEMENT_ENTRY = "session.record_ep_graph_assignment_info"


def installed_ort_distributions() -> list[str]:
    """Which ONNX Runtime distributions are installed (more than one is a broken install)."""
    found = []
    for dist in _ORT_DISTS:
        try:
            importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.append(dist)
    return found


def _import_ort() -> Any:
    try:
        onnxruntime = import_onnxruntime()  # with its telemetry off
    except ImportError as exc:
        raise BackendUnavailableError(
            "ONNX Runtime is not installed: pip install 'hwnas[cpu]' (onnxruntime) or "
            "'hwnas[gpu]' (onnxruntime-gpu), not both"
        ) from exc
    return onnxruntime


def node_placement(session: Any, wanted: str) -> dict[str, Any]:
    """Where the session's nodes run: ``placement`` ``full`` (every node on ``wanted``),
    ``partial`` or ``unknown``, node counts per provider, and the CPU / off-target counts.

    ``session.get_providers()`` lists the providers registered, not where nodes run."""
    read = getattr(session, "get_provider_graph_assignment_info", None)
    if read is None:
        version = getattr(_import_ort(), "__version__", "?")
        return {
            "placement": "unknown",
            "placement_note": f"onnxruntime {version} cannot report node placement "
            "(get_provider_graph_assignment_info is newer)",
        }
    try:
        subgraphs = read()
    except Exception as exc:  # e.g. the session was made without PLACEMENT_ENTRY
        return {"placement": "unknown", "placement_note": f"{type(exc).__name__}: {exc}"}
    nodes: dict[str, int] = {}
    for subgraph in subgraphs:
        nodes[subgraph.ep_name] = nodes.get(subgraph.ep_name, 0) + len(subgraph.get_nodes())
    off_target = sum(count for ep, count in nodes.items() if ep != wanted)
    return {
        "placement": "partial" if off_target else "full",
        "nodes_by_provider": nodes,
        "cpu_nodes": nodes.get("CPUExecutionProvider", 0),
        "off_target_nodes": off_target,
    }


def _input_array(batch: int, input_shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.standard_normal((batch, *input_shape), dtype=np.float32)


class _OrtBackend(Backend):
    artefact = "onnx"
    #: Providers requested, in priority order; the first must be the one actually used.
    providers: tuple[str, ...] = ("CPUExecutionProvider",)

    def check_available(self) -> None:
        ort = _import_ort()
        available = ort.get_available_providers()
        wanted = self.providers[0]
        if self.device_kind == "gpu":
            dists = installed_ort_distributions()
            if len(dists) > 1:
                raise BackendUnavailableError(
                    f"backend {self.name!r}: both {' and '.join(dists)} are installed and "
                    "overwrite each other's module; uninstall both, then install only "
                    "onnxruntime-gpu"
                )
        if wanted not in available:
            raise BackendUnavailableError(
                f"backend {self.name!r} needs ONNX Runtime's {wanted}, which this install "
                f"(onnxruntime {ort.__version__}) lacks; available: {', '.join(available)}"
                + (
                    ". Install onnxruntime-gpu (without onnxruntime) on a machine with CUDA"
                    if self.device_kind == "gpu"
                    else ""
                )
            )

    def versions(self) -> dict[str, str]:
        dists = installed_ort_distributions()
        versions = {d: importlib.metadata.version(d) for d in dists}
        return versions or {"onnxruntime": "missing"}

    def session_options(self) -> Any:
        ort = _import_ort()
        options = ort.SessionOptions()
        # ENABLE_ALL adds layout transforms (NCHWc) worth ~2.8x on CPU over EXTENDED.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(self.options.threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        options.add_session_config_entry(PLACEMENT_ENTRY, "1")
        return options

    def provider_list(self) -> list[Any]:
        return list(self.providers)

    def create_session(self, path: Path) -> Any:
        ort = _import_ort()
        try:
            session = ort.InferenceSession(
                str(path), self.session_options(), providers=self.provider_list()
            )
        except Exception as exc:
            raise MeasurementError(
                f"backend {self.name!r} could not load {path}: {type(exc).__name__}: {exc}"
            ) from exc
        used = session.get_providers()
        if not used or used[0] != self.providers[0]:
            raise BackendUnavailableError(
                f"backend {self.name!r} asked for {self.providers[0]} but the session runs on "
                f"{used}; refusing to report that figure as {self.name}"
            )
        return session

    def load(self, artefact: Any, *, batch: int, input_shape: tuple[int, ...]) -> Loaded:
        self.check_available()
        session = self.create_session(Path(artefact))
        feed = {session.get_inputs()[0].name: _input_array(batch, input_shape)}
        run = session.run
        once = self.timed(lambda: run(None, feed))
        info = {"providers": session.get_providers(), "clock": self.clock()}
        return Loaded(run=once, info={**info, **node_placement(session, self.providers[0])})


@BACKENDS.register("ort-cpu")
class OrtCpuBackend(_OrtBackend):
    """ONNX Runtime on the CPU, ``intra_op_num_threads`` from ``options.threads`` (default 1)."""

    name = "ort-cpu"
    device_kind = "cpu"
    providers = ("CPUExecutionProvider",)


@BACKENDS.register("ort-cuda")
class OrtCudaBackend(_OrtBackend):
    """ONNX Runtime's CUDA provider with IO binding, so host copies stay out of the figure."""

    name = "ort-cuda"
    device_kind = "gpu"
    gpu_clock = "wall"  # host clock around run + synchronize (IO binding keeps copies out)
    providers = ("CUDAExecutionProvider",)

    def provider_list(self) -> list[Any]:
        return [("CUDAExecutionProvider", {"device_id": self.options.device_index})]

    def load(self, artefact: Any, *, batch: int, input_shape: tuple[int, ...]) -> Loaded:
        self.check_available()
        ort = _import_ort()
        session = self.create_session(Path(artefact))
        device = ("cuda", self.options.device_index)
        x = ort.OrtValue.ortvalue_from_numpy(_input_array(batch, input_shape), *device)
        binding = session.io_binding()
        binding.bind_ortvalue_input(session.get_inputs()[0].name, x)
        for output in session.get_outputs():
            binding.bind_output(output.name, *device)

        def once() -> None:
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()

        info = {"providers": session.get_providers(), "clock": "wall"}
        return Loaded(run=once, info={**info, **node_placement(session, self.providers[0])})


@BACKENDS.register("ort-trt")
class OrtTensorrtBackend(OrtCudaBackend):
    """ONNX Runtime's TensorRT provider (engine and timing caches kept in ``cache_dir``)."""

    name = "ort-trt"
    providers = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    precisions = ("fp32", "fp16")

    def provider_list(self) -> list[Any]:
        trt_options: dict[str, Any] = {
            "device_id": self.options.device_index,
            "trt_fp16_enable": self.options.precision == "fp16",
        }
        if self.options.cache_dir:
            Path(self.options.cache_dir).mkdir(parents=True, exist_ok=True)
            trt_options.update(
                trt_engine_cache_enable=True,
                trt_engine_cache_path=self.options.cache_dir,
                trt_timing_cache_enable=True,
                trt_timing_cache_path=self.options.cache_dir,
            )
        return [
            ("TensorrtExecutionProvider", trt_options),
            ("CUDAExecutionProvider", {"device_id": self.options.device_index}),
        ]
