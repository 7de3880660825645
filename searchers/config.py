"""The search configuration: pydantic models, validated once at the edge.

``load_config(path)`` reads YAML with ``yaml.safe_load`` and raises one ``ConfigError`` whose
message names the file, the dotted field path and the bad value. Every model forbids unknown
keys, so a typo'd key fails before any trial starts. Beyond types, ``SearchConfig`` checks that
metric names are known (``hwnas.searchers.metrics``), constraints can be met at all, strategy
options match the strategy's own options model, and single-objective strategies get a
scalarisation when there are several objectives.

Example (every section but ``space`` is optional; defaults are the models' field defaults)::

    name: nb201-digits-demo
    seed: 0
    space: {name: nb201, options: {C: 8, N: 1}}
    data: {dataset: digits, val_fraction: 0.2}        # forwarded to trials
    training: {batch_size: 64, lr: 0.05}              # forwarded; max_epochs := max_length
    latency: {backend: ort-cpu, batch: 1, threads: 1, predictor: null, cache: null}
    objectives:
      - {metric: validation_accuracy, goal: maximize}
      - {metric: latency_ms, goal: minimize}
    constraints: ["latency_ms <= 5"]                  # METRIC <=|>=|<|> NUMBER, nothing else
    scalarization: null      # or {kind: mnasnet, metric: validation_accuracy,
                             #     cost: latency_ms, target: 5.0, w: -0.07}
    strategy: {name: nsga2, options: {population: 20}}
    early_stopping: {name: mo-asha, min_length: 1, max_length: 9, reduction_factor: 3}
    budget: {max_trials: 30, max_concurrent: 2}
    reference_point: {validation_accuracy: 0.0, latency_ms: 50.0}
    runner: {trial_timeout_s: null, devices: auto}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hwnas.searchers.metrics import KNOWN_METRICS, NUMERIC_METRICS
from hwnas.searchers.objectives import (
    Objective,
    Objectives,
    Scalarization,
    parse_constraint,
)


class ConfigError(ValueError):
    """The search config is invalid; the message names file, field and value."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpaceConfig(_Model):
    """Which search space, with its constructor options (e.g. ``{C: 8, N: 1}``)."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class DataConfig(_Model):
    """Forwarded to the trial as ``hparams["data"]`` (mirrors ``hwnas.trials.hparams.DataSettings``;
    ``tests/test_config.py`` checks the two agree)."""

    dataset: Literal["digits", "cifar10", "cifar100", "imagefolder"] = "digits"
    root: str | None = None
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    download: bool = False
    num_workers: int = Field(0, ge=0)
    #: Side of the square crop for ``imagefolder`` data (other datasets have a fixed size).
    image_size: int = Field(224, ge=8)
    #: Use only the first N training images after the split (quick runs and benchmarks).
    train_subset: int | None = Field(None, ge=1)


class TrainingConfig(_Model):
    """Forwarded to the trial as ``hparams["training"]`` (mirrors
    ``hwnas.trials.hparams.TrainingSettings``); ``max_epochs`` comes from
    ``early_stopping.max_length`` (so it is not a field here)."""

    batch_size: int = Field(64, ge=2)
    lr: float = Field(0.05, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    #: Max gradient norm; None or 0 disables clipping.
    grad_clip: float | None = Field(5.0, ge=0.0)
    amp: Literal["off", "bf16", "fp16"] = "off"
    channels_last: bool = False
    compile: bool = False
    #: torch intra-op threads for CPU training (None: torch's default, one per core).
    cpu_threads: int | None = Field(None, ge=1)
    #: Batch-size multiplier for evaluation (no gradients, so more fits).
    eval_batch_factor: int = Field(4, ge=1)


class LatencyConfig(_Model):
    """Latency measurement (forwarded to trials) and the searcher-side cost predictor.

    ``predictor`` is only used by the searcher's constraint pre-filter: a path to a saved
    ``hwnas.latency.predictor.LatencyPredictor``, or ``table:<device>`` for NB201 table latencies.
    """

    enabled: bool = True
    backend: str = "ort-cpu"
    batch: int = Field(1, ge=1)
    threads: int = Field(1, ge=1)
    predictor: str | None = None
    cache: str | None = None


class ObjectiveConfig(_Model):
    metric: str
    goal: Literal["maximize", "minimize"]


class ScalarizationConfig(_Model):
    """MnasNet reward ``metric * (cost / target) ** w`` for single-objective strategies."""

    kind: Literal["mnasnet"] = "mnasnet"
    metric: str = "validation_accuracy"
    cost: str = "latency_ms"
    target: float = Field(gt=0.0)
    w: float = -0.07


class StrategyConfig(_Model):
    name: str = "random"
    options: dict[str, Any] = Field(default_factory=dict)


class EarlyStoppingConfig(_Model):
    """ASHA settings; rungs at ``min_length * reduction_factor**k`` up to ``max_length``.

    ``name: none`` trains every trial straight to ``max_length``.
    """

    name: Literal["asha", "mo-asha", "none"] = "mo-asha"
    min_length: int = Field(1, ge=1)
    max_length: int = Field(9, ge=1)
    reduction_factor: int = Field(3, ge=2)


class BudgetConfig(_Model):
    """How much to try: trials in total and at once, and how long to keep going on rejects."""

    max_trials: int = Field(30, ge=1)
    max_concurrent: int = Field(2, ge=1)
    #: Consecutive proposals the filters may reject before the search ends (no spinning).
    max_consecutive_rejections: int = Field(1000, ge=1)
    #: Trials failing in a row (errored or invalid, no success between) that end the search
    #: with ``Shutdown(failure=True)``: a broken environment should not burn the budget.
    #: ``null`` never gives up.
    max_consecutive_failures: int | None = Field(20, ge=1)


class RunnerConfig(_Model):
    """Settings for the local runner (ignored by the Determined adapter)."""

    trial_timeout_s: float | None = Field(None, gt=0.0)
    devices: Literal["auto", "cpu"] | list[int] = "auto"


class SearchConfig(_Model):
    """A whole search (see ``experiment_yamls/`` for examples)."""

    name: str = "hwnas-search"
    seed: int = Field(0, ge=0)
    space: SpaceConfig
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    objectives: list[ObjectiveConfig] = Field(
        default_factory=lambda: [ObjectiveConfig(metric="validation_accuracy", goal="maximize")],
        min_length=1,
    )
    constraints: list[str] = Field(default_factory=list)
    scalarization: ScalarizationConfig | None = None
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    reference_point: dict[str, float] | None = None
    runner: RunnerConfig = Field(default_factory=RunnerConfig)

    # -- derived -------------------------------------------------------------------------
    def to_objectives(self) -> Objectives:
        """The objectives/constraints/scalarisation object strategies and Pareto code use."""
        s = self.scalarization
        return Objectives(
            tuple(Objective(o.metric, o.goal) for o in self.objectives),
            tuple(parse_constraint(c) for c in self.constraints),
            None if s is None else Scalarization(s.metric, s.cost, s.target, s.w, s.kind),
            dict(self.reference_point or {}),
        )

    def trial_hparams_base(self) -> dict[str, Any]:
        """The hparams every trial shares (``data``, ``training`` with ``max_epochs``,
        ``latency``), before the space's arch fields and the per-trial seed are merged in."""
        training = self.training.model_dump(mode="json")
        training["max_epochs"] = self.early_stopping.max_length
        latency = self.latency.model_dump(mode="json")
        latency.pop("predictor")  # searcher-side only
        return {
            "data": self.data.model_dump(mode="json"),
            "training": training,
            "latency": latency,
        }


