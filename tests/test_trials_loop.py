"""Training loop: learning on digits, bitwise resume, failure outcomes, hparams checks."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from hwnas.trials.checkpoint import CHECKPOINT_FILE, CheckpointError, load_checkpoint
from hwnas.trials.errors import (
    InvalidTrial,
    TrainingDiverged,
    TrialError,
    TrialOutOfMemory,
    is_out_of_memory,
)
from hwnas.trials.hparams import HParamsError, parse_hparams
from hwnas.trials.loop import TIMING_KEYS, TrialRun, train_to

REPO = Path(__file__).resolve().parents[1]

NB201_ARCH = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
)
MOBILENET_ARCH = "d1-k3-e3-w1.0-se1|d2-k5-e3-w1.0-se0"
TINY_OPTIONS = {
    "nb201": {"C": 8, "N": 1},
    "mobilenet": {
        "stage_channels": [8, 16],
        "stage_strides": [1, 2],
        "stage_activations": ["relu6", "hswish"],
        "stem_channels": 8,
        "stem_stride": 1,
        "head_channels": 32,
    },
}
ARCHS = {"nb201": NB201_ARCH, "mobilenet": MOBILENET_ARCH}


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    """Trials set torch's thread count for their process; give other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def hparams(space: str = "nb201", arch: str | None = None, **training: Any) -> dict[str, Any]:
    """Tiny, single-threaded (bitwise-reproducible) settings on the offline digits."""
    return {
        "space": space,
        "space_options": TINY_OPTIONS.get(space, {}),
        "arch": arch or ARCHS.get(space, ""),
        "seed": 7,
        "data": {"dataset": "digits", "train_subset": 512},
        "training": {"max_epochs": 3, "batch_size": 64, "cpu_threads": 1, **training},
        "latency": {"enabled": False},
    }


def untimed(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k not in TIMING_KEYS}


def assert_same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["epoch"] == b["epoch"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(
        a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True
    ):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert a["scheduler"] == b["scheduler"]
    assert a["scaler"] == b["scaler"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


@pytest.mark.parametrize(
    ("space", "amp"), [("nb201", "off"), ("mobilenet", "off"), ("nb201", "fp16")]
)
def test_resume_after_two_epochs_matches_three_uninterrupted(
    space: str, amp: str, tmp_path: Path
) -> None:
    # fp16 also round-trips the GradScaler's scale and growth tracker through the checkpoint.
    hp = hparams(space, amp=amp)
    if amp == "fp16":
        hp["data"]["train_subset"] = 128  # fp16 autocast is slow on CPU: two steps an epoch
    straight = train_to(hp, 3, tmp_path / "straight")
    first = train_to(hp, 2, tmp_path / "resumed")
    assert first["epochs"] == 2
    # A fresh TrialRun (as in a new process) resumes from the epoch-2 checkpoint.
    resumed = train_to(hp, 3, tmp_path / "resumed")
    assert untimed(resumed) == untimed(straight)
    assert resumed["epochs"] == 3
    assert_same_state(load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "resumed"))
    # The two-epoch metrics differ from the three-epoch ones: training really continued.
    assert first["train_loss"] != resumed["train_loss"]


def test_nb201_learns_digits_and_reports_the_contract(tmp_path: Path) -> None:
    hp = hparams()
    hp["data"]["train_subset"] = None
    seen: list[tuple[int, dict[str, Any]]] = []
    metrics = train_to(hp, 2, tmp_path, report=lambda e, m: seen.append((e, m)))
    assert [e for e, _ in seen] == [1, 2]
    assert metrics["validation_accuracy"] > 0.6  # chance is 0.1
    for key in ("validation_loss", "train_loss", "params", "flops", "epochs"):
        assert key in metrics
    assert metrics["epochs"] == 2
    space_model = TrialRun(hp).model
    assert metrics["params"] == sum(p.numel() for p in space_model.parameters())
    assert metrics["flops"] > 2 * metrics["params"]  # convolutions reuse weights spatially
    # The LR follows the cosine over max_epochs=3, not over the 2 trained epochs.
    assert 0.0 < metrics["lr"] < parse_hparams(hp).training.lr
    assert (tmp_path / CHECKPOINT_FILE).is_file()


def test_schedule_spans_max_epochs() -> None:
    run = TrialRun(hparams(max_epochs=4))
    run.train_to(2)
    # Halfway through the planned 4 epochs the cosine factor is 0.5.
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * run.hp.training.lr)


def test_invalid_architecture_is_an_invalid_trial() -> None:
    with pytest.raises(InvalidTrial, match="rejected by space 'nb201'"):
        TrialRun(hparams(arch="|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|"))
    with pytest.raises(InvalidTrial, match="unknown search space"):
        TrialRun(hparams(space="nope", arch="x"))
    bad_option = hparams()
    bad_option["space_options"] = {"C": 8, "N": 1, "depth": 3}
    with pytest.raises(HParamsError, match=r"hparams\.space_options.*depth"):
        TrialRun(bad_option)


