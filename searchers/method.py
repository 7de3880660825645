"""The engine-neutral search method: Determined's custom-searcher event shape, pure JSON state.

A runner (Determined adapter, local runner, tabular runner) calls the event handlers and
carries out the operations they return. The method

* creates up to ``budget.max_concurrent`` trials at once and ``budget.max_trials`` in total,
  each from a proposal that passed the filter chain (``hwnas.searchers.filters``);
* asks for validations at the ASHA rung lengths (``hwnas.searchers.asha``): a trial in the top
  ``1/eta`` of its rung goes on to the next rung, others pause (and may be promoted later
  when the rung has grown); a trial that reaches ``max_length`` is closed;
* files every result (per-trial metrics by length, status), keeps the Pareto front and a
  hypervolume history (one entry after each completed validation);
* ends with Close for every paused trial and Shutdown when nothing is running and no new trial
  may start (budget spent, or the filters ran out of acceptable proposals); or, after
  ``budget.max_consecutive_failures`` failures in a row, closes everything and sends
  ``Shutdown(failure=True)`` (a broken environment must not burn the whole budget).

Feeding the strategy: a trial is told to the strategy once, when its fate first settles —
it pauses (not promoted), completes ``max_length``, or fails — with the metrics of the highest
rung it reached (None if it failed before any result). Telling on settlement, not on every
rung, keeps one entry per architecture in the strategy's history; a trial promoted
later from a pause is not told again.

The Pareto front is over each feasible trial's latest (highest-length) result.

Statuses: ``running`` (an operation is pending), ``paused`` (waiting at a rung),
``completed`` (reached ``max_length``), ``stopped`` (closed by ASHA at the end of the search),
``failed`` (errored), ``invalid`` (invalid hyperparameters), ``canceled`` (user-cancelled).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from hwnas.searchers.asha import ASHA
from hwnas.searchers.config import SearchConfig
from hwnas.searchers.filters import (
    DATASET_SHAPES,
    CachedLatency,
    CandidateFilter,
    CostPredictor,
    load_cost_predictor,
)
from hwnas.searchers.operations import Close, Create, ExitReason, Operation, Shutdown, ValidateAfter
from hwnas.searchers.pareto import (
    configured_reference,
    fill_reference,
    hypervolume,
    nondominated_mask,
)
from hwnas.searchers.strategies.base import make_strategy
from hwnas.spaces import get_space

STATE_VERSION = 1
_EXIT_STATUS = {
    ExitReason.ERRORED: "failed",
    ExitReason.INVALID_HP: "invalid",
    ExitReason.USER_CANCELED: "canceled",
}
TERMINAL = frozenset({"completed", "stopped", "failed", "invalid", "canceled"})


def trial_seed(search_seed: int, trial_id: int) -> int:
    """A per-trial training seed derived from the config seed (independent of event order)."""
    return int(np.random.SeedSequence([search_seed, trial_id]).generate_state(1)[0] % 2**31)


def _jsonable(value: Any) -> Any:
    """A JSON-native copy of a metrics value (numpy scalars unwrapped, NaN/inf -> None)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