# -- loading and semantic checks ---------------------------------------------------------
def parse_config(raw: Any, source: str = "<config>") -> SearchConfig:
    """Validate a parsed YAML/JSON mapping; ``ConfigError`` names source, field and value."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: the config must be a mapping, got {type(raw).__name__}")
    try:
        cfg = SearchConfig.model_validate(dict(raw))
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(source, exc)) from None
    _check_semantics(cfg, source)
    return cfg


def load_config(path: str | Path) -> SearchConfig:
    """Read and validate the YAML config at ``path`` (``yaml.safe_load``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from None
    return parse_config(raw, str(p))


def _format_validation_error(source: str, exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        field = prefix + ".".join(str(part) for part in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
            if field == "training.max_epochs":
                msg = "not settable here: trials train up to early_stopping.max_length"
        value = err.get("input")
        lines.append(f"{source}: {field or '<root>'}: {msg} (got {_short(value)})")
    return "\n".join(lines)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fail(source: str, field: str, message: str, value: Any) -> ConfigError:
    return ConfigError(f"{source}: {field}: {message} (got {_short(value)})")


def _check_metric(source: str, field: str, name: str) -> None:
    if name not in KNOWN_METRICS:
        raise _fail(source, field, f"unknown metric; known: {', '.join(NUMERIC_METRICS)}", name)
    if not KNOWN_METRICS[name].numeric:
        raise _fail(source, field, "metric is not numeric", name)


def _check_semantics(cfg: SearchConfig, source: str) -> None:
    """Checks across fields that types alone cannot express."""
    from hwnas.registry import UnknownNameError
    from hwnas.searchers.strategies.base import STRATEGIES
    from hwnas.spaces import space_names

    if cfg.space.name not in space_names():
        raise _fail(
            source,
            "space.name",
            f"unknown space; known: {', '.join(space_names())}",
            cfg.space.name,
        )

    seen: set[str] = set()
    for i, o in enumerate(cfg.objectives):
        _check_metric(source, f"objectives.{i}.metric", o.metric)
        if o.metric in seen:
            raise _fail(source, f"objectives.{i}.metric", "duplicate objective", o.metric)
        seen.add(o.metric)

    for i, text in enumerate(cfg.constraints):
        field = f"constraints.{i}"
        try:
            c = parse_constraint(text)
        except ValueError as exc:
            raise _fail(source, field, str(exc), text) from None
        _check_metric(source, field, c.metric)
        spec = KNOWN_METRICS[c.metric]
        if not c.admits_range(spec.lower, spec.upper):
            raise _fail(
                source,
                field,
                f"impossible constraint: {c.metric} takes values in "
                f"[{spec.lower:g}, {spec.upper:g}]",
                text,
            )

    es = cfg.early_stopping
    if es.max_length < es.min_length:
        raise _fail(
            source,
            "early_stopping.max_length",
            f"must be >= min_length ({es.min_length})",
            es.max_length,
        )

    if cfg.scalarization is not None:
        _check_metric(source, "scalarization.metric", cfg.scalarization.metric)
        _check_metric(source, "scalarization.cost", cfg.scalarization.cost)

    for name, value in (cfg.reference_point or {}).items():
        if name not in seen:
            raise _fail(
                source,
                f"reference_point.{name}",
                f"not an objective; objectives: {', '.join(seen)}",
                name,
            )
        if not math.isfinite(value):
            raise _fail(source, f"reference_point.{name}", "must be finite", value)

    try:
        cls = STRATEGIES.get(cfg.strategy.name)
    except UnknownNameError as exc:
        raise _fail(source, "strategy.name", str(exc), cfg.strategy.name) from None
    try:
        cls.Options(**cfg.strategy.options)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(source, exc, "strategy.options.")) from None
    except TypeError as exc:
        raise _fail(source, "strategy.options", str(exc), cfg.strategy.options) from None
    if not cls.multi_objective and len(cfg.objectives) > 1 and cfg.scalarization is None:
        raise _fail(
            source,
            "scalarization",
            f"strategy {cfg.strategy.name!r} is single-objective and there are "
            f"{len(cfg.objectives)} objectives: set a scalarization (e.g. kind: mnasnet) "
            "or use a multi-objective strategy (nsga2, predictor, random)",
            None,
        )


__all__ = [
    "BudgetConfig",
    "ConfigError",
    "DataConfig",
    "EarlyStoppingConfig",
    "LatencyConfig",
    "ObjectiveConfig",
    "RunnerConfig",
    "ScalarizationConfig",
    "SearchConfig",
    "SpaceConfig",
    "StrategyConfig",
    "TrainingConfig",
    "load_config",
    "parse_config",
]
