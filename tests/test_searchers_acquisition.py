"""The shared acquisition: candidate pools, the single- and multi-objective picks, and the one
constraint rule (feasibility on the posterior mean) in both model-based strategies."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from hwnas.searchers.acquisition import (
    candidate_pool,
    hypervolume_improvements,
    parego_pick,
    pick,
    pick_multi,
    pick_single,
)
from hwnas.searchers.objectives import make_objectives
from hwnas.searchers.pareto import hypervolume, nondominated_mask, reference_point
from hwnas.searchers.strategies import make_strategy
from hwnas.spaces import get_space

MO = make_objectives(
    [("validation_accuracy", "maximize"), ("latency_ms", "minimize")], ["latency_ms <= 4"]
)
SO = make_objectives([("validation_accuracy", "maximize")], ["latency_ms <= 4"])


class _TinySpace:
    """30 architectures ``a0..a29`` over 10 canonical keys ``k0..k9``; counts every attempt."""

    def __init__(self) -> None:
        self.samples = 0
        self.mutations = 0

    def sample(self, rng: np.random.Generator) -> str:
        self.samples += 1
        return f"a{int(rng.integers(30))}"

    def mutate(self, arch: str, rng: np.random.Generator) -> str:
        self.mutations += 1
        return f"a{(int(arch[1:]) + int(rng.integers(1, 3))) % 30}"

    def canonical_key(self, arch: str) -> str:
        return f"k{int(arch[1:]) % 10}"


# -- candidate pool --------------------------------------------------------------------------
def test_pool_excludes_proposed_keys_and_is_bounded():
    space = _TinySpace()
    exclude = {f"k{i}" for i in range(7)}  # only k7, k8, k9 are left
    pool = candidate_pool(space, np.random.default_rng(0), ["a3"], 8, exclude)  # type: ignore[arg-type]
    keys = [space.canonical_key(a) for a in pool]
    assert set(keys) <= {"k7", "k8", "k9"} and len(keys) == len(set(keys))
    assert space.samples + space.mutations == 3 * 8  # ran dry: stopped after 3 * size attempts
    assert space.mutations == 4  # the first half of the attempts mutate a parent

    space = _TinySpace()
    every_key = {f"k{i}" for i in range(10)}
    exhausted = candidate_pool(space, np.random.default_rng(0), [], 5, every_key)  # type: ignore[arg-type]
    assert exhausted == [] and space.mutations == 0 and space.samples == 15


def test_pool_on_nb201_is_full_sized_new_and_unique():
    space = get_space("nb201", C=8, N=1)
    rng = np.random.default_rng(1)
    first = candidate_pool(space, rng, [space.sample(rng)], 40, set())
    proposed = {space.canonical_key(a) for a in first}
    second = candidate_pool(space, rng, first[:3], 40, proposed, mutation_fraction=0.25)
    keys = [space.canonical_key(a) for a in second]
    assert len(first) == len(proposed) == 40 and len(second) == 40
    assert len(set(keys)) == 40 and not set(keys) & proposed


# -- picks -----------------------------------------------------------------------------------
def test_single_pick_is_feasible_first_then_best_score_then_lowest_index():
    draws = {"validation_accuracy": np.array([0.99, 0.5, 0.7, 0.7, np.nan])}
    assert pick_single(SO, draws, np.array([0.1, 0.0, 0.0, 0.0, 0.0])) == 2
    assert pick_single(SO, draws, np.array([0.1, 0.2, 0.3, 0.0, 0.0])) == 3
    assert pick_single(SO, draws, np.array([0.3, 0.2, 0.3, 0.1, 0.0])) == 4  # NaN, but feasible
    assert pick_single(SO, draws, np.array([0.3, 0.2, 0.3, 0.3, 0.3])) == 1  # least violation


def _told(rng: np.random.Generator, n: int) -> list[dict[str, float]]:
    acc, lat = rng.uniform(0.3, 0.9, n), rng.uniform(0.5, 6.0, n)
    return [{"validation_accuracy": a, "latency_ms": t} for a, t in zip(acc, lat, strict=True)]


def _brute_force_gains(
    draws: Mapping[str, np.ndarray], feasible: np.ndarray, told: list[dict[str, float]]
) -> np.ndarray:
    """Every feasible candidate's hypervolume gain, computed one by one (no pruning)."""
    F = np.array([MO.vector(v) for v in told if MO.feasible(v)]).reshape(-1, 2)
    C = np.column_stack([-draws["validation_accuracy"], draws["latency_ms"]])
    ref = reference_point(MO, np.vstack([F, C]))
    front = F[nondominated_mask(F)]
    base = hypervolume(front, ref)
    return np.array(
        [hypervolume(np.vstack([front, c[None]]), ref) - base if ok else -1.0
         for c, ok in zip(C, feasible, strict=True)]
    )  # fmt: skip


