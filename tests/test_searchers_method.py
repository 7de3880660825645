"""SearchMethod driven by an in-test event loop with a fast deterministic fake objective."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from hwnas.driver.function import FunctionBackend, TrialFailed
from hwnas.driver.loop import SearchLoop
from hwnas.searchers.config import parse_config
from hwnas.searchers.method import SearchMethod, StateVersionError
from hwnas.searchers.operations import Create, ExitReason, Shutdown, ValidateAfter
from hwnas.spaces import get_space

SPACE = get_space("nb201", C=8, N=1)


def unit_hash(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 2**32


def fake_metrics(arch: str, length: int) -> dict[str, Any]:
    """Deterministic in (arch, length): convs raise accuracy and latency; longer is better."""
    e = SPACE.encode(arch, "onehot").reshape(6, 5)  # edges x ops (none, skip, c1, c3, pool)
    acc = (0.3 + 0.4 * e[:, 3].sum() / 6 + 0.2 * e[:, 2].sum() / 6 + 0.1 * unit_hash(arch)) * (
        1 - 0.5 * 0.5**length
    )
    lat = 1.0 + 1.0 * e[:, 3].sum() + 0.4 * e[:, 2].sum() + 0.1 * e[:, 4].sum()
    return {"validation_accuracy": float(acc), "latency_ms": float(lat), "epochs": length}


class LatencyStub:
    """A real (tiny) cost predictor: the fake objective's latency, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, arch: str) -> float:
        self.calls += 1
        return fake_metrics(arch, 1)["latency_ms"]


def make_config(**overrides: Any):
    raw: dict[str, Any] = {
        "name": "test",
        "seed": 3,
        "space": {"name": "nb201", "options": {"C": 8, "N": 1}},
        "objectives": [
            {"metric": "validation_accuracy", "goal": "maximize"},
            {"metric": "latency_ms", "goal": "minimize"},
        ],
        "strategy": {"name": "nsga2", "options": {"population": 8}},
        "early_stopping": {
            "name": "mo-asha",
            "min_length": 1,
            "max_length": 9,
            "reduction_factor": 3,
        },
        "budget": {"max_trials": 24, "max_concurrent": 3},
        "reference_point": {"validation_accuracy": 0.0, "latency_ms": 10.0},
    }
    raw.update(overrides)
    return parse_config(raw)


def FakeBackend(seed: int = 0, fail_rate: float = 0.0) -> FunctionBackend:
    """Trials answered by ``fake_metrics``, finishing in a seeded random order (out of order, as
    on a cluster); ``fail_rate`` of the runs error with the message "boom"."""

    def metrics(arch: str, length: int) -> dict[str, Any]:
        if fail_rate and unit_hash(f"{arch}/{length}") < fail_rate:
            raise TrialFailed("boom")
        return fake_metrics(arch, length)

    return FunctionBackend(metrics, order_seed=seed)


def run(
    method: SearchMethod,
    backend: FunctionBackend,
    on_change: Callable[[SearchLoop], None] | None = None,
) -> SearchMethod:
    """Drive ``method`` with the real driver loop; the method as it stands at the end."""
    loop = SearchLoop(method, backend, on_change=on_change)
    loop.start()
    assert loop.run() == "shutdown"
    backend.shutdowns = [Shutdown(failure=loop.shutdown_failure)]
    return loop.method  # type: ignore[return-value]


def front_of(method: SearchMethod) -> list[tuple[int, str, float, float]]:
    return [
        (r.trial_id, r.arch, r.metrics["validation_accuracy"], r.metrics["latency_ms"])
        for r in method.pareto_front()
    ]


def test_search_runs_to_shutdown_with_a_real_front():
    method = run(SearchMethod(make_config()), backend := FakeBackend())
    assert backend.shutdowns == [Shutdown(failure=False)]
    assert method.shut_down and method.progress() == 1.0
    assert len(method.trials) == 24
    statuses = Counter(r.status.value for r in method.records())
    assert set(statuses) <= {"completed", "stopped"}
    assert statuses["completed"] >= 1
    front = front_of(method)
    assert len(front) >= 2
    accs = [f[2] for f in front]
    lats = [f[3] for f in front]
    assert accs == sorted(accs, reverse=True) and lats == sorted(lats, reverse=True)
    assert method.hypervolume() > 0
    assert json.loads(json.dumps(method.state_dict(), allow_nan=False))


def test_concurrency_never_exceeds_max_and_lengths_are_rungs():
    peak = 0

    def check(loop: SearchLoop) -> None:
        nonlocal peak
        method = loop.method
        peak = max(peak, len(method.running))
        running = {t for t, r in method.trials.items() if r.status.value == "running"}
        assert running == method.running

    run(SearchMethod(make_config()), backend := FakeBackend(seed=5), check)
    assert peak == 3
    assert {length for _, length in backend.validated} <= {1, 3, 9}


