"""The filter chain in front of every strategy (NNI-style middleware).

``CandidateFilter.propose(strategy)`` asks the strategy until a proposal passes, in order:

1. validity — ``space.validate`` (an ``ArchitectureError`` is a rejection, not a crash);
2. dedupe — the canonical key was never proposed before (a duplicate never trains twice).
   The key names the network the space builds, so two candidates share it only when their
   costs cannot differ: a pruned NB201 cell keys on its function (key-equal cells build the
   same ops), while the NB201 table's figures are of full cells (``prune: false``), whose key
   is the cell string itself, i.e. the table row (``cost_source`` makes table costs and the
   space agree);
3. hard constraints on predicted/cached cost — a ``cost_predictor`` (any object with
   ``predict(arch) -> float``, e.g. ``hwnas.latency.predictor.LatencyPredictor``; ``CachedLatency``
   puts the latency cache's measured figures in front of it) gives the cost metric's value
   before anything trains; a candidate whose cost breaks a constraint on that metric is
   dropped. No figure (None or NaN) means no rejection, unless the predictor's figure *is* the
   metric (``cost_is_objective``): then a candidate without one cannot be scored and is
   dropped as ``unpriced``.

One cost, one meaning (``cost_source``): a predictor must predict what the search reports
under the cost metric's name. It says what it predicts (``LatencyPredictor.target``); a config
whose predictor was made for another device, backend, batch, input or network than the one
measured is refused with one ``ConfigError`` naming ``latency.predictor`` and what differs.
With ``latency.enabled: false`` nothing is measured and the predictor's figure is the metric
(e.g. ``table:pixel2``: the phone's latency of the table's network), so only the network and
input must match what the search trains.

Retries are bounded: after ``max_consecutive_rejections`` rejections in a row ``propose``
returns None, and the search method ends the search gracefully instead of spinning (e.g. a
small space whose every architecture was tried, or a constraint nothing satisfies).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from hwnas.contract import DATASET_SHAPES
from hwnas.searchers.objectives import Objectives
from hwnas.searchers.strategies.base import Strategy
from hwnas.spaces.base import ArchitectureError, SearchSpace

if TYPE_CHECKING:
    from hwnas.searchers.config import SearchConfig


class CostPredictor(Protocol):
    """Anything with ``predict(arch)``: a cost in the cost metric's units (None: unknown)."""

    def predict(self, arch: str) -> float | None: ...


def load_cost_predictor(spec: str | None) -> CostPredictor | None:
    """The latency engineer's predictor for ``spec`` (a saved JSON path or ``table:<device>``).

    Imported lazily: ``searchers`` depends on ``latency`` only for this pre-filter.
    """
    if not spec:
        return None
    from hwnas.latency.predictor import LatencyPredictor
    from hwnas.searchers.config import ConfigError

    try:
        return LatencyPredictor.load(spec)
    except Exception as exc:  # any failure to load is a config problem, named as such
        raise ConfigError(f"latency.predictor: cannot load {spec!r}: {exc}") from exc


@dataclass(frozen=True)
class CostSource:
    """Who gives the cost metric before and after training, and what it means.

    ``predictor``: the pre-filter's figures (None: no pre-filter). ``objective``: the
    predictor's figure is the metric itself (nothing measures it; the method files it with
    each result). ``label``: the predictor's spec, for the records (``latency_backend``).
    """

    predictor: CostPredictor | None = None
    objective: bool = False
    label: str = ""


def search_target(config: SearchConfig) -> dict[str, Any]:
    """What the search's trials build and measure: the network (space with its full options,
    input shape) and, when latency is measured, the backend, batch and threads."""
    from hwnas.spaces import get_space

    space = get_space(config.space.name, **config.space.options)
    out: dict[str, Any] = {"space": space.name, "space_options": space.space_options()}
    data = config.data
    if data.dataset in DATASET_SHAPES:
        out["input_shape"] = list(DATASET_SHAPES[data.dataset][0])
    elif data.dataset == "imagefolder":  # RGB crops of image_size (trials.data.FolderData)
        out["input_shape"] = [3, data.image_size, data.image_size]
    if config.latency.enabled:
        lat = config.latency
        out.update(backend=lat.backend, batch=lat.batch, threads=lat.threads)
    return out


