"""The search configuration: pydantic models, validated once at the edge.

``load_config(path)`` reads YAML with ``yaml.safe_load`` and raises one ``ConfigError`` whose
message names the file, the dotted field path and the bad value. Every model forbids unknown
keys, so a typo'd key fails before any trial starts. Beyond types, ``SearchConfig`` checks that
metric names are known (``hwnas.searchers.metrics``), the space accepts its options, constraints
can be met at all and together, the latency backend is a registered name, strategy options match
the strategy's own options model, and single-objective strategies get a scalarisation when there
are several objectives. Whether the backend and the dataset are usable on a given machine is
the driver's preflight (``hwnas.driver.preflight``).

Example (every section but ``space`` is optional; defaults are the models' field defaults)::

    name: nb201-digits-demo
    seed: 0
    space: {name: nb201, options: {C: 8, N: 1}}
    data: {dataset: digits, val_fraction: 0.2}        # forwarded to trials
    training: {batch_size: 64, lr: 0.05}              # forwarded; max_epochs := max_length
    latency: {backend: ort-cpu, batch: 1, threads: 1, predictor: null, cache: null}
                         # {enabled: false, predictor: table:pixel2}: latency_ms is the
                         # table's figure for its network (space.options.prune: false)
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
    runner: {trial_timeout_s: null, devices: auto, trial_command: null}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hwnas.contract import DataSettings, LatencySettings, TrainingSettings
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


class LatencyConfig(LatencySettings):
    """Latency measurement (the trial contract's section, forwarded to trials) and the
    searcher-side cost predictor.

    ``predictor``: a path to a saved ``latency.predictor.LatencyPredictor`` or
    ``table:<device>`` (a device column of the NB201 table). With ``enabled: true`` trials
    measure ``latency_ms`` and the predictor only pre-filters; it must predict that same
    measurement (backend, batch, input, space options), else the search refuses the config.
    With ``enabled: false`` nothing is measured: ``latency_ms`` is the predictor's figure,
    which the search files with each result (``searchers.filters.cost_source``).
    """

    predictor: str | None = None


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
    #: ``auto`` (``searchers/strategies/auto.py``) is the default: on the NB201 benchmark's
    #: full grid it is ahead of the best peer on 18 and tied on 36 of 54 cells, behind on
    #: none (README, "Strategy evaluation on NAS-Bench-201").
    name: str = "auto"
    options: dict[str, Any] = Field(default_factory=dict)


class EarlyStoppingConfig(BaseModel):
    """Which early stopper (``searchers.early_stopping.STOPPERS``) and the full training length.

    Every other key is the stopper's own option, validated against its options model (ASHA:
    ``min_length``, ``reduction_factor``); ``name: none`` trains every trial to ``max_length``.
    """

    model_config = ConfigDict(extra="allow")

    name: str = "mo-asha"
    max_length: int = Field(9, ge=1)

    def options(self) -> dict[str, Any]:
        """The stopper's own options (every key but ``name`` and ``max_length``)."""
        return dict(self.model_extra or {})


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
    """Settings for the local backend (ignored by the Determined adapter)."""

    trial_timeout_s: float | None = Field(None, gt=0.0)
    devices: Literal["auto", "cpu"] | list[int] = "auto"
    #: The command a trial runs instead of ``python -m hwnas.trials.local`` (a wrapper, a
    #: custom trainer speaking the same contract); ``--request REQ --result RES`` is appended.
    trial_command: list[str] | None = Field(None, min_length=1)
    #: One long-lived trial process per slot (``hwnas.driver.workers``), reused across runs:
    #: no process start, imports or dataset decoding per rung, and a promoted trial continues
    #: in memory. False: a fresh process per run (as ``trial_command`` always gets).
    warm_workers: bool = True


