"""The weight-sharing supernet trial: networks, GAEA and DARTS updates, expected latency,
landmarks, derivation, bitwise resume, and the two ways the machinery runs it."""

from __future__ import annotations

import copy
import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from hwnas.latency.predictor import fit_predictor
from hwnas.spaces import get_space
from hwnas.spaces.darts import DARTS_V2, parse_arch
from hwnas.trials.hparams import HParamsError
from hwnas.trials.local import main as local_main
from hwnas.trials.supernet.architecture import (
    ArchParameters,
    ExponentiatedGradient,
    make_arch_optimizer,
)
from hwnas.trials.supernet.batchnorm import recalibrate_subnetwork
from hwnas.trials.supernet.cost import ExpectedLatency
from hwnas.trials.supernet.landmarks import (
    LandmarkError,
    coefficient,
    load_landmarks,
    ranking_loss,
)
from hwnas.trials.supernet.networks import build_supernet
from hwnas.trials.supernet.run import RANKING_FILE, SupernetRun
from hwnas.trials.supernet.settings import LandmarkSettings
from hwnas.trials.train import run_trial
from tests.test_trials_determined import core_context

REPO = Path(__file__).resolve().parents[1]
NB201_ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|"  # noqa: E501
NB201 = get_space("nb201", C=4, N=1)
DARTS = get_space("darts", C=4, layers=3)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def hparams(space: str = "nb201", **supernet: Any) -> dict[str, Any]:
    options = {"C": 4, "N": 1} if space == "nb201" else {"C": 4, "layers": 3}
    return {
        "kind": "supernet",
        "space": space,
        "space_options": options,
        "seed": 1,
        "data": {"dataset": "digits", "train_subset": 96},
        "training": {"max_epochs": 2, "batch_size": 32, "lr": 0.05, "cpu_threads": 1},
        "latency": {"enabled": False},
        "supernet": {"rank_candidates": 4, "eval_images": 64, **supernet},
    }


def lookup_predictor(space, n: int = 40, seed: int = 0):
    """A lookup predictor for ``space`` fitted on a made-up additive cost (ms per op type)."""
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(n)]
    weights = {"conv": 0.5, "sep": 0.7, "dil": 0.4, "pool": 0.1, "skip": 0.05}

    def cost(arch: str) -> float:
        return 1.0 + sum(w * arch.count(k) for k, w in weights.items())

    return fit_predictor("lookup", space, archs, [cost(a) for a in archs])


# -- networks ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("space", "arch"), [(NB201, NB201_ARCH), (DARTS, DARTS_V2)])
def test_mixture_and_single_path_forward_backward(space, arch: str) -> None:
    torch.manual_seed(0)
    net = build_supernet(space.name, space.space_options(), 10, (1, 16, 16), exclude_none=False)
    x, y = torch.randn(8, 1, 16, 16), torch.randint(0, 10, (8,))
    arch_params = ArchParameters(net.arch_shapes, "logits", torch.Generator().manual_seed(0))
    loss = torch.nn.functional.cross_entropy(net(x, arch_params.probabilities()), y)
    loss.backward()
    assert all(
        p.grad is not None and torch.isfinite(p.grad).all() for p in arch_params.parameters()
    )
    assert all(p.grad is not None for p in net.parameters())  # every op takes part
    net.zero_grad()
    choice = net.choice_of(arch)
    torch.nn.functional.cross_entropy(net.forward_path(x, choice), y).backward()
    used = sum(p.grad is not None for p in net.parameters())
    assert 0 < used < len(list(net.parameters()))  # a single path trains a subset
    # With one-hot weights (`none` on unused edges) the mixture is exactly the single path.
    onehot = {
        name: torch.nn.functional.one_hot(torch.tensor(ops), len(net.op_ids)).float()
        for name, ops in choice.items()
    }
    with torch.no_grad():
        assert torch.allclose(net(x, onehot), net.forward_path(x, choice), atol=1e-5)


def test_nb201_path_through_a_zero_node_is_zero_logits_plus_bias() -> None:
    net = build_supernet("nb201", {"C": 4, "N": 1}, 10, (1, 16, 16))
    zero = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    with torch.no_grad():
        out = net.forward_path(torch.randn(4, 1, 16, 16), net.choice_of(zero))
    # lastact(BN+ReLU) of zeros is constant over the batch: every sample gets the same logits.
    assert torch.allclose(out, out[:1].expand_as(out))


