"""Every strategy: 50 asks/tells on NB201, reproducible by seed, resumable from JSON state."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from hwnas.registry import UnknownNameError
from hwnas.searchers.objectives import Scalarization, make_objectives
from hwnas.searchers.strategies import STRATEGIES, make_strategy
from hwnas.spaces import get_space

SPACE = get_space("nb201", C=8, N=1)
MO = make_objectives(
    [("validation_accuracy", "maximize"), ("latency_ms", "minimize")], ["latency_ms <= 5"]
)
SO = make_objectives(
    [("validation_accuracy", "maximize"), ("latency_ms", "minimize")],
    scalarization=Scalarization("validation_accuracy", "latency_ms", target=3.0),
)
RANKING = Path(__file__).parent / "data" / "supernet_ranking_nb201.json"  # 6 candidates
FAST = {
    "predictor": {"initial_random": 8, "candidates": 30, "retrain_every": 5},
    "supernet": {"ranking": str(RANKING), "then": "nsga2"},
}


def fake(arch: str) -> dict[str, float] | None:
    h = int(hashlib.sha256(arch.encode()).hexdigest()[:8], 16) / 2**32
    if h < 0.05:
        return None  # a failed trial
    e = SPACE.encode(arch, "onehot").reshape(6, 5)
    return {
        "validation_accuracy": 0.3 + 0.4 * e[:, 3].sum() / 6 + 0.2 * e[:, 2].sum() / 6 + 0.1 * h,
        "latency_ms": 1.0 + e[:, 3].sum() + 0.4 * e[:, 2].sum(),
    }


def build(name: str, seed: int):
    objectives = MO if STRATEGIES.get(name).multi_objective else SO
    return make_strategy(name, SPACE, objectives, np.random.default_rng(seed), FAST.get(name))


def drive(strategy, n: int) -> list[str]:
    archs = []
    for _ in range(n):
        arch = strategy.ask()
        assert SPACE.validate(arch) == arch
        archs.append(arch)
        strategy.tell(arch, fake(arch))
    return archs


def test_registry_has_every_strategy():
    assert set(STRATEGIES.names()) >= {"random", "evolution", "nsga2", "local_search", "predictor"}
    with pytest.raises(UnknownNameError, match="known: "):
        make_strategy("bayes", SPACE, MO, np.random.default_rng(0))


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_fifty_asks_reproducible_and_resumable(name: str):
    a = drive(build(name, 7), 50)
    assert a == drive(build(name, 7), 50)
    assert a[:12] != drive(build(name, 8), 12)  # the seed matters
    assert len(set(a)) >= 10  # it explores

    # Stop after 25, round-trip the state through JSON, continue: same as never stopping.
    first = build(name, 7)
    drive(first, 25)
    state = json.loads(json.dumps(first.state_dict(), allow_nan=False))
    resumed = build(name, 99)  # a different seed: everything must come from the state
    resumed.load_state_dict(state, first.history)  # the history comes from trial records
    assert drive(resumed, 25) == a[25:]


def test_options_are_validated_by_each_strategy():
    with pytest.raises(ValueError, match="sample_size"):
        make_strategy(
            "evolution", SPACE, SO, np.random.default_rng(0), {"population": 3, "sample_size": 5}
        )
    with pytest.raises(ValueError, match="extra"):
        make_strategy("nsga2", SPACE, MO, np.random.default_rng(0), {"pop": 3})


def test_evolution_ages_out_and_mutates_tournament_winners():
    s = build("evolution", 0)
    drive(s, 40)
    assert len(s.population) == 20
    told = [a for a, v in s.history if v is not None]
    assert [a for a, _ in s.population] == told[-20:]  # the oldest left first


def test_nsga2_keeps_the_best_fronts():
    s = build("nsga2", 0)
    drive(s, 60)
    assert len(s.population) == 20
    # The feasible front of everything told survives in the population (up to its size).
    from hwnas.searchers.pareto import nondominated_mask

    ok = [(a, v) for a, v in s.history if v is not None and MO.feasible(v)]
    F = np.array([MO.vector(v) for _, v in ok])
    front = {ok[i][0] for i in np.flatnonzero(nondominated_mask(F))}
    if len(front) <= 20:
        assert front <= {a for a, _ in s.population}


def test_local_search_moves_to_improvements():
    s = build("local_search", 0)
    drive(s, 50)
    best = max((v for _, v in s.history if v), key=SO.ranking_key)
    assert s.current_values is not None
    assert SO.ranking_key(s.current_values) >= SO.ranking_key(s.history[0][1] or {})
    assert SO.ranking_key(s.current_values) <= SO.ranking_key(best)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["evolution", "local_search", "predictor"])
def test_guided_strategies_beat_random_on_the_fake_objective(name: str):
    def best_score(strategy_name: str, seed: int) -> float:
        opts = FAST.get(strategy_name)
        s = make_strategy(strategy_name, SPACE, SO, np.random.default_rng(seed), opts)
        drive(s, 60)
        return max(SO.score(v) for _, v in s.history if v)

    guided = np.mean([best_score(name, s) for s in range(5)])
    rand = np.mean([best_score("random", s) for s in range(5)])
    assert guided > rand


@pytest.mark.slow
def test_predictor_with_an_mlp_ensemble_is_reproducible():
    opts = {
        "model": "mlp",
        "ensemble_size": 2,
        "hidden": 8,
        "initial_random": 5,
        "candidates": 10,
        "retrain_every": 4,
    }

    def go(seed: int) -> list[str]:
        s = make_strategy("predictor", SPACE, MO, np.random.default_rng(seed), opts)
        return drive(s, 13)

    assert go(1) == go(1)
