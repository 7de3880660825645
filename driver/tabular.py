"""Tabular backend: trials answered from the NAS-Bench-201 table instead of training.

The driver loop (``hwnas.driver.loop``) runs a search method over ``TabularBackend``: each
``ValidateAfter`` is answered from the table (one training seed's validation accuracy,
the chosen device's measured latency, params) and costs the architecture's recorded training
time on a simulated clock with ``max_concurrent`` workers (Syne Tune's simulator backend:
the clock jumps to the earliest finishing trial). Only full-fidelity trials are answered:
the table holds 200-epoch results and no learning curves, so early stopping (ASHA) would need
an invented curve model; it is benchmarked with real trainings instead.

Test accuracy never reaches the search method; ``NB201Benchmark.test_accuracy`` serves the
evaluation after the run.

The table is the packaged NB201 table unless a path or ``$HWNAS_NB201_TABLE`` names another
(``docs/tables.md``: any dataset prefix with ``<p>_valid``, ``<p>_valid_seeds``, ``<p>_test``
columns and any ``lat_ms_<device>`` column). Its figures are of one network, NB201's published
one (``TABLE_NETWORK``: full cells, C=16, N=5): a search over the table searches that space,
so the method's dedupe key is the cell string, i.e. the table row (``run_search_on_table``).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.driver.backend import BackendStop, TrialBackend, TrialOutcome
from hwnas.driver.loop import MethodLike, SearchLoop
from hwnas.searchers.config import SearchConfig
from hwnas.searchers.method import SearchMethod
from hwnas.spaces import ArchitectureError, SearchSpace, get_space
from hwnas.spaces.nb201_table import TABLE_NETWORK, dataset_columns, load_table

#: Dataset names that stand for a column prefix (any prefix the table has works as itself).
DATASET_PREFIX = {"cifar10": "c10", "cifar100": "c100", "imagenet16-120": "in16"}
LATENCY_PREFIX = "lat_ms_"


class TabularError(RuntimeError):
    """The tabular backend cannot answer what it was asked (bad dataset, device, fidelity)."""


def _column(table: Mapping[str, Any], name: str, why: str = "") -> Any:
    try:
        return table[name]
    except KeyError:
        raise TabularError(f"{_source(table)} has no column {name!r}{why}") from None


def _source(table: Mapping[str, Any]) -> str:
    path = getattr(table, "path", None)
    return f"NB201 table {path}" if path is not None else "NB201 table"


def table_datasets(table: Mapping[str, Any]) -> list[str]:
    """Dataset prefixes with a ``<prefix>_valid_seeds`` column in ``table``."""
    return [k[: -len("_valid_seeds")] for k in table if k.endswith("_valid_seeds")]


def dataset_prefix(table: Mapping[str, Any], dataset: str) -> str:
    """The column prefix of ``dataset``: the name itself when the table has that prefix, else
    its alias (``cifar10`` -> ``c10``, ``cifar100`` -> ``c100``, ``ImageNet16-120`` ->
    ``in16``); ``TabularError`` names the missing column and lists the table's datasets."""
    prefix = dataset
    if f"{dataset}_valid_seeds" not in table:
        prefix = DATASET_PREFIX.get(dataset.lower(), dataset)
    try:
        dataset_columns(table, prefix, _source(table))
    except KeyError as exc:
        alias = f" (column prefix {prefix!r})" if prefix != dataset else ""
        raise TabularError(f"dataset {dataset!r}{alias}: {exc.args[0]}") from None
    return prefix


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
        table_path: str | None = None,
    ) -> None:
        n = len(arch_strs)
        arrays = (valid_seeds, valid_mean, test, params_mb, train_time_s, latency_ms)
        if any(len(a) != n for a in arrays):
            raise TabularError("NB201 table columns have different lengths")
        self.dataset = dataset
        self.device = device
        self.table_path = table_path
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
        """Select ``dataset`` (a column prefix of the table, or ``cifar10``/``cifar100``/
        ``ImageNet16-120`` for ``c10``/``c100``/``in16``) and ``device`` from a column mapping.

        ``table`` maps the CSV's column names to per-row sequences (what
        ``hwnas.spaces.nb201_table.load_table`` returns, or a slice of it).
        """
        p = dataset_prefix(table, dataset)
        devices = table_devices(table)
        if device not in devices:
            raise TabularError(
                f"device {device!r} has no latency column ({LATENCY_PREFIX}{device}); the "
                f"table has {', '.join(devices) or 'none'}"
            )
        path = getattr(table, "path", None)
        why = " (the tabular backend reports params and costs simulated training time)"
        return cls(
            [str(a) for a in _column(table, "arch_str")],
            _seed_matrix(_column(table, f"{p}_valid_seeds")),
            np.asarray(_column(table, f"{p}_valid"), dtype=float),
            np.asarray(_column(table, f"{p}_test"), dtype=float),
            np.asarray(_column(table, "params_mb", why), dtype=float),
            np.asarray(_column(table, "train_time_s", why), dtype=float),
            np.asarray(_column(table, f"{LATENCY_PREFIX}{device}"), dtype=float),
            dataset=dataset,
            device=device,
            table_path=None if path is None else str(path),
        )

    @property
    def target(self) -> dict[str, Any]:
        """What its ``latency_ms`` is of (``searchers.filters.cost_source``'s ``measured``):
        this table's device column, for the table's network."""
        out: dict[str, Any] = {"table_device": self.device, **TABLE_NETWORK}
        if self.table_path is not None:
            out["table"] = self.table_path
        return out

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
    arch: str | None = None
    row: int | None = None
    error: str | None = None  # why the trial cannot run (invalid hparams), reported at start
    answered: int = 0  # longest length answered so far