# -- architecture updates ------------------------------------------------------------------------
def test_exponentiated_gradient_stays_on_the_simplex() -> None:
    arch = ArchParameters({"cell": (6, 5)}, "simplex", torch.Generator().manual_seed(0))
    opt = ExponentiatedGradient(arch.parameters(), lr=0.5)
    g = torch.Generator().manual_seed(1)
    p = arch.params["cell"]
    for step in range(200):
        grad = 10 * torch.randn(6, 5, generator=g)
        before = p.detach().clone()
        p.grad = grad
        opt.step()
        if step == 0:  # the closed form: alpha * exp(-lr * g), renormalised per row
            expected = before * torch.exp(-0.5 * grad)
            expected = expected.clamp_min(1e-5)
            assert torch.allclose(p, expected / expected.sum(-1, keepdim=True), atol=1e-7)
        assert torch.allclose(p.sum(-1), torch.ones(6), atol=1e-6)
        assert bool((p > 0).all())
    # A constant gradient favouring op 2 drives every row towards it.
    for _ in range(100):
        p.grad = torch.tensor([1.0, 1.0, -1.0, 1.0, 1.0]).repeat(6, 1)
        opt.step()
    assert bool((p.argmax(-1) == 2).all()) and float(p.detach()[:, 2].min()) > 0.99


def test_darts_update_is_adam_on_softmax_logits() -> None:
    arch = ArchParameters({"normal": (14, 8)}, "logits", torch.Generator().manual_seed(0))
    opt = make_arch_optimizer(arch, "darts", 3e-4, None)
    assert isinstance(opt, torch.optim.Adam)
    group = opt.param_groups[0]
    assert group["betas"] == (0.5, 0.999) and group["weight_decay"] == 1e-3
    probs = arch.probabilities()["normal"]
    assert torch.allclose(probs.sum(-1), torch.ones(14))
    assert float(arch.params["normal"].detach().abs().max()) < 0.01  # 1e-3 * randn


# -- expected latency ------------------------------------------------------------------------------
@pytest.mark.parametrize("space", [NB201, DARTS])
def test_expected_latency_is_the_predictor_at_one_hot_and_differentiable(space) -> None:
    predictor = lookup_predictor(space)
    net = build_supernet(space.name, space.space_options(), 10, (1, 16, 16), exclude_none=False)
    term = ExpectedLatency(predictor, net, weight=1.0, target_ms=None)
    rng = np.random.default_rng(3)
    for _ in range(5):
        arch = space.sample(rng)
        probs = {  # all mass on the genotype (`none` on the edges a DARTS cell leaves out)
            name: torch.nn.functional.one_hot(torch.tensor(ops), len(net.op_ids)).float()
            for name, ops in net.choice_of(arch).items()
        }
        assert float(term(probs)) == pytest.approx(predictor.predict(arch), rel=1e-5)
    arch = ArchParameters(net.arch_shapes, "simplex", torch.Generator())
    value = term(arch.probabilities())
    grads = torch.autograd.grad(value, list(arch.parameters()))
    assert any(float(g.abs().sum()) > 0 for g in grads)
    assert float(value.detach()) == pytest.approx(term.uniform_ms)
    assert float(term.penalty(arch.probabilities())) == pytest.approx(1.0)  # E / E_uniform
    target = ExpectedLatency(predictor, net, weight=2.0, target_ms=term.uniform_ms * 2)
    assert float(target.penalty(arch.probabilities())) == 0.0  # under the target: no penalty


def test_darts_expected_latency_keeps_two_edges_per_node() -> None:
    net = build_supernet("darts", DARTS.space_options(), 10, (1, 16, 16), exclude_none=True)
    # Every edge costs 1 ms on any op, 0 when unused (none): E = 2 edges x 4 nodes x 2 cells.
    coef = np.zeros((2, 14, 8))
    coef[:, :, 1:] = 1.0
    predictor = type("P", (), {"coef": coef.reshape(-1), "intercept": 0.5})()
    term = ExpectedLatency(predictor, net, weight=1.0, target_ms=None)
    assert term.uniform_ms == pytest.approx(0.5 + 16.0)


