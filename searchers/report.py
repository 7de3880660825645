"""The search report: Pareto front as JSON, every trial as CSV, and two plots.

``write_report`` writes into a search folder:

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

A trial's point is its latest (longest) evaluation. The maths (non-dominated sort,
hypervolume, reference point) is ``hwnas.searchers.pareto``'s.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.atomic import atomic_open, atomic_path, write_json_atomic
from hwnas.searchers.objectives import Objectives
from hwnas.searchers.pareto import hypervolume, nondominated_mask, reference_point

PARETO_JSON, TRIALS_CSV = "pareto.json", "trials.csv"
PARETO_PNG, HYPERVOLUME_PNG = "pareto.png", "hypervolume.png"


@dataclass
class TrialRow:
    """One trial as the report sees it: its latest metrics and what became of it."""

    trial_id: int
    arch: str
    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    by_length: dict[int, dict[str, Any]] = field(default_factory=dict)
    message: str = ""

    @property
    def epochs(self) -> int | None:
        return max(self.by_length) if self.by_length else None


def _metrics_by_length(raw: Any) -> dict[int, dict[str, Any]]:
    """``{length: metrics}`` from a record's metrics field (dict keyed by length or list)."""
    if not raw:
        return {}
    if isinstance(raw, Mapping):
        return {int(k): dict(v) for k, v in raw.items() if isinstance(v, Mapping)}
    out: dict[int, dict[str, Any]] = {}
    for item in raw:  # [{"length": L, "metrics": {...}}, ...]
        out[int(item["length"])] = dict(item["metrics"])
    return out


def rows_from_records(records: Iterable[Mapping[str, Any]]) -> list[TrialRow]:
    """Normalise ``SearchMethod.records()`` entries into ``TrialRow``s (sorted by id)."""
    rows = []
    for rec in records:
        # SearchMethod.records() gives "results" by length; plain records may give "metrics".
        by_length = _metrics_by_length(rec["results"] if "results" in rec else rec.get("metrics"))
        latest = by_length[max(by_length)] if by_length else {}
        rows.append(
            TrialRow(
                trial_id=int(rec["trial_id"]),
                arch=str(rec.get("arch", "")),
                status=str(rec.get("status", "")),
                metrics=dict(latest),
                by_length=by_length,
                message=str(rec.get("message") or ""),
            )
        )
    return sorted(rows, key=lambda r: r.trial_id)


# -- the front -------------------------------------------------------------------------------
@dataclass
class Front:
    """The ranked front, the reference point and the hypervolume."""

    ranked: list[TrialRow]
    feasible: list[bool]
    reference: np.ndarray  # minimisation space
    hypervolume: float


def _vectors(rows: Sequence[TrialRow], objectives: Objectives) -> np.ndarray:
    if not rows:
        return np.zeros((0, len(objectives.objectives)))
    return np.array([objectives.vector(r.metrics) for r in rows], dtype=float)


def _feasible_vectors(rows: Sequence[TrialRow], objectives: Objectives) -> np.ndarray:
    vectors = [
        objectives.vector(m) for r in rows for m in r.by_length.values() if objectives.feasible(m)
    ]
    return np.array(vectors, dtype=float).reshape(-1, len(objectives.objectives))


def compute_front(rows: Sequence[TrialRow], objectives: Objectives) -> Front:
    """Front members ranked as documented above, with hypervolume of the feasible front."""
    evaluated = [r for r in rows if r.metrics]
    F = _vectors(evaluated, objectives)
    # As SearchMethod does: the reference point's data-derived parts come from the range of
    # every feasible result (all lengths), so the report's hypervolume matches the method's.
    ref = reference_point(objectives, _feasible_vectors(rows, objectives))
    feasible = np.array([objectives.feasible(r.metrics) for r in evaluated], dtype=bool)
    ranked: list[TrialRow] = []
    flags: list[bool] = []
    hv = 0.0
    if feasible.any():
        idx = np.flatnonzero(feasible)
        members = idx[nondominated_mask(F[idx])]
        hv = hypervolume(F[members], ref)
        ranked += _sorted_members(evaluated, F, members)
        flags += [True] * len(members)
    else:
        finite = np.flatnonzero(np.all(np.isfinite(F), axis=1)) if len(F) else np.zeros(0, int)
        if len(finite):
            violation = np.array([objectives.violation(evaluated[i].metrics) for i in finite])
            least = finite[violation == violation.min()]
            members = least[nondominated_mask(F[least])]
            ranked += _sorted_members(evaluated, F, members)
            flags += [False] * len(members)
    return Front(ranked, flags, ref, hv)


def _sorted_members(rows: Sequence[TrialRow], F: np.ndarray, members: np.ndarray) -> list[TrialRow]:
    # Best first by the first objective, then the next ones, then trial id (deterministic).
    keys = [(*F[i].tolist(), rows[i].trial_id) for i in members]
    order = sorted(range(len(members)), key=lambda k: keys[k])
    return [rows[members[k]] for k in order]


