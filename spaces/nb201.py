"""The NAS-Bench-201 cell space: 6 edges x 5 ops, NB201's string format and macro skeleton.

A cell is a DAG of 4 nodes (0 = cell input, 3 = cell output); node ``i`` sums one op applied
to each earlier node ``j``. The string form lists the edges node by node, as NB201 does:
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``. Edge order everywhere (one-hot rows, ``graph`` nodes,
``neighbours``) is ``EDGES``: (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2).
"""

from __future__ import annotations

import itertools
from collections import Counter
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


def live_edges(ops: tuple[str, ...] | list[str]) -> tuple[bool, ...]:
    """Per edge (``EDGES`` order), whether it can change the cell's output.

    An edge is live when its op is not ``none``, its input node is fed from the cell input
    through non-``none`` edges (else it only ever sees zero) and its output node reaches
    node 3 through live edges. Everything else is dead computation: the pruned build
    (``NB201Space(prune=True)``) leaves it out, and the canonical key never sees it.
    """
    fed = [True, False, False, False]
    for node in (1, 2, 3):
        fed[node] = any(
            to == node and op != "none" and fed[src]
            for (to, src), op in zip(EDGES, ops, strict=True)
        )
    reaches = [False, False, False, True]
    for node in (2, 1, 0):
        reaches[node] = any(
            src == node and op != "none" and reaches[to]
            for (to, src), op in zip(EDGES, ops, strict=True)
        )
    return tuple(
        op != "none" and fed[src] and reaches[to] for (to, src), op in zip(EDGES, ops, strict=True)
    )


def _computation_key(ops: tuple[str, ...]) -> str:
    """The canonical key of the pruned cell (see ``NB201Space``'s docstring for the format)."""
    live = live_edges(ops)
    # A term is one live conv/pool edge (id e + 1; 0 is the cell input x); a node's value is
    # the multiset of terms summed there, skip_connect passing its input's terms through.
    values: list[list[int]] = [[0]]
    inputs: dict[int, list[int]] = {}
    op_of: dict[int, str] = {}
    for node in (1, 2, 3):
        terms: list[int] = []
        for e, ((to, src), op) in enumerate(zip(EDGES, ops, strict=True)):
            if to != node or not live[e]:
                continue
            if op == "skip_connect":
                terms.extend(values[src])
            else:
                inputs[e + 1], op_of[e + 1] = list(values[src]), op
                terms.append(e + 1)
        values.append(terms)
    out = values[3]
    if not out:
        return _ZERO_KEY
    uses = Counter(out)
    for used in inputs.values():
        uses.update(used)
    tree, depth = {0: "x"}, {0: 0}
    for t in sorted(inputs):  # edge order is topological
        tree[t] = f"{op_of[t]}({'+'.join(sorted(tree[i] for i in inputs[t]))})"
        depth[t] = 1 + max(depth[i] for i in inputs[t])
    shared = sorted((t for t in inputs if uses[t] > 1), key=lambda t: (depth[t], tree[t]))
    if not shared:  # a tree: the expression says it all
        return "+".join(sorted(tree[t] for t in out))
    # Shared terms get names $1, $2, ... in (depth, expression) order; ties (equal
    # expressions) are named every way and the smallest text wins, so the key does not
    # depend on which edge carries which twin.
    groups = [list(g) for _, g in itertools.groupby(shared, key=lambda t: (depth[t], tree[t]))]

    def body(t: int, name: dict[int, str]) -> str:
        return f"{op_of[t]}({'+'.join(sorted(expr(i, name) for i in inputs[t]))})"

    def expr(t: int, name: dict[int, str]) -> str:
        return "x" if t == 0 else name.get(t) or body(t, name)

    best: str | None = None
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        order = [t for p in perms for t in p]
        name = {t: f"${i}" for i, t in enumerate(order, start=1)}
        text = ";".join(f"{name[t]}={body(t, name)}" for t in order)
        text += ";" + "+".join(sorted(expr(t, name) for t in out))
        if best is None or text < best:
            best = text
    assert best is not None
    return best


