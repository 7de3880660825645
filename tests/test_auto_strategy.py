"""The ``auto`` strategy (opt-in): its acquisition maths, the cost source, its state."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.searchers.config import StrategyConfig
from hwnas.searchers.objectives import make_objectives
from hwnas.searchers.strategies import STRATEGIES, make_strategy
from hwnas.searchers.strategies.auto import _expected_improvement
from hwnas.searchers.strategies.base import StrategyContext
from hwnas.spaces import get_space

SPACE = get_space("nb201", C=8, N=1)
OPTS = {"initial_random": 6}


def metrics(arch: str) -> dict[str, float]:
    """Accuracy grows with 3x3 convolutions, latency with every convolution."""
    e = SPACE.encode(arch, "onehot").reshape(6, 5)
    return {
        "validation_accuracy": 0.3 + 0.1 * e[:, 3].sum() + 0.04 * e[:, 2].sum(),
        "latency_ms": 1.0 + e[:, 3].sum() + 0.4 * e[:, 2].sum(),
    }


class CountingCost:
    """A cost source: the exact latency of ``metrics``, counting look-ups."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def predict(self, arch: str) -> float:
        self.calls.append(arch)
        return metrics(arch)["latency_ms"]


def test_auto_is_registered_and_the_default():
    """A config without a strategy gets auto (README, "Strategy evaluation")."""
    assert "auto" in STRATEGIES.names()
    assert StrategyConfig().name == "auto"
    assert STRATEGIES.get("auto").multi_objective


def test_expected_improvement_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mean, std, best = np.array([0.0, 1.0, -0.5]), np.array([1.0, 0.3, 2.0]), 0.2
    draws = mean[:, None] + std[:, None] * rng.standard_normal((3, 200_000))
    mc = np.maximum(best - draws, 0.0).mean(axis=1)
    np.testing.assert_allclose(_expected_improvement(mean, std, best), mc, rtol=0.02)


def test_ehvi_matches_monte_carlo_over_a_front():
    objectives = make_objectives(
        [("validation_accuracy", "maximize"), ("latency_ms", "minimize")],
        reference_point={"validation_accuracy": 0.0, "latency_ms": 10.0},
    )
    s = make_strategy("auto", SPACE, objectives, np.random.default_rng(0), {"warp": "none"})
    for acc, lat in [(0.5, 2.0), (0.7, 4.0), (0.9, 8.0), (0.6, 6.0)]:  # the last is dominated
        s.tell(
            SPACE.sample(np.random.default_rng(int(lat))),
            {"validation_accuracy": acc, "latency_ms": lat},
        )
    m1, s1 = np.array([-0.8, -0.95, -0.4]), np.array([0.05, 0.1, 0.2])  # minimisation form
    f2 = np.array([3.0, 9.0, 1.0])
    got = s._ehvi(m1, s1, f2)

    def hv(points: np.ndarray) -> float:  # 2-D hypervolume below the reference (0, 10)
        pts = points[np.argsort(points[:, 1])]
        area, best = 0.0, 0.0
        edges = [*pts[:, 1], 10.0]
        for j in range(len(pts)):
            best = min(best, pts[j, 0])
            area += (edges[j + 1] - edges[j]) * -best
        return area

    front = np.array([[-0.5, 2.0], [-0.7, 4.0], [-0.9, 8.0]])
    rng = np.random.default_rng(1)
    base = hv(front)
    for i in range(3):
        draws = m1[i] + s1[i] * rng.standard_normal(4000)
        mc = np.mean([hv(np.vstack([front, [d, f2[i]]])) - base for d in draws])
        assert got[i] == pytest.approx(mc, rel=0.05, abs=1e-3)


def test_with_a_cost_source_only_candidates_within_the_bound_are_proposed():
    objectives = make_objectives([("validation_accuracy", "maximize")], ["latency_ms <= 3.5"])
    cost = CountingCost()
    s = make_strategy(
        "auto", SPACE, objectives, np.random.default_rng(2), OPTS, StrategyContext(cost=cost)
    )
    for _ in range(25):
        arch = s.ask()
        assert metrics(arch)["latency_ms"] <= 3.5  # looked up before it trains
        s.tell(arch, metrics(arch))
    assert cost.calls and len(set(cost.calls)) == len(cost.calls)  # none looked up twice
    # without the cost source the same strategy has to learn the bound from trained results
    blind = make_strategy("auto", SPACE, objectives, np.random.default_rng(2), OPTS)
    first = [blind.ask() for _ in range(6)]
    assert any(metrics(a)["latency_ms"] > 3.5 for a in first)


