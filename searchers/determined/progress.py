"""What the searcher experiment shows in Determined: the report files and the search metrics.

Called by ``HwnasSearchRunner`` whenever the method's results change: the report
(``hwnas.searchers.report``: ``pareto.json``, ``trials.csv``, ``pareto.png``, ``hypervolume.png``)
goes into the searcher's checkpoint, and the returned numbers are reported as the searcher
experiment's validation metrics, so the web UI charts the search as it runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hwnas.searchers import report
from hwnas.searchers.method import TERMINAL
from hwnas.searchers.objectives import Objectives

#: Record statuses that mean a trial will report nothing more (``hwnas.searchers.method``'s).
FINISHED = TERMINAL


def search_metrics(
    records: Sequence[Mapping[str, Any]], objectives: Objectives
) -> dict[str, float]:
    """Trials created/done, front size, hypervolume and the best feasible first objective."""
    summary = report.front_summary(records, objectives)
    done = sum(1 for r in records if str(r.get("status", "")).lower() in FINISHED)
    metrics: dict[str, float] = {
        "trials_created": float(len(records)),
        "trials_done": float(done),
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

    def __init__(self, objectives: Objectives, meta: Mapping[str, Any] | None = None) -> None:
        self.objectives = objectives
        self.meta = {"runner": "determined", **dict(meta or {})}

    def metrics(self, method: Any) -> dict[str, float]:
        return search_metrics(method.records(), self.objectives)

    def write(self, method: Any, directory: Path) -> None:
        report.write_report(method.records(), directory, self.objectives, meta=self.meta)


__all__ = ["FINISHED", "SearchReporter", "search_metrics"]