def nb201_unique_str(arch: str) -> str:
    """The NB201 authors' isomorphism key (``Structure.to_unique_str(consider_zero=True)``),
    which yields their published 6,466 unique cells; kept to compare with ``canonical_key``.

    It differs from ``canonical_key`` in three ways: a zero term ``#`` stays in its sum (so
    ``#+conv(x)`` differs from ``conv(x)``, and a node fed by two zeros is ``#+#``, not zero);
    a skip_connect inlines its input's *string* before sorting, so sums are not flattened into
    one multiset; and it cannot tell one conv used twice from two convs (644 of their classes
    hold cells that build different ops, which our key keeps apart).
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

    ``prune`` (default True) builds only the live edges (``live_edges``): an op whose input is
    always zero or whose output never reaches the cell's output is left out, so params, FLOPs,
    the exported ONNX graph and its latency describe the function the canonical key names.
    ``prune=False`` builds every edge as NB201 published it (``none`` multiplies by zero, dead
    convs keep their parameters): the network of the NB201 table's parameter counts,
    accuracies and device latencies.

    Canonical key: two cells share a key exactly when their builds are the same computation
    graph up to relabelling, so they compute the same family of functions and cost the same.
    With ``prune=False`` every cell builds a different graph and the key is the normalised
    string itself (each one a row of the NB201 table). With pruning, the key is the cell's
    output as an expression over the live edges:

    - dead edges (see above) vanish, and every cell whose output is zero (no path
      input->output) shares one key, ``"zero"``;
    - a node's value is the *multiset* of its incoming terms (a sum is order-free), with a
      ``skip_connect`` contributing its input's terms (sums flatten: ``skip(a+b)+c == a+b+c``);
      each conv/pool edge is one term ``op(<input terms>)``;
    - intermediate nodes are anonymous (a term names its op and input expression, never a node
      index), which relabels isomorphic cells equal;
    - a term used more than once (one conv feeding two later ops, or reaching the output along
      two paths) is computed once, so it is named and referred to:
      ``$1=nor_conv_3x3(x);$1+avg_pool_3x3($1)`` is one conv, whereas
      ``avg_pool_3x3(nor_conv_3x3(x))+nor_conv_3x3(x)`` is two. Without the names the two
      would share a key while building different numbers of convs.

    Over all 15,625 cells this gives **5,425** keys (341 cells are all-zero); every key's cells
    build the same ops (tests check all of them). The NB201 authors' own rule
    (``nb201_unique_str``) gives the published **6,466**: it keeps zero terms in sums and sorts
    sums as strings (splitting what we count once) but ignores shared terms (merging what we
    keep apart).
    """

    name = "nb201"

    def __init__(self, C: int = 16, N: int = 5, prune: bool = True) -> None:
        for field, value in (("C", C), ("N", N)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArchitectureError(
                    f"nb201 option {field} must be a positive int, got {value!r}"
                )
        if not isinstance(prune, bool):
            raise ArchitectureError(f"nb201 option prune must be true or false, got {prune!r}")
        self.C = C
        self.N = N
        self.prune = prune

    # -- identity and validation ---------------------------------------------------------
    def validate(self, arch: str) -> str:
        return format_arch(parse_arch(arch))

    def canonical_key(self, arch: str) -> str:
        ops = parse_arch(arch)
        return _computation_key(ops) if self.prune else format_arch(ops)

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
        """Number of distinct canonical keys over the whole space (pruned: 5,425; see the
        class doc; full cells: 15,625)."""
        if not self.prune:
            return NUM_CELLS
        return len({_computation_key(ops) for ops in itertools.product(OPS, repeat=6)})

    def options(self) -> dict[str, Any]:
        return {
            "C": self.C,
            "N": self.N,
            "prune": self.prune,
            "ops": list(OPS),
            "edges": [f"{to}<-{src}" for to, src in EDGES],
            "encodings": {"onehot": 30, "path": 155},
            "graph_nodes": 8,
        }

    def space_options(self) -> dict[str, Any]:
        return {"C": self.C, "N": self.N, "prune": self.prune}

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
        """NB201's ``TinyNetwork`` for ``arch`` (see ``hwnas.spaces.nb201_model``): its live
        edges only, or every edge with ``prune=False``."""
        from hwnas.spaces.nb201_model import NB201Network  # imports this module's EDGES

        ops = parse_arch(arch)
        return NB201Network(
            ops,
            C=self.C,
            N=self.N,
            num_classes=num_classes,
            input_shape=input_shape,
            live=live_edges(ops) if self.prune else None,
        )


__all__ = [
    "EDGES",
    "GRAPH_OPS",
    "NUM_CELLS",
    "OPS",
    "PATHS",
    "NB201Space",
    "format_arch",
    "live_edges",
    "nb201_unique_str",
    "parse_arch",
]
