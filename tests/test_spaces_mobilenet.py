"""MobileNet space: strict parser, canonical key, variation, encodings, graph and builder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hwnas.spaces import ArchitectureError, get_space
from hwnas.spaces.mobilenet import FIELDS, MobileNetSpace, make_divisible

ARCH = (
    "d2-k5-e6-w1.0-se1|d1-k3-e4-w0.75-se0|d3-k7-e3-w1.25-se1|"
    "d4-k3-e6-w1.0-se0|d2-k5-e4-w1.0-se1|d1-k7-e6-w0.75-se0"
)

# A small configuration so every option builds quickly, also at 224x224.
TINY = {
    "stage_channels": [8, 8, 16],
    "stage_strides": [2, 2, 2],
    "stage_activations": ["relu", "relu6", "hswish"],
    "stem_channels": 8,
    "stem_stride": 2,
    "head_channels": 32,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def space() -> MobileNetSpace:
    return get_space("mobilenet")


@pytest.mark.parametrize(
    ("arch", "fragment"),
    [
        ("d2-k5-e6-w1.0-se1", "1 stage"),
        (ARCH.replace("d3", "d5"), r"stage 3: depth '5' not in \(1, 2, 3, 4\)"),
        (ARCH.replace("d3", "d0"), "stage 3: depth '0'"),
        (ARCH.replace("k7-e3", "k4-e3"), "stage 3: kernel '4'"),
        (ARCH.replace("e4-w0.75", "e5-w0.75"), "stage 2: expansion '5'"),
        (ARCH.replace("w1.25", "w1.5"), "stage 3: width '1.5'"),
        (ARCH.replace("w1.25", "wide"), "stage 3: width 'ide'"),
        (ARCH.replace("se1|d4", "se2|d4"), "stage 3: se '2'"),
        (
            ARCH.replace("d2-k5-e6-w1.0-se1|", "d2-k5-e6-w1.0-se1-x3|", 1),
            "stage 1: unknown field 'x3'",
        ),
        (ARCH.replace("-se1|d1", "|d1", 1), "stage 1: missing field"),
        (ARCH.replace("d2-k5", "d2-d2-k5", 1), "stage 1: field 'd' appears twice"),
        (ARCH.replace("d2-k5-e6", "d2.0-k5-e6", 1), "stage 1: depth '2.0'"),
        (ARCH.replace("|", ";"), "1 stage"),
    ],
)
def test_bad_strings_name_the_part(space: MobileNetSpace, arch: str, fragment: str) -> None:
    with pytest.raises(ArchitectureError, match=fragment):
        space.validate(arch)
    with pytest.raises(ArchitectureError):
        space.build(arch)


def test_validate_normalises(space: MobileNetSpace) -> None:
    messy = " " + ARCH.replace("d2-k5-e6-w1.0-se1", "se1-w1-e6-k5-d2", 1) + " "
    assert space.validate(messy) == ARCH
    assert space.validate(ARCH) == ARCH


def test_canonical_key_merges_widths_that_round_alike(space: MobileNetSpace) -> None:
    # 24 * 0.75 = 18 rounds up to 24 channels (never 10% below), so w0.75 == w1.0 in stage 2.
    assert make_divisible(24 * 0.75) == 24 == make_divisible(24 * 1.0)
    a = ARCH.replace("d1-k3-e4-w0.75-se0", "d1-k3-e4-w1.0-se0")
    assert a != ARCH and space.canonical_key(a) == space.canonical_key(ARCH)
    b = ARCH.replace("w1.25", "w1.0")
    assert space.canonical_key(b) != space.canonical_key(ARCH)
    assert space.build(a).blocks[2].project[0].out_channels == 24


def test_sample_mutate_reproducible_and_valid(space: MobileNetSpace) -> None:
    s1 = [space.sample(np.random.default_rng(11)) for _ in range(2)]
    assert s1[0] == s1[1] and space.validate(s1[0]) == s1[0]
    assert len({space.sample(np.random.default_rng(i)) for i in range(30)}) == 30
    assert space.mutate(ARCH, np.random.default_rng(2)) == space.mutate(
        ARCH, np.random.default_rng(2)
    )
    rng = np.random.default_rng(0)
    parent = space.parse(ARCH)
    for _ in range(50):
        child = space.parse(space.mutate(ARCH, rng))
        changed = sum(
            x != y
            for cs, ps in zip(child, parent, strict=True)
            for x, y in zip(cs, ps, strict=True)
        )
        assert changed == 1


def test_crossover(space: MobileNetSpace) -> None:
    b = space.sample(np.random.default_rng(3))
    rng = np.random.default_rng(4)
    pa, pb = space.parse(ARCH), space.parse(b)
    children = {space.crossover(ARCH, b, rng) for _ in range(20)}
    assert len(children) > 5
    for child in children:
        for cs, sa, sb in zip(space.parse(child), pa, pb, strict=True):
            assert all(c in (x, y) for c, x, y in zip(cs, sa, sb, strict=True))


def test_neighbours(space: MobileNetSpace) -> None:
    nbrs = space.neighbours(ARCH)
    # per stage: 3 depths + 2 kernels + 2 expansions + 2 widths + 1 se = 10
    assert len(nbrs) == len(set(nbrs)) == 60
    assert ARCH not in nbrs and nbrs == space.neighbours(ARCH)


def test_size_and_single_choice_fields() -> None:
    assert get_space("mobilenet").size() == (4 * 3 * 3 * 3 * 2) ** 6
    fixed = get_space("mobilenet", widths=[1.0], se=[0])
    assert fixed.size() == (4 * 3 * 3) ** 6
    arch = fixed.sample(np.random.default_rng(0))
    assert all(s[3] == 1.0 and s[4] == 0 for s in fixed.parse(arch))
    assert len(fixed.neighbours(arch)) == 6 * (3 + 2 + 2)


def test_bad_options() -> None:
    with pytest.raises(ArchitectureError, match="stage_strides"):
        get_space("mobilenet", stage_strides=[1, 2])
    with pytest.raises(ArchitectureError, match="kernels must be odd"):
        get_space("mobilenet", kernels=[3, 4])
    with pytest.raises(ArchitectureError, match="stage_activations"):
        get_space("mobilenet", stage_activations=["gelu"] * 6)


def test_hparams_json_round_trip() -> None:
    space = get_space("mobilenet", **TINY)
    arch = space.sample(np.random.default_rng(5))
    hp = json.loads(json.dumps(space.to_hparams(arch)))
    rebuilt = get_space(hp["space"], **hp["space_options"])
    assert rebuilt.space_options() == space.space_options()
    assert rebuilt.from_hparams(hp) == arch
    assert rebuilt.size() == space.size()


def test_encodings(space: MobileNetSpace) -> None:
    vec = space.encode(ARCH)
    assert vec.shape == (6 * (4 + 3 + 3 + 3 + 2),) and vec.sum() == 6 * len(FIELDS)
    assert np.array_equal(space.encode(ARCH, "path"), vec)
    assert len({space.encode(n).tobytes() for n in space.neighbours(ARCH)}) == 60
    # stage 1: d2 -> index 1 of depths; next block k5 -> index 1 of kernels
    assert vec[1] == 1 and vec[4 + 1] == 1
    with pytest.raises(ArchitectureError, match="encoding"):
        space.encode(ARCH, "graph")


def test_graph(space: MobileNetSpace) -> None:
    adj, ops = space.graph(ARCH)
    names = space.graph_op_names()
    assert adj.shape == (26, 26) and ops.shape == (26, len(names)) == (26, 21)
    assert np.array_equal(adj, np.eye(26, k=1))
    labels = [names[i] for i in ops.argmax(1)]
    assert labels[0] == "input" and labels[-1] == "output"
    assert labels[1:5] == ["k5_e6_se", "k5_e6_se", "none", "none"]
    assert labels[5:9] == ["k3_e4", "none", "none", "none"]
    assert labels.count("none") == 6 * 4 - (2 + 1 + 3 + 4 + 2 + 1)


def _train_step(model: torch.nn.Module, shape: tuple[int, int, int], classes: int) -> None:
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, classes)
    out.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize(("field", "value"), [(f, v) for f in FIELDS for v in (0, -1)])
def test_every_option_value_trains(field: str, value: int) -> None:
    """Each field's first and last choice, in every stage, forward and backward at 32x32."""
    space = get_space("mobilenet", **TINY)
    index = FIELDS.index(field)
    base = [list(s) for s in space.parse(space.sample(np.random.default_rng(9)))]
    choices = {"d": space.depths, "k": space.kernels, "e": space.expansions}
    choices |= {"w": space.widths, "se": space.se}
    for stage in base:
        stage[index] = choices[field][value]
    arch = space.format(base)
    _train_step(space.build(arch, num_classes=5), (3, 32, 32), 5)


def test_builds_at_224_and_other_shapes() -> None:
    space = get_space("mobilenet", **TINY)
    arch = space.format([(2, 7, 6, 1.25, 1), (1, 5, 3, 0.75, 0), (2, 3, 4, 1.0, 1)])
    # Together the two architectures use every option value at 224x224.
    deep = space.format([(3, 3, 3, 1.0, 0), (4, 7, 4, 1.0, 1), (1, 5, 6, 1.0, 0)])
    for a in (arch, deep):
        _train_step(space.build(a, num_classes=3, input_shape=(3, 224, 224)), (3, 224, 224), 3)
    _train_step(space.build(arch, num_classes=1000, input_shape=(1, 8, 8)), (1, 8, 8), 1000)
    _train_step(space.build(arch, num_classes=2, input_shape=(3, 33, 17)), (3, 33, 17), 2)


def test_default_space_builds_at_32(space: MobileNetSpace) -> None:
    model = space.build(ARCH, num_classes=10)
    _train_step(model, (3, 32, 32), 10)
    blocks = list(model.blocks)
    assert len(blocks) == 2 + 1 + 3 + 4 + 2 + 1
    assert blocks[1].use_residual and not blocks[2].use_residual
