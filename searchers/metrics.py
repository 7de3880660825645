"""The metrics a trial reports, defined once: names, kinds and the range of values.

Config validation uses this list to reject unknown metric names and impossible constraints;
the local and tabular backends report these same names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    """A reported metric: numeric or not, its natural goal and the values it can take."""

    name: str
    description: str
    numeric: bool = True
    lower: float = -math.inf
    upper: float = math.inf
    #: "maximize", "minimize" or None where there is no natural direction.
    natural_goal: str | None = None


_SPECS = (
    MetricSpec(
        "validation_accuracy", "validation accuracy, fraction 0..1", True, 0.0, 1.0, "maximize"
    ),
    MetricSpec(
        "test_accuracy", "test accuracy, fraction 0..1 (tabular runs)", True, 0.0, 1.0, "maximize"
    ),
    MetricSpec("validation_loss", "validation loss", True, 0.0, math.inf, "minimize"),
    MetricSpec("train_loss", "training loss", True, 0.0, math.inf, "minimize"),
    MetricSpec("epochs", "epochs trained so far (cumulative)", True, 0.0, math.inf),
    MetricSpec("params", "number of parameters", True, 0.0, math.inf, "minimize"),
    MetricSpec(
        "flops", "floating-point operations of one forward pass", True, 0.0, math.inf, "minimize"
    ),
    MetricSpec("latency_ms", "median inference latency (ms)", True, 0.0, math.inf, "minimize"),
    MetricSpec(
        "latency_p90_ms", "90th-percentile inference latency (ms)", True, 0.0, math.inf, "minimize"
    ),
    MetricSpec(
        "latency_cv", "coefficient of variation of latency samples", True, 0.0, math.inf, "minimize"
    ),
    MetricSpec("latency_unstable", "latency samples too noisy to trust", numeric=False),
    MetricSpec("latency_backend", "backend that measured the latency", numeric=False),
    MetricSpec("train_time_s", "wall time of training (s)", True, 0.0, math.inf, "minimize"),
)

#: Every metric a trial (or the tabular backend) may report, by name.
KNOWN_METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in _SPECS}

#: Names usable as objectives or constraints.
NUMERIC_METRICS: tuple[str, ...] = tuple(s.name for s in _SPECS if s.numeric)


__all__ = ["KNOWN_METRICS", "NUMERIC_METRICS", "MetricSpec"]
