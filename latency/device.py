"""Facts about the device a figure was measured on, recorded with every measurement.

CPU: model name, logical cores, cores this process may use, the thread setting, load average.
GPU: NVML (``nvidia-ml-py``, import name ``pynvml``, imported lazily): name, driver, SM and
memory clocks, temperature, power limit. Without NVML the GPU facts say why instead of failing:
a missing fact must not lose a measurement. ``gpu_identity`` names the GPU for cache keys
(name and compute capability) from whichever source is there, in CUDA's device order.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, else ``platform``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def cpu_facts(threads: int | None = None) -> dict[str, Any]:
    """CPU model, core counts and the thread setting used for the measurement."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "kind": "cpu",
        "name": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "threads": threads,
        "load_avg": load,
        "platform": platform.platform(),
    }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_facts(index: int = 0, *, nvml: Any = None) -> dict[str, Any]:
    """NVML facts for GPU ``index``; ``{"kind": "gpu", "nvml_error": ...}`` when unavailable."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return {"kind": "gpu", "nvml_error": "nvidia-ml-py (module pynvml) is not installed"}
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return {"kind": "gpu", "nvml_error": f"nvmlInit failed: {type(exc).__name__}: {exc}"}
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        facts: dict[str, Any] = {
            "kind": "gpu",
            "index": index,
            "name": _text(nvml.nvmlDeviceGetName(handle)),
            "driver": _text(nvml.nvmlSystemGetDriverVersion()),
        }
        readings = {
            "compute_capability": lambda: "{}.{}".format(
                *nvml.nvmlDeviceGetCudaComputeCapability(handle)
            ),
            "sm_clock_mhz": lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
            "mem_clock_mhz": lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM),
            "temperature_c": lambda: nvml.nvmlDeviceGetTemperature(
                handle, nvml.NVML_TEMPERATURE_GPU
            ),
            "power_limit_w": lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0,
        }
        for key, read in readings.items():
            try:
                facts[key] = read()
            except nvml.NVMLError as exc:  # some fields are unsupported on some boards
                facts[key] = None
                facts.setdefault("nvml_warnings", []).append(f"{key}: {exc}")
        return facts
    except nvml.NVMLError as exc:
        return {"kind": "gpu", "index": index, "nvml_error": f"{type(exc).__name__}: {exc}"}
    finally:
        nvml.nvmlShutdown()


def gpu_identity(index: int = 0, *, cudart: Any = None, nvml: Any = None) -> dict[str, Any]:
    """Name and compute capability of CUDA device ``index``: what a GPU figure is keyed by.

    Sources, first that answers: cuda-python's runtime (``cuda.bindings.runtime``), torch when
    this process has already imported it (never imported here: the timing worker is
    torch-free), then NVML. The first two count devices as CUDA does (``CUDA_VISIBLE_DEVICES``,
    ``CUDA_DEVICE_ORDER``), as the backends' ``device_index`` does; NVML counts in PCI order,
    which agrees when one GPU is visible or ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.
    Returns ``{"name", "compute_capability": "9.0", "source"}``, or ``{"error": why}``.
    """
    reasons = []
    for source, read in (
        ("cuda-runtime", lambda: _identity_cudart(index, cudart)),
        ("torch", lambda: _identity_torch(index)),
        ("nvml", lambda: _identity_nvml(index, nvml)),
    ):
        try:
            name, (major, minor) = read()
        except Exception as exc:  # each source may be missing or fail; say which and why
            reasons.append(f"{source}: {type(exc).__name__}: {exc}")
            continue
        return {"name": name, "compute_capability": f"{major}.{minor}", "source": source}
    return {"error": f"cannot identify CUDA device {index} (" + "; ".join(reasons) + ")"}


def gpu_key(identity: dict[str, Any]) -> str:
    """``gpu:<name>:sm<major><minor>`` for a cache key, e.g. ``gpu:NVIDIA H200:sm90``."""
    return f"gpu:{identity['name']}:sm{identity['compute_capability'].replace('.', '')}"


def _identity_cudart(index: int, cudart: Any) -> tuple[str, tuple[int, int]]:
    if cudart is None:
        from hwnas.latency.backends import cuda_runtime

        cudart = cuda_runtime.import_cudart()
    err, prop = cudart.cudaGetDeviceProperties(index)
    if err != cudart.cudaError_t.cudaSuccess:
        raise RuntimeError(f"cudaGetDeviceProperties({index}) returned {err!r}")
    return _text(prop.name).split("\x00", 1)[0].strip(), (int(prop.major), int(prop.minor))


def _identity_torch(index: int) -> tuple[str, tuple[int, int]]:
    torch = sys.modules.get("torch")
    if torch is None:
        raise RuntimeError("torch is not imported in this process")
    if not torch.cuda.is_available():
        raise RuntimeError("torch.cuda.is_available() is False")
    major, minor = torch.cuda.get_device_capability(index)
    return torch.cuda.get_device_name(index), (int(major), int(minor))


def _identity_nvml(index: int, nvml: Any) -> tuple[str, tuple[int, int]]:
    if nvml is None:
        import pynvml as nvml
    nvml.nvmlInit()
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
        return _text(nvml.nvmlDeviceGetName(handle)), (int(major), int(minor))
    finally:
        nvml.nvmlShutdown()


def device_facts(kind: str, *, threads: int | None = None, index: int = 0) -> dict[str, Any]:
    """Facts for a ``"cpu"`` or ``"gpu"`` measurement."""
    if kind == "gpu":
        return gpu_facts(index)
    return cpu_facts(threads)
