"""A fixed reference network, timed in alternation with candidates (``reference=True``).

Every candidate of a search is paired with the same reference (same input shape), so the
ratio candidate / reference ranks candidates with the machine's drifting load cancelled. The
network is plain convolutions that every backend runs; weights are seeded, though latency does
not depend on them.
"""

from __future__ import annotations

import torch
from torch import nn


def reference_model(input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10) -> nn.Module:
    """Stem conv + 6 conv-BN-ReLU blocks at 32 channels + global pool + linear, seeded.

    About 1.5 ms on one core of the project's CPUs at 3x32x32: the same order as the
    candidates, so neither side of a pair is dominated by timer or call overhead.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        width = 32
        layers: list[nn.Module] = [nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False)]
        layers += [nn.BatchNorm2d(width), nn.ReLU()]
        for _ in range(6):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False)]
            layers += [nn.BatchNorm2d(width), nn.ReLU()]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes)]
        return nn.Sequential(*layers).eval()
