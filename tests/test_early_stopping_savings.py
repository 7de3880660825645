"""The savings benchmark's replay and yardstick on a synthetic curve table (a quick check that
the script measures what it says; the real tables come from benchmarks/rank_fidelity.py)."""

from __future__ import annotations

import pytest

from benchmarks.early_stopping_savings import Yardstick, replay
from tests.test_driver_curves import EPOCHS, synthetic_table


def test_replay_spends_the_budget_and_scores_what_was_trained() -> None:
    table = synthetic_table()
    truth = Yardstick(table)
    assert truth.hypervolume({a: EPOCHS for a in table.archs}) == pytest.approx(truth.hv)
    budget = 6 * EPOCHS
    none = replay(table, truth, "none", seed=0, budget=budget, concurrency=2)
    assert none["epochs"] == budget and none["trials"] == none["full_length"] == 6
    asha = replay(table, truth, "asha", seed=0, budget=budget, concurrency=2)
    assert budget <= asha["epochs"] < budget + EPOCHS
    assert asha["trials"] > none["trials"] > 0
    for result in (none, asha):
        assert 0.0 < result["hv_ratio"] <= 1.0
        assert 0.0 < result["best_accuracy"] <= truth.best
    # With the whole table trained to the end, the yardstick's own front is reached.
    everything = replay(table, truth, "none", seed=0, budget=10_000, concurrency=2)
    assert everything["hv_ratio"] == pytest.approx(1.0)
    assert everything["found_best"] == 1.0 and everything["best_accuracy"] == truth.best
