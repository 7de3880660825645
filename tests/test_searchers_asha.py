"""ASHA and MO-ASHA promotions against hand-computed schedules."""

from __future__ import annotations

import json

import pytest

from hwnas.searchers.asha import ASHA, rung_lengths
from hwnas.searchers.early_stopping import Decision, Observation, make_stopper
from hwnas.searchers.objectives import make_objectives

ACC = make_objectives([("validation_accuracy", "maximize")])
MO = make_objectives([("validation_accuracy", "maximize"), ("latency_ms", "minimize")])


def test_rung_lengths():
    assert rung_lengths(1, 9, 3) == [1, 3, 9]
    assert rung_lengths(1, 10, 3) == [1, 3, 9, 10]
    assert rung_lengths(2, 16, 2) == [2, 4, 8, 16]
    assert rung_lengths(5, 5, 3) == [5]
    with pytest.raises(ValueError, match="reduction_factor"):
        rung_lengths(1, 9, 1)


def test_single_objective_schedule_by_hand():
    """eta=3, rungs 1/3/9. Results arrive one at a time at rung 1:

    t1 .50 -> n=1, k=0: none.  t2 .70 -> n=2: none.  t3 .60 -> n=3, k=1: top1 = t2 (promote
    t2, not the reporter).  t4 .90 -> n=4, k=1: top1 = t4 -> promote t4.  t5 .10 -> n=5, k=1:
    t4 already promoted -> none.  t6 .65 -> n=6, k=2: top2 = t4, t2 (both promoted) -> none.
    t7 .80 -> n=7, k=2: top2 = t4, t7 -> promote t7.
    Rung 3: t2 .71 -> n=1 none; t4 .95 -> none; t7 .85 -> n=3, k=1: top1 = t4 -> promote t4.
    """
    asha = ASHA(ACC, 9, min_length=1, reduction_factor=3, multi_objective=False)
    got = [
        asha.record(t, 1, {"validation_accuracy": a})
        for t, a in [(1, 0.5), (2, 0.7), (3, 0.6), (4, 0.9), (5, 0.1), (6, 0.65), (7, 0.8)]
    ]
    assert got == [[], [], [2], [4], [], [], [7]]
    got = [
        asha.record(t, 3, {"validation_accuracy": a}) for t, a in [(2, 0.71), (4, 0.95), (7, 0.85)]
    ]
    assert got == [[], [], [4]]
    assert asha.record(4, 9, {"validation_accuracy": 0.97}) == []  # last rung: no promotion
    assert asha.next_length(1) == 3 and asha.next_length(9) is None
    assert 4 in asha.rungs[0].promoted and 4 in asha.rungs[1].promoted
    assert 5 not in asha.rungs[0].promoted


def test_constraints_rank_infeasible_last():
    obj = make_objectives([("validation_accuracy", "maximize")], ["latency_ms <= 2"])
    asha = ASHA(obj, 9, min_length=1, reduction_factor=3, multi_objective=False)
    asha.record(1, 1, {"validation_accuracy": 0.99, "latency_ms": 5.0})  # infeasible
    asha.record(2, 1, {"validation_accuracy": 0.40, "latency_ms": 1.0})
    assert asha.record(3, 1, {"validation_accuracy": 0.30, "latency_ms": 1.5}) == [2]