def test_multi_objective_search_beats_random_on_a_smooth_problem():
    objectives = make_objectives(
        [("validation_accuracy", "maximize"), ("latency_ms", "minimize")],
        reference_point={"validation_accuracy": 0.0, "latency_ms": 10.0},
    )
    from hwnas.searchers.pareto import hypervolume, nondominated_mask

    def run(name: str) -> float:
        s = make_strategy(
            name, SPACE, objectives, np.random.default_rng(5), OPTS if name == "auto" else {}
        )
        F = []
        for _ in range(30):
            arch = s.ask()
            v = metrics(arch)
            s.tell(arch, v)
            F.append([-v["validation_accuracy"], v["latency_ms"]])
        F = np.array(F)
        return hypervolume(F[nondominated_mask(F)], np.array([0.0, 10.0]))

    assert run("auto") > run("random")


def test_warm_started_results_are_not_proposed_again_and_state_round_trips():
    objectives = make_objectives(
        [("validation_accuracy", "maximize"), ("latency_ms", "minimize")],
        reference_point={"validation_accuracy": 0.0, "latency_ms": 10.0},
    )
    rng = np.random.default_rng(0)
    warm = [SPACE.sample(rng) for _ in range(8)]
    cost = CountingCost()
    s = make_strategy(
        "auto", SPACE, objectives, np.random.default_rng(4), OPTS, StrategyContext(cost=cost)
    )
    for a in warm:
        s.tell(a, metrics(a))
    asked = []
    for _ in range(5):
        a = s.ask()
        asked.append(a)
        s.tell(a, metrics(a))
    keys = {SPACE.canonical_key(a) for a in warm}
    assert not keys & {SPACE.canonical_key(a) for a in asked}
    state = s.state_dict()
    twin = make_strategy(
        "auto", SPACE, objectives, np.random.default_rng(99), OPTS, StrategyContext(cost=cost)
    )
    twin.load_state_dict(state, s.history)
    assert twin.ask() == s.ask()


def test_gp_kernel_lookup_on_one_hot_rows_matches_the_formula() -> None:
    """0/1 features take the table-lookup path of ``GaussianProcess._cross``; it must give
    the Matern kernel of the distances (and the general path is kept for other features)."""
    from hwnas.searchers.surrogates import GaussianProcess, distances, matern52

    rng = np.random.default_rng(0)
    space = get_space("nb201")
    X = np.array([space.encode(space.sample(rng), "onehot") for _ in range(40)], dtype=float)
    P = np.array([space.encode(space.sample(rng), "onehot") for _ in range(300)], dtype=float)
    gp = GaussianProcess().fit(X, rng.normal(size=40))
    want = matern52(distances(P, X) / gp.params[0])
    np.testing.assert_allclose(gp._cross(P), want, atol=1e-6)
    soft = P * 0.5  # not 0/1: the formula itself
    np.testing.assert_allclose(
        gp._cross(soft), matern52(distances(soft, X) / gp.params[0]), atol=1e-6
    )
    mixed = P.copy()
    mixed[::3, :5] = 0.0  # 0/1 rows with fewer ones: the distance path of the lookup
    np.testing.assert_allclose(
        gp._cross(mixed), matern52(distances(mixed, X) / gp.params[0]), atol=1e-6
    )


