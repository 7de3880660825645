"""The DARTS cell space (Liu et al. 2019): a normal and a reduction cell, each 4 intermediate
nodes summing two (op, input) entries, ops from DARTS's 8 primitives.

String form: the two cells, each written like an NB201 cell, node by node::

    normal=|sep_conv_3x3~0|sep_conv_3x3~1|+|sep_conv_3x3~0|sep_conv_3x3~1|+...;reduce=|...|+...

A cell has 4 node groups separated by ``+`` (nodes 2, 3, 4, 5); each group holds exactly two
``op~input`` entries; inputs 0 and 1 are the cell's inputs (the outputs of the cells two and
one back), 2..k-1 earlier intermediate nodes of the same cell. The two entries of a node take
**different** inputs (DARTS's derivation keeps the top-2 *edges* of a node, so it never emits
the same input twice). The cell's output concatenates nodes 2..5 (DARTS's ``concat``).

``none`` is one of the 8 ops of the weight-sharing supernet (an edge with no contribution),
never an entry of a derived cell: DARTS drops it when deriving, and a ``none`` entry would be
dead computation. So a cell uses the 7 other ops (``CELL_OPS``), and every valid genotype has
no dead computation: node 2 can only read inputs 0 and 1 (so both are used) and every node is
concatenated into the output.

Edge order everywhere (one-hot rows, the supernet's architecture weights) is ``EDGES``:
node-major, inputs ascending: (2<-0), (2<-1), (3<-0), (3<-1), (3<-2), (4<-0), ... (5<-4).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hwnas.spaces import SPACES
from hwnas.spaces.base import ArchitectureError, SearchSpace

if TYPE_CHECKING:  # torch is imported only when a model is built
    from torch import nn

#: DARTS's primitives in DARTS's order (``genotypes.PRIMITIVES``); index 0 is the zero op.
OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
#: The ops a derived cell may use (all but ``none``).
CELL_OPS: tuple[str, ...] = OPS[1:]
#: The two cell types, in string order.
CELL_TYPES: tuple[str, ...] = ("normal", "reduce")
#: Intermediate nodes of a cell (0 and 1 are its inputs).
NODES: tuple[int, ...] = (2, 3, 4, 5)
#: ``(node, input)`` per supernet edge: 14 per cell.
EDGES: tuple[tuple[int, int], ...] = tuple((k, j) for k in NODES for j in range(k))
#: Node labels of ``graph``.
GRAPH_OPS: tuple[str, ...] = ("input", *CELL_OPS, "output")
#: Labelled cells per cell type: prod over nodes of C(k, 2) input pairs x 7^2 ops.
CELLS_PER_TYPE = math.prod(math.comb(k, 2) * len(CELL_OPS) ** 2 for k in NODES)

_OP_INDEX = {op: i for i, op in enumerate(OPS)}
_EDGE_INDEX = {edge: i for i, edge in enumerate(EDGES)}

Entry = tuple[str, int]  # (op, input)
Node = tuple[Entry, Entry]
Cell = tuple[Node, Node, Node, Node]
Genotype = tuple[Cell, Cell]  # (normal, reduce)


# -- parsing and formatting ----------------------------------------------------------------------
def _parse_cell(cell_type: str, text: str) -> Cell:
    groups = text.strip().split("+")
    if len(groups) != len(NODES):
        raise ArchitectureError(
            f"{cell_type} cell {text!r} has {len(groups)} node group(s) separated by '+', "
            f"expected {len(NODES)} (nodes 2, 3, 4, 5)"
        )
    nodes: list[Node] = []
    for node, group in zip(NODES, groups, strict=True):
        where = f"{cell_type} cell, node {node}"
        group = group.strip()
        if len(group) < 2 or not group.startswith("|") or not group.endswith("|"):
            raise ArchitectureError(f"{where}: group {group!r} must start and end with '|'")
        parts = group[1:-1].split("|")
        if len(parts) != 2:
            raise ArchitectureError(
                f"{where}: {len(parts)} entr{'y' if len(parts) == 1 else 'ies'} in {group!r}, "
                "expected exactly 2 ('op~input' each)"
            )
        entries: list[Entry] = []
        for part in parts:
            op, sep, src = part.strip().partition("~")
            if not sep:
                raise ArchitectureError(f"{where}: entry {part!r} is not of the form 'op~input'")
            if op == "none":
                raise ArchitectureError(
                    f"{where}: op 'none' is the supernet's zero op, never part of a cell "
                    f"(dead computation); use one of {', '.join(CELL_OPS)}"
                )
            if op not in _OP_INDEX:
                raise ArchitectureError(f"{where}: unknown op {op!r}; known: {', '.join(CELL_OPS)}")
            if not src.isdigit() or int(src) >= node:
                raise ArchitectureError(
                    f"{where}: entry {part!r} has input {src!r}, expected one of 0..{node - 1} "
                    "(0, 1: the cell inputs; 2..: earlier nodes)"
                )
            entries.append((op, int(src)))
        if entries[0][1] == entries[1][1]:
            raise ArchitectureError(
                f"{where}: both entries take input {entries[0][1]}; a node's two inputs must "
                "differ (DARTS keeps two distinct edges per node)"
            )
        nodes.append(_sorted_node(entries[0], entries[1]))
    return tuple(nodes)  # type: ignore[return-value]


def _sorted_node(a: Entry, b: Entry) -> Node:
    """A node's two entries in a fixed order (their sum does not depend on it): by input."""
    return (a, b) if (a[1], _OP_INDEX[a[0]]) <= (b[1], _OP_INDEX[b[0]]) else (b, a)


