"""Build the Determined experiment configs hwnas submits.

The user keeps the trials' Determined settings (image, resources, checkpoint storage,
entrypoint, ``max_restarts``) in a YAML file; the hwnas search config decides the rest, so the
two cannot disagree:

* ``build_trial_experiment``: the custom searcher's one multi-trial experiment (``searcher:
  custom``, metric = the first objective, direction from its goal, unit = epochs, the shared
  hyperparameters shown in the web UI);
* ``build_run_experiment``: the SDK backend's experiment for one run of one trial
  (``searcher: single``, the trial's complete hparams plus ``target_length``, labels naming the
  search, the trial and the run, so a restarted driver finds it again).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from hwnas.driver.determined.warm_start import sweep_label
from hwnas.searchers.config import SearchConfig

#: Keys of Determined 0.37's custom searcher config (schemas/expconf/v0/searcher-custom.json).
CUSTOM_SEARCHER_KEYS = ("name", "metric", "smaller_is_better", "unit")


class ExperimentConfigError(ValueError):
    """A Determined experiment YAML is unusable; the message names file, field and value."""


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """``yaml.safe_load`` a file that must hold a mapping."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ExperimentConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ExperimentConfigError(f"{p}: invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ExperimentConfigError(f"{p}: must be a mapping, got {type(raw).__name__}")
    return raw


def custom_searcher_section(search: SearchConfig) -> dict[str, Any]:
    """``searcher: {name: custom, ...}`` for the trials: the first objective is the metric
    Determined sorts and keeps checkpoints by; lengths are epochs (the trial contract)."""
    first = search.objectives[0]
    return {
        "name": "custom",
        "metric": first.metric,
        "smaller_is_better": first.goal == "minimize",
        "unit": "epochs",
    }


