"""The NAS-Bench-201 cell space: 6 edges x 5 ops, NB201's string format and macro skeleton.

A cell is a DAG of 4 nodes (0 = cell input, 3 = cell output); node ``i`` sums one op applied
to each earlier node ``j``. The string form lists the edges node by node, as NB201 does:
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``. Edge order everywhere (one-hot rows, ``graph`` nodes,
``neighbours``) is ``EDGES``: (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from hwnas.spaces import SPACES
from hwnas.spaces.base import ArchitectureError, SearchSpace

if TYPE_CHECKING:  # torch is imported only when a model is built
    from torch import nn

#: NB201's operation names, in NB201's own order (``none`` first).
OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: ``(to_node, from_node)`` per edge, in string order.
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
#: Node labels of ``graph`` (arch2vec's NB201 vocabulary and order).
GRAPH_OPS: tuple[str, ...] = (
    "input",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "none",
    "output",
)
#: Input->output paths as edge-index sequences (BANANAS): 0->3, 0->1->3, 0->2->3, 0->1->2->3.
PATHS: tuple[tuple[int, ...], ...] = ((3,), (0, 4), (1, 5), (0, 2, 5))
#: Number of cells: 5 ** 6.
NUM_CELLS = len(OPS) ** len(EDGES)

_OP_INDEX = {op: i for i, op in enumerate(OPS)}
_ZERO_KEY = "zero"


def parse_arch(arch: str) -> tuple[str, ...]:
    """The 6 edge ops of an NB201 string, in ``EDGES`` order; ``ArchitectureError`` names the
    offending node/edge and value."""
    if not isinstance(arch, str):
        raise ArchitectureError(f"NB201 architecture must be a string, got {type(arch).__name__}")
    text = arch.strip()
    groups = text.split("+")
    if len(groups) != 3:
        raise ArchitectureError(
            f"NB201 architecture {arch!r} has {len(groups)} node group(s) separated by '+', "
            "expected 3 (nodes 1, 2, 3)"
        )
    ops: list[str] = []
    for node, group in enumerate(groups, start=1):
        if len(group) < 2 or not group.startswith("|") or not group.endswith("|"):
            raise ArchitectureError(
                f"node {node} of {arch!r}: group {group!r} must start and end with '|'"
            )
        edges = group[1:-1].split("|")
        if len(edges) != node:
            raise ArchitectureError(
                f"node {node} of {arch!r} has {len(edges)} edge(s), expected {node} "
                f"(one from each of nodes 0..{node - 1})"
            )
        by_input: dict[int, str] = {}
        for edge in edges:
            op, sep, src = edge.partition("~")
            if not sep:
                raise ArchitectureError(
                    f"node {node} of {arch!r}: edge {edge!r} is not of the form 'op~input'"
                )
            if op not in _OP_INDEX:
                raise ArchitectureError(
                    f"node {node} of {arch!r}: unknown op {op!r}; known: {', '.join(OPS)}"
                )
            if not src.isdigit() or int(src) >= node:
                raise ArchitectureError(
                    f"node {node} of {arch!r}: edge {edge!r} has input node {src!r}, "
                    f"expected one of 0..{node - 1}"
                )
            if int(src) in by_input:
                raise ArchitectureError(f"node {node} of {arch!r}: input node {src} appears twice")
            by_input[int(src)] = op
        ops.extend(by_input[j] for j in range(node))
    return tuple(ops)


def format_arch(ops: tuple[str, ...] | list[str]) -> str:
    """NB201's string for 6 edge ops given in ``EDGES`` order."""
    if len(ops) != len(EDGES):
        raise ArchitectureError(f"NB201 needs {len(EDGES)} edge ops, got {len(ops)}")
    groups: list[str] = []
    k = 0
    for node in (1, 2, 3):
        edges = [f"{ops[k + j]}~{j}" for j in range(node)]
        k += node
        groups.append("|" + "|".join(edges) + "|")
    return "+".join(groups)


def _canonical_from_ops(ops: tuple[str, ...]) -> str:
    # Each node's value is a sorted multiset of terms; the input is the single term "x".
    # none edges and edges from a zero node add nothing; skip_connect adds its input's terms
    # (sums are flattened); conv/pool edges add one term "op(<input terms>)".
    values: list[tuple[str, ...]] = [("x",)]
    for node in (1, 2, 3):
        terms: list[str] = []
        for (to, src), op in zip(EDGES, ops, strict=True):
            if to != node or op == "none" or not values[src]:
                continue
            if op == "skip_connect":
                terms.extend(values[src])
            else:
                terms.append(f"{op}({'+'.join(values[src])})")
        values.append(tuple(sorted(terms)))
    return "+".join(values[3]) or _ZERO_KEY


