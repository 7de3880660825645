"""Scheduled sweeps: warm start from an earlier sweep's files or Determined experiment, the
searcher entrypoint's arguments, and the trial experiment builder's errors."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import determined as det
import pytest

# The custom searcher needs determined.searcher: a 0.36-0.37 client (0.38 removed it; the SDK
# backend's tests cover 0.38).
pytest.importorskip("determined.searcher", reason="custom searchers need determined <= 0.37")
import yaml
from determined.experimental import client as det_client
from master_simulation import SimulatedMaster, SimulatedSearchRunner
from test_determined import FakeTrials, search_config

from hwnas.driver.determined import __main__ as entry
from hwnas.driver.determined.adapter import HwnasSearchMethod
from hwnas.driver.determined.experiment_config import (
    ExperimentConfigError,
    build_trial_experiment,
)
from hwnas.driver.determined.progress import SearchReporter
from hwnas.driver.determined.warm_start import (
    WarmStartError,
    load_warm_start,
    sweep_label,
)
from hwnas.searchers.method import SearchMethod
from hwnas.searchers.records import TrialRecord

REPO = Path(__file__).resolve().parents[1]
Trial, TrialMetrics = det_client.Trial, det_client.TrialMetrics


@pytest.fixture(scope="module")
def earlier_sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A finished sweep through the simulated master, with its exported files."""
    out = tmp_path_factory.mktemp("earlier")
    config = search_config(budget={"max_trials": 6, "max_concurrent": 2})
    ctx = det.core._dummy_init(checkpoint_storage=str(out / "storage"))
    adapter = HwnasSearchMethod(SearchMethod(config))
    runner = SimulatedSearchRunner(SimulatedMaster(FakeTrials(), seed=9), adapter, ctx)
    runner.run_simulated()
    SearchReporter().write(adapter.method, out / "report")
    with ctx.checkpoint.restore_path(runner.last_storage_id) as path:
        checkpoint = Path(path)
    # A local search's state.json has this shape (hwnas.driver.local).
    local = {"version": 2, "method": adapter.method.state_dict(), "loop": {}, "backend": {}}
    (out / "local").mkdir()
    (out / "local" / "state.json").write_text(json.dumps(local))
    records = adapter.method.records()
    return {"out": out, "checkpoint": checkpoint, "records": records, "config": config}


def _evaluated(records: list[TrialRecord]) -> set[str]:
    return {r.arch for r in records if r.results}


@pytest.mark.parametrize(
    "relative",
    ["report/pareto.json", "report/trials.csv", "report", "checkpoint", "local/state.json"],
)
def test_records_from_exported_files_and_checkpoints(
    earlier_sweep: dict[str, Any], relative: str
) -> None:
    path = (
        earlier_sweep["checkpoint"] if relative == "checkpoint" else earlier_sweep["out"] / relative
    )
    records = load_warm_start(str(path))
    assert records
    archs = {r["arch"] for r in records}
    assert archs <= _evaluated(earlier_sweep["records"])
    if relative != "report/pareto.json":  # the front holds fewer; the rest hold every result
        assert archs == _evaluated(earlier_sweep["records"])
    for r in records:
        assert 0 < r["metrics"]["validation_accuracy"] < 1 and r["length"] >= 1


