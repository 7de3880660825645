"""Pareto maths and objectives against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hwnas.searchers.objectives import Scalarization, make_objectives, parse_constraint
from hwnas.searchers.pareto import (
    crowding_distance,
    hypervolume,
    nondominated_mask,
    pareto_ranks,
    rank_and_crowding_order,
    reference_point,
)

F = np.array([[1, 5], [2, 3], [3, 4], [4, 1], [np.nan, 0], [0.5, 9]], dtype=float)


def test_front_and_ranks():
    assert nondominated_mask(F).tolist() == [True, True, False, True, False, True]
    assert pareto_ranks(F).tolist() == [0, 0, 1, 0, 2, 0]


def test_hypervolume_by_hand():
    # Staircase of (0.5,9),(1,5),(2,3),(4,1) under ref (10,10), row 3 dominated, NaN ignored:
    # 0.5*1 + 1*5 + 2*7 + 6*9 = 0.5 + 5 + 14 + 54 = 73.5
    assert hypervolume(F, np.array([10.0, 10.0])) == pytest.approx(73.5)
    assert hypervolume(F, np.array([0.0, 0.0])) == 0.0  # nothing dominates the reference
    assert hypervolume(np.zeros((0, 2)), np.array([1.0, 1.0])) == 0.0


def test_crowding_distance_by_hand():
    pts = np.array([[0.0, 4.0], [1.0, 2.0], [2.0, 1.0], [4.0, 0.0]])
    d = crowding_distance(pts)
    assert math.isinf(d[0]) and math.isinf(d[3])
    assert d[1] == pytest.approx((2 - 0) / 4 + (4 - 1) / 4)
    assert d[2] == pytest.approx((4 - 1) / 4 + (2 - 0) / 4)


def test_constrained_crowded_order():
    viol = np.array([0, 0, 0, 0, 0, 1.0])
    # feasible front {0, 1, 3}: boundaries 0 and 3 first (by index), then 1; then rank 1 (2);
    # then the infeasible row 5; the NaN row 4 last.
    assert rank_and_crowding_order(F, viol).tolist() == [0, 3, 1, 2, 5, 4]


def test_objectives_vector_score_and_feasibility():
    obj = make_objectives(
        [("validation_accuracy", "maximize"), ("latency_ms", "minimize")], ["latency_ms <= 5"]
    )
    vals = {"validation_accuracy": 0.8, "latency_ms": 4.0}
    assert obj.vector(vals).tolist() == [-0.8, 4.0]
    assert obj.feasible(vals) and not obj.feasible({**vals, "latency_ms": 6.0})
    assert obj.violation({**vals, "latency_ms": 6.0}) == pytest.approx(1.0)
    assert not obj.feasible({"validation_accuracy": 0.8})  # missing constrained metric
    assert obj.score(vals) == pytest.approx(0.8)


def test_mnasnet_scalarization():
    s = Scalarization("validation_accuracy", "latency_ms", target=5.0, w=-0.07)
    assert s.score({"validation_accuracy": 0.8, "latency_ms": 5.0}) == pytest.approx(0.8)
    slower = s.score({"validation_accuracy": 0.8, "latency_ms": 10.0})
    assert slower == pytest.approx(0.8 * 2**-0.07) and slower < 0.8


@pytest.mark.parametrize(
    "text",
    [
        "latency_ms <= 5 or 1",
        "__import__('os')",
        "latency_ms == 5",
        "5 >= latency_ms",
        "latency_ms <= inf",
        "",
    ],
)
def test_constraint_parser_is_strict(text: str):
    with pytest.raises(ValueError):
        parse_constraint(text)


def test_constraint_parser_accepts_numbers():
    c = parse_constraint("  latency_ms<1.5e1 ")
    assert (c.metric, c.op, c.bound) == ("latency_ms", "<", 15.0)
    assert c.satisfied(14.9) and not c.satisfied(15.0) and not c.satisfied(float("nan"))


def test_reference_point_rules():
    obj = make_objectives(
        [("validation_accuracy", "maximize"), ("latency_ms", "minimize")], ["latency_ms <= 5"]
    )
    assert reference_point(obj).tolist() == [0.0, 5.0]  # accuracy default, constraint bound
    obj = make_objectives([("validation_accuracy", "maximize"), ("params", "minimize")])
    ref = reference_point(obj, np.array([[-0.5, 100.0], [-0.7, 300.0]]))
    assert ref.tolist() == pytest.approx([0.0, 320.0])  # worst seen + 10% of the range
    obj = make_objectives([("latency_ms", "minimize")], reference_point={"latency_ms": 50})
    assert reference_point(obj).tolist() == [50.0]


def test_vectorised_crowding_and_top_k_match_the_plain_versions():
    from hwnas.searchers.pareto import crowding_distance, grouped_crowding_distance, top_k

    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(1, 60))
        pts = rng.integers(0, 6, size=(n, 2)).astype(float)  # many ties and many fronts
        viol = np.where(rng.random(n) < 0.2, rng.random(n), 0.0)
        ranks = pareto_ranks(pts)
        grouped = grouped_crowding_distance(pts, ranks)
        for r in np.unique(ranks):
            members = np.flatnonzero(ranks == r)
            np.testing.assert_allclose(grouped[members], crowding_distance(pts[members]))
        for k in (1, n // 3, n // 2, n):
            expected = set(rank_and_crowding_order(pts, viol)[:k].tolist())
            assert set(top_k(pts, viol, k).tolist()) == expected, (trial, k)
