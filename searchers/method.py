"""The engine-neutral search method: Determined's custom-searcher event shape, pure JSON state.

A driver (``hwnas.driver``'s loop over a trial backend, or the Determined custom-searcher
adapter) calls the event handlers and carries out the operations they return. The method

* creates up to ``budget.max_concurrent`` trials at once and ``budget.max_trials`` in total,
  each from a proposal that passed the filter chain (``searchers.filters``);
* asks for validations at the lengths its early stopper chooses (``searchers.early_stopping``:
  ``none``, ``asha``, ``mo-asha``, ...): on each result the stopper says continue, pause or
  stop, and may resume paused trials; a trial that reaches ``max_length`` is completed;
* files every result in the trial's record (``searchers.records``) and keeps the Pareto front
  (``searchers.front``);
* ends with Close for every paused trial and Shutdown when nothing is running and no new trial
  may start (budget spent, or the filters ran out of acceptable proposals); or, after
  ``budget.max_consecutive_failures`` failures in a row, closes everything and sends
  ``Shutdown(failure=True)`` (a broken environment must not burn the whole budget).

Feeding the strategy: a trial is told to the strategy once, when its fate first settles —
it pauses, stops, completes ``max_length``, or fails — with the metrics of the longest result it
had then (None if it failed before any result). Telling on settlement, not on every result,
keeps one entry per architecture in the strategy's history; a trial resumed later from a pause
is not told again.

State: ``state_dict()`` holds each fact once — the trial records, warm-start results, and
what no record can reproduce (strategy and stopper decisions, rng, counters). Everything
derived (front, stopper rungs, the strategy's history, the dedupe set) is rebuilt from the
records by ``from_state``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from hwnas.contract import DATASET_SHAPES
from hwnas.searchers.config import BudgetConfig, SearchConfig
from hwnas.searchers.early_stopping import Observation, make_stopper
from hwnas.searchers.filters import (
    CachedLatency,
    CandidateFilter,
    CostPredictor,
    cost_source,
)
from hwnas.searchers.front import ParetoArchive
from hwnas.searchers.operations import (
    Close,
    Create,
    ExitReason,
    Operation,
    Shutdown,
    ValidateAfter,
)
from hwnas.searchers.records import Result, TrialRecord, TrialStatus, jsonable
from hwnas.searchers.strategies.base import make_strategy
from hwnas.spaces import get_space

#: Version 2: trial records with per-result arrival numbers; derived structures not stored.
STATE_VERSION = 2
_EXIT_STATUS = {
    ExitReason.ERRORED: TrialStatus.FAILED,
    ExitReason.INVALID_HP: TrialStatus.INVALID,
    ExitReason.USER_CANCELED: TrialStatus.CANCELED,
}


class StateVersionError(ValueError):
    """A saved search state was written by another version of hwnas's method."""


def trial_seed(search_seed: int, trial_id: int) -> int:
    """A per-trial training seed derived from the config seed (independent of event order)."""
    return int(np.random.SeedSequence([search_seed, trial_id]).generate_state(1)[0] % 2**31)


