"""Torch modules of the MobileNet space: inverted-residual blocks, squeeze-excite, network."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from hwnas.spaces.shapes import check_build_args

if TYPE_CHECKING:
    from hwnas.spaces.mobilenet import MobileNetSpace


def make_activation(name: str) -> nn.Module:
    """``relu``, ``relu6`` or ``hswish`` as a module."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"unknown activation {name!r}")


class ConvBNAct(nn.Sequential):
    """Conv (bias-free), BatchNorm, optional activation."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        act: str | None = None,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        if act is not None:
            layers.append(make_activation(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """MobileNetV3's SE: global pool, 1x1 squeeze (ReLU), 1x1 excite, hard-sigmoid gate."""

    def __init__(self, channels: int, divisor: int = 8) -> None:
        super().__init__()
        from hwnas.spaces.mobilenet import make_divisible

        hidden = make_divisible(channels / 4, divisor)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.squeeze = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.excite = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.excite(self.act(self.squeeze(self.pool(x)))))


class InvertedResidual(nn.Module):
    """1x1 expand, depthwise kxk, optional SE, 1x1 project; residual when shapes match."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, expansion: int, stride: int, se: bool, act: str
    ) -> None:
        super().__init__()
        from hwnas.spaces.mobilenet import make_divisible

        mid = make_divisible(c_in * expansion)
        self.use_residual = stride == 1 and c_in == c_out
        self.expand = ConvBNAct(c_in, mid, 1, act=act)
        self.depthwise = ConvBNAct(mid, mid, kernel, stride, groups=mid, act=act)
        self.se = SqueezeExcite(mid) if se else nn.Identity()
        self.project = ConvBNAct(mid, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return x + out if self.use_residual else out


class MobileNetNetwork(nn.Module):
    """Stem, searchable stages of inverted-residual blocks, head and classifier."""

    def __init__(
        self,
        space: MobileNetSpace,
        stages: Sequence[Sequence[Any]],
        num_classes: int = 10,
        input_shape: tuple[int, int, int] = (3, 32, 32),
    ) -> None:
        super().__init__()
        in_channels = check_build_args(num_classes, input_shape)[0]
        self.stem = ConvBNAct(in_channels, space.stem_channels, 3, space.stem_stride, act="hswish")
        blocks: list[nn.Module] = []
        c_prev = space.stem_channels
        for i, (depth, kernel, expansion, width, se) in enumerate(stages):
            c_out = space.stage_out_channels(i, width)
            for b in range(depth):
                stride = space.stage_strides[i] if b == 0 else 1
                act = space.stage_activations[i]
                blocks.append(
                    InvertedResidual(c_prev, c_out, kernel, expansion, stride, bool(se), act)
                )
                c_prev = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBNAct(c_prev, space.head_channels, 1, act="hswish")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(space.head_channels, int(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))