class SearchConfig(_Model):
    """A whole search (see ``experiment_yamls/`` for examples)."""

    name: str = "hwnas-search"
    seed: int = Field(0, ge=0)
    space: SpaceConfig
    data: DataSettings = Field(default_factory=DataSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
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


def field_error(source: str, field: str, message: str, value: Any) -> ConfigError:
    """The one-line error for ``field`` of the config in ``source``: file, field, why, value."""
    return ConfigError(f"{source}: {field}: {message} (got {_short(value)})")


_fail = field_error


def _check_metric(source: str, field: str, name: str) -> None:
    if name not in KNOWN_METRICS:
        raise _fail(source, field, f"unknown metric; known: {', '.join(NUMERIC_METRICS)}", name)
    if not KNOWN_METRICS[name].numeric:
        raise _fail(source, field, "metric is not numeric", name)


def _check_early_stopping(cfg: SearchConfig, source: str) -> None:
    """The stopper exists, its options fit its model, and they fit ``max_length``."""
    from hwnas.registry import UnknownNameError
    from hwnas.searchers.early_stopping import STOPPERS

    es = cfg.early_stopping
    try:
        cls = STOPPERS.get(es.name)
    except UnknownNameError as exc:
        raise _fail(source, "early_stopping.name", str(exc), es.name) from None
    unknown = sorted(set(es.options()) - set(cls.Options.model_fields))
    if unknown:
        known = ", ".join(cls.Options.model_fields) or "none"
        raise _fail(
            source,
            f"early_stopping.{unknown[0]}",
            f"not an option of early stopper {es.name!r} (its options: {known})",
            es.options()[unknown[0]],
        )
    try:
        cls(cfg.to_objectives(), es.max_length, **STOPPERS.fixed(es.name), **es.options())
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(source, exc, "early_stopping.")) from None
    except ValueError as exc:
        raise _fail(source, "early_stopping", str(exc), es.model_dump()) from None


def _check_constraints_together(cfg: SearchConfig, source: str) -> None:
    """No two constraints on one metric exclude each other (``x <= 1`` with ``x >= 2``)."""
    upper: dict[str, tuple[float, bool, int]] = {}  # metric -> (bound, strict, index)
    lower: dict[str, tuple[float, bool, int]] = {}
    for i, text in enumerate(cfg.constraints):
        c = parse_constraint(text)
        strict = c.op in ("<", ">")
        if c.op in ("<=", "<"):
            best = upper.get(c.metric)
            if best is None or c.bound < best[0] or (c.bound == best[0] and strict):
                upper[c.metric] = (c.bound, strict, i)
        else:
            best = lower.get(c.metric)
            if best is None or c.bound > best[0] or (c.bound == best[0] and strict):
                lower[c.metric] = (c.bound, strict, i)
        if c.metric in upper and c.metric in lower:
            (hi, hi_strict, hi_i), (lo, lo_strict, lo_i) = upper[c.metric], lower[c.metric]
            if lo > hi or (lo == hi and (lo_strict or hi_strict)):
                other = lo_i if i == hi_i else hi_i
                raise _fail(
                    source,
                    f"constraints.{i}",
                    f"contradicts constraints.{other} ({cfg.constraints[other]!r}): no "
                    f"{c.metric} meets both",
                    text,
                )


def _check_latency_backend(cfg: SearchConfig, source: str) -> None:
    """The latency backend is a registered name (whether it runs on this machine is the
    driver's preflight: a Determined search runs its trials elsewhere)."""
    if not cfg.latency.enabled:
        return
    from hwnas.latency.backends import backend_names  # a name lookup, loads no runtime

    if cfg.latency.backend not in backend_names():
        raise _fail(
            source,
            "latency.backend",
            f"unknown latency backend; known: {', '.join(backend_names())}",
            cfg.latency.backend,
        )


def _check_semantics(cfg: SearchConfig, source: str) -> None:
    """Checks across fields that types alone cannot express."""
    from hwnas.registry import UnknownNameError
    from hwnas.searchers.strategies.base import STRATEGIES
    from hwnas.spaces import ArchitectureError, get_space, space_names

    if cfg.space.name not in space_names():
        raise _fail(
            source,
            "space.name",
            f"unknown space; known: {', '.join(space_names())}",
            cfg.space.name,
        )
    try:
        get_space(cfg.space.name, **cfg.space.options)
    except (ArchitectureError, TypeError, ValueError) as exc:
        raise _fail(source, "space.options", str(exc), cfg.space.options) from None

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

    _check_constraints_together(cfg, source)
    _check_latency_backend(cfg, source)
    _check_early_stopping(cfg, source)

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
    "EarlyStoppingConfig",
    "LatencyConfig",
    "ObjectiveConfig",
    "RunnerConfig",
    "ScalarizationConfig",
    "SearchConfig",
    "SpaceConfig",
    "StrategyConfig",
    "field_error",
    "load_config",
    "parse_config",
]
