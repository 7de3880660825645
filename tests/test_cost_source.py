"""One cost, one meaning: a predictor must predict what the search reports as ``latency_ms``,
and dedupe never hides a cheaper twin under the active cost source.

Searches run through the real driver loop over the function backend (trials answered by a
Python function) or the tabular backend, with the real NB201 table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from hwnas.driver.function import FunctionBackend
from hwnas.driver.loop import SearchLoop
from hwnas.driver.tabular import (
    NB201Benchmark,
    TabularError,
    run_on_table,
    run_search_on_table,
    table_config,
)
from hwnas.latency.predictor import LatencyPredictor, TableLatencyPredictor, fit_predictor
from hwnas.searchers.config import ConfigError, parse_config
from hwnas.searchers.method import SearchMethod
from hwnas.searchers.strategies.base import Strategy
from hwnas.spaces import get_space
from hwnas.spaces.nb201 import NB201Space
from hwnas.spaces.nb201_table import load_table


@pytest.fixture(scope="module")
def table(nb201_table_file):
    return load_table(nb201_table_file)


@pytest.fixture(autouse=True)
def _packaged_table(monkeypatch, nb201_table_file):
    """``table:<device>`` reads the same table as the fixtures."""
    monkeypatch.setenv("HWNAS_NB201_TABLE", str(nb201_table_file))


def config(**overrides: Any):
    raw: dict[str, Any] = {
        "name": "cost",
        "seed": 1,
        "space": {"name": "nb201", "options": {"C": 8, "N": 1}},
        "objectives": [
            {"metric": "validation_accuracy", "goal": "maximize"},
            {"metric": "latency_ms", "goal": "minimize"},
        ],
        "strategy": {"name": "random"},
        "early_stopping": {"name": "none", "max_length": 2},
        "budget": {"max_trials": 10, "max_concurrent": 2},
    }
    raw.update(overrides)
    return parse_config(raw, "<test>")


def accuracy_only(arch: str, length: int) -> dict[str, Any]:
    """A trial that measures no latency (``latency.enabled: false``)."""
    convs = arch.count("conv")
    return {"validation_accuracy": 0.1 + 0.1 * convs, "epochs": length}


def run(method: SearchMethod, backend) -> SearchMethod:
    loop = SearchLoop(method, backend)
    loop.start()
    assert loop.run() == "shutdown"
    return method


class Scripted(Strategy):
    """Proposes a fixed list, then repeats its last proposal (a duplicate the filter drops)."""

    name = "random"  # stands in for the configured strategy (its state names it)
    multi_objective = True

    def __init__(self, method: SearchMethod, archs: list[str]) -> None:
        super().__init__(method.space, method.objectives, np.random.default_rng(0))
        self.archs = list(archs)

    def ask(self) -> str:
        return self.archs.pop(0) if len(self.archs) > 1 else self.archs[0]


# -- one cost, one meaning ------------------------------------------------------------------
def test_a_predictor_for_another_device_and_network_is_refused():
    """The issue's config: ort-cpu on NB201 C=8, N=1 at 16x16 (digits), pre-filtered with the
    phone's table figures for C=16, N=5 at 32x32. It used to be accepted."""
    cfg = config(
        latency={"backend": "ort-cpu", "predictor": "table:pixel2"}, constraints=["latency_ms <= 5"]
    )
    with pytest.raises(ConfigError) as err:
        SearchMethod(cfg)
    message = str(err.value)
    assert "\n" not in message and message.startswith("latency.predictor: 'table:pixel2'")
    for part in (
        "pixel2 (NB201 table column), but latency_ms comes from backend ort-cpu",
        "space_options {C: 16, N: 5, prune: false} vs {C: 8, N: 1, prune: true}",
        "input_shape 3x32x32 vs 1x16x16",
        "set latency.enabled: false",
    ):
        assert part in message