def test_spread_upper_bound_holds() -> None:
    """``std_upper`` (the variance given the nearest training row alone) bounds the spread."""
    from hwnas.searchers.surrogates import GaussianProcess

    rng = np.random.default_rng(1)
    space = get_space("nb201")
    X = np.array([space.encode(space.sample(rng), "onehot") for _ in range(60)], dtype=float)
    P = np.array([space.encode(space.sample(rng), "onehot") for _ in range(2000)], dtype=float)
    for params in (None, (1.0, 0.01), (8.0, 0.5)):
        gp = GaussianProcess().fit(X, rng.normal(size=60), params)
        K = gp.cross(P)
        exact, upper = gp.std_from_cross(K), gp.std_upper(K)
        assert np.all(upper >= exact)
    # with one training row the bound is the spread itself (up to its rounding margin)
    one = GaussianProcess().fit(X[:2], np.array([0.0, 1.0]), (2.0, 0.1))
    one.X, one.chol, one.alpha = one.X[:1], np.sqrt(np.array([[1.1]])), one.alpha[:1]
    K = one.cross(P)
    np.testing.assert_allclose(one.std_upper(K), one.std_from_cross(K), rtol=2e-3)


@pytest.mark.parametrize("multi", [True, False])
def test_lazy_ranking_gives_the_order_of_the_whole_pool(multi: bool) -> None:
    """The acquisition's top candidates, computed lazily from the spread's upper bound, are
    those (in the same order) of scoring every candidate of the pool exactly."""
    from hwnas.searchers.strategies.auto import _Ranking

    first = [("validation_accuracy", "maximize")]
    objectives = make_objectives(
        first + ([("latency_ms", "minimize")] if multi else []),
        ["latency_ms <= 4.0"],
        reference_point={"validation_accuracy": 0.0, "latency_ms": 10.0} if multi else None,
    )
    space = get_space("nb201")
    s = make_strategy("auto", space, objectives, np.random.default_rng(3), OPTS)
    rng = np.random.default_rng(7)
    for _ in range(40):
        a = space.sample(rng)
        noisy = metrics(a)
        noisy["validation_accuracy"] += 0.03 * rng.standard_normal()
        s.tell(a, noisy)
    models = s._models = s._fit()
    archs, X = s._candidates()
    ranking = _Ranking(s, models, X)
    got = ranking.top(70)
    assert ranking.done < len(archs)  # it did not need every spread
    means, stds = {}, {}
    for m, gp in models.items():
        means[m], stds[m] = gp.predict(X)
        if not s._needs_spread(m):
            stds[m] = np.zeros(len(X))
    want = np.argsort(-s._acquire(means, stds), kind="stable")[:70]
    np.testing.assert_array_equal(got, want)
    whole = _Ranking(s, models, X[:4000])  # under LAZY_MIN: scored whole at once
    assert whole.done == 4000
    sub = {m: v[:4000] for m, v in means.items()}, {m: v[:4000] for m, v in stds.items()}
    want = np.argsort(-s._acquire(*sub), kind="stable")[:70]
    np.testing.assert_array_equal(whole.top(70), want)


