"""The local backend with the real search method and a fast stand-in trial child.

The child (``tests/test_local_runner_child.py``) speaks the trial contract with deterministic
fake metrics, so these tests exercise the driver loop, failure handling, state file
and resume in seconds. Real trainings: ``tests/test_export_cmd.py``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hwnas.cli import main as cli_main
from hwnas.driver.local import (
    RunnerError,
    load_state,
    render_report,
    restore_method,
    run_search,
)
from hwnas.driver.processes import TrialPool
from hwnas.driver.progress import ProgressView
from hwnas.searchers.config import ConfigError, load_config, parse_config

CHILD = Path(__file__).with_name("test_local_runner_child.py")
REPO = Path(__file__).resolve().parents[1]

BASE_CONFIG = {
    "name": "runner-test",
    "seed": 7,
    "space": {"name": "nb201", "options": {"C": 8, "N": 1}},
    "data": {"dataset": "digits"},
    "objectives": [
        {"metric": "validation_accuracy", "goal": "maximize"},
        {"metric": "latency_ms", "goal": "minimize"},
    ],
    "constraints": ["latency_ms <= 0.9"],
    "strategy": {"name": "random"},
    "early_stopping": {"name": "mo-asha", "min_length": 1, "max_length": 3, "reduction_factor": 3},
    "budget": {"max_trials": 8, "max_concurrent": 2},
    "runner": {"trial_timeout_s": 20, "devices": "cpu"},
}


def _config(**changes):
    raw = json.loads(json.dumps(BASE_CONFIG))
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            raw[section][field] = value
        else:
            raw[section] = value
    return parse_config(raw, "test-config")


def _command(tmp_path, *extra):
    return [sys.executable, str(CHILD), "--ledger", str(tmp_path / "ledger.txt"), *extra]


def _quiet():
    return ProgressView(sys.stderr, live=False, quiet=True)


def _ledger(tmp_path):
    path = tmp_path / "ledger.txt"
    if not path.exists():
        return []
    return [tuple(int(x) for x in line.split()) for line in path.read_text().splitlines()]


def _final(out):
    """Per trial: arch, the lengths it reported, and how its run failed (None: it did not)."""
    state = load_state(out)
    kinds = {e["trial_id"]: e["kind"] for e in state["loop"]["timeline"] if not e["ok"]}
    return {
        t["trial_id"]: (
            t["arch"],
            tuple(r["length"] for r in t["results"]),
            kinds.get(t["trial_id"]),
        )
        for t in state["method"]["trials"]
    }


def _alive(pid):
    """Whether ``pid`` runs (a zombie awaiting its reaper does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- the child pool on its own ---------------------------------------------------------------
def test_pool_kills_a_hanging_child_and_its_process_group(tmp_path):
    script = tmp_path / "hang.py"
    pidfile = tmp_path / "grandchild.pid"
    script.write_text(
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(600)\n"
    )
    pool = TrialPool([sys.executable, str(script)], [None], timeout_s=1.5, threads_per_trial=1)
    pool.launch(3, 1, {"trial_id": 3}, tmp_path / "t3")
    start = time.monotonic()
    outcomes = pool.wait(0.05)
    assert time.monotonic() - start < 10
    assert [(o.trial_id, o.ok, o.kind) for o in outcomes] == [(3, False, "timeout")]
    grandchild = int(pidfile.read_text())
    time.sleep(0.2)
    assert not _alive(grandchild)  # the whole group went, not just the child
    assert "timeout" in (tmp_path / "t3" / "log.txt").read_text()


def test_pool_reports_a_crash_without_result_and_passes_threads(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(
        "import os, sys\nprint('threads', os.environ['OMP_NUM_THREADS'])\nsys.exit(3)\n"
    )
    pool = TrialPool(
        [sys.executable, str(script)], [None, None], timeout_s=None, threads_per_trial=2
    )
    pool.launch(1, 2, {}, tmp_path / "t1")
    (outcome,) = pool.wait(0.05)
    assert (outcome.ok, outcome.kind) == (False, "crash")
    assert "code 3" in outcome.message
    log = (tmp_path / "t1" / "log.txt").read_text()
    assert "threads 2" in log


# -- whole searches ----------------------------------------------------------------------------
def test_search_runs_to_shutdown_and_writes_the_report(tmp_path):
    out = tmp_path / "out"
    summary = run_search(_config(), out, trial_command=_command(tmp_path), progress=_quiet())
    assert summary.finished and not summary.interrupted
    assert summary.trials == 8 and summary.failed == 0
    final = _final(out)
    assert len({arch for arch, _, _ in final.values()}) == 8  # duplicates never train
    assert all(lengths and lengths[0] == 1 for _, lengths, _ in final.values())
    assert any(lengths[-1] == 3 for _, lengths, _ in final.values())  # someone was promoted
    ledger = _ledger(tmp_path)
    assert len(ledger) == len({(t, n) for t, n, _ in ledger})  # nothing trained twice
    assert all(start < n for _, n, start in ledger)  # promotions resumed from the checkpoint
    doc = json.loads((out / "pareto.json").read_text())
    assert doc["front"] and doc["n_trials"] == 8
    # The report agrees with the search method's own view.
    method = restore_method(load_state(out), out / "state.json")
    assert sorted(m["trial_id"] for m in doc["front"]) == sorted(method.front)
    assert doc["hypervolume"] == pytest.approx(method.hypervolume())
    assert all(m["metrics"]["latency_ms"] <= 0.9 for m in doc["front"] if m["feasible"])
    for name in ("trials.csv", "pareto.png", "hypervolume.png", "config.yaml"):
        assert (out / name).stat().st_size > 0
    assert (out / "trials" / "1" / "log.txt").exists()


def test_crashed_and_hanging_trials_are_recorded_and_the_search_goes_on(tmp_path):
    out = tmp_path / "out"
    config = _config(runner={"trial_timeout_s": 1.5, "devices": "cpu"})
    summary = run_search(
        config,
        out,
        trial_command=_command(tmp_path, "--crash", "1", "--hang", "2", "--invalid", "3"),
        progress=_quiet(),
    )
    assert summary.finished and summary.trials == 8 and summary.failed == 3
    final = _final(out)
    assert [final[t][2] for t in (1, 2, 3)] == ["crash", "timeout", "invalid"]
    assert sum(1 for _, lengths, kind in final.values() if lengths and kind is None) == 5
    statuses = {t["trial_id"]: t["status"] for t in load_state(out)["method"]["trials"]}
    assert [statuses[t] for t in (1, 2, 3)] == ["failed", "failed", "invalid"]
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == 1 + 8  # failed trials are kept in the report
    assert "fake crash of trial 1" in (out / "trials" / "1" / "log.txt").read_text()


@pytest.mark.parametrize("stops", [(3, 9, 14)])  # right after the start, then mid-run
def test_resume_after_interruptions_gives_the_same_search(tmp_path, stops):
    config = _config(budget={"max_trials": 6, "max_concurrent": 1})
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    run_search(
        config,
        ref_dir,
        concurrency=1,
        trial_command=_command(tmp_path / "ref_ledger"),
        progress=_quiet(),
    )
    (tmp_path / "ledger").mkdir()
    command = _command(tmp_path / "ledger")
    first = run_search(
        config,
        run_dir,
        concurrency=1,
        trial_command=command,
        progress=_quiet(),
        stop_after_events=stops[0],
    )
    assert first.interrupted and first.events == stops[0]
    for stop in stops[1:]:
        again = run_search(
            None,
            run_dir,
            resume=True,
            concurrency=1,
            trial_command=command,
            progress=_quiet(),
            stop_after_events=stop,
        )
        assert again.interrupted and again.events == stop
    last = run_search(
        None, run_dir, resume=True, concurrency=1, trial_command=command, progress=_quiet()
    )
    assert last.finished
    assert _final(run_dir) == _final(ref_dir)
    ledger = _ledger(tmp_path / "ledger")
    assert len(ledger) == len({(t, n) for t, n, _ in ledger})  # nothing trained twice
    ref_front = json.loads((ref_dir / "pareto.json").read_text())["front"]
    run_front = json.loads((run_dir / "pareto.json").read_text())["front"]
    assert [m["trial_id"] for m in run_front] == [m["trial_id"] for m in ref_front]


def test_report_rerenders_from_state(tmp_path):
    out = tmp_path / "out"
    run_search(
        _config(budget={"max_trials": 4, "max_concurrent": 2}),
        out,
        trial_command=_command(tmp_path),
        progress=_quiet(),
    )
    before = json.loads((out / "pareto.json").read_text())
    for name in ("pareto.json", "trials.csv", "pareto.png", "hypervolume.png"):
        (out / name).unlink()
    paths = render_report(out)
    assert all(p.exists() for p in paths)
    assert json.loads((out / "pareto.json").read_text()) == before


def test_starting_over_an_existing_search_is_refused(tmp_path):
    out = tmp_path / "out"
    run_search(
        _config(budget={"max_trials": 2, "max_concurrent": 2}),
        out,
        trial_command=_command(tmp_path),
        progress=_quiet(),
    )
    with pytest.raises(RunnerError, match="--resume"):
        run_search(_config(), out, trial_command=_command(tmp_path), progress=_quiet())
    with pytest.raises(RunnerError, match="no saved search"):
        run_search(None, tmp_path / "nothing", resume=True, progress=_quiet())


# -- the command line ------------------------------------------------------------------------
def _hwnas(capsys, *args):
    """Run the ``hwnas`` command in-process; (exit code, stdout, stderr)."""
    code = cli_main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_bad_config_exits_2_naming_the_field_before_any_trial(tmp_path, capsys):
    raw = json.loads(json.dumps(BASE_CONFIG))
    raw["budget"]["max_trails"] = 3  # typo
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    code, _, err = _hwnas(capsys, "search", str(path), "--out", str(out))
    assert code == 2
    assert "budget.max_trails" in err and "bad.yaml" in err
    assert not out.exists()
    with pytest.raises(ConfigError, match=r"budget\.max_trails"):
        parse_config(raw, "x")


def test_cli_resume_and_report_need_a_saved_search(tmp_path, capsys):
    code, _, err = _hwnas(capsys, "search", "--resume", str(tmp_path / "none"))
    assert code == 2 and "no saved search" in err
    code, _, err = _hwnas(capsys, "report", str(tmp_path / "none"))
    assert code == 2 and "no saved search" in err
    code, _, err = _hwnas(capsys, "export", str(tmp_path / "none"))
    assert code == 2 and "pareto.json" in err
    code, _, err = _hwnas(capsys, "search")
    assert code == 2 and "CONFIG" in err


def test_interrupt_signal_saves_state(tmp_path):
    """SIGINT to a running search (as Ctrl-C) kills its children and leaves a resumable state."""
    script = tmp_path / "drive.py"
    out = tmp_path / "out"
    config = tmp_path / "config.yaml"
    raw = json.loads(json.dumps(BASE_CONFIG))
    config.write_text(yaml.safe_dump(raw))
    script.write_text(
        "import sys\n"
        "from hwnas.driver.local import run_search\n"
        f"s = run_search({str(config)!r}, {str(out)!r}, trial_command=[sys.executable, "
        f"{str(CHILD)!r}, '--hang', '1', '--hang', '2'])\n"
        "print('INTERRUPTED' if s.interrupted else 'FINISHED')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = out / "state.json"
        if state.exists() and len(load_state(out)["loop"]["waiting"]) >= 2:
            break
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert "INTERRUPTED" in stdout, stderr
    state = load_state(out)
    assert sorted(t for t, _ in state["loop"]["waiting"])[:2] == [1, 2]
    assert "interrupted: Ctrl-C" in stderr and "hwnas search --resume" in stderr


def test_hard_kill_then_resume_finishes_without_training_twice(tmp_path):
    """SIGKILL the runner mid-search: its children die with it, --resume completes the search."""
    out = tmp_path / "out"
    config = tmp_path / "config.yaml"
    raw = json.loads(json.dumps(BASE_CONFIG))
    raw["budget"] = {"max_trials": 6, "max_concurrent": 2}
    config.write_text(yaml.safe_dump(raw))
    command = _command(tmp_path, "--sleep", "0.3")
    script = tmp_path / "drive.py"
    script.write_text(
        "import sys\n"
        "from hwnas.driver.local import run_search\n"
        f"run_search(sys.argv[1], {str(out)!r}, resume=sys.argv[1] == 'resume', "
        f"trial_command={command!r})\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), str(config)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = load_state(out) if (out / "state.json").exists() else {}
        if state and state["backend"]["pids"] and state["loop"]["events"] >= 6:
            break
        time.sleep(0.05)
    pids = list(load_state(out)["backend"]["pids"].values())
    proc.kill()
    proc.wait(timeout=30)
    time.sleep(0.5)
    assert pids and not any(_alive(pid) for pid in pids)  # no orphan keeps training
    summary = run_search(None, out, resume=True, trial_command=command, progress=_quiet())
    assert summary.finished and summary.trials == 6 and summary.failed == 0
    ledger = _ledger(tmp_path)
    assert len(ledger) == len({(t, n) for t, n, _ in ledger})
    assert all(lengths for _, lengths, _ in _final(out).values())


@pytest.mark.parametrize("path", sorted((REPO / "experiment_yamls").glob("local_*.yaml")))
def test_shipped_local_configs_validate(path):
    config = load_config(path)
    assert config.latency.backend == "ort-cpu" and config.data.dataset == "digits"
    assert len(config.objectives) == 2  # the demo shows an accuracy-latency front


@pytest.mark.slow  # ~1-2 min: real trainings of experiment_yamls/local_smoke.yaml
def test_real_search_interrupted_and_resumed(tmp_path):
    """The smoke config with real trials: Ctrl-C after the first result, then --resume."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hwnas.cli",
            "search",
            "experiment_yamls/local_smoke.yaml",
            "--out",
            str(out),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        state = load_state(out) if (out / "state.json").exists() else None
        if state and state["loop"]["timeline"]:
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr  # interrupted, state saved
    assert cli_main(["search", "--resume", str(out)]) == 0
    state = load_state(out)
    assert state["loop"]["shutdown"], (stderr, state["loop"])
    assert len(state["method"]["trials"]) == 4
    finished = [(e["trial_id"], e["length"]) for e in state["loop"]["timeline"] if e["ok"]]
    assert len(finished) == len(set(finished))  # no length was trained to completion twice
    assert all(t["results"] for t in state["method"]["trials"])
    assert json.loads((out / "pareto.json").read_text())["front"]


def test_a_state_from_the_previous_layout_fails_in_one_line_naming_its_version(tmp_path, capsys):
    out = tmp_path / "old"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(BASE_CONFIG))
    old = {"version": 1, "method": {"version": 1, "trials": []}, "runner": {"trials": {}}}
    (out / "state.json").write_text(json.dumps(old))
    for argv in (("search", "--resume", str(out)), ("report", str(out))):
        code, _, err = _hwnas(capsys, *argv)
        assert code == 2
        assert len(err.strip().splitlines()) == 1, err
        assert "state.json" in err and "version 1" in err and "reads version 2" in err