class SearchMethod:
    """See the module docstring. Construct from a validated ``SearchConfig``."""

    def __init__(
        self,
        config: SearchConfig,
        *,
        cost_predictor: CostPredictor | None = None,
        measured: Mapping[str, Any] | None = None,
    ) -> None:
        """``measured`` describes what reports ``latency_ms`` when not the trials as the
        config says (the tabular backend's table column; see ``searchers.filters.cost_source``,
        which refuses a ``latency.predictor`` made for something else)."""
        self.config = config
        self.space = get_space(config.space.name, **config.space.options)
        self.objectives = config.to_objectives()
        es = config.early_stopping
        self.stopper = make_stopper(es.name, self.objectives, es.max_length, es.options())
        self.strategy = make_strategy(
            config.strategy.name,
            self.space,
            self.objectives,
            np.random.default_rng(config.seed),
            config.strategy.options,
        )
        source = cost_source(config, cost_predictor=cost_predictor, measured=measured)
        cost_predictor = source.predictor
        self.cost_label = source.label
        lat = config.latency
        if measured is None and lat.cache and lat.enabled and config.data.dataset in DATASET_SHAPES:
            # Measured figures from earlier trials beat predictions; never measures here.
            shape, classes = DATASET_SHAPES[config.data.dataset]
            cost_predictor = CachedLatency(
                self.space,
                lat.cache,
                backend=lat.backend,
                batch=lat.batch,
                threads=lat.threads,
                input_shape=shape,
                num_classes=classes,
                fallback=cost_predictor,
            )
        self.filter = CandidateFilter(
            self.space,
            self.objectives,
            cost_predictor,
            max_consecutive_rejections=config.budget.max_consecutive_rejections,
            cost_is_objective=source.objective,
        )
        self._hparams_base = config.trial_hparams_base()
        self.trials: dict[int, TrialRecord] = {}
        self.warm: list[dict[str, Any]] = []  # warm-start results told before any trial
        self.next_trial_id = 1
        self.pending_promotions: list[tuple[int, int]] = []  # oldest first
        self.exhausted = False
        self.consecutive_failures = 0
        self.abort_reason = ""
        self.shut_down = False
        self.events = 0
        self.archive = ParetoArchive(self.objectives)
        self._running: set[int] = set()  # derived: trials whose status is running
        self._results = 0  # derived: results filed so far (the next result's seq)
        self._told = 0  # derived: trials and warm-start results told to the strategy

    # -- event handlers ------------------------------------------------------------------
    def initial_operations(self) -> list[Operation]:
        """The first Creates and ValidateAfters (only once; later calls return nothing)."""
        self.events += 1
        if self.trials or self.shut_down:
            return []
        return self._fill()

    def on_trial_created(self, trial_id: int) -> list[Operation]:
        """The engine confirmed the trial exists; nothing to decide."""
        self.events += 1
        return []

    def on_validation_completed(
        self, trial_id: int, metrics: Mapping[str, Any], length: int
    ) -> list[Operation]:
        """File a result, ask the early stopper, and start what the slots allow."""
        self.events += 1
        rec = self.trials.get(trial_id)
        if rec is None or self.shut_down or rec.status is not TrialStatus.RUNNING:
            return []  # unknown or stale event (e.g. replayed after a restart)
        length = int(length)
        if length != rec.target:
            return []
        stored = jsonable(dict(metrics))
        if self.filter.cost_is_objective and rec.predicted_cost is not None:
            # Nothing measures the cost metric: it is the predictor's figure (cost_source).
            stored.setdefault(self.filter.cost_metric, rec.predicted_cost)
            stored.setdefault("latency_backend", f"predictor:{self.cost_label}")
        rec.results.append(Result(length, stored, self._results))
        self._results += 1
        rec.target = None
        self._running.discard(trial_id)
        self.consecutive_failures = 0
        self.archive.add(trial_id, stored)
        # The stopper sees exactly what the record keeps, so a rebuilt stopper agrees.
        decision = self.stopper.on_result(trial_id, length, stored)
        ops: list[Operation] = []
        if length >= self.stopper.max_length:
            rec.status = TrialStatus.COMPLETED
            self._settle(rec)
            ops.append(Close(trial_id))
        elif decision.action == "continue":
            assert decision.length is not None
            ops.append(self._start_validation(rec, decision.length))
        elif decision.action == "pause":
            rec.status = TrialStatus.PAUSED
            self._settle(rec)
        else:
            rec.status = TrialStatus.STOPPED
            rec.message = "stopped early"
            self._settle(rec)
            ops.append(Close(trial_id))
        self.pending_promotions += [(t, n) for t, n in decision.promote if t != trial_id]
        ops += self._fill()
        return ops

    def on_trial_closed(self, trial_id: int) -> list[Operation]:
        """The engine closed the trial (after our Close, or on its own)."""
        self.events += 1
        rec = self.trials.get(trial_id)
        if rec is not None and rec.status is TrialStatus.RUNNING:
            # Closed while we still expected a result: count it as cancelled.
            self._end_early(rec, TrialStatus.CANCELED, "closed by the engine")
        return [] if self.shut_down else self._fill()

    def on_trial_exited_early(
        self, trial_id: int, reason: ExitReason | str, message: str = ""
    ) -> list[Operation]:
        """A trial errored, had invalid hparams or was cancelled: record it and go on."""
        self.events += 1
        rec = self.trials.get(trial_id)
        if rec is None or rec.status.terminal:
            return []
        status = _EXIT_STATUS[ExitReason(reason)]
        self._end_early(rec, status, message)
        if self.shut_down:
            return []
        if status.is_failure:
            self.consecutive_failures += 1
            limit = self.config.budget.max_consecutive_failures
            if limit is not None and self.consecutive_failures >= limit:
                return self._abort(f"{self.consecutive_failures} trials failed in a row")
        return self._fill()

    def on_continue(self, budget: BudgetConfig | None = None) -> list[Operation]:
        """A driver continues this search, with ``budget`` replacing the configured one if
        given: a search that had ended (budget spent, proposals exhausted, or stopped after
        failures in a row) starts again while the budget allows; the failure and rejection
        counts start afresh."""
        self.events += 1
        if budget is not None:
            self.config = self.config.model_copy(update={"budget": budget})
            self.filter.max_consecutive_rejections = budget.max_consecutive_rejections
        self.exhausted = False
        self.filter.consecutive_rejections = 0
        self.consecutive_failures = 0
        self.shut_down = False
        self.abort_reason = ""
        return self._fill()

    def warm_start(self, records: list[Mapping[str, Any]]) -> dict[str, int]:
        """Seed a fresh search with earlier results ``{"arch", "metrics", "space"?}``.

        Each new architecture is told to the strategy (its population / model starts from
        it) and marked as seen by the dedupe filter (it never trains again). Records of
        another space or with an invalid arch are skipped. Returns counts ``told``,
        ``duplicate``, ``other_space``, ``invalid``. Call before ``initial_operations``.
        """
        from hwnas.spaces.base import ArchitectureError

        counts = {"told": 0, "duplicate": 0, "other_space": 0, "invalid": 0}
        for rec in records:
            if rec.get("space") not in (None, self.space.name):
                counts["other_space"] += 1
                continue
            try:
                arch = self.space.validate(str(rec["arch"]))
            except (ArchitectureError, KeyError):
                counts["invalid"] += 1
                continue
            key = self.filter.key(arch)
            if key in self.filter.seen:
                counts["duplicate"] += 1
                continue
            self.filter.seen.add(key)
            metrics = jsonable(dict(rec["metrics"])) if rec.get("metrics") else None
            self.warm.append({"arch": arch, "metrics": metrics})
            self.strategy.tell(arch, metrics)
            self._told += 1
            counts["told"] += 1
        return counts

    def progress(self) -> float:
        """Fraction of the trial budget whose fate has settled; never moves backwards (a
        paused trial resumed later stays settled) and is 1.0 once shut down."""
        if self.shut_down:
            return 1.0
        settled = sum(1 for rec in self.trials.values() if rec.told is not None)
        return min(0.99, settled / self.config.budget.max_trials)

    # -- results ---------------------------------------------------------------------------
    @property
    def running(self) -> frozenset[int]:
        """Trials with a pending operation."""
        return frozenset(self._running)

    @property
    def front(self) -> list[int]:
        """Trial ids on the Pareto front (feasible, non-dominated latest results)."""
        return list(self.archive.front)

    def records(self) -> list[TrialRecord]:
        """Every trial's record, by id."""
        return [self.trials[t] for t in sorted(self.trials)]

    def hparams(self, trial_id: int) -> dict[str, Any]:
        """The hyperparameters trial ``trial_id`` runs with (the trial contract's JSON)."""
        rec = self.trials[trial_id]
        return {
            **self.space.to_hparams(rec.arch),
            "seed": rec.seed,
            **_copy(self._hparams_base),
        }

    def feasible(self, rec: TrialRecord) -> bool | None:
        """Whether a record's latest result meets the constraints (None before any result)."""
        return None if rec.metrics is None else self.objectives.feasible(rec.metrics)

    def pareto_front(self) -> list[TrialRecord]:
        """Records on the front, best first by the first objective (ties: trial id)."""
        rows = [self.trials[t] for t in self.archive.front]
        return sorted(rows, key=lambda r: (self.objectives.vector(r.metrics)[0], r.trial_id))

    def hypervolume(self) -> float:
        """Hypervolume of the current front (see ``searchers.pareto`` for the reference)."""
        return self.archive.hypervolume()

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly as if never stopped; pure JSON, each fact
        once (see the module docstring)."""
        return {
            "version": STATE_VERSION,
            "config": self.config.model_dump(mode="json"),
            "trials": [self.trials[t].to_json() for t in sorted(self.trials)],
            "warm_start": self.warm,
            "strategy": self.strategy.state_dict(),
            "stopper": self.stopper.state_dict(),
            "filter": self.filter.state_dict(),
            "next_trial_id": self.next_trial_id,
            "pending_promotions": [list(p) for p in self.pending_promotions],
            "exhausted": self.exhausted,
            "consecutive_failures": self.consecutive_failures,
            "shut_down": self.shut_down,
            "abort_reason": self.abort_reason,
            "events": self.events,
        }

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        *,
        cost_predictor: CostPredictor | None = None,
        measured: Mapping[str, Any] | None = None,
    ) -> SearchMethod:
        """Rebuild a method from ``state_dict()`` output (e.g. after ``json.loads``)."""
        version = state.get("version")
        if version != STATE_VERSION:
            raise StateVersionError(
                f"search state version {version!r} was written by another hwnas (this one "
                f"reads version {STATE_VERSION}); finish that search with the hwnas that "
                "started it, or start a new one"
            )
        config = SearchConfig.model_validate(state["config"])
        method = cls(config, cost_predictor=cost_predictor, measured=measured)
        method._restore(state)
        return method

    def _restore(self, state: Mapping[str, Any]) -> None:
        self.trials = {int(r["trial_id"]): TrialRecord.from_json(r) for r in state["trials"]}
        for rec in self.trials.values():
            # A record's key is the active dedupe key (states from before a key change too).
            rec.key = self.filter.key(rec.arch)
        self.warm = [dict(w) for w in state["warm_start"]]
        self.next_trial_id = int(state["next_trial_id"])
        self.pending_promotions = [(int(t), int(n)) for t, n in state["pending_promotions"]]
        self.exhausted = bool(state["exhausted"])
        self.consecutive_failures = int(state["consecutive_failures"])
        self.shut_down = bool(state["shut_down"])
        self.abort_reason = str(state["abort_reason"])
        self.events = int(state["events"])
        # Derived structures, rebuilt from the records.
        records = self.records()
        self._running = {r.trial_id for r in records if r.status is TrialStatus.RUNNING}
        results = sorted((res.seq, r.trial_id, res) for r in records for res in r.results)
        self._results = len(results)
        self.archive = ParetoArchive(self.objectives)
        for _, tid, res in results:
            self.archive.add(tid, res.metrics)
        self.stopper.rebuild(Observation(s, t, res.length, res.metrics) for s, t, res in results)
        self.stopper.load_state_dict(state["stopper"])
        told = sorted((r for r in records if r.told is not None), key=lambda r: r.told or 0)
        history = [(w["arch"], w["metrics"]) for w in self.warm]
        history += [(r.arch, r.told_metrics()) for r in told]
        self._told = len(history)
        self.strategy.load_state_dict(state["strategy"], history)
        self.filter.load_state_dict(state["filter"])
        self.filter.seen = {r.key for r in records}
        self.filter.seen |= {self.filter.key(w["arch"]) for w in self.warm}

    # -- internals -------------------------------------------------------------------------
    def _start_validation(self, rec: TrialRecord, length: int) -> ValidateAfter:
        rec.status = TrialStatus.RUNNING
        rec.target = int(length)
        self._running.add(rec.trial_id)
        return ValidateAfter(rec.trial_id, int(length))

    def _create(self, arch: str, predicted_cost: float | None) -> list[Operation]:
        tid = self.next_trial_id
        self.next_trial_id += 1
        cost = predicted_cost if predicted_cost is None or math.isfinite(predicted_cost) else None
        rec = TrialRecord(
            trial_id=tid,
            arch=arch,
            key=self.filter.key(arch),
            seed=trial_seed(self.config.seed, tid),
            predicted_cost=cost,
        )
        self.trials[tid] = rec
        return [
            Create(tid, self.hparams(tid)),
            self._start_validation(rec, self.stopper.first_length),
        ]

    def _fill(self) -> list[Operation]:
        """Promotions first, then new trials, while slots are free; then maybe finish."""
        ops: list[Operation] = []
        if self.shut_down:
            return ops
        limit = self.config.budget.max_concurrent
        while len(self._running) < limit:
            if self.pending_promotions:
                tid, length = self.pending_promotions.pop(0)
                if self.trials[tid].status is TrialStatus.PAUSED:
                    ops.append(self._start_validation(self.trials[tid], length))
                continue
            if self.exhausted or len(self.trials) >= self.config.budget.max_trials:
                break
            proposal = self.filter.propose(self.strategy)
            if proposal is None:
                self.exhausted = True
                break
            ops += self._create(*proposal)
        ops += self._maybe_finish()
        return ops

    def _maybe_finish(self) -> list[Operation]:
        budget_spent = self.exhausted or len(self.trials) >= self.config.budget.max_trials
        if self.shut_down or self._running or self.pending_promotions or not budget_spent:
            return []
        ops: list[Operation] = []
        for rec in self.records():
            if rec.status is TrialStatus.PAUSED:
                rec.status = TrialStatus.STOPPED
                ops.append(Close(rec.trial_id))
        self.shut_down = True
        ops.append(Shutdown(failure=False))
        return ops

    def _abort(self, reason: str) -> list[Operation]:
        """End the search now with ``Shutdown(failure=True)``: close every open trial."""
        ops: list[Operation] = []
        for rec in self.records():
            if not rec.status.terminal:
                was_running = rec.status is TrialStatus.RUNNING
                rec.status = TrialStatus.CANCELED if was_running else TrialStatus.STOPPED
                rec.message = f"search ended: {reason}"
                rec.target = None
                self._settle(rec)
                ops.append(Close(rec.trial_id))
        self._running.clear()
        self.pending_promotions.clear()
        self.shut_down = True
        self.abort_reason = reason
        ops.append(Shutdown(failure=True))
        return ops

    def _end_early(self, rec: TrialRecord, status: TrialStatus, message: str) -> None:
        rec.status = status
        rec.message = str(message)[:2000]
        rec.target = None
        self._running.discard(rec.trial_id)
        self._settle(rec)

    def _settle(self, rec: TrialRecord) -> None:
        """Tell the strategy about this trial once (see the module docstring)."""
        if rec.told is not None:
            return
        rec.told = self._told
        rec.told_length = rec.length
        self._told += 1
        self.strategy.tell(rec.arch, rec.metrics)


def _copy(obj: Any) -> Any:
    """Deep copy of a JSON-native structure (cheaper than ``copy.deepcopy``)."""
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copy(v) for v in obj]
    return obj


__all__ = ["STATE_VERSION", "SearchMethod", "StateVersionError", "trial_seed"]