def test_progress_never_moves_backwards():
    """Paused trials promoted later stay settled: the web UI's progress bar never goes back."""
    seen: list[float] = []
    run(
        SearchMethod(make_config()),
        FakeBackend(seed=1),
        lambda loop: seen.append(loop.method.progress()),
    )
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_hparams_follow_the_trial_contract():
    method = SearchMethod(make_config())
    create = next(op for op in method.initial_operations() if isinstance(op, Create))
    hp = create.hparams
    assert hp == method.hparams(create.trial_id)
    assert hp["space"] == "nb201" and hp["space_options"] == {"C": 8, "N": 1, "prune": True}
    assert SPACE.validate(hp["arch"]) == hp["arch"]
    assert isinstance(hp["seed"], int)
    assert hp["training"]["max_epochs"] == 9
    assert hp["data"]["dataset"] == "digits"
    assert set(hp["latency"]) == {"enabled", "backend", "batch", "threads", "cache"}
    json.dumps(hp)


def test_duplicates_never_train_twice():
    # Local search revisits neighbourhoods constantly; the dedupe filter must catch it.
    cfg = make_config(
        strategy={"name": "local_search"},
        objectives=[{"metric": "validation_accuracy", "goal": "maximize"}],
        reference_point=None,
        budget={"max_trials": 40, "max_concurrent": 2},
    )
    method = run(SearchMethod(cfg), backend := FakeBackend())
    keys = [SPACE.canonical_key(backend.arch[t]) for t in backend.created]
    assert len(keys) == len(set(keys)) == 40
    assert method.filter.counts["duplicate"] > 0


def test_constraint_violating_candidates_never_start():
    stub = LatencyStub()
    cfg = make_config(constraints=["latency_ms <= 3"], strategy={"name": "random"})
    method = run(SearchMethod(cfg, cost_predictor=stub), backend := FakeBackend())
    assert stub.calls > 0
    assert method.filter.counts["constraint"] > 0  # random proposals do break it
    for tid in backend.created:
        assert fake_metrics(backend.arch[tid], 1)["latency_ms"] <= 3
    assert all(r.predicted_cost <= 3 for r in method.records())


def test_impossible_to_satisfy_ends_gracefully():
    stub = LatencyStub()
    cfg = make_config(
        constraints=["latency_ms <= 0.5"],  # possible in principle, never predicted here
        strategy={"name": "random"},
        budget={"max_trials": 10, "max_concurrent": 2, "max_consecutive_rejections": 50},
    )
    method = SearchMethod(cfg, cost_predictor=stub)
    ops = method.initial_operations()
    assert ops == [Shutdown(failure=False)]
    assert method.exhausted and not method.trials and stub.calls == 50


def test_small_feasible_set_exhaustion_ends_gracefully():
    # Only cells made of 'none'/'skip' edges meet this bound: a few dozen canonical keys. Once
    # random proposals stop finding new ones the search must end, not spin.
    stub = LatencyStub()
    cfg = make_config(
        strategy={"name": "random"},
        constraints=["latency_ms <= 1.05"],
        early_stopping={"name": "none", "max_length": 1},
        budget={"max_trials": 1000, "max_concurrent": 4, "max_consecutive_rejections": 300},
    )
    method = run(SearchMethod(cfg, cost_predictor=stub), FakeBackend())
    assert method.shut_down and method.exhausted
    feasible = {SPACE.canonical_key(a) for a in SPACE.enumerate() if stub.predict(a) <= 1.05}
    keys = [r.key for r in method.records()]
    assert 0 < len(keys) == len(set(keys)) <= len(feasible)
    assert set(keys) <= feasible


def test_twenty_percent_failures_do_not_stop_the_search():
    cfg = make_config(budget={"max_trials": 30, "max_concurrent": 3})
    method = run(SearchMethod(cfg), backend := FakeBackend(fail_rate=0.2))
    assert method.shut_down and len(method.trials) == 30
    records = method.records()
    statuses = Counter(r.status.value for r in records)
    assert statuses["failed"] >= 3
    # Every validation the backend delivered is kept, on the right trial and length.
    delivered = Counter(backend.validated)
    kept = Counter((r.trial_id, res.length) for r in records for res in r.results)
    assert kept == delivered
    # Failed trials were told to the strategy too (as failures or with earlier results).
    assert len(method.strategy.history) == 30
    assert all(r.message == "boom" for r in records if r.status.value == "failed")


