"""BatchNorm recalibration: statistics that match the weights, nothing else touched, resume
still bitwise, and the checkpoint's exported weights are the validated ones."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from hwnas.trials.batchnorm import (
    batchnorm_layers,
    batchnorm_state,
    batchnorm_statistics,
    recalibrate_batchnorm,
)
from hwnas.trials.checkpoint import load_checkpoint, load_model_weights
from hwnas.trials.data import BN_STREAM, EPOCH_STREAM, derive_seed
from hwnas.trials.loop import TrialRun, train_to
from tests.test_trials_loop import assert_same_state, hparams, untimed


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def mobilenet_hparams(**training: Any) -> dict[str, Any]:
    """The tiny MobileNet of the loop tests on all 1,437 training images at a large learning
    rate: after one epoch (22 steps) it has learned, and its running statistics lag."""
    hp = hparams("mobilenet", **{"lr": 0.2, **training})
    hp["data"]["train_subset"] = None
    return hp


def val_accuracy(model: nn.Module, run: TrialRun, *, batch_stats: bool = False) -> float:
    """Accuracy on the validation split, in eval mode or with each batch's own statistics
    (on a copy, so the model's running statistics stay as they are)."""
    net = copy.deepcopy(model)
    net.train(batch_stats)
    correct = seen = 0
    with torch.no_grad():
        for x, y in run.data.val_batches(10_000, torch.device("cpu")):
            correct += int((net(x).argmax(1) == y).sum())
            seen += len(y)
    return correct / seen


def test_recalibration_restores_eval_accuracy_to_the_batch_statistics_one() -> None:
    run = TrialRun(mobilenet_hparams(bn_recalibration_batches=0))
    run.train_to(1)
    with_batch_stats = val_accuracy(run.model, run, batch_stats=True)
    assert with_batch_stats > 0.35  # it learned something: chance is 0.1
    for _, layer in batchnorm_layers(run.model):
        layer.reset_running_stats()  # mean 0, var 1: nothing to do with these weights
    assert val_accuracy(run.model, run) < with_batch_stats - 0.2
    batches = run.data.sample_batches(123, 64, torch.device("cpu"))
    result = recalibrate_batchnorm(run.model, batches, max_batches=8)
    assert (result.batches, result.images) == (8, 8 * 64)
    assert result.seconds > 0
    assert val_accuracy(run.model, run) == pytest.approx(with_batch_stats, abs=0.03)


def test_recalibration_changes_nothing_but_the_statistics() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.Flatten()
    )
    model[1].momentum = 0.3
    model.train()
    for _ in range(3):  # give the statistics values worth replacing
        model(torch.randn(8, 1, 6, 6))
    stats = batchnorm_state(model)
    other = {k: v.clone() for k, v in model.state_dict().items() if k not in stats}
    data = [torch.randn(16, 1, 6, 6) + 2.0 for _ in range(5)]
    rng = torch.get_rng_state()
    result = recalibrate_batchnorm(model, data)
    assert result.batches == 5
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in other.items())  # weights untouched
    assert not torch.equal(after["1.running_mean"], stats["1.running_mean"])
    assert torch.equal(torch.get_rng_state(), rng)  # dropout did not run: no RNG drawn
    assert model.training and model[1].momentum == 0.3  # modes and momentum put back
    assert int(after["1.num_batches_tracked"]) == 5
    # The cumulative average of the five batches' statistics (equal batch sizes).
    features = [model[0](x) for x in data]
    expected = torch.stack([f.mean((0, 2, 3)) for f in features]).mean(0)
    assert torch.allclose(after["1.running_mean"], expected.detach(), atol=1e-5)
    # batchnorm_statistics swaps statistics in for a block and back.
    with batchnorm_statistics(model, stats):
        assert torch.equal(model[1].running_mean, stats["1.running_mean"])
    assert torch.equal(model[1].running_mean, after["1.running_mean"])


