"""Latency predictors: fit on measured (here: the NB201 table's, or synthetic additive)
latencies, held-out rank quality, JSON save/load round trip, table-backed device predictor."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwnas.latency.predictor import (
    LatencyPredictor,
    TableLatencyPredictor,
    evaluate_predictor,
    fit_predictor,
)
from hwnas.latency.profile import fit_and_evaluate, sample_unique
from hwnas.spaces import get_space
from hwnas.spaces.nb201_table import load_table


@pytest.fixture(scope="module")
def table(nb201_table_file):
    return load_table(nb201_table_file)


def _split(table, device, n_train, n_test=400, seed=0):
    order = np.random.default_rng(seed).permutation(table.num_rows)
    column = table.latency(device)
    train, test = order[:n_train], order[n_train : n_train + n_test]
    return (
        [table.archs[i] for i in train],
        column[train],
        [table.archs[i] for i in test],
        column[test],
    )


@pytest.mark.parametrize(("kind", "floor"), [("lookup", 0.95), ("ridge", 0.95)])
def test_predictors_rank_held_out_cpu_latencies(table, kind, floor):
    space = get_space("nb201")
    train_a, train_y, test_a, test_y = _split(table, "gold_6226", 100)
    predictor = fit_predictor(kind, space, train_a, train_y)
    figures = evaluate_predictor(predictor, test_a, test_y)
    assert figures["spearman"] >= floor
    assert figures["mape"] < 0.10
    assert figures["n"] == 400


def test_save_load_round_trip_predicts_identically(table, tmp_path):
    space = get_space("nb201", C=16, N=5)
    train_a, train_y, test_a, _ = _split(table, "1080ti_1", 60)
    for kind in ("lookup", "ridge"):
        predictor = fit_predictor(kind, space, train_a, train_y, meta={"backend": "table"})
        path = tmp_path / f"{kind}.json"
        predictor.save(path)
        loaded = LatencyPredictor.load(path)
        assert loaded.kind == kind and loaded.meta["backend"] == "table"
        np.testing.assert_array_equal(loaded.predict_many(test_a), predictor.predict_many(test_a))
        assert loaded.predict(test_a[0]) == pytest.approx(predictor.predict(test_a[0]))
        assert "coef" in json.loads(path.read_text())  # plain JSON, no pickle


def test_lookup_recovers_additive_costs_exactly():
    space = get_space("nb201")
    rng = np.random.default_rng(4)
    per_choice = rng.uniform(0.1, 2.0, size=30)
    archs = sample_unique(space, 120, rng)
    y = np.array([space.encode(a) @ per_choice + 1.5 for a in archs])
    predictor = fit_predictor("lookup", space, archs[:80], y[:80])
    np.testing.assert_allclose(predictor.predict_many(archs[80:]), y[80:], rtol=1e-6)


def test_fit_and_evaluate_reports_both_kinds():
    space = get_space("mobilenet")
    rng = np.random.default_rng(5)
    archs = sample_unique(space, 160, rng)
    weights = rng.uniform(0.0, 1.0, size=space.encoding_length())
    y = [float(space.encode(a) @ weights) + 2.0 for a in archs]
    report = fit_and_evaluate(space, archs, y, test_fraction=0.25)
    assert (report["n_train"], report["n_test"]) == (120, 40)
    for kind in ("lookup", "ridge"):
        assert report["kinds"][kind]["held_out"]["spearman"] > 0.9
        assert report["kinds"][kind]["predictor"].meta["n_train"] == 160  # refit on all


def test_table_predictor_reads_named_device(table, nb201_table_file):
    predictor = LatencyPredictor.load("table:pixel2")
    assert isinstance(predictor, TableLatencyPredictor)
    arch = table.archs[1]
    assert predictor.predict(arch) == pytest.approx(float(table.latency("pixel2")[1]))
    with pytest.raises(ValueError, match=r"no device 'tpu'.*pixel2"):
        TableLatencyPredictor("tpu", table_path=nb201_table_file)


def test_bad_inputs_are_named(tmp_path):
    space = get_space("nb201")
    archs = sample_unique(space, 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="positive"):
        fit_predictor("lookup", space, archs, [1.0] * 9 + [-1.0])
    with pytest.raises(ValueError, match="unknown predictor kind 'forest'"):
        fit_predictor("forest", space, archs, [1.0] * 10)
    bad = tmp_path / "p.json"
    bad.write_text('{"kind": "lookup"}')
    with pytest.raises(ValueError, match=r"p\.json.*not a latency predictor"):
        LatencyPredictor.load(bad)
    with pytest.raises(ValueError, match="does not exist"):
        LatencyPredictor.load(tmp_path / "missing.json")