def test_huge_learning_rate_stops_with_nan_outcome(tmp_path: Path) -> None:
    with pytest.raises(TrainingDiverged, match="loss became") as info:
        train_to(hparams(lr=1e9, grad_clip=0.0), 1, tmp_path)
    assert info.value.kind == "nan"
    assert not (tmp_path / CHECKPOINT_FILE).exists()  # a diverged epoch is never checkpointed


def test_checkpoint_of_another_trial_is_refused(tmp_path: Path) -> None:
    train_to(hparams(), 1, tmp_path)
    other = hparams(arch=NB201_ARCH.replace("none~2", "skip_connect~2"))
    with pytest.raises(CheckpointError, match="arch"):
        train_to(other, 2, tmp_path)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        load_checkpoint(tmp_path)


def test_length_beyond_max_epochs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HParamsError, match="max_epochs=3"):
        train_to(hparams(), 4, tmp_path)


def test_bad_hparams_name_the_field() -> None:
    hp = hparams()
    hp["training"]["learning_rate"] = 0.1
    with pytest.raises(HParamsError, match=r"hparams\.training\.learning_rate"):
        parse_hparams(hp)
    hp = hparams(amp="fp8")
    with pytest.raises(HParamsError, match=r"hparams\.training\.amp.*'fp8'"):
        parse_hparams(hp)
    with pytest.raises(HParamsError, match=r"hparams\.arch"):
        parse_hparams({"space": "nb201"})


@pytest.mark.parametrize("option", [{"amp": "bf16"}, {"channels_last": True}])
def test_bf16_autocast_and_channels_last_train_on_cpu(option: dict[str, Any]) -> None:
    run = TrialRun(hparams(max_epochs=1, **option))
    run.train_to(1)
    metrics = run.evaluate()
    assert 0.0 <= metrics["validation_accuracy"] <= 1.0
    assert torch.isfinite(torch.tensor(metrics["validation_loss"]))


def test_same_seed_same_result_other_seed_differs() -> None:
    def one_epoch(seed: int) -> dict[str, Any]:
        hp = copy.deepcopy(hparams(max_epochs=1))
        hp["seed"] = seed
        run = TrialRun(hp)
        run.train_to(1)
        return run.state_dict()["model"]

    a, b, c = one_epoch(1), one_epoch(1), one_epoch(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_model_too_big_for_memory_is_an_oom_outcome() -> None:
    # A 2**34-channel head asks the allocator for ~0.5 TB: refused at once, nothing is used.
    hp = hparams("mobilenet")
    hp["space_options"] = {**TINY_OPTIONS["mobilenet"], "head_channels": 2**34}
    with pytest.raises(TrialOutOfMemory, match="out of memory while building the model") as info:
        TrialRun(hp)
    assert info.value.kind == "oom"
    assert isinstance(info.value, InvalidTrial)  # Determined: InvalidHP, like a bad arch
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


@pytest.mark.parametrize(
    "config",
    sorted(p.name for p in (REPO / "experiment_yamls").glob("*.yaml") if "det_" not in p.name),
)
def test_searcher_configs_produce_hparams_the_trial_accepts(config: str) -> None:
    # The contract between rooms: what the searcher forwards must validate here unchanged.
    from hwnas.searchers.config import load_config

    cfg = load_config(REPO / "experiment_yamls" / config)
    hp = {**cfg.trial_hparams_base(), "space": cfg.space.name, "arch": "x", "seed": 1}
    parsed = parse_hparams(hp)
    assert parsed.training.max_epochs == cfg.early_stopping.max_length
    assert parsed.data.dataset == cfg.data.dataset


def test_unusable_latency_backend_fails_before_any_training() -> None:
    hp = hparams()
    hp["latency"] = {"enabled": True, "backend": "trt-fp16"}  # TensorRT: not on this machine
    with pytest.raises(TrialError, match=r"hparams\.latency\.backend='trt-fp16'") as info:
        TrialRun(hp)
    assert info.value.kind == "error"
    hp["latency"]["backend"] = "no-such-backend"
    with pytest.raises(TrialError, match="unknown latency backend"):
        TrialRun(hp)


@pytest.mark.slow
def test_torch_compile_trains_like_eager() -> None:
    # Inductor on CPU needs a C++ compiler and minutes of compilation: slow suite only.
    eager, compiled = TrialRun(hparams(max_epochs=1)), TrialRun(hparams(max_epochs=1, compile=True))
    eager.train_to(1)
    compiled.train_to(1)
    a, b = eager.evaluate(), compiled.evaluate()
    # Fused kernels round differently, so close rather than bitwise.
    assert b["validation_loss"] == pytest.approx(a["validation_loss"], rel=1e-2)
