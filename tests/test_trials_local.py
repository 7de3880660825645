"""``python -m hwnas.trials.local`` end to end, as the local backend starts it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from hwnas.trials.checkpoint import CHECKPOINT_FILE, load_checkpoint
from hwnas.trials.local import main, run_request
from hwnas.trials.loop import train_to

REPO = Path(__file__).resolve().parents[1]
NB201_ARCH = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
)


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    """Trials set torch's thread count for their process; give other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def hparams(arch: str = NB201_ARCH, **training: Any) -> dict[str, Any]:
    return {
        "space": "nb201",
        "space_options": {"C": 8, "N": 1},
        "arch": arch,
        "seed": 3,
        "data": {"dataset": "digits", "train_subset": 256},
        "training": {"max_epochs": 2, "batch_size": 64, "cpu_threads": 1, **training},
        "latency": {"enabled": False},
    }


def run_local(tmp_path: Path, request: dict[str, Any] | str, name: str) -> dict[str, Any]:
    """Write REQ, run the child like the runner does, check exit 0 and return RES."""
    req, res = tmp_path / f"{name}.req.json", tmp_path / f"{name}.res.json"
    req.write_text(request if isinstance(request, str) else json.dumps(request))
    proc = subprocess.run(
        [sys.executable, "-m", "hwnas.trials.local", "--request", str(req), "--result", str(res)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(res.read_text())


def test_trains_then_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "trial-7"
    hp = hparams()
    hp["latency"] = {"enabled": True, "backend": "ort-cpu", "cache": str(tmp_path / "lat.db")}
    request = {"hparams": hp, "length": 1, "checkpoint_dir": str(ckpt), "trial_id": 7}
    first = run_local(tmp_path, request, "first")
    assert first["ok"] is True, first
    assert first["metrics"]["epochs"] == 1
    assert first["metrics"]["latency_ms"] > 0
    assert first["metrics"]["latency_backend"] == "ort-cpu"
    assert (ckpt / CHECKPOINT_FILE).is_file()
    second = run_local(tmp_path, {**request, "length": 2}, "second")
    assert second["ok"] is True, second
    metrics = second["metrics"]
    assert metrics["epochs"] == 2
    for key in ("validation_accuracy", "validation_loss", "train_loss", "params", "flops"):
        assert isinstance(metrics[key], (int, float)), key
    assert 0.0 <= metrics["validation_accuracy"] <= 1.0
    # Measured once per trial: the resumed child reuses the figure kept in the checkpoint.
    latency_keys = [k for k in first["metrics"] if k.startswith("latency_")]
    assert {k: metrics[k] for k in latency_keys} == {k: first["metrics"][k] for k in latency_keys}

    # Two child processes with a latency measurement in between train bitwise like one
    # uninterrupted in-process run without any: measuring never perturbs training RNG.
    train_to(hparams(), 2, tmp_path / "straight")
    resumed, straight = load_checkpoint(ckpt), load_checkpoint(tmp_path / "straight")
    for key, tensor in straight["model"].items():
        assert torch.equal(resumed["model"][key], tensor), key


def test_failure_outcomes_are_results_not_crashes(tmp_path: Path) -> None:
    bad_arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|avg_pool_3x3~0|"
    invalid = run_local(
        tmp_path,
        {"hparams": hparams(arch=bad_arch), "length": 1, "checkpoint_dir": str(tmp_path / "a")},
        "invalid",
    )
    assert invalid["ok"] is False
    assert invalid["kind"] == "invalid"
    assert "nb201" in invalid["message"]

    nan = run_local(
        tmp_path,
        {
            "hparams": hparams(lr=1e9, grad_clip=0.0),
            "length": 1,
            "checkpoint_dir": str(tmp_path / "b"),
        },
        "nan",
    )
    assert nan == {"ok": False, "kind": "nan", "message": nan["message"]}
    assert "loss became" in nan["message"]


def test_malformed_request_names_the_field(tmp_path: Path) -> None:
    # In-process: the same code path as the child, without paying for another interpreter.
    req = tmp_path / "bad.json"
    req.write_text(json.dumps({"hparams": hparams(), "length": "three"}))
    result = run_request(req)
    assert result["ok"] is False
    assert result["kind"] == "error"
    assert "'length'" in result["message"]
    req.write_text("{not json")
    garbage = run_request(req)
    assert garbage["kind"] == "error"
    assert "cannot read request" in garbage["message"]


def test_exit_code_is_nonzero_only_when_the_result_cannot_be_written(tmp_path: Path) -> None:
    req = tmp_path / "req.json"
    req.write_text("[]")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["--request", str(req), "--result", str(blocker / "res.json")]) == 2
    assert main(["--request", str(req), "--result", str(tmp_path / "res.json")]) == 0
    assert json.loads((tmp_path / "res.json").read_text())["ok"] is False
