"""Multi-fidelity table backend: trials answered from recorded learning curves.

A *curve table* holds, for each architecture of one space, the metrics a real training reported
after every epoch (validation accuracy, loss, ...) plus metrics that do not change with training
(params, FLOPs, latency). ``CurveBackend`` answers the driver loop's ``ValidateAfter(length)``
with the curve's entry at epoch ``length``, so early stoppers (ASHA, MO-ASHA) run on real curves
at table speed. As on a real backend, a trial resumed by a promotion pays only the epochs it
adds (it continues from its checkpoint); the backend counts the epochs spent, and an epoch
budget makes equal-cost comparisons possible (``benchmarks/early_stopping_savings.py``; random
search restricted to the table is ``strategy: {name: random, options: {archs: table.archs}}``).
Time runs on a simulated clock with ``max_concurrent`` workers
(``hwnas.driver.tabular.SimulatedWorkers``), each epoch costing its recorded ``epoch_time_s``
(or one second).

A table may hold several curves (training seeds) per architecture; which one a search sees
depends only on ``(noise_seed, architecture)`` (common random numbers, as in the NB201 table
backend), so methods compared with one noise seed see the same curves.

File format (JSON; ``CurveTable.save`` / ``load_curve_table``)::

    {"format": "hwnas-curves", "version": 1, "space": "mobilenet", "space_options": {...},
     "max_epochs": 9, "settings": {...how the curves were made...},
     "rows": [{"arch": "...", "seed": 3, "metrics": {"params": 1.2e5, "flops": 3.4e6},
               "curve": [{"epoch": 1, "validation_accuracy": 0.71, ...}, ...]}, ...]}

``benchmarks/rank_fidelity.py`` writes such tables from real trainings on digits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.atomic import write_json_atomic
from hwnas.driver.backend import TrialBackend, TrialOutcome
from hwnas.driver.loop import MethodLike, SearchLoop
from hwnas.driver.tabular import SimulatedWorkers
from hwnas.spaces import ArchitectureError, SearchSpace, get_space

CURVE_FORMAT = "hwnas-curves"
CURVE_VERSION = 1


class CurveError(ValueError):
    """A curve table is malformed, or cannot answer what it was asked."""


@dataclass(frozen=True)
class CurveRow:
    """One training of one architecture: per-epoch metrics (epoch 1 first) and fixed ones."""

    arch: str
    seed: int
    metrics: dict[str, Any]
    curve: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "seed": self.seed,
            "metrics": self.metrics,
            "curve": [dict(c) for c in self.curve],
        }


class CurveTable:
    """Learning curves of one space's architectures, looked up by canonical key."""

    def __init__(
        self,
        space: str,
        space_options: Mapping[str, Any],
        rows: Iterable[CurveRow],
        *,
        max_epochs: int | None = None,
        settings: Mapping[str, Any] | None = None,
        source: str = "<curve table>",
    ) -> None:
        self.space_name = space
        self.space_options = dict(space_options)
        self.settings = dict(settings or {})
        self.source = source
        try:
            self.space: SearchSpace = get_space(space, **self.space_options)
        except (ArchitectureError, TypeError) as exc:
            raise CurveError(f"{source}: space {space!r} {self.space_options}: {exc}") from None
        self.rows: list[CurveRow] = list(rows)
        lengths = {len(r.curve) for r in self.rows}
        self.max_epochs = int(max_epochs if max_epochs is not None else min(lengths, default=0))
        if self.max_epochs < 1:
            raise CurveError(f"{source}: max_epochs must be >= 1 (got {self.max_epochs})")
        self._by_key: dict[str, list[int]] = {}
        for i, row in enumerate(self.rows):
            if len(row.curve) < self.max_epochs:
                raise CurveError(
                    f"{source}: rows[{i}] ({row.arch}) has {len(row.curve)} epochs, fewer than "
                    f"max_epochs={self.max_epochs}"
                )
            for e, point in enumerate(row.curve[: self.max_epochs], start=1):
                if point.get("epoch", e) != e:
                    raise CurveError(
                        f"{source}: rows[{i}].curve[{e - 1}].epoch is {point.get('epoch')!r}, "
                        f"expected {e}"
                    )
            try:
                key = self.space.canonical_key(self.space.validate(row.arch))
            except ArchitectureError as exc:
                raise CurveError(f"{source}: rows[{i}].arch {row.arch!r}: {exc}") from None
            self._by_key.setdefault(key, []).append(i)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "<curve table>") -> CurveTable:
        """Parse the file format (module docstring); ``CurveError`` names the bad field."""
        if not isinstance(data, Mapping) or data.get("format") != CURVE_FORMAT:
            raise CurveError(f"{source}: not a curve table (format must be {CURVE_FORMAT!r})")
        if data.get("version") != CURVE_VERSION:
            raise CurveError(
                f"{source}: curve table version {data.get('version')!r}; this hwnas reads "
                f"version {CURVE_VERSION}"
            )
        for name, kind in (("space", str), ("rows", list)):
            if not isinstance(data.get(name), kind):
                raise CurveError(f"{source}: field {name!r} must be a {kind.__name__}")
        rows = []
        for i, raw in enumerate(data["rows"]):
            if not isinstance(raw, Mapping) or not isinstance(raw.get("arch"), str):
                raise CurveError(f"{source}: rows[{i}] needs an 'arch' string")
            curve = raw.get("curve")
            if not isinstance(curve, list) or not all(isinstance(c, Mapping) for c in curve):
                raise CurveError(f"{source}: rows[{i}].curve must be a list of objects")
            rows.append(
                CurveRow(
                    raw["arch"],
                    int(raw.get("seed", 0)),
                    dict(raw.get("metrics") or {}),
                    tuple(dict(c) for c in curve),
                )
            )
        return cls(
            data["space"],
            data.get("space_options") or {},
            rows,
            max_epochs=data.get("max_epochs"),
            settings=data.get("settings"),
            source=source,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CURVE_FORMAT,
            "version": CURVE_VERSION,
            "space": self.space_name,
            "space_options": self.space_options,
            "max_epochs": self.max_epochs,
            "settings": self.settings,
            "rows": [r.to_json() for r in self.rows],
        }

    def save(self, path: str | Path) -> None:
        """Write the table (atomically)."""
        write_json_atomic(path, self.to_json(), indent=None, allow_nan=True)

    def with_metric(self, name: str, source: str) -> CurveTable:
        """A copy whose per-epoch ``name`` is the recorded ``source`` (e.g. report the
        running-statistics accuracy as ``validation_accuracy``)."""
        rows = []
        for row in self.rows:
            if any(source not in c for c in row.curve[: self.max_epochs]):
                raise CurveError(f"{self.source}: {row.arch}: no per-epoch metric {source!r}")
            curve = tuple({**c, name: c[source]} for c in row.curve)
            rows.append(CurveRow(row.arch, row.seed, row.metrics, curve))
        return CurveTable(
            self.space_name,
            self.space_options,
            rows,
            max_epochs=self.max_epochs,
            settings=self.settings,
            source=self.source,
        )

    # -- queries -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._by_key)

    @property
    def archs(self) -> list[str]:
        """One normalised architecture string per distinct architecture, in table order."""
        return [self.rows[rows[0]].arch for rows in self._by_key.values()]

    def rows_of(self, arch: str) -> list[CurveRow]:
        """Every curve of ``arch`` (any spelling the space accepts); ``ArchitectureError``
        when the table has none."""
        key = self.space.canonical_key(self.space.validate(arch))
        if key not in self._by_key:
            raise ArchitectureError(f"architecture {arch!r} is not in the curve table")
        return [self.rows[i] for i in self._by_key[key]]

    def row(self, arch: str, noise_seed: int) -> CurveRow:
        """The curve a search with ``noise_seed`` sees for ``arch`` (depends on nothing else)."""
        rows = self.rows_of(arch)
        if len(rows) == 1:
            return rows[0]
        key = self.space.canonical_key(self.space.validate(arch))
        digest = int(hashlib.sha256(key.encode()).hexdigest()[:15], 16)
        return rows[int(np.random.default_rng((int(noise_seed), digest)).integers(len(rows)))]

    def observe(self, row: CurveRow, length: int) -> dict[str, Any]:
        """The metrics a trial of ``row`` reports after ``length`` epochs."""
        if not 1 <= length <= self.max_epochs:
            raise CurveError(
                f"length {length} is outside the curve table's epochs 1..{self.max_epochs}"
            )
        return {**row.metrics, **row.curve[length - 1], "epochs": int(length)}

    def final(self, metric: str = "validation_accuracy") -> dict[str, float]:
        """Each architecture's ``metric`` at ``max_epochs``, averaged over its curves."""
        return {
            self.rows[rows[0]].arch: float(
                np.mean([self.rows[i].curve[self.max_epochs - 1][metric] for i in rows])
            )
            for rows in self._by_key.values()
        }