def test_multi_pick_is_the_hypervolume_maximiser_when_one_improves():
    improved = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        told = _told(rng, 15)
        draws = {
            "validation_accuracy": rng.uniform(0.2, 1.0, 60),
            "latency_ms": rng.uniform(0.3, 7, 60),
        }
        violation = np.where(rng.random(60) < 0.3, 1.0, 0.0)
        gains = _brute_force_gains(draws, violation == 0, told)
        chosen = pick_multi(MO, draws, violation, told, np.random.default_rng(0))
        C = MO.matrix(draws)
        pruned = hypervolume_improvements(MO, C, violation == 0, told)
        if gains.max() > 0:
            improved += 1
            assert chosen == int(np.argmax(gains))
            assert pruned.max() == gains.max() and int(np.argmax(pruned)) == chosen
        assert violation[chosen] == 0
    assert improved >= 30


def test_multi_pick_falls_back_to_a_feasible_parego_pick():
    # The front dominates every candidate, so no candidate improves the hypervolume.
    told = [{"validation_accuracy": 0.95, "latency_ms": 0.5}]
    rng = np.random.default_rng(11)
    draws = {"validation_accuracy": rng.uniform(0.2, 0.9, 30), "latency_ms": rng.uniform(1, 4, 30)}
    draws["validation_accuracy"][7], draws["latency_ms"][7] = 0.9, 1.0  # best, but infeasible
    violation = np.zeros(30)
    violation[[7, 8, 9]] = 2.0
    C = MO.matrix(draws)
    assert hypervolume_improvements(MO, C, violation == 0, told).max() <= 0

    chosen = pick_multi(MO, draws, violation, told, np.random.default_rng(5))
    w = np.random.default_rng(5).dirichlet(np.ones(2))
    norm = (C - C.min(axis=0)) / (C.max(axis=0) - C.min(axis=0))
    cheb = np.max(norm * w, axis=1)
    cheb[violation > 0] = np.inf
    assert chosen == int(np.argmin(cheb)) and violation[chosen] == 0
    assert parego_pick(C, violation, np.random.default_rng(5)) == chosen


def test_parego_acquisition_skips_the_hypervolume_and_uses_one_dirichlet_draw():
    told = [{"validation_accuracy": 0.5, "latency_ms": 3.0}]
    draws = {"validation_accuracy": np.array([0.9, 0.6, 0.4]), "latency_ms": np.array([3.5, 1, 2])}
    violation = np.zeros(3)
    rng_a, rng_b = np.random.default_rng(2), np.random.default_rng(2)
    chosen = pick_multi(MO, draws, violation, told, rng_a, acquisition="parego")
    assert chosen == parego_pick(MO.matrix(draws), violation, rng_b)
    assert rng_a.random() == rng_b.random()  # the same randomness was used


@pytest.mark.parametrize("objectives", [SO, MO], ids=["single", "multi"])
def test_a_candidate_infeasible_by_mean_is_never_picked_while_a_feasible_one_exists(objectives):
    for seed in range(30):
        rng = np.random.default_rng(seed)
        n = 50
        means = {
            "validation_accuracy": rng.uniform(0.3, 0.9, n),
            "latency_ms": rng.uniform(3, 8, n),
        }
        # Draws that flatter every candidate: all look feasible and better than their means.
        draws = {
            "validation_accuracy": means["validation_accuracy"] + 0.1,
            "latency_ms": np.full(n, 1.0),
        }
        feasible = means["latency_ms"] <= 4
        if not feasible.any():
            continue
        chosen = pick(objectives, means, draws, _told(rng, 10), rng, "hvi")
        assert feasible[chosen]


