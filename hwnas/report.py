"""The search report: Pareto front as JSON, every trial as CSV, and two plots.

``write_report(records, out_dir, objectives)`` writes, from the search method's trial records
(``hwnas.searchers.records``), into a search folder:

- ``pareto.json``: the objectives, constraints, the hypervolume reference point (in each
  metric's own units), the hypervolume, and the front members ranked. **Rank order**: feasible
  front members first, sorted best-first by the *first* objective (ties by the second, ...);
  when no trial is feasible the front of the least-violating trials follows, flagged
  ``"feasible": false``. ``hwnas export OUT --rank 1`` takes rank 1 from this list.
- ``trials.csv``: one row per trial (id, arch, status, epochs, then every scalar metric).
- ``pareto.png``: all trials in the plane of the first two objectives, the front as a step
  line, hard-constraint bounds as dashed lines, infeasible trials greyed out.
- ``hypervolume.png``: the front's hypervolume after each completed evaluation, against the
  count of evaluations and against wall time (when the runner recorded it).

A trial's point is its latest (longest) evaluation. The front, its reference point and the
hypervolume come from ``hwnas.searchers.front`` (the same archive the search method keeps), so
the report and the running search agree.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.atomic import atomic_open, atomic_path, write_json_atomic
from hwnas.searchers.front import hypervolume_history, replay
from hwnas.searchers.objectives import Objectives
from hwnas.searchers.pareto import nondominated_mask
from hwnas.searchers.records import TrialRecord

PARETO_JSON, TRIALS_CSV = "pareto.json", "trials.csv"
PARETO_PNG, HYPERVOLUME_PNG = "pareto.png", "hypervolume.png"


@dataclass
class Front:
    """The ranked front, the reference point and the hypervolume."""

    ranked: list[TrialRecord]
    feasible: list[bool]
    reference: np.ndarray  # minimisation space
    hypervolume: float


def _results_in_order(records: Sequence[TrialRecord]) -> list[tuple[int, dict[str, Any]]]:
    """Every result as ``(trial_id, metrics)`` in arrival order."""
    results = sorted((res.seq, r.trial_id, res.metrics) for r in records for res in r.results)
    return [(tid, metrics) for _, tid, metrics in results]


def compute_front(records: Sequence[TrialRecord], objectives: Objectives) -> Front:
    """Front members ranked as documented above, with hypervolume of the feasible front."""
    archive = replay(_results_in_order(records), objectives)
    by_id = {r.trial_id: r for r in records}
    if archive.front:
        members = [by_id[t] for t in archive.front]
        return Front(
            _ranked(members, objectives),
            [True] * len(members),
            archive.reference(),
            archive.hypervolume(),
        )
    # No feasible trial: the non-dominated ones among the least violating, flagged infeasible.
    evaluated = [r for r in records if r.metrics]
    finite = [r for r in evaluated if np.all(np.isfinite(objectives.vector(r.metrics)))]
    least: list[TrialRecord] = []
    if finite:
        violation = [objectives.violation(r.metrics) for r in finite]
        least = [r for r, v in zip(finite, violation, strict=True) if v == min(violation)]
        F = np.array([objectives.vector(r.metrics) for r in least])
        least = [least[i] for i in np.flatnonzero(nondominated_mask(F))]
    return Front(_ranked(least, objectives), [False] * len(least), archive.reference(), 0.0)


def _ranked(members: Sequence[TrialRecord], objectives: Objectives) -> list[TrialRecord]:
    # Best first by the first objective, then the next ones, then trial id (deterministic).
    return sorted(members, key=lambda r: (*objectives.vector(r.metrics).tolist(), r.trial_id))


def hypervolume_curve(
    records: Sequence[TrialRecord],
    objectives: Objectives,
    timeline: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, float]]:
    """The front's hypervolume after each result (against the final reference point), with
    the elapsed time of that result from the driver's ``timeline`` when known."""
    results = sorted((res.seq, r.trial_id, res.length) for r in records for res in r.results)
    values = hypervolume_history(_results_in_order(records), objectives)
    elapsed = {
        (int(e["trial_id"]), int(e["length"])): e.get("elapsed_s")
        for e in (timeline or [])
        if e.get("ok")
    }
    return [
        {
            "evaluations": i,
            "elapsed_s": float("nan") if elapsed.get((tid, n)) is None else elapsed[(tid, n)],
            "hypervolume": hv,
        }
        for i, ((_, tid, n), hv) in enumerate(zip(results, values, strict=True), start=1)
    ]