class TabularBackend(TrialBackend):
    """Answers trials from an ``NB201Benchmark`` on ``max_concurrent`` simulated workers.

    A *query* is one architecture trained (one table look-up that costs simulated time).
    A trial whose architecture was already queried (the same normalised string, so the same
    table row) is answered with the earlier result at no cost: a duplicate never consumes a
    query (``answer``), and one of a query still running waits for its result. A method that
    proposes more than ``max_duplicates`` repeats (default: as many as ``max_queries``) has
    converged on what it already knows; the run ends there (``BackendStop``), flagged
    ``stalled``. Functionally equivalent cells are distinct rows (NB201 trained and measured
    each one, dead edges included, so their latencies differ), so they are distinct queries
    here, and a search over the table keys its dedupe on the row too (``run_search_on_table``).
    """

    def __init__(
        self,
        benchmark: NB201Benchmark,
        *,
        max_queries: int,
        max_concurrent: int = 1,
        seed: int = 0,
        max_duplicates: int | None = None,
    ) -> None:
        if max_queries < 1:
            raise ValueError(f"max_queries must be >= 1, got {max_queries}")
        self.benchmark = benchmark
        self.max_queries = int(max_queries)
        self.seed = int(seed)
        self.workers = SimulatedWorkers(max_concurrent)
        self.max_duplicates = self.max_queries if max_duplicates is None else int(max_duplicates)
        self._spaces: dict[str, SearchSpace] = {}
        self._trials: dict[int, _Trial] = {}
        self._by_arch: dict[str, dict[str, Any]] = {}  # arch -> metrics of its query
        # arch being queried -> duplicates (trial_id, length) waiting for its result
        self._inflight: dict[str, list[tuple[int, int]]] = {}
        self._busy: dict[int, int] = {}  # trial -> length, for queries and waiting duplicates
        self._started = 0
        self.result = TabularRunResult()

    # -- TrialBackend ----------------------------------------------------------------------
    @property
    def free_slots(self) -> int:
        return self.workers.free if self._started < self.max_queries else 0

    @property
    def exhausted(self) -> bool:
        return self._started >= self.max_queries

    def create(self, trial_id: int, hparams: Mapping[str, Any]) -> None:
        trial = _Trial()
        self._trials[trial_id] = trial
        try:
            space = self._space(hparams)
            if space.name != "nb201":
                raise ArchitectureError(f"the NB201 table cannot answer space {space.name!r}")
            trial.arch = space.from_hparams(dict(hparams))
            trial.row = self.benchmark.row_of(trial.arch)
        except ArchitectureError as exc:
            trial.error = str(exc)

    def answer(self, trial_id: int, hparams: Mapping[str, Any], length: int) -> TrialOutcome | bool:
        trial = self._trials[trial_id]
        if trial.error is not None:  # the trial fails as it starts, as a real one would
            self.result.invalid += 1
            return TrialOutcome(trial_id, length, False, kind="invalid", message=trial.error)
        planned = (hparams.get("training") or {}).get("max_epochs")
        if trial.answered or (planned is not None and length < int(planned)):
            raise TabularError(
                f"trial {trial_id} asked for length {length} "
                f"(planned max_epochs {planned}, already answered {trial.answered}): the "
                "NB201 table holds final results only, so the tabular backend answers one "
                "full-length ValidateAfter per trial; turn early stopping (ASHA) off"
            )
        assert trial.arch is not None
        if trial.arch in self._by_arch:  # a duplicate: answer at no cost
            return self._duplicate(trial_id, length, self._by_arch[trial.arch])
        if trial.arch in self._inflight:  # a duplicate of a query still running: wait for it
            self._inflight[trial.arch].append((trial_id, length))
            self._busy[trial_id] = length
            return True
        self._inflight[trial.arch] = []  # later repeats wait for this query's result
        return False

    def start(self, trial_id: int, hparams: Mapping[str, Any], length: int) -> None:
        trial = self._trials[trial_id]
        assert trial.row is not None
        metrics = self.benchmark.observe(trial.row, self.seed, length)
        self._started += 1
        self._busy[trial_id] = length
        self.workers.start((trial_id, length, metrics), metrics["train_time_s"])

    def wait(self, timeout_s: float) -> list[TrialOutcome]:
        """The next query to finish on the simulated clock, then the duplicates waiting
        for it (the clock jumps; nothing waits in real time)."""
        if self.workers.busy == 0:
            return []
        start, finish, (trial_id, length, metrics) = self.workers.pop_next()
        trial = self._trials[trial_id]
        assert trial.arch is not None and trial.row is not None
        trial.answered = length
        del self._busy[trial_id]
        self._by_arch[trial.arch] = metrics
        self.result.queries.append(
            TabularQuery(
                len(self.result.queries),
                trial_id,
                trial.arch,
                trial.row,
                dict(metrics),
                start,
                finish,
            )
        )
        out = [TrialOutcome(trial_id, length, True, dict(metrics), seconds=finish - start)]
        for dup_id, dup_length in self._inflight.pop(trial.arch, []):
            del self._busy[dup_id]
            out.append(self._duplicate(dup_id, dup_length, metrics))
        return out

    def running(self) -> list[tuple[int, int]]:
        return list(self._busy.items())

    def elapsed_s(self) -> float:
        return self.workers.now

    # -- internals -------------------------------------------------------------------------
    def _duplicate(self, trial_id: int, length: int, metrics: Mapping[str, Any]) -> TrialOutcome:
        """An earlier query's metrics for a repeat (ends the run past ``max_duplicates``)."""
        self.result.duplicates += 1
        if self.result.duplicates > self.max_duplicates:
            # Repeats are free, so a method that only repeats would never end: stop it.
            self.result.stalled = True
            raise BackendStop("stalled: the method only proposes repeats")
        self._trials[trial_id].answered = length
        return TrialOutcome(trial_id, length, True, dict(metrics))

    def _space(self, hparams: Mapping[str, Any]) -> SearchSpace:
        name = str(hparams.get("space", "nb201"))
        options = dict(hparams.get("space_options") or {})
        key = f"{name}:{sorted(options.items())}"
        if key not in self._spaces:
            self._spaces[key] = get_space(name, **options)
        return self._spaces[key]


