"""Strategy ``auto`` (the default): Bayesian optimisation that uses what the search knows.

One Gaussian process per modelled metric (``hwnas.searchers.surrogates.GaussianProcess``) is
fitted on the space's encoding of everything told so far; the candidates are every untried
architecture of a listable space (NB201: one per canonical key) or, for larger spaces, mutants
of the best results plus uniform samples. Each ask scores the candidates with a real
acquisition and proposes the best:

* single objective: expected improvement over the best posterior mean of the results so far;
* two objectives: expected hypervolume improvement (closed form) over the current feasible
  front, the first objective uncertain and the second at its measured or predicted value;
  more objectives or a scalarisation: the shared Thompson-sampling pick
  (``hwnas.searchers.acquisition.pick``);
* hard constraints: times the probability that the candidate meets them.

Latency is cheap, training is not. When the search has a cost source (``latency.predictor``,
or the latency cache: ``StrategyContext.cost``), the best ``shortlist`` candidates by the
acquisition get their cost looked up before anything trains; the pick is rescored with the
looked-up value (exact feasibility, exact position on the front), and every look-up also
trains the cost model. Training queries then go only to candidates whose looked-up cost meets
the bounds. Look-ups are remembered (state), so none is repeated.

Measured on the NB201 benchmark (``benchmarks/search_quality.py``, 6 seeds, 100 queries) while
choosing the defaults: one-hot features beat the path encoding (CIFAR-10 test 94.24 vs 93.75,
raspi4 hypervolume 0.987 vs 0.957); the logit scale beat raw accuracies (94.24 vs 94.01); a
shortlist of 32 look-ups beat 8 (raspi4 hypervolume 0.994 vs 0.987); neighbours-only pools
(``local``) did not beat the whole pool. scikit-learn's GP with one length scale per feature
ranked held-out NB201 cells worse than the isotropic grid-tuned GP (Kendall tau 0.29-0.49 vs
0.47-0.62 at 50-200 random cells) at 100-300x its fitting time, so the numpy GP stays.

The floor (``floor_quantile``, issue 15): NB201 has cells whose output ignores the input
(chance accuracy, 1-10 %) next to cells one op away at 85-90 %. Fitted on such outliers the GP
chose its shortest length scale and a spread of ~1 logit everywhere, and on 1080ti_1 EHVI
spent 50-90 of 100 queries among near-identical skip/pool cells. Modelling the first
objective no worse than the 25th percentile of the told values fixed that (1080ti_1
hypervolume at 100 queries 0.9831 -> 0.9911, 8 seeds; floors at the 15th, 35th and 50th
percentiles were no better). The floor in turn hid how bad the floored cells are: a cell
like them looked mediocre, and on raspi4, where they cost ~0 ms, EHVI kept proposing them.
A second GP on which results were floored (same kernel) discounts the acquisition by that
chance (CIFAR-100/raspi4 hypervolume 0.9768 -> 0.9912 at 100 queries, 8 seeds).

Where it stands (the default since issue 15): on the full NB201 search-quality grid (12
settings, budgets 50/100/200, 20 seeds; ``docs/search_quality.md``) ``auto`` is ahead of the
best peer on 18, tied on 36 and behind on none of 54 setting x figure x budget cells.
EHVI alternates its scale (``ehvi_scale``): in accuracy's own units alone it sent most queries
to the fastest architectures and trailed random search on that figure at 50 queries on
raspi4, eyeriss and 1080ti_1 (91.80, 92.85, 91.71; alternating: 92.48, 93.31, 92.07; with
the floor as well: 93.00, 93.51, 92.49).
Decision time (``benchmarks/decision_time.py``, thread CPU, median per proposal after 200
results): 30 ms on NB201 (5,425 keys), 59-69 ms on NB201's full cells (15,625, the tabular
backend's space; 127 ms with the whole pool's spread before the floor); 0.65-0.74 s after
10,000 results on MobileNet. The posterior spread is computed
only for the candidates whose upper bound could reach the top (``_Ranking``): the same order
as scoring the whole pool, at a fraction of the cost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import Field

from hwnas.searchers.acquisition import candidate_pool, pick
from hwnas.searchers.pareto import nondominated_mask, reference_point
from hwnas.searchers.strategies.base import STRATEGIES, Strategy, StrategyOptions
from hwnas.searchers.strategies.costs import CostLookups
from hwnas.searchers.surrogates import GaussianProcess

#: Spaces with at most this many architectures use all of them as the candidate pool.
MAX_FULL_POOL = 50_000
#: The model of which results the floor lifted (``AutoOptions.floored_model``), beside the
#: metrics' models.
FLOORED = "\0floored"


class AutoOptions(StrategyOptions):
    #: Uniform samples before the first model (meeting the cost bounds when they can be
    #: looked up).
    initial_random: int = Field(10, ge=2)
    encoding: Literal["onehot", "path"] = "onehot"
    #: Candidates per ask whose cost is looked up in the cost source (when there is one).
    shortlist: int = Field(32, ge=1)
    #: Re-tune the GP hyperparameters every this many new results (reused in between).
    tune_every: int = Field(5, ge=1)
    #: Fit on at most this many results (the best half and the most recent half).
    max_train: int = Field(400, ge=10)
    #: Pool size per ask for spaces too large to list (half mutations of the best).
    candidates: int = Field(2000, ge=10)
    #: Use the search's cost source when it has one.
    use_cost: bool = True
    #: Model accuracies (metrics named ``*accuracy`` with values in (0, 1)) on the logit
    #: scale: it spreads the top of the range, where the search decides.
    warp: Literal["none", "logit"] = "logit"
    #: Local candidates: the untried neighbours (``space.neighbours``; two steps around the
    #: best) of this many best results by the model's mean (multi-objective: by
    #: non-dominated rank), plus ``explore`` uniform candidates; 0: the whole pool every ask.
    local: int = Field(0, ge=0)
    explore: int = Field(200, ge=0)
    #: The scale of EHVI's hypervolume for a warped first objective: the modelled (logit)
    #: scale, its reference the worst told value; the metric's own units ("value"); or the
    #: two in turn, one ask each ("alternate"). In its own units, accuracy gains at the
    #: low-latency end (10-85 %) dwarf those near the top: after the initial samples 75-95 %
    #: of the queries went to the fastest tenth of NB201, which cost the best pick under the
    #: median latency at 50 queries; on the logit scale alone the hypervolume fell (pixel2
    #: 0.9825 vs 0.9930 at 100 queries, 20 seeds). Alternating kept both (README).
    ehvi_scale: Literal["alternate", "logit", "value"] = "alternate"
    #: Model the first objective no worse than this quantile of its told values (on the
    #: modelled scale; 0: off). Broken cells (NB201: chance accuracy, a cut path) are outliers
    #: that forced the GP to its shortest length scale and a spread of ~1 logit everywhere; the
    #: search needs to know only that they are bad. 0.25 beat 0 and 0.5 (README).
    floor_quantile: float = Field(0.25, ge=0.0, lt=1.0)
    #: Discount the acquisition by the chance that a candidate is one of the floored (a GP
    #: on which told results were floored, with the first objective's kernel): the floor
    #: hides how bad they are, so their modelled value alone overrates them.
    floored_model: bool = True


@STRATEGIES.register("auto")
class AutoSearch(Strategy):
    """GP surrogates; EI / EHVI times the probability of feasibility; costs looked up."""

    name = "auto"
    Options = AutoOptions
    multi_objective = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.proposed: set[str] = set()
        self.lookups = CostLookups(self.context, self.objectives, self.options.use_cost)  # type: ignore[attr-defined]
        self.hyper: dict[str, list[float]] = {}  # metric -> GP [length scale, noise]
        self.tuned_size = 0
        self._pool: tuple[list[str], list[str], np.ndarray] | None = None
        self._models: dict[str, GaussianProcess] = {}
        self._enc: dict[str, np.ndarray] = {}

    @property
    def _cost_metric(self) -> str:
        return self.lookups.metric

    # -- features and pool --------------------------------------------------------------
    def _features(self, archs: list[str]) -> np.ndarray:
        enc = self.options.encoding  # type: ignore[attr-defined]
        rows = []
        for a in archs:
            if a not in self._enc:
                self._enc[a] = np.asarray(self.space.encode(a, enc), dtype=float)
            rows.append(self._enc[a])
        return np.array(rows, dtype=float)

    def _listed_pool(self) -> tuple[list[str], list[str], np.ndarray] | None:
        """Every architecture of a listable space, one per canonical key, with features."""
        if self._pool is None:
            if self.space.size() > MAX_FULL_POOL:
                return None
            first: dict[str, str] = {}
            for a in self.space.enumerate():
                first.setdefault(self.space.canonical_key(a), a)
            archs = list(first.values())
            enc = self.options.encoding  # type: ignore[attr-defined]
            X = np.array([self.space.encode(a, enc) for a in archs], dtype=float)
            self._pool = (archs, list(first), X)
        return self._pool

    def _candidates(self) -> tuple[list[str], np.ndarray]:
        opts: AutoOptions = self.options  # type: ignore[assignment]
        if opts.local:
            return self._local_candidates()
        listed = self._listed_pool()
        if listed is not None:
            archs, keys, X = listed
            keep = np.array([k not in self.proposed for k in keys], dtype=bool)
            idx = np.flatnonzero(keep)
            return [archs[i] for i in idx], X[idx]
        opts: AutoOptions = self.options  # type: ignore[assignment]
        ok = self.successes()
        order = sorted(range(len(ok)), key=lambda i: (self.objectives.ranking_key(ok[i][1]), i))
        parents = [ok[i][0] for i in order[-10:]]
        archs = candidate_pool(self.space, self.rng, parents, opts.candidates, self.proposed)
        return archs, self._features(archs)

    def _local_candidates(self) -> tuple[list[str], np.ndarray]:
        """Untried neighbours of the best results (two steps around the very best), plus
        uniform samples."""
        opts: AutoOptions = self.options  # type: ignore[assignment]
        ok = [(a, v) for a, v in self.successes()]
        centres = self._centres([a for a, _ in ok], opts.local)
        seen: set[str] = set(self.proposed)
        pool: list[str] = []

        def add(a: str) -> None:
            k = self.space.canonical_key(a)
            if k not in seen:
                seen.add(k)
                pool.append(a)

        for i, c in enumerate(centres):
            first = self.space.neighbours(c)
            for a in first:
                add(a)
            if i == 0:  # two steps around the best
                for a in first:
                    for b in self.space.neighbours(a):
                        add(b)
        for _ in range(opts.explore):
            add(self.space.sample(self.rng))
        return pool, self._features(pool)

    def _centres(self, archs: list[str], k: int) -> list[str]:
        """The ``k`` best of ``archs`` by the models' means (multi-objective: by
        non-dominated rank of the means, then the first objective)."""
        if not archs:
            return []
        X = self._features(archs)
        objs = self.objectives
        cols = []
        for o in objs.objectives[: 2 if self._acquisition_applies() else 1]:
            gp = self._models.get(o.metric)
            if gp is None:
                return archs[-k:]
            mean = gp.predict_mean(X)
            cols.append(-mean if o.goal == "maximize" else mean)
        F = np.column_stack(cols)
        from hwnas.searchers.pareto import pareto_ranks

        ranks = pareto_ranks(F) if F.shape[1] > 1 else np.zeros(len(F))
        order = np.lexsort((F[:, 0], ranks))
        return [archs[i] for i in order[:k]]

    # -- models ---------------------------------------------------------------------------
    def _training(self, metric: str) -> tuple[list[str], np.ndarray]:
        """Architectures and values of ``metric`` to fit on (looked-up costs included), on
        the modelled scale; ``_fit`` floors the first objective's (``_floor``)."""
        opts: AutoOptions = self.options  # type: ignore[assignment]
        data = [(a, v[metric]) for a, v in self.successes() if metric in v]
        if len(data) > opts.max_train:  # the best half and the most recent half
            goal = next((o.goal for o in self.objectives.objectives if o.metric == metric), None)
            sign = -1.0 if goal == "minimize" else 1.0
            half = opts.max_train // 2
            recent = data[-half:]
            rest = sorted(data[:-half], key=lambda d: sign * d[1])[-(opts.max_train - half) :]
            data = rest + recent
        archs = [a for a, _ in data]
        y = np.array([self._warp(metric, float(v)) for _, v in data], dtype=float)
        if metric == self._cost_metric:  # look-ups train it too (their exact values matter)
            untold = self.lookups.untold(set(archs), opts.max_train)
            archs += [a for a, _ in untold]
            return archs, np.concatenate([y, [v for _, v in untold]])
        return archs, y

    def _floor(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The first objective's values ``y`` (modelled scale) no worse than the floor, and
        which of them were lifted to it."""
        opts: AutoOptions = self.options  # type: ignore[assignment]
        if not opts.floor_quantile or len(y) == 0:
            return y, np.zeros(len(y), dtype=bool)
        sign = 1.0 if self.objectives.objectives[0].goal == "maximize" else -1.0
        s = sign * y
        lo = float(np.quantile(s, opts.floor_quantile))
        return sign * np.maximum(s, lo), s < lo

    def _warped(self, metric: str) -> bool:
        return self.options.warp == "logit" and metric.endswith("accuracy")  # type: ignore[attr-defined]

    def _warp(self, metric: str, value: float) -> float:
        """``value`` on the scale ``metric`` is modelled on (see ``AutoOptions.warp``)."""
        if not self._warped(metric):
            return value
        v = min(max(value, 1e-4), 1.0 - 1e-4)  # a percentage would be clipped: use fractions
        return math.log(v / (1.0 - v))

    def _fit(self) -> dict[str, GaussianProcess]:
        opts: AutoOptions = self.options  # type: ignore[assignment]
        n_ok = len(self.successes())
        tune = n_ok - self.tuned_size >= opts.tune_every or not self.hyper
        models = {}
        first = self.objectives.objectives[0].metric
        for m in self.objectives.modelled_metrics:
            archs, y = self._training(m)
            if len(y) < 2:
                continue
            floored = np.zeros(len(y), dtype=bool)
            if m == first and m != self._cost_metric:  # exact costs are never floored
                y, floored = self._floor(y)
            params = None if tune or m not in self.hyper else self.hyper[m]
            gp = GaussianProcess().fit(self._features(archs), y, params)
            models[m] = gp
            if tune:
                self.hyper[m] = list(gp.params)
            if floored.any() and opts.floored_model and self._acquisition_applies():
                # which results were floored, on the same rows and kernel
                models[FLOORED] = GaussianProcess().fit(gp.X, floored.astype(float), gp.params)
        if tune:
            self.tuned_size = n_ok
        return models

    # -- ask ------------------------------------------------------------------------------
    def ask(self) -> str:
        opts: AutoOptions = self.options  # type: ignore[assignment]
        if len(self.successes()) < opts.initial_random:
            return self._remember(self._random())
        models = self._models = self._fit()
        if not models:
            return self._remember(self._random())
        archs, X = self._candidates()
        if not archs:
            return self._remember(self._random())
        if not self._acquisition_applies():
            means, stds = {}, {}
            for m, gp in models.items():
                means[m], stds[m] = gp.predict(X)
            draws = {m: means[m] + stds[m] * self.rng.standard_normal(len(X)) for m in means}
            told = [v for _, v in self.successes()]
            return self._remember(archs[pick(self.objectives, means, draws, told, self.rng)])
        ranking = _Ranking(self, models, X)
        if not self.lookups.available:
            return self._remember(archs[int(ranking.top(1)[0])])
        return self._remember(self._shortlist_pick(archs, ranking))

    def _needs_spread(self, metric: str) -> bool:
        """Whether the acquisition reads ``metric``'s posterior spread: the first objective
        (EI / EHVI), constrained metrics (feasibility) and anything Thompson-sampled."""
        if not self._acquisition_applies():
            return True
        objs = self.objectives
        return metric == objs.objectives[0].metric or any(
            c.metric == metric for c in objs.constraints
        )

    def _acquisition_applies(self) -> bool:
        """EI / EHVI cover one objective, or two without a scalarisation."""
        k = len(self.objectives.objectives)
        return self.objectives.scalarization is None and k in (1, 2)

    def _shortlist_pick(self, archs: list[str], ranking: _Ranking) -> str:
        """Look up the cost of the best ``shortlist`` candidates, rescore them with it, and
        return the best that meets the bounds (more rounds while none does)."""
        opts: AutoOptions = self.options  # type: ignore[assignment]
        cm = self._cost_metric
        means, stds = ranking.means, ranking.stds
        for start in range(0, min(len(archs), 8 * opts.shortlist), opts.shortlist):
            idx = ranking.top(start + opts.shortlist)[start:]
            known = [self.lookups.look_up(archs[i]) for i in idx]
            sub_means = {m: v[idx].copy() for m, v in means.items()}
            sub_stds = {m: v[idx].copy() for m, v in stds.items()}
            if cm in sub_means:
                for j, v in enumerate(known):
                    if v is not None:
                        sub_means[cm][j], sub_stds[cm][j] = v, 0.0
            rescored = self._acquire(sub_means, sub_stds)
            ok = [j for j, v in enumerate(known) if v is None or self.lookups.meets_bounds(v)]
            if ok:
                best = max(ok, key=lambda j: (rescored[j], -j))
                return archs[int(idx[best])]
        return archs[int(ranking.top(1)[0])]

    def _random(self) -> str:
        """A uniform sample not proposed before, meeting the cost bounds when they can be
        looked up (a few tries; a repeat is left to the filter's dedupe)."""
        arch = self.space.sample(self.rng)
        for _ in range(200):
            if self.space.canonical_key(arch) not in self.proposed:
                if not self.lookups.bounded:
                    break
                v = self.lookups.look_up(arch)
                if v is None or self.lookups.meets_bounds(v):
                    break
            arch = self.space.sample(self.rng)
        return arch

    def _remember(self, arch: str) -> str:
        self.proposed.add(self.space.canonical_key(arch))
        return arch

    def _observe(self, arch: str, values: dict[str, float] | None) -> None:
        # results told without an ask (a warm start) are not proposed again
        self.proposed.add(self.space.canonical_key(arch))

    # -- acquisition ----------------------------------------------------------------------
    def _acquire(
        self,
        means: dict[str, np.ndarray],
        stds: dict[str, np.ndarray],
        upper: bool = False,
        whole: dict[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """EI (one objective) or EHVI (two), times the probability of feasibility.

        ``whole``: the means of the whole pool ``means`` is a part of (the few constants that
        depend on all candidates come from it, so a part scores as in the whole); ``upper``:
        ``stds`` are upper bounds, and the result bounds the score from above (EI and EHVI
        grow with the spread; feasibility is bounded by 1 where the mean meets the bound).
        """
        objs = self.objectives.objectives
        first = objs[0]
        sign = -1.0 if first.goal == "maximize" else 1.0  # to minimisation form
        whole = means if whole is None else whole
        m1, s1 = sign * means[first.metric], np.maximum(stds[first.metric], 1e-9)
        if len(objs) == 1:
            floor = float(np.min(-sign * whole[first.metric]))
            value = _expected_improvement(m1, s1, self._incumbent(first.metric, sign), floor)
        else:
            second = objs[1]
            sign2 = -1.0 if second.goal == "maximize" else 1.0
            scale = self.options.ehvi_scale  # type: ignore[attr-defined]
            logit = scale == "logit" or (scale == "alternate" and len(self.successes()) % 2 == 0)
            if self._warped(first.metric) and not logit:  # hypervolume in the metric's units
                p = 1.0 / (1.0 + np.exp(-sign * m1))  # sigmoid of the modelled logit
                m1, s1 = sign * p, np.maximum(s1 * p * (1.0 - p), 1e-9)  # delta method
            f2 = sign2 * means[second.metric]
            f2_max = float(np.max(sign2 * whole[second.metric]))
            value = self._ehvi(
                m1, s1, f2, logit=self._warped(first.metric) and logit, f2_max=f2_max
            )
        value = value * self._feasibility(means, stds, upper)
        if FLOORED in means:  # only the chance of not being one of the floored counts
            value = value * (1.0 - np.clip(means[FLOORED], 0.0, 1.0))
        return value

    def _incumbent(self, metric: str, sign: float) -> float:
        """Best value (minimisation form) among the feasible results the model was fitted
        on, by the model's mean at them (a lucky noisy result does not set the bar)."""
        archs, _ = self._training(metric)
        told = {a: v for a, v in self.successes()}
        ok = [a for a in archs if a in told and self.objectives.feasible(told[a])]
        if not ok or metric not in self._models:
            return math.inf
        mean, _ = self._models[metric].predict(self._features(ok))
        return float(np.min(sign * mean))

    def _ehvi(
        self,
        m1: np.ndarray,
        s1: np.ndarray,
        f2: np.ndarray,
        logit: bool = False,
        f2_max: float | None = None,
    ) -> np.ndarray:
        """Expected hypervolume improvement of points ``(N(m1, s1), f2)`` (minimisation);
        ``logit``: ``m1`` is on the first objective's warped scale, and so is the front;
        ``f2_max``: the second objective's reference when none is configured or told."""
        objs = self.objectives
        F = np.array(
            [objs.vector(v) for _, v in self.successes() if objs.feasible(v)], dtype=float
        ).reshape(-1, 2)
        F = F[np.all(np.isfinite(F), axis=1)]
        ref = reference_point(objs, F) if len(F) else reference_point(objs)
        if logit and len(F):  # the front on the modelled scale; reference: the worst told
            first = objs.objectives[0]
            sign = -1.0 if first.goal == "maximize" else 1.0
            F[:, 0] = sign * np.array([self._warp(first.metric, sign * v) for v in F[:, 0]])
            ref[0] = float(np.max(F[:, 0]))
        if not np.isfinite(ref[1]):
            ref[1] = float(np.max(f2)) if f2_max is None else f2_max
        front = F[nondominated_mask(F)] if len(F) else F
        front = front[np.all(front < ref, axis=1)]
        # Sorted by f2: g(y) = best f1 among front points with f2 <= y, a step function;
        # a candidate at f2 gains the integral over y in [f2, ref2] of (min(g, ref1) - f1)+.
        front = front[np.argsort(front[:, 1])]
        ys = np.concatenate([front[:, 1], [ref[1]]])
        g = np.minimum.accumulate(np.concatenate([[ref[0]], front[:, 0]]))
        # segment j spans [ys[j-1], ys[j]) with level g[j]; segment 0 spans (-inf, ys[0])
        lo = np.concatenate([[-np.inf], ys[:-1]])
        hi = ys
        out = np.zeros(len(m1))
        for j in range(len(ys)):
            width = np.clip(hi[j] - np.maximum(lo[j], f2), 0.0, None)
            if not np.any(width > 0):
                continue
            out += width * _expected_improvement(m1, s1, g[j])
        return out

    def _feasibility(
        self, means: dict[str, np.ndarray], stds: dict[str, np.ndarray], upper: bool = False
    ) -> np.ndarray:
        """Probability that every hard constraint holds, under the models' Gaussians
        (``upper``: an upper bound of it, ``stds`` being upper bounds of the spreads)."""
        from scipy.special import ndtr

        n = len(next(iter(means.values())))
        p = np.ones(n)
        for c in self.objectives.constraints:
            if c.metric not in means:
                continue
            mu, sd = means[c.metric], stds[c.metric]
            z = (c.bound - mu) / np.maximum(sd, 1e-12)
            below = ndtr(z)
            exact = sd <= 1e-12
            prob = np.where(c.op.startswith("<"), below, 1.0 - below)
            if np.any(exact) or upper:
                sat = c.violations(mu) == 0
                prob = np.where(exact | (upper & sat), sat.astype(float), prob)
            p *= prob
        return p

    # -- state ------------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {
            "proposed": sorted(self.proposed),
            "costs": self.lookups.state(),  # in look-up order: the cost model's training data
            "hyper": {m: [float(x) for x in p] for m, p in self.hyper.items()},
            "tuned_size": self.tuned_size,
        }

    def _load_extra_state(self, extra: Mapping[str, Any]) -> None:
        self.proposed = set(extra.get("proposed", []))
        self.lookups.load_state(extra.get("costs", {}))
        self.hyper = {str(m): [float(x) for x in p] for m, p in extra.get("hyper", {}).items()}
        self.tuned_size = int(extra.get("tuned_size", 0))


def _expected_improvement(
    mean: np.ndarray, std: np.ndarray, best: float, floor: float | None = None
) -> np.ndarray:
    """E[(best - f)+] for f ~ N(mean, std) (minimisation); with no incumbent, -mean ranks
    (shifted to be positive by ``floor``, the least -mean of the pool; default: of ``mean``)."""
    from scipy.special import ndtr

    if not math.isfinite(best):
        return -mean - (np.min(-mean) if floor is None else floor) + 1e-12
    z = (best - mean) / std
    return (best - mean) * ndtr(z) + std * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


class _Ranking:
    """The candidates in order of the acquisition, computed exactly but only as far as asked.

    The posterior spread over a whole pool (a triangular product per candidate) was most of a
    decision's time on NB201's 15,625 cells; the means are cheap. Every candidate's score is
    bounded from above with ``GaussianProcess.std_upper``; exact scores are computed in order of
    that bound, in growing chunks, until the ``n`` best exact scores all exceed every bound
    left. The order is the one a full computation gives (ties: the lower index first). A pool
    under ``LAZY_MIN`` candidates is scored whole at once: there the bound's pass and the
    chunks cost more than they save (MobileNet, 2,000 candidates after 10,000 results: 668 vs
    617 ms per decision).
    """

    LAZY_MIN = 4096

    def __init__(self, strategy: AutoSearch, models: dict[str, GaussianProcess], X: np.ndarray):
        self.strategy = strategy
        self.models = models
        self.cross: dict[str, np.ndarray] = {}
        shared: dict[tuple[int, float], np.ndarray] = {}
        for m, gp in models.items():  # models on the same rows and length scale share it
            key = (id(gp.X), gp.params[0])
            if key not in shared:
                shared[key] = gp.cross(X)
            self.cross[m] = shared[key]
        self.means = {m: models[m].mean_from_cross(K) for m, K in self.cross.items()}
        n = len(X)
        self.spread = [m for m in models if strategy._needs_spread(m)]
        self.stds = {m: np.zeros(n) if m not in self.spread else np.full(n, np.nan) for m in models}
        self.score = np.full(n, -np.inf)
        if n < self.LAZY_MIN:  # small pool: every score at once
            self._evaluate(np.arange(n))
            self.upper, self.by_upper, self.done = self.score, np.arange(n), n
            return
        bounds = {m: np.zeros(n) for m in models}
        for m in self.spread:
            bounds[m] = models[m].std_upper(self.cross[m])
        self.upper = strategy._acquire(self.means, bounds, upper=True)
        self.by_upper = np.argsort(-self.upper, kind="stable")
        self.done = 0  # exact scores known for by_upper[:done]

    def top(self, k: int) -> np.ndarray:
        """Indices of the ``k`` best candidates by exact score, best first."""
        n = len(self.score)
        k = min(k, n)
        while True:
            if self.done >= k:
                seen = np.sort(self.by_upper[: self.done])
                order = seen[np.argsort(-self.score[seen], kind="stable")]
                if (
                    self.done == n
                    or self.score[order[k - 1]] > self.upper[self.by_upper[self.done]]
                ):
                    return order[:k]
            step = max(256, self.done, k - self.done)
            self._evaluate(self.by_upper[self.done : self.done + step])
            self.done = min(n, self.done + step)

    def _evaluate(self, idx: np.ndarray) -> None:
        for m in self.spread:
            self.stds[m][idx] = self.models[m].std_from_cross(self.cross[m][idx])
        sub_means = {m: v[idx] for m, v in self.means.items()}
        sub_stds = {m: v[idx] for m, v in self.stds.items()}
        self.score[idx] = self.strategy._acquire(sub_means, sub_stds, whole=self.means)