def test_invalid_and_cancelled_exits_are_recorded():
    method = SearchMethod(make_config(budget={"max_trials": 4, "max_concurrent": 2}))
    ops = method.initial_operations()
    tids = [op.trial_id for op in ops if isinstance(op, Create)]
    method.on_trial_exited_early(tids[0], "invalid_hp", "bad op")
    method.on_trial_exited_early(tids[1], ExitReason.USER_CANCELED)
    statuses = {r.trial_id: r.status.value for r in method.records()}
    assert statuses[tids[0]] == "invalid" and statuses[tids[1]] == "canceled"
    assert len(method.running) == 2  # two new trials took the freed slots


def _run_with_kill(cfg, kill_at: int, predictor=None) -> tuple[SearchMethod, FunctionBackend, int]:
    """Run with the real loop; at event ``kill_at`` the method is rebuilt from its JSON state
    (a searcher restart), the loop and backend carry on. Returns the final method, the backend
    and the number of events."""
    events = 0

    def maybe_kill(loop: SearchLoop) -> None:
        nonlocal events
        if events == kill_at:
            state = json.loads(json.dumps(loop.method.state_dict(), allow_nan=False))
            loop.method = SearchMethod.from_state(state, cost_predictor=predictor)
        events += 1

    backend = FakeBackend(seed=11, fail_rate=0.1)
    method = run(SearchMethod(cfg, cost_predictor=predictor), backend, maybe_kill)
    return method, backend, events


@pytest.mark.parametrize(
    ("strategy", "asha"),
    [("nsga2", "mo-asha"), ("evolution", "asha"), ("local_search", "asha"), ("random", "none")],
)
def test_kill_and_resume_at_every_event_index(strategy: str, asha: str):
    extra: dict[str, Any] = {}
    if strategy in ("evolution", "local_search"):
        extra["scalarization"] = {"kind": "mnasnet", "target": 3.0}
    options = {"population": 6} if strategy in ("nsga2", "evolution") else {}
    stopping: dict[str, Any] = {"name": asha, "max_length": 9}
    if asha != "none":
        stopping.update(min_length=1, reduction_factor=3)
    cfg = make_config(
        strategy={"name": strategy, "options": options},
        early_stopping=stopping,
        budget={"max_trials": 14, "max_concurrent": 3},
        constraints=["latency_ms <= 6"],
        **extra,
    )
    stub = LatencyStub()
    reference, _, n_events = _run_with_kill(cfg, -1, stub)
    assert n_events > 20
    expected_front = front_of(reference)
    expected_state = reference.state_dict()
    for kill_at in range(n_events):
        resumed, _, _ = _run_with_kill(cfg, kill_at, stub)
        assert front_of(resumed) == expected_front, f"kill at event {kill_at}"
        assert resumed.state_dict() == expected_state, f"kill at event {kill_at}"


def test_kill_and_resume_with_the_predictor_strategy():
    cfg = make_config(
        strategy={
            "name": "predictor",
            "options": {"initial_random": 4, "candidates": 20, "retrain_every": 2},
        },
        budget={"max_trials": 12, "max_concurrent": 2},
    )
    reference, _, _ = _run_with_kill(cfg, -1)
    for kill_at in (7, 23):
        resumed, _, _ = _run_with_kill(cfg, kill_at)
        assert front_of(resumed) == front_of(reference), f"kill at event {kill_at}"
        assert resumed.state_dict() == reference.state_dict()


def test_state_holds_each_result_once():
    """Every metric value a trial reported appears once in the JSON state: in its record.
    Front, rungs, strategy history and dedupe set are rebuilt from the records."""
    cfg = make_config(budget={"max_trials": 12, "max_concurrent": 3})
    method = run(SearchMethod(cfg), FakeBackend(seed=4))
    text = json.dumps(method.state_dict(), allow_nan=False)
    accuracies = {res.metrics["validation_accuracy"] for r in method.records() for res in r.results}
    assert len(accuracies) > 12
    for value in accuracies:
        assert text.count(json.dumps(value)) == 1, value
    assert method.strategy.history and method.front  # derived structures exist...
    restored = SearchMethod.from_state(json.loads(text))
    assert restored.strategy.history == method.strategy.history  # ...and come back
    assert restored.front == method.front and restored.filter.seen == method.filter.seen
    assert restored.stopper.rungs[0].n == method.stopper.rungs[0].n


def test_same_seed_same_search_and_different_seed_differs():
    a = run(SearchMethod(make_config()), FakeBackend())
    b = run(SearchMethod(make_config()), FakeBackend())
    c = run(SearchMethod(make_config(seed=4)), FakeBackend())
    assert a.state_dict() == b.state_dict()
    assert [r.arch for r in a.records()] != [r.arch for r in c.records()]


