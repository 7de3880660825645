"""Tabular runner: drive a search method over the NAS-Bench-201 table instead of training.

Each ``ValidateAfter`` is answered from the table (one training seed's validation accuracy,
the chosen device's measured latency, params) and costs the architecture's recorded training
time on a simulated clock with ``max_concurrent`` workers (Syne Tune's simulator backend:
the clock jumps to the earliest finishing trial). Only full-fidelity trials are answered:
the table holds 200-epoch results and no learning curves, so early stopping (ASHA) would need
an invented curve model; it is benchmarked with real trainings instead.

Test accuracy never reaches the search method; ``NB201Benchmark.test_accuracy`` serves the
evaluation after the run.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hwnas.searchers.config import SearchConfig
from hwnas.searchers.method import SearchMethod
from hwnas.searchers.operations import Close, Create, ExitReason, Operation, Shutdown, ValidateAfter
from hwnas.spaces import ArchitectureError, SearchSpace, get_space
from hwnas.spaces.nb201_table import load_table

#: Dataset name -> column prefix in the table.
DATASET_PREFIX = {"cifar10": "c10", "cifar100": "c100"}
LATENCY_PREFIX = "lat_ms_"


class TabularError(RuntimeError):
    """The tabular runner cannot answer what it was asked (bad dataset, device, fidelity)."""


class SearchMethodLike(Protocol):
    """The event handlers of ``hwnas.searchers.method.SearchMethod`` that the runner calls."""

    def initial_operations(self) -> list[Operation]: ...
    def on_trial_created(self, trial_id: int) -> list[Operation]: ...
    def on_validation_completed(
        self, trial_id: int, metrics: dict[str, Any], length: int
    ) -> list[Operation]: ...
    def on_trial_closed(self, trial_id: int) -> list[Operation]: ...
    def on_trial_exited_early(
        self, trial_id: int, reason: ExitReason, message: str = ""
    ) -> list[Operation]: ...


def _column(table: Mapping[str, Any], name: str) -> Any:
    try:
        return table[name]
    except KeyError:
        raise TabularError(f"NB201 table has no column {name!r}") from None


def _seed_matrix(cells: Sequence[Any]) -> np.ndarray:
    """Per-seed accuracies as a (rows, max_seeds) float array, NaN-padded.

    Accepts the table's ``"a;b;c"`` strings or per-row sequences of numbers.
    """
    parsed = [
        [float(x) for x in c.split(";") if x.strip()] if isinstance(c, str) else list(c)
        for c in cells
    ]
    width = max((len(p) for p in parsed), default=0)
    out = np.full((len(parsed), max(width, 1)), np.nan)
    for i, p in enumerate(parsed):
        out[i, : len(p)] = p
    return out


class NB201Benchmark:
    """The query model: one dataset and one device of the NB201 table, indexed by row.

    Accuracies are kept in percent as in the table and reported to the searcher as fractions.
    """

    def __init__(
        self,
        arch_strs: Sequence[str],
        valid_seeds: np.ndarray,
        valid_mean: np.ndarray,
        test: np.ndarray,
        params_mb: np.ndarray,
        train_time_s: np.ndarray,
        latency_ms: np.ndarray,
        *,
        dataset: str,
        device: str,
    ) -> None:
        n = len(arch_strs)
        arrays = (valid_seeds, valid_mean, test, params_mb, train_time_s, latency_ms)
        if any(len(a) != n for a in arrays):
            raise TabularError("NB201 table columns have different lengths")
        self.dataset = dataset
        self.device = device
        self.arch_strs = list(arch_strs)
        self.valid_seeds = np.asarray(valid_seeds, dtype=float)
        self.valid_mean = np.asarray(valid_mean, dtype=float)
        self.test = np.asarray(test, dtype=float)
        self.params_mb = np.asarray(params_mb, dtype=float)
        self.train_time_s = np.asarray(train_time_s, dtype=float)
        self.latency_ms = np.asarray(latency_ms, dtype=float)
        self._n_seeds = np.sum(~np.isnan(self.valid_seeds), axis=1)
        if np.any(self._n_seeds == 0):
            raise TabularError("NB201 table has rows without any per-seed validation accuracy")
        self._row_of = {a: i for i, a in enumerate(self.arch_strs)}

    @classmethod
    def from_table(
        cls, table: Mapping[str, Any], dataset: str = "cifar10", device: str = "raspi4"
    ) -> NB201Benchmark:
        """Select ``dataset`` (cifar10/cifar100) and ``device`` from a column mapping.

        ``table`` maps the CSV's column names to per-row sequences (what
        ``hwnas.spaces.nb201_table.load_table`` returns, or a slice of it).
        """
        if dataset not in DATASET_PREFIX:
            raise TabularError(
                f"dataset {dataset!r} is not in the NB201 table; choose one of "
                f"{', '.join(DATASET_PREFIX)}"
            )
        devices = table_devices(table)
        if device not in devices:
            raise TabularError(
                f"device {device!r} has no latency column; the table has {', '.join(devices)}"
            )
        p = DATASET_PREFIX[dataset]
        return cls(
            [str(a) for a in _column(table, "arch_str")],
            _seed_matrix(_column(table, f"{p}_valid_seeds")),
            np.asarray(_column(table, f"{p}_valid"), dtype=float),
            np.asarray(_column(table, f"{p}_test"), dtype=float),
            np.asarray(_column(table, "params_mb"), dtype=float),
            np.asarray(_column(table, "train_time_s"), dtype=float),
            np.asarray(_column(table, f"{LATENCY_PREFIX}{device}"), dtype=float),
            dataset=dataset,
            device=device,
        )

    def __len__(self) -> int:
        return len(self.arch_strs)

    def row_of(self, arch: str) -> int:
        """The table row of normalised NB201 string ``arch``; ``ArchitectureError`` if absent."""
        try:
            return self._row_of[arch]
        except KeyError:
            raise ArchitectureError(f"architecture {arch!r} is not in the NB201 table") from None

    def seed_accuracy(self, row: int, noise_seed: int) -> float:
        """One training seed's validation accuracy (%) of ``row``, chosen by ``noise_seed``.

        The choice depends only on ``(noise_seed, row)`` (common random numbers): every search
        run with the same noise seed sees the same noisy value for the same architecture, so
        strategies are compared on identical noise, whatever order they query in.
        """
        rng = np.random.default_rng((int(noise_seed), int(row)))
        k = int(rng.integers(self._n_seeds[row]))
        return float(self.valid_seeds[row, k])

    def observe(self, row: int, noise_seed: int, length: int) -> dict[str, Any]:
        """The metrics a trial of ``row`` trained to ``length`` epochs reports (no test data)."""
        return {
            "validation_accuracy": self.seed_accuracy(row, noise_seed) / 100.0,
            "latency_ms": float(self.latency_ms[row]),
            "latency_backend": f"nb201-table:{self.device}",
            "params": float(self.params_mb[row]) * 1e6,
            "epochs": int(length),
            "train_time_s": float(self.train_time_s[row]),
        }

    def test_accuracy(self, row: int) -> float:
        """Mean test accuracy (%) of ``row``: for evaluation after the search only."""
        return float(self.test[row])


def table_devices(table: Mapping[str, Any]) -> list[str]:
    """Device names that have a ``lat_ms_<device>`` column in ``table``."""
    return [k[len(LATENCY_PREFIX) :] for k in table if k.startswith(LATENCY_PREFIX)]


class SimulatedWorkers:
    """``n`` workers on a simulated clock: jobs run concurrently, the clock jumps to the
    earliest finish (ties resolve in start order, so runs are deterministic)."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {n}")
        self.n = n
        self.now = 0.0
        self._heap: list[tuple[float, int, float, Any]] = []
        self._seq = 0

    @property
    def busy(self) -> int:
        return len(self._heap)

    @property
    def free(self) -> int:
        return self.n - len(self._heap)

    def start(self, job: Any, duration: float) -> float:
        """Start ``job`` now on a free worker; returns its finish time."""
        if self.free <= 0:
            raise RuntimeError("no free simulated worker")
        if not duration >= 0.0:
            raise ValueError(f"job duration must be >= 0, got {duration}")
        finish = self.now + float(duration)
        heapq.heappush(self._heap, (finish, self._seq, self.now, job))
        self._seq += 1
        return finish

    def pop_next(self) -> tuple[float, float, Any]:
        """Advance the clock to the earliest finishing job; returns ``(start, finish, job)``."""
        finish, _, start, job = heapq.heappop(self._heap)
        self.now = finish
        return start, finish, job


