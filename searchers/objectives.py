"""Objectives, hard constraints and scalarisation, built from the config.

Every multi-objective computation in ``searchers`` works on *minimisation* vectors:
a maximised metric is negated. ``Objectives.vector`` does that conversion for one result,
``Objectives.matrix`` for a batch (e.g. a surrogate's predictions for a candidate pool); the
other batch forms (``violations``, ``scores``) likewise agree exactly with their scalar forms.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

GOALS = ("maximize", "minimize")

_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
# metric, comparison, number (int, float, exponent); nothing else is accepted.
_CONSTRAINT_RE = re.compile(
    r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*"
    r"([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*$"
)


@dataclass(frozen=True)
class Objective:
    """One metric to maximise or minimise."""

    metric: str
    goal: str = "maximize"

    def __post_init__(self) -> None:
        if self.goal not in GOALS:
            raise ValueError(f"objective goal must be one of {GOALS}, got {self.goal!r}")

    def to_min(self, value: float) -> float:
        """``value`` as a quantity to minimise."""
        return -float(value) if self.goal == "maximize" else float(value)


@dataclass(frozen=True)
class Constraint:
    """A hard bound ``metric op bound``; a result that breaks it is infeasible."""

    metric: str
    op: str
    bound: float

    def satisfied(self, value: float) -> bool:
        """Whether ``value`` meets the bound (NaN never does)."""
        v = float(value)
        return not math.isnan(v) and _OPS[self.op](v, self.bound)

    def violation(self, value: float) -> float:
        """How far ``value`` is outside the bound (0 when satisfied, inf for NaN)."""
        return float(self.violations(np.array([value], dtype=float))[0])

    def violations(self, values: np.ndarray) -> np.ndarray:
        """``violation`` of every element: the one formula, which the scalar form calls."""
        v = np.asarray(values, dtype=float)
        # A strict bound is broken by equality too, which the distance alone would call 0.
        margin = 1e-12 if self.op in ("<", ">") else 0.0
        out = np.where(_OPS[self.op](v, self.bound), 0.0, np.abs(v - self.bound) + margin)
        return np.where(np.isnan(v), math.inf, out)

    def admits_range(self, lower: float, upper: float) -> bool:
        """Whether any value in ``[lower, upper]`` satisfies the bound."""
        if self.op == "<=":
            return lower <= self.bound
        if self.op == "<":
            return lower < self.bound
        if self.op == ">=":
            return upper >= self.bound
        return upper > self.bound

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


def parse_constraint(text: str) -> Constraint:
    """Parse ``"metric <=|>=|<|> number"`` strictly (no expressions, no eval)."""
    if not isinstance(text, str):
        raise ValueError(f"constraint must be a string like 'latency_ms <= 5', got {text!r}")
    m = _CONSTRAINT_RE.match(text)
    if m is None:
        raise ValueError(
            f"cannot parse constraint {text!r}: expected 'METRIC OP NUMBER' with OP one of "
            "<=, >=, <, > (e.g. 'latency_ms <= 5')"
        )
    bound = float(m.group(3))
    if not math.isfinite(bound):
        raise ValueError(f"constraint {text!r} has a non-finite bound")
    return Constraint(m.group(1), m.group(2), bound)


@dataclass(frozen=True)
class Scalarization:
    """MnasNet-style reward ``metric * (cost / target) ** w`` (higher is better).

    With ``w < 0`` a cost above ``target`` lowers the reward smoothly (a soft constraint);
    MnasNet used ``w = -0.07``. Costs at or below zero are clamped to a tiny positive value.
    """

    metric: str
    cost: str
    target: float
    w: float = -0.07
    kind: str = "mnasnet"

    def score(self, values: Mapping[str, float]) -> float:
        """The reward of one result (KeyError when a metric is missing)."""
        return self._reward(float(values[self.metric]), float(values[self.cost]))

    def scores(self, metric: np.ndarray, cost: np.ndarray) -> np.ndarray:
        """``score`` of each (metric, cost) pair, bit for bit as the scalar form gives it."""
        # Element by element through ``score``'s own ``**``: numpy's vectorised power differs
        # from it in the last bit on some CPUs (AVX-512), and both forms must rank alike.
        m, c = np.asarray(metric, dtype=float), np.asarray(cost, dtype=float)
        pairs = zip(m.tolist(), c.tolist(), strict=True)
        return np.array([self._reward(a, b) for a, b in pairs], dtype=float)

    def _reward(self, metric: float, cost: float) -> float:
        """The MnasNet formula (cost clamped to a tiny positive value; NaN stays NaN)."""
        return metric * (max(cost, 1e-9) / self.target) ** self.w


@dataclass(frozen=True)
class Objectives:
    """The search's objectives, hard constraints and optional scalarisation."""

    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...] = ()
    scalarization: Scalarization | None = None
    #: Reference point in the metrics' own units (converted by ``reference_vector``).
    reference_point: dict[str, float] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.objectives:
            raise ValueError("at least one objective is required")

    @property
    def metrics(self) -> tuple[str, ...]:
        """Objective metric names, in order."""
        return tuple(o.metric for o in self.objectives)

    @property
    def needed_metrics(self) -> tuple[str, ...]:
        """Every metric the objectives, constraints and scalarisation read."""
        names = list(self.metrics)
        names += [c.metric for c in self.constraints]
        if self.scalarization is not None:
            names += [self.scalarization.metric, self.scalarization.cost]
        return tuple(dict.fromkeys(names))

    @property
    def is_multi_objective(self) -> bool:
        """Several objectives and no scalarisation: strategies must trade them off."""
        return len(self.objectives) > 1 and self.scalarization is None

    @property
    def scored_metrics(self) -> tuple[str, ...]:
        """What a strategy's score or front reads: the objectives, or the scalarisation's
        inputs (a metric that is only constrained is not among them)."""
        if self.is_multi_objective:
            return tuple(self.metrics)
        if self.scalarization is not None:
            return tuple(dict.fromkeys([self.scalarization.metric, self.scalarization.cost]))
        return (self.metrics[0],)

    @property
    def modelled_metrics(self) -> tuple[str, ...]:
        """What a surrogate predicts: ``scored_metrics`` and every constrained metric."""
        names = [*self.scored_metrics, *(c.metric for c in self.constraints)]
        return tuple(dict.fromkeys(names))

    def vector(self, values: Mapping[str, Any]) -> np.ndarray:
        """The objective values as a minimisation vector (NaN where missing)."""
        out = np.empty(len(self.objectives))
        for i, o in enumerate(self.objectives):
            v = values.get(o.metric)
            out[i] = o.to_min(v) if _is_number(v) else math.nan
        return out

    def matrix(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """Batch ``vector``: one minimisation row per candidate (NaN where missing)."""
        n = _batch_len(values)
        cols = []
        for o in self.objectives:
            col = _column(values, o.metric, n)
            cols.append(col if o.goal == "minimize" else -col)
        return np.column_stack(cols)

    def reference_vector(self) -> np.ndarray:
        """The hypervolume reference point as a minimisation vector.

        Default per metric when the config gives none: an accuracy's worst value (0.0); for
        any other metric the point is left NaN and computed from data by the caller.
        """
        out = np.empty(len(self.objectives))
        for i, o in enumerate(self.objectives):
            if o.metric in self.reference_point:
                out[i] = o.to_min(self.reference_point[o.metric])
            elif o.metric.endswith("accuracy"):
                out[i] = o.to_min(0.0)
            else:
                out[i] = math.nan
        return out

    def violation(self, values: Mapping[str, Any]) -> float:
        """Total amount by which ``values`` break the hard constraints (0 = feasible)."""
        total = 0.0
        for c in self.constraints:
            v = values.get(c.metric)
            total += c.violation(v) if _is_number(v) else math.inf
        return total

    def violations(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """Batch ``violation``: each candidate's total (0 = feasible; missing or NaN: inf)."""
        n = _batch_len(values)
        total = np.zeros(n)
        for c in self.constraints:
            total += c.violations(_column(values, c.metric, n))
        return total

    def feasible(self, values: Mapping[str, Any]) -> bool:
        """Whether ``values`` meet every hard constraint."""
        return self.violation(values) == 0.0

    def score(self, values: Mapping[str, Any]) -> float:
        """One number, higher is better, for single-objective strategies.

        The scalarisation when configured, else the single objective (negated when it is
        minimised). NaN when a needed metric is missing.
        """
        try:
            if self.scalarization is not None:
                s = self.scalarization.score(values)
            else:
                s = -self.objectives[0].to_min(values[self.objectives[0].metric])
        except (KeyError, TypeError, ValueError):
            return math.nan
        return float(s)

    def scores(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """Batch ``score``: one number per candidate, higher is better (NaN where missing)."""
        n = _batch_len(values)
        s = self.scalarization
        if s is not None:
            return s.scores(_column(values, s.metric, n), _column(values, s.cost, n))
        o = self.objectives[0]
        v = _column(values, o.metric, n)
        return v.copy() if o.goal == "maximize" else -v

    def ranking_key(self, values: Mapping[str, Any] | None) -> tuple[float, float]:
        """Sort key, larger is better: feasible first, then by ``score`` (NaN last)."""
        if values is None:
            return (-math.inf, -math.inf)
        s = self.score(values)
        return (-self.violation(values), -math.inf if math.isnan(s) else s)

    def to_json(self) -> dict[str, Any]:
        """A JSON-native description (for reports and state files)."""
        return {
            "objectives": [{"metric": o.metric, "goal": o.goal} for o in self.objectives],
            "constraints": [str(c) for c in self.constraints],
            "scalarization": None
            if self.scalarization is None
            else {
                "kind": self.scalarization.kind,
                "metric": self.scalarization.metric,
                "cost": self.scalarization.cost,
                "target": self.scalarization.target,
                "w": self.scalarization.w,
            },
            "reference_point": dict(self.reference_point),
        }


def _batch_len(values: Mapping[str, np.ndarray]) -> int:
    """The common length of a batch's per-metric arrays (0 for no arrays)."""
    lengths = {len(np.asarray(v)) for v in values.values()}
    if len(lengths) > 1:
        raise ValueError(f"a batch's metric arrays differ in length: {sorted(lengths)}")
    return lengths.pop() if lengths else 0


def _column(values: Mapping[str, np.ndarray], metric: str, n: int) -> np.ndarray:
    """One metric of a batch as floats; all NaN when the batch lacks it (a missing metric)."""
    if metric not in values:
        return np.full(n, math.nan)
    return np.asarray(values[metric], dtype=float).reshape(n)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def make_objectives(
    objectives: Sequence[tuple[str, str]],
    constraints: Sequence[str] = (),
    scalarization: Scalarization | None = None,
    reference_point: Mapping[str, float] | None = None,
) -> Objectives:
    """Convenience constructor from ``(metric, goal)`` pairs and constraint strings."""
    return Objectives(
        tuple(Objective(m, g) for m, g in objectives),
        tuple(parse_constraint(c) for c in constraints),
        scalarization,
        dict(reference_point or {}),
    )


__all__ = [
    "GOALS",
    "Constraint",
    "Objective",
    "Objectives",
    "Scalarization",
    "make_objectives",
    "parse_constraint",
]
