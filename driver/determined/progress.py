"""What the searcher experiment shows in Determined: the report files and the search metrics.

Called by ``HwnasSearchRunner`` whenever the method's results change: the report
(``hwnas.report``: ``pareto.json``, ``trials.csv``, ``pareto.png``, ``hypervolume.png``)
goes into the searcher's checkpoint, and the returned numbers are reported as the searcher
experiment's validation metrics, so the web UI charts the search as it runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwnas import report
from hwnas.searchers.method import SearchMethod


def search_metrics(method: SearchMethod) -> dict[str, float]:
    """Trials created/done, front size, hypervolume and the best feasible first objective."""
    summary = report.front_summary(method)
    records = method.records()
    metrics: dict[str, float] = {
        "trials_created": float(len(records)),
        "trials_done": float(sum(1 for r in records if r.status.terminal)),
        "front_size": float(summary["front_size"]),
        "hypervolume": float(summary["hypervolume"]),
    }
    best = summary.get("best_feasible")
    if isinstance(best, int | float) and math.isfinite(best):
        short = str(summary["best_metric"]).removeprefix("validation_")
        metrics[f"best_feasible_{short}"] = float(best)
    return metrics


class SearchReporter:
    """The runner's ``reporter``: the report files and the metrics for a method's records."""

    def __init__(self, meta: Mapping[str, Any] | None = None) -> None:
        self.meta = {"runner": "determined", **dict(meta or {})}

    def metrics(self, method: SearchMethod) -> dict[str, float]:
        return search_metrics(method)

    def write(self, method: SearchMethod, directory: Path) -> None:
        report.write_report(method.records(), directory, method.objectives, meta=self.meta)


__all__ = ["SearchReporter", "search_metrics"]