def hypervolume_history(
    rows: Sequence[TrialRow],
    objectives: Objectives,
    ref: np.ndarray,
    timeline: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, float]]:
    """Hypervolume of the feasible front after each completed evaluation, in completion order.

    Uses the runner's ``timeline`` (trial id, length, elapsed seconds) when given, else trial
    id order with each trial's lengths ascending.
    """
    by_id = {r.trial_id: r for r in rows}
    if timeline:
        events = [
            (int(e["trial_id"]), int(e["length"]), e.get("elapsed_s"))
            for e in timeline
            if e.get("ok")
            and int(e["trial_id"]) in by_id
            and int(e["length"]) in by_id[int(e["trial_id"])].by_length
        ]
    else:
        events = [(r.trial_id, n, None) for r in rows for n in sorted(r.by_length)]
    latest: dict[int, np.ndarray] = {}
    history = []
    for count, (tid, length, elapsed) in enumerate(events, start=1):
        metrics = by_id[tid].by_length[length]
        if objectives.feasible(metrics):
            latest[tid] = objectives.vector(metrics)
        else:
            latest.pop(tid, None)  # its latest evaluation is infeasible
        points = np.array(list(latest.values())) if latest else np.zeros((0, len(ref)))
        hv = hypervolume(points[nondominated_mask(points)], ref) if len(points) else 0.0
        history.append(
            {
                "evaluations": count,
                "elapsed_s": float("nan") if elapsed is None else float(elapsed),
                "hypervolume": hv,
            }
        )
    return history


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
    rows: Sequence[TrialRow],
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
        "n_evaluated": sum(1 for r in rows if r.metrics),
        "front": [
            {
                "rank": rank,
                "trial_id": r.trial_id,
                "arch": r.arch,
                "feasible": ok,
                "epochs": r.epochs,
                "status": r.status,
                "metrics": {k: _json_value(v) for k, v in r.metrics.items()},
            }
            for rank, (r, ok) in enumerate(zip(front.ranked, front.feasible, strict=True), start=1)
        ],
    }


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (int, float, str, bool))


def write_trials_csv(rows: Sequence[TrialRow], path: Path) -> None:
    """One row per trial; metric columns are the union of scalar metric names, sorted."""
    names = sorted(
        {k for r in rows for k, v in r.metrics.items() if _scalar(v)}
        - {"arch", "trial_id", "status", "epochs"}
    )
    with atomic_open(path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["trial_id", "arch", "status", "epochs", *names, "message"])
        for r in rows:
            values = ["" if v is None else v for v in (r.metrics.get(n) for n in names)]
            writer.writerow([r.trial_id, r.arch, r.status, r.epochs, *values, r.message])


def _plot_axes(objectives: Objectives, rows: Sequence[TrialRow]) -> tuple[str, str]:
    """Metrics on (x, y): the first two objectives, the cost one on x."""
    names = list(objectives.metrics)
    if len(names) == 1:
        extra = next(
            (
                m
                for m in ("latency_ms", "params", "flops")
                if m != names[0] and any(m in r.metrics for r in rows)
            ),
            None,
        )
        return (extra or "trial_id", names[0])
    a, b = objectives.objectives[0], objectives.objectives[1]
    # Put the maximised metric (accuracy) on y, the minimised cost on x, as papers do.
    if a.goal == "maximize" and b.goal == "minimize":
        return b.metric, a.metric
    return a.metric, b.metric


def _value(row: TrialRow, name: str) -> float:
    if name == "trial_id":
        return float(row.trial_id)
    v = row.metrics.get(name)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def plot_pareto(rows: Sequence[TrialRow], objectives: Objectives, front: Front, path: Path) -> None:
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
    records: Iterable[Mapping[str, Any]],
    out_dir: str | Path,
    objectives: Objectives,
    *,
    timeline: Sequence[Mapping[str, Any]] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write the four report files into ``out_dir`` from trial records; their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = rows_from_records(records)
    front = compute_front(rows, objectives)
    history = hypervolume_history(rows, objectives, front.reference, timeline)
    doc = pareto_document(rows, objectives, front, meta)
    doc["hypervolume_history"] = [{k: _json_value(v) for k, v in h.items()} for h in history]
    paths = [out / PARETO_JSON, out / TRIALS_CSV, out / PARETO_PNG, out / HYPERVOLUME_PNG]
    write_json_atomic(paths[0], doc, indent=1, allow_nan=True)
    write_trials_csv(rows, paths[1])
    plot_pareto(rows, objectives, front, paths[2])
    plot_hypervolume(history, paths[3])
    return paths


def front_summary(records: Iterable[Mapping[str, Any]], objectives: Objectives) -> dict[str, Any]:
    """Numbers for the progress display: best feasible first objective, front size, HV."""
    rows = rows_from_records(records)
    front = compute_front(rows, objectives)
    first = objectives.objectives[0]
    feasible = [
        r.metrics.get(first.metric) for r in rows if r.metrics and objectives.feasible(r.metrics)
    ]
    feasible = [float(v) for v in feasible if isinstance(v, (int, float))]
    best = (max(feasible) if first.goal == "maximize" else min(feasible)) if feasible else None
    return {
        "best_metric": first.metric,
        "best_feasible": best,
        "front_size": sum(front.feasible),
        "hypervolume": front.hypervolume,
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
    "TrialRow",
    "compute_front",
    "front_summary",
    "hypervolume_history",
    "read_pareto",
    "rows_from_records",
    "write_report",
]
