"""The hook through which the supernet prepares BatchNorm before it scores a sub-network.

With ``bn: batch`` (the default) the supernet's BatchNorm layers keep no running statistics
and always normalise with the batch's own, so there is nothing to prepare. With
``bn: recalibrate`` they keep running statistics, which training on the mixture (or on other
sub-networks) leaves wrong for any one sub-network; before a sub-network is scored, its
statistics are recomputed from a few training batches run through that sub-network, with the
same ``hwnas.trials.batchnorm.recalibrate_batchnorm`` a stand-alone trial validates with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from hwnas.trials.batchnorm import Recalibration, recalibrate_batchnorm


class SubNetwork(nn.Module):
    """A supernet with one architecture fixed: ``forward(x)`` runs only that path."""

    def __init__(self, supernet: nn.Module, choice: Mapping[str, list[int]]) -> None:
        super().__init__()
        self.supernet = supernet
        self.choice = dict(choice)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.supernet.forward_path(x, self.choice)


def recalibrate_subnetwork(
    supernet: nn.Module,
    choice: Mapping[str, list[int]],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
) -> Recalibration:
    """Prepare BatchNorm for scoring the sub-network ``choice`` (see the module docstring).

    Only the layers on the sub-network's path see a batch; the others are reset too, which is
    harmless because a scoring puts every statistic back afterwards."""
    return recalibrate_batchnorm(SubNetwork(supernet, choice), batches)


__all__ = ["SubNetwork", "recalibrate_subnetwork"]