def test_bad_sources_fail_with_a_message_naming_them(tmp_path: Path) -> None:
    with pytest.raises(WarmStartError, match="no such file"):
        load_warm_start(str(tmp_path / "missing.json"))
    (tmp_path / "x.json").write_text(json.dumps({"unrelated": 1}))
    with pytest.raises(WarmStartError, match=r"x\.json"):
        load_warm_start(str(tmp_path / "x.json"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WarmStartError, match="no results file"):
        load_warm_start(str(tmp_path / "empty"))


# -- the Determined SDK, through a test double (no master here) ------------------------------
class FakeTrial(Trial):
    """The SDK's Trial with its REST call for metrics replaced by fixed reports."""

    def __init__(self, trial_id: int, hparams: dict[str, Any], reports: list[TrialMetrics]):
        super().__init__(trial_id, session=None)  # type: ignore[arg-type]
        self.hparams = hparams
        self._reports = reports

    def iter_metrics(self, group: str) -> list[TrialMetrics]:
        assert group == "validation"
        return list(self._reports)


class FakeExperiment:
    def __init__(self, experiment_id: int, trials: list[FakeTrial]) -> None:
        self.id = experiment_id
        self._trials = trials

    def list_trials(self) -> list[FakeTrial]:
        return list(self._trials)


class FakeClient:
    """``determined.experimental.client``'s functions the warm start calls."""

    ExperimentState = det_client.ExperimentState

    def __init__(self, experiments: dict[int, tuple[FakeExperiment, list[str], Any]]) -> None:
        self.experiments = experiments
        self.calls: list[tuple[str, Any]] = []

    def get_experiment(self, experiment_id: int) -> FakeExperiment:
        self.calls.append(("get_experiment", experiment_id))
        return self.experiments[experiment_id][0]

    def list_experiments(self, labels: list[str], states: list[Any]) -> list[FakeExperiment]:
        self.calls.append(("list_experiments", (labels, states)))
        return [
            exp
            for exp, exp_labels, state in self.experiments.values()
            if set(labels) & set(exp_labels) and state in states
        ]


def trial_experiment_from(experiment_id: int, records: list[dict[str, Any]]) -> FakeExperiment:
    """What Determined holds for an earlier trial experiment: hparams + validation reports."""
    trials = []
    now = datetime.datetime.now(datetime.timezone.utc)
    for i, rec in enumerate(records):
        reports = [
            TrialMetrics(
                trial_id=i,
                trial_run_id=1,
                steps_completed=length,
                end_time=now,
                # trials/train.py reports only finite numbers and bools to Determined.
                metrics={k: v for k, v in m.items() if isinstance(v, int | float)},
                group="validation",
            )
            for length, m in ((res.length, res.metrics) for res in rec.results)
        ]
        hparams = {"space": "nb201", "arch": rec.arch, "seed": rec.seed}
        trials.append(FakeTrial(i + 1, hparams, reports))
    trials.append(FakeTrial(99, {"lr": 0.1}, []))  # not an hwnas trial: skipped
    return FakeExperiment(experiment_id, trials)


def test_records_from_a_determined_experiment_id(earlier_sweep: dict[str, Any]) -> None:
    client = FakeClient({41: (trial_experiment_from(41, earlier_sweep["records"]), [], None)})
    records = load_warm_start("experiment:41", client=client)
    assert client.calls == [("get_experiment", 41)]
    assert {r["arch"] for r in records} == _evaluated(earlier_sweep["records"])
    by_arch = {r.arch: r for r in earlier_sweep["records"]}
    for r in records:
        assert r["length"] == by_arch[r["arch"]].length  # the longest training's metrics
        assert (
            r["metrics"]["validation_accuracy"]
            == (by_arch[r["arch"]].metrics["validation_accuracy"])
        )


def test_latest_finished_run_of_a_sweep_by_label(earlier_sweep: dict[str, Any]) -> None:
    label = sweep_label("nightly")
    S = det_client.ExperimentState
    exp = trial_experiment_from
    client = FakeClient(
        {
            10: (exp(10, earlier_sweep["records"][:2]), [label], S.COMPLETED),
            12: (exp(12, earlier_sweep["records"]), [label], S.CANCELED),
            13: (exp(13, earlier_sweep["records"][:1]), [label], S.ACTIVE),  # still running
            14: (exp(14, earlier_sweep["records"][:1]), ["other"], S.COMPLETED),
        }
    )
    records = load_warm_start(f"latest:{label}", client=client)
    assert {r["arch"] for r in records} == _evaluated(earlier_sweep["records"])  # run 12
    assert load_warm_start("latest:never-ran", client=client) == []  # first run: cold start


def test_warm_start_seeds_strategy_and_dedupe_and_survives_restart(
    earlier_sweep: dict[str, Any],
) -> None:
    records = load_warm_start(str(earlier_sweep["checkpoint"]))
    config = search_config(seed=11, budget={"max_trials": 6, "max_concurrent": 2})
    method = SearchMethod(config)
    counts = method.warm_start(records + records[:1])
    assert counts["told"] == len(records) and counts["duplicate"] == 1
    assert [a for a, _ in method.strategy.history] == [r["arch"] for r in records]

    # The new sweep never trains an earlier architecture again, even after a restart.
    restored = SearchMethod.from_state(json.loads(json.dumps(method.state_dict())))
    adapter = HwnasSearchMethod(restored)
    ctx = det.core._dummy_init(checkpoint_storage=str(earlier_sweep["out"] / "storage-new"))
    SimulatedSearchRunner(SimulatedMaster(FakeTrials(), seed=2), adapter, ctx).run_simulated()
    space = restored.space
    old = {space.canonical_key(r["arch"]) for r in records}
    new = {space.canonical_key(r.arch) for r in restored.records()}
    assert len(new) == 6 and not old & new


def test_warm_start_fills_the_nsga2_population(earlier_sweep: dict[str, Any]) -> None:
    records = load_warm_start(str(earlier_sweep["out"] / "report" / "trials.csv"))
    method = SearchMethod(search_config(strategy={"name": "nsga2"}))
    counts = method.warm_start(records)
    assert counts["told"] == len(records) > 0
    assert {a for a, _ in method.strategy.population} == {r["arch"] for r in records}


def test_warm_start_skips_other_spaces_and_invalid_archs() -> None:
    method = SearchMethod(search_config())
    counts = method.warm_start(
        [
            {"arch": "d1-k3-e3-w1.0-se0", "space": "mobilenet", "metrics": {}},
            {"arch": "not an arch", "metrics": {"validation_accuracy": 0.5}},
        ],
    )
    assert counts == {"told": 0, "duplicate": 0, "other_space": 1, "invalid": 1}


# -- the searcher entrypoint -----------------------------------------------------------------
def test_entrypoint_arguments_come_from_the_command_line_then_hyperparameters() -> None:
    args = entry.build_parser().parse_args(["a.yaml", "--warm-start", "experiment:3"])
    hparams = {"search_config": "h.yaml", "trial_experiment": "t.yaml", "warm_start": "x"}
    assert entry.resolve_args(args, hparams) == {
        "search_config": "a.yaml",
        "trial_experiment": "t.yaml",
        "warm_start": "experiment:3",
    }
    with pytest.raises(SystemExit, match="trial_experiment"):
        entry.resolve_args(argparse.Namespace(search_config="a", trial_experiment=None,
                                              warm_start=None), {})  # fmt: skip


def test_entrypoint_on_determined_038_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "determined.searcher", None)  # as if removed (0.38)
    with pytest.raises(SystemExit, match=r"removed in 0\.38.*hwnas search"):
        entry.main(["x.yaml", "--trial-experiment", "y.yaml"])


