"""First-run robustness (issue 13): bad input stops before any work, in one line, and the exit
status says what happened (README, "Errors and exit codes"). Every command-line check runs the
installed ``hwnas`` in a subprocess; searches use the fast stand-in trial child
(``tests/test_local_runner_child.py``) through ``runner.trial_command``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cli_run import (
    REPO,
    error_line,
    fake_search_config,
    hwnas,
    read_only_argv,
    run,
    writable_again,
)

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
SMALL = ["--option", "C=4", "--option", "N=1", "--input", "3x8x8"]
QUICK = ["--warmup", "0.01", "--min-duration", "0.02", "--min-runs", "5", "--max-attempts", "1"]


def _write(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


def _unavailable(backend: str) -> bool:
    from hwnas.latency.backends import get_backend
    from hwnas.latency.errors import BackendUnavailableError

    try:
        get_backend(backend).check_available()
    except BackendUnavailableError:
        return True
    return False


# -- 1. hwnas latency: one line, exit 2 ------------------------------------------------------------
@pytest.mark.parametrize("backend", ["trt-fp16", "ort-cuda", "ort-trt", "torch-cuda"])
def test_latency_measure_on_an_unavailable_backend_is_one_line(backend):
    if not _unavailable(backend):
        pytest.skip(f"{backend} runs on this machine")
    res = hwnas("latency", "measure", "--space", "nb201", "--arch", ARCH, "--backend", backend)
    assert res.returncode == 2
    assert error_line(res.stderr).startswith("hwnas: error:")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["measure", "--space", "nb201", "--arch", "|oops~0|"], "|oops~0|"),
        (["measure", "--space", "nb999", "--arch", ARCH], "nb999"),
        (["measure", "--space", "nb201", "--arch", ARCH, "--batch", "0"], "--batch"),
        (["measure", "--space", "nb201", "--arch", ARCH, "--threads", "0"], "--threads"),
        (["measure", "--space", "nb201", "--arch", ARCH, "--option", "Q=3"], "'Q'"),
        (["measure", "--space", "nb201", "--arch", ARCH, "--option", "C=-8"], "C"),
        (["profile", "--space", "nb201", "--n", "0", "--out", "p.json"], "--n"),
        (["profile", "--space", "nb201", "--n", "4", "--out", "p.json"], "--n 6 or more"),
        (["measure", "--space", "nb201", "--arch", ARCH, "--backend", "ort-cpux"], "ort-cpux"),
    ],
)
def test_latency_bad_input_is_one_line_exit_2(argv, says, tmp_path):
    res = hwnas("latency", *argv, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert says in error_line(res.stderr)
    assert res.stdout == "" and not (tmp_path / "p.json").exists()


def test_python_m_latency_answers_like_hwnas_latency():
    argv = ["measure", "--space", "nb201", "--arch", ARCH, "--batch", "0"]
    res = run([sys.executable, "-m", "hwnas.latency", *argv])
    assert res.returncode == 2 and "--batch" in error_line(res.stderr)


# -- 2. hwnas search: the preflight ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"latency": {"backend": "ort-cpux"}}, "latency.backend"),
        ({"latency": {"backend": "trt-fp16"}}, "latency.backend"),
        ({"latency": {"backend": "ort-cuda"}}, "latency.backend"),
        ({"data": {"dataset": "cifar10", "root": "/nonexistent/cifar"}}, "data.root"),
        ({"space": {"name": "nb201", "options": {"C": 8, "N": 1, "Q": 3}}}, "space.options"),
        ({"space": {"name": "nb201", "options": {"C": -8}}}, "space.options"),
        ({"constraints": ["latency_ms <= 1", "latency_ms >= 2"]}, "constraints.1"),
    ],
)
def test_search_preflight_stops_before_any_work(change, field, tmp_path):
    backend = change.get("latency", {}).get("backend")
    if backend in ("trt-fp16", "ort-cuda") and not _unavailable(backend):
        pytest.skip(f"{backend} runs on this machine")
    config = _write(tmp_path / "bad.yaml", fake_search_config(**change))
    out = tmp_path / "out"
    res = hwnas("search", str(config), "--out", str(out))
    assert res.returncode == 2
    line = error_line(res.stderr)
    assert line.startswith(f"hwnas: error: {config}: {field}:"), line
    assert not out.exists()  # nothing written: no stray config.yaml


def test_preflight_notes_what_a_determined_search_leaves_to_its_trials():
    from hwnas.driver.preflight import preflight
    from hwnas.searchers.config import parse_config

    config = parse_config(fake_search_config(latency={"backend": "trt-fp16"}), "x")
    notes = preflight(config, "x", on_this_machine=False)
    assert "trt-fp16" in notes[0] and "checked by each trial" in notes[0]


# -- 3. a search that gives up says why and exits 1 ------------------------------------------------
def test_search_stopped_after_failures_in_a_row_exits_1_saying_why(tmp_path):
    raw = fake_search_config(
        "--crash", "1", "--crash", "2", "--crash", "3",
        budget={"max_trials": 6, "max_concurrent": 1, "max_consecutive_failures": 2},
    )  # fmt: skip
    res = hwnas("search", str(_write(tmp_path / "c.yaml", raw)), "--out", str(tmp_path / "o"))
    assert res.returncode == 1, res.stderr
    line = error_line(res.stderr, only=False)
    assert "stopped: 2 trials failed in a row" in line
    assert "fake crash of trial 2" in line  # the last failure's message


def test_search_with_no_evaluated_trial_exits_1(tmp_path):
    raw = fake_search_config("--invalid", "1", "--invalid", "2", budget={"max_trials": 2})
    res = hwnas("search", str(_write(tmp_path / "c.yaml", raw)), "--out", str(tmp_path / "o"))
    assert res.returncode == 1
    assert "no trial was evaluated" in error_line(res.stderr, only=False)


# -- 4. one search per folder ----------------------------------------------------------------------
def test_a_second_search_in_the_same_folder_is_refused_and_kill_9_frees_it(tmp_path):
    raw = fake_search_config("--sleep", "2", budget={"max_trials": 4, "max_concurrent": 1})
    config = _write(tmp_path / "c.yaml", raw)
    out = tmp_path / "o"
    first = subprocess.Popen(
        [str(Path(sys.executable).with_name("hwnas")), "search", str(config), "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "state.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        second = hwnas("search", "--resume", str(out))
        assert second.returncode == 3
        assert f"in use by another hwnas search (pid {first.pid}" in error_line(second.stderr)
        again = hwnas("search", str(config), "--out", str(out))
        assert again.returncode == 2 and "already holds a search" in error_line(again.stderr)
    finally:
        first.kill()  # SIGKILL: no cleanup runs, the kernel drops the lock
        first.wait(timeout=30)
    resumed = hwnas("search", "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert "4 trials (4 evaluated, 0 failed)" in resumed.stdout


# -- 5. and 10. a finished search is extended; other changes are refused; the summary --------------
def test_finished_search_extends_with_max_trials_and_refuses_other_changes(tmp_path):
    raw = fake_search_config(budget={"max_trials": 3, "max_concurrent": 2})
    config = _write(tmp_path / "c.yaml", raw)
    out = tmp_path / "o"
    done = hwnas("search", str(config), "--out", str(out))
    assert done.returncode == 0, done.stderr
    # 10: the winner and the front as a table, and where the report is.
    front = json.loads((out / "pareto.json").read_text())["front"]
    assert f"winner: trial {front[0]['trial_id']} {front[0]['arch']}" in done.stdout
    for header in ("rank", "trial", "architecture", "validation_accuracy ↑", "latency_ms ↓"):
        assert header in done.stdout
    assert f"report: {out}/pareto.json" in done.stdout

    more = hwnas("search", "--resume", str(out), "--max-trials", "5")
    assert more.returncode == 0, more.stderr
    assert "5 trials (5 evaluated, 0 failed)" in more.stdout
    assert yaml.safe_load((out / "config.yaml").read_text())["budget"]["max_trials"] == 5

    raw["budget"]["max_trials"] = 6  # a budget change through the config file is fine
    budget_only = hwnas("search", "--resume", str(out), str(_write(tmp_path / "b.yaml", raw)))
    assert budget_only.returncode == 0 and "6 trials" in budget_only.stdout

    raw["strategy"] = {"name": "nsga2"}
    changed = _write(tmp_path / "s.yaml", raw)
    refused = hwnas("search", "--resume", str(out), str(changed))
    assert refused.returncode == 2
    assert f"{changed}: strategy.name: differs from the saved search" in error_line(refused.stderr)


# -- 6. read-only folders and malformed states: one line naming the path ---------------------------
def test_read_only_output_folder_is_one_line_for_search_report_and_resume(tmp_path):
    raw = fake_search_config(budget={"max_trials": 2, "max_concurrent": 2})
    config = _write(tmp_path / "c.yaml", raw)
    out = tmp_path / "o"
    assert hwnas("search", str(config), "--out", str(out)).returncode == 0
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    base = [str(Path(sys.executable).with_name("hwnas"))]
    try:
        cases = [
            (out, [*base, "report", str(out)], "pareto.json"),
            (out, [*base, "search", "--resume", str(out), "--max-trials", "3"], str(out)),
            (frozen, [*base, "search", str(config), "--out", str(frozen / "new")], "new"),
        ]
        for folder, argv, names in cases:
            res = run(read_only_argv(folder, argv))
            assert res.returncode == 2, (argv, res.stderr)
            line = error_line(res.stderr)
            assert names in line and ("Read-only" in line or "Permission" in line), line
    finally:
        if os.geteuid() != 0:
            writable_again(out)
            writable_again(frozen)


@pytest.mark.parametrize("method", [[], 5, {"version": 2}, {"version": 2, "config": {"x": 1}}])
def test_malformed_method_section_is_one_line(tmp_path, method):
    raw = fake_search_config(budget={"max_trials": 1, "max_concurrent": 1})
    out = tmp_path / "o"
    assert hwnas("search", str(_write(tmp_path / "c.yaml", raw)), "--out", str(out)).returncode == 0
    state = json.loads((out / "state.json").read_text())
    state["method"] = method
    (out / "state.json").write_text(json.dumps(state))
    for argv in (["report", str(out)], ["search", "--resume", str(out)]):
        res = hwnas(*argv)
        assert res.returncode == 2
        assert f'{out}/state.json: the saved search\'s "method" section is malformed' in (
            error_line(res.stderr)
        )


# -- 7. the demo runs again ------------------------------------------------------------------------
def test_demo_script_runs_twice(tmp_path):
    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
        pytest.skip("scripts/demo uses the repository's .venv, not this interpreter")
    config = _write(tmp_path / "demo.yaml", fake_search_config())
    env = {**os.environ, "HWNAS_DEMO_CONFIG": str(config)}
    out = tmp_path / "demo"
    first = run(["scripts/demo", str(out)], env=env)
    assert first.returncode == 0, first.stderr
    second = run(["scripts/demo", str(out)], env=env)
    assert second.returncode == 0, second.stderr
    assert "continuing it" in second.stderr and "3 trials (3 evaluated" in second.stdout


# -- 8. an interrupted profile keeps its measurements ----------------------------------------------
def test_profile_ctrl_c_keeps_measurements_and_continues(tmp_path):
    argv = ["latency", "profile", "--space", "nb201", *SMALL, *QUICK, "--n", "6"]
    argv += ["--out", str(tmp_path / "pred.json")]
    cache = tmp_path / "pred.latency.sqlite"  # the default: beside --out
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("hwnas")), *argv],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a terminal's Ctrl-C reaches the whole group: so do we
    )

    def measured() -> int:
        if not cache.exists():
            return 0
        try:
            with sqlite3.connect(cache) as db:
                return db.execute("select count(*) from measurements").fetchone()[0]
        except sqlite3.Error:
            return 0

    deadline = time.monotonic() + 120
    while measured() < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    line = error_line(stderr, only=False)
    assert "interrupted after" in line and f"cached in {cache}" in line
    kept = measured()
    assert kept >= 1
    again = hwnas(*argv, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    cached = int(again.stdout.split("from the cache: ")[1].split()[0])
    assert cached >= kept and (tmp_path / "pred.json").exists()


# -- 9. every flag has help; positive counts -------------------------------------------------------
def _actions(parser: argparse.ArgumentParser, path: str = "hwnas"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_flag_and_argument_has_help():
    from hwnas.cli import build_parser

    missing = [
        f"{path} {'/'.join(a.option_strings) or a.dest}"
        for path, a in _actions(build_parser())
        if not a.help or a.help == argparse.SUPPRESS
    ]
    assert not missing


def test_space_options_take_one_form_everywhere():
    old_form = ["--space-options", '{"C": 4}']
    res = hwnas("latency", "measure", "--space", "nb201", "--arch", ARCH, *old_form)
    assert res.returncode == 2 and "--space-options" in error_line(res.stderr)
    ok = hwnas("space", "info", "nb201", "--option", "C=4", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["space_options"]["C"] == 4


def test_version():
    import hwnas as package

    res = hwnas("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"hwnas {package.__version__}"


# -- 12. CI runs the slow tests --------------------------------------------------------------------
def test_ci_runs_the_slow_tests_too():
    ci = (REPO / ".ci" / "run").read_text()
    assert "scripts/test" in ci and '-m "slow"' in ci


# -- 13. ONNX Runtime telemetry --------------------------------------------------------------------
def _ort_cache(home: Path) -> Path:
    return home / ".cache" / "Microsoft" / "DeveloperTools" / ".onnxruntime"


def test_timing_writes_no_onnxruntime_telemetry(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CI", "TF_BUILD", "GITHUB_ACTIONS", "ORT_RUNNING_UNIT_TESTS")
        and k not in ("XDG_CACHE_HOME", "ORT_DISABLE_TELEMETRY")
    }
    control_home, home = tmp_path / "control", tmp_path / "home"
    control_home.mkdir()
    home.mkdir()
    plain = run(
        [sys.executable, "-c", "import onnxruntime"], env={**env, "HOME": str(control_home)}
    )
    assert plain.returncode == 0, plain.stderr
    if not _ort_cache(control_home).exists():
        pytest.skip("this onnxruntime writes no telemetry files on import (before 1.29)")
    res = hwnas(
        "latency", "measure", "--space", "nb201", "--arch", ARCH, *SMALL, *QUICK,
        env={**env, "HOME": str(home)},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert not _ort_cache(home).exists()


# -- 14. the Python API ----------------------------------------------------------------------------
def test_import_hwnas_is_light():
    probe = "import hwnas, sys; print(sorted(m for m in ('torch', 'numpy', 'pydantic', " + (
        "'onnxruntime', 'yaml', 'rich') if m in sys.modules))"
    )
    res = run([sys.executable, "-c", probe])
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr


def test_python_api_runs_a_search_and_opens_a_run(tmp_path):
    import hwnas

    result = hwnas.search(fake_search_config(), tmp_path / "run", progress=False)
    assert result.outcome == "finished" and len(result.trials) == 3
    assert result.trial_columns[:4] == ["trial_id", "arch", "status", "epochs"]
    assert result.front and result.winner == result.front[0]
    report = json.loads((tmp_path / "run" / "pareto.json").read_text())
    assert [m["trial_id"] for m in result.front] == [m["trial_id"] for m in report["front"]]
    opened = hwnas.open_run(tmp_path / "run")
    assert opened.front == result.front and opened.trials == result.trials
    assert opened.outcome == "finished" and "3 trials" in repr(opened)
    more = hwnas.search(None, tmp_path / "run", resume=True, max_trials=4, progress=False)
    assert len(more.trials) == 4