@dataclass(frozen=True)
class TabularQuery:
    """One answered query: what the searcher saw, and when on the simulated clock."""

    index: int
    trial_id: int
    arch: str
    row: int
    metrics: dict[str, Any]
    start_s: float
    finish_s: float


@dataclass
class TabularRunResult:
    """Queries in the order they finished, plus counts of what did not consume one."""

    queries: list[TabularQuery] = field(default_factory=list)
    duplicates: int = 0
    invalid: int = 0
    shutdown: bool = False
    #: The method kept proposing repeats (more than ``max_duplicates``): the run was ended.
    stalled: bool = False
    sim_time_s: float = 0.0

    @property
    def rows(self) -> list[int]:
        return [q.row for q in self.queries]

    @property
    def observed_accuracy(self) -> list[float]:
        """Validation accuracies (fractions) the searcher saw, in query order."""
        return [float(q.metrics["validation_accuracy"]) for q in self.queries]


@dataclass
class _Trial:
    hparams: dict[str, Any]
    arch: str | None = None
    key: str | None = None
    row: int | None = None
    error: str | None = None  # why the trial cannot run (invalid hparams), reported at start
    exited: bool = False
    busy: bool = False  # a ValidateAfter is waiting or running
    close_requested: bool = False
    closed: bool = False
    answered: int = 0  # longest length answered so far


