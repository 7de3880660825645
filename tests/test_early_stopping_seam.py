"""The early-stopping seam: a stopper added from outside (the median stopping rule) plugs into the
config, the search method, the driver loop and kill-and-resume without touching any of them."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from pydantic import Field

from hwnas.searchers.early_stopping import (
    STOPPERS,
    Decision,
    EarlyStopper,
    Observation,
    StopperOptions,
)
from hwnas.searchers.method import SearchMethod
from tests.test_searchers_method import FakeBackend, make_config, run


class MedianOptions(StopperOptions):
    #: Epochs every trial trains before it can be stopped.
    grace: int = Field(1, ge=1)


@STOPPERS.register("median-test")
class MedianStopping(EarlyStopper):
    """Google Vizier's median stopping rule: after ``grace`` epochs, a trial whose objective at
    epoch ``n`` is below the median of the other trials' at ``n`` stops; others go on one
    epoch at a time. Single objective: the objectives' scalar ``score``."""

    name = "median-test"
    Options = MedianOptions

    def __init__(self, objectives: Any, max_length: int, **options: Any) -> None:
        super().__init__(objectives, max_length, **options)
        self.curves: dict[int, dict[int, float]] = defaultdict(dict)  # length -> trial -> score

    @property
    def first_length(self) -> int:
        return 1

    def on_result(self, trial_id: int, length: int, metrics: Mapping[str, Any]) -> Decision:
        score = self.objectives.score(metrics)
        others = [s for t, s in self.curves[length].items() if t != trial_id]
        self.curves[length][trial_id] = score
        if length >= self.max_length:
            return Decision("stop")
        if length >= self.options.grace and others and score < float(np.median(others)):
            return Decision("stop")
        return Decision("continue", length + 1)

    def rebuild(self, observations: Iterable[Observation]) -> None:
        self.curves = defaultdict(dict)
        for obs in observations:
            self.curves[obs.length][obs.trial_id] = self.objectives.score(obs.metrics)


def _config() -> Any:
    return make_config(
        objectives=[{"metric": "validation_accuracy", "goal": "maximize"}],
        reference_point=None,
        strategy={"name": "random"},
        early_stopping={"name": "median-test", "max_length": 4, "grace": 2},
        budget={"max_trials": 12, "max_concurrent": 3},
    )


def test_a_median_stopping_rule_plugs_in_by_name():
    cfg = _config()
    assert cfg.early_stopping.options() == {"grace": 2}
    method = run(SearchMethod(cfg), FakeBackend(seed=3))
    statuses = {r.trial_id: r.status.value for r in method.records()}
    stopped = [r for r in method.records() if r.status.value == "stopped"]
    assert stopped and "completed" in statuses.values()
    for rec in stopped:  # stopped after the grace period, below the others' median then
        assert rec.length >= 2 and rec.length < 4
    assert all(len(r.results) == r.length for r in method.records())  # one epoch at a time


def test_the_median_rule_survives_kill_and_resume():
    cfg = _config()
    reference = run(SearchMethod(cfg), FakeBackend(seed=3))
    for kill_at in (5, 17, 30):
        resumed = run(SearchMethod(cfg), FakeBackend(seed=3), _killer(kill_at))
        assert resumed.state_dict() == reference.state_dict(), kill_at


def _killer(kill_at: int) -> Any:
    """An ``on_change`` hook that rebuilds the method from its JSON state at call ``kill_at``."""
    calls = 0

    def maybe_kill(loop: Any) -> None:
        nonlocal calls
        if calls == kill_at:
            loop.method = SearchMethod.from_state(json.loads(json.dumps(loop.method.state_dict())))
        calls += 1

    return maybe_kill