def load_curve_table(path: str | Path) -> CurveTable:
    """Read a curve table file; ``CurveError`` says what is wrong with it."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CurveError(f"{p}: cannot read curve table: {exc}") from None
    return CurveTable.from_json(data, str(p))


# -- the backend ------------------------------------------------------------------------------
@dataclass
class _Trial:
    row: CurveRow | None = None
    error: str | None = None
    trained: int = 0  # epochs trained so far (its checkpoint)


@dataclass
class CurveRun:
    """What a replay spent and saw: one entry per finished run, in finishing order."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    epochs: int = 0  # epochs trained in total (resumed runs pay only what they add)
    invalid: int = 0
    sim_time_s: float = 0.0
    reason: str = ""


class CurveBackend(TrialBackend):
    """Answers trials from a ``CurveTable`` on ``max_concurrent`` simulated workers.

    A run to ``length`` costs ``length - trained`` epochs (the trial resumes from its
    checkpoint). With ``max_epochs`` set, no run starts once that many epochs are committed
    (the last ones may overshoot by less than one run; ``result.epochs`` says what was spent).
    An architecture missing from the table fails its trial as ``invalid``, as a trial whose
    architecture cannot be built would.
    """

    def __init__(
        self,
        table: CurveTable,
        *,
        max_concurrent: int = 1,
        max_epochs: int | None = None,
        noise_seed: int = 0,
        epoch_seconds: float | None = None,
    ) -> None:
        """``epoch_seconds``: simulated time per epoch (None: each curve's ``epoch_time_s``,
        else one second)."""
        if max_epochs is not None and max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
        self.table = table
        self.max_epochs = max_epochs
        self.noise_seed = int(noise_seed)
        self.epoch_seconds = epoch_seconds
        self.workers = SimulatedWorkers(max_concurrent)
        self._trials: dict[int, _Trial] = {}
        self._busy: dict[int, int] = {}
        self.committed = 0
        self.result = CurveRun()

    @property
    def free_slots(self) -> int:
        return 0 if self.exhausted else self.workers.free

    @property
    def exhausted(self) -> bool:
        return self.max_epochs is not None and self.committed >= self.max_epochs

    def create(self, trial_id: int, hparams: Mapping[str, Any]) -> None:
        trial = _Trial()
        self._trials[trial_id] = trial
        space = str(hparams.get("space", self.table.space_name))
        if space != self.table.space_name:
            trial.error = f"the curve table holds space {self.table.space_name!r}, not {space!r}"
            return
        try:
            trial.row = self.table.row(
                self.table.space.from_hparams(dict(hparams)), self.noise_seed
            )
        except ArchitectureError as exc:
            trial.error = str(exc)

    def answer(self, trial_id: int, hparams: Mapping[str, Any], length: int) -> TrialOutcome | bool:
        trial = self._trials[trial_id]
        if trial.error is not None:  # fails as it starts, as a real trial would
            self.result.invalid += 1
            return TrialOutcome(trial_id, length, False, kind="invalid", message=trial.error)
        if length > self.table.max_epochs:
            raise CurveError(
                f"trial {trial_id} asked for {length} epochs; the curve table "
                f"{self.table.source} ends at {self.table.max_epochs}"
            )
        return False

    def start(self, trial_id: int, hparams: Mapping[str, Any], length: int) -> None:
        trial = self._trials[trial_id]
        assert trial.row is not None
        epochs = max(0, length - trial.trained)
        if self.epoch_seconds is not None:
            seconds = epochs * self.epoch_seconds
        else:
            seconds = sum(
                float(c.get("epoch_time_s", 1.0)) for c in trial.row.curve[trial.trained : length]
            )
        self.committed += epochs
        self._busy[trial_id] = length
        self.workers.start((trial_id, length, epochs), seconds)

    def wait(self, timeout_s: float) -> list[TrialOutcome]:
        if self.workers.busy == 0:
            return []
        start, finish, (trial_id, length, epochs) = self.workers.pop_next()
        trial = self._trials[trial_id]
        assert trial.row is not None
        del self._busy[trial_id]
        trial.trained = max(trial.trained, length)
        self.result.epochs += epochs
        metrics = self.table.observe(trial.row, length)
        self.result.runs.append(
            {
                "trial_id": trial_id,
                "arch": trial.row.arch,
                "length": length,
                "epochs": epochs,
                "start_s": start,
                "finish_s": finish,
            }
        )
        return [TrialOutcome(trial_id, length, True, metrics, seconds=finish - start)]

    def running(self) -> list[tuple[int, int]]:
        return list(self._busy.items())

    def elapsed_s(self) -> float:
        return self.workers.now


def run_on_curves(
    method: MethodLike,
    table: CurveTable,
    *,
    max_concurrent: int = 1,
    max_epochs: int | None = None,
    noise_seed: int = 0,
    epoch_seconds: float | None = None,
) -> CurveRun:
    """Run ``method`` (e.g. a ``SearchMethod``) over ``table`` until it shuts down, goes idle
    or the epoch budget is spent; what it spent and saw."""
    backend = CurveBackend(
        table,
        max_concurrent=max_concurrent,
        max_epochs=max_epochs,
        noise_seed=noise_seed,
        epoch_seconds=epoch_seconds,
    )
    loop = SearchLoop(method, backend)
    loop.start()
    backend.result.reason = loop.run()
    backend.result.sim_time_s = backend.workers.now
    return backend.result


__all__ = [
    "CURVE_FORMAT",
    "CURVE_VERSION",
    "CurveBackend",
    "CurveError",
    "CurveRow",
    "CurveRun",
    "CurveTable",
    "load_curve_table",
    "run_on_curves",
]