def test_pick_refuses_an_empty_pool():
    empty = {"validation_accuracy": np.zeros(0), "latency_ms": np.zeros(0)}
    with pytest.raises(ValueError, match="at least one candidate"):
        pick(MO, empty, empty, [], np.random.default_rng(0))


# -- the same rule in both strategies ----------------------------------------------------------
class _Rigged:
    """A surrogate whose mean keeps only the middle row feasible while its draws flatter the
    rest: a rule that judged feasibility on the draw would pick another row."""

    def __init__(self, metric: str, seen: list[np.ndarray]) -> None:
        self.metric = metric
        self.seen = seen

    def thompson(self, X: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        self.seen.append(X)
        return self._rig(len(X))

    def _rig(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        j = n // 2
        if self.metric == "latency_ms":
            mean, draw = np.full(n, 10.0), np.full(n, 0.5)
            mean[j], draw[j] = 3.0, 3.9
        else:
            mean, draw = np.full(n, 0.9), np.full(n, 0.95)
            mean[j], draw[j] = 0.2, 0.2
        return mean, draw

    # arch2vec predicts its pool once per fit (kernel, then mean and spread from it) and
    # draws ``mean + spread * z`` per ask; with ``_UnitDraws`` (z = 1) the "spread" below
    # gives the draws above. The "kernel" is the candidates' features themselves; ``X``
    # (the training rows) is set by the test.
    X: np.ndarray

    def cross(self, X: np.ndarray, dist: np.ndarray | None = None) -> np.ndarray:
        self.seen.append(X)
        return X

    def mean_from_cross(self, X: np.ndarray) -> np.ndarray:
        return self._rig(len(X))[0]

    def std_from_cross(self, X: np.ndarray) -> np.ndarray:
        mean, draw = self._rig(len(X))
        return draw - mean


class _UnitDraws:
    """A generator whose standard normals are all 1 (the rest is the wrapped one's)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def standard_normal(self, n: int) -> np.ndarray:
        return np.ones(n)

    def __getattr__(self, name: str):
        return getattr(self.rng, name)


#: Each model-based strategy on a small NB201 setting (arch2vec: the shipped model's space).
SETUPS = {
    "predictor": (get_space("nb201", C=8, N=1), {"initial_random": 4, "candidates": 30}),
    "arch2vec": (get_space("nb201", C=16, N=5), {"initial_random": 4, "acquisition": "hvi"}),
}


@pytest.mark.parametrize("objectives", [SO, MO], ids=["single", "multi"])
@pytest.mark.parametrize("name", list(SETUPS))
def test_both_strategies_judge_feasibility_on_the_posterior_mean(name: str, objectives):
    space, options = SETUPS[name]
    s = make_strategy(name, space, objectives, np.random.default_rng(3), options)
    for i in range(4):
        arch = s.ask()
        s.tell(arch, {"validation_accuracy": 0.4 + 0.05 * i, "latency_ms": 2.0 + i})
    seen: list[np.ndarray] = []
    s._models = {m: _Rigged(m, seen) for m in objectives.modelled_metrics}  # type: ignore[attr-defined]
    s.fit_size = len(s.successes())  # type: ignore[attr-defined]  (no refit over the rigged models)
    s.rng = _UnitDraws(s.rng)  # type: ignore[assignment]
    if name == "arch2vec":
        for model in s._models.values():  # type: ignore[attr-defined]
            model.X = s.embedder.features([a for a, _ in s.successes()])  # type: ignore[attr-defined]

    arch = s.ask()
    features = s._encode(arch) if name == "predictor" else s.embedder.features([arch])[0]  # type: ignore[attr-defined]
    X = seen[-1]
    np.testing.assert_array_equal(features, X[len(X) // 2])