class TabularRunner:
    """Drive a search method's event loop with answers from an ``NB201Benchmark``.

    A *query* is one architecture trained (one table look-up that costs simulated time).
    A trial whose architecture was already queried (the same normalised string, so the same
    table row) is answered with the earlier result at no cost: a duplicate never consumes a
    query. A method that proposes more than ``max_duplicates`` repeats (default: as many as
    ``max_queries``) has converged on what it already knows; the run ends there, flagged
    ``stalled``. Functionally equivalent cells are distinct rows (NB201 trained each one), so they
    are distinct queries here; the search method's own canonical-key dedupe avoids them.
    """

    def __init__(
        self,
        method: SearchMethodLike,
        benchmark: NB201Benchmark,
        *,
        max_queries: int,
        max_concurrent: int = 1,
        seed: int = 0,
        max_duplicates: int | None = None,
    ) -> None:
        if max_queries < 1:
            raise ValueError(f"max_queries must be >= 1, got {max_queries}")
        self.method = method
        self.benchmark = benchmark
        self.max_queries = int(max_queries)
        self.seed = int(seed)
        self.workers = SimulatedWorkers(max_concurrent)
        self.max_duplicates = self.max_queries if max_duplicates is None else int(max_duplicates)
        self._spaces: dict[str, SearchSpace] = {}
        self._trials: dict[int, _Trial] = {}
        self._by_key: dict[str, dict[str, Any]] = {}  # arch -> metrics of its query
        # arch being queried -> duplicates (trial_id, length) waiting for its result
        self._inflight: dict[str, list[tuple[int, int]]] = {}
        self._waiting: deque[tuple[int, int]] = deque()  # (trial_id, length) to start
        self._ops: deque[Operation] = deque()
        self._started = 0
        self.result = TabularRunResult()

    # -- public ---------------------------------------------------------------------------
    def run(self) -> TabularRunResult:
        """Run until the method shuts down, goes idle, or ``max_queries`` were answered."""
        self._drain(self.method.initial_operations())
        while not (self.result.shutdown or self.result.stalled):
            while self._waiting and self.workers.free > 0 and self._started < self.max_queries:
                self._start(*self._waiting.popleft())
            if self.workers.busy == 0:
                break
            start, finish, (trial_id, length, metrics) = self.workers.pop_next()
            trial = self._trials[trial_id]
            trial.answered = length
            trial.busy = False
            self._by_key[str(trial.key)] = metrics
            self.result.queries.append(
                TabularQuery(
                    len(self.result.queries),
                    trial_id,
                    str(trial.arch),
                    int(trial.row or 0),
                    dict(metrics),
                    start,
                    finish,
                )
            )
            self._drain(self.method.on_validation_completed(trial_id, dict(metrics), length))
            self._drain(self._close_if_idle(trial_id))
            for dup_id, dup_length in self._inflight.pop(str(trial.key), []):
                self._drain(self._answer_duplicate(dup_id, dup_length, metrics))
        self.result.sim_time_s = self.workers.now
        return self.result

    # -- event handling ----------------------------------------------------------------------
    def _drain(self, ops: list[Operation]) -> None:
        self._ops.extend(ops)
        while self._ops and not (self.result.shutdown or self.result.stalled):
            op = self._ops.popleft()
            if isinstance(op, Create):
                self._create(op)
            elif isinstance(op, ValidateAfter):
                self._validate_after(op)
            elif isinstance(op, Close):
                trial = self._trials.get(op.trial_id)
                if trial is None:
                    raise TabularError(f"Close for unknown trial {op.trial_id}")
                trial.close_requested = True
                self._ops.extend(self._close_if_idle(op.trial_id))
            elif isinstance(op, Shutdown):
                self.result.shutdown = True
            else:
                raise TabularError(f"unknown operation {op!r}")

    def _space(self, hparams: Mapping[str, Any]) -> SearchSpace:
        name = str(hparams.get("space", "nb201"))
        options = dict(hparams.get("space_options") or {})
        key = f"{name}:{sorted(options.items())}"
        if key not in self._spaces:
            self._spaces[key] = get_space(name, **options)
        return self._spaces[key]

    def _create(self, op: Create) -> None:
        trial = _Trial(dict(op.hparams))
        self._trials[op.trial_id] = trial
        self._ops.extend(self.method.on_trial_created(op.trial_id))
        try:
            space = self._space(trial.hparams)
            if space.name != "nb201":
                raise ArchitectureError(f"the NB201 table cannot answer space {space.name!r}")
            trial.arch = space.from_hparams(trial.hparams)
            trial.row = self.benchmark.row_of(trial.arch)
            trial.key = trial.arch
        except ArchitectureError as exc:
            trial.error = str(exc)

    def _close_if_idle(self, trial_id: int) -> list[Operation]:
        """``on_trial_closed`` once a trial was asked to close (or exited) and has no work."""
        trial = self._trials[trial_id]
        if trial.closed or trial.busy or not (trial.close_requested or trial.exited):
            return []
        trial.closed = True
        return self.method.on_trial_closed(trial_id)

    def _validate_after(self, op: ValidateAfter) -> None:
        trial = self._trials.get(op.trial_id)
        if trial is None:
            raise TabularError(f"ValidateAfter for unknown trial {op.trial_id}")
        if trial.exited or trial.closed:
            return
        if trial.error is not None:  # the trial fails as it starts, as a real one would
            trial.exited = True
            self.result.invalid += 1
            self._ops.extend(
                self.method.on_trial_exited_early(op.trial_id, ExitReason.INVALID_HP, trial.error)
            )
            self._ops.extend(self._close_if_idle(op.trial_id))
            return
        planned = (trial.hparams.get("training") or {}).get("max_epochs")
        if trial.answered or (planned is not None and op.length < int(planned)):
            raise TabularError(
                f"trial {op.trial_id} asked for length {op.length} "
                f"(planned max_epochs {planned}, already answered {trial.answered}): the "
                "NB201 table holds final results only, so the tabular runner answers one "
                "full-length ValidateAfter per trial; turn early stopping (ASHA) off"
            )
        assert trial.key is not None
        trial.busy = True
        if trial.key in self._by_key:  # a duplicate: answer at no cost
            self._ops.extend(
                self._answer_duplicate(op.trial_id, op.length, self._by_key[trial.key])
            )
        elif trial.key in self._inflight:  # a duplicate of a query still running: wait for it
            self._inflight[trial.key].append((op.trial_id, op.length))
        else:
            self._inflight[trial.key] = []
            self._waiting.append((op.trial_id, op.length))

    def _answer_duplicate(
        self, trial_id: int, length: int, metrics: Mapping[str, Any]
    ) -> list[Operation]:
        """Report an earlier query's metrics for a duplicate trial; returns the method's ops."""
        self.result.duplicates += 1
        if self.result.duplicates > self.max_duplicates:
            # Repeats are free, so a method that only repeats would never end: stop it.
            self.result.stalled = True
            return []
        trial = self._trials[trial_id]
        trial.answered = length
        trial.busy = False
        ops = self.method.on_validation_completed(trial_id, dict(metrics), length)
        return ops + self._close_if_idle(trial_id)

    def _start(self, trial_id: int, length: int) -> None:
        trial = self._trials[trial_id]
        assert trial.row is not None and trial.key is not None
        metrics = self.benchmark.observe(trial.row, self.seed, length)
        self._started += 1
        self.workers.start((trial_id, length, metrics), metrics["train_time_s"])


