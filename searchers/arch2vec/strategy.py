"""Strategy ``arch2vec``: Bayesian optimisation in a pretrained arch2vec latent space.

The candidate pool is the embedding of every architecture of the space (one per canonical
key; NB201: 6,466 distinct cells of 15,625), or for spaces too large to list, mutations of the
current best plus fresh samples each ask (``hwnas.searchers.acquisition.candidate_pool``). One
Gaussian process per modelled metric (objectives, scalarisation inputs and constrained
metrics) is fitted on the standardised embeddings of everything told so far; every candidate
gets its posterior mean and a Thompson draw per metric, and ``hwnas.searchers.acquisition.pick``
chooses, as for ``predictor``:

* single-objective: feasible first, then the best drawn score;
* multi-objective (``acquisition: parego``, the default): the best draw under random
  Chebyshev weights on range-normalised objectives, new weights each ask (ParEGO), which
  spreads queries along the whole front; ``acquisition: hvi``: the largest hypervolume
  improvement of the drawn point over the current feasible front (ParEGO when none improves).

A candidate whose posterior mean breaks a hard constraint is infeasible (feasibility more
likely than not), so the acquisition honours constraints before anything is queried; the
filter chain in front of every strategy (``hwnas.searchers.filters``) still applies its own
pre-filter. With a cost source and a bound on its metric (``StrategyContext.cost``, as for
``auto``) the pick's cost is looked up before it is proposed: a pick that breaks the bound is
left out and the next one taken, and every look-up trains the cost model
(``hwnas.searchers.strategies.costs``). Without it, the filter rejected about 32 asks per
trained query under the NB201 benchmark's 25th-percentile bound (141 CPU-s per 100-query run;
8.5 s with it). The pool's posterior is computed once per fit and reused by every ask until
the next result. Models are not stored:
the state keeps the history, rng and the size/seed of the last fit, and loading refits.
torch is imported only when the first model-based ask needs the embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from hwnas.searchers.acquisition import candidate_pool, pick
from hwnas.searchers.strategies.base import STRATEGIES, Strategy, StrategyOptions
from hwnas.searchers.strategies.costs import CostLookups
from hwnas.searchers.surrogates import GaussianProcess, distances
from hwnas.spaces.base import SearchSpace

#: Spaces with at most this many architectures use all of them as the candidate pool.
MAX_FULL_POOL = 50_000

# (model path, sha256, space, options) -> (archs, standardised embeddings, canonical keys, scaler)
_POOL_CACHE: dict[tuple[str, ...], tuple[list[str], np.ndarray, list[str], Any]] = {}


class Arch2VecOptions(StrategyOptions):
    #: Weight file (with its ``.json`` sidecar); default: the shipped or cached one.
    model_path: str | None = None
    initial_random: int = Field(10, ge=2)
    retrain_every: int = Field(1, ge=1)
    #: Re-tune the GP hyperparameters (grid over marginal likelihood) every this many new
    #: results; fits in between reuse them (the grid is most of a refit's cost).
    tune_every: int = Field(10, ge=1)
    #: Fit on at most this many results (the most recent), bounding the cost of a refit.
    max_train: int = Field(500, ge=10)
    #: Multi-objective pick: hypervolume improvement (ParEGO when none improves), or a
    #: random Chebyshev scalarisation every ask (spreads queries along the whole front).
    #: ParEGO is the default: on the NB201 benchmark it matched HVI's hypervolume and picked
    #: better architectures under a latency bound (benchmarks/arch2vec_compare.py).
    acquisition: Literal["hvi", "parego"] = "parego"
    #: Pool size per ask for spaces too large to list (half mutations of the best).
    candidates: int = Field(1000, ge=10)


class _Embedder:
    """Loads the model once and maps architectures to standardised embeddings.

    For a listable space every architecture is embedded up front (NB201: ~2 s) and the pool is
    one architecture per canonical key; otherwise embeddings are computed on demand.
    """

    def __init__(self, space: SearchSpace, model_path: str | None) -> None:
        from hwnas.searchers.arch2vec.pretrain import load_or_pretrain

        self.space = space
        self.model, self.meta, self.path = load_or_pretrain(space, model_path)
        key = (str(self.path), self.meta["sha256"], space.name, repr(space.space_options()))
        if key not in _POOL_CACHE:
            _POOL_CACHE[key] = self._embed_space()
        self.archs, self.x, keys, (self.mean, self.scale) = _POOL_CACHE[key]
        self.row = {a: i for i, a in enumerate(self.archs)}
        #: Pool: row and canonical key of the first architecture of each canonical key.
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        self.pool_keys = list(first)
        self.pool_rows = np.fromiter(first.values(), dtype=np.int64, count=len(first))
        self.pool_index = {k: j for j, k in enumerate(self.pool_keys)}

    def _embed_space(self) -> tuple[list[str], np.ndarray, list[str], Any]:
        from hwnas.searchers.arch2vec.embedding import embed_archs

        space = self.space
        if space.size() <= MAX_FULL_POOL:
            archs = list(space.enumerate())
            raw = embed_archs(self.model, space, archs)
        else:  # only the standardisation statistics, from a fixed sample
            archs = []
            rng = np.random.default_rng(0)
            raw = embed_archs(self.model, space, [space.sample(rng) for _ in range(2000)])
        scaler = (raw.mean(axis=0), raw.std(axis=0) + 1e-8)
        x = (raw - scaler[0]) / scaler[1] if archs else raw[:0]
        return archs, x, [space.canonical_key(a) for a in archs], scaler

    @property
    def listed(self) -> bool:
        """Whether the whole space is embedded (the pool is every canonical key)."""
        return bool(self.archs)

    def features(self, archs: list[str]) -> np.ndarray:
        """Standardised embeddings of ``archs`` (precomputed rows reused where possible)."""
        from hwnas.searchers.arch2vec.embedding import embed_archs

        out = np.empty((len(archs), len(self.mean)))
        missing = []
        for i, a in enumerate(archs):
            if a in self.row:
                out[i] = self.x[self.row[a]]
            else:
                missing.append(i)
        if missing:
            raw = embed_archs(self.model, self.space, [archs[i] for i in missing])
            out[missing] = (raw - self.mean) / self.scale
        return out


@STRATEGIES.register("arch2vec")
class Arch2VecSearch(Strategy):
    """BO with GP surrogates on arch2vec embeddings; Thompson draws, HVI / ParEGO pick."""

    name = "arch2vec"
    Options = Arch2VecOptions
    multi_objective = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.proposed: set[str] = set()
        self.fit_size = 0
        self.fit_seed = 0
        self.tuned_size = 0  # successes when the hyperparameters were last tuned
        self.hyper: dict[str, list[float]] = {}  # metric -> [length_scale, noise]
        self._models: dict[str, GaussianProcess] = {}
        self._embedder: _Embedder | None = None
        self.lookups = CostLookups(self.context, self.objectives)
        # the listed pool's posterior (metric -> mean, std; std None where only the mean is
        # read) under the current models: asks between two fits reuse it
        self._pool_pred: dict[str, tuple[np.ndarray, np.ndarray | None]] | None = None

    @property
    def embedder(self) -> _Embedder:
        if self._embedder is None:
            self._embedder = _Embedder(self.space, self.options.model_path)  # type: ignore[attr-defined]
        return self._embedder

    @property
    def model_file(self) -> Path:
        """The weight file in use (loads the model if needed)."""
        return self.embedder.path

    # -- what is modelled -----------------------------------------------------------------
    def _fit(self, n: int, seed: int) -> None:
        """Fit one GP per modelled metric on the first ``n`` successes (most recent kept);
        the cost metric's GP also on the costs looked up (``CostLookups``).

        Hyperparameters are re-tuned when there are none yet or ``tune_every`` new results
        arrived since the last tuning; otherwise the stored ones are reused.
        """
        opts: Arch2VecOptions = self.options  # type: ignore[assignment]
        metrics = self.objectives.modelled_metrics
        data = [(a, v) for a, v in self.successes()[:n] if all(m in v for m in metrics)]
        data = data[-opts.max_train :]
        self._models = {}
        self._pool_pred = None
        self.fit_size, self.fit_seed = n, seed
        if len(data) < 2:
            return
        tune = set(self.hyper) != set(metrics) or n - self.tuned_size >= opts.tune_every
        archs = [a for a, _ in data]
        X = self.embedder.features(archs)
        for m in metrics:
            y = np.array([v[m] for _, v in data], dtype=float)
            Xm = X
            extra = (
                self.lookups.untold(set(archs), opts.max_train) if m == self.lookups.metric else []
            )
            if extra:
                Xm = np.vstack([X, self.embedder.features([a for a, _ in extra])])
                y = np.concatenate([y, [c for _, c in extra]])
            self._models[m] = GaussianProcess().fit(Xm, y, None if tune else self.hyper[m])
        if tune:
            self.hyper = {m: gp.params for m, gp in self._models.items()}
            self.tuned_size = n

    # -- ask --------------------------------------------------------------------------------
    def ask(self) -> str:
        opts: Arch2VecOptions = self.options  # type: ignore[assignment]
        n_ok = len(self.successes())
        if n_ok < opts.initial_random:
            return self._random()
        if not self._models or n_ok - self.fit_size >= opts.retrain_every:
            self._fit(n_ok, int(self.rng.integers(2**31 - 1)))
        if not self._models:
            return self._random()
        pool, rows, X = self._candidates()
        if not pool:
            return self._random()
        means, draws = self._predict(rows, X)
        told = [v for _, v in self.successes()]
        # With a cost source and a bound on its metric, the pick's cost is looked up before
        # it trains: one that breaks the bound is never proposed, its exact cost replaces the
        # model's in this pool, and the next pick is taken (the look-ups train the cost GP).
        cm = self.lookups.metric
        for _ in range(len(pool)):
            best = pick(self.objectives, means, draws, told, self.rng, opts.acquisition)
            if not self.lookups.bounded or cm not in means:
                break
            cost = self.lookups.look_up(pool[best])
            if cost is None or self.lookups.meets_bounds(cost):
                break
            means[cm][best] = draws[cm][best] = cost
        return self._remember(pool[best])

    def _predict(
        self, rows: np.ndarray | None, X: np.ndarray
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Posterior means and one Thompson draw per metric for the candidates; a metric
        only constrained is judged on its mean (``acquisition.pick``), so it gets no spread.
        ``rows``: the candidates' rows in the listed pool, whose posterior is kept per fit."""
        scored = self.objectives.scored_metrics
        if rows is None or self._pool_pred is None:
            pred: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
            Xp = X if rows is None else self.embedder.x[self.embedder.pool_rows]
            dist: dict[int, np.ndarray] = {}  # GPs fitted on the same rows share distances
            for m, gp in self._models.items():
                if id(gp.X) not in dist:
                    dist[id(gp.X)] = distances(Xp.astype(np.float32), gp.X.astype(np.float32))
                Ks = gp.cross(Xp, dist[id(gp.X)])
                std = gp.std_from_cross(Ks) if m in scored else None
                pred[m] = (gp.mean_from_cross(Ks), std)
            if rows is None:
                return self._draw(pred)
            self._pool_pred = pred
        return self._draw(
            {
                m: (mean[rows], None if std is None else std[rows])
                for m, (mean, std) in self._pool_pred.items()
            }
        )

    def _draw(
        self, pred: dict[str, tuple[np.ndarray, np.ndarray | None]]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        # ``pred`` holds fresh arrays (a fancy index of the cached pool makes copies): the
        # ask may overwrite an entry with a looked-up cost without touching the cache
        means, draws = {}, {}
        for m, (mean, std) in pred.items():
            means[m] = mean
            draws[m] = mean if std is None else mean + std * self.rng.standard_normal(len(mean))
        return means, draws

    def _random(self) -> str:
        """A uniform sample not proposed before (a few tries; a repeat is left to dedupe)."""
        arch = self.space.sample(self.rng)
        for _ in range(100):
            if self.space.canonical_key(arch) not in self.proposed:
                break
            arch = self.space.sample(self.rng)
        return self._remember(arch)

    def _remember(self, arch: str) -> str:
        self.proposed.add(self.space.canonical_key(arch))
        return arch

    def _candidates(self) -> tuple[list[str], np.ndarray | None, np.ndarray]:
        """Unproposed candidates (known to break a cost bound: left out), their rows in the
        listed pool (None when the pool is sampled) and their features."""
        emb = self.embedder
        if emb.listed:
            keep = np.array([k not in self.proposed for k in emb.pool_keys], dtype=bool)
            idx = np.flatnonzero(keep)
            rows = emb.pool_rows[idx]
            archs = [emb.archs[r] for r in rows]
            if self.lookups.values:
                ok = [j for j, a in enumerate(archs) if not self.lookups.known_infeasible(a)]
                idx, archs = idx[ok], [archs[j] for j in ok]
            return archs, idx, emb.x[emb.pool_rows[idx]]
        opts: Arch2VecOptions = self.options  # type: ignore[assignment]
        ok = self.successes()
        order = sorted(range(len(ok)), key=lambda i: (self.objectives.ranking_key(ok[i][1]), i))
        parents = [ok[i][0] for i in order[-5:]]
        archs = candidate_pool(self.space, self.rng, parents, opts.candidates, self.proposed)
        archs = [a for a in archs if not self.lookups.known_infeasible(a)]
        return archs, None, emb.features(archs)

    # -- state ------------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {
            "proposed": sorted(self.proposed),
            "fit_size": self.fit_size,
            "fit_seed": self.fit_seed,
            "tuned_size": self.tuned_size,
            "hyper": {m: [float(x) for x in p] for m, p in self.hyper.items()},
            "costs": self.lookups.state(),  # in look-up order: the cost GP's training data
        }

    def _load_extra_state(self, extra: Mapping[str, Any]) -> None:
        self.proposed = set(extra.get("proposed", []))
        self._models = {}
        self.fit_size = int(extra.get("fit_size", 0))
        self.fit_seed = int(extra.get("fit_seed", 0))
        self.tuned_size = int(extra.get("tuned_size", 0))
        self.hyper = {str(m): [float(x) for x in p] for m, p in extra.get("hyper", {}).items()}
        self.lookups.load_state(extra.get("costs", {}))
        if self.fit_size:
            # The default tuning rule makes the same choice the original fit made.
            self._fit(self.fit_size, self.fit_seed)
