"""BatchNorm recalibration: recompute the running statistics for the weights a model has now.

The running mean/variance a BatchNorm layer keeps are an exponential average over the batches
it was trained on, so after a short training they describe weights from several hundred
steps ago; an eval-mode forward pass then normalises with the wrong statistics (on digits, a
MobileNet scores chance in eval mode after one epoch while batch statistics give ~0.9). An
early-stopping rung that compares such numbers compares noise. Recalibrating means resetting
the statistics and averaging them afresh over a few training batches with the weights frozen:
the cumulative average (``momentum=None``) weighs every batch equally, as the once-for-all /
BigNAS line of weight-sharing NAS does before evaluating each sub-network.

``recalibrate_batchnorm`` works on any ``nn.Module`` (a trial's model, or a sub-network of a
supernet); ``batchnorm_state`` / ``load_batchnorm_state`` save and put back the statistics so a
caller can evaluate with recalibrated statistics and then restore the training ones.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

#: The buffers of a BatchNorm layer that hold its running statistics.
STAT_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")

Prepare = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Recalibration:
    """What a recalibration used: batches, images and wall-clock seconds."""

    batches: int
    images: int
    seconds: float


def batchnorm_layers(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """``(qualified name, layer)`` of every BatchNorm layer that tracks running statistics."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, _BatchNorm) and m.track_running_stats
    ]


def batchnorm_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every tracked BatchNorm statistic, keyed as in ``model.state_dict()``."""
    out: dict[str, torch.Tensor] = {}
    for name, layer in batchnorm_layers(model):
        prefix = f"{name}." if name else ""
        for buffer in STAT_BUFFERS:
            value = getattr(layer, buffer, None)
            if value is not None:
                out[prefix + buffer] = value.detach().clone()
    return out


def load_batchnorm_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state`` (from ``batchnorm_state``) into the model's statistics in place.

    In place (``copy_``), so a compiled module that captured the buffers sees the new values.
    Raises ``KeyError`` naming a statistic the state lacks or does not belong to the model.
    """
    mine = batchnorm_state(model)
    missing, extra = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
    if missing or extra:
        raise KeyError(
            f"BatchNorm state does not fit the model (missing {missing[:3]}, unexpected "
            f"{extra[:3]})"
        )
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for key, value in state.items():
            buffers[key].copy_(value)


@contextlib.contextmanager
def kept_batchnorm_statistics(model: nn.Module) -> Iterator[None]:
    """Run the block (which may recalibrate); the model's statistics come back after."""
    own = batchnorm_state(model)
    try:
        yield
    finally:
        load_batchnorm_state(model, own)


@contextlib.contextmanager
def batchnorm_statistics(model: nn.Module, state: dict[str, torch.Tensor]) -> Iterator[None]:
    """Run the block with ``state``'s statistics loaded; the model's own come back after."""
    with kept_batchnorm_statistics(model):
        load_batchnorm_state(model, state)
        yield


def recalibrate_batchnorm(
    model: nn.Module,
    batches: Iterable[torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]],
    *,
    max_batches: int | None = None,
    prepare: Prepare | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> Recalibration:
    """Reset every tracked BatchNorm statistic of ``model`` and recompute it as the plain
    average over ``batches`` (at most ``max_batches``), in place.

    Nothing else changes: no gradient is computed and no weight moves; every other module runs
    in eval mode (no dropout, so no global RNG is drawn), and each module's mode and momentum
    are put back afterwards. A batch is a tensor or a tuple whose first item is the input.
    ``prepare`` maps an input before the forward pass (device, memory format); ``autocast``
    returns the context the forward pass runs in (mixed precision). ``ValueError`` if there
    was no batch at all; the statistics are then left as they were.
    """
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be >= 1, got {max_batches}")
    layers = [m for _, m in batchnorm_layers(model)]
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in layers}
    before = batchnorm_state(model)
    start = time.perf_counter()
    count = images = 0
    try:
        model.eval()
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # cumulative average: every batch counts the same
            m.train()
        with torch.no_grad():
            for batch in batches:
                if max_batches is not None and count >= max_batches:
                    break
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                if prepare is not None:
                    x = prepare(x)
                with autocast() if autocast is not None else contextlib.nullcontext():
                    model(x)
                count += 1
                images += len(x)
        if count == 0:
            load_batchnorm_state(model, before)
            raise ValueError("BatchNorm recalibration got no batch")
    except BaseException:
        if count:  # a failure midway: do not leave half-averaged statistics behind
            load_batchnorm_state(model, before)
        raise
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        for m, mode in modes.items():
            m.training = mode
    return Recalibration(count, images, time.perf_counter() - start)


__all__ = [
    "STAT_BUFFERS",
    "Recalibration",
    "batchnorm_layers",
    "batchnorm_state",
    "batchnorm_statistics",
    "kept_batchnorm_statistics",
    "load_batchnorm_state",
    "recalibrate_batchnorm",
]
