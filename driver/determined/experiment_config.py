"""Build the multi-trial (``searcher: custom``) experiment config the searcher creates.

The user keeps the trial experiment's Determined settings (image, resources, checkpoint
storage, entrypoint) in a YAML file; the hwnas search config decides the rest, so the two
cannot disagree: the custom searcher section (metric = the first objective, direction from its
goal, unit = epochs), and the shared hyperparameters shown in the web UI.
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


__all__ = [
    "CUSTOM_SEARCHER_KEYS",
    "ExperimentConfigError",
    "build_trial_experiment",
    "custom_searcher_section",
    "load_yaml_mapping",
    "shared_hyperparameters",
]