def parse_arch(arch: str) -> Genotype:
    """``(normal, reduce)`` cells of a DARTS string; ``ArchitectureError`` names the cell, the
    node, the entry and the value."""
    if not isinstance(arch, str):
        raise ArchitectureError(f"DARTS architecture must be a string, got {type(arch).__name__}")
    parts = arch.strip().split(";")
    cells: dict[str, Cell] = {}
    for part in parts:
        name, sep, body = part.partition("=")
        name = name.strip()
        if not sep or name not in CELL_TYPES:
            raise ArchitectureError(
                f"DARTS architecture {arch!r}: part {part.strip()!r} must look like "
                "'normal=<cell>' or 'reduce=<cell>', the two joined by ';'"
            )
        if name in cells:
            raise ArchitectureError(f"DARTS architecture {arch!r}: the {name} cell appears twice")
        cells[name] = _parse_cell(name, body)
    missing = [c for c in CELL_TYPES if c not in cells]
    if missing:
        raise ArchitectureError(f"DARTS architecture {arch!r} lacks the {missing[0]} cell")
    return cells["normal"], cells["reduce"]


def format_cell(cell: Sequence[Sequence[Entry]]) -> str:
    """One cell's string (``|op~in|op~in|+...``) with each node's entries in sorted order."""
    return "+".join(
        "|" + "|".join(f"{op}~{src}" for op, src in _sorted_node(*n)) + "|" for n in cell
    )


def format_arch(normal: Sequence[Sequence[Entry]], reduce: Sequence[Sequence[Entry]]) -> str:
    """The string of a genotype given as two cells of 4 nodes x 2 ``(op, input)`` entries."""
    return f"normal={format_cell(normal)};reduce={format_cell(reduce)}"


def from_genotype(normal: Sequence[tuple[str, int]], reduce: Sequence[tuple[str, int]]) -> str:
    """The string of a DARTS ``Genotype``'s ``normal`` / ``reduce`` lists (8 ``(op, input)``
    pairs each; entries 2k, 2k+1 feed node k+2), validated. Concat is always nodes 2..5."""
    cells = []
    for name, entries in (("normal", normal), ("reduce", reduce)):
        entries = [(str(op), int(src)) for op, src in entries]
        if len(entries) != 2 * len(NODES):
            raise ArchitectureError(f"{name}: a DARTS genotype lists 8 (op, input) pairs")
        cells.append([entries[2 * i : 2 * i + 2] for i in range(len(NODES))])
    return format_arch(*parse_arch(format_arch(*cells)))