def test_recalibration_without_batches_leaves_the_statistics() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    model[1].running_mean.fill_(3.0)
    with pytest.raises(ValueError, match="no batch"):
        recalibrate_batchnorm(model, [])
    assert torch.equal(model[1].running_mean, torch.full((2,), 3.0))
    assert model[1].momentum == 0.1


def test_validation_uses_recalibrated_statistics_and_training_is_unchanged(
    tmp_path: Path,
) -> None:
    on = train_to(mobilenet_hparams(bn_recalibration_batches=4), 1, tmp_path / "on")
    off = train_to(mobilenet_hparams(bn_recalibration_batches=0), 1, tmp_path / "off")
    # After one short epoch the running statistics lag; the recalibrated ones do not.
    assert on["validation_accuracy"] > off["validation_accuracy"] + 0.15
    assert on["train_loss"] == off["train_loss"]
    assert (on["bn_recalibration_batches"], off["bn_recalibration_batches"]) == (4, 0)
    assert on["bn_recalibration_s"] > 0.0 == off["bn_recalibration_s"]
    # The training state is identical: recalibration never touched the running statistics.
    a, b = load_checkpoint(tmp_path / "on"), load_checkpoint(tmp_path / "off")
    assert_same_state(a, b)
    assert b["bn_recalibration"] is None and a["bn_recalibration"]["epoch"] == 1


def test_resume_after_a_recalibrated_validation_is_bitwise(tmp_path: Path) -> None:
    hp = hparams("mobilenet", bn_recalibration_batches=3)  # 512 images: 8 steps an epoch
    straight = train_to(hp, 3, tmp_path / "straight")
    first = train_to(hp, 1, tmp_path / "resumed")  # validated (recalibrated) at rung 1
    assert first["bn_recalibration_batches"] == 3
    resumed = train_to(hp, 3, tmp_path / "resumed")  # a fresh process would do the same
    assert untimed(resumed) == untimed(straight)
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "resumed")
    assert_same_state(a, b)
    for key, value in a["bn_recalibration"]["buffers"].items():
        assert torch.equal(value, b["bn_recalibration"]["buffers"][key]), key


def test_recalibration_is_seeded_per_epoch_and_leaves_rngs_alone() -> None:
    run = TrialRun(mobilenet_hparams(max_epochs=2))
    run.train_epoch()
    rng = torch.get_rng_state()
    first = run.recalibrate_batchnorm()
    assert torch.equal(torch.get_rng_state(), rng)
    again = copy.deepcopy(first)
    run.bn_recalibration = None  # forget it: the same epoch recomputes the same statistics
    second = run.recalibrate_batchnorm()
    assert all(torch.equal(second["buffers"][k], v) for k, v in again["buffers"].items())
    # Its batches are not the training epoch's.
    assert derive_seed(7, BN_STREAM, 1) != derive_seed(7, EPOCH_STREAM, 1)


def test_train_batches_are_the_epoch_seeds_sample() -> None:
    run = TrialRun(hparams())
    cpu = torch.device("cpu")
    for (xa, ya), (xb, yb) in zip(
        run.data.train_batches(2, 64, cpu),
        run.data.sample_batches(derive_seed(7, EPOCH_STREAM, 2), 64, cpu),
        strict=True,
    ):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_exported_weights_carry_the_validated_statistics(tmp_path: Path) -> None:
    hp = mobilenet_hparams(bn_recalibration_batches=4)
    metrics = train_to(hp, 1, tmp_path)
    weights, epoch = load_model_weights(tmp_path)
    assert epoch == 1
    state = load_checkpoint(tmp_path)
    for key, value in state["bn_recalibration"]["buffers"].items():
        assert torch.equal(weights[key], value)
        assert not torch.equal(state["model"][key], value) or "num_batches" in key
    fresh = TrialRun(hp)
    fresh.model.load_state_dict(weights)
    assert val_accuracy(fresh.model, fresh) == pytest.approx(metrics["validation_accuracy"])