class SearchMethod:
    """See the module docstring. Construct from a validated ``SearchConfig``."""

    def __init__(
        self, config: SearchConfig, *, cost_predictor: CostPredictor | None = None
    ) -> None:
        self.config = config
        self.space = get_space(config.space.name, **config.space.options)
        self.objectives = config.to_objectives()
        es = config.early_stopping
        min_length = es.max_length if es.name == "none" else es.min_length
        self.asha = ASHA(
            min_length,
            es.max_length,
            es.reduction_factor,
            self.objectives,
            multi_objective=es.name == "mo-asha",
        )
        self.strategy = make_strategy(
            config.strategy.name,
            self.space,
            self.objectives,
            np.random.default_rng(config.seed),
            config.strategy.options,
        )
        if cost_predictor is None:
            cost_predictor = load_cost_predictor(config.latency.predictor)
        lat = config.latency
        if lat.cache and lat.enabled and config.data.dataset in DATASET_SHAPES:
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
        )
        self._hparams_base = config.trial_hparams_base()
        self.trials: dict[int, dict[str, Any]] = {}
        self.next_trial_id = 1
        self.running: set[int] = set()
        self.pending_promotions: list[list[int]] = []  # [trial_id, length], oldest first
        self.exhausted = False
        self.consecutive_failures = 0
        self.abort_reason = ""
        self.shut_down = False
        self.events = 0
        self.validations = 0
        self.hv_history: list[dict[str, Any]] = []
        self.front: list[int] = []
        self._front_set: set[int] = set()  # derived caches of ``front``
        self._front_F: np.ndarray | None = None
        self._vectors: dict[int, np.ndarray] = {}  # feasible latest vectors (derived)
        m = len(self.objectives.objectives)
        self._ref = configured_reference(self.objectives)  # NaN: from data (see pareto)
        self._hi = np.full(m, -np.inf)  # worst / best feasible values seen (derived)
        self._lo = np.full(m, np.inf)

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
        rec = self.trials.get(trial_id)
        if rec is not None:
            rec["created"] = True
        return []

    def on_validation_completed(
        self, trial_id: int, metrics: Mapping[str, Any], length: int
    ) -> list[Operation]:
        """File a result, decide promote / pause / close, and start what the slots allow."""
        self.events += 1
        rec = self.trials.get(trial_id)
        if rec is None or self.shut_down or rec["status"] != "running":
            return []  # unknown or stale event (e.g. replayed after a restart)
        length = int(length)
        if length != rec["target"]:
            return []
        rec["results"][str(length)] = _jsonable(dict(metrics))
        self._observe_range(rec["results"][str(length)])
        rec["target"] = None
        self.running.discard(trial_id)
        self.validations += 1
        self.consecutive_failures = 0
        ops: list[Operation] = []
        promoted = self.asha.record(trial_id, length, metrics)
        if length >= self.asha.max_length:
            rec["status"] = "completed"
            self._settle(trial_id)
            ops.append(Close(trial_id))
        elif trial_id in promoted:
            ops.append(self._start_validation(trial_id, self.asha.next_length(length)))
        else:
            rec["status"] = "paused"
            self._settle(trial_id)
        for other in promoted:
            if other != trial_id:
                self.pending_promotions.append([other, self.asha.next_length(length)])
        self._update_front(trial_id)
        self._record_hypervolume()
        ops += self._fill()
        return ops

    def on_trial_closed(self, trial_id: int) -> list[Operation]:
        """The engine closed the trial (after our Close, or on its own)."""
        self.events += 1
        rec = self.trials.get(trial_id)
        if rec is not None:
            rec["closed"] = True
            if rec["status"] == "running":
                # Closed while we still expected a result: count it as cancelled.
                self._end_early(trial_id, "canceled", "closed by the engine")
        return [] if self.shut_down else self._fill()

    def on_trial_exited_early(
        self, trial_id: int, reason: ExitReason | str, message: str = ""
    ) -> list[Operation]:
        """A trial errored, had invalid hparams or was cancelled: record it and go on."""
        self.events += 1
        rec = self.trials.get(trial_id)
        if rec is None or rec["status"] in TERMINAL:
            return []
        status = _EXIT_STATUS[ExitReason(reason)]
        self._end_early(trial_id, status, message)
        if self.shut_down:
            return []
        if status in ("failed", "invalid"):
            self.consecutive_failures += 1
            limit = self.config.budget.max_consecutive_failures
            if limit is not None and self.consecutive_failures >= limit:
                return self._abort(f"{self.consecutive_failures} trials failed in a row")
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
            key = self.space.canonical_key(arch)
            if key in self.filter.seen:
                counts["duplicate"] += 1
                continue
            self.filter.seen.add(key)
            metrics = rec.get("metrics")
            self.strategy.tell(arch, dict(metrics) if metrics else None)
            counts["told"] += 1
        return counts

    def progress(self) -> float:
        """Fraction of the trial budget whose outcome is settled (1.0 once shut down)."""
        if self.shut_down:
            return 1.0
        settled = len(self.trials) - len(self.running)  # status "running" <=> in self.running
        return min(0.99, settled / self.config.budget.max_trials)

    # -- results ---------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        """Every trial: id, arch, status, seed, predicted cost, metrics per length (int keys),
        latest length and metrics, feasibility, message."""
        out = []
        for tid in sorted(self.trials):
            rec = self.trials[tid]
            results = {int(k): dict(v) for k, v in rec["results"].items()}
            latest = max(results) if results else None
            metrics = results[latest] if latest is not None else None
            out.append(
                {
                    "trial_id": tid,
                    "arch": rec["arch"],
                    "key": rec["key"],
                    "seed": rec["seed"],
                    "status": rec["status"],
                    "predicted_cost": rec["predicted_cost"],
                    "results": results,
                    "length": latest,
                    "metrics": metrics,
                    "feasible": None if metrics is None else self.objectives.feasible(metrics),
                    "message": rec["message"],
                }
            )
        return out

    def pareto_front(self) -> list[dict[str, Any]]:
        """Records on the front (feasible, non-dominated latest results), by first objective."""
        by_id = {r["trial_id"]: r for r in self.records()}
        rows = [by_id[t] for t in self.front]
        return sorted(rows, key=lambda r: (self.objectives.vector(r["metrics"])[0], r["trial_id"]))

    def hypervolume(self) -> float:
        """Hypervolume of the current front (see ``hwnas.searchers.pareto`` for the reference)."""
        return self.hv_history[-1]["hypervolume"] if self.hv_history else 0.0

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly as if never stopped; pure JSON."""
        return {
            "version": STATE_VERSION,
            "config": self.config.model_dump(mode="json"),
            "strategy": self.strategy.state_dict(),
            "asha": self.asha.state_dict(),
            "filter": self.filter.state_dict(),
            "trials": [self.trials[t] for t in sorted(self.trials)],
            "next_trial_id": self.next_trial_id,
            "running": sorted(self.running),
            "pending_promotions": self.pending_promotions,
            "exhausted": self.exhausted,
            "consecutive_failures": self.consecutive_failures,
            "shut_down": self.shut_down,
            "abort_reason": self.abort_reason,
            "events": self.events,
            "validations": self.validations,
            "hv_history": self.hv_history,
            "front": self.front,
        }

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], *, cost_predictor: CostPredictor | None = None
    ) -> SearchMethod:
        """Rebuild a method from ``state_dict()`` output (e.g. after ``json.loads``)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"search state version {state.get('version')!r} is not {STATE_VERSION}"
            )
        method = cls(SearchConfig.model_validate(state["config"]), cost_predictor=cost_predictor)
        method.strategy.load_state_dict(state["strategy"])
        method.asha.load_state_dict(state["asha"])
        method.filter.load_state_dict(state["filter"])
        method.trials = {int(r["trial_id"]): _copy(r) for r in state["trials"]}
        method.next_trial_id = int(state["next_trial_id"])
        method.running = {int(t) for t in state["running"]}
        method.pending_promotions = [[int(t), int(n)] for t, n in state["pending_promotions"]]
        method.exhausted = bool(state["exhausted"])
        method.consecutive_failures = int(state["consecutive_failures"])
        method.shut_down = bool(state["shut_down"])
        method.abort_reason = str(state["abort_reason"])
        method.events = int(state["events"])
        method.validations = int(state["validations"])
        method.hv_history = [dict(h) for h in state["hv_history"]]
        method._set_front([int(t) for t in state["front"]])
        for tid in method.trials:
            for metrics in method.trials[tid]["results"].values():
                method._observe_range(metrics)
            method._refresh_vector(tid)
        return method

    # -- internals -------------------------------------------------------------------------
    def _start_validation(self, trial_id: int, length: int | None) -> ValidateAfter:
        assert length is not None
        rec = self.trials[trial_id]
        rec["status"] = "running"
        rec["target"] = int(length)
        self.running.add(trial_id)
        return ValidateAfter(trial_id, int(length))

    def _create(self, arch: str, predicted_cost: float | None) -> list[Operation]:
        tid = self.next_trial_id
        self.next_trial_id += 1
        seed = trial_seed(self.config.seed, tid)
        hparams = {**self.space.to_hparams(arch), "seed": seed, **_copy(self._hparams_base)}
        cost = predicted_cost if predicted_cost is None or math.isfinite(predicted_cost) else None
        self.trials[tid] = {
            "trial_id": tid,
            "arch": arch,
            "key": self.space.canonical_key(arch),
            "seed": seed,
            "status": "running",
            "target": None,
            "results": {},
            "predicted_cost": cost,
            "told": False,
            "created": False,
            "closed": False,
            "message": "",
        }
        return [Create(tid, hparams), self._start_validation(tid, self.asha.lengths[0])]

    def _fill(self) -> list[Operation]:
        """Promotions first, then new trials, while slots are free; then maybe finish."""
        ops: list[Operation] = []
        if self.shut_down:
            return ops
        limit = self.config.budget.max_concurrent
        while len(self.running) < limit:
            if self.pending_promotions:
                tid, length = self.pending_promotions.pop(0)
                if self.trials[tid]["status"] == "paused":
                    ops.append(self._start_validation(tid, length))
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
        if self.shut_down or self.running or self.pending_promotions or not budget_spent:
            return []
        ops: list[Operation] = []
        for tid in sorted(self.trials):
            rec = self.trials[tid]
            if rec["status"] == "paused":
                rec["status"] = "stopped"
                ops.append(Close(tid))
        self.shut_down = True
        ops.append(Shutdown(failure=False))
        return ops

    def _abort(self, reason: str) -> list[Operation]:
        """End the search now with ``Shutdown(failure=True)``: close every open trial."""
        ops: list[Operation] = []
        for tid in sorted(self.trials):
            rec = self.trials[tid]
            if rec["status"] in ("running", "paused"):
                rec["status"] = "canceled" if rec["status"] == "running" else "stopped"
                rec["message"] = f"search ended: {reason}"
                rec["target"] = None
                self._settle(tid)
                ops.append(Close(tid))
        self.running.clear()
        self.pending_promotions.clear()
        self.shut_down = True
        self.abort_reason = reason
        ops.append(Shutdown(failure=True))
        return ops

    def _end_early(self, trial_id: int, status: str, message: str) -> None:
        rec = self.trials[trial_id]
        rec["status"] = status
        rec["message"] = str(message)[:2000]
        rec["target"] = None
        self.running.discard(trial_id)
        self._settle(trial_id)

    def _latest(self, trial_id: int) -> dict[str, Any] | None:
        results = self.trials[trial_id]["results"]
        if not results:
            return None
        return results[str(max(int(k) for k in results))]

    def _settle(self, trial_id: int) -> None:
        """Tell the strategy about this trial once (see the module docstring)."""
        rec = self.trials[trial_id]
        if rec["told"]:
            return
        rec["told"] = True
        self.strategy.tell(rec["arch"], self._latest(trial_id))

    def _refresh_vector(self, trial_id: int) -> None:
        metrics = self._latest(trial_id)
        self._vectors.pop(trial_id, None)
        if metrics is None or not self.objectives.feasible(metrics):
            return
        v = self.objectives.vector(metrics)
        if np.all(np.isfinite(v)):
            self._vectors[trial_id] = v

    def _front_matrix(self) -> np.ndarray:
        """The front's vectors, rows aligned with ``self.front`` (a derived cache)."""
        if self._front_F is None or len(self._front_F) != len(self.front):
            m = len(self.objectives.objectives)
            self._front_F = np.array([self._vectors[t] for t in self.front]).reshape(-1, m)
        return self._front_F

    def _update_front(self, trial_id: int) -> None:
        """Incremental front: full recompute only when a front member's point changed."""
        self._refresh_vector(trial_id)
        if trial_id in self._front_set:
            ids = sorted(self._vectors)
            m = len(self.objectives.objectives)
            F = np.array([self._vectors[t] for t in ids]).reshape(len(ids), m)
            self._set_front([ids[i] for i in np.flatnonzero(nondominated_mask(F))])
            return
        v = self._vectors.get(trial_id)
        if v is None:
            return
        F = self._front_matrix()
        if len(F):
            # Dominated (or equal to a front point): stays off the front.
            if np.any(np.all(v >= F, axis=1)):
                return
            keep = ~(np.all(v <= F, axis=1) & np.any(v < F, axis=1))
            if not keep.all():
                self.front = [t for t, k in zip(self.front, keep, strict=True) if k]
                self._front_set = set(self.front)
                F = F[keep]
        self.front.append(trial_id)
        self._front_set.add(trial_id)
        self._front_F = np.vstack([F.reshape(-1, len(v)), v[None, :]])

    def _set_front(self, ids: list[int]) -> None:
        self.front = ids
        self._front_set = set(ids)
        self._front_F = None

    def _observe_range(self, metrics: Mapping[str, Any]) -> None:
        """Track the range of feasible results (for a data-derived reference point)."""
        if not self.objectives.feasible(metrics):
            return
        v = self.objectives.vector(metrics)
        if np.all(np.isfinite(v)):
            np.maximum(self._hi, v, out=self._hi)
            np.minimum(self._lo, v, out=self._lo)

    def _record_hypervolume(self) -> None:
        F = self._front_matrix()
        ref = fill_reference(self._ref, self._hi, self._lo)
        self.hv_history.append(
            {
                "validations": self.validations,
                "trials": len(self.trials),
                "front_size": len(self.front),
                "hypervolume": hypervolume(F, ref),
            }
        )


def _copy(obj: Any) -> Any:
    """Deep copy of a JSON-native structure (cheaper than ``copy.deepcopy``)."""
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copy(v) for v in obj]
    return obj


__all__ = ["TERMINAL", "SearchMethod", "trial_seed"]
