"""One-shot meets multi-trial: the ``supernet`` strategy proposes a supernet trial's ranking
first, then hands over; a search driven by the real loop trains the supernet's picks first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hwnas.searchers.method import SearchMethod
from hwnas.searchers.strategies import make_strategy
from hwnas.spaces import get_space
from tests.test_searchers_method import FakeBackend, _run_with_kill, make_config, run

SPACE = get_space("nb201", C=8, N=1)


def write_ranking(path: Path, n: int = 8, space: str = "nb201") -> list[str]:
    rng = np.random.default_rng(4)
    archs = []
    while len(archs) < n:
        arch = SPACE.sample(rng)
        if all(SPACE.canonical_key(arch) != SPACE.canonical_key(a) for a in archs):
            archs.append(arch)
    rows = [
        {"arch": a, "supernet_accuracy": 0.9 - 0.1 * i, "supernet_loss": 0.1 * i}
        for i, a in enumerate(archs)
    ]
    rows.insert(2, {"arch": "|bogus~0|", "supernet_accuracy": 0.85})  # skipped: invalid
    path.write_text(
        json.dumps({"format": "hwnas-supernet-ranking/1", "space": space, "candidates": rows})
    )
    return archs


def strategy(options: dict[str, Any], seed: int = 0):
    cfg = make_config()
    return make_strategy(
        "supernet", SPACE, cfg.to_objectives(), np.random.default_rng(seed), options
    )


def test_ranking_first_then_the_fallback(tmp_path: Path) -> None:
    archs = write_ranking(tmp_path / "r.json")
    s = strategy({"ranking": str(tmp_path / "r.json"), "top": 5, "then": "random"})
    asked = [s.ask() for _ in range(8)]
    assert asked[:5] == archs[:5]
    assert s.remaining == 0
    assert all(SPACE.validate(a) == a for a in asked[5:])
    cut = strategy({"ranking": str(tmp_path / "r.json"), "min_accuracy": 0.65, "then": "random"})
    assert [cut.ask() for _ in range(3)] == archs[:3]  # 0.9, 0.8, 0.7 pass; 0.6 does not
    assert cut.remaining == 0


def test_state_round_trip_without_the_file(tmp_path: Path) -> None:
    write_ranking(tmp_path / "r.json")
    options = {"ranking": str(tmp_path / "r.json"), "top": 4, "then": "nsga2"}
    first = strategy(options, seed=1)
    straight = strategy(options, seed=1)
    for s in (first, straight):
        for _ in range(6):
            arch = s.ask()
            s.tell(arch, {"validation_accuracy": 0.5, "latency_ms": 2.0})
    state = json.loads(json.dumps(first.state_dict(), allow_nan=False))
    (tmp_path / "r.json").unlink()  # a resumed search keeps the ranking in its state
    resumed = strategy(options, seed=99)
    resumed.load_state_dict(state, first.history)
    assert resumed.fallback.history == first.fallback.history
    for _ in range(6):
        a, b = resumed.ask(), straight.ask()
        assert a == b
        for s, arch in ((resumed, a), (straight, b)):
            s.tell(arch, {"validation_accuracy": 0.4, "latency_ms": 3.0})


def test_bad_rankings_are_named(tmp_path: Path) -> None:
    write_ranking(tmp_path / "darts.json", space="darts")
    with pytest.raises(ValueError, match="ranks space 'darts'"):
        strategy({"ranking": str(tmp_path / "darts.json"), "then": "random"}).ask()
    with pytest.raises(ValueError, match="cannot read ranking"):
        strategy({"ranking": str(tmp_path / "none.json"), "then": "random"}).ask()
    write_ranking(tmp_path / "r.json")
    with pytest.raises(ValueError, match="single-objective"):
        strategy({"ranking": str(tmp_path / "r.json"), "then": "evolution"})


def test_search_trains_the_supernets_picks_first_and_resumes(tmp_path: Path) -> None:
    archs = write_ranking(tmp_path / "r.json")
    cfg = make_config(
        strategy={
            "name": "supernet",
            "options": {
                "ranking": str(tmp_path / "r.json"),
                "top": 6,
                "then": "nsga2",
                "then_options": {"population": 6},
            },
        },
        budget={"max_trials": 12, "max_concurrent": 3},
    )
    method = run(SearchMethod(cfg), FakeBackend())
    first = [method.trials[t].arch for t in sorted(method.trials)][:6]
    assert first == archs[:6]
    assert len(method.trials) == 12
    # A searcher restart at any event continues exactly as if never stopped.
    reference, _, n_events = _run_with_kill(cfg, -1)
    for kill_at in range(0, n_events, 5):
        resumed, _, _ = _run_with_kill(cfg, kill_at)
        assert resumed.state_dict() == reference.state_dict(), f"kill at event {kill_at}"