def test_entrypoint_off_cluster_says_where_it_must_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # Determined's dummy checkpoint storage stays in tmp
    monkeypatch.setenv("HOME", str(tmp_path))
    argv = [
        str(REPO / "experiment_yamls" / "search_nb201_cifar10_ort_cpu.yaml"),
        "--trial-experiment",
        str(REPO / "experiment_yamls" / "det_trials_gpu.yaml"),
    ]
    with pytest.raises(RuntimeError, match="inside a Determined experiment"):
        entry.main(argv)


def test_trial_experiment_builder_names_file_and_field() -> None:
    search = search_config()
    base = {"entrypoint": "python3 -m hwnas.trials.train"}
    built = build_trial_experiment(base, search, source="t.yaml")
    assert built["searcher"] == {
        "name": "custom",
        "metric": "validation_accuracy",
        "smaller_is_better": False,
        "unit": "epochs",
    }
    assert sweep_label(search.name) in built["labels"]
    assert built["hyperparameters"]["space"] == "nb201"
    assert built["hyperparameters"]["space_options"] == {"C": 4, "N": 1}
    with pytest.raises(ExperimentConfigError, match=r"t\.yaml: searcher\.name"):
        build_trial_experiment({**base, "searcher": {"name": "grid"}}, search, source="t.yaml")
    with pytest.raises(ExperimentConfigError, match=r"t\.yaml: searcher\.smaller_is_better"):
        build_trial_experiment(
            {**base, "searcher": {"smaller_is_better": True}}, search, source="t.yaml"
        )
    with pytest.raises(ExperimentConfigError, match=r"t\.yaml: entrypoint"):
        build_trial_experiment({}, search, source="t.yaml")


def test_entrypoint_check_prints_what_would_be_submitted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [
        str(REPO / "experiment_yamls" / "search_nb201_cifar10_trt_fp16.yaml"),
        "--trial-experiment",
        str(REPO / "experiment_yamls" / "det_trials_gpu.yaml"),
        "--check",
    ]
    assert entry.main(argv) == 0
    trial_experiment, hparams = yaml.safe_load_all(capsys.readouterr().out)
    assert trial_experiment["name"] == "nb201-cifar10-trt-fp16-trials"
    assert trial_experiment["searcher"]["name"] == "custom"
    assert hparams["latency"]["backend"] == "trt-fp16" and hparams["space"] == "nb201"
