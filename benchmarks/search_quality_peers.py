"""Peers for the search-quality benchmark: Optuna samplers behind the search-method events.

``OptunaMethod`` turns an Optuna study (ask/tell) into the event handlers the driver loop
drives, so peers and hwnas strategies share one runner: the same query model, noise,
duplicate rule (a repeat is told the earlier result and costs no query) and budget.
An NB201 cell is six categorical parameters ``edge_<to>_<from>`` over the five ops.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from hwnas.searchers.operations import Create, ExitReason, Operation, ValidateAfter
from hwnas.spaces.nb201 import EDGES, OPS, format_arch

#: Peer name -> the Optuna sampler it runs (default settings, as a user would pick them).
PEERS = ("optuna-random", "optuna-tpe", "optuna-nsga2")


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler behind peer ``name``, seeded."""
    if name == "optuna-random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "optuna-tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "optuna-nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    raise ValueError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")


class OptunaMethod:
    """One trial at a time from an Optuna study, answered at ``length`` epochs.

    ``objectives`` are ``(metric, "maximize"|"minimize")`` pairs read from the trial's
    metrics. ``hparams_base`` is merged into every trial's hyperparameters.
    """

    def __init__(
        self,
        peer: str,
        objectives: list[tuple[str, str]],
        *,
        seed: int,
        length: int,
        hparams_base: dict[str, Any] | None = None,
    ) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():  # samplers flag some defaults as experimental
            warnings.simplefilter("ignore")
            self.study = optuna.create_study(
                sampler=make_sampler(peer, seed), directions=[g for _, g in objectives]
            )
        self.metrics = [m for m, _ in objectives]
        self.length = int(length)
        self.hparams_base = dict(hparams_base or {})
        self._trials: dict[int, optuna.trial.Trial] = {}
        self._next_id = 1

    def _create(self) -> list[Operation]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = self.study.ask()
            ops = [trial.suggest_categorical(f"edge_{to}_{src}", OPS) for to, src in EDGES]
        trial_id = self._next_id
        self._next_id += 1
        self._trials[trial_id] = trial
        hparams = {**self.hparams_base, "space": "nb201", "arch": format_arch(ops)}
        return [Create(trial_id, hparams), ValidateAfter(trial_id, self.length)]

    # -- the search-method events ----------------------------------------------------------
    def initial_operations(self) -> list[Operation]:
        return self._create()

    def on_trial_created(self, trial_id: int) -> list[Operation]:
        return []

    def on_validation_completed(
        self, trial_id: int, metrics: dict[str, Any], length: int
    ) -> list[Operation]:
        values = [float(metrics[m]) for m in self.metrics]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.study.tell(self._trials.pop(trial_id), values)
        return self._create()

    def on_trial_closed(self, trial_id: int) -> list[Operation]:
        return []

    def on_trial_exited_early(
        self, trial_id: int, reason: ExitReason, message: str = ""
    ) -> list[Operation]:
        self.study.tell(self._trials.pop(trial_id), state=optuna.trial.TrialState.FAIL)
        return self._create()


__all__ = ["PEERS", "OptunaMethod", "make_sampler"]