def test_state_version_is_checked():
    state = SearchMethod(make_config()).state_dict()
    state["version"] = 1
    with pytest.raises(StateVersionError, match="version 1 was written by another hwnas"):
        SearchMethod.from_state(state)


def test_stale_and_unknown_events_are_ignored():
    method = SearchMethod(make_config(budget={"max_trials": 2, "max_concurrent": 1}))
    ops = method.initial_operations()
    tid = next(op.trial_id for op in ops if isinstance(op, Create))
    assert method.on_validation_completed(999, {"validation_accuracy": 0.5}, 1) == []
    assert (
        method.on_validation_completed(
            tid, fake_metrics(SPACE.sample(np.random.default_rng(0)), 3), 3
        )
        == []
    )  # not the length asked for
    assert method.trials[tid].results == []


def test_warm_start_tells_the_strategy_and_blocks_retraining():
    earlier = run(
        SearchMethod(make_config(budget={"max_trials": 6, "max_concurrent": 2})), FakeBackend()
    )
    records = [{"arch": r.arch, "metrics": r.metrics, "space": "nb201"} for r in earlier.records()]
    records += [{"arch": "|bogus~0|", "metrics": {}}, {"arch": "x", "space": "mobilenet"}]
    method = SearchMethod(make_config(seed=3, budget={"max_trials": 10, "max_concurrent": 2}))
    counts = method.warm_start(records + records[:1])
    assert counts == {"told": 6, "duplicate": 1, "other_space": 1, "invalid": 1}
    assert len(method.strategy.history) == 6
    restored = SearchMethod.from_state(json.loads(json.dumps(method.state_dict())))
    assert restored.strategy.history == method.strategy.history
    backend = FakeBackend()
    run(method, backend)
    old = {r.key for r in earlier.records()}
    assert not old & {SPACE.canonical_key(backend.arch[t]) for t in backend.created}


def test_a_broken_environment_ends_the_search_as_a_failure():
    cfg = make_config(budget={"max_trials": 30, "max_concurrent": 3, "max_consecutive_failures": 5})
    method = run(SearchMethod(cfg), backend := FakeBackend(fail_rate=1.0))
    assert backend.shutdowns == [Shutdown(failure=True)]
    assert method.shut_down and "5 trials failed in a row" in method.abort_reason
    assert len(method.trials) <= 5 + 3
    assert all(r.status.value in ("failed", "canceled") for r in method.records())
    assert method.progress() == 1.0


def test_unloadable_predictor_is_a_config_error():
    from hwnas.searchers.config import ConfigError

    with pytest.raises(ConfigError, match=r"latency\.predictor"):
        SearchMethod(make_config(latency={"predictor": "/no/such/predictor.json"}))


def test_incremental_front_matches_a_brute_force_front_after_every_event():
    from hwnas.searchers.pareto import nondominated_mask

    cfg = make_config(
        constraints=["latency_ms <= 6"], budget={"max_trials": 30, "max_concurrent": 4}
    )

    def check(loop: SearchLoop) -> None:
        method = loop.method
        obj = method.objectives
        rows = [r for r in method.records() if r.metrics and obj.feasible(r.metrics)]
        if not rows:
            return
        F = np.array([obj.vector(r.metrics) for r in rows])
        expected = {rows[i].trial_id for i in np.flatnonzero(nondominated_mask(F))}
        assert set(method.front) == expected

    run(SearchMethod(cfg), FakeBackend(seed=2), check)


def test_front_member_turning_infeasible_leaves_an_empty_front():
    cfg = make_config(
        constraints=["latency_ms <= 5"],
        early_stopping={"name": "mo-asha", "min_length": 1, "max_length": 3, "reduction_factor": 3},
        budget={"max_trials": 3, "max_concurrent": 3},
    )
    method = SearchMethod(cfg)
    tids = [op.trial_id for op in method.initial_operations() if isinstance(op, Create)]
    ok = {"validation_accuracy": 0.5, "latency_ms": 4.0}
    slow = {"validation_accuracy": 0.9, "latency_ms": 9.0}
    assert method.on_validation_completed(tids[0], ok, 1) == []  # paused, alone on the front
    assert method.front == [tids[0]]
    method.on_validation_completed(tids[1], slow, 1)
    ops = method.on_validation_completed(tids[2], slow, 1)
    assert ValidateAfter(tids[0], 3) in ops  # the feasible one is promoted from its pause
    ops = method.on_validation_completed(tids[0], {**ok, "latency_ms": 6.0}, 3)
    assert method.front == [] and method.hypervolume() == 0.0
    assert Shutdown(failure=False) in ops
