"""deploy/nightly-sweep.sh with test doubles for the `det` CLI and the SDK (no master here)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "deploy" / "nightly-sweep.sh"

FAKE_CLIENT = """
import enum, json, os

class ExperimentState(enum.Enum):
    ACTIVE = "ACTIVE"; PAUSED = "PAUSED"; QUEUED = "QUEUED"; PULLING = "PULLING"
    STARTING = "STARTING"; RUNNING = "RUNNING"; COMPLETED = "COMPLETED"

def list_experiments(labels=None, states=None):
    if os.environ["FAKE_MASTER"] == "down":
        raise ConnectionError("master unreachable")
    with open(os.environ["FAKE_LOG"], "a") as fh:
        fh.write(json.dumps({"labels": labels, "states": [s.value for s in states]}) + "\\n")
    return [object()] if os.environ["FAKE_MASTER"] == "busy" else []
"""

FAKE_DET = """#!/usr/bin/env bash
echo "det $*" >> "$FAKE_LOG"
"""


@pytest.fixture
def fakes(tmp_path: Path) -> dict[str, str]:
    pkg = tmp_path / "py" / "determined" / "experimental"
    pkg.mkdir(parents=True)
    (pkg.parent / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from determined.experimental import client\n")
    (pkg / "client.py").write_text(FAKE_CLIENT)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "det").write_text(FAKE_DET)
    (bin_dir / "det").chmod(0o755)
    # python3 -> this interpreter (the fake `determined` on PYTHONPATH shadows the real one).
    (bin_dir / "python3").symlink_to(sys.executable)
    return {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "PYTHONPATH": str(tmp_path / "py"),
        "FAKE_LOG": str(tmp_path / "log.txt"),
        "HOME": str(tmp_path),
    }


def run(fakes: dict[str, str], master: str) -> tuple[int, list[str]]:
    env = {**fakes, "FAKE_MASTER": master}
    proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    log = Path(fakes["FAKE_LOG"])
    return proc.returncode, log.read_text().splitlines() if log.exists() else []


def test_starts_the_recurring_sweep_when_none_is_running(fakes: dict[str, str]) -> None:
    code, log = run(fakes, "idle")
    assert code == 0
    assert '"labels": ["recurring"]' in log[0] and "RUNNING" in log[0]
    assert log[1] == "det experiment create experiment_yamls/det_recurring_sweep.yaml ."


def test_skips_while_the_previous_sweep_runs(fakes: dict[str, str]) -> None:
    code, log = run(fakes, "busy")
    assert code == 0 and not any(line.startswith("det ") for line in log)


def test_fails_loudly_when_the_master_cannot_be_asked(fakes: dict[str, str]) -> None:
    code, log = run(fakes, "down")
    assert code == 1 and log == []


HOOK = REPO / "startup-hook.sh"
# A stand-in for the task image's python3: import checks answer $IMPORTS_OK; anything else
# (pip) is only recorded, never run.
FAKE_PYTHON = """#!/usr/bin/env bash
if [[ "$1" == "-c" ]]; then exit "$IMPORTS_OK"; fi
echo "python3 $*" >> "$FAKE_LOG"
"""


def run_hook(tmp_path: Path, *, gpu: bool, image_has_everything: bool = False) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(FAKE_PYTHON)
    (bin_dir / "python3").chmod(0o755)
    if gpu:
        (bin_dir / "nvidia-smi").write_text("#!/usr/bin/env bash\necho 'GPU 0: H100'\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    log = tmp_path / "log.txt"
    env = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "FAKE_LOG": str(log),
        "IMPORTS_OK": "0" if image_has_everything else "1",
    }
    proc = subprocess.run(["bash", str(HOOK)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("gpu", [False, True])
def test_startup_hook_installs_one_onnxruntime_and_never_torch(tmp_path: Path, gpu: bool) -> None:
    calls = run_hook(tmp_path, gpu=gpu)
    assert all(c.startswith("python3 -m pip install") for c in calls)
    packages = " ".join(calls)
    assert "moocore" in packages and "pydantic" in packages and "onnx>=" in packages
    assert "torch" not in packages and "determined" not in packages
    assert ("onnxruntime-gpu" in packages) is gpu
    assert ("onnxruntime>=" in packages) is not gpu


def test_startup_hook_does_nothing_when_the_image_has_everything(tmp_path: Path) -> None:
    assert run_hook(tmp_path, gpu=True, image_has_everything=True) == []


def test_cronjob_runs_the_sweep_script_without_overlaps() -> None:
    job = yaml.safe_load((REPO / "deploy" / "cronjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "CronJob")
    spec = job["spec"]
    assert spec["concurrencyPolicy"] == "Forbid" and len(spec["schedule"].split()) == 5
    [container] = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    script = Path(container["command"][0])
    assert script.name == SCRIPT.name and script.parent.name == "deploy"
    assert {e["name"] for e in container["env"]} >= {"DET_MASTER"}


def test_task_image_is_the_one_the_experiment_configs_use() -> None:
    base = next(
        line.split()[1]
        for line in (REPO / "deploy" / "Dockerfile").read_text().splitlines()
        if line.startswith("FROM ")
    )
    for path in (REPO / "experiment_yamls").glob("det_*.yaml"):
        images = yaml.safe_load(path.read_text())["environment"]["image"]
        assert set(images.values()) == {base}, path.name


SDK_SCRIPT = REPO / "deploy" / "sdk-sweep.sh"
# python3 for deploy/sdk-sweep.sh: `-c` runs in the real interpreter (reading the config's
# name); `-m hwnas.cli ...` is only recorded, never run.
FAKE_SDK_PYTHON = f"""#!/usr/bin/env bash
if [[ "$1" == "-c" ]]; then exec {sys.executable} "$@"; fi
echo "python3 $*" >> "$FAKE_LOG"
"""


def run_sdk_sweep(tmp_path: Path, **env: str) -> tuple[int, list[str], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python3").write_text(FAKE_SDK_PYTHON)
    (bin_dir / "python3").chmod(0o755)
    log = tmp_path / "log.txt"
    full = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "FAKE_LOG": str(log),
        "HWNAS_SWEEP_DIR": str(tmp_path / "sweeps"),
        "HWNAS_SWEEP_RUN": "2026-01-02",
        **env,
    }
    proc = subprocess.run(["bash", str(SDK_SCRIPT)], env=full, capture_output=True, text=True)
    calls = log.read_text().splitlines() if log.exists() else []
    return proc.returncode, calls, proc.stdout + proc.stderr


def test_sdk_sweep_starts_a_warm_started_run_then_continues_it(tmp_path: Path) -> None:
    code, calls, _ = run_sdk_sweep(tmp_path)
    out = tmp_path / "sweeps" / "2026-01-02"
    assert code == 0 and calls == [
        "python3 -m hwnas.cli search experiment_yamls/search_nb201_cifar10_nightly.yaml "
        "--backend determined --trial-experiment experiment_yamls/det_trials_gpu.yaml "
        f"--warm-start latest:hwnas-sweep:nb201-cifar10-nightly --out {out}"
    ]
    out.mkdir(parents=True)
    (out / "state.json").write_text("{}")  # the driver saved its state, then was restarted
    (tmp_path / "log.txt").unlink()
    code, calls, _ = run_sdk_sweep(tmp_path)
    assert code == 0 and calls == [f"python3 -m hwnas.cli search --resume {out}"]


def test_sdk_sweep_never_runs_two_drivers_on_one_folder(tmp_path: Path) -> None:
    sweeps = tmp_path / "sweeps"
    sweeps.mkdir()
    (sweeps / ".lock").touch()
    # Another driver holds the folder's lock (flock(1), as the script takes it).
    holder = subprocess.Popen(["flock", str(sweeps / ".lock"), "sleep", "30"])
    try:
        for _ in range(50):  # until the holder has the lock
            if subprocess.run(["flock", "-n", str(sweeps / ".lock"), "true"]).returncode:
                break
            time.sleep(0.05)
        code, calls, output = run_sdk_sweep(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert code == 0 and calls == [] and "another hwnas sweep driver" in output


def test_sdk_cronjob_keeps_the_sweeps_on_a_volume_and_never_overlaps() -> None:
    job = yaml.safe_load((REPO / "deploy" / "cronjob-sdk.yaml").read_text())
    spec = job["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert Path(container["command"][0]).name == SDK_SCRIPT.name
    env = {e["name"]: e.get("value") for e in container["env"]}
    [mount] = container["volumeMounts"]
    assert env["HWNAS_SWEEP_DIR"] == mount["mountPath"] and "DET_MASTER" in env
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