def test_multi_objective_promotes_by_rank_then_crowding():
    """MO-ASHA, eta=3, minimisation vectors (-acc, lat):

    t1 (.9, 5) t2 (.5, 1) t3 (.4, 4): t3 is dominated by t2; front {t1, t2}, both boundary
    points (infinite crowding), tie -> lower id: promote t1.
    t4 (.7, 3), t5 (.3, 6), t6 (.6, 2): n=6, k=2. Front {t1, t2, t4, t6}; crowding of the
    boundary points t1, t2 is infinite -> top2 = t1, t2: promote t2.
    """
    asha = ASHA(MO, 9, min_length=1, reduction_factor=3, multi_objective=True)
    pts = [(1, 0.9, 5), (2, 0.5, 1), (3, 0.4, 4), (4, 0.7, 3), (5, 0.3, 6), (6, 0.6, 2)]
    got = [asha.record(t, 1, {"validation_accuracy": a, "latency_ms": lat}) for t, a, lat in pts]
    assert got == [[], [], [1], [], [], [2]]
    # Three more dominated points: k=3 -> the front member with the larger crowding distance.
    # Front sorted by latency: t2 (1), t6 (2), t4 (3), t1 (5). Crowding (normalised spans
    # acc .4, lat 4): t6 = (.7-.5)/.4 + (3-1)/4 = 1.0; t4 = (.9-.6)/.4 + (5-2)/4 = 1.5 -> t4.
    got = [asha.record(t, 1, {"validation_accuracy": 0.1, "latency_ms": 9.0}) for t in (7, 8, 9)]
    assert got == [[], [], [4]]


def test_rebuilt_from_results_and_state_continues_identically():
    """The rungs come back from the results (the trial records), the promotions from the
    state: the rebuilt stopper decides exactly as the one never stopped."""
    a = ASHA(MO, 9, min_length=1, reduction_factor=3, multi_objective=True)
    seen = []
    for t in range(1, 8):
        metrics = {"validation_accuracy": (t * 37 % 10) / 10, "latency_ms": float(t % 4)}
        a.record(t, 1, metrics)
        seen.append(Observation(len(seen), t, 1, metrics))
    assert "vectors" not in json.dumps(a.state_dict())  # results are not stored twice
    b = ASHA(MO, 9, min_length=1, reduction_factor=3, multi_objective=True)
    b.rebuild(seen)
    b.load_state_dict(json.loads(json.dumps(a.state_dict(), allow_nan=False)))
    for t in range(8, 20):
        metrics = {"validation_accuracy": (t * 37 % 10) / 10, "latency_ms": float(t % 4)}
        assert a.record(t, 1, metrics) == b.record(t, 1, metrics)
    assert a.state_dict() == b.state_dict()


def test_missing_metric_ranks_last_and_bad_length_fails():
    asha = ASHA(MO, 9, min_length=1, reduction_factor=3, multi_objective=True)
    asha.record(1, 1, {"validation_accuracy": 0.9})  # no latency
    asha.record(2, 1, {"validation_accuracy": 0.1, "latency_ms": 9.0})
    assert asha.record(3, 1, {"validation_accuracy": 0.2, "latency_ms": 8.0}) == [3]
    with pytest.raises(ValueError, match="not a rung length"):
        asha.record(4, 2, {"validation_accuracy": 0.5})


def test_decisions_continue_pause_and_promote_others():
    asha = ASHA(ACC, 9, min_length=1, reduction_factor=3, multi_objective=False)
    assert asha.first_length == 1
    assert asha.on_result(1, 1, {"validation_accuracy": 0.5}) == Decision("pause")
    assert asha.on_result(2, 1, {"validation_accuracy": 0.7}) == Decision("pause")
    # t3 is worse: t2, paused, is promoted to the next rung.
    assert asha.on_result(3, 1, {"validation_accuracy": 0.6}) == Decision("pause", None, ((2, 3),))
    assert asha.on_result(4, 1, {"validation_accuracy": 0.9}) == Decision("continue", 3)
    assert asha.on_result(4, 9, {"validation_accuracy": 0.95}).action == "stop"


def test_stoppers_are_chosen_by_name():
    none = make_stopper("none", ACC, 7)
    assert none.first_length == 7 and none.on_result(1, 7, {}).action == "stop"
    assert make_stopper("mo-asha", MO, 9, {"min_length": 3}).lengths == [3, 9]
    assert make_stopper("asha", ACC, 9).multi_objective is False
    with pytest.raises(ValueError, match="known: "):
        make_stopper("hyperband", ACC, 9)
    with pytest.raises(ValueError, match="min_length"):
        make_stopper("asha", ACC, 2, {"min_length": 3})