def test_the_table_device_as_the_objective():
    """``latency.enabled: false`` + ``table:pixel2``: nothing is measured, latency_ms is the
    phone's figure for the network the table describes, and it pre-filters exactly."""
    cfg = config(
        space={"name": "nb201", "options": {"prune": False}},  # C=16, N=5: the table's
        data={"dataset": "cifar10"},
        latency={"enabled": False, "predictor": "table:pixel2"},
        constraints=["latency_ms <= 13"],
        budget={"max_trials": 12, "max_concurrent": 3},
    )
    method = run(SearchMethod(cfg), FunctionBackend(accuracy_only))
    pixel2 = LatencyPredictor.load("table:pixel2")
    assert method.filter.counts["constraint"] > 0
    assert len(method.records()) == 12
    for rec in method.records():
        assert rec.metrics["latency_ms"] == rec.predicted_cost == pixel2.predict(rec.arch) <= 13
        assert rec.metrics["latency_backend"] == "predictor:table:pixel2"
        assert rec.key == rec.arch  # full cells: one key per table row
    assert method.hypervolume() > 0


def test_the_objective_network_must_be_the_tables():
    cfg = config(
        data={"dataset": "cifar10"},
        space={"name": "nb201"},  # pruned: not what the table measured
        latency={"enabled": False, "predictor": "table:raspi4"},
    )
    wrong = r"another network.*prune: false} vs {C: 16, N: 5, prune: true}"
    with pytest.raises(ConfigError, match=wrong):
        SearchMethod(cfg)


def test_a_fitted_predictor_matches_what_it_was_fitted_for(tmp_path):
    """``hwnas latency profile`` records backend, batch and input shape with the space."""
    space = get_space("nb201", C=8, N=1)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(20)]
    meta = {"backend": "ort-cpu", "batch": 1, "input_shape": [1, 16, 16]}
    fitted = fit_predictor(
        "lookup", space, archs, [1.0 + a.count("conv") for a in archs], meta=meta
    )
    path = tmp_path / "pred.json"
    fitted.save(path)
    assert SearchMethod(config(latency={"predictor": str(path)})).filter.cost_predictor
    with pytest.raises(ConfigError, match=r"latency\.predictor: .*: batch 1 vs 4;"):
        SearchMethod(config(latency={"predictor": str(path), "batch": 4}))
    with pytest.raises(ConfigError, match=r"predicts backend ort-cpu, .* backend torch-cpu;"):
        SearchMethod(config(latency={"predictor": str(path), "backend": "torch-cpu"}))
    # A file fitted before NB201 pruned dead edges measured full cells.
    old = fitted.to_dict()
    old["space_options"] = {"C": 8, "N": 1}
    assert LatencyPredictor.from_dict(old).target["space_options"]["prune"] is False


def test_a_cell_without_a_figure(tmp_path):
    """A user's table may lack cells: no figure is no rejection for a pre-filter, and no
    candidate where the figure is the objective (it could not be scored)."""
    from hwnas.searchers.filters import CandidateFilter
    from hwnas.searchers.objectives import make_objectives

    rows = "arch_str,lat_ms_board\n|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|,2.0\n"
    path = tmp_path / "t.csv"
    path.write_text(rows)
    predictor = TableLatencyPredictor("board", table_path=path)
    other = "|avg_pool_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert np.isnan(predictor.predict(other))
    space = NB201Space(prune=False)
    bound = make_objectives([("latency_ms", "minimize")], ["latency_ms <= 1"])
    assert CandidateFilter(space, bound, predictor).check(other)[1] == "accepted"
    objective = CandidateFilter(space, bound, predictor, cost_is_objective=True)
    assert objective.check(other)[1] == "unpriced"


# -- dedupe never hides a cheaper twin --------------------------------------------------------
def twins(table, device: str) -> tuple[str, str, float]:
    """A slow and a fast cell with one pruned key (the same function), and a bound between
    their latencies on ``device``: the table measured both with their dead edges."""
    pruned = NB201Space()
    lat = table.latency(device)
    groups: dict[str, list[int]] = {}
    for row, arch in enumerate(table.archs):
        groups.setdefault(pruned.canonical_key(arch), []).append(row)
    del groups["zero"]  # cells without output: near-zero table figures, no real choice
    rows = max(groups.values(), key=lambda g: lat[g].max() / lat[g].min())
    slow, fast = max(rows, key=lambda r: lat[r]), min(rows, key=lambda r: lat[r])
    return table.archs[slow], table.archs[fast], float(lat[fast] + lat[slow]) / 2


