"""Peers for the search-quality benchmark, behind the search-method events.

Each peer turns an outside library's ask/tell into the event handlers the driver loop drives,
so peers and hwnas strategies share one runner: the same query model, noise and budget.
An NB201 cell is six categorical parameters ``edge_<to>_<from>`` over the five ops (the
encoding OptunaHub's and Syne Tune's own NB201 benchmarks use).

* Optuna (``optuna-random``, ``optuna-tpe``, ``optuna-nsga2``, ``optuna-gp``): default sampler
  settings, as a user would pick them. ``optuna-gp`` is ``GPSampler`` (LogEI single-objective,
  LogEHVI multi-objective, their constrained forms with a constraint). A latency bound is given
  as ``trial.set_constraint`` on Optuna >= 5 and ``constraints_func`` before (5.0 deprecates
  ``constraints_func``; both give the same proposals).
* Syne Tune (``synetune-morea``): ``MultiObjectiveRegularizedEvolution`` 0.16 as shipped, with
  population 10 and sample 3 (NB201's own REA setting; the defaults 100/10 make a 100-query
  run pure random search). It has two defects, both reported by the benchmark: the parent
  score is the *index list* of the non-dominated sort, not each member's rank (the worst
  member can win a tournament), and its random initial population draws from the global
  ``np.random`` (``random_seed`` does not make it reproducible; the benchmark seeds the global
  generator per run so that runs repeat). ``synetune-morea-rankfix`` is the same searcher
  with the rank passed through its public ``multiobjective_priority`` argument.

Repeats: a peer that proposes an architecture it already queried pays a query for it (it is
told the earlier result: the table gives one noisy value per architecture and run seed).
``repeat_rule="free"`` restores the earlier rule (a repeat costs nothing; the tabular backend
ends a run that proposes more repeats than its budget). hwnas strategies never repeat: their
filter dedupes by canonical key.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from hwnas.searchers.operations import Create, ExitReason, Operation, Shutdown, ValidateAfter
from hwnas.spaces.nb201 import EDGES, OPS, format_arch

OPTUNA_PEERS = ("optuna-random", "optuna-tpe", "optuna-nsga2", "optuna-gp")
SYNETUNE_PEERS = ("synetune-morea", "synetune-morea-rankfix")
#: Every peer the benchmark knows.
PEERS = OPTUNA_PEERS + SYNETUNE_PEERS
#: Peers that only run multi-objective (MOREA has no single-objective or constrained form).
MO_ONLY_PEERS = frozenset(SYNETUNE_PEERS)
#: The default peers: every peer whose package is installed (see ``peer_unavailable``).
DEFAULT_PEERS = PEERS
PARAM_NAMES = tuple(f"edge_{to}_{src}" for to, src in EDGES)
RepeatRule = Literal["pay", "free"]


def peer_unavailable(name: str) -> str | None:
    """Why peer ``name`` cannot run here (a missing package), or None when it can."""
    if name in SYNETUNE_PEERS:
        try:
            import syne_tune  # noqa: F401
        except ImportError:
            return (
                f"{name}: syne-tune is not installed (pip install 'hwnas[synetune]', ~700 MB "
                "with xgboost; or pip install --no-deps syne-tune==0.16.0 dill): skipped"
            )
    elif name in OPTUNA_PEERS:
        try:
            import optuna  # noqa: F401
        except ImportError:
            return f"{name}: optuna is not installed (pip install 'hwnas[bench]'): skipped"
        if name == "optuna-gp":
            try:
                from optuna.samplers import GPSampler  # noqa: F401
            except ImportError:
                return f"{name}: this optuna has no GPSampler (needs >= 4.5): skipped"
    else:
        return f"unknown peer {name!r}; known: {', '.join(PEERS)}"
    return None


class PeerMethod:
    """One trial at a time from an outside searcher, answered at ``length`` epochs.

    ``objectives`` are ``(metric, "maximize"|"minimize")`` pairs read from the trial's metrics;
    ``constraint`` is ``(metric, bound)`` for ``metric <= bound``. ``budget`` is the number of
    paid queries (see the module docstring for ``repeat_rule``). ``log`` keeps every paid
    query's ``(arch, metrics)`` in order, repeats included.
    """

    def __init__(
        self,
        objectives: Sequence[tuple[str, str]],
        *,
        budget: int,
        length: int,
        constraint: tuple[str, float] | None = None,
        repeat_rule: RepeatRule = "pay",
        hparams_base: dict[str, Any] | None = None,
    ) -> None:
        self.metrics = [m for m, _ in objectives]
        self.goals = [g for _, g in objectives]
        self.constraint = constraint
        self.budget = int(budget)
        self.length = int(length)
        self.repeat_rule = repeat_rule
        self.hparams_base = dict(hparams_base or {})
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.repeats = 0
        self._seen: set[str] = set()
        self._pending: dict[int, tuple[str, Any]] = {}  # trial -> (arch, the library's handle)
        self._next_id = 1

    # -- what a peer implements --------------------------------------------------------------
    def _ask(self) -> tuple[list[str], Any]:
        """One proposal: the six ops and the library's handle for ``_tell``."""
        raise NotImplementedError

    def _tell(self, handle: Any, metrics: dict[str, Any] | None) -> None:
        """The result of ``handle``'s proposal (None: it failed)."""
        raise NotImplementedError

    # -- the search-method events ---------------------------------------------------------------
    def _create(self) -> list[Operation]:
        if len(self.log) >= self.budget:
            return [Shutdown()]
        ops, handle = self._ask()
        arch = format_arch(ops)
        trial_id = self._next_id
        self._next_id += 1
        self._pending[trial_id] = (arch, handle)
        hparams = {**self.hparams_base, "space": "nb201", "arch": arch}
        return [Create(trial_id, hparams), ValidateAfter(trial_id, self.length)]

    def initial_operations(self) -> list[Operation]:
        return self._create()

    def on_trial_created(self, trial_id: int) -> list[Operation]:
        return []

    def on_validation_completed(
        self, trial_id: int, metrics: dict[str, Any], length: int
    ) -> list[Operation]:
        arch, handle = self._pending.pop(trial_id)
        repeat = arch in self._seen
        self.repeats += repeat
        self._seen.add(arch)
        if self.repeat_rule == "pay" or not repeat:
            self.log.append((arch, dict(metrics)))
        self._tell(handle, dict(metrics))
        return self._create()

    def on_trial_closed(self, trial_id: int) -> list[Operation]:
        return []

    def on_trial_exited_early(
        self, trial_id: int, reason: ExitReason, message: str = ""
    ) -> list[Operation]:
        _, handle = self._pending.pop(trial_id)
        self._tell(handle, None)
        return self._create()


