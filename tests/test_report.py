"""The Pareto report from trial records: ranking, hypervolume, CSV and plots (no training)."""

from __future__ import annotations

import csv
import json

import pytest

from hwnas.report import compute_front, write_report
from hwnas.searchers.objectives import make_objectives
from hwnas.searchers.records import Result, TrialRecord, TrialStatus

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _objectives(constraints=("latency_ms <= 8",)):
    return make_objectives(
        [("validation_accuracy", "maximize"), ("latency_ms", "minimize")],
        list(constraints),
        reference_point={"validation_accuracy": 0.0, "latency_ms": 10.0},
    )


#: The order results arrived in (it differs from id order; trial 4 is infeasible).
ARRIVAL = [(2, 1), (0, 1), (4, 1), (1, 1), (3, 1), (0, 3), (1, 3), (2, 3), (3, 3), (4, 3)]


def _record(tid, acc, lat, status=TrialStatus.COMPLETED, lengths=(1, 3)):
    results = []
    for n in lengths:  # earlier lengths report lower accuracy: the latest one must count
        metrics = {
            "validation_accuracy": acc * n / max(lengths),
            "latency_ms": lat,
            "params": 100 * tid,
            "latency_backend": "ort-cpu",
        }
        results.append(Result(n, metrics, ARRIVAL.index((tid, n))))
    return TrialRecord(tid, f"arch-{tid}", f"key-{tid}", 0, status=status, results=results)


RECORDS = [
    _record(0, 0.9, 5.0),  # A: front, best accuracy -> rank 1
    _record(1, 0.8, 2.0),  # B: front, rank 2
    _record(2, 0.5, 1.0),  # C: front, rank 3
    _record(3, 0.6, 4.0),  # D: dominated by B
    _record(4, 0.95, 12.0),  # E: best accuracy but breaks latency_ms <= 8
    TrialRecord(5, "arch-5", "key-5", 0, status=TrialStatus.FAILED),  # no metrics
]


def test_front_is_ranked_by_first_objective_and_hypervolume_is_hand_computed():
    front = compute_front(RECORDS, _objectives())
    assert [r.trial_id for r in front.ranked] == [0, 1, 2]
    assert front.feasible == [True, True, True]
    # Area dominated up to (acc 0, latency 10): 0.5*(2-1) + 0.8*(5-2) + 0.9*(10-5) = 7.4
    assert front.hypervolume == pytest.approx(7.4)


def test_without_feasible_trials_the_least_violating_front_is_flagged():
    front = compute_front(RECORDS, _objectives(["latency_ms <= 0.5"]))
    assert [r.trial_id for r in front.ranked] == [2]  # latency 1.0 violates least
    assert front.feasible == [False]
    assert front.hypervolume == 0.0


def test_write_report_files(tmp_path):
    timeline = [  # completion order differs from id order; trial 4 is infeasible
        {"trial_id": 2, "length": 1, "ok": True, "elapsed_s": 1.0},
        {"trial_id": 5, "length": 1, "ok": False, "elapsed_s": 1.5},
        {"trial_id": 0, "length": 1, "ok": True, "elapsed_s": 2.0},
        {"trial_id": 4, "length": 1, "ok": True, "elapsed_s": 2.5},
        {"trial_id": 1, "length": 1, "ok": True, "elapsed_s": 3.0},
        {"trial_id": 3, "length": 1, "ok": True, "elapsed_s": 3.5},
        {"trial_id": 0, "length": 3, "ok": True, "elapsed_s": 5.0},
        {"trial_id": 1, "length": 3, "ok": True, "elapsed_s": 6.0},
        {"trial_id": 2, "length": 3, "ok": True, "elapsed_s": 7.0},
        {"trial_id": 3, "length": 3, "ok": True, "elapsed_s": 8.0},
        {"trial_id": 4, "length": 3, "ok": True, "elapsed_s": 9.0},
    ]
    paths = write_report(RECORDS, tmp_path, _objectives(), timeline=timeline, meta={"name": "unit"})
    assert [p.name for p in paths] == ["pareto.json", "trials.csv", "pareto.png", "hypervolume.png"]
    doc = json.loads((tmp_path / "pareto.json").read_text())
    assert doc["name"] == "unit"
    assert doc["constraints"] == ["latency_ms <= 8"]
    assert doc["reference_point"] == {"validation_accuracy": 0.0, "latency_ms": 10.0}
    assert doc["hypervolume"] == pytest.approx(7.4)
    assert [(m["rank"], m["trial_id"], m["epochs"]) for m in doc["front"]] == [
        (1, 0, 3),
        (2, 1, 3),
        (3, 2, 3),
    ]
    assert doc["front"][0]["metrics"]["validation_accuracy"] == pytest.approx(0.9)
    history = doc["hypervolume_history"]
    assert len(history) == 10  # every successful evaluation, in arrival order
    assert history[0]["hypervolume"] == pytest.approx(1 / 3 * 0.5 * 9)  # C at length 1 alone
    assert history[-1]["hypervolume"] == pytest.approx(7.4)
    assert [h["elapsed_s"] for h in history][:3] == [1.0, 2.0, 2.5]

    with open(tmp_path / "trials.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["trial_id"] for r in rows] == ["0", "1", "2", "3", "4", "5"]
    assert rows[4]["epochs"] == "3" and float(rows[4]["validation_accuracy"]) == pytest.approx(0.95)
    assert rows[5]["status"] == "failed" and rows[5]["validation_accuracy"] == ""
    assert {"latency_ms", "params", "latency_backend"} <= set(rows[0])

    for name in ("pareto.png", "hypervolume.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_report_of_an_empty_search(tmp_path):
    paths = write_report([], tmp_path, _objectives())
    doc = json.loads(paths[0].read_text())
    assert doc["front"] == [] and doc["hypervolume"] == 0.0 and doc["n_trials"] == 0
    assert paths[2].read_bytes().startswith(PNG_MAGIC)


def test_single_objective_report_plots_against_latency(tmp_path):
    objectives = make_objectives([("validation_accuracy", "maximize")])
    paths = write_report(RECORDS, tmp_path, objectives)
    doc = json.loads(paths[0].read_text())
    assert [m["trial_id"] for m in doc["front"]] == [4]  # no constraint: the most accurate
    assert doc["hypervolume"] == pytest.approx(0.95)  # reference: accuracy 0
    assert paths[2].read_bytes().startswith(PNG_MAGIC)
