"""DARTS's networks in torch (``NetworkCIFAR`` / ``NetworkImageNet`` with ``Cell``), without
the auxiliary head, parameter-exact with DARTS's ``model.py``.

The ops follow DARTS's ``operations.py``: ``SepConv`` (two stacked ReLU / depthwise k x k /
1x1 / BN), ``DilConv`` (one ReLU / dilated depthwise / 1x1 / BN), 3x3 max and average pooling
(``count_include_pad=False``), identity, and ``FactorizedReduce`` for a strided skip. Every
op takes a ``bn`` factory so the weight-sharing supernet (``hwnas.trials.supernet``) builds
the same ops with its own normalisation (DARTS's search uses ``affine=False``).

Two departures from DARTS, both identical on DARTS's even sizes: ``FactorizedReduce`` pads
its shifted copy so its two halves agree on odd sizes (DARTS fails there), and its second half
takes the odd channel when ``C_out`` is odd.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from hwnas.spaces.darts import NODES
from hwnas.spaces.shapes import check_build_args

#: Builds a normalisation layer for ``channels``.
NormFactory = Callable[[int], nn.Module]


class ReLUConvBN(nn.Sequential):
    """ReLU, bias-free conv, BN."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, bn: NormFactory
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            bn(c_out),
        )


class DilConv(nn.Sequential):
    """ReLU, dilated depthwise k x k, 1x1 conv, BN (DARTS's ``dil_conv``)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int,
        padding: int,
        dilation: int,
        bn: NormFactory,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in, bias=False
            ),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            bn(c_out),
        )


class SepConv(nn.Sequential):
    """Two stacked depthwise-separable convs, the first strided (DARTS's ``sep_conv``)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, bn: NormFactory
    ) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, bn),
            DilConv(c_in, c_out, kernel, 1, padding, 1, bn),
        )


