"""The hook through which the supernet prepares BatchNorm before it scores a sub-network.

With ``bn: batch`` (the default) the supernet's BatchNorm layers keep no running statistics
and always normalise with the batch's own, so there is nothing to prepare. With
``bn: recalibrate`` they keep running statistics, which training on the mixture (or on other
sub-networks) leaves wrong for any one sub-network; before a sub-network is scored, its
statistics are recomputed from a few training batches run through that sub-network.

``recalibrate_batchnorm`` here is a small local version. hwnas is getting a shared
``hwnas.trials.batchnorm.recalibrate_batchnorm(model, batches, ...)``; when it lands, point
``recalibrate_subnetwork`` at it (it takes a module and batches, which is what
``SubNetwork`` provides).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn


class SubNetwork(nn.Module):
    """A supernet with one architecture fixed: ``forward(x)`` runs only that path."""

    def __init__(self, supernet: nn.Module, choice: Mapping[str, list[int]]) -> None:
        super().__init__()
        self.supernet = supernet
        self.choice = dict(choice)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.supernet.forward_path(x, self.choice)


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> int:
    """Reset every BatchNorm's running statistics and recompute them as the plain average
    over ``batches`` (``momentum=None``) in training mode; returns the batches used. The
    model's mode and the layers' momenta are restored afterwards."""
    norms = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    if not norms:
        return 0
    was_training = model.training
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    used = 0
    try:
        for x, _ in batches:
            model(x)
            used += 1
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return used


def recalibrate_subnetwork(
    supernet: nn.Module,
    choice: Mapping[str, list[int]],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
) -> int:
    """Prepare BatchNorm for scoring the sub-network ``choice`` (see the module docstring)."""
    return recalibrate_batchnorm(SubNetwork(supernet, choice), batches)


__all__ = ["SubNetwork", "recalibrate_batchnorm", "recalibrate_subnetwork"]
