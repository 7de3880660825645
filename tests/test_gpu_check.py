"""scripts/gpu-check on a machine without a GPU: the dry run lists every GPU path, and a real
run reports each unusable path as one row (fail, or skip with why it is not installable)
instead of stopping. The GPU figures themselves need the hardware (not lent to this task)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.gpu_check import CHECKS

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu-check"

_DRY_RUN_NO_TORCH = """
import runpy, sys
sys.argv = [sys.argv[1], "--dry-run"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exit:
    assert exit.code == 0, exit.code
print("torch imported:", "torch" in sys.modules)
"""


def test_dry_run_lists_every_gpu_path_and_starts_nothing():
    done = subprocess.run(
        [sys.executable, "-c", _DRY_RUN_NO_TORCH, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("would run ")]
    assert [ln.split()[2] for ln in lines] == [c.name for c in CHECKS]
    for path in (
        "torch-eager",
        "torch-compile",
        "torch-cuda-graph",
        "ort-cuda",
        "ort-trt",
        "trt-fp16",
        "nvml",
        "train-amp",
    ):
        assert any(ln.split()[2] == path for ln in lines), path
    assert "budget 450 s" in done.stdout
    assert done.stdout.strip().endswith("torch imported: False")


def test_run_without_gpu_reports_each_path_as_one_row(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "cuda-runtime", "ort-cuda", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr  # a GPU path failed: non-zero exit
    rows = json.loads((tmp_path / "gpu-check.json").read_text())
    assert rows["cuda-runtime"]["status"] == "fail"
    assert (
        "no usable CUDA device" in rows["cuda-runtime"]["note"]
        or "cuda" in rows["cuda-runtime"]["note"]
    )
    assert rows["ort-cuda"]["status"] == "skip"
    assert "CUDAExecutionProvider" in rows["ort-cuda"]["note"]
    assert "284 MB" in rows["ort-cuda"]["note"]  # why it cannot be carried to the device
    assert "1 failed, 1 skipped" in done.stdout


def test_spent_budget_skips_the_rest():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "nvml", "trt-fp16", "--budget-s", "5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1  # nothing measured is no success
    assert done.stdout.count("time budget spent") == 2
