"""The Determined SDK backend (one ``searcher: single`` experiment per run) against the REST
double of a 0.38 (and 0.37) master, with the project's determined 0.37.0 client in-process.
``test_determined_sdk_038.py`` runs the same scenarios with determined 0.38.1's client."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from det_master_double import MasterDouble, sample_hparams
from determined.common.api import errors as det_errors
from determined.experimental import client as det_client
from fake_trials import FakeTrials, curve_metrics, unit
from sdk_scenario import REPO, credentials, summary

from hwnas.driver.determined.experiment_config import exact_hyperparameters, run_label
from hwnas.driver.determined.sdk_backend import config_file
from hwnas.driver.determined.sdk_search import SETTINGS_FILE, run_determined_search
from hwnas.searchers.config import load_config
from hwnas.searchers.method import SearchMethod

# The SDK reads the context with pathspec, which warns about its own deprecated pattern class.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
DEMO = REPO / "experiment_yamls" / "local_demo.yaml"
TRIALS_CPU = REPO / "experiment_yamls" / "det_trials_cpu.yaml"


def demo_metrics(arch: str, epochs: int) -> dict[str, Any]:
    """Learning curves whose latencies straddle the demo's constraint (latency_ms <= 1.0)."""
    metrics = curve_metrics(arch, epochs)
    metrics["latency_ms"] = 0.4 + 1.2 * unit(arch + "/latency")
    return metrics


