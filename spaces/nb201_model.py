"""NB201's macro skeleton in torch (``TinyNetwork`` with ``InferCell``).

Stem conv3x3+BN; three stages of ``N`` cells at C, 2C, 4C channels with a ResNet basic block
(stride 2) between stages; BN+ReLU; global average pool; linear classifier. Cell ops are
ReLU-Conv-BN convs, 3x3 average pooling (``count_include_pad=False``), identity, and ``none``.

A cell holds only the edges it is given as live (``hwnas.spaces.nb201.live_edges``): dead
edges have no module, no parameters and no node in an exported graph. Built with every edge
(``live=None``) it is NB201's own cell, ``none`` multiplying by zero, parameter-exact with the
benchmark's ``params_mb``.
"""

from __future__ import annotations

import torch
from torch import nn

from hwnas.spaces.nb201 import EDGES
from hwnas.spaces.shapes import check_build_args


class ReLUConvBN(nn.Sequential):
    """ReLU, bias-free conv, BatchNorm: NB201's conv op."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    """NB201's ``none`` op: a zero tensor shaped like the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class ResNetBasicBlock(nn.Module):
    """NB201's stride-2 reduction block: two ReLUConvBN 3x3 plus avgpool+1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
        # ceil_mode keeps the shortcut's size equal to the strided conv's for odd inputs;
        # for even inputs it is NB201's plain 2x2 average pool.
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0, ceil_mode=True),
            nn.Conv2d(c_in, c_out, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def make_op(op: str, channels: int) -> nn.Module:
    """One NB201 cell op at ``channels`` in and out, stride 1."""
    if op == "none":
        return Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1)
    if op == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NB201 op {op!r}")


class NB201Cell(nn.Module):
    """NB201's ``InferCell``: node i = sum of one op on each earlier node; returns node 3.

    ``live`` (one flag per edge, ``EDGES`` order; None: all) says which edges to build. Layers
    are keyed by edge index (``layers.3`` is edge 3<-0), as NB201's ModuleList names them. A
    cell without a live edge into node 3 outputs zeros.
    """

    def __init__(
        self, ops: tuple[str, ...], channels: int, live: tuple[bool, ...] | None = None
    ) -> None:
        super().__init__()
        keep = (True,) * len(EDGES) if live is None else tuple(live)
        # (edge index, to, from) of each built edge; EDGES order is topological.
        self.edges = tuple((i, to, src) for i, (to, src) in enumerate(EDGES) if keep[i])
        self.layers = nn.ModuleDict({str(i): make_op(ops[i], channels) for i, _, _ in self.edges})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[torch.Tensor | None] = [x, None, None, None]
        for i, to, src in self.edges:
            out = self.layers[str(i)](nodes[src])
            total = nodes[to]
            nodes[to] = out if total is None else total + out
        output = nodes[3]
        return x.mul(0.0) if output is None else output


class NB201Network(nn.Module):
    """NB201's ``TinyNetwork``: ``(B, *input_shape)`` in, ``(B, num_classes)`` logits out;
    every cell builds the edges ``live`` names (None: all, as NB201 does)."""

    def __init__(
        self,
        ops: tuple[str, ...],
        C: int = 16,
        N: int = 5,
        num_classes: int = 10,
        input_shape: tuple[int, int, int] = (3, 32, 32),
        live: tuple[bool, ...] | None = None,
    ) -> None:
        super().__init__()
        in_channels = check_build_args(num_classes, input_shape)[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C)
        )
        cells: list[nn.Module] = []
        c_prev = C
        for stage, c in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                cells.append(ResNetBasicBlock(c_prev, c))
            cells.extend(NB201Cell(ops, c, live) for _ in range(N))
            c_prev = c
        self.cells = nn.Sequential(*cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, int(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.global_pooling(x), 1))