def test_latency_weight_moves_the_architecture_to_cheaper_ops(tmp_path: Path) -> None:
    path = tmp_path / "lookup.json"
    lookup_predictor(NB201).save(path)
    expected = {}
    for weight in (0.0, 5.0):
        hp = hparams(update="gaea", arch_lr=0.5, latency_predictor=str(path), latency_weight=weight)
        run = SupernetRun(hp)
        run.train_to(2)
        expected[weight] = run.expected_latency_ms()
        assert run.metrics()["predicted_latency_ms"] > 0
    assert expected[5.0] < 0.95 * expected[0.0]


# -- landmarks -------------------------------------------------------------------------------------
def _landmark_file(tmp_path: Path, n: int = 8, fmt: str = "json") -> Path:
    rng = np.random.default_rng(0)
    archs = [NB201.sample(rng) for _ in range(n)]
    rows = [{"arch": a, "validation_accuracy": 0.5 + 0.05 * i} for i, a in enumerate(archs)]
    if fmt == "csv":
        path = tmp_path / "trials.csv"
        lines = ["trial_id,arch,status,validation_accuracy"]
        lines += [
            f"{i},{r['arch']},completed,{r['validation_accuracy']}" for i, r in enumerate(rows)
        ]
        lines.append("99,|bogus~0|,failed,")  # a failed trial of the search: skipped
        path.write_text("\n".join(lines) + "\n")
    else:
        path = tmp_path / "landmarks.json"
        path.write_text(json.dumps(rows))
    return path


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_landmarks_load_sorted_worst_first(tmp_path: Path, fmt: str) -> None:
    path = _landmark_file(tmp_path, fmt=fmt)
    settings = LandmarkSettings(source="file", path=str(path), count=5, selection="spaced")
    marks = load_landmarks(settings, NB201, seed=0)
    assert len(marks) == 5
    assert [m.accuracy for m in marks] == sorted(m.accuracy for m in marks)
    assert marks[0].accuracy == 0.5 and marks[-1].accuracy == pytest.approx(0.85)
    with pytest.raises(LandmarkError, match=r"needs columns|lacks"):
        load_landmarks(settings.model_copy(update={"metric": "top1"}), NB201, seed=0)
    with pytest.raises(LandmarkError, match="cannot read"):
        load_landmarks(settings.model_copy(update={"path": str(tmp_path / "no")}), NB201, 0)


def test_landmark_coefficient_schedule() -> None:
    s = LandmarkSettings(source="file", path="x", weight=10, warmup_epochs=2)
    coefs = [coefficient(s, e, 6) for e in range(6)]
    assert coefs[:2] == [0.0, 0.0] and coefs[-1] == pytest.approx(10.0)
    assert all(a < b for a, b in itertools.pairwise(coefs[2:]))
    assert coefficient(s.model_copy(update={"schedule": "constant"}), 2, 6) == 10.0


def test_landmark_loss_falls_on_a_toy_set() -> None:
    """Training on the ranking loss alone orders the landmarks' supernet losses like their
    accuracies (the hinge reaches zero on a fixed batch)."""
    torch.manual_seed(0)
    net = build_supernet("nb201", {"C": 4, "N": 1}, 10, (1, 16, 16))
    rng = np.random.default_rng(0)
    x, y = torch.randn(16, 1, 16, 16), torch.randint(0, 10, (16,))
    marks = [NB201.sample(rng) for _ in range(4)]
    with torch.no_grad():
        initial = [
            float(torch.nn.functional.cross_entropy(net.forward_path(x, net.choice_of(a)), y))
            for a in marks
        ]
    # Call the landmark with the lowest supernet loss the worst, and so on: every pair starts
    # in the wrong order.
    marks = [a for _, a in sorted(zip(initial, marks, strict=True))]
    choices = [net.choice_of(a) for a in marks]
    opt = torch.optim.SGD(net.parameters(), lr=0.05)

    def total() -> torch.Tensor:
        losses = [torch.nn.functional.cross_entropy(net.forward_path(x, c), y) for c in choices]
        return sum(ranking_loss(losses[i], losses[j]) for i in range(4) for j in range(i + 1, 4))

    start = float(total())
    pair_rng = np.random.default_rng(1)
    for _ in range(100):
        i, j = sorted(pair_rng.choice(4, size=2, replace=False))
        li = torch.nn.functional.cross_entropy(net.forward_path(x, choices[i]), y)
        lj = torch.nn.functional.cross_entropy(net.forward_path(x, choices[j]), y)
        opt.zero_grad()
        ranking_loss(li, lj).backward()
        opt.step()
    assert start > 0.05
    assert float(total()) < 0.1 * start


