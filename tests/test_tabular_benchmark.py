"""Search-quality benchmark pieces: figure curves, Optuna peers through the runner, the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

# benchmarks/ is a folder of scripts at the repository root, not an installed package.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.search_quality import RunSpec, main, run_one  # noqa: E402
from benchmarks.search_quality_metrics import (  # noqa: E402
    best_test_curve,
    constrained_test_curve,
    hv_ratio_curve,
    make_reference,
    queries_to_reach,
)
from benchmarks.search_quality_peers import make_peer  # noqa: E402
from hwnas.driver.tabular import NB201Benchmark, run_on_table  # noqa: E402
from hwnas.spaces.nb201_table import load_table  # noqa: E402


@pytest.fixture(scope="module")
def bench(nb201_table_file) -> NB201Benchmark:
    return NB201Benchmark.from_table(load_table(nb201_table_file), "cifar10", "pixel2")


@pytest.fixture(scope="module")
def ref(bench):
    return make_reference(bench)


def test_reference_front_and_hv_ratio(bench, ref):
    assert ref.latency_max_ms == pytest.approx(float(np.max(bench.latency_ms)))
    assert ref.latency_bound_ms == pytest.approx(float(np.median(bench.latency_ms)))
    assert 0.0 < ref.true_hv < 1.0
    front = [int(r) for r in ref.front_rows]
    # querying exactly the true front recovers its whole hypervolume
    assert hv_ratio_curve(ref, front)[-1] == pytest.approx(1.0)
    others = [r for r in range(0, len(bench), 97) if r not in set(front)][:60]
    curve = hv_ratio_curve(ref, others)
    assert np.all(np.diff(curve) >= -1e-12) and curve[-1] < 1.0
    assert hv_ratio_curve(ref, others + front)[-1] == pytest.approx(1.0)


def test_pick_curves_follow_observed_validation(ref):
    lat = ref.points[:, 1] * ref.latency_max_ms
    slow = [int(i) for i in np.flatnonzero(lat > ref.latency_bound_ms)[:2]]
    fast = [int(i) for i in np.flatnonzero(lat <= ref.latency_bound_ms)[:2]]
    rows = [slow[0], fast[0], slow[1], fast[1]]
    observed = [0.5, 0.6, 0.9, 0.55]
    best = best_test_curve(ref, rows, observed)
    assert list(best) == [
        ref.test[slow[0]],
        ref.test[fast[0]],
        ref.test[slow[1]],
        ref.test[slow[1]],
    ]
    cons = constrained_test_curve(ref, rows, observed)
    assert np.isnan(cons[0])  # nothing within the bound yet
    assert list(cons[1:]) == [ref.test[fast[0]]] * 3  # 0.55 < 0.6 keeps the earlier pick
    assert queries_to_reach(np.array([np.nan, 0.2, 0.5, 0.7]), 0.5) == 3
    assert queries_to_reach(np.array([0.1, 0.2]), 0.5) is None


def test_optuna_peer_through_the_runner_is_reproducible(bench):
    def run(seed: int, rule: str = "free"):
        objectives = [("validation_accuracy", "maximize"), ("latency_ms", "minimize")]
        method = make_peer(
            "optuna-tpe", objectives, seed=seed, budget=20, length=200, repeat_rule=rule
        )
        return run_on_table(method, bench, max_queries=20, seed=seed)

    r1, r2, r3 = run(4), run(4), run(5)
    assert len(r1.queries) == 20 and len(set(r1.rows)) == 20
    assert r1.rows == r2.rows and r1.observed_accuracy == r2.observed_accuracy
    assert r1.rows != r3.rows
    # common random numbers: a row queried under the same seed sees the same noisy value
    for q in r1.queries:
        assert q.metrics["validation_accuracy"] * 100 == bench.seed_accuracy(q.row, 4)


def test_run_one_same_seed_same_figures(nb201_table_file):
    spec = RunSpec("mo", "cifar100", "eyeriss", "nsga2", 2, 15)
    a = run_one(spec, str(nb201_table_file))
    b = run_one(spec, str(nb201_table_file))
    assert a["curves"] == b["curves"] and a["queries"] == 15
    assert set(a["curves"]) == {"hv_ratio", "constrained_test"}
    so = run_one(RunSpec("so", "cifar10", "eyeriss", "optuna-random", 2, 15), str(nb201_table_file))
    assert set(so["curves"]) == {"best_test"} and len(so["curves"]["best_test"]) == 15


def test_cli_writes_table_json_and_plot(nb201_table_file, tmp_path, capsys):
    out = tmp_path / "sq"
    argv = ["--out", str(out), "--table", str(nb201_table_file), "--budgets", "5", "10"]
    argv += ["--seeds", "2", "--datasets", "cifar10", "--devices", "eyeriss", "--jobs", "1"]
    argv += ["--strategies", "random", "evolution", "--peers", "optuna-random"]
    argv += ["--set", "evolution.population=6", "--cache", str(tmp_path / "cache")]
    assert main(argv) == 0
    cached = sorted((tmp_path / "cache").rglob("*.json"))
    assert len(cached) == 2 * 3 * 6  # every run, hwnas's and the peer's
    assert main(argv) == 0  # a re-run reads them back
    summary = json.loads((out / "search_quality.json").read_text())
    assert summary["meta"]["strategy_options"] == {"evolution": {"population": 6}}
    assert (out / "search_quality.png").stat().st_size > 10_000
    # seeds x methods x (1 MO + 1 SO + 4 constrained settings)
    assert summary["meta"]["runs"] == 2 * 3 * 6
    hv = summary["overall"]["mo:all"]["hv_ratio"]
    assert set(hv) == {"random", "evolution", "optuna-random"}
    assert all(len(s["values"]) == 2 for s in hv["random"]["at"].values())
    cmp = summary["overall_comparisons"]["so:cifar10"]["best_test"]["10"]
    assert cmp["best_peer"] == "optuna-random"
    assert cmp["methods"]["optuna-random"]["ratio"] == pytest.approx(1.0)
    printed = capsys.readouterr().out
    assert "hypervolume ratio" in printed and "optuna-random" in printed


def test_a_peer_run_at_a_larger_budget_serves_a_smaller_one(nb201_table_file, tmp_path):
    """A peer's budget only stops it, so a cached longer run answers a shorter one with the
    same first queries; an hwnas strategy (which may plan by its budget) runs again."""
    from benchmarks.search_quality import run_cached

    table = str(nb201_table_file)
    long = run_cached(
        RunSpec("so", "cifar10", "eyeriss", "optuna-tpe", 3, 20), table, None, "pay", tmp_path
    )
    short = RunSpec("so", "cifar10", "eyeriss", "optuna-tpe", 3, 12)
    served = run_cached(short, table, None, "pay", tmp_path)
    assert served["cached"] and served["curves"] == long["curves"]
    fresh = run_one(short, table)
    assert fresh["curves"]["best_test"] == long["curves"]["best_test"][:12]
    hw = run_cached(
        RunSpec("so", "cifar10", "eyeriss", "random", 3, 20), table, None, "pay", tmp_path
    )
    again = run_cached(
        RunSpec("so", "cifar10", "eyeriss", "random", 3, 12), table, None, "pay", tmp_path
    )
    assert not again.get("cached") and len(again["curves"]["best_test"]) == 12 < len(
        hw["curves"]["best_test"]
    )


def test_cli_rejects_unknown_names(nb201_table_file, tmp_path):
    with pytest.raises(SystemExit):
        main(["--strategies", "no-such-strategy", "--table", str(nb201_table_file)])
    with pytest.raises(SystemExit):
        main(["--set", "evolution.no_such_option=1", "--table", str(nb201_table_file)])
    with pytest.raises(SystemExit):
        main(["--set", "evolution", "--table", str(nb201_table_file)])
    assert main(["--devices", "tpu", "--table", str(nb201_table_file), "--quick"]) == 2
    assert main(["--table", str(tmp_path / "missing.csv.gz")]) == 2


def test_default_grid_shape():
    from benchmarks.search_quality import build_specs, parse_args

    args = parse_args(["--strategies", "random", "--peers", "optuna-tpe"])
    specs = build_specs(args)
    # 20 seeds x 2 methods x (CIFAR-10: 4 devices + 1 SO run; CIFAR-100: 2 devices + 1 SO
    # run; constrained: 4 devices)
    assert len(specs) == 20 * 2 * (4 + 1 + 2 + 1 + 4)
    con_devices = {s.device for s in specs if s.mode == "con"}
    assert con_devices == {"raspi4", "pixel2", "eyeriss", "1080ti_1"}
    assert {s.budget for s in specs} == {200}
    assert {s.device for s in specs if s.dataset == "cifar100"} == {"raspi4", "eyeriss"}
    assert specs[0].method == "optuna-tpe"  # slow methods first
    quick = build_specs(parse_args(["--quick", "--strategies", "random", "--peers"]))
    assert len(quick) == 3 * 3 and {s.budget for s in quick} == {50}
    # the slow GP peer runs fewer seeds; Syne Tune's MOREA multi-objective runs only
    args = parse_args(["--strategies", "random", "--peers", "optuna-gp", "--seeds", "4"])
    args.slow_peer_seeds = 2
    gp = [s for s in build_specs(args) if s.method == "optuna-gp"]
    assert {s.seed for s in gp} == {0, 1}


def test_peers_pay_for_repeats_and_honour_a_constraint(bench):
    from benchmarks.search_quality_metrics import make_reference as mk

    objectives = [("validation_accuracy", "maximize"), ("latency_ms", "minimize")]
    method = make_peer("optuna-tpe", objectives, seed=1, budget=40, length=200)
    result = run_on_table(method, bench, max_queries=40, seed=1)
    assert len(method.log) == 40  # every proposal paid, repeats included
    assert method.repeats == 40 - len(result.queries) and method.repeats > 0
    assert not result.stalled
    # the constrained scenario: the bound reaches Optuna as a constraint on every trial
    bound = float(np.quantile(bench.latency_ms, 0.25))
    con = make_peer(
        "optuna-tpe",
        objectives[:1],
        seed=1,
        budget=15,
        length=200,
        constraint=("latency_ms", bound),
    )
    run_on_table(con, bench, max_queries=15, seed=1)
    trials = con.study.get_trials()  # type: ignore[attr-defined]
    assert len(trials) == 15
    for t in trials:
        violation = float(bench.latency_ms[bench.row_of(_arch(t.params))]) - bound
        stored = [v for k, v in t.system_attrs.items() if k.startswith("constraints")]
        assert len(stored) == 1  # set_constraint (Optuna 5) or constraints_func (before)
        value = stored[0][0] if isinstance(stored[0], list) else stored[0]
        assert value == pytest.approx(violation)
    ref = mk(bench, bound)
    assert ref.feasible_best_test == pytest.approx(
        float(np.max(bench.test[bench.latency_ms <= bound]))
    )


def _arch(params: dict) -> str:
    from benchmarks.search_quality_peers import PARAM_NAMES
    from hwnas.spaces.nb201 import format_arch

    return format_arch([params[n] for n in PARAM_NAMES])


def test_regret_and_noise_ceiling(bench):
    from benchmarks.search_quality_metrics import oracle_curves, regret_curve

    bound = float(np.quantile(bench.latency_ms, 0.25))
    ref = make_reference(bench, bound)
    feasible = np.flatnonzero(bench.latency_ms <= bound)
    best = int(feasible[np.argmax(bench.test[feasible])])
    assert regret_curve(ref, [best], [0.9])[0] == pytest.approx(0.0)
    worse = int(feasible[np.argmin(bench.test[feasible])])
    assert regret_curve(ref, [worse, best], [0.5, 0.4])[-1] > 0  # picked by validation
    noisy = lambda r: bench.seed_accuracy(r, 3)  # noqa: E731
    o = oracle_curves(ref, noisy, 30, ("regret", "hv_ratio", "best_test"))
    top = int(np.argmax(bench.valid_mean))
    assert o["best_test"][0] == pytest.approx(bench.test[top])  # the best cell, trained first
    assert np.all(o["regret"] >= -1e-9) and len(o["hv_ratio"]) == 30
    assert np.all(np.diff(o["hv_ratio"]) >= -1e-12)
    if len(ref.front_rows) <= 30:
        assert o["hv_ratio"][-1] == pytest.approx(1.0)


def test_syne_tune_morea_as_shipped_and_with_the_rank_fix(bench):
    pytest.importorskip("syne_tune")
    from benchmarks.search_quality_peers import _rank_priority

    objectives = [("validation_accuracy", "maximize"), ("latency_ms", "minimize")]

    def rows(peer: str, seed: int) -> list[int]:
        m = make_peer(peer, objectives, seed=seed, budget=25, length=200)
        run_on_table(m, bench, max_queries=25, seed=seed)
        return [bench.row_of(a) for a, _ in m.log]

    # reproducible by seed (the benchmark seeds the global RNG its initial population uses)
    assert rows("synetune-morea", 2) == rows("synetune-morea", 2)
    assert rows("synetune-morea", 2) != rows("synetune-morea", 3)
    assert len(rows("synetune-morea-rankfix", 2)) == 25
    Y = np.array([[1.0, 1.0], [2.0, 2.0], [0.0, 0.0]])  # row 2 dominates, row 1 is worst
    assert list(_rank_priority()(Y)) == [1, 2, 0]
