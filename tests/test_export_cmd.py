"""End to end with real trainings: a tiny local search, its report, and ``hwnas export``.

One module-scoped search (3 NB201 cells, C=4, N=1, 1 epoch on the offline digits data,
latency on ONNX Runtime CPU) feeds every test here.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from hwnas.cli import main as cli_main
from hwnas.driver.local import load_state, run_search
from hwnas.driver.progress import ProgressView
from hwnas.export import ExportCommandError, export_member
from hwnas.searchers.config import parse_config
from hwnas.spaces import get_space

CONFIG = {
    "name": "export-test",
    "seed": 3,
    "space": {"name": "nb201", "options": {"C": 4, "N": 1}},
    "data": {"dataset": "digits"},
    "training": {"batch_size": 128},
    "objectives": [
        {"metric": "validation_accuracy", "goal": "maximize"},
        {"metric": "latency_ms", "goal": "minimize"},
    ],
    "strategy": {"name": "random"},
    "early_stopping": {"name": "none", "max_length": 1},
    "budget": {"max_trials": 3, "max_concurrent": 2},
    "runner": {"trial_timeout_s": 300, "devices": "cpu"},
}


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "out"
    summary = run_search(
        parse_config(CONFIG, "export-test"),
        out,
        concurrency=2,
        progress=ProgressView(sys.stderr, live=False, quiet=True),
    )
    assert summary.finished, summary
    return out


def test_real_search_reports_trained_trials(search_dir):
    doc = json.loads((search_dir / "pareto.json").read_text())
    assert doc["n_trials"] == 3 and doc["n_evaluated"] == 3
    assert doc["front"] and doc["front"][0]["rank"] == 1
    for member in doc["front"]:
        metrics = member["metrics"]
        assert 0.0 <= metrics["validation_accuracy"] <= 1.0
        assert metrics["latency_ms"] > 0 and metrics["latency_backend"] == "ort-cpu"
        assert metrics["epochs"] == 1
    state = load_state(search_dir)
    for trial in state["method"]["trials"]:
        folder = search_dir / "trials" / str(trial["trial_id"])
        assert (folder / "checkpoint" / "checkpoint.pt").is_file()
        assert "epoch 1/1" in (folder / "log.txt").read_text()


def test_export_round_trip_matches_torch_in_onnxruntime(search_dir, tmp_path, capsys):
    import onnxruntime as ort

    dest = tmp_path / "best"
    assert cli_main(["export", str(search_dir), "--rank", "1", "--dest", str(dest)]) == 0
    assert json.loads(capsys.readouterr().out)["rank"] == 1
    arch = json.loads((dest / "architecture.json").read_text())
    front = json.loads((search_dir / "pareto.json").read_text())["front"]
    assert arch["trial_id"] == front[0]["trial_id"] and arch["arch"] == front[0]["arch"]
    assert arch["input_shape"] == [1, 16, 16] and arch["num_classes"] == 10
    assert arch["checkpoint_epoch"] == arch["epochs"] == 1
    assert "get_space" in (dest / "README.txt").read_text()

    # Loadable with nothing but torch and the space definition.
    model = get_space(arch["space"], **arch["space_options"]).build(
        arch["arch"], num_classes=arch["num_classes"], input_shape=tuple(arch["input_shape"])
    )
    model.load_state_dict(torch.load(dest / "weights.pt", weights_only=True))
    model.eval()
    x = np.random.default_rng(0).standard_normal((1, *arch["input_shape"])).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(dest / "model.onnx"), providers=["CPUExecutionProvider"])
    actual = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-3)

    # The exported weights are the trained ones from the trial's checkpoint, with the BatchNorm
    # statistics its validation was recalibrated with (those of its reported accuracy).
    ckpt = torch.load(
        search_dir / "trials" / str(arch["trial_id"]) / "checkpoint" / "checkpoint.pt",
        weights_only=True,
    )
    recalibrated = ckpt["bn_recalibration"]
    assert recalibrated["epoch"] == arch["checkpoint_epoch"] and recalibrated["buffers"]
    for name, tensor in model.state_dict().items():
        expected = recalibrated["buffers"].get(name, ckpt["model"][name])
        assert torch.equal(tensor, expected), name


def test_export_rejects_a_rank_outside_the_front(search_dir, tmp_path):
    n = len(json.loads((search_dir / "pareto.json").read_text())["front"])
    with pytest.raises(ExportCommandError, match=f"ranks 1..{n}"):
        export_member(search_dir, n + 1, tmp_path / "x")
    with pytest.raises(ExportCommandError, match="--rank must be >= 1"):
        export_member(search_dir, 0, tmp_path / "x")


def test_report_command_rerenders(search_dir, capsys):
    before = json.loads((search_dir / "pareto.json").read_text())
    (search_dir / "pareto.png").unlink()
    assert cli_main(["report", str(search_dir)]) == 0
    assert "pareto.png" in capsys.readouterr().out
    assert (search_dir / "pareto.png").stat().st_size > 0
    assert json.loads((search_dir / "pareto.json").read_text()) == before


def test_export_into_a_read_only_folder_is_one_line_naming_the_path(search_dir, tmp_path):
    """Issue 13 item 6: ``hwnas export`` (the real command) on a read-only run folder."""
    import os
    import shutil

    from cli_run import HWNAS, error_line, read_only_argv, run, writable_again

    copy = tmp_path / "copy"
    shutil.copytree(search_dir, copy)
    try:
        res = run(read_only_argv(copy, [str(HWNAS), "export", str(copy), "--rank", "1"]))
    finally:
        if os.geteuid() != 0:
            writable_again(copy)
    assert res.returncode == 2
    line = error_line(res.stderr, only=False)  # torch may warn about the legacy exporter
    assert line.startswith(f"hwnas: error: {copy}/export") and (
        "Read-only" in line or "Permission" in line
    )