@pytest.fixture
def det_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in ("DET_MASTER", "DET_USER_TOKEN", "DET_USER", "DET_PASS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in credentials(tmp_path / "det-config").items():
        monkeypatch.setenv(key, value)
    warnings.filterwarnings("ignore", category=FutureWarning)
    return tmp_path


def search(double: MasterDouble, out: Path, config: Any = DEMO, **kwargs: Any) -> Any:
    kwargs.setdefault("poll_interval_s", 0.0)
    kwargs.setdefault("write_report", False)
    return run_determined_search(
        config if not kwargs.get("resume") else None,
        out,
        master=double.url,
        trial_experiment=TRIALS_CPU,
        context_dir=REPO,
        **kwargs,
    )


def small_demo(tmp_path: Path, **budget: int) -> Path:
    """The demo config with a smaller budget (same space, objectives, MO-ASHA)."""
    raw = yaml.safe_load(DEMO.read_text())
    raw["budget"] = {"max_trials": 8, "max_concurrent": 2, **budget}
    path = tmp_path / "small_demo.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run_labels(double: MasterDouble) -> Counter[str]:
    return Counter(
        label for e in double.managed() for label in e.labels if label.startswith("hwnas-run:")
    )


def test_the_demo_config_runs_end_to_end_on_a_038_master(det_env: Path) -> None:
    trials = FakeTrials(metrics=demo_metrics)
    out = det_env / "demo"
    with MasterDouble(trials, det_env / "storage", version="0.38.1") as double:
        result = search(double, out, write_report=True)
        config = load_config(DEMO)
        state = json.loads((out / "state.json").read_text())
        method = SearchMethod.from_state(state["method"])

        assert result.finished and result.trials == config.budget.max_trials == 24
        assert result.completed == 24 and result.failed == 0
        assert {Path(f).name for f in result.report_files} >= {"pareto.json", "trials.csv"}
        # One experiment per run, none twice; promoted trials ran again from their checkpoint.
        runs = state["backend"]["runs"]
        assert len(double.managed()) == len(runs) == sum(len(r.results) for r in method.records())
        assert set(run_labels(double).values()) == {1}
        settings = json.loads((out / SETTINGS_FILE).read_text())
        project = next(p for p in double.projects.values() if p["name"] == "local-demo")
        for exp in double.managed():
            assert exp.state == "COMPLETED" and exp.project_id == project["id"]
            searcher = exp.config["searcher"]
            assert searcher["name"] == "single" and "max_length" not in searcher  # 0.38
            assert searcher["metric"] == "validation_accuracy"
            assert searcher["smaller_is_better"] is False
            assert f"hwnas-search:{settings['search_id']}" in exp.labels
            assert {"hwnas", "hwnas-sweep:local-demo"} <= set(exp.labels)
            assert "trials/train.py" in exp.files  # the context was uploaded with the run
            # Exactly the hparams the method built (None, "off" and lists survive the config).
            run = next(r for r in runs if r["experiment_id"] == exp.id)
            trial = double.trial_of(exp)
            expected = {**method.hparams(run["trial_id"]), "target_length": run["length"]}
            assert trial.hparams == expected
            assert trial.hparams["training"]["amp"] == "off"
            assert trial.hparams["data"]["root"] is None
            # What it reported: validation metrics, the result, progress up to 1.
            groups = {r["group"] for r in trial.reports}
            assert {"training", "validation", "hwnas_result"} <= groups
            assert trial.progress[-1] == 1.0
            if run["length"] > 1:  # a promotion continues from the previous run's checkpoint
                previous = next(
                    r for r in runs if r["trial_id"] == run["trial_id"] and r["length"] == 1
                )
                assert searcher["source_trial_id"] == previous["det_trial_id"]
        promoted = [r for r in runs if r["length"] == 2]
        assert promoted, "MO-ASHA promoted no trial"
        # Every architecture trained from its own checkpoint (FakeTrials asserts the epoch).
        assert sorted(trials.trained_to.values()).count(2) == len(promoted)
        # The search's own progress: one unmanaged experiment, its metrics and state.
        [progress] = double.unmanaged()
        assert progress.state == "COMPLETED" and progress.project_id == project["id"]
        assert progress.config["searcher"]["metric"] == "hypervolume"
        reports = [r for r in double.trial_of(progress).reports if r["group"] == "validation"]
        last = reports[-1]["metrics"]
        assert last["trials_created"] == 24 and last["trials_done"] == 24
        assert last["front_size"] >= 1 and last["hypervolume"] > 0
        assert 0 < last["best_feasible_accuracy"] <= 1
        steps = [r["steps"] for r in reports]
        assert steps == sorted(steps)
        assert progress.progress == 1.0


def test_a_037_master_gets_max_length_and_runs_the_same_way(det_env: Path) -> None:
    config = small_demo(det_env, max_trials=4)
    with MasterDouble(FakeTrials(metrics=demo_metrics), det_env / "s", version="0.37.0") as double:
        result = search(double, det_env / "run", config)
        assert result.finished and result.completed == 4
        for exp in double.managed():
            length = exp.config["hyperparameters"]["target_length"]
            assert exp.config["searcher"]["max_length"] == {"epochs": length}
        [progress] = double.unmanaged()
        assert progress.config["searcher"]["max_length"] == 1


def test_failures_kills_and_a_driver_crash_lose_nothing_and_create_nothing_twice(
    det_env: Path,
) -> None:
    """Trials crashing past max_restarts, invalid ones (one outliving its 10 s grace), a user
    killing a run, the response to one experiment creation lost (the driver crashes), then an
    interruption with runs in flight: resumed each time, the search ends with every trial
    accounted for and no run created twice."""
    config = small_demo(det_env, max_trials=10, max_concurrent=3)
    trials = FakeTrials({1: "crash", 3: "invalid", 5: "invalid_hang"}, metrics=demo_metrics)
    out = det_env / "run"
    with MasterDouble(trials, det_env / "s", version="0.38.1") as double:
        created: list[int] = []

        def user_kills_the_sixth(exp: Any) -> None:
            created.append(exp.id)
            if len(created) == 6:
                double.kill_experiment(exp.id)

        double.on_create = user_kills_the_sixth
        double.lose_response.append(["POST", r"/api/v1/experiments", 9])
        double.lose_response.append(["GET", r"/api/v1/experiments", 5])  # a poll: tolerated
        with pytest.raises(det_errors.APIException):
            search(double, out, config)
        assert not double.lose_response
        assert len(double.managed()) == 9  # created, but the driver never heard of the 9th
        first = json.loads((out / "state.json").read_text())
        lost = double.managed()[-1].id
        assert lost not in {r["experiment_id"] for r in first["backend"]["runs"]}

        interrupted = search(double, out, resume=True, stop_after_events=12)
        assert interrupted.interrupted
        in_flight = [e for e in double.managed() if e.state == "ACTIVE"]
        assert in_flight, "the interruption should leave runs going on the cluster"

        result = search(double, out, resume=True)
        assert result.finished and result.trials == 10
        outcome = summary(out, result)

    # Nothing created twice; the lost one and the interrupted ones were adopted.
    assert set(run_labels(double).values()) == {1}
    assert len(double.managed()) == len(outcome["runs"])
    assert lost in {r["experiment_id"] for r in outcome["runs"]}
    statuses = Counter(r["status"] for r in outcome["records"])
    assert statuses["failed"] == 1 and statuses["invalid"] == 2 and statuses["canceled"] == 1
    assert statuses["completed"] + statuses["stopped"] == 6
    by_status = {r["status"]: r for r in outcome["records"]}
    assert "ERROR" in by_status["failed"]["message"]
    assert "killed by a user" in by_status["canceled"]["message"]
    crashed = [e for e in double.managed() if e.state == "ERROR"]
    assert [double.trial_of(e).restarts for e in crashed] == [4]  # max_restarts 3, per trial
    # The user's kill and the invalid trial killed 10 s after InvalidHP.
    assert Counter(e.state for e in double.managed())["CANCELED"] == 2
    # Every record's results are exactly its runs that completed with a result, each once.
    for record in outcome["records"]:
        done = sorted(
            e.config["hyperparameters"]["target_length"]
            for e in double.managed()
            if e.config["hyperparameters"]["arch"] == record["arch"] and e.state == "COMPLETED"
            and any(r["group"] == "hwnas_result" and json.loads(r["metrics"]["result"])["ok"]
                    for r in double.trial_of(e).reports)
        )  # fmt: skip
        assert record["lengths"] == done, record
    [progress] = double.unmanaged()
    assert progress.state == "COMPLETED"
    assert double.trial_of(progress).run_id == 3  # started by each of the three drivers


def test_a_search_that_aborts_kills_its_runs_in_flight(det_env: Path) -> None:
    """The first two trials to run are invalid: max_consecutive_failures 2 ends the search,
    and the runs already submitted are killed (they would only cost cluster time)."""
    config = small_demo(det_env, max_trials=8, max_concurrent=3, max_consecutive_failures=2)
    trials = FakeTrials({0: "invalid", 1: "invalid"}, metrics=demo_metrics)
    with MasterDouble(trials, det_env / "s", version="0.38.1") as double:
        result = search(double, det_env / "run", config)
        assert result.outcome == "stopped" and not result.finished  # stopped on failures
        state = json.loads((det_env / "run" / "state.json").read_text())
        assert "2 trials failed in a row" in state["method"]["abort_reason"]
        killed = [e for e in double.managed() if e.state == "CANCELED"]
        assert killed and state["backend"]["killed"] == [e.id for e in killed]
        assert all(double.trial_of(e).processes == 0 for e in killed)
        assert Counter(e.state for e in double.managed())["COMPLETED"] == 2


def test_a_recurring_sweep_warm_starts_from_the_previous_sweeps_results(det_env: Path) -> None:
    config = small_demo(det_env, max_trials=6)
    with MasterDouble(FakeTrials(metrics=demo_metrics), det_env / "s") as double:
        first = search(double, det_env / "night1", config)
        assert first.finished
        first_archs = {e.config["hyperparameters"]["arch"] for e in double.managed()}
        before = len(double.managed())
        second = search(
            double, det_env / "night2", config, warm_start="latest:hwnas-sweep:local-demo"
        )
        assert second.finished
        outcome = summary(det_env / "night2", second)
        new_archs = {e.config["hyperparameters"]["arch"] for e in double.managed()[before:]}
    # Every architecture the first sweep evaluated was told to the second, none retrained.
    assert set(outcome["warm"]) == first_archs
    assert not new_archs & first_archs and len(new_archs) == 6


def test_a_038_master_refuses_custom_searchers_and_the_entrypoint_says_so(
    det_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with MasterDouble(FakeTrials(), det_env / "s", version="0.38.1") as double:
        determined = det_client.Determined(master=double.url)
        config = {"name": "x", "entrypoint": "python3 -m hwnas.driver.determined",
                  "searcher": {"name": "custom", "metric": "m"}}  # fmt: skip
        refused = pytest.raises(det_errors.APIException, match="'custom' searcher has been removed")
        with refused, config_file(config) as path:
            determined.create_experiment(path)
    import sys

    from hwnas.driver.determined.__main__ import require_custom_searchers

    monkeypatch.setitem(sys.modules, "determined.searcher", None)  # as in determined 0.38
    with pytest.raises(SystemExit, match=r"removed in 0\.38.*--backend determined"):
        require_custom_searchers()


def test_the_master_reads_back_exactly_the_hparams_hwnas_sends(tmp_path: Path) -> None:
    """Through the config file the SDK uploads and the master's YAML 1.1 parser."""
    hparams = {
        "arch": "|none~0|",
        "training": {"amp": "off", "grad_clip": None, "flag": "yes", "lr": 0.05},
        "data": {"root": None, "val_fraction": 0.2},
        "space_options": {"C": 8, "widths": [16, 32], "type": "resnet-like"},
        "seed": 7,
        "on": "no",
    }
    with config_file({"hyperparameters": exact_hyperparameters(hparams)}) as path:
        text = path.read_text()
    assert sample_hparams(yaml.safe_load(text)["hyperparameters"]) == hparams
    assert run_label("s-1", 3, 9) == "hwnas-run:s-1:3:9"


def test_hwnas_search_backend_determined_from_the_command_line(
    det_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hwnas.cli import main

    config = small_demo(det_env, max_trials=2)
    monkeypatch.setenv("HWNAS_DETERMINED_POLL_S", "0")
    monkeypatch.chdir(REPO)  # the context directory
    out = det_env / "cli"
    with MasterDouble(FakeTrials(metrics=demo_metrics), det_env / "s") as double:
        common = [str(config), "--backend", "determined", "--master", double.url,
                  "--trial-experiment", str(TRIALS_CPU)]  # fmt: skip
        # A workspace that does not exist is bad input, named; nothing starts.
        assert main(["search", *common, "--project", "team/nas", "--out", str(out)]) == 2
        assert "workspace 'team'" in capsys.readouterr().err
        assert not double.managed()

        assert main(["search", *common, "--out", str(out)]) == 0
        assert "2 trials (2 evaluated, 0 failed)" in capsys.readouterr().out
        created = len(double.managed())
        # Resuming finds it is a Determined search (its settings file) and has nothing to do.
        assert main(["search", "--resume", str(out)]) == 0
        assert len(double.managed()) == created
    assert main(["search", str(config), "--master", "http://x"]) == 2
    assert "need --backend determined" in capsys.readouterr().err