# -- outputs ---------------------------------------------------------------------------------
def _from_min(objectives: Objectives, ref: np.ndarray) -> dict[str, float]:
    return {
        o.metric: -float(v) if o.goal == "maximize" else float(v)
        for o, v in zip(objectives.objectives, ref, strict=True)
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return _json_value(value.item())
    return value


def pareto_document(
    rows: Sequence[TrialRecord],
    objectives: Objectives,
    front: Front,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of ``pareto.json``."""
    return {
        **dict(meta or {}),
        **objectives.to_json(),
        "reference_point": _from_min(objectives, front.reference),
        "hypervolume": front.hypervolume,
        "rank_order": "feasible first; then best first by the first objective (ties: next "
        "objectives, then trial id)",
        "n_trials": len(rows),
        "n_evaluated": sum(1 for r in rows if r.results),
        "front": front_rows(front),
    }


def front_rows(front: Front) -> list[dict[str, Any]]:
    """The ranked front members as ``pareto.json`` lists them (rank 1 first)."""
    return [
        {
            "rank": rank,
            "trial_id": r.trial_id,
            "arch": r.arch,
            "feasible": ok,
            "epochs": r.length,
            "status": r.status.value,
            "metrics": {k: _json_value(v) for k, v in (r.metrics or {}).items()},
        }
        for rank, (r, ok) in enumerate(zip(front.ranked, front.feasible, strict=True), start=1)
    ]


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (int, float, str, bool))


def trial_table(rows: Sequence[TrialRecord]) -> tuple[list[str], list[dict[str, Any]]]:
    """``trials.csv`` as columns and one dict per trial: id, arch, status, epochs, the union
    of scalar metric names (sorted; None where a trial lacks one), message."""
    names = sorted(
        {k for r in rows for k, v in (r.metrics or {}).items() if _scalar(v)}
        - {"arch", "trial_id", "status", "epochs", "message"}
    )
    columns = ["trial_id", "arch", "status", "epochs", *names, "message"]
    table = []
    for r in rows:
        metrics = r.metrics or {}
        table.append(
            {
                "trial_id": r.trial_id,
                "arch": r.arch,
                "status": r.status.value,
                "epochs": r.length,
                **{n: metrics.get(n) for n in names},
                "message": r.message,
            }
        )
    return columns, table


def write_trials_csv(rows: Sequence[TrialRecord], path: Path) -> None:
    """One row per trial (``trial_table``); empty cells where a value is missing."""
    columns, table = trial_table(rows)
    with atomic_open(path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in table:
            writer.writerow(["" if row[c] is None else row[c] for c in columns])


def _plot_axes(objectives: Objectives, rows: Sequence[TrialRecord]) -> tuple[str, str]:
    """Metrics on (x, y): the first two objectives, the cost one on x."""
    names = list(objectives.metrics)
    if len(names) == 1:
        extra = next(
            (
                m
                for m in ("latency_ms", "params", "flops")
                if m != names[0] and any(m in (r.metrics or {}) for r in rows)
            ),
            None,
        )
        return (extra or "trial_id", names[0])
    a, b = objectives.objectives[0], objectives.objectives[1]
    # Put the maximised metric (accuracy) on y, the minimised cost on x, as papers do.
    if a.goal == "maximize" and b.goal == "minimize":
        return b.metric, a.metric
    return a.metric, b.metric


def _value(row: TrialRecord, name: str) -> float:
    if name == "trial_id":
        return float(row.trial_id)
    v = (row.metrics or {}).get(name)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def plot_pareto(
    rows: Sequence[TrialRecord], objectives: Objectives, front: Front, path: Path
) -> None:
    """All trials, the ranked front, constraint bounds; infeasible trials in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xname, yname = _plot_axes(objectives, rows)
    evaluated = [r for r in rows if r.metrics]
    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    try:
        feas = [r for r in evaluated if objectives.feasible(r.metrics)]
        infeas = [r for r in evaluated if not objectives.feasible(r.metrics)]
        if infeas:
            ax.scatter(
                [_value(r, xname) for r in infeas],
                [_value(r, yname) for r in infeas],
                c="0.75",
                s=22,
                label=f"infeasible ({len(infeas)})",
                zorder=1,
            )
        if feas:
            ax.scatter(
                [_value(r, xname) for r in feas],
                [_value(r, yname) for r in feas],
                c="tab:blue",
                s=22,
                alpha=0.7,
                label=f"feasible ({len(feas)})",
                zorder=2,
            )
        members = [r for r, ok in zip(front.ranked, front.feasible, strict=True) if ok]
        if members:
            pts = sorted((_value(r, xname), _value(r, yname), i + 1) for i, r in enumerate(members))
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            ax.step(xs, ys, where="post", c="tab:red", lw=1.2, zorder=3)
            ax.scatter(
                xs,
                ys,
                c="tab:red",
                s=46,
                edgecolors="k",
                zorder=4,
                label=f"Pareto front ({len(members)})",
            )
            for x, y, rank in pts:
                ax.annotate(
                    str(rank), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8
                )
        for c in objectives.constraints:
            if c.metric == xname:
                ax.axvline(c.bound, ls="--", c="k", lw=1, label=f"constraint {c}")
            elif c.metric == yname:
                ax.axhline(c.bound, ls="--", c="k", lw=1, label=f"constraint {c}")
        ax.set_xlabel(xname)
        ax.set_ylabel(yname)
        ax.set_title(f"{len(evaluated)} evaluated trials, hypervolume {front.hypervolume:.4g}")
        ax.grid(alpha=0.3)
        if evaluated:
            ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        _save_figure(fig, path)
    finally:
        plt.close(fig)


def plot_hypervolume(history: Sequence[Mapping[str, float]], path: Path) -> None:
    """Hypervolume after each evaluation (and against wall time when known)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = bool(history) and all(math.isfinite(h["elapsed_s"]) for h in history)
    fig, axes = plt.subplots(
        1, 2 if timed else 1, figsize=(10 if timed else 6, 4), dpi=110, squeeze=False
    )
    try:
        hv = [h["hypervolume"] for h in history]
        ax = axes[0][0]
        ax.step([h["evaluations"] for h in history], hv, where="post", c="tab:green")
        ax.set_xlabel("completed evaluations")
        ax.set_ylabel("hypervolume (feasible front)")
        ax.grid(alpha=0.3)
        if timed:
            ax2 = axes[0][1]
            ax2.step([h["elapsed_s"] / 60 for h in history], hv, where="post", c="tab:green")
            ax2.set_xlabel("wall time (min)")
            ax2.grid(alpha=0.3)
        fig.suptitle("hypervolume over the search")
        fig.tight_layout()
        _save_figure(fig, path)
    finally:
        plt.close(fig)


def _save_figure(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp)


# -- entry points ----------------------------------------------------------------------------
def write_report(
    records: Sequence[TrialRecord],
    out_dir: str | Path,
    objectives: Objectives,
    *,
    timeline: Sequence[Mapping[str, Any]] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write the four report files into ``out_dir`` from trial records; their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = sorted(records, key=lambda r: r.trial_id)
    front = compute_front(rows, objectives)
    history = hypervolume_curve(rows, objectives, timeline)
    doc = pareto_document(rows, objectives, front, meta)
    doc["hypervolume_history"] = [{k: _json_value(v) for k, v in h.items()} for h in history]
    paths = [out / PARETO_JSON, out / TRIALS_CSV, out / PARETO_PNG, out / HYPERVOLUME_PNG]
    write_json_atomic(paths[0], doc, indent=1, allow_nan=True)
    write_trials_csv(rows, paths[1])
    plot_pareto(rows, objectives, front, paths[2])
    plot_hypervolume(history, paths[3])
    return paths


def front_summary(method: Any) -> dict[str, Any]:
    """Numbers for progress displays from a search method's live archive: the best feasible
    first objective, the front size and the hypervolume."""
    objectives = method.objectives
    first = objectives.objectives[0]
    values = [
        r.metrics.get(first.metric)
        for r in method.records()
        if r.metrics and objectives.feasible(r.metrics)
    ]
    values = [float(v) for v in values if isinstance(v, (int, float))]
    best = (max(values) if first.goal == "maximize" else min(values)) if values else None
    return {
        "best_metric": first.metric,
        "best_feasible": best,
        "front_size": len(method.front),
        "hypervolume": method.hypervolume(),
    }


def read_pareto(out_dir: str | Path) -> dict[str, Any]:
    """The ``pareto.json`` of a search folder."""
    path = Path(out_dir) / PARETO_JSON
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


__all__ = [
    "HYPERVOLUME_PNG",
    "PARETO_JSON",
    "PARETO_PNG",
    "TRIALS_CSV",
    "Front",
    "compute_front",
    "front_rows",
    "front_summary",
    "hypervolume_curve",
    "read_pareto",
    "trial_table",
    "write_report",
]