def test_supernet_run_with_landmarks_reports_their_correlation(tmp_path: Path) -> None:
    path = _landmark_file(tmp_path)
    lm = {"source": "file", "path": str(path), "count": 6, "schedule": "constant", "weight": 5.0}
    run = SupernetRun(hparams(landmarks=lm))
    metrics = run.train_epoch()
    assert metrics["landmark_coef"] == 5.0 and metrics["landmark_rank_loss"] >= 0.0
    tau, rho = run.landmark_correlation()
    assert -1.0 <= tau <= 1.0 and -1.0 <= rho <= 1.0
    assert len(run.landmarks) == 6


# -- derivation, resume, the trial contract ------------------------------------------------------
def test_derivation_follows_the_weights() -> None:
    net = build_supernet("darts", DARTS.space_options(), 10, (1, 16, 16), exclude_none=False)
    probs = {name: torch.full((14, 8), 1 / 8) for name in ("normal", "reduce")}
    # Node 5 (edges 9..13): `none` dominates edge 9, but only non-none weights rank edges.
    probs["normal"][9] = torch.tensor([0.9, 0.0, 0, 0, 0, 0, 0, 0.1])
    probs["normal"][12] = torch.tensor([0.0, 0.0, 0, 0, 0.6, 0.4, 0, 0.0])
    probs["normal"][13] = torch.tensor([0.0, 0.0, 0, 0, 0, 0, 0.5, 0.5])
    arch = DARTS.validate(net.derive(probs))
    node5 = parse_arch(arch)[0][3]
    assert node5 == (("sep_conv_3x3", 3), ("dil_conv_3x3", 4))
    assert "none" not in arch
    nb = build_supernet("nb201", {"C": 4, "N": 1}, 10, (1, 16, 16))
    assert nb.op_ids == [1, 2, 3, 4]  # GAEA's NB201 supernet leaves `none` out
    p = torch.full((6, 4), 0.25)
    p[:, 2] = 0.4  # nor_conv_3x3
    assert nb.derive({"cell": p}) == NB201.validate(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
        "|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    )


def _state(run: SupernetRun) -> dict[str, Any]:
    state = run.state_dict()
    state.pop("rng")
    for h in state["history"]:
        for key in ("epoch_time_s", "cpu_time_s"):
            h.pop(key)
    return state


def _assert_equal(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, where


@pytest.mark.parametrize(
    ("space", "supernet"),
    [
        ("nb201", {"update": "gaea", "levels": 2, "warmup_epochs": 1}),
        ("darts", {"update": "darts", "bn": "recalibrate", "rank_candidates": 0}),
    ],
)
def test_resume_is_bitwise(tmp_path: Path, space: str, supernet: dict[str, Any]) -> None:
    lm = {"source": "file", "path": str(_landmark_file(tmp_path)), "count": 4}
    if space == "darts":
        rng = np.random.default_rng(0)
        rows = [{"arch": DARTS.sample(rng), "validation_accuracy": i / 10} for i in range(5)]
        (tmp_path / "darts.json").write_text(json.dumps(rows))
        lm["path"] = str(tmp_path / "darts.json")
    hp = hparams(space, landmarks=lm, **supernet)
    hp["data"]["train_subset"] = 64
    straight = SupernetRun(copy.deepcopy(hp))
    straight.train_to(2)
    first = SupernetRun(copy.deepcopy(hp))
    first.train_to(1)
    first.metrics()  # scoring in the middle must not change what training continues from
    first.save(tmp_path / "ckpt")
    resumed = SupernetRun(copy.deepcopy(hp))
    assert resumed.restore(tmp_path / "ckpt") and resumed.epoch == 1
    resumed.train_to(2)
    _assert_equal(_state(straight), _state(resumed))
    assert straight.derive() == resumed.derive()
    other = SupernetRun({**copy.deepcopy(hp), "seed": 2})
    with pytest.raises(Exception, match="another trial"):
        other.restore(tmp_path / "ckpt")


def test_metrics_rank_and_validate_the_derived_architecture(tmp_path: Path) -> None:
    run = SupernetRun(hparams(rank_archs=[NB201_ARCH], report_top=3))
    run.train_to(1)
    metrics = run.metrics()
    derived = metrics["derived_arch"]
    assert NB201.validate(derived) == derived and "none" not in derived
    assert metrics["arch"] == derived and metrics["kind"] == "supernet"
    assert metrics["params"] > 0 and metrics["flops"] > 0
    assert metrics["ranked"] == 6  # derived + rank_archs + 4 random
    top = metrics["ranking"]
    assert len(top) == 3 and top[0]["supernet_accuracy"] >= top[-1]["supernet_accuracy"]
    assert metrics["supernet_accuracy"] == run.score(derived)[0]
    run.save(tmp_path)
    ranking = json.loads((tmp_path / RANKING_FILE).read_text())
    assert ranking["format"] == "hwnas-supernet-ranking/1" and ranking["space"] == "nb201"
    assert NB201_ARCH in [c["arch"] for c in ranking["candidates"]]


def test_subnetwork_recalibration_averages_its_own_path() -> None:
    class TwoPaths(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.paths = torch.nn.ModuleList([torch.nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3)])

        def forward_path(self, x: torch.Tensor, choice: dict[str, list[int]]) -> torch.Tensor:
            return self.paths[choice["edge"][0]](x)

    net = TwoPaths()
    batches = [(torch.randn(8, 3, 4, 4) + i, None) for i in range(3)]
    used = recalibrate_subnetwork(net, {"edge": [1]}, batches)
    assert used.batches == 3 and used.images == 24
    expected = torch.stack([b.mean(dim=(0, 2, 3)) for b, _ in batches]).mean(0)
    assert torch.allclose(net.paths[1].running_mean, expected, atol=1e-5)
    assert net.paths[0].num_batches_tracked == 0  # off the path: never ran
    assert net.paths[1].momentum == 0.1 and net.training


def test_bad_supernet_hparams_name_the_field() -> None:
    from hwnas.trials.supernet.settings import parse_supernet_hparams

    with pytest.raises(HParamsError, match=r"supernet\.update"):
        parse_supernet_hparams(hparams(update="sgd"))
    with pytest.raises(HParamsError, match="latency_predictor"):
        parse_supernet_hparams(hparams(latency_weight=1.0))
    with pytest.raises(HParamsError, match=r"landmarks\.path"):
        parse_supernet_hparams(hparams(landmarks={"source": "file"}))
    with pytest.raises(HParamsError, match=r"hparams\.space"):
        parse_supernet_hparams({**hparams(), "space": "mobilenet"})


def test_local_child_runs_a_supernet_and_resumes(tmp_path: Path) -> None:
    """The local backend's child (``python -m hwnas.trials.local``'s ``main``), in-process."""
    ckpt = tmp_path / "trial-1"
    request = {"hparams": hparams(), "length": 1, "checkpoint_dir": str(ckpt), "trial_id": 1}
    results = []
    for length in (1, 2):
        req, res = tmp_path / f"{length}.req.json", tmp_path / f"{length}.res.json"
        req.write_text(json.dumps({**request, "length": length}))
        assert local_main(["--request", str(req), "--result", str(res)]) == 0
        results.append(json.loads(res.read_text()))
    assert all(r["ok"] for r in results), results
    assert [r["metrics"]["epochs"] for r in results] == [1, 2]
    metrics = results[1]["metrics"]
    assert NB201.validate(metrics["derived_arch"]) == metrics["derived_arch"]
    ranking = json.loads(Path(metrics["ranking_file"]).read_text())
    assert ranking["epochs"] == 2 and ranking["candidates"][0]["arch"]
    # A broken supernet request fails as a result, not a crash.
    bad = tmp_path / "bad.req.json"
    bad.write_text(json.dumps({**request, "hparams": hparams(update="sgd")}))
    assert local_main(["--request", str(bad), "--result", str(tmp_path / "bad.json")]) == 0
    failed = json.loads((tmp_path / "bad.json").read_text())
    assert failed["ok"] is False and "supernet.update" in failed["message"]


@pytest.mark.slow
def test_supernet_module_entry_point(tmp_path: Path) -> None:
    """``python -m hwnas.trials.supernet --hparams ... --length ... --checkpoint-dir ...``."""
    hp = tmp_path / "hp.json"
    hp.write_text(json.dumps(hparams()))
    command = [sys.executable, "-m", "hwnas.trials.supernet", "--hparams", str(hp)]
    command += ["--length", "1", "--checkpoint-dir", str(tmp_path / "run")]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("derived architecture: |")
    assert (tmp_path / "run" / RANKING_FILE).is_file()
    assert json.loads((tmp_path / "run" / "result.json").read_text())["ok"] is True


def test_core_api_entrypoint_serves_a_supernet(tmp_path: Path) -> None:
    """The Determined entrypoint's ``run_trial`` under determined's own Core API classes."""

    ctx = core_context(tmp_path, [1, 2])
    with ctx:
        run_trial(ctx, hparams(), latest_checkpoint=None)
    ops = ctx.searcher.ops
    assert [op.completed["epochs"] for op in ops] == [1, 2]
    assert NB201.validate(ops[1].completed["derived_arch"]) == ops[1].completed["derived_arch"]
    stored = [sid for sid, _ in ctx.checkpoint.stored]
    assert any((tmp_path / sid / RANKING_FILE).is_file() for sid in stored)


@pytest.mark.parametrize(
    "path", sorted((REPO / "experiment_yamls" / "supernet").glob("*.yaml")), ids=lambda p: p.name
)
def test_example_hparams_files_parse(path: Path) -> None:
    from hwnas.trials.supernet.settings import parse_supernet_hparams

    hp = parse_supernet_hparams(yaml.safe_load(path.read_text()))
    assert hp.kind == "supernet" and hp.space in ("nb201", "darts")
    get_space(hp.space, **hp.space_options)


@pytest.mark.slow
@pytest.mark.parametrize("warm", [False, True], ids=["child", "warm-worker"])
def test_local_backend_runs_a_supernet_trial(tmp_path: Path, warm: bool) -> None:
    """The local backend's own process pool (a child per run, or a warm worker) starts the
    supernet like any trial."""
    from hwnas.driver.local import LocalBackend

    backend = LocalBackend(
        tmp_path, [None], threads_per_trial=1, timeout_s=600, warm_workers=warm, latency=False
    )
    hp = hparams()
    backend.create(7, hp)
    backend.start(7, hp, 1)
    outcomes = []
    for _ in range(600):
        outcomes += backend.wait(1.0)
        if outcomes:
            break
    assert len(outcomes) == 1 and outcomes[0].ok, outcomes
    metrics = outcomes[0].metrics
    assert metrics["kind"] == "supernet" and metrics["epochs"] == 1
    assert (backend.trial_dir(7) / "checkpoint" / RANKING_FILE).is_file()
    backend.shutdown()


@pytest.mark.slow
def test_a_table_device_becomes_an_additive_predictor(nb201_table_file, monkeypatch) -> None:
    """``table:<device>``: a lookup fitted on the whole column ranks like the table."""
    from scipy.stats import spearmanr

    from hwnas.latency.predictor import LatencyPredictor
    from hwnas.trials.supernet.cost import additive_predictor

    monkeypatch.setenv("HWNAS_NB201_TABLE", str(nb201_table_file))
    additive = additive_predictor("table:pixel2", NB201)
    assert additive.kind == "lookup" and additive.meta["fitted_on"] == "table:pixel2"
    archs = list(NB201.enumerate())[::7]
    table = LatencyPredictor.load("table:pixel2").predict_many(archs)
    assert spearmanr(additive.predict_many(archs), table).statistic > 0.85
    with pytest.raises(HParamsError, match="NB201's"):
        additive_predictor("table:pixel2", DARTS)