def _as_hyperparameters(value: Any) -> Any:
    """JSON as Determined hyperparameter constants: maps nest, lists become ``type: const``
    (a bare list is not a hyperparameter) and ``None`` leaves are dropped (no null const)."""
    if isinstance(value, dict):
        return {k: _as_hyperparameters(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return {"type": "const", "val": list(value)}
    return value


def exact_hyperparameters(hparams: dict[str, Any]) -> dict[str, Any]:
    """``hyperparameters`` from which the master hands a trial exactly ``hparams``.

    The master reads a map without a ``type`` key as nested hyperparameters and any other
    value as a constant (``master/pkg/schemas/expconf/hyperparameters_config.go``
    ``HyperparameterV0.UnmarshalJSON``), then samples a constant as its value and a nested
    map key by key (``master/pkg/searcher/hyperparameters.go`` ``sampleOne``). So maps nest,
    except a map holding a ``type`` key, which is wrapped in ``{type: const, val: ...}`` like
    every list (explicit, and what the 0.37 schema documents); ``None`` stays a ``null``
    constant, so a trial receives the same value the method put there, not its default."""

    def encode(value: Any) -> Any:
        if isinstance(value, dict):
            if "type" in value:
                return {"type": "const", "val": value}
            return {k: encode(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return {"type": "const", "val": list(value)}
        return value

    return {k: encode(v) for k, v in hparams.items()}


def shared_hyperparameters(search: SearchConfig) -> dict[str, Any]:
    """Constant hyperparameters every trial shares (display only: each ``Create`` carries the
    complete hparams dict, including ``arch`` and ``seed``)."""
    base = search.trial_hparams_base()
    base["space"] = search.space.name
    base["space_options"] = dict(search.space.options)
    return _as_hyperparameters(base)


def build_trial_experiment(
    trial_config: dict[str, Any], search: SearchConfig, *, source: str = "<trial experiment>"
) -> dict[str, Any]:
    """The experiment config for ``client.create_experiment``: the user's trial settings plus
    the custom searcher section and shared hyperparameters derived from ``search``."""
    config = copy.deepcopy(trial_config)
    if not config.get("entrypoint"):
        raise ExperimentConfigError(
            f"{source}: entrypoint: missing; the trials run `python3 -m hwnas.trials.train`"
        )
    given = config.get("searcher") or {}
    if not isinstance(given, dict):
        raise ExperimentConfigError(f"{source}: searcher: must be a mapping (got {given!r})")
    if given.get("name", "custom") != "custom":
        raise ExperimentConfigError(
            f"{source}: searcher.name: must be 'custom' (hwnas drives the trials), "
            f"got {given.get('name')!r}"
        )
    unknown = sorted(set(given) - set(CUSTOM_SEARCHER_KEYS))
    if unknown:
        raise ExperimentConfigError(
            f"{source}: searcher: keys {unknown} are not in Determined's custom searcher "
            f"config (allowed: {', '.join(CUSTOM_SEARCHER_KEYS)})"
        )
    derived = custom_searcher_section(search)
    for key in ("metric", "smaller_is_better", "unit"):
        if key in given and given[key] != derived[key]:
            raise ExperimentConfigError(
                f"{source}: searcher.{key}: {given[key]!r} disagrees with the hwnas search "
                f"config ({derived[key]!r}); remove it, hwnas fills it in"
            )
    config["searcher"] = derived
    user_hparams = config.get("hyperparameters") or {}
    config["hyperparameters"] = {**shared_hyperparameters(search), **user_hparams}
    config.setdefault("name", f"{search.name}-trials")
    labels = list(config.get("labels") or [])
    for label in ("hwnas", sweep_label(search.name)):
        if label not in labels:
            labels.append(label)
    config["labels"] = labels
    return config


def search_label(search_id: str) -> str:
    """The label on every experiment of one SDK-backend search (runs and its progress)."""
    return f"hwnas-search:{search_id}"


def run_label(search_id: str, trial_id: int, length: int) -> str:
    """The label naming one run (trial ``trial_id`` trained to ``length``) of a search: how a
    restarted driver finds an experiment it created but did not record."""
    return f"hwnas-run:{search_id}:{trial_id}:{length}"


def run_experiment_name(search_name: str, trial_id: int, length: int) -> str:
    return f"{search_name} trial {trial_id} to {length} epochs"


def build_run_experiment(
    trial_config: dict[str, Any],
    search: SearchConfig,
    *,
    search_id: str,
    trial_id: int,
    length: int,
    hparams: dict[str, Any],
    source_trial_id: int | None = None,
    max_length: bool = False,
    source: str = "<trial experiment>",
) -> dict[str, Any]:
    """The ``searcher: single`` experiment that trains trial ``trial_id`` to ``length``.

    ``source_trial_id``: the Determined trial of this trial's previous run, whose latest
    checkpoint the new trial starts from (``searcher.source_trial_id``; the master hands it
    to the trial as ``latest_checkpoint``). ``max_length``: add ``searcher.max_length`` (0.37
    requires it; 0.38 deprecates it, the length is in the hparams either way)."""
    config = copy.deepcopy(trial_config)
    if not config.get("entrypoint"):
        raise ExperimentConfigError(
            f"{source}: entrypoint: missing; the trials run `python3 -m hwnas.trials.train`"
        )
    given = config.get("searcher")
    if given not in (None, {}):
        raise ExperimentConfigError(
            f"{source}: searcher: hwnas fills it in (searcher: single per run); remove it "
            f"(got {given!r})"
        )
    if config.get("hyperparameters"):
        raise ExperimentConfigError(
            f"{source}: hyperparameters: hwnas sets every trial's hyperparameters; remove them"
        )
    first = search.objectives[0]
    searcher: dict[str, Any] = {
        "name": "single",
        "metric": first.metric,
        "smaller_is_better": first.goal == "minimize",
    }
    if max_length:
        searcher["max_length"] = {"epochs": int(length)}
    if source_trial_id is not None:
        searcher["source_trial_id"] = int(source_trial_id)
    config["searcher"] = searcher
    config["hyperparameters"] = exact_hyperparameters({**hparams, "target_length": int(length)})
    config["name"] = run_experiment_name(search.name, trial_id, length)
    labels = [str(x) for x in config.get("labels") or []]
    for label in (
        "hwnas",
        sweep_label(search.name),
        search_label(search_id),
        run_label(search_id, trial_id, length),
    ):
        if "," in label:
            # GetExperiments splits its label filter on commas (api_experiment.go).
            raise ExperimentConfigError(f"label {label!r}: must not contain a comma")
        if label not in labels:
            labels.append(label)
    config["labels"] = labels
    return config


__all__ = [
    "CUSTOM_SEARCHER_KEYS",
    "ExperimentConfigError",
    "build_run_experiment",
    "build_trial_experiment",
    "custom_searcher_section",
    "exact_hyperparameters",
    "load_yaml_mapping",
    "run_experiment_name",
    "run_label",
    "search_label",
    "shared_hyperparameters",
]