def nb201_unique_str(arch: str) -> str:
    """The NB201 authors' isomorphism key (``Structure.to_unique_str(consider_zero=True)``),
    which yields their published 6,466 unique cells; kept to compare with ``canonical_key``.

    It differs from ``canonical_key`` in two ways: a zero term ``#`` stays in its sum (so
    ``#+conv(x)`` differs from ``conv(x)``, and a node fed by two zeros is ``#+#``, not zero),
    and a skip_connect inlines its input's *string* before sorting, so sums are not flattened
    into one multiset.
    """
    ops = parse_arch(arch)
    nodes = ["0"]
    for node in (1, 2, 3):
        cur = []
        for (to, src), op in zip(EDGES, ops, strict=True):
            if to != node:
                continue
            if op == "none" or nodes[src] == "#":
                cur.append("#")
            elif op == "skip_connect":
                cur.append(nodes[src])
            else:
                cur.append(f"({nodes[src]})@{op}")
        nodes.append("+".join(sorted(cur)))
    return nodes[3]


@SPACES.register("nb201")
class NB201Space(SearchSpace):
    """NAS-Bench-201: one cell (6 edges x 5 ops) repeated in NB201's macro skeleton.

    ``C`` is the first stage's channel count and ``N`` the number of cells per stage (the
    benchmark uses C=16, N=5). 15,625 architectures.

    Canonical key: the cell's output as an expression, so two cells share a key exactly when
    they compute the same function up to (learnable) weights:

    - ``none`` edges contribute nothing, and so does any edge out of a node whose value is zero
      (no path from the input), so edges that cannot affect the output vanish;
    - a node's value is the *multiset* of its incoming terms (a sum is order-free), with a
      ``skip_connect`` contributing its input's terms (sums flatten: ``skip(a+b)+c == a+b+c``);
      multiplicities are kept (``conv(x)+conv(x)`` has two independent convs);
    - intermediate nodes are anonymous (a term names its op and input expression, never a node
      index), which relabels isomorphic cells equal;
    - every cell whose output is zero (no path input->output) shares one key, ``"zero"``.

    As in NB201, a zero input counts as zero through every op; the built network (which keeps
    all edges so parameter counts match the benchmark) only differs there by the constant a
    BatchNorm adds to an all-zero conv output.

    Over all 15,625 cells this gives **4,930** keys (341 cells are all-zero). The NB201 authors'
    own rule (``nb201_unique_str``) gives the published **6,466**: keeping zero terms in sums
    (exact zero propagation alone would give 5,390) and sorting sums as strings instead of
    flattened multisets split functions our key counts once.
    """

    name = "nb201"

    def __init__(self, C: int = 16, N: int = 5) -> None:
        for field, value in (("C", C), ("N", N)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArchitectureError(
                    f"nb201 option {field} must be a positive int, got {value!r}"
                )
        self.C = C
        self.N = N

    # -- identity and validation ---------------------------------------------------------
    def validate(self, arch: str) -> str:
        return format_arch(parse_arch(arch))

    def canonical_key(self, arch: str) -> str:
        return _canonical_from_ops(parse_arch(arch))

    # -- sampling and variation -----------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> str:
        picks = rng.integers(len(OPS), size=len(EDGES))
        return format_arch([OPS[int(i)] for i in picks])

    def mutate(self, arch: str, rng: np.random.Generator) -> str:
        ops = list(parse_arch(arch))
        edge = int(rng.integers(len(EDGES)))
        others = [op for op in OPS if op != ops[edge]]
        ops[edge] = others[int(rng.integers(len(others)))]
        return format_arch(ops)

    def crossover(self, a: str, b: str, rng: np.random.Generator) -> str:
        ops_a, ops_b = parse_arch(a), parse_arch(b)
        take_a = rng.random(len(EDGES)) < 0.5
        return format_arch([x if t else y for x, y, t in zip(ops_a, ops_b, take_a, strict=True)])

    def neighbours(self, arch: str) -> list[str]:
        ops = parse_arch(arch)
        out: list[str] = []
        for edge in range(len(EDGES)):
            for op in OPS:
                if op != ops[edge]:
                    out.append(format_arch([*ops[:edge], op, *ops[edge + 1 :]]))
        return out

    def enumerate(self) -> Iterator[str]:
        """All 15,625 cells in lexicographic order of ``OPS`` indices (edge 0 slowest)."""
        for ops in itertools.product(OPS, repeat=len(EDGES)):
            yield format_arch(ops)

    def size(self) -> int:
        return NUM_CELLS

    def unique_count(self) -> int:
        """Number of distinct canonical keys over the whole space (4,930; see class doc)."""
        return len({_canonical_from_ops(ops) for ops in itertools.product(OPS, repeat=6)})

    def options(self) -> dict[str, Any]:
        return {
            "C": self.C,
            "N": self.N,
            "ops": list(OPS),
            "edges": [f"{to}<-{src}" for to, src in EDGES],
            "encodings": {"onehot": 30, "path": 155},
            "graph_nodes": 8,
        }

    def space_options(self) -> dict[str, Any]:
        return {"C": self.C, "N": self.N}

    # -- encodings ------------------------------------------------------------------------
    def encode(self, arch: str, kind: str = "onehot") -> np.ndarray:
        """``"onehot"``: 6x5 flattened (edge-major, ``OPS`` order), 30 floats.

        ``"path"``: the BANANAS path encoding, 155 floats: one slot per op sequence along an
        input->output path (5 of length 1, 25 of length 2, 125 of length 3; ``none`` counts as
        an op, as in BANANAS), 1.0 where some path carries that sequence. The two length-2
        paths share the 25 slots, so the vector is a set, not a count.
        """
        ops = parse_arch(arch)
        if kind == "onehot":
            vec = np.zeros((len(EDGES), len(OPS)), dtype=np.float32)
            for edge, op in enumerate(ops):
                vec[edge, _OP_INDEX[op]] = 1.0
            return vec.reshape(-1)
        if kind == "path":
            vec = np.zeros(5 + 25 + 125, dtype=np.float32)
            offsets = {1: 0, 2: 5, 3: 30}
            for path in PATHS:
                index = offsets[len(path)]
                for depth, edge in enumerate(path):
                    index += _OP_INDEX[ops[edge]] * len(OPS) ** depth
                vec[index] = 1.0
            return vec
        raise ArchitectureError(f"unknown nb201 encoding {kind!r}; known: onehot, path")

    def graph(self, arch: str) -> tuple[np.ndarray, np.ndarray]:
        """arch2vec's node-op DAG: 8 nodes (input, the 6 edge ops in ``EDGES`` order, output).

        Op node ``e`` (edge ``to<-src``) feeds every op node whose edge leaves node ``to``, or
        the output when ``to`` is 3; the input feeds the op nodes of edges leaving node 0.
        ``none`` ops stay as nodes (labelled ``"none"``) so the shape is fixed.
        """
        ops = parse_arch(arch)
        n = len(EDGES) + 2
        adj = np.zeros((n, n), dtype=np.float32)
        for e, (_, src) in enumerate(EDGES):
            if src == 0:
                adj[0, e + 1] = 1.0
        for e, (to, _) in enumerate(EDGES):
            if to == 3:
                adj[e + 1, n - 1] = 1.0
            for f, (_, src2) in enumerate(EDGES):
                if src2 == to:
                    adj[e + 1, f + 1] = 1.0
        node_ops = np.zeros((n, len(GRAPH_OPS)), dtype=np.float32)
        labels = ["input", *ops, "output"]
        for i, label in enumerate(labels):
            node_ops[i, GRAPH_OPS.index(label)] = 1.0
        return adj, node_ops

    def graph_op_names(self) -> list[str]:
        return list(GRAPH_OPS)

    # -- torch ------------------------------------------------------------------------------
    def build(
        self, arch: str, num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32)
    ) -> nn.Module:
        """NB201's ``TinyNetwork`` for ``arch`` (see ``hwnas.spaces.nb201_model``)."""
        from hwnas.spaces.nb201_model import NB201Network  # imports this module's EDGES

        return NB201Network(
            parse_arch(arch), C=self.C, N=self.N, num_classes=num_classes, input_shape=input_shape
        )


__all__ = [
    "EDGES",
    "GRAPH_OPS",
    "NUM_CELLS",
    "OPS",
    "PATHS",
    "NB201Space",
    "format_arch",
    "nb201_unique_str",
    "parse_arch",
]
