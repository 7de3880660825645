"""DARTS cell space: parsing, canonical key, variation, encodings, graph, builder, export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from hwnas.spaces import ArchitectureError, get_space
from hwnas.spaces.darts import (
    CELL_OPS,
    CELLS_PER_TYPE,
    DARTS_V1,
    DARTS_V2,
    EDGES,
    DartsSpace,
    format_cell,
    from_genotype,
    parse_arch,
    to_genotype,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# P-DARTS's cell (chenxin061/pdarts genotypes.py): with DARTS's NetworkCIFAR at C=36, 20 cells,
# no auxiliary head it has 3,433,798 parameters (counted in chenxin061/pdarts issue #7).
PDARTS = from_genotype(
    [("skip_connect", 0), ("dil_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 1),
     ("sep_conv_3x3", 1), ("sep_conv_3x3", 3), ("sep_conv_3x3", 0), ("dil_conv_5x5", 4)],
    [("avg_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("dil_conv_5x5", 2),
     ("max_pool_3x3", 0), ("dil_conv_3x3", 1), ("dil_conv_3x3", 1), ("dil_conv_5x5", 3)],
)  # fmt: skip
NORMAL = "|sep_conv_3x3~0|sep_conv_3x3~1|+|sep_conv_3x3~0|skip_connect~2|+|max_pool_3x3~1|dil_conv_5x5~3|+|avg_pool_3x3~0|sep_conv_5x5~4|"  # noqa: E501
REDUCE = "|max_pool_3x3~0|max_pool_3x3~1|+|skip_connect~1|max_pool_3x3~2|+|sep_conv_3x3~0|skip_connect~2|+|dil_conv_3x3~1|skip_connect~3|"  # noqa: E501
ARCH = f"normal={NORMAL};reduce={REDUCE}"


@pytest.fixture(scope="module")
def space() -> DartsSpace:
    return get_space("darts", C=4, layers=5)


@pytest.mark.parametrize(
    ("arch", "fragment"),
    [
        (f"normal={NORMAL}", "lacks the reduce cell"),
        (f"normal={NORMAL};normal={NORMAL}", "normal cell appears twice"),
        (f"normal={NORMAL};pooling={REDUCE}", "'normal=<cell>' or 'reduce=<cell>'"),
        (ARCH.replace("|+|avg_pool_3x3~0|sep_conv_5x5~4|", ""), "3 node group"),
        (ARCH.replace("|sep_conv_3x3~0|sep_conv_3x3~1|+", "|sep_conv_3x3~0|+", 1), "node 2: 1 entry"),  # noqa: E501
        (ARCH.replace("dil_conv_5x5~3", "conv_7x1_1x7~3", 1), "node 4: unknown op 'conv_7x1_1x7'"),
        (ARCH.replace("dil_conv_5x5~3", "none~3", 1), "op 'none' is the supernet's zero op"),
        (ARCH.replace("skip_connect~2|+", "skip_connect~3|+", 1), "node 3: entry 'skip_connect~3' has input '3'"),  # noqa: E501
        (ARCH.replace("sep_conv_5x5~4", "sep_conv_5x5~0", 1), "node 5: both entries take input 0"),
        (ARCH.replace("max_pool_3x3~1|dil", "max_pool_3x3 1|dil", 1), "'op~input'"),
        (ARCH.replace(";reduce=|max_pool_3x3~0", ";reduce=max_pool_3x3~0", 1), "reduce cell, node 2: group"),  # noqa: E501
        ("", "must look like"),
    ],
)  # fmt: skip
def test_bad_strings_name_the_part(space: DartsSpace, arch: str, fragment: str) -> None:
    with pytest.raises(ArchitectureError) as info:
        space.validate(arch)
    assert fragment in str(info.value)
    assert not space.is_valid(arch)


def test_validate_normalises_entry_order_cell_order_and_whitespace(space: DartsSpace) -> None:
    assert space.validate(ARCH) == ARCH
    swapped_entries = ARCH.replace(
        "|sep_conv_3x3~0|skip_connect~2|", "|skip_connect~2|sep_conv_3x3~0|"
    )
    assert swapped_entries != ARCH and space.validate(swapped_entries) == ARCH
    cells_swapped = f" reduce = {REDUCE} ; normal={NORMAL} "
    assert space.validate(cells_swapped) == ARCH


def test_genotype_round_trip_and_published_cells(space: DartsSpace) -> None:
    g = to_genotype(DARTS_V2)
    assert g["normal_concat"] == g["reduce_concat"] == [2, 3, 4, 5]
    assert from_genotype(g["normal"], g["reduce"]) == DARTS_V2
    # DARTS_V2's normal cell as DARTS lists it, node 4 = sep_conv_3x3(1) + skip_connect(0).
    assert parse_arch(DARTS_V2)[0][2] == (("skip_connect", 0), ("sep_conv_3x3", 1))
    assert space.is_valid(DARTS_V1) and space.is_valid(PDARTS)
    with pytest.raises(ArchitectureError, match="8 \\(op, input\\) pairs"):
        from_genotype(g["normal"][:6], g["reduce"])


def _relabel(cell: str, perm: dict[int, int]) -> str:
    """``cell`` with intermediate node k renamed perm[k] (entries of node k move with it)."""
    nodes = parse_arch(f"normal={cell};reduce={cell}")[0]
    moved = {}
    for k, node in zip((2, 3, 4, 5), nodes, strict=True):
        moved[perm.get(k, k)] = [(op, perm.get(src, src)) for op, src in node]
    return format_cell([moved[k] for k in (2, 3, 4, 5)])


def test_canonical_key_merges_relabelled_cells_only(space: DartsSpace) -> None:
    # Nodes 4 and 5 both read only 0..3, so naming them the other way round is the same cell.
    cell = "|sep_conv_3x3~0|sep_conv_3x3~1|+|sep_conv_5x5~0|skip_connect~2|+|max_pool_3x3~1|dil_conv_5x5~3|+|avg_pool_3x3~0|sep_conv_5x5~2|"  # noqa: E501
    swapped = _relabel(cell, {4: 5, 5: 4})
    assert swapped != cell
    a = f"normal={cell};reduce={REDUCE}"
    b = f"normal={swapped};reduce={REDUCE}"
    assert space.validate(b) != space.validate(a)
    assert space.canonical_key(a) == space.canonical_key(b)
    key = space.canonical_key(a)
    assert space.validate(key) == key and space.canonical_key(key) == key
    # Swapping the entries of a node changes nothing either.
    assert (
        space.canonical_key(
            a.replace("|sep_conv_5x5~0|skip_connect~2|", "|skip_connect~2|sep_conv_5x5~0|")
        )
        == key
    )
    # Inputs 0 and 1 are not interchangeable; nor are normal and reduction cells.
    flipped = cell.replace("~0|", "~X|").replace("~1|", "~0|").replace("~X|", "~1|")
    assert space.canonical_key(f"normal={flipped};reduce={REDUCE}") != key
    assert space.canonical_key(f"normal={REDUCE};reduce={cell}") != key
    # A different op on one entry is a different function.
    assert space.canonical_key(a.replace("sep_conv_5x5~2", "sep_conv_3x3~2")) != key


def test_canonical_keys_on_samples(space: DartsSpace) -> None:
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(300)]
    keys = [space.canonical_key(a) for a in archs]
    assert len(set(keys)) == 300  # 1e18 genotypes: random draws never collide
    for a, k in zip(archs[:50], keys[:50], strict=True):
        assert space.canonical_key(k) == k
        assert np.array_equal(space.encode(a, "path"), space.encode(k, "onehot"))


def test_sample_mutate_reproducible_and_neighbours(space: DartsSpace) -> None:
    a = [space.sample(np.random.default_rng(3)) for _ in range(2)]
    assert a[0] == a[1] and space.validate(a[0]) == a[0]
    nbrs = space.neighbours(ARCH)
    # per cell: 8 entries x 6 other ops + input changes 0 + 2x1 + 2x2 + 2x3 = 60
    assert len(nbrs) == len(set(nbrs)) == 120
    base = space.encode(ARCH)
    for n in nbrs:
        assert space.validate(n) == n
        diff = np.abs(space.encode(n) - base).sum()
        assert diff in (2.0, 4.0)  # one op changed on an edge, or one entry moved edge
    rng = np.random.default_rng(1)
    for _ in range(20):
        assert space.mutate(ARCH, rng) in nbrs


def test_crossover_takes_each_node_from_a_parent(space: DartsSpace) -> None:
    rng = np.random.default_rng(2)
    a, b = space.sample(rng), space.sample(rng)
    ga, gb = parse_arch(a), parse_arch(b)
    for _ in range(10):
        child = parse_arch(space.crossover(a, b, rng))
        for c in range(2):
            for i in range(4):
                assert child[c][i] in (ga[c][i], gb[c][i])


def test_size_options_and_hparams(space: DartsSpace) -> None:
    assert CELLS_PER_TYPE == 1_037_664_180
    assert space.size() == CELLS_PER_TYPE**2
    with pytest.raises(NotImplementedError):
        next(space.enumerate())
    hp = json.loads(json.dumps(space.to_hparams(ARCH)))
    assert get_space(hp["space"], **hp["space_options"]).from_hparams(hp) == ARCH
    info = space.options()
    assert info["ops"][0] == "none" and info["cell_ops"] == list(CELL_OPS)
    assert info["encodings"]["onehot"] == 224 and info["edges_per_cell"] == len(EDGES) == 14
    for bad in ({"C": 0}, {"layers": 2}, {"stem": "mnist"}, {"drop_path": 1.0}):
        with pytest.raises(ArchitectureError, match=next(iter(bad))):
            DartsSpace(**bad)


def test_onehot_layout_and_graph(space: DartsSpace) -> None:
    onehot = space.encode(ARCH).reshape(2, 14, 8)
    assert np.all(onehot.sum(-1) == 1)
    assert int(onehot[:, :, 1:].sum()) == 16  # 8 entries per cell, none elsewhere
    assert onehot[0, EDGES.index((3, 2)), CELL_OPS.index("skip_connect") + 1] == 1
    adj, ops = space.graph(ARCH)
    assert adj.shape == (22, 22) and ops.shape == (22, len(space.graph_op_names()))
    assert np.all(np.tril(adj) == 0) and np.all(ops.sum(1) == 1)
    # Each entry has one input node (cell input) or two (both entries of an earlier node).
    indegree = adj.sum(0)
    assert indegree[10] == indegree[21] == 8  # the outputs concatenate all 8 entries
    assert sorted(indegree[2:10].tolist()) == [1, 1, 1, 1, 1, 2, 2, 2]


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_builder_is_parameter_exact_with_darts() -> None:
    cifar = get_space("darts", C=36, layers=20)
    assert _params(cifar.build(PDARTS)) == 3_433_798  # counted with DARTS's model.py
    assert _params(cifar.build(DARTS_V2)) == 3_349_342  # DARTS's "3.3M"
    imagenet = get_space("darts", C=48, layers=14, stem="imagenet")
    n = _params(imagenet.build(DARTS_V2, num_classes=1000, input_shape=(3, 224, 224)))
    assert round(n / 1e5) == 47  # DARTS's "4.7M" (mobile setting)


@pytest.mark.parametrize(
    ("stem", "shape"), [("cifar", (1, 16, 16)), ("cifar", (3, 7, 9)), ("imagenet", (3, 64, 48))]
)
def test_builds_trains_and_exports_without_dead_computation(stem, shape, tmp_path: Path) -> None:
    from hwnas.latency.export import export_onnx

    space = get_space("darts", C=4, layers=5, stem=stem)
    model = space.build(ARCH, num_classes=7, input_shape=shape)
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())  # every parameter is used
    result = export_onnx(model, tmp_path / "m.onnx", input_shape=shape, label=ARCH)
    graph = onnx.load(str(result.path)).graph
    # Walk back from the output: every node feeds it (no dead computation) ...
    producer = {o: n for n in graph.node for o in n.output}
    live, todo = set(), [o.name for o in graph.output]
    while todo:
        name = todo.pop()
        node = producer.get(name)
        if node is not None and id(node) not in live:
            live.add(id(node))
            todo.extend(node.input)
    assert len(live) == len(graph.node)
    # ... and every conv of the model is there: 8 entries per cell, none replaced by zeros.
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert sum(n.op_type == "Conv" for n in graph.node) == convs
    assert not any(n.op_type == "Mul" for n in graph.node)


def test_drop_path_only_in_training() -> None:
    space = get_space("darts", C=4, layers=3, drop_path=0.5)
    model = space.build(DARTS_V2, input_shape=(1, 8, 8))
    x = torch.randn(4, 1, 8, 8)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    assert not torch.equal(a, model(x))


def test_space_info_command() -> None:
    hwnas = Path(sys.executable).with_name("hwnas")
    if not hwnas.exists():
        pytest.skip(f"{hwnas} is not installed (pip install -e .)")
    res = subprocess.run(
        [
            str(hwnas),
            "space",
            "info",
            "darts",
            "--json",
            "--option",
            "C=36",
            "--option",
            "layers=20",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["size"] == CELLS_PER_TYPE**2 and info["unique"] is None
    assert info["space_options"] == {"C": 36, "layers": 20, "stem": "cifar", "drop_path": 0.0}
    check = subprocess.run(
        [str(hwnas), "space", "validate", "darts", ARCH.replace("sep_conv_5x5~4", "none~4")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 2 and "node 5" in check.stderr and "none" in check.stderr
