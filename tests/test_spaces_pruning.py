"""Builds hold only what reaches the output, so key-equal architectures cost the same.

NB201: a pruned cell (the default) builds its live edges only; ``prune=False`` is NB201's full
cell. MobileNet: a chain with no dead branch, whose key-equal architectures build the same
modules. Costs are counted on real builds (parameters, FLOPs, ONNX Conv nodes).
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hwnas.latency.export import export_onnx
from hwnas.spaces import get_space
from hwnas.spaces.nb201 import EDGES, OPS, NB201Space, format_arch, live_edges, parse_arch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: The issue's pair: equal canonical keys, dead convs in the first.
DEAD = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|none~1|none~2|"
CLEAN = "|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|"


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _flops(model: torch.nn.Module, shape: tuple[int, int, int]) -> int:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *shape))
    return int(counter.get_total_flops())


def _onnx_ops(space, arch: str, path: Path, shape=(3, 32, 32)) -> Counter[str]:
    export_onnx(space.build(arch, input_shape=shape), path, input_shape=shape, label=arch)
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def test_dead_convolutions_are_not_exported(tmp_path: Path) -> None:
    pruned, full = NB201Space(C=16, N=5), NB201Space(C=16, N=5, prune=False)
    assert pruned.canonical_key(DEAD) == pruned.canonical_key(CLEAN) == "nor_conv_3x3(x)"
    dead = _onnx_ops(pruned, DEAD, tmp_path / "dead.onnx")
    clean = _onnx_ops(pruned, CLEAN, tmp_path / "clean.onnx")
    assert dead == clean and dead["Conv"] == 22  # stem 1 + reductions 6 + one per cell 15
    assert _params(pruned.build(DEAD)) == _params(pruned.build(CLEAN)) == 316_346
    # The published network keeps them: what the issue measured.
    assert _onnx_ops(full, DEAD, tmp_path / "full.onnx")["Conv"] == 67
    assert _params(full.build(DEAD)) == 1_045_466
    assert _params(full.build(CLEAN)) == 316_346
    assert full.canonical_key(DEAD) != full.canonical_key(CLEAN)


def _build_signature(ops: tuple[str, ...]) -> tuple[tuple[str, ...], int]:
    """What a pruned cell builds: its conv/pool ops and its number of additions."""
    live = live_edges(ops)
    built = tuple(sorted(op for op, keep in zip(ops, live, strict=True) if keep))
    adds = sum(
        max(0, sum(1 for (to, _), keep in zip(EDGES, live, strict=True) if to == n and keep) - 1)
        for n in (1, 2, 3)
    )
    return tuple(op for op in built if op != "skip_connect"), adds


def test_every_key_builds_the_same_ops() -> None:
    """All 15,625 cells: cells that share a key build the same ops and sums."""
    space = NB201Space()
    signatures: dict[str, set[tuple[tuple[str, ...], int]]] = {}
    for ops in itertools.product(OPS, repeat=len(EDGES)):
        signatures.setdefault(space.canonical_key(format_arch(ops)), set()).add(
            _build_signature(ops)
        )
    assert len(signatures) == 5425
    assert all(len(s) == 1 for s in signatures.values())


def test_one_conv_used_twice_is_not_two_convs() -> None:
    """Keys that NB201-style expression keys merge but builds tell apart."""
    space = NB201Space(C=8, N=1)
    shared = "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|skip_connect~2|"
    twins = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|"
    assert space.canonical_key(shared) == "$1=nor_conv_3x3(x);avg_pool_3x3($1)+nor_conv_3x3($1)"
    assert space.canonical_key(twins) == (
        "avg_pool_3x3(nor_conv_3x3(x))+nor_conv_3x3(nor_conv_3x3(x))"
    )
    assert _params(space.build(shared)) < _params(space.build(twins))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (DEAD, CLEAN),
        # isomorphic: the conv path through node 1 or through node 2
        (
            "|nor_conv_1x1~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|none~2|",
            "|none~0|+|nor_conv_1x1~0|none~1|+|none~0|none~1|nor_conv_3x3~2|",
        ),
        # a shared conv feeding two ops, the sums grouped differently
        (
            "|nor_conv_1x1~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|nor_conv_3x3~1|avg_pool_3x3~2|",
            "|nor_conv_1x1~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|skip_connect~2|",
        ),
    ],
)
def test_key_equal_pairs_measure_equal_cost(a: str, b: str, tmp_path: Path) -> None:
    space = NB201Space(C=8, N=1)
    assert space.canonical_key(a) == space.canonical_key(b)
    ma, mb = space.build(a), space.build(b)
    assert _params(ma) == _params(mb)
    assert _flops(ma, (3, 32, 32)) == _flops(mb, (3, 32, 32))
    assert _onnx_ops(space, a, tmp_path / "a.onnx") == _onnx_ops(space, b, tmp_path / "b.onnx")


def test_sampled_key_groups_measure_equal_cost() -> None:
    """Random cells against another cell of their key: equal parameters and FLOPs."""
    space = NB201Space(C=4, N=1)
    groups: dict[str, list[str]] = {}
    for arch in space.enumerate():
        groups.setdefault(space.canonical_key(arch), []).append(arch)
    rng = np.random.default_rng(0)
    multi = [g for g in groups.values() if len(g) > 1]
    for i in rng.choice(len(multi), size=25, replace=False):
        a, b = rng.choice(multi[i], size=2, replace=False)
        ma, mb = space.build(str(a)), space.build(str(b))
        assert (_params(ma), _flops(ma, (3, 8, 8))) == (_params(mb), _flops(mb, (3, 8, 8))), (a, b)


def _conv_weights_all_learn(model: torch.nn.Module, shape: tuple[int, int, int]) -> bool:
    """Whether every conv weight gets a non-zero gradient (none is cut off or fed zeros)."""
    torch.manual_seed(0)
    model.train()
    model(torch.randn(4, *shape)).square().mean().backward()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    return all(m.weight.grad is not None and bool(m.weight.grad.abs().sum() > 0) for m in convs)


def test_pruned_nb201_builds_hold_no_dead_convs() -> None:
    space, full = NB201Space(C=4, N=1), NB201Space(C=4, N=1, prune=False)
    rng = np.random.default_rng(1)
    archs = [space.sample(rng) for _ in range(30)]
    for arch in archs:
        if space.canonical_key(arch) != "zero":
            assert _conv_weights_all_learn(space.build(arch), (3, 8, 8)), arch
    assert not _conv_weights_all_learn(full.build(DEAD), (3, 8, 8))
    # The pruned and the full cell agree where nothing is dead (same modules, same order).
    live = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    assert all(live_edges(parse_arch(live))[e] for e in (0, 1, 2, 3, 5))
    torch.manual_seed(3)
    a = space.build(live).eval()
    torch.manual_seed(3)
    b = full.build(live).eval()
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(a(x), b(x))


def test_zero_cells_output_zeros() -> None:
    space = NB201Space(C=4, N=1)
    zero = "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|none~0|none~1|none~2|"
    assert space.canonical_key(zero) == "zero"
    cell = space.build(zero).cells[0]
    assert len(cell.layers) == 0
    assert torch.equal(cell(torch.randn(2, 4, 8, 8)), torch.zeros(2, 4, 8, 8))


def test_prune_travels_with_the_hparams() -> None:
    hp = NB201Space(C=8, N=1, prune=False).to_hparams(DEAD)
    assert hp["space_options"] == {"C": 8, "N": 1, "prune": False}
    assert get_space("nb201", **hp["space_options"]).prune is False
    assert get_space("nb201", C=8, N=1).prune is True  # hparams written before the option


def test_mobilenet_builds_only_what_it_names() -> None:
    """A chain: every block and SE reaches the output; widths that round alike build the
    same network (the key replaces the width by the channels)."""
    tiny = {
        "stage_channels": [8, 16],
        "stage_strides": [2, 2],
        "stage_activations": ["relu", "hswish"],
        "stem_channels": 8,
        "head_channels": 16,
        "widths": [0.75, 1.0, 1.25],
    }
    space = get_space("mobilenet", **tiny)
    rng = np.random.default_rng(0)
    for _ in range(6):
        assert _conv_weights_all_learn(space.build(space.sample(rng)), (3, 16, 16))
    a, b = "d2-k3-e3-w0.75-se1|d1-k5-e4-w1.0-se0", "d2-k3-e3-w1.0-se1|d1-k5-e4-w1.0-se0"
    assert space.canonical_key(a) == space.canonical_key(b)  # 8 * 0.75 rounds up to 8
    ma, mb = space.build(a), space.build(b)
    assert [p.shape for p in ma.parameters()] == [p.shape for p in mb.parameters()]
    assert _flops(ma, (3, 16, 16)) == _flops(mb, (3, 16, 16))
