"""Predictor-guided search in the style of BANANAS (White et al. 2021).

A surrogate per modelled metric — a Gaussian process (default; exact, numpy/scipy) or an
ensemble of small scikit-learn MLPs — is fitted on the space's encodings (``path`` by
default) of everything told so far, and refitted every ``retrain_every`` new results. Each
ask builds a candidate pool: mutations of the current best (single-objective) or of the
current Pareto front (multi-objective), topped up with uniform samples, minus anything
already proposed (``hwnas.searchers.acquisition.candidate_pool``). Each candidate gets a
posterior mean and one independent Thompson sample per metric (the GP's mean and a draw from
its posterior, or the ensemble's mean and one random member), and
``hwnas.searchers.acquisition.pick`` chooses, as for ``arch2vec``:

* hard constraints are judged on the mean, so a lucky draw does not waste a query;
* single-objective (one objective, or a scalarisation): feasible first, then the highest
  sampled score;
* multi-objective: the largest hypervolume improvement of a feasible sampled point over the
  current feasible front; if no candidate improves it, the best random Chebyshev
  scalarisation (ParEGO).

Models are not serialised: the state keeps the data size and seed of the last fit, and
``load_state_dict`` refits on exactly that data with that seed, which reproduces the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import Field

from hwnas.searchers.acquisition import candidate_pool, pick
from hwnas.searchers.pareto import nondominated_mask
from hwnas.searchers.strategies.base import STRATEGIES, Strategy, StrategyOptions
from hwnas.searchers.surrogates import GaussianProcess


class PredictorOptions(StrategyOptions):
    model: Literal["gp", "mlp"] = "gp"
    encoding: Literal["path", "onehot"] = "path"
    initial_random: int = Field(10, ge=2)
    candidates: int = Field(100, ge=1)
    mutation_fraction: float = Field(0.5, ge=0.0, le=1.0)
    retrain_every: int = Field(5, ge=1)
    ensemble_size: int = Field(5, ge=2)
    hidden: int = Field(32, ge=1)
    #: Fit on at most this many results (the most recent), bounding the cost of a refit.
    max_train: int = Field(500, ge=10)


class _Surrogate:
    """One metric's model: ``fit(X, y)``, ``thompson(X, rng)`` -> mean and one draw per row."""

    def __init__(self, opts: PredictorOptions, seed: int) -> None:
        self.opts = opts
        self.seed = seed
        self.models: list[Any] = []
        self.mu = 0.0
        self.sd = 1.0

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        if self.opts.model == "gp":
            self.models = [GaussianProcess().fit(X, y)]
            return
        self.mu = float(y.mean())
        self.sd = float(y.std()) or 1.0
        z = (y - self.mu) / self.sd
        from sklearn.neural_network import MLPRegressor

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on tiny data sets
            self.models = [
                MLPRegressor(
                    hidden_layer_sizes=(self.opts.hidden, self.opts.hidden),
                    max_iter=300,
                    random_state=self.seed + i,
                ).fit(X, z)
                for i in range(self.opts.ensemble_size)
            ]

    def thompson(self, X: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and one Thompson draw per row (ensemble: its mean, a random member)."""
        if self.opts.model == "gp":
            return self.models[0].thompson(X, rng)
        member = int(rng.integers(len(self.models)))
        predictions = [model.predict(X) * self.sd + self.mu for model in self.models]
        return np.mean(predictions, axis=0), predictions[member]


@STRATEGIES.register("predictor")
class PredictorSearch(Strategy):
    """BANANAS-style: surrogate + Thompson sampling over mutated/random candidates."""

    name = "predictor"
    Options = PredictorOptions
    multi_objective = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.proposed: set[str] = set()
        self.fit_size = 0  # number of successes used by the current model
        self.fit_seed = 0
        self._models: dict[str, _Surrogate] = {}

    # -- what is modelled -----------------------------------------------------------------
    @property
    def _mo(self) -> bool:
        return self.objectives.is_multi_objective

    def _training_data(self, n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        data = self.successes()[:n][-self.options.max_train :]  # type: ignore[attr-defined]
        metrics = self.objectives.modelled_metrics
        data = [(a, v) for a, v in data if all(m in v for m in metrics)]
        X = np.array([self._encode(a) for a, _ in data], dtype=float)
        ys = {m: np.array([v[m] for _, v in data], dtype=float) for m in metrics}
        return X, ys

    def _encode(self, arch: str) -> np.ndarray:
        return self.space.encode(arch, self.options.encoding)  # type: ignore[attr-defined]

    def _fit(self, n: int, seed: int) -> None:
        X, ys = self._training_data(n)
        self._models = {}
        if len(X) < 2:
            return
        for j, (metric, y) in enumerate(ys.items()):
            model = _Surrogate(self.options, seed + 1000 * j)  # type: ignore[arg-type]
            model.fit(X, y)
            self._models[metric] = model
        self.fit_size, self.fit_seed = n, seed

    # -- ask ----------------------------------------------------------------------------------
    def ask(self) -> str:
        opts: PredictorOptions = self.options  # type: ignore[assignment]
        n_ok = len(self.successes())
        if n_ok < opts.initial_random:
            return self._remember(self.space.sample(self.rng))
        if not self._models or n_ok - self.fit_size >= opts.retrain_every:
            self._fit(n_ok, int(self.rng.integers(2**31 - 1)))
        if not self._models:
            return self._remember(self.space.sample(self.rng))
        pool = candidate_pool(
            self.space,
            self.rng,
            self._parents(),
            opts.candidates,
            self.proposed,
            opts.mutation_fraction,
        )
        if not pool:
            return self._remember(self.space.sample(self.rng))
        X = np.array([self._encode(a) for a in pool], dtype=float)
        means, draws = {}, {}
        for m, model in self._models.items():
            means[m], draws[m] = model.thompson(X, self.rng)
        told = [v for _, v in self.successes()]
        return self._remember(pool[pick(self.objectives, means, draws, told, self.rng)])

    def _remember(self, arch: str) -> str:
        self.proposed.add(self.space.canonical_key(arch))
        return arch

    def _parents(self) -> list[str]:
        ok = self.successes()
        if self._mo:
            F = np.array([self.objectives.vector(v) for _, v in ok], dtype=float)
            feas = np.array([self.objectives.feasible(v) for _, v in ok])
            mask = nondominated_mask(np.where(feas[:, None], F, np.nan))
            parents = [ok[i][0] for i in np.flatnonzero(mask)]
        else:
            order = sorted(range(len(ok)), key=lambda i: (self.objectives.ranking_key(ok[i][1]), i))
            parents = [ok[i][0] for i in order[-5:]]
        return parents or [a for a, _ in ok[-5:]]

    # -- state ---------------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {
            "proposed": sorted(self.proposed),
            "fit_size": self.fit_size,
            "fit_seed": self.fit_seed,
        }

    def _load_extra_state(self, extra: Mapping[str, Any]) -> None:
        self.proposed = set(extra.get("proposed", []))
        self._models = {}
        self.fit_size = int(extra.get("fit_size", 0))
        self.fit_seed = int(extra.get("fit_seed", 0))
        if self.fit_size:
            self._fit(self.fit_size, self.fit_seed)