def test_a_slower_twin_tried_first_never_hides_the_feasible_one(table):
    """Tabular backend, tight constraint on raspi4: the slower member of a function group is
    queried first; the feasible member is still proposed, accepted and queried."""
    bench = NB201Benchmark.from_table(table, "cifar10", "raspi4")
    slow, fast, bound = twins(table, "raspi4")
    assert NB201Space().canonical_key(slow) == NB201Space().canonical_key(fast)
    lat = table.latency("raspi4")
    assert lat[table.index_of(slow)] > bound > lat[table.index_of(fast)]
    cfg = config(
        space={"name": "nb201"},
        constraints=[f"latency_ms <= {bound}"],
        early_stopping={"name": "none", "max_length": 200},
        budget={"max_trials": 5, "max_concurrent": 1, "max_consecutive_rejections": 5},
    )
    method = SearchMethod(table_config(cfg), measured=bench.target)
    method.strategy = Scripted(method, [slow, fast])
    result = run_on_table(method, bench, max_queries=5)
    assert [q.arch for q in result.queries] == [slow, fast]
    assert [r.key for r in method.records()] == [slow, fast]  # the row is the key
    assert [r.arch for r in method.pareto_front()] == [fast]  # the feasible twin wins
    # Restored from its records, the dedupe set still tells the two rows apart.
    restored = SearchMethod.from_state(method.state_dict(), measured=bench.target)
    assert restored.filter.seen == {slow, fast}


def test_the_feasible_twin_is_reachable_after_a_restore(table):
    """Objective ``table:raspi4`` with a local backend: the slow twin was tried and saved;
    the restored search still accepts the fast one (its key is its row)."""
    slow, fast, bound = twins(table, "raspi4")
    cfg = config(
        space={"name": "nb201", "options": {"prune": False}},
        data={"dataset": "cifar10"},
        latency={"enabled": False, "predictor": "table:raspi4"},
        constraints=[f"latency_ms <= {bound * 2}"],  # the slow twin may train
        budget={"max_trials": 1, "max_concurrent": 1},
    )
    method = SearchMethod(cfg)
    method.strategy = Scripted(method, [slow])
    run(method, FunctionBackend(accuracy_only))
    restored = SearchMethod.from_state(method.state_dict())
    assert restored.filter.check(slow)[1] == "duplicate"
    assert restored.filter.check(fast)[1] == "accepted"


def test_tabular_searches_the_tables_network(table):
    bench = NB201Benchmark.from_table(table, "cifar10", "raspi4")
    filled = table_config(config(space={"name": "nb201"}))
    assert filled.space.options == {"C": 16, "N": 5, "prune": False}
    with pytest.raises(TabularError, match=r"space.options \{prune: True\}.*prune: false"):
        table_config(config(space={"name": "nb201", "options": {"prune": True}}))
    with pytest.raises(TabularError, match=r"\{C: 8, N: 1\}"):
        run_search_on_table(config(early_stopping={"name": "none", "max_length": 200}), bench)
    # A predictor for the benchmark's own column is exact; another device's is refused.
    same = config(
        space={"name": "nb201"},
        latency={"predictor": "table:raspi4"},
        constraints=["latency_ms <= 20"],
        early_stopping={"name": "none", "max_length": 200},
    )
    method, result = run_search_on_table(same, bench)
    assert all(q.metrics["latency_ms"] <= 20 for q in result.queries)
    assert method.filter.counts["constraint"] > 0
    other = same.model_copy(
        update={"latency": same.latency.model_copy(update={"predictor": "table:pixel2"})}
    )
    with pytest.raises(ConfigError, match=r"predicts pixel2 .* comes from raspi4"):
        run_search_on_table(other, bench)