class FactorizedReduce(nn.Module):
    """ReLU, then two stride-2 1x1 convs on ``x`` and ``x`` shifted by one pixel, concatenated,
    then BN: halves the resolution without discarding every other pixel."""

    def __init__(self, c_in: int, c_out: int, bn: NormFactory) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = bn(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # The shifted copy is padded back to x's size, so both halves come out
        # ceil(H/2) x ceil(W/2) for odd sizes too; for even ones the padding is never sampled
        # and the result is DARTS's.
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class Zero(nn.Module):
    """DARTS's ``none`` (supernet only): zeros shaped like the op's output."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


def make_op(op: str, channels: int, stride: int, bn: NormFactory = nn.BatchNorm2d) -> nn.Module:
    """One DARTS op at ``channels`` in and out."""
    c = channels
    if op == "none":
        return Zero(stride)
    if op == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if op == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, bn)
    if op == "sep_conv_3x3":
        return SepConv(c, c, 3, stride, 1, bn)
    if op == "sep_conv_5x5":
        return SepConv(c, c, 5, stride, 2, bn)
    if op == "dil_conv_3x3":
        return DilConv(c, c, 3, stride, 2, 2, bn)
    if op == "dil_conv_5x5":
        return DilConv(c, c, 5, stride, 4, 2, bn)
    raise ValueError(f"unknown DARTS op {op!r}")


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability ``drop_prob``, rescaling the rest (DARTS)."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.size(0), 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


def preprocessors(
    c_prev_prev: int, c_prev: int, channels: int, reduction_prev: bool, bn: NormFactory
) -> tuple[nn.Module, nn.Module]:
    """A cell's input adapters: FactorizedReduce (after a reduction) or 1x1 ReLUConvBN for
    input 0, 1x1 ReLUConvBN for input 1."""
    pre0 = (
        FactorizedReduce(c_prev_prev, channels, bn)
        if reduction_prev
        else ReLUConvBN(c_prev_prev, channels, 1, 1, 0, bn)
    )
    return pre0, ReLUConvBN(c_prev, channels, 1, 1, 0, bn)


class DartsCell(nn.Module):
    """DARTS's ``Cell``: node k = op(a) + op(b) for its two entries; output = concat of nodes
    2..5 (4 x ``channels``)."""

    def __init__(
        self,
        cell: Sequence[Sequence[tuple[str, int]]],
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
        bn: NormFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0, self.preprocess1 = preprocessors(
            c_prev_prev, c_prev, channels, reduction_prev, bn
        )
        self.inputs = [src for node in cell for _, src in node]
        names = [op for node in cell for op, _ in node]
        self.ops = nn.ModuleList(
            make_op(op, channels, 2 if reduction and src < 2 else 1, bn)
            for op, src in zip(names, self.inputs, strict=True)
        )
        self.multiplier = len(NODES)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(len(NODES)):
            total = None
            for e in (2 * i, 2 * i + 1):
                op = self.ops[e]
                h = op(states[self.inputs[e]])
                if self.training and drop_prob > 0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat(states[2:], dim=1)


def reduction_layers(layers: int) -> tuple[int, int]:
    """Indices of the reduction cells (DARTS: a third and two thirds of the way)."""
    return layers // 3, 2 * layers // 3


def stack_cells(
    stem: DartsStem,
    C: int,
    layers: int,
    make_cell: Callable[[int, int, int, bool, bool], nn.Module],
) -> tuple[nn.ModuleList, int]:
    """DARTS's macro skeleton after the stem: ``layers`` cells, the channels doubled at each
    reduction layer, each cell reading the two previous outputs. ``make_cell(c_prev_prev,
    c_prev, c_curr, reduction, reduction_prev)`` builds one cell (with a ``multiplier``: how
    many node outputs it concatenates); returns the cells and the last one's output channels."""
    c_prev_prev, c_prev = stem.out_channels
    c_curr, reduction_prev = C, stem.reduction_prev
    cells = []
    for i in range(layers):
        reduction = i in reduction_layers(layers)
        if reduction:
            c_curr *= 2
        cell = make_cell(c_prev_prev, c_prev, c_curr, reduction, reduction_prev)
        cells.append(cell)
        reduction_prev = reduction
        c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
    return nn.ModuleList(cells), c_prev


class DartsStem(nn.Module):
    """The CIFAR stem (3x3 conv to 3C + BN; both cell inputs are its output) or the ImageNet
    stem (stem0: two stride-2 3x3 convs to C; stem1: a third one), returning ``(s0, s1)``."""

    def __init__(self, kind: str, in_channels: int, C: int, bn: NormFactory) -> None:
        super().__init__()
        self.kind = kind
        if kind == "cifar":
            self.out_channels = (3 * C, 3 * C)
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, 3 * C, 3, padding=1, bias=False), bn(3 * C)
            )
            self.reduction_prev = False
        elif kind == "imagenet":
            half = max(1, C // 2)
            self.out_channels = (C, C)
            self.stem0 = nn.Sequential(
                nn.Conv2d(in_channels, half, 3, stride=2, padding=1, bias=False),
                bn(half),
                nn.ReLU(inplace=True),
                nn.Conv2d(half, C, 3, stride=2, padding=1, bias=False),
                bn(C),
            )
            self.stem1 = nn.Sequential(
                nn.ReLU(inplace=True),
                nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
                bn(C),
            )
            self.reduction_prev = True  # the first cell's input 0 has twice input 1's size
        else:
            raise ValueError(f"unknown DARTS stem {kind!r}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "cifar":
            s = self.stem(x)
            return s, s
        s0 = self.stem0(x)
        return s0, self.stem1(s0)


class DartsNetwork(nn.Module):
    """``(B, *input_shape)`` in, ``(B, num_classes)`` logits out."""

    def __init__(
        self,
        genotype: Sequence[Sequence[Sequence[tuple[str, int]]]],
        C: int = 36,
        layers: int = 20,
        num_classes: int = 10,
        input_shape: tuple[int, int, int] = (3, 32, 32),
        stem: str = "cifar",
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        in_channels = check_build_args(num_classes, input_shape)[0]
        normal, reduce = genotype
        self.drop_path = float(drop_path)
        self.stem = DartsStem(stem, in_channels, C, nn.BatchNorm2d)
        self.cells, c_prev = stack_cells(
            self.stem,
            C,
            layers,
            lambda cpp, cp, c, reduction, reduction_prev: DartsCell(
                reduce if reduction else normal, cpp, cp, c, reduction, reduction_prev
            ),
        )
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, int(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0, s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, self.drop_path)
        return self.classifier(torch.flatten(self.global_pooling(s1), 1))