def run_on_table(
    method: MethodLike,
    benchmark: NB201Benchmark,
    *,
    max_queries: int,
    max_concurrent: int = 1,
    seed: int = 0,
    max_duplicates: int | None = None,
) -> TabularRunResult:
    """Run ``method`` (a search method or a baseline with the same events) over the table."""
    backend = TabularBackend(
        benchmark,
        max_queries=max_queries,
        max_concurrent=max_concurrent,
        seed=seed,
        max_duplicates=max_duplicates,
    )
    loop = SearchLoop(method, backend)
    loop.start()
    reason = loop.run()
    backend.result.shutdown = reason == "shutdown"
    backend.result.sim_time_s = backend.workers.now
    return backend.result


def load_benchmark(
    path: str | Path | None = None, dataset: str = "cifar10", device: str = "raspi4"
) -> NB201Benchmark:
    """Load the NB201 table (default: ``hwnas.spaces.nb201_table.default_table_path()``) and select
    ``dataset`` and ``device``; ``hwnas.spaces.nb201_table.TableError`` says where it looked."""
    return NB201Benchmark.from_table(load_table(path), dataset, device)


def table_config(config: SearchConfig) -> SearchConfig:
    """``config`` with the table network's space options filled in; ``TabularError`` when the
    space or an option differs from what the table's figures are of."""
    if config.space.name != TABLE_NETWORK["space"]:
        raise TabularError(f"space {config.space.name!r}: the tabular backend answers nb201 only")
    table_options = TABLE_NETWORK["space_options"]
    options = {**table_options, **config.space.options}
    wrong = {k: v for k, v in options.items() if table_options.get(k, v) != v}
    if wrong or set(options) != set(table_options):
        bad = ", ".join(f"{k}: {v!r}" for k, v in (wrong or options).items())
        raise TabularError(
            f"space.options {{{bad}}}: the NB201 table's figures are of nb201 "
            "{C: 16, N: 5, prune: false} (full cells, dead edges included, as measured); "
            "leave these options out or set them so"
        )
    space = config.space.model_copy(update={"options": options})
    return config.model_copy(update={"space": space})


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

    The space is the table's network (``TABLE_NETWORK``): options the config leaves out are
    the table's (``prune: false``, so each cell is its own row and dedupe never merges two
    rows whose latencies differ); an option set to something else is an error.
    ``latency.predictor``, if any, must be this table's column for ``benchmark.device``.
    """
    config = table_config(config)
    if config.early_stopping.name != "none":
        raise TabularError(
            f"early_stopping.name is {config.early_stopping.name!r}: the NB201 table has final "
            "accuracies and no learning curves, so tabular runs are full-fidelity only; "
            "set early_stopping.name: none"
        )
    method = SearchMethod(config, measured=benchmark.target)
    result = run_on_table(
        method,
        benchmark,
        max_queries=max_queries or config.budget.max_trials,
        max_concurrent=config.budget.max_concurrent,
        seed=config.seed if noise_seed is None else noise_seed,
    )
    return method, result


__all__ = [
    "DATASET_PREFIX",
    "NB201Benchmark",
    "SimulatedWorkers",
    "TabularBackend",
    "TabularError",
    "TabularQuery",
    "TabularRunResult",
    "dataset_prefix",
    "load_benchmark",
    "run_on_table",
    "run_search_on_table",
    "table_config",
    "table_datasets",
    "table_devices",
]