def test_gp_spread_and_kernel_match_the_textbook_formulas() -> None:
    """The pool's posterior spread (a triangular product with the stored ``L^-1``, single
    precision) is the exact GP's, and the Matern kernel keeps float32 inputs in float32."""
    from hwnas.searchers.surrogates import GaussianProcess, distances, matern52

    rng = np.random.default_rng(1)
    X, P = rng.normal(size=(30, 4)), rng.normal(size=(500, 4))
    y = np.sin(X).sum(axis=1)
    gp = GaussianProcess().fit(X, y)
    ls, noise = gp.params
    K = matern52(distances(X, X) / ls) + noise * np.eye(len(X))
    Ks = matern52(distances(P, X) / ls)
    var = 1.0 - np.einsum("ij,ji->i", Ks, np.linalg.solve(K, Ks.T))
    mean, std = gp.predict(P)
    np.testing.assert_allclose(std, np.sqrt(var) * y.std(), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(
        mean, Ks @ np.linalg.solve(K, (y - y.mean()) / y.std()) * y.std() + y.mean(), atol=1e-4
    )
    assert gp.std_from_cross(gp.cross(P[:0])).shape == (0,)
    d = np.linspace(0.0, 3.0, 7)
    r = np.sqrt(5.0) * d
    np.testing.assert_allclose(matern52(d), (1 + r + r * r / 3) * np.exp(-r))
    assert matern52(d.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("goal", ["maximize", "minimize"])
def test_first_objective_is_modelled_no_worse_than_its_floor_quantile(goal: str) -> None:
    """Broken cells (chance accuracy) are modelled as merely bad: the worst quarter of the told
    values is lifted to their 25th percentile; better values and the cost metric are kept."""
    metric = "validation_accuracy" if goal == "maximize" else "error"
    objectives = make_objectives([(metric, goal), ("latency_ms", "minimize")])
    s = make_strategy(
        "auto",
        SPACE,
        objectives,
        np.random.default_rng(0),
        OPTS,
        StrategyContext(cost=CountingCost()),
    )
    rng = np.random.default_rng(1)
    told: dict[str, dict[str, float]] = {}
    archs = []
    while len(archs) < 20:
        arch = SPACE.sample(rng)
        if SPACE.canonical_key(arch) not in {SPACE.canonical_key(a) for a in archs}:
            archs.append(arch)
    for i, arch in enumerate(archs):
        acc = 0.1 if i % 4 == 0 else 0.6 + 0.01 * i  # every fourth one broken
        v = {metric: acc if goal == "maximize" else 1.0 - acc, "latency_ms": 1.0 + i}
        s.tell(arch, v)
        told[SPACE.canonical_key(arch)] = v
    archs, told_y = s._training(metric)
    y, _ = s._floor(told_y)  # what _fit models
    raw = np.array([s._warp(metric, told[SPACE.canonical_key(a)][metric]) for a in archs])
    sign = 1.0 if goal == "maximize" else -1.0
    floor = np.quantile(sign * raw, 0.25)
    assert np.all(sign * y >= floor - 1e-12)
    assert np.allclose(y[sign * raw >= floor], raw[sign * raw >= floor])  # the rest untouched
    assert np.sum(~np.isclose(y, raw)) >= 4  # the broken ones were lifted
    fitted = s._fit()[metric]  # the GP is fitted on the floored values, not the told ones
    assert np.isclose(fitted.mu, y.mean()) and not np.isclose(fitted.mu, raw.mean())
    lat_archs, lat = s._training("latency_ms")
    assert [told[SPACE.canonical_key(a)]["latency_ms"] for a in lat_archs] == list(lat)
    off = make_strategy(
        "auto", SPACE, objectives, np.random.default_rng(0), {**OPTS, "floor_quantile": 0}
    )
    for a in archs:
        off.tell(a, told[SPACE.canonical_key(a)])
    assert np.allclose(off._floor(off._training(metric)[1])[0], raw)


def test_the_acquisition_counts_only_the_chance_of_not_being_floored() -> None:
    """A second GP learns which results the floor lifted; a candidate like them is
    discounted by that chance (their modelled value hides how bad they are)."""
    from hwnas.searchers.strategies.auto import FLOORED

    objectives = make_objectives(
        [("validation_accuracy", "maximize"), ("latency_ms", "minimize")],
        reference_point={"validation_accuracy": 0.0, "latency_ms": 10.0},
    )
    s = make_strategy("auto", SPACE, objectives, np.random.default_rng(0), OPTS)

    def broken(arch: str) -> bool:  # the first edge cut: chance accuracy
        return SPACE.encode(arch, "onehot").reshape(6, 5)[0, 0] == 1

    rng = np.random.default_rng(3)
    values: dict[str, dict[str, float]] = {}
    while len(values) < 40:
        a = SPACE.sample(rng)
        if a not in values:
            values[a] = {**metrics(a), **({"validation_accuracy": 0.1} if broken(a) else {})}
            s.tell(a, values[a])
    told = list(values)
    models = s._fit()
    assert FLOORED in models
    p = models[FLOORED].predict_mean(s._features(told))
    flags = np.array([broken(a) for a in told])
    assert flags.any() and p[flags].mean() > p[~flags].mean() + 0.3
    means = {m: gp.predict_mean(s._features(told[:2])) for m, gp in models.items()}
    stds = {m: np.full(2, 0.5) for m in models}
    plain = {m: v for m, v in means.items() if m != FLOORED}
    for p_floored in (0.0, 0.25, 1.0):
        scored = s._acquire({**plain, FLOORED: np.full(2, p_floored)}, stds)
        assert np.allclose(scored, (1.0 - p_floored) * s._acquire(plain, stds))
    off = make_strategy(
        "auto", SPACE, objectives, np.random.default_rng(0), {**OPTS, "floored_model": False}
    )
    for a, v in values.items():
        off.tell(a, v)
    assert FLOORED not in off._fit()
