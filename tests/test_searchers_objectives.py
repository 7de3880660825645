"""Batch forms of ``Objectives`` agree exactly with the scalar forms, row by row."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hwnas.searchers.objectives import Objectives, Scalarization, make_objectives

METRICS = ("validation_accuracy", "latency_ms", "params", "energy")
# Every constraint op, strict and not, on an objective metric and on others.
CONSTRAINTS = ["latency_ms <= 5", "params >= 2", "energy < 3", "validation_accuracy > 0.25"]

CASES = {
    "multi-objective": make_objectives(
        [("validation_accuracy", "maximize"), ("latency_ms", "minimize")], CONSTRAINTS
    ),
    "maximise one": make_objectives([("validation_accuracy", "maximize")], CONSTRAINTS[:2]),
    "minimise one": make_objectives([("latency_ms", "minimize")], CONSTRAINTS[2:]),
    "mnasnet": make_objectives(
        [("validation_accuracy", "maximize"), ("latency_ms", "minimize")],
        CONSTRAINTS,
        Scalarization("validation_accuracy", "latency_ms", target=3.0),
    ),
    "positive exponent": make_objectives(
        [("validation_accuracy", "maximize")],
        scalarization=Scalarization("validation_accuracy", "energy", target=0.7, w=0.5),
    ),
}


def _batch(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Random values with NaN, +-inf, zero, negatives and each constraint's exact bound."""
    specials = np.array([math.nan, math.inf, -math.inf, 0.0, -1.5, 5.0, 2.0, 3.0, 0.25])
    out = {}
    for m in METRICS:
        v = rng.uniform(-1.0, 8.0, n)
        odd = rng.random(n) < 0.3
        v[odd] = rng.choice(specials, odd.sum())
        out[m] = v
    return out


def _row(batch: dict[str, np.ndarray], i: int, drop_nan: bool) -> dict[str, float]:
    """Row ``i`` as the dict a scalar form reads; NaN either kept or left out (missing)."""
    row = {m: float(v[i]) for m, v in batch.items()}
    return {m: v for m, v in row.items() if not (drop_nan and math.isnan(v))}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("drop_nan", [False, True])
def test_batch_forms_agree_with_scalar_forms_on_every_row(name: str, drop_nan: bool):
    objectives: Objectives = CASES[name]
    batch = _batch(np.random.default_rng(7), 600)
    rows = [_row(batch, i, drop_nan) for i in range(600)]

    np.testing.assert_array_equal(
        objectives.violations(batch), [objectives.violation(r) for r in rows]
    )
    np.testing.assert_array_equal(objectives.scores(batch), [objectives.score(r) for r in rows])
    np.testing.assert_array_equal(
        objectives.matrix(batch), np.array([objectives.vector(r) for r in rows])
    )


@pytest.mark.parametrize("name", list(CASES))
def test_a_metric_missing_from_the_whole_batch_reads_as_missing(name: str):
    objectives = CASES[name]
    batch = _batch(np.random.default_rng(3), 50)
    del batch["latency_ms"]
    rows = [_row(batch, i, drop_nan=False) for i in range(50)]
    np.testing.assert_array_equal(
        objectives.violations(batch), [objectives.violation(r) for r in rows]
    )
    np.testing.assert_array_equal(objectives.scores(batch), [objectives.score(r) for r in rows])
    np.testing.assert_array_equal(
        objectives.matrix(batch), np.array([objectives.vector(r) for r in rows])
    )


def test_strict_bounds_break_at_equality_and_nan_never_satisfies():
    objectives = make_objectives([("latency_ms", "minimize")], ["latency_ms < 5"])
    v = objectives.violations({"latency_ms": np.array([4.0, 5.0, 6.0, math.nan])})
    assert v[0] == 0.0 and 0.0 < v[1] < 1e-9 and v[2] == pytest.approx(1.0)
    assert v[3] == math.inf


def test_empty_batches_and_ragged_batches():
    objectives = CASES["multi-objective"]
    empty = {m: np.zeros(0) for m in METRICS}
    assert objectives.violations(empty).shape == (0,)
    assert objectives.scores(empty).shape == (0,)
    assert objectives.matrix(empty).shape == (0, 2)
    with pytest.raises(ValueError, match="differ in length"):
        objectives.violations({"latency_ms": np.zeros(3), "params": np.zeros(2)})
