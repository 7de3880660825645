"""``LatencyResult``: one measurement with its statistics, device facts and provenance."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hwnas.latency.timing import TimingStats


@dataclass(frozen=True)
class LatencyResult:
    """What one architecture costs on one target, and how the figure was obtained."""

    space: str
    arch: str
    canonical_key: str
    backend: str
    precision: str
    batch: int
    input_shape: tuple[int, ...]
    threads: int
    stats: TimingStats
    device: dict[str, Any]
    versions: dict[str, str]
    export: dict[str, Any] | None = None  # ExportResult fields (max_abs_diff, export_s, ...)
    overhead_s: float = 0.0  # wall time of export + session + timing for this call
    cached: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def median_ms(self) -> float:
        return self.stats.median_ms

    def to_metrics(self) -> dict[str, Any]:
        """The flat ``latency_*`` keys of the trial metrics contract (JSON scalars only).

        ``latency_host_median_ms`` is the host wall clock per call beside ``latency_ms``
        (thread CPU time or CUDA events). GPU ONNX Runtime results add
        ``latency_placement`` (``full``/``partial``/``unknown``) and, when known,
        ``latency_cpu_nodes`` and ``latency_off_target_nodes``."""
        device = self.device.get("name", "unknown")
        if self.device.get("kind") == "cpu":
            device = f"{device} ({self.threads} thread{'s' if self.threads != 1 else ''})"
        return {
            "latency_ms": self.stats.median_ms,
            "latency_p90_ms": self.stats.p90_ms,
            "latency_p99_ms": self.stats.p99_ms,
            "latency_mean_ms": self.stats.mean_ms,
            "latency_min_ms": self.stats.min_ms,
            "latency_cv": self.stats.cv,
            "latency_unstable": bool(self.stats.unstable),
            "latency_backend": self.backend,
            "latency_precision": self.precision,
            "latency_batch": self.batch,
            "latency_device": device,
            "latency_clock": self.info.get("clock", "wall"),
            "latency_cached": self.cached,
            **(
                {"latency_host_median_ms": self.stats.host_median_ms}
                if self.stats.host_median_ms is not None
                else {}
            ),
            **self._placement_metrics(),
            **(
                {
                    "latency_ref_ratio": self.info["reference"]["ratio"],
                    "latency_ref_ms": self.info["reference"]["median_ms"],
                }
                if self.info.get("reference")
                else {}
            ),
        }

    def _placement_metrics(self) -> dict[str, Any]:
        """Where a GPU session's nodes ran (``info`` from the ONNX Runtime backends)."""
        if self.device.get("kind") != "gpu" or "placement" not in self.info:
            return {}
        out: dict[str, Any] = {"latency_placement": self.info["placement"]}
        for key in ("cpu_nodes", "off_target_nodes"):
            if key in self.info:
                out[f"latency_{key}"] = int(self.info[key])
        return out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, cached: bool | None = None) -> LatencyResult:
        values = dict(data)
        values["stats"] = TimingStats.from_dict(values["stats"])
        values["input_shape"] = tuple(values["input_shape"])
        if cached is not None:
            values["cached"] = cached
        return cls(**values)

    def summary(self) -> dict[str, Any]:
        """The CLI's ``measure --json`` shape: figures first, then device and provenance."""
        return {
            "space": self.space,
            "arch": self.arch,
            "backend": self.backend,
            "precision": self.precision,
            "batch": self.batch,
            "input_shape": list(self.input_shape),
            "median_ms": self.stats.median_ms,
            "mean_ms": self.stats.mean_ms,
            "p90_ms": self.stats.p90_ms,
            "p99_ms": self.stats.p99_ms,
            "min_ms": self.stats.min_ms,
            "std_ms": self.stats.std_ms,
            "cv": self.stats.cv,
            "runs": self.stats.runs,
            "attempts": self.stats.attempts,
            "unstable": self.stats.unstable,
            "clock": self.info.get("clock", "wall"),
            "host_median_ms": self.stats.host_median_ms,
            "reference": self.info.get("reference"),
            "device": self.device,
            "versions": self.versions,
            "export": self.export,
            "overhead_s": self.overhead_s,
            "cached": self.cached,
        }
