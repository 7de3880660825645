"""Weight-sharing supernets of the NB201 and DARTS spaces.

Every edge of a cell holds one module per candidate op (a *mixed op*). Two forward passes:

* ``forward(x, weights)``: each edge outputs ``sum_o w[e, o] * op_o(x)`` with the
  architecture's per-edge weights (GAEA's probabilities or DARTS's softmax), as in DARTS's
  ``MixedOp`` (quark0/darts ``model_search.py``) and AutoDL's ``NAS201SearchCell.forward``.
* ``forward_path(x, choice)``: one op per edge, as named by an architecture (AutoDL's
  ``forward_dynamic``, landmark regularisation's ``forward_oneshot``): a sub-network that
  shares the supernet's weights. ``none`` edges are skipped, and so is every edge out of a node
  that nothing reaches (a zero node), as the NB201 canonical key treats them.

Both spaces expose the same small interface: ``arch_shapes`` (rows x candidate ops per
architecture tensor), ``op_ids`` (which of the space's ``OPS`` the columns are),
``choice_of(arch)``, ``derive(probabilities)`` and ``cost_tables(coef)`` / ``expected_cost``
for a latency predictor that is additive over the space's one-hot encoding.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from hwnas.spaces import darts as darts_space
from hwnas.spaces import nb201 as nb201_space
from hwnas.spaces.darts_model import DartsStem, make_op, preprocessors, stack_cells
from hwnas.spaces.shapes import check_build_args

Weights = Mapping[str, torch.Tensor]
Choice = Mapping[str, list[int]]


def norm_factory(mode: str, affine: bool) -> functools.partial:
    """BatchNorm for the supernet: ``batch`` mode never tracks running statistics (every
    forward, training or not, normalises with the batch's own), ``recalibrate`` tracks them
    (to be recomputed per sub-network before it is scored)."""
    return functools.partial(nn.BatchNorm2d, affine=affine, track_running_stats=mode != "batch")


class MixedOp(nn.Module):
    """One edge: a module per candidate op; ``None`` where the op is ``none`` (adds nothing)."""

    def __init__(self, ops: list[nn.Module | None]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(op if op is not None else nn.Identity() for op in ops)
        self.is_zero = [op is None for op in ops]

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        total = None
        for o, op in enumerate(self.ops):
            if self.is_zero[o]:
                continue  # w * 0: no contribution, no compute
            out = weights[o] * op(x)
            total = out if total is None else total + out
        assert total is not None  # every edge has at least one op besides `none`
        return total

    def single(self, x: torch.Tensor, column: int) -> torch.Tensor:
        return self.ops[column](x)


class SupernetBase(nn.Module):
    """What both supernets share: op bookkeeping, derivation, choice parsing, costs."""

    space_ops: tuple[str, ...]
    #: Rows of each architecture tensor, by name.
    rows: dict[str, int]

    def __init__(self, exclude_none: bool) -> None:
        super().__init__()
        start = 1 if exclude_none else 0  # `none` is OPS[0] in both spaces
        self.op_ids: list[int] = list(range(start, len(self.space_ops)))
        self._column = {op_id: c for c, op_id in enumerate(self.op_ids)}

    @property
    def arch_shapes(self) -> dict[str, tuple[int, int]]:
        return {name: (rows, len(self.op_ids)) for name, rows in self.rows.items()}

    def column_of(self, op_id: int) -> int | None:
        """The column of the space's op ``op_id`` (None: the op is not a candidate)."""
        return self._column.get(op_id)

    def cost_tables(self, coef: np.ndarray) -> dict[str, torch.Tensor]:
        """Per-edge, per-op costs (rows x all of ``space_ops``) from a predictor's
        coefficients over the space's one-hot encoding."""
        raise NotImplementedError

    def expected_cost(self, probs: Weights, tables: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Expected additive cost (without the predictor's intercept) of the architecture
        drawn from ``probs``; differentiable in ``probs``."""
        raise NotImplementedError

    def choice_of(self, arch: str) -> dict[str, list[int]]:
        """Op index into ``space_ops`` per edge (0 = ``none``/unused) for a sub-network."""
        raise NotImplementedError

    def derive(self, probs: Weights) -> str:
        """The architecture the weights point at (see each supernet)."""
        raise NotImplementedError


# -- NB201 ---------------------------------------------------------------------------------------
class _ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, bn) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            bn(c_out),
        )


class _ResBlock(nn.Module):
    """NB201's stride-2 ResNet block between stages (as ``hwnas.spaces.nb201_model``)."""

    def __init__(self, c_in: int, c_out: int, bn) -> None:
        super().__init__()
        self.conv_a = _ReLUConvBN(c_in, c_out, 3, 2, bn)
        self.conv_b = _ReLUConvBN(c_out, c_out, 3, 1, bn)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0, ceil_mode=True),
            nn.Conv2d(c_in, c_out, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def _nb201_op(op: str, channels: int, bn) -> nn.Module | None:
    if op == "none":
        return None
    if op == "skip_connect":
        return nn.Identity()
    if op == "nor_conv_1x1":
        return _ReLUConvBN(channels, channels, 1, 1, bn)
    if op == "nor_conv_3x3":
        return _ReLUConvBN(channels, channels, 3, 1, bn)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NB201 op {op!r}")


class _NB201MixedCell(nn.Module):
    def __init__(self, channels: int, op_names: list[str], cell_bn) -> None:
        super().__init__()
        self.edges = nn.ModuleList(
            MixedOp([_nb201_op(op, channels, cell_bn) for op in op_names])
            for _ in nb201_space.EDGES
        )

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in (1, 2, 3):
            total = None
            for e, (to, src) in enumerate(nb201_space.EDGES):
                if to == node:
                    out = self.edges[e](nodes[src], weights[e])
                    total = out if total is None else total + out
            nodes.append(total)
        return nodes[3]

    def forward_path(self, x: torch.Tensor, columns: list[int | None]) -> torch.Tensor | None:
        nodes: list[torch.Tensor | None] = [x]
        for node in (1, 2, 3):
            total = None
            for e, (to, src) in enumerate(nb201_space.EDGES):
                column = columns[e]
                if to != node or column is None or nodes[src] is None:
                    continue
                out = self.edges[e].single(nodes[src], column)
                total = out if total is None else total + out
            nodes.append(total)
        return nodes[3]


class NB201Supernet(SupernetBase):
    """NB201's skeleton (stem, 3 stages of ``N`` cells, ResNet blocks, BN-ReLU, pool, linear)
    with one architecture shared by every cell: weights ``{"cell": (6, ops)}``."""

    space_ops = nb201_space.OPS

    def __init__(
        self,
        C: int,
        N: int,
        num_classes: int,
        input_shape: tuple[int, int, int],
        *,
        exclude_none: bool = True,
        bn_mode: str = "batch",
        bn_affine: bool = False,
    ) -> None:
        super().__init__(exclude_none)
        self.rows = {"cell": len(nb201_space.EDGES)}
        in_channels = check_build_args(num_classes, input_shape)[0]
        bn = norm_factory(bn_mode, True)
        cell_bn = norm_factory(bn_mode, bn_affine)
        names = [self.space_ops[i] for i in self.op_ids]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), bn(C))
        layers: list[nn.Module] = []
        c_prev = C
        for stage, c in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                layers.append(_ResBlock(c_prev, c, bn))
            layers.extend(_NB201MixedCell(c, names, cell_bn) for _ in range(N))
            c_prev = c
        self.layers = nn.ModuleList(layers)
        self.lastact = nn.Sequential(bn(c_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, int(num_classes))

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(x)
        return self.classifier(torch.flatten(self.global_pooling(x), 1))

    def forward(self, x: torch.Tensor, weights: Weights) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x, weights["cell"]) if isinstance(layer, _NB201MixedCell) else layer(x)
        return self._head(x)

    def forward_path(self, x: torch.Tensor, choice: Choice) -> torch.Tensor:
        # `none` edges (op 0) are skipped; every other op is always a candidate column.
        columns = [None if op == 0 else self.column_of(op) for op in choice["cell"]]
        h: torch.Tensor | None = self.stem(x)
        for layer in self.layers:
            if isinstance(layer, _NB201MixedCell):
                h = layer.forward_path(h, columns) if h is not None else None
            else:
                h = layer(h) if h is not None else None
        if h is None:  # no path from input to output: the cell computes zero
            h = torch.zeros(
                x.shape[0], self.classifier.in_features, 1, 1, device=x.device, dtype=x.dtype
            )
        return self._head(h)

    def choice_of(self, arch: str) -> dict[str, list[int]]:
        ops = nb201_space.parse_arch(arch)
        return {"cell": [nb201_space.OPS.index(op) for op in ops]}

    def derive(self, probs: Weights) -> str:
        """Argmax op per edge over the candidates (``none`` cannot win when excluded)."""
        best = probs["cell"].detach().argmax(-1).tolist()
        return nb201_space.format_arch([self.space_ops[self.op_ids[c]] for c in best])

    def cost_tables(self, coef: np.ndarray) -> dict[str, torch.Tensor]:
        table = np.asarray(coef, dtype=np.float64).reshape(self.rows["cell"], len(self.space_ops))
        return {"cell": torch.tensor(table, dtype=torch.float32)}

    def expected_cost(self, probs: Weights, tables: Mapping[str, torch.Tensor]) -> torch.Tensor:
        # Each edge carries op o with probability p_eo: E = sum_e sum_o p_eo c_eo.
        table = tables["cell"].to(probs["cell"].device)
        return (probs["cell"] * table[:, self.op_ids]).sum()


# -- DARTS ---------------------------------------------------------------------------------------
class _DartsMixedCell(nn.Module):
    """DARTS's search ``Cell``: 14 mixed edges; pools are followed by BN (``model_search.py``)."""

    def __init__(
        self,
        op_names: list[str],
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
        bn,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0, self.preprocess1 = preprocessors(
            c_prev_prev, c_prev, channels, reduction_prev, bn
        )
        edges = []
        for _, src in darts_space.EDGES:
            stride = 2 if reduction and src < 2 else 1
            ops: list[nn.Module | None] = []
            for name in op_names:
                if name == "none":
                    ops.append(None)
                    continue
                op = make_op(name, channels, stride, bn)
                if "pool" in name:
                    op = nn.Sequential(op, bn(channels))
                ops.append(op)
            edges.append(MixedOp(ops))
        self.edges = nn.ModuleList(edges)
        self.stride = 2 if reduction else 1
        self.multiplier = len(darts_space.NODES)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for k in darts_space.NODES:
            total = None
            for e, (node, src) in enumerate(darts_space.EDGES):
                if node == k:
                    out = self.edges[e](states[src], weights[e])
                    total = out if total is None else total + out
            states.append(total)
        return torch.cat(states[2:], dim=1)

    def forward_path(
        self, s0: torch.Tensor, s1: torch.Tensor, columns: list[int | None]
    ) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for k in darts_space.NODES:
            total = None
            for e, (node, src) in enumerate(darts_space.EDGES):
                if node == k and columns[e] is not None:
                    out = self.edges[e].single(states[src], columns[e])
                    total = out if total is None else total + out
            if total is None:
                raise ValueError(f"node {k} has no chosen edge (not a valid DARTS genotype)")
            states.append(total)
        return torch.cat(states[2:], dim=1)


class DartsSupernet(SupernetBase):
    """DARTS's search network: weights ``{"normal": (14, ops), "reduce": (14, ops)}``."""

    space_ops = darts_space.OPS

    def __init__(
        self,
        C: int,
        layers: int,
        num_classes: int,
        input_shape: tuple[int, int, int],
        *,
        stem: str = "cifar",
        exclude_none: bool = False,
        bn_mode: str = "batch",
        bn_affine: bool = False,
    ) -> None:
        super().__init__(exclude_none)
        self.rows = {name: len(darts_space.EDGES) for name in darts_space.CELL_TYPES}
        in_channels = check_build_args(num_classes, input_shape)[0]
        names = [self.space_ops[i] for i in self.op_ids]
        cell_bn = norm_factory(bn_mode, bn_affine)
        self.stem = DartsStem(stem, in_channels, C, norm_factory(bn_mode, True))
        self.cells, c_prev = stack_cells(
            self.stem,
            C,
            layers,
            lambda cpp, cp, c, reduction, reduction_prev: _DartsMixedCell(
                names, cpp, cp, c, reduction, reduction_prev, cell_bn
            ),
        )
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, int(num_classes))

    def forward(self, x: torch.Tensor, weights: Weights) -> torch.Tensor:
        s0, s1 = self.stem(x)
        for cell in self.cells:
            w = weights["reduce" if cell.reduction else "normal"]
            s0, s1 = s1, cell(s0, s1, w)
        return self.classifier(torch.flatten(self.global_pooling(s1), 1))

    def forward_path(self, x: torch.Tensor, choice: Choice) -> torch.Tensor:
        columns = {}
        for name, ops in choice.items():
            columns[name] = [None if op == 0 else self.column_of(op) for op in ops]
        s0, s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = (
                s1,
                cell.forward_path(s0, s1, columns["reduce" if cell.reduction else "normal"]),
            )
        return self.classifier(torch.flatten(self.global_pooling(s1), 1))

    def choice_of(self, arch: str) -> dict[str, list[int]]:
        ops = darts_space.DartsSpace.edge_ops(arch)
        return {name: ops[c].tolist() for c, name in enumerate(darts_space.CELL_TYPES)}

    def _non_none(self, probs: torch.Tensor) -> torch.Tensor:
        """Probabilities of the candidate ops other than ``none`` (rows x columns)."""
        mask = torch.tensor([op != 0 for op in self.op_ids], device=probs.device)
        return probs * mask

    def derive(self, probs: Weights) -> str:
        """DARTS's ``_parse``: per node, the two incoming edges with the largest non-``none``
        op weight, each with its argmax non-``none`` op."""
        cells = []
        for name in darts_space.CELL_TYPES:
            w = self._non_none(probs[name].detach().float())
            nodes = []
            for k in darts_space.NODES:
                edges = [e for e, (node, _) in enumerate(darts_space.EDGES) if node == k]
                strength = {e: float(w[e].max()) for e in edges}
                top = sorted(edges, key=lambda e: (-strength[e], e))[:2]
                nodes.append(
                    [
                        (self.space_ops[self.op_ids[int(w[e].argmax())]], darts_space.EDGES[e][1])
                        for e in sorted(top)
                    ]
                )
            cells.append(nodes)
        return darts_space.format_arch(*cells)

    def cost_tables(self, coef: np.ndarray) -> dict[str, torch.Tensor]:
        table = np.asarray(coef, dtype=np.float64).reshape(
            len(darts_space.CELL_TYPES), len(darts_space.EDGES), len(self.space_ops)
        )
        return {
            name: torch.tensor(table[c], dtype=torch.float32)
            for c, name in enumerate(darts_space.CELL_TYPES)
        }

    def expected_cost(self, probs: Weights, tables: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """A derived cell keeps 2 of each node's incoming edges. Model: edge e of node k is
        kept with probability r_e = min(1, 2 s_e / sum_k s), s_e its non-``none`` mass, and
        then carries op o with probability p_eo / s_e; otherwise its one-hot is ``none``.
        The expectation of an additive cost is linear in these marginals, so it is exact
        for them; with ``none`` excluded, s_e = 1 and r_e = 2 / (edges into k)."""
        total = torch.zeros((), device=next(iter(probs.values())).device)
        for name in darts_space.CELL_TYPES:
            p = probs[name]
            table = tables[name].to(p.device)
            w = self._non_none(p)
            s = w.sum(-1)
            for k in darts_space.NODES:
                idx = [e for e, (node, _) in enumerate(darts_space.EDGES) if node == k]
                s_k = s[idx]
                keep = torch.clamp(2.0 * s_k / s_k.sum().clamp_min(1e-12), max=1.0)
                ops = (w[idx] / s_k.clamp_min(1e-12).unsqueeze(-1)) * table[idx][:, self.op_ids]
                total = total + (keep * ops.sum(-1)).sum() + ((1.0 - keep) * table[idx, 0]).sum()
        return total


def build_supernet(
    space_name: str,
    space_options: Mapping[str, object],
    num_classes: int,
    input_shape: tuple[int, int, int],
    *,
    exclude_none: bool | None = None,
    bn_mode: str = "batch",
    bn_affine: bool = False,
) -> SupernetBase:
    """The supernet of a space's network at its ``space_options`` (nb201: C, N; darts: C,
    layers, stem)."""
    if space_name == "nb201":
        space = nb201_space.NB201Space(**space_options)  # type: ignore[arg-type]
        return NB201Supernet(
            space.C,
            space.N,
            num_classes,
            input_shape,
            exclude_none=True if exclude_none is None else exclude_none,
            bn_mode=bn_mode,
            bn_affine=bn_affine,
        )
    if space_name == "darts":
        dspace = darts_space.DartsSpace(**space_options)  # type: ignore[arg-type]
        return DartsSupernet(
            dspace.C,
            dspace.layers,
            num_classes,
            input_shape,
            stem=dspace.stem,
            exclude_none=False if exclude_none is None else exclude_none,
            bn_mode=bn_mode,
            bn_affine=bn_affine,
        )
    raise ValueError(f"no supernet for space {space_name!r}; known: nb201, darts")


__all__ = ["DartsSupernet", "MixedOp", "NB201Supernet", "SupernetBase", "build_supernet"]