def to_genotype(arch: str) -> dict[str, Any]:
    """DARTS's ``Genotype`` fields for ``arch`` (``normal``/``reduce`` as lists of pairs)."""
    normal, reduce = parse_arch(arch)
    concat = list(NODES)
    return {
        "normal": [list(e) for n in normal for e in n],
        "normal_concat": concat,
        "reduce": [list(e) for n in reduce for e in n],
        "reduce_concat": concat,
    }


#: DARTS's published cells (``genotypes.py``, quark0/darts): first- and second-order search.
DARTS_V1 = from_genotype(
    [("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
     ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
    [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
     ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
)  # fmt: skip
DARTS_V2 = from_genotype(
    [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
     ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
     ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
)  # fmt: skip


# -- canonical form ----------------------------------------------------------------------------
def _relabellings() -> list[dict[int, int]]:
    """Every bijection of the intermediate nodes (inputs 0, 1 fixed)."""
    return [
        {0: 0, 1: 1, **dict(zip(NODES, perm, strict=True))}
        for perm in itertools.permutations(NODES)
    ]


_RELABELLINGS = _relabellings()


def canonical_cell(cell: Cell) -> Cell:
    """The least relabelling of ``cell``'s intermediate nodes that keeps every entry reading
    an earlier node.

    Relabelling nodes permutes the C-channel blocks of the cell's concatenated output; every
    consumer of that output starts with a learnable per-channel linear map (the next cells'
    1x1 preprocessing, the classifier after pooling), which absorbs the permutation. So
    relabelled cells compute the same function class with the same parameters and cost.
    Inputs 0 and 1 are not interchangeable (they come from different cells).
    """
    best: tuple[tuple[tuple[int, int], ...], ...] | None = None
    for pi in _RELABELLINGS:
        entries = [(k, src) for k, node in zip(NODES, cell, strict=True) for _, src in node]
        if any(src >= 2 and pi[src] >= pi[k] for k, src in entries):
            continue  # some entry would read a later node
        moved: list[tuple[int, Node]] = [
            (pi[k], _sorted_node(*((op, pi[src]) for op, src in node)))
            for k, node in zip(NODES, cell, strict=True)
        ]
        moved.sort()
        key = tuple(tuple((src, _OP_INDEX[op]) for op, src in node) for _, node in moved)
        if best is None or key < best:
            best = key
    assert best is not None  # the identity always qualifies
    return tuple(  # type: ignore[return-value]
        tuple((OPS[op], src) for src, op in node) for node in best
    )


# -- the space ---------------------------------------------------------------------------------
STEMS = ("cifar", "imagenet")


@SPACES.register("darts")
class DartsSpace(SearchSpace):
    """DARTS's CNN cell space: a normal and a reduction cell stacked into DARTS's network.

    ``C`` is the first cells' channel count (each cell outputs 4C), ``layers`` the number of
    cells (reductions, which double the channels, sit at ``layers // 3`` and
    ``2 * layers // 3``), ``stem`` the CIFAR stem (3x3 conv to 3C) or the ImageNet one (three
    stride-2 3x3 convs), ``drop_path`` DARTS's drop-path probability during training (0 off).
    Defaults are DARTS's search network (C=16, 8 cells); DARTS evaluates at C=36, 20 cells
    (CIFAR) and C=48, 14 cells (ImageNet mobile).

    About 1.04e9 labelled cells per type, 1.08e18 genotypes. Canonical key: each cell's least
    node relabelling (``canonical_cell``) with each node's two entries in sorted order, so
    relabelled and reordered cells share a key; the key is itself a valid architecture string.
    """

    name = "darts"

    def __init__(
        self, C: int = 16, layers: int = 8, stem: str = "cifar", drop_path: float = 0.0
    ) -> None:
        for field, value, low in (("C", C, 1), ("layers", layers, 3)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ArchitectureError(
                    f"darts option {field} must be an int >= {low}, got {value!r}"
                )
        if stem not in STEMS:
            raise ArchitectureError(f"darts option stem must be one of {STEMS}, got {stem!r}")
        if (
            isinstance(drop_path, bool)
            or not isinstance(drop_path, (int, float))
            or not (0.0 <= drop_path < 1.0)
        ):
            raise ArchitectureError(f"darts option drop_path must be in [0, 1), got {drop_path!r}")
        self.C = C
        self.layers = layers
        self.stem = stem
        self.drop_path = float(drop_path)

    # -- identity and validation ---------------------------------------------------------
    def validate(self, arch: str) -> str:
        return format_arch(*parse_arch(arch))

    def canonical_key(self, arch: str) -> str:
        normal, reduce = parse_arch(arch)
        return format_arch(canonical_cell(normal), canonical_cell(reduce))

    # -- sampling and variation -----------------------------------------------------------
    @staticmethod
    def _sample_cell(rng: np.random.Generator) -> Cell:
        nodes = []
        for k in NODES:
            pairs = list(itertools.combinations(range(k), 2))
            a, b = pairs[int(rng.integers(len(pairs)))]
            ops = rng.integers(len(CELL_OPS), size=2)
            nodes.append(_sorted_node((CELL_OPS[int(ops[0])], a), (CELL_OPS[int(ops[1])], b)))
        return tuple(nodes)  # type: ignore[return-value]

    def sample(self, rng: np.random.Generator) -> str:
        """Uniform over labelled genotypes: per node an unordered pair of distinct inputs, then
        an op for each."""
        return format_arch(self._sample_cell(rng), self._sample_cell(rng))

    def mutate(self, arch: str, rng: np.random.Generator) -> str:
        """One of ``neighbours(arch)``, uniformly (one entry's op or input changed)."""
        options = self.neighbours(arch)
        return options[int(rng.integers(len(options)))]

    def crossover(self, a: str, b: str, rng: np.random.Generator) -> str:
        """Each node of each cell from one parent (a node's two entries travel together, so
        its inputs stay distinct)."""
        ga, gb = parse_arch(a), parse_arch(b)
        take_a = rng.random((2, len(NODES))) < 0.5
        cells = [
            [
                na if take_a[c, i] else nb
                for i, (na, nb) in enumerate(zip(ga[c], gb[c], strict=True))
            ]
            for c in range(2)
        ]
        return format_arch(*cells)

    def neighbours(self, arch: str) -> list[str]:
        """Every genotype one entry away: its op changed (6 others), or its input changed to
        another earlier node not used by the node's other entry. Cell, node, entry order."""
        genotype = [list(map(list, cell)) for cell in parse_arch(arch)]
        out: list[str] = []
        for c, cell in enumerate(genotype):
            for i, (k, node) in enumerate(zip(NODES, cell, strict=True)):
                for e, (op, src) in enumerate(node):
                    other_src = node[1 - e][1]
                    changes = [(o, src) for o in CELL_OPS if o != op]
                    changes += [(op, s) for s in range(k) if s not in (src, other_src)]
                    for change in changes:
                        new_node = list(node)
                        new_node[e] = change
                        cells = [list(x) for x in genotype]
                        cells[c] = [*cell[:i], new_node, *cell[i + 1 :]]
                        out.append(format_arch(*cells))
        return out

    def size(self) -> int:
        return CELLS_PER_TYPE**2

    def options(self) -> dict[str, Any]:
        return {
            **self.space_options(),
            "ops": list(OPS),
            "cell_ops": list(CELL_OPS),
            "cell_types": list(CELL_TYPES),
            "nodes": list(NODES),
            "inputs_per_node": 2,
            "edges_per_cell": len(EDGES),
            "cells_per_type": CELLS_PER_TYPE,
            "encodings": {"onehot": self.encoding_length(), "path": self.encoding_length()},
            "graph_nodes": 2 * (2 + 2 * len(NODES) + 1),
        }

    def space_options(self) -> dict[str, Any]:
        return {"C": self.C, "layers": self.layers, "stem": self.stem, "drop_path": self.drop_path}

    # -- encodings ------------------------------------------------------------------------
    @staticmethod
    def encoding_length() -> int:
        """2 cells x 14 edges x 8 ops."""
        return len(CELL_TYPES) * len(EDGES) * len(OPS)

    @staticmethod
    def edge_ops(arch: str) -> np.ndarray:
        """``(2, 14)`` op index (into ``OPS``) per cell type and supernet edge; 0 (``none``)
        where the genotype does not use the edge. The supernet's single-path choice."""
        out = np.zeros((len(CELL_TYPES), len(EDGES)), dtype=np.int64)
        for c, cell in enumerate(parse_arch(arch)):
            for k, node in zip(NODES, cell, strict=True):
                for op, src in node:
                    out[c, _EDGE_INDEX[(k, src)]] = _OP_INDEX[op]
        return out

    def encode(self, arch: str, kind: str = "onehot") -> np.ndarray:
        """``"onehot"``: 224 floats, cell-major then edge (``EDGES``) then op (``OPS``): 1 at
        the edge's op, at ``none`` for the 6 edges of a cell the genotype leaves out. It lays
        out exactly like the supernet's architecture weights, so an additive (lookup) latency
        predictor fitted on it gives a differentiable expected latency.

        ``"path"``: the one-hot of the canonical form (isomorphic cells encode alike). DARTS
        cells have too many input->output paths for a BANANAS path set; this stands in for it
        where a strategy asks for ``path``.
        """
        if kind == "path":
            arch = self.canonical_key(arch)
        elif kind != "onehot":
            raise ArchitectureError(f"unknown darts encoding {kind!r}; known: onehot, path")
        ops = self.edge_ops(arch)
        vec = np.zeros((len(CELL_TYPES), len(EDGES), len(OPS)), dtype=np.float32)
        for c in range(len(CELL_TYPES)):
            vec[c, np.arange(len(EDGES)), ops[c]] = 1.0
        return vec.reshape(-1)

    def graph_op_names(self) -> list[str]:
        return list(GRAPH_OPS)

    def graph(self, arch: str) -> tuple[np.ndarray, np.ndarray]:
        """Node-op DAG of both cells, block-diagonal: per cell 11 nodes (input 0, input 1,
        its 8 entries as op nodes in string order, output). An entry reading input 0/1 is fed
        by that input node; one reading node k by both entries of node k; every entry feeds
        the output (all nodes are concatenated)."""
        per = 2 + 2 * len(NODES) + 1
        n = len(CELL_TYPES) * per
        adj = np.zeros((n, n), dtype=np.float32)
        node_ops = np.zeros((n, len(GRAPH_OPS)), dtype=np.float32)
        for c, cell in enumerate(parse_arch(arch)):
            base = c * per
            out = base + per - 1
            labels = ["input", "input", *(op for node in cell for op, _ in node), "output"]
            for i, label in enumerate(labels):
                node_ops[base + i, GRAPH_OPS.index(label)] = 1.0
            for i, node in enumerate(cell):
                for e, (_, src) in enumerate(node):
                    me = base + 2 + 2 * i + e
                    if src < 2:
                        adj[base + src, me] = 1.0
                    else:
                        feeder = base + 2 + 2 * (src - 2)
                        adj[feeder, me] = adj[feeder + 1, me] = 1.0
                    adj[me, out] = 1.0
        return adj, node_ops

    # -- torch ------------------------------------------------------------------------------
    def build(
        self, arch: str, num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32)
    ) -> nn.Module:
        """DARTS's ``NetworkCIFAR`` (or ``NetworkImageNet`` with ``stem="imagenet"``) for
        ``arch``, without the auxiliary head (see ``hwnas.spaces.darts_model``)."""
        from hwnas.spaces.darts_model import DartsNetwork

        return DartsNetwork(
            parse_arch(arch),
            C=self.C,
            layers=self.layers,
            num_classes=num_classes,
            input_shape=input_shape,
            stem=self.stem,
            drop_path=self.drop_path,
        )


__all__ = [
    "CELLS_PER_TYPE",
    "CELL_OPS",
    "CELL_TYPES",
    "DARTS_V1",
    "DARTS_V2",
    "EDGES",
    "GRAPH_OPS",
    "NODES",
    "OPS",
    "DartsSpace",
    "canonical_cell",
    "format_arch",
    "format_cell",
    "from_genotype",
    "parse_arch",
    "to_genotype",
]
