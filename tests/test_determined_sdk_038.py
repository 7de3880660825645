"""The Determined SDK backend under Determined 0.38.1's own client package (the last release,
which has no custom searchers), against the REST double of a 0.38 master.

A session fixture builds ``.venv-det038/`` (ignored by git and by ``.detignore``) with
``pip install determined==0.38.1`` from the package registry -- skipped, saying why, when the
registry cannot be reached -- and reuses it afterwards. hwnas's own dependencies (numpy,
pydantic, ...) come from the project's venv through a ``.pth`` file placed after 0.38.1's own
packages, so ``determined`` (and its ``requests<2.32`` pin) are 0.38.1's. The driver runs there
(``tests/sdk_scenario.py``); the master double and the simulated trials run in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from det_master_double import MasterDouble
from fake_trials import FakeTrials
from sdk_scenario import REPO, credentials
from test_determined_sdk import demo_metrics, run_labels, small_demo

from hwnas.searchers.config import load_config
from hwnas.searchers.method import SearchMethod

VENV = REPO / ".venv-det038"
DETERMINED = "determined==0.38.1"
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="session")
def det038_python() -> Path:
    """The interpreter of ``.venv-det038`` (built once; a lock keeps xdist workers apart)."""
    from filelock import FileLock

    python = VENV / "bin" / "python"
    stamp = VENV / ".hwnas-ready"
    with FileLock(str(VENV) + ".lock"):
        if not stamp.is_file():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
            install = subprocess.run(
                [str(python), "-m", "pip", "install", "-q", DETERMINED],
                capture_output=True,
                text=True,
                timeout=900,
            )
            if install.returncode != 0:
                pytest.skip(
                    f"cannot install {DETERMINED} from the package registry: "
                    f"{install.stderr.strip().splitlines()[-1:]}"
                )
            site = subprocess.check_output(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                text=True,
            ).strip()
            ours = sysconfig.get_paths()["purelib"]
            # Appended after the venv's own site-packages: its determined 0.38.1 wins.
            Path(site, "hwnas-project-deps.pth").write_text(
                f"import site; site.addsitedir({ours!r})\n"
            )
            stamp.write_text(DETERMINED + "\n")
    check = subprocess.run(
        [str(python), "-c", "import determined, importlib.util as u; "
         "print(determined.__version__, u.find_spec('determined.searcher') is None)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert check.stdout.split() == ["0.38.1", "True"], check.stdout + check.stderr
    return python


def scenario(python: Path, double: MasterDouble, out: Path, *args: str) -> Any:
    """Run the driver under 0.38.1; the completed process and its JSON summary (or None)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DET_")}
    env.update(credentials(out.parent / "det-config"))
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [str(python), str(REPO / "tests" / "sdk_scenario.py"), "--master", double.url,
         "--out", str(out), *args],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=600,
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if proc.returncode == 0 and lines else None
    return proc, result


def test_the_demo_config_runs_end_to_end_under_the_0381_client(
    det038_python: Path, tmp_path: Path
) -> None:
    trials = FakeTrials(metrics=demo_metrics)
    out = tmp_path / "demo"
    with MasterDouble(trials, tmp_path / "storage", version="0.38.1") as double:
        proc, result = scenario(det038_python, double, out, "--report")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert result["determined_version"] == "0.38.1"
        assert result["finished"] and result["trials"] == 24
        assert {r["status"] for r in result["records"]} <= {"completed", "stopped"}
        assert len(double.managed()) == len(result["runs"])
        assert set(run_labels(double).values()) == {1}
        method = SearchMethod.from_state(json.loads((out / "state.json").read_text())["method"])
        for run in result["runs"]:
            exp = double.experiments[run["experiment_id"]]
            assert "max_length" not in exp.config["searcher"]
            expected = {**method.hparams(run["trial_id"]), "target_length": run["length"]}
            assert double.trial_of(exp).hparams == expected
        assert (out / "pareto.json").is_file()
        [progress] = double.unmanaged()
        assert progress.state == "COMPLETED"
    assert load_config(out / "config.yaml").name == "local-demo"


def test_failures_kills_crash_and_resume_under_the_0381_client(
    det038_python: Path, tmp_path: Path
) -> None:
    config = small_demo(tmp_path, max_trials=10, max_concurrent=3)
    trials = FakeTrials({1: "crash", 3: "invalid", 5: "invalid_hang"}, metrics=demo_metrics)
    out = tmp_path / "run"
    with MasterDouble(trials, tmp_path / "storage", version="0.38.1") as double:
        created: list[int] = []

        def user_kills_the_sixth(exp: Any) -> None:
            created.append(exp.id)
            if len(created) == 6:
                double.kill_experiment(exp.id)

        double.on_create = user_kills_the_sixth
        double.lose_response.append(["POST", r"/api/v1/experiments", 9])
        proc, _ = scenario(det038_python, double, out, "--config", str(config))
        assert proc.returncode != 0 and "APIException" in proc.stderr  # the driver crashed
        lost = double.managed()[-1].id
        proc, partial = scenario(
            det038_python, double, out, "--resume", "--stop-after-events", "12"
        )
        assert proc.returncode == 0 and partial["interrupted"], proc.stderr[-3000:]
        proc, result = scenario(det038_python, double, out, "--resume")
        assert proc.returncode == 0, proc.stderr[-3000:]
        # A second sweep warm-starts from this one through the SDK.
        next_config = str(small_demo(tmp_path, max_trials=3))
        proc, second = scenario(
            det038_python, double, tmp_path / "next", "--config", next_config,
            "--warm-start", "latest:hwnas-sweep:local-demo",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert result["finished"] and result["trials"] == 10
    assert set(run_labels(double).values()) == {1}
    assert lost in {r["experiment_id"] for r in result["runs"]}
    statuses = Counter(r["status"] for r in result["records"])
    assert (statuses["failed"], statuses["invalid"], statuses["canceled"]) == (1, 2, 1)
    evaluated = {r["arch"] for r in result["records"] if r["lengths"]}
    assert set(second["warm"]) == evaluated
    assert not {r["arch"] for r in second["records"]} & evaluated