#: The network's part of a target: what the trials train, whatever measures the cost.
NETWORK_KEYS = ("space", "space_options", "input_shape")


def _where(target: Mapping[str, Any]) -> str:
    if "table_device" in target:
        return f"{target['table_device']} (NB201 table column)"
    if "backend" in target:
        return f"backend {target['backend']}"
    return "an unknown device"


def _shown(key: str, value: Any) -> str:
    if key == "input_shape":
        return "x".join(str(d) for d in value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_shown(k, v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"  # as the YAML config writes it
    return str(value)


#: Every compared field of a target, beside where its figure comes from (``_where``).
TARGET_KEYS = ("table", "batch", "threads", "precision", *NETWORK_KEYS)


def target_differences(
    predicted: Mapping[str, Any], measured: Mapping[str, Any], keys: tuple[str, ...] = TARGET_KEYS
) -> list[str]:
    """What differs between two targets, as ``"<field> <predicted> vs <measured>"`` phrases.

    Only fields both name are compared: a field one side does not know cannot be checked.
    """
    out: list[str] = []
    for key in keys:
        if key in predicted and key in measured and predicted[key] != measured[key]:
            p, m = _shown(key, predicted[key]), _shown(key, measured[key])
            out.append(f"{key} {p} vs {m}")
    return out


def cost_source(
    config: SearchConfig,
    *,
    cost_predictor: CostPredictor | None = None,
    measured: Mapping[str, Any] | None = None,
) -> CostSource:
    """The search's cost source; ``ConfigError`` when ``latency.predictor`` predicts something
    else than what the search reports as the cost metric (see the module docstring).

    ``measured`` describes what reports the metric when the trials do not measure it
    themselves (the tabular backend: a table column); None means the trials, as configured.
    An injected ``cost_predictor`` (tests, callers with their own model) is taken as is.
    """
    from hwnas.searchers.config import ConfigError

    spec = config.latency.predictor
    objective = measured is None and not config.latency.enabled
    if cost_predictor is not None:
        return CostSource(cost_predictor, objective and spec is None, spec or "")
    if not spec:
        return CostSource()
    predictor = load_cost_predictor(spec)
    target = dict(getattr(predictor, "target", {}))
    mine = search_target(config) if measured is None else {**search_target(config), **measured}
    # The predictor's figure as the objective: only its network must be the one trained.
    diffs = target_differences(target, mine, NETWORK_KEYS if objective else TARGET_KEYS)
    elsewhere = not objective and _where(target) != _where(mine)
    if not diffs and not elsewhere:
        return CostSource(predictor, objective, spec)
    table = "table_device" in target
    if objective:
        problem = "gives latency_ms of another network than the search trains"
        hint = "fit a predictor for this network (hwnas latency profile) or change space/data"
        if table:
            hint = (
                "the table's figures are of nb201 {C: 16, N: 5, prune: false} at 3x32x32 "
                "(space.options and a CIFAR dataset)"
            )
    else:
        problem = f"predicts {_where(target)}, but latency_ms comes from {_where(mine)}"
        hint = "fit a predictor for this backend and network with `hwnas latency profile`"
        if table and measured is None:
            hint = (
                "to search on the table's device instead, set latency.enabled: false (then "
                "nothing is measured and latency_ms is the table's figure)"
            )
    problem += f": {'; '.join(diffs)}" if diffs else ""
    raise ConfigError(f"latency.predictor: {spec!r} {problem}; {hint}")


class CachedLatency:
    """Cost from the latency cache's measured figure when there is one, else ``fallback``.

    Uses ``hwnas.latency.measure.cached_latency``, which never measures; any failure to read the
    cache (missing file, no device facts in this process) counts as a miss, since the
    pre-filter is best effort and must never stop a search.
    """

    def __init__(
        self,
        space: SearchSpace,
        cache_path: str,
        *,
        backend: str,
        batch: int,
        threads: int,
        input_shape: tuple[int, int, int],
        num_classes: int,
        fallback: CostPredictor | None = None,
    ) -> None:
        self.space = space
        self.cache_path = cache_path
        # Settings, not a MeasurementTarget yet: one that fails validation must be a miss at
        # predict time, like any other cache problem, not an error here.
        self.target_settings = {
            "backend": backend,
            "batch": batch,
            "threads": threads,
            "input_shape": input_shape,
            "num_classes": num_classes,
        }
        self.fallback = fallback
        self.hits = 0

    def predict(self, arch: str) -> float | None:
        try:
            from hwnas.latency.measure import cached_latency
            from hwnas.latency.target import MeasurementTarget

            target = MeasurementTarget(**self.target_settings)
            hit = cached_latency(self.space, arch, target, cache_path=self.cache_path)
        except Exception:  # best effort: a cache we cannot read is a miss
            hit = None
        if hit is not None:
            self.hits += 1
            return float(hit.median_ms)
        return None if self.fallback is None else float(self.fallback.predict(arch))


#: What ``CandidateFilter.counts`` counts: proposals, and what became of them.
COUNTS = ("proposed", "accepted", "invalid", "duplicate", "constraint", "unpriced")


class CandidateFilter:
    """Validity, dedupe and constraint pre-filter with rejection accounting."""

    def __init__(
        self,
        space: SearchSpace,
        objectives: Objectives,
        cost_predictor: CostPredictor | None = None,
        cost_metric: str = "latency_ms",
        max_consecutive_rejections: int = 1000,
        *,
        cost_is_objective: bool = False,
    ) -> None:
        self.space = space
        self.objectives = objectives
        self.cost_predictor = cost_predictor
        self.cost_metric = cost_metric
        self.cost_is_objective = cost_is_objective and cost_predictor is not None
        self.max_consecutive_rejections = max_consecutive_rejections
        self.cost_constraints = tuple(c for c in objectives.constraints if c.metric == cost_metric)
        self.seen: set[str] = set()
        self.counts = dict.fromkeys(COUNTS, 0)
        self.consecutive_rejections = 0

    def key(self, arch: str) -> str:
        """The dedupe key: the space's canonical key (see the module docstring)."""
        return self.space.canonical_key(arch)

    def predicted_cost(self, arch: str) -> float | None:
        """The predictor's value for ``arch`` (None without a predictor or a finite figure)."""
        if self.cost_predictor is None:
            return None
        cost = self.cost_predictor.predict(arch)
        return None if cost is None or not math.isfinite(float(cost)) else float(cost)

    def check(self, arch: str) -> tuple[str | None, str, float | None]:
        """``(normalised arch or None, reason, predicted cost)`` for one proposal."""
        try:
            arch = self.space.validate(arch)
        except ArchitectureError:
            return None, "invalid", None
        if self.key(arch) in self.seen:
            return None, "duplicate", None
        cost = None
        if self.cost_constraints or self.cost_is_objective:
            cost = self.predicted_cost(arch)
            if cost is None and self.cost_is_objective:
                return None, "unpriced", None
            if cost is not None and not all(c.satisfied(cost) for c in self.cost_constraints):
                return None, "constraint", cost
        return arch, "accepted", cost

    def propose(self, strategy: Strategy) -> tuple[str, float | None] | None:
        """The next accepted proposal and its predicted cost, or None when retries ran out."""
        while self.consecutive_rejections < self.max_consecutive_rejections:
            self.counts["proposed"] += 1
            arch, reason, cost = self.check(strategy.ask())
            self.counts[reason] += 1
            if arch is not None:
                self.seen.add(self.key(arch))
                self.consecutive_rejections = 0
                return arch, cost
            self.consecutive_rejections += 1
        return None

    def state_dict(self) -> dict[str, Any]:
        """Counters only: ``seen`` is the canonical keys of the trials and warm-start results,
        which the search method restores from its records."""
        return {
            "counts": dict(self.counts),
            "consecutive_rejections": self.consecutive_rejections,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.counts = {
            **dict.fromkeys(COUNTS, 0),
            **{k: int(v) for k, v in state["counts"].items()},
        }
        self.consecutive_rejections = int(state["consecutive_rejections"])


__all__ = [
    "COUNTS",
    "CachedLatency",
    "CandidateFilter",
    "CostPredictor",
    "CostSource",
    "cost_source",
    "load_cost_predictor",
    "search_target",
    "target_differences",
]
