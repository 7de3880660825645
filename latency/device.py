"""Facts about the device a figure was measured on, recorded with every measurement.

CPU: model name, logical cores, cores this process may use, the thread setting, load average.
GPU: NVML (``nvidia-ml-py``, import name ``pynvml``, imported lazily): name, driver, SM and
memory clocks, temperature, power limit. Without NVML the GPU facts say why instead of failing:
a missing fact must not lose a measurement.
"""

from __future__ import annotations

import os
import platform
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


def device_facts(kind: str, *, threads: int | None = None, index: int = 0) -> dict[str, Any]:
    """Facts for a ``"cpu"`` or ``"gpu"`` measurement."""
    if kind == "gpu":
        return gpu_facts(index)
    return cpu_facts(threads)