def load_benchmark(
    path: str | Path | None = None, dataset: str = "cifar10", device: str = "raspi4"
) -> NB201Benchmark:
    """Load the NB201 table (default: ``hwnas.spaces.nb201_table.default_table_path()``) and select
    ``dataset`` and ``device``; ``hwnas.spaces.nb201_table.TableError`` says where it looked."""
    return NB201Benchmark.from_table(load_table(path), dataset, device)


def run_search_on_table(
    config: SearchConfig,
    benchmark: NB201Benchmark,
    *,
    max_queries: int | None = None,
    noise_seed: int | None = None,
) -> tuple[SearchMethod, TabularRunResult]:
    """Run ``config``'s search with every trial answered by ``benchmark``.

    Budget and concurrency come from ``config.budget`` (``max_queries`` overrides the trial
    budget), the noise seed from ``config.seed`` unless given. Early stopping must be off.
    """
    if config.space.name != "nb201":
        raise TabularError(f"space {config.space.name!r}: the tabular runner answers nb201 only")
    if config.early_stopping.name != "none":
        raise TabularError(
            f"early_stopping.name is {config.early_stopping.name!r}: the NB201 table has final "
            "accuracies and no learning curves, so tabular runs are full-fidelity only; "
            "set early_stopping.name: none"
        )
    method = SearchMethod(config)
    runner = TabularRunner(
        method,
        benchmark,
        max_queries=max_queries or config.budget.max_trials,
        max_concurrent=config.budget.max_concurrent,
        seed=config.seed if noise_seed is None else noise_seed,
    )
    return method, runner.run()


__all__ = [
    "DATASET_PREFIX",
    "NB201Benchmark",
    "SimulatedWorkers",
    "TabularError",
    "TabularQuery",
    "TabularRunResult",
    "TabularRunner",
    "load_benchmark",
    "run_search_on_table",
    "table_devices",
]
