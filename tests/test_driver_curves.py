"""The curve backend: learning curves answer the real search method and driver loop, so early
stoppers run at table speed; epochs are counted as a real backend spends them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hwnas.driver.curves import (
    CurveBackend,
    CurveError,
    CurveRow,
    CurveTable,
    load_curve_table,
    run_on_curves,
)
from hwnas.searchers.config import parse_config
from hwnas.searchers.method import SearchMethod
from hwnas.searchers.records import TrialStatus
from hwnas.spaces import get_space

OPTIONS = {"C": 8, "N": 1}
EPOCHS = 9


def synthetic_table(n: int = 30, seeds: int = 1) -> CurveTable:
    """``n`` NB201 architectures with saturating curves whose ranking never changes:
    architecture i ends at accuracy 0.5 + 0.4 * q_i, FLOPs growing with i."""
    space = get_space("nb201", **OPTIONS)
    rng = np.random.default_rng(3)
    archs: list[str] = []
    while len(archs) < n:
        arch = space.sample(rng)
        if space.canonical_key(arch) not in {space.canonical_key(a) for a in archs}:
            archs.append(arch)
    quality = rng.permutation(n) / (n - 1)
    rows = []
    for i, arch in enumerate(archs):
        for s in range(seeds):
            final = 0.5 + 0.4 * quality[i] + 0.01 * s
            curve = tuple(
                {
                    "epoch": e,
                    "validation_accuracy": final * (1 - math.exp(-e / 2)),
                    "epoch_time_s": 1.0 + i / n,
                }
                for e in range(1, EPOCHS + 1)
            )
            rows.append(CurveRow(arch, s, {"flops": 1e6 * (1 + i)}, curve))
    return CurveTable("nb201", OPTIONS, rows, max_epochs=EPOCHS)


def config(table: CurveTable, stopper: str, **overrides: Any) -> Any:
    es = {"name": stopper, "max_length": EPOCHS}
    if stopper != "none":
        es.update(min_length=1, reduction_factor=3)
    raw = {
        "seed": 1,
        "space": {"name": "nb201", "options": OPTIONS},
        "objectives": [
            {"metric": "validation_accuracy", "goal": "maximize"},
            {"metric": "flops", "goal": "minimize"},
        ],
        "strategy": {"name": "random", "options": {"archs": table.archs}},
        "early_stopping": es,
        "budget": {"max_trials": len(table), "max_concurrent": 2},
        "latency": {"enabled": False},
        **overrides,
    }
    return parse_config(raw)


def test_asha_over_curves_stops_most_trials_early_and_trains_the_best_to_the_end() -> None:
    table = synthetic_table()
    method = SearchMethod(config(table, "asha"))
    result = run_on_curves(method, table, max_concurrent=2)
    records = method.records()
    assert result.reason == "shutdown" and len(records) == len(table)  # the whole pool
    lengths = [r.length for r in records]
    assert set(lengths) == {1, 3, 9}  # ASHA's rungs at eta = 3
    assert lengths.count(1) >= len(table) // 2
    # Each run resumes its trial: it pays only the epochs it adds to its checkpoint.
    assert result.epochs == sum(lengths) < len(table) * EPOCHS
    assert sum(run["epochs"] for run in result.runs) == result.epochs
    # Curves keep their ranking here, so the pool's best architecture is trained to the end.
    final = table.final()
    best = max(final, key=final.get)
    (rec,) = [r for r in records if r.arch == best]
    assert rec.status is TrialStatus.COMPLETED and rec.length == EPOCHS
    # What the method filed is the curve's entry at each length.
    row = table.row(best, 0)
    for res in rec.results:
        expected = row.curve[res.length - 1]["validation_accuracy"]
        assert res.metrics["validation_accuracy"] == expected
        assert res.metrics["epochs"] == res.length and res.metrics["flops"] == row.metrics["flops"]
    # The simulated clock ran the recorded epoch times on two workers.
    serial = sum(c["epoch_time_s"] for r in records for c in table.row(r.arch, 0).curve[: r.length])
    assert 0 < result.sim_time_s < serial


def test_an_epoch_budget_ends_the_search_and_full_training_pays_every_epoch() -> None:
    table = synthetic_table()
    method = SearchMethod(config(table, "none"))
    result = run_on_curves(method, table, max_concurrent=2, max_epochs=4 * EPOCHS)
    assert result.epochs == 4 * EPOCHS
    assert [r.length for r in method.records() if r.results] == [EPOCHS] * 4
    assert result.reason == "backend budget spent"
    # ASHA under the same budget looks at many more architectures.
    asha = SearchMethod(config(table, "mo-asha"))
    spent = run_on_curves(asha, table, max_concurrent=2, max_epochs=4 * EPOCHS)
    assert 4 * EPOCHS <= spent.epochs < 4 * EPOCHS + EPOCHS  # the last run may overshoot
    assert sum(1 for r in asha.records() if r.results) > 4


def test_an_architecture_missing_from_the_table_is_an_invalid_trial() -> None:
    table = synthetic_table(n=6)
    space = get_space("nb201", **OPTIONS)
    outside = next(
        a
        for a in (space.sample(np.random.default_rng(s)) for s in range(100))
        if a not in table.archs
    )
    cfg = config(table, "none", strategy={"name": "random", "options": {"archs": [outside]}})
    method = SearchMethod(cfg)
    run_on_curves(method, table)
    (rec,) = method.records()
    assert rec.status is TrialStatus.INVALID and "not in the curve table" in rec.message


def test_table_round_trips_and_bad_files_name_the_field(tmp_path: Path) -> None:
    table = synthetic_table(n=4, seeds=2)
    table.save(tmp_path / "t.json")
    again = load_curve_table(tmp_path / "t.json")
    assert again.archs == table.archs and again.max_epochs == EPOCHS
    assert [r.to_json() for r in again.rows] == [r.to_json() for r in table.rows]
    # Which of an architecture's curves a search sees depends on the noise seed alone.
    arch = table.archs[0]
    picks = {table.row(arch, s).seed for s in range(20)}
    assert picks == {0, 1} and table.row(arch, 5) == again.row(arch, 5)
    running = table.with_metric("validation_accuracy", "epoch_time_s")
    assert running.observe(running.row(arch, 0), 2)["validation_accuracy"] == pytest.approx(
        table.row(arch, 0).curve[1]["epoch_time_s"]
    )

    data = json.loads((tmp_path / "t.json").read_text())
    data["rows"][1]["curve"] = data["rows"][1]["curve"][:3]
    (tmp_path / "short.json").write_text(json.dumps(data))
    with pytest.raises(CurveError, match=r"short\.json: rows\[1\].*3 epochs"):
        load_curve_table(tmp_path / "short.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "nb201"}))
    with pytest.raises(CurveError, match="not a curve table"):
        load_curve_table(tmp_path / "other.json")
    with pytest.raises(CurveError, match="ends at 9"):
        backend = CurveBackend(table)
        backend.create(1, {"space": "nb201", "arch": arch})
        backend.answer(1, {}, EPOCHS + 1)


def test_random_search_over_a_list_needs_a_non_empty_list() -> None:
    from hwnas.searchers.config import ConfigError

    table = synthetic_table(n=3)
    with pytest.raises(ConfigError, match="archs"):
        config(table, "none", strategy={"name": "random", "options": {"archs": []}})