def make_sampler(
    name: str, seed: int, constraints_func: Any = None
) -> Any:  # optuna.samplers.BaseSampler
    """The Optuna sampler behind peer ``name``, seeded (``constraints_func``: Optuna < 5)."""
    import optuna

    kw = {} if constraints_func is None else {"constraints_func": constraints_func}
    if name == "optuna-random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "optuna-tpe":
        return optuna.samplers.TPESampler(seed=seed, **kw)
    if name == "optuna-nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, **kw)
    if name == "optuna-gp":
        return optuna.samplers.GPSampler(seed=seed, **kw)
    raise ValueError(f"unknown Optuna peer {name!r}; known: {', '.join(OPTUNA_PEERS)}")


def _has_set_constraint() -> bool:
    import optuna

    return hasattr(optuna.trial.Trial, "set_constraint")


class OptunaMethod(PeerMethod):
    """An Optuna study driven by ask/tell (see ``PeerMethod``)."""

    def __init__(self, peer: str, objectives: Sequence[tuple[str, str]], *, seed: int, **kw: Any):
        import optuna

        super().__init__(objectives, **kw)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._set_constraint = self.constraint is not None and _has_set_constraint()
        cf = None
        if self.constraint is not None and not self._set_constraint:
            cf = _constraints_from_user_attr
        with warnings.catch_warnings():  # samplers flag some defaults as experimental
            warnings.simplefilter("ignore")
            self.study = optuna.create_study(
                sampler=make_sampler(peer, seed, cf), directions=self.goals
            )

    def _ask(self) -> tuple[list[str], Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = self.study.ask()
            ops = [trial.suggest_categorical(name, OPS) for name in PARAM_NAMES]
        return ops, trial

    def _tell(self, trial: Any, metrics: dict[str, Any] | None) -> None:
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if metrics is None:
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                return
            if self.constraint is not None:
                metric, bound = self.constraint
                violation = float(metrics[metric]) - bound
                if self._set_constraint:
                    trial.set_constraint(metric, violation)
                else:
                    trial.set_user_attr("constraint_violation", violation)
            self.study.tell(trial, [float(metrics[m]) for m in self.metrics])


def _constraints_from_user_attr(trial: Any) -> list[float]:
    """``constraints_func`` for Optuna < 5: the violation stored before ``tell``."""
    return [float(trial.user_attrs.get("constraint_violation", 0.0))]


class SyneTuneMethod(PeerMethod):
    """Syne Tune's ``MultiObjectiveRegularizedEvolution`` searcher, driven directly (minimises
    every metric it is told, so maximised objectives are negated)."""

    def __init__(
        self,
        peer: str,
        objectives: Sequence[tuple[str, str]],
        *,
        seed: int,
        population: int = 10,
        sample_size: int = 3,
        **kw: Any,
    ) -> None:
        from syne_tune.config_space import choice
        from syne_tune.optimizer.schedulers.multiobjective import (
            MultiObjectiveRegularizedEvolution,
        )

        super().__init__(objectives, **kw)
        if len(self.metrics) < 2 or self.constraint is not None:
            raise ValueError(f"{peer} runs multi-objective, unconstrained searches only")
        # Its random initial population draws from the global np.random (its random_seed
        # reaches only mutation and tournaments): seed the global generator so runs repeat.
        np.random.seed(seed)
        priority = _rank_priority() if peer == "synetune-morea-rankfix" else None
        self.searcher = MultiObjectiveRegularizedEvolution(
            {name: choice(list(OPS)) for name in PARAM_NAMES},
            population_size=population,
            sample_size=sample_size,
            multiobjective_priority=priority,
            random_seed=seed,
        )
        self._tid = 0

    def _ask(self) -> tuple[list[str], Any]:
        config = self.searcher.suggest()
        self._tid += 1
        return [str(config[name]) for name in PARAM_NAMES], (self._tid, config)

    def _tell(self, handle: Any, metrics: dict[str, Any] | None) -> None:
        tid, config = handle
        if metrics is None:
            self.searcher.on_trial_error(tid)
            return
        signs = [-1.0 if g == "maximize" else 1.0 for g in self.goals]
        values = [s * float(metrics[m]) for s, m in zip(signs, self.metrics, strict=True)]
        self.searcher.on_trial_complete(tid, config, values)


def _rank_priority() -> Any:
    """A ``MOPriority`` that gives each member its rank in the non-dominated sort."""
    from syne_tune.optimizer.schedulers.multiobjective.multiobjective_priority import (
        NonDominatedPriority,
    )

    class RankPriority(NonDominatedPriority):
        def priority_unsafe(self, objectives: np.ndarray) -> np.ndarray:
            order = np.asarray(super().priority_unsafe(objectives), dtype=int)
            ranks = np.empty(len(order), dtype=int)
            ranks[order] = np.arange(len(order))
            return ranks

    return RankPriority()


def make_peer(
    name: str,
    objectives: Sequence[tuple[str, str]],
    *,
    seed: int,
    budget: int,
    length: int,
    constraint: tuple[str, float] | None = None,
    repeat_rule: RepeatRule = "pay",
    hparams_base: dict[str, Any] | None = None,
) -> PeerMethod:
    """The peer method ``name`` for one run."""
    kw = {
        "budget": budget,
        "length": length,
        "constraint": constraint,
        "repeat_rule": repeat_rule,
        "hparams_base": hparams_base,
    }
    if name in OPTUNA_PEERS:
        return OptunaMethod(name, objectives, seed=seed, **kw)
    if name in SYNETUNE_PEERS:
        return SyneTuneMethod(name, objectives, seed=seed, **kw)
    raise ValueError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")


__all__ = [
    "DEFAULT_PEERS",
    "MO_ONLY_PEERS",
    "OPTUNA_PEERS",
    "PEERS",
    "SYNETUNE_PEERS",
    "OptunaMethod",
    "PeerMethod",
    "SyneTuneMethod",
    "make_peer",
    "make_sampler",
    "peer_unavailable",
]
