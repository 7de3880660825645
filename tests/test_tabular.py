"""Tabular runner: query model, simulated clock, dedupe, full-fidelity rule, end-to-end runs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from hwnas.driver.tabular import (
    NB201Benchmark,
    SimulatedWorkers,
    TabularError,
    load_benchmark,
    run_on_table,
    run_search_on_table,
)
from hwnas.searchers.config import parse_config
from hwnas.searchers.operations import Close, Create, ExitReason, Operation, ValidateAfter
from hwnas.spaces.nb201_table import TableError, load_table

LENGTH = 200


@pytest.fixture(scope="module")
def table(nb201_table_file):
    return load_table(nb201_table_file)


@pytest.fixture(scope="module")
def small(table) -> dict[str, Any]:
    """The first 60 rows of every column: a small slice of the table."""
    return {name: table[name][:60] for name in table}


@pytest.fixture(scope="module")
def bench(table) -> NB201Benchmark:
    return NB201Benchmark.from_table(table, "cifar10", "raspi4")


class ScriptedMethod:
    """A minimal search method proposing a fixed list of architectures, one at a time
    (or ``concurrent`` at first), recording every event it receives."""

    def __init__(self, archs: list[str], concurrent: int = 1, length: int = LENGTH) -> None:
        self.archs = list(archs)
        self.concurrent = concurrent
        self.length = length
        self.next_id = 1
        self.completed: list[tuple[int, dict[str, Any], int]] = []
        self.exited: list[tuple[int, ExitReason, str]] = []
        self.closed: list[int] = []

    def _create(self) -> list[Operation]:
        if not self.archs:
            return []
        tid = self.next_id
        self.next_id += 1
        hp = {"space": "nb201", "arch": self.archs.pop(0), "training": {"max_epochs": 200}}
        return [Create(tid, hp), ValidateAfter(tid, self.length)]

    def initial_operations(self) -> list[Operation]:
        return [op for _ in range(self.concurrent) for op in self._create()]

    def on_trial_created(self, trial_id: int) -> list[Operation]:
        return []

    def on_validation_completed(
        self, trial_id: int, metrics: dict[str, Any], length: int
    ) -> list[Operation]:
        self.completed.append((trial_id, metrics, length))
        return [Close(trial_id), *self._create()]

    def on_trial_closed(self, trial_id: int) -> list[Operation]:
        self.closed.append(trial_id)
        return []

    def on_trial_exited_early(
        self, trial_id: int, reason: ExitReason, message: str = ""
    ) -> list[Operation]:
        self.exited.append((trial_id, reason, message))
        return self._create()


def _config(strategy: str = "evolution", seed: int = 3, trials: int = 30, **extra: Any):
    raw = {
        "seed": seed,
        "space": {"name": "nb201"},
        "data": {"dataset": "cifar10"},
        "strategy": {"name": strategy},
        "early_stopping": {"name": "none", "max_length": LENGTH},
        "budget": {"max_trials": trials, "max_concurrent": 1},
        "latency": {"enabled": False},
        **extra,
    }
    return parse_config(raw)


# -- query model ---------------------------------------------------------------------------------
def test_query_model_columns_and_seeded_noise(small):
    b = NB201Benchmark.from_table(small, "cifar100", "eyeriss")
    assert len(b) == 60
    row = 7
    seeds = [float(x) for x in small["c100_valid_seeds"][row]]
    m = b.observe(row, noise_seed=11, length=LENGTH)
    assert set(m) == {
        "validation_accuracy",
        "latency_ms",
        "latency_backend",
        "params",
        "epochs",
        "train_time_s",
    }  # no test accuracy reaches the searcher
    assert min(abs(m["validation_accuracy"] * 100 - s) for s in seeds) < 1e-9
    assert m["latency_ms"] == pytest.approx(float(small["lat_ms_eyeriss"][row]))
    assert m["params"] == pytest.approx(float(small["params_mb"][row]) * 1e6)
    assert m["train_time_s"] == pytest.approx(float(small["train_time_s"][row]))
    assert m["epochs"] == LENGTH
    assert b.test_accuracy(row) == pytest.approx(float(small["c100_test"][row]))
    # The same (seed, row) always draws the same training seed; over many seeds every
    # training seed of the row shows up (noise like a real run).
    assert b.seed_accuracy(row, 11) == b.seed_accuracy(row, 11)
    drawn = {b.seed_accuracy(row, s) for s in range(60)}
    assert drawn == set(seeds)


def test_query_model_rejects_unknown_dataset_device_and_arch(small):
    with pytest.raises(TabularError, match="dataset 'imagenet'"):
        NB201Benchmark.from_table(small, "imagenet", "raspi4")
    with pytest.raises(TabularError, match=r"device 'tpu'.*raspi4"):
        NB201Benchmark.from_table(small, "cifar10", "tpu")
    b = NB201Benchmark.from_table(small, "cifar10", "raspi4")
    absent = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    if absent in small["arch_str"]:
        pytest.skip("slice unexpectedly holds the all-none cell")
    from hwnas.spaces import ArchitectureError

    with pytest.raises(ArchitectureError, match="not in the NB201 table"):
        b.row_of(absent)


# -- simulated clock ----------------------------------------------------------------------------
def test_simulated_workers_run_concurrently_and_finish_in_order():
    w = SimulatedWorkers(2)
    w.start("a", 5.0)
    w.start("b", 3.0)
    assert w.free == 0
    with pytest.raises(RuntimeError):
        w.start("c", 1.0)
    assert w.pop_next() == (0.0, 3.0, "b")
    assert w.now == 3.0
    w.start("c", 1.0)  # starts when b's worker frees up
    assert w.pop_next() == (3.0, 4.0, "c")
    w.start("d", 1.0)  # finishes at 5.0, tied with a: a started first, so it comes first
    assert w.pop_next() == (0.0, 5.0, "a")
    assert w.pop_next() == (4.0, 5.0, "d")
    assert w.busy == 0
    with pytest.raises(ValueError):
        SimulatedWorkers(0)


def test_runner_clock_with_concurrent_workers(bench):
    archs = [bench.arch_strs[i] for i in (10, 200, 3000, 4000, 5000, 6000, 7000)]
    method = ScriptedMethod(archs, concurrent=3)
    result = run_on_table(method, bench, max_queries=7, max_concurrent=3, seed=0)
    assert len(result.queries) == 7
    finishes = [q.finish_s for q in result.queries]
    assert finishes == sorted(finishes)  # delivered in simulated finishing order
    for q in result.queries:
        assert q.finish_s - q.start_s == pytest.approx(bench.train_time_s[q.row])
    # never more than 3 trials running at any simulated moment
    for t in {q.start_s for q in result.queries}:
        assert sum(q.start_s <= t < q.finish_s for q in result.queries) <= 3
    total = sum(bench.train_time_s[q.row] for q in result.queries)
    assert max(finishes) == result.sim_time_s < total
    # the first three start together at t=0
    assert sorted(q.start_s for q in result.queries)[:3] == [0.0, 0.0, 0.0]


# -- dedupe, invalid trials, fidelity -----------------------------------------------------------
def test_duplicates_never_consume_a_query(bench):
    a, b_, c = (bench.arch_strs[i] for i in (1, 2, 3))
    method = ScriptedMethod([a, b_, a, c, b_, a])
    result = run_on_table(method, bench, max_queries=3, seed=5)
    assert [q.arch for q in result.queries] == [a, b_, c]
    assert result.duplicates == 3
    by_trial = {tid: m for tid, m, _ in method.completed}
    assert by_trial[3] == by_trial[1]  # the duplicate saw the earlier query's result
    assert sorted(method.closed) == [1, 2, 3, 4, 5, 6]


def test_concurrent_duplicate_waits_for_the_running_query(bench):
    a = bench.arch_strs[42]
    method = ScriptedMethod([a, a], concurrent=2)
    result = run_on_table(method, bench, max_queries=5, max_concurrent=2, seed=1)
    assert len(result.queries) == 1 and result.duplicates == 1
    assert method.completed[0][1] == method.completed[1][1]


def test_invalid_architecture_exits_early_without_a_query(bench):
    good = bench.arch_strs[9]
    method = ScriptedMethod(["|conv~0|+|bad|", good])
    result = run_on_table(method, bench, max_queries=4, seed=0)
    assert result.invalid == 1 and len(result.queries) == 1
    ((tid, reason, message),) = method.exited
    assert tid == 1 and reason == ExitReason.INVALID_HP and "node" in message
    assert 1 in method.closed


def test_partial_length_is_refused(bench):
    method = ScriptedMethod([bench.arch_strs[5]], length=3)
    with pytest.raises(TabularError, match="full-length"):
        run_on_table(method, bench, max_queries=2)
    with pytest.raises(TabularError, match=r"early_stopping\.name: none"):
        run_search_on_table(_config(early_stopping={"name": "asha", "max_length": 200}), bench)


# -- end to end with the real search method -----------------------------------------------------
def test_search_method_end_to_end(bench):
    method, result = run_search_on_table(_config("evolution", seed=3, trials=30), bench)
    assert len(result.queries) == 30 and result.duplicates == 0 and result.invalid == 0
    assert method.shut_down and result.shutdown
    records = method.records()
    assert len(records) == 30 and all(r.status == "completed" for r in records)
    assert all("test_accuracy" not in r.metrics for r in records)
    assert len({q.row for q in result.queries}) == 30
    seen = {r.arch: r.metrics["validation_accuracy"] for r in records}
    for q in result.queries:
        assert seen[q.arch] == q.metrics["validation_accuracy"]
        assert 0.0 <= q.metrics["validation_accuracy"] <= 1.0
    assert result.sim_time_s == pytest.approx(
        sum(bench.train_time_s[q.row] for q in result.queries)
    )


def test_multi_objective_run_and_reproducibility(bench):
    objectives = [
        {"metric": "validation_accuracy", "goal": "maximize"},
        {"metric": "latency_ms", "goal": "minimize"},
    ]
    cfg = _config("nsga2", seed=7, trials=25, objectives=objectives)
    m1, r1 = run_search_on_table(cfg, bench)
    m2, r2 = run_search_on_table(cfg, bench)
    assert r1.rows == r2.rows and r1.observed_accuracy == r2.observed_accuracy
    assert [q.finish_s for q in r1.queries] == [q.finish_s for q in r2.queries]
    assert m1.pareto_front() and m1.pareto_front() == m2.pareto_front()
    _, r3 = run_search_on_table(_config("nsga2", seed=8, trials=25, objectives=objectives), bench)
    assert r3.rows != r1.rows
    # max_queries caps the run below the method's own budget
    _, r4 = run_search_on_table(cfg, bench, max_queries=10)
    assert r4.rows == r1.rows[:10]
    assert np.all(np.isfinite(r1.observed_accuracy))


def test_load_benchmark_by_path(nb201_table_file, tmp_path):
    b = load_benchmark(nb201_table_file, "cifar100", "pixel2")
    assert len(b) == 15_625 and (b.dataset, b.device) == ("cifar100", "pixel2")
    with pytest.raises(TableError, match="does not exist"):
        load_benchmark(tmp_path / "missing.csv.gz")


def test_a_method_that_only_repeats_is_stopped(bench):
    a, b_ = bench.arch_strs[11], bench.arch_strs[12]
    method = ScriptedMethod([a, b_] + [a] * 20)
    result = run_on_table(method, bench, max_queries=10, max_duplicates=4, seed=0)
    assert result.stalled and not result.shutdown
    assert [q.arch for q in result.queries] == [a, b_]
    assert result.duplicates == 5  # the fifth repeat ends the run


# -- users' own tables -------------------------------------------------------------------------
def _write_user_table(path, *, with_in16_test: bool = True) -> None:
    """A synthetic table over the whole space in the documented format: CIFAR-10, a third
    dataset (ImageNet16-120 as ``in16``, three seeds) and a device of the user's own."""
    import csv
    import gzip

    from hwnas.spaces import get_space

    space = get_space("nb201", prune=False)
    header = ["arch_str", "c10_valid", "c10_valid_seeds", "c10_test", "in16_valid"]
    header += ["in16_valid_seeds", *(["in16_test"] if with_in16_test else [])]
    header += ["params_mb", "train_time_s", "lat_ms_raspi4", "lat_ms_my_board"]
    with gzip.open(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for i, arch in enumerate(space.enumerate()):
            convs = arch.count("nor_conv_3x3") + 0.5 * arch.count("nor_conv_1x1")
            seeds = [10 + 5 * convs + (i * k % 7) / 7 for k in (1, 2, 3)]
            row = [arch, 80 + convs, "90;91", 90.5, round(np.mean(seeds), 3)]
            row += [
                ";".join(f"{s:.3f}" for s in seeds),
                *([15 + 5 * convs] if with_in16_test else []),
            ]
            row += [0.1 + 0.2 * convs, 1000 + 100 * convs, 5 + convs, 1.0 + 0.75 * convs]
            writer.writerow(row)


def test_a_users_table_with_another_dataset_and_device_end_to_end(tmp_path, monkeypatch):
    path = tmp_path / "my_table.csv.gz"
    _write_user_table(path)
    monkeypatch.setenv("HWNAS_NB201_TABLE", str(path))  # where table:<device> reads
    bench = load_benchmark(dataset="ImageNet16-120", device="my_board")
    assert (bench.dataset, bench.device, len(bench)) == ("ImageNet16-120", "my_board", 15625)
    cfg = _config(
        "nsga2",
        seed=4,
        trials=20,
        objectives=[
            {"metric": "validation_accuracy", "goal": "maximize"},
            {"metric": "latency_ms", "goal": "minimize"},
        ],
        constraints=["latency_ms <= 2.5"],
        latency={"predictor": "table:my_board"},  # the same column: an exact pre-filter
    )
    method, result = run_search_on_table(cfg, bench)
    assert len(result.queries) == 20 and result.invalid == 0
    assert method.filter.counts["constraint"] > 0
    in16 = load_table(path)["in16_valid_seeds"]
    for q in result.queries:
        assert q.metrics["latency_ms"] <= 2.5
        assert q.metrics["latency_backend"] == "nb201-table:my_board"
        assert min(abs(q.metrics["validation_accuracy"] * 100 - in16[q.row])) < 1e-9
    assert method.pareto_front()
    # Datasets resolve by their prefix too; a missing column is named.
    assert NB201Benchmark.from_table(load_table(path), "in16", "raspi4").dataset == "in16"
    with pytest.raises(TabularError, match=r"'cifar100' \(column prefix 'c100'\).*'c100_valid'"):
        load_benchmark(path, "cifar100", "raspi4")
    partial = tmp_path / "partial.csv.gz"
    _write_user_table(partial, with_in16_test=False)
    with pytest.raises(TabularError, match=r"needs column 'in16_test'.*datasets .*: c10, in16"):
        load_benchmark(partial, "ImageNet16-120", "my_board")


def test_the_packaged_table_is_the_default(monkeypatch):
    monkeypatch.delenv("HWNAS_NB201_TABLE", raising=False)
    bench = load_benchmark(dataset="cifar10", device="pixel2")
    assert len(bench) == 15625 and bench.table_path.endswith("spaces/data/nb201_cifar.csv.gz")
