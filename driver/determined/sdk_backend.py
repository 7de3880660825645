"""The Determined SDK backend: each run of a trial is one ``searcher: single`` experiment.

Works against Determined 0.37 and 0.38 masters through ``determined.experimental.client``
(0.38 removed custom searchers; its SDK calls used here are the same in 0.37). The driver loop
(``hwnas.driver.loop``) asks for runs -- trial ``t`` trained to cumulative length ``L`` -- and
this backend carries each out as one experiment:

* **create**: ``Determined.create_experiment`` with the trial YAML's Determined settings, the
  trial's complete hparams plus ``target_length: L`` (the trial entrypoint trains to it and
  never touches ``core.searcher``), and labels naming the search, the sweep and the run
  (``hwnas-run:<search>:<t>:<L>``), inside a project named after the search. A promotion is a
  new run whose ``searcher.source_trial_id`` is the trial's previous run: the master hands its
  latest checkpoint to the new trial as ``latest_checkpoint``, so training continues.
* **wait**: one ``list_experiments(experiment_ids=...)`` per poll for the runs in flight; a run
  whose experiment is terminal is read back -- the trial's result report (metrics group
  ``hwnas_result``: the whole metrics dict, or why it failed) -- and becomes a
  ``TrialOutcome``.
* **stop**: the experiments of runs nobody waits for any more (the search aborted, a run past
  ``runner.trial_timeout_s``, leftovers when the search ends) are killed. Early stopping needs
  no kill: a run ends at its rung by itself, and a stopped trial simply gets no next run.
  ``kill`` (STOPPING_KILLED -> CANCELED, no checkpoint) rather than ``pause``: a paused
  experiment keeps its trial's fixed target length (hparams cannot change), stays non-terminal
  and makes ``Experiment.wait`` raise; nothing would ever resume it.

Idempotent: the runs this backend created are journalled in ``state.json`` (saved by the driver
right after each start), and a resumed backend first looks a run up by its label, so a driver
that crashed between creating an experiment and saving never creates it twice. Interrupting
the driver (Ctrl-C, a crash) leaves the experiments running; the resumed driver adopts them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hwnas.contract import RESULT_GROUP, RESULT_KEY
from hwnas.driver.backend import TrialBackend, TrialOutcome
from hwnas.driver.determined.experiment_config import build_run_experiment, run_label
from hwnas.driver.processes import outcome_from_result
from hwnas.searchers.config import SearchConfig

logger = logging.getLogger("hwnas.determined")

#: Experiment states after which nothing changes (``ExperimentState`` names).
TERMINAL_STATES = frozenset({"COMPLETED", "CANCELED", "ERROR", "DELETED"})
BACKEND_STATE_VERSION = 1


class SdkBackendError(RuntimeError):
    """The master refused something this backend cannot work around (message says what)."""


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors after which asking the master again later may work: no connection, and
    answers the SDK turns into ``APIException`` (5xx after its own retries, 404 of an
    experiment deleted meanwhile is handled where it matters)."""
    import requests
    from determined.common.api import errors

    return (requests.exceptions.RequestException, errors.APIException, OSError)


def master_version(determined: Any) -> tuple[int, int]:
    """(major, minor) of the master, from ``GET /api/v1/master``; (0, 0) when unknown."""
    from determined.common.api import bindings

    text = bindings.get_GetMaster(determined._session).version
    try:
        major, minor = (int(p) for p in text.split(".")[:2])
    except ValueError:
        logger.warning("master version %r not understood; assuming 0.38 or later", text)
        return (0, 0)
    return (major, minor)


def needs_max_length(version: tuple[int, int]) -> bool:
    """0.37 requires ``searcher.max_length`` for ``single``; 0.38 deprecates it."""
    return version != (0, 0) and version < (0, 38)


@dataclass
class Run:
    """One run: its experiment, its Determined trial once known, when it started (monotonic)."""

    trial_id: int
    length: int
    experiment_id: int
    det_trial_id: int | None = None
    ok: bool | None = None  # None: not finished (as far as this driver knows)
    started: float = field(default=0.0, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            "length": self.length,
            "experiment_id": self.experiment_id,
            "det_trial_id": self.det_trial_id,
            "ok": self.ok,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Run:
        return cls(
            int(data["trial_id"]),
            int(data["length"]),
            int(data["experiment_id"]),
            None if data.get("det_trial_id") is None else int(data["det_trial_id"]),
            data.get("ok"),
        )


class DeterminedBackend(TrialBackend):
    """See the module docstring. ``determined`` is a ``determined.experimental.Determined``."""

    def __init__(
        self,
        determined: Any,
        search: SearchConfig,
        *,
        search_id: str,
        trial_config: Mapping[str, Any],
        context_dir: str,
        project_id: int | None = None,
        max_concurrent: int | None = None,
        poll_interval_s: float = 10.0,
        log: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.det = determined
        self.search = search
        self.search_id = search_id
        self.trial_config = dict(trial_config)
        self.context_dir = context_dir
        self.project_id = project_id
        self.max_concurrent = max_concurrent or search.budget.max_concurrent
        self.poll_interval_s = poll_interval_s
        self.log = log or (lambda message: None)
        self.clock, self.sleep = clock, sleep
        self.version = master_version(determined)
        self.runs: dict[tuple[int, int], Run] = {}  # every run this search created (journal)
        self.in_flight: dict[tuple[int, int], Run] = {}
        self.detached: list[Run] = []  # in flight when the loop stopped (see stop_all)
        self.killed: set[int] = set()  # experiments this driver killed
        self.resumed = False
        self.elapsed_before = 0.0
        self._started = clock()
        self._last_poll = -float("inf")

    # -- TrialBackend ------------------------------------------------------------------------
    @property
    def free_slots(self) -> int:
        return max(0, self.max_concurrent - len(self.in_flight))

    def answer(self, trial_id: int, hparams: Mapping[str, Any], length: int) -> TrialOutcome | bool:
        """A run that already finished (found after a resume) is answered at once."""
        run = self._find_run(trial_id, length)
        if run is None:
            return False
        experiment = self.det.get_experiment(run.experiment_id)
        if _state(experiment) not in TERMINAL_STATES:
            return False  # still running: start() adopts it
        self.log(f"trial {trial_id}: run to {length} ended (experiment {run.experiment_id})")
        return self._outcome(run, experiment)

    def start(self, trial_id: int, hparams: Mapping[str, Any], length: int) -> None:
        key = (trial_id, length)
        run = self._find_run(trial_id, length)
        if run is None:
            run = self._create_run(trial_id, dict(hparams), length)
            self.log(f"trial {trial_id}: experiment {run.experiment_id} trains it to {length}")
        else:
            self.log(f"trial {trial_id}: adopting experiment {run.experiment_id} (to {length})")
        run.started = self.clock()
        self.in_flight[key] = run

    def wait(self, timeout_s: float) -> list[TrialOutcome]:
        deadline = self.clock() + timeout_s
        while True:
            if self.in_flight and self.clock() - self._last_poll >= self.poll_interval_s:
                outcomes = self._poll()
                if outcomes:
                    return outcomes
            now = self.clock()
            if not self.in_flight or now >= deadline:
                return []
            self.sleep(max(0.0, min(deadline, self._last_poll + self.poll_interval_s) - now))

    def running(self) -> list[tuple[int, int]]:
        return list(self.in_flight)

    def stop_all(self) -> list[tuple[int, int]]:
        """The loop stops (interruption, crash, end of search): runs keep going on the cluster
        and a resumed driver adopts them; ``finish`` kills them when the search is over."""
        stopped = list(self.in_flight)
        self.detached += self.in_flight.values()
        self.in_flight.clear()
        return stopped

    def elapsed_s(self) -> float:
        return self.elapsed_before + (self.clock() - self._started)

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": BACKEND_STATE_VERSION,
            "kind": "determined",
            "search_id": self.search_id,
            "runs": [r.to_json() for _, r in sorted(self.runs.items())],
            "killed": sorted(self.killed),
            "elapsed_s": self.elapsed_s(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != BACKEND_STATE_VERSION or state.get("kind") != "determined":
            raise SdkBackendError(f"not a Determined SDK backend state: {dict(state)!r:.200}")
        if state["search_id"] != self.search_id:
            raise SdkBackendError(
                f"state is of search {state['search_id']!r}, settings say {self.search_id!r}"
            )
        self.runs = {(r.trial_id, r.length): r for r in map(Run.from_json, state["runs"])}
        self.killed = {int(e) for e in state["killed"]}
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        self.resumed = True

    # -- ending ----------------------------------------------------------------------------
    def kill(self, run: Run, why: str) -> None:
        """Kill a run's experiment (``POST /api/v1/experiments/{id}/kill``)."""
        if run.experiment_id in self.killed:
            return
        self.log(f"trial {run.trial_id}: killing experiment {run.experiment_id} ({why})")
        self.det.get_experiment(run.experiment_id).kill()
        self.killed.add(run.experiment_id)

    def finish(self) -> list[int]:
        """The search is over: kill the experiments of runs still going; their ids."""
        leftovers = [*self.detached, *self.in_flight.values()]
        for run in leftovers:
            self.kill(run, "the search has ended")
        self.detached.clear()
        self.in_flight.clear()
        return [r.experiment_id for r in leftovers]

    # -- runs ------------------------------------------------------------------------------
    def _find_run(self, trial_id: int, length: int) -> Run | None:
        """The journal's run, or (after a resume) the experiment carrying the run's label."""
        key = (trial_id, length)
        if key in self.runs:
            return self.runs[key]
        if not self.resumed:
            return None  # a fresh search id: no experiment can carry its labels yet
        label = run_label(self.search_id, trial_id, length)
        found = [
            e
            for e in self.det.list_experiments(labels=[label])
            if label in (e.labels or set()) and _state(e) != "DELETED"
        ]
        if not found:
            return None
        newest = max(found, key=lambda e: e.id)
        if len(found) > 1:
            logger.warning("run %s has %d experiments; using %d", label, len(found), newest.id)
        self.log(f"trial {trial_id}: found experiment {newest.id} created before the restart")
        self.runs[key] = Run(trial_id, length, newest.id)
        return self.runs[key]

    def _create_run(self, trial_id: int, hparams: dict[str, Any], length: int) -> Run:
        previous = [r for (t, n), r in self.runs.items() if t == trial_id and n < length and r.ok]
        source = max(previous, key=lambda r: r.length, default=None)
        if previous and source is not None and source.det_trial_id is None:
            raise SdkBackendError(f"trial {trial_id}: previous run has no Determined trial id")
        config = build_run_experiment(
            dict(self.trial_config),
            self.search,
            search_id=self.search_id,
            trial_id=trial_id,
            length=length,
            hparams=hparams,
            source_trial_id=None if source is None else source.det_trial_id,
            max_length=needs_max_length(self.version),
        )
        with config_file(config) as path:
            experiment = self.det.create_experiment(
                path, model_dir=self.context_dir, project_id=self.project_id
            )
        run = Run(trial_id, length, int(experiment.id))
        self.runs[(trial_id, length)] = run
        return run

    def _poll(self) -> list[TrialOutcome]:
        """One look at the runs in flight. A master that does not answer (restarting, a
        network hiccup) costs a poll, not the search: the runs stay in flight."""
        self._last_poll = self.clock()
        ids = sorted({r.experiment_id for r in self.in_flight.values()})
        try:
            experiments = {e.id: e for e in self.det.list_experiments(experiment_ids=ids)}
        except transient_errors() as exc:
            self.log(f"cannot poll the master ({type(exc).__name__}: {exc}); trying again")
            return []
        timeout = self.search.runner.trial_timeout_s
        outcomes = []
        for key, run in list(self.in_flight.items()):
            experiment = experiments.get(run.experiment_id)
            if experiment is None or _state(experiment) in TERMINAL_STATES:
                try:
                    outcome = self._outcome(run, experiment)
                except transient_errors() as exc:
                    self.log(f"trial {run.trial_id}: cannot read its result yet ({exc})")
                    continue
                del self.in_flight[key]
                outcomes.append(outcome)
            elif timeout is not None and self._last_poll - run.started > timeout:
                del self.in_flight[key]
                self.kill(run, f"longer than runner.trial_timeout_s={timeout:g}")
                message = f"killed after {timeout:g} s"
                outcomes.append(_failed(run.trial_id, run.length, "timeout", message))
        return outcomes

    def _outcome(self, run: Run, experiment: Any | None) -> TrialOutcome:
        """What a finished run's experiment produced (its trial's result report)."""
        t, n = run.trial_id, run.length
        if experiment is None:
            return self._settle(run, _failed(t, n, "canceled", "its experiment was deleted"))
        state = _state(experiment)
        trials = experiment.list_trials()
        if not trials:
            message = f"experiment {experiment.id} ended {state} before its trial started"
            return self._settle(run, _failed(t, n, "error", message))
        trial = trials[0]
        run.det_trial_id = int(trial.id)
        result = read_result(trial)
        if result is not None and (state == "COMPLETED" or not result.get("ok")):
            # A failure report wins over how the experiment ended (an InvalidHP trial that
            # outlived its grace period is killed, CANCELED, yet invalid).
            return self._settle(run, outcome_from_result(t, n, result))
        if state == "COMPLETED":
            message = (
                f"experiment {experiment.id} completed without a result report (group "
                f"{RESULT_GROUP}); is its entrypoint python3 -m hwnas.trials.train?"
            )
            return self._settle(run, _failed(t, n, "error", message))
        if state == "CANCELED":
            who = "this driver" if experiment.id in self.killed else "a user"
            return self._settle(run, _failed(t, n, "canceled", f"killed by {who}"))
        message = f"experiment {experiment.id} ended {state} (see its trial's logs)"
        return self._settle(run, _failed(t, n, "error", message))

    def _settle(self, run: Run, outcome: TrialOutcome) -> TrialOutcome:
        run.ok = outcome.ok
        if outcome.ok:
            self.log(f"trial {run.trial_id}: run to {run.length} done")
        return outcome


@contextlib.contextmanager
def config_file(config: Mapping[str, Any]) -> Iterator[Path]:
    """The config as a YAML file for ``create_experiment`` (which reads a path as text).

    Given a dict, the SDK dumps it with ruamel (YAML 1.2) and leaves ``off``/``on``/``yes``/
    ``no`` unquoted; the master parses with ``github.com/ghodss/yaml`` (YAML 1.1,
    ``master/pkg/schemas/util.go JSONFromYaml``), where they are booleans -- a trial would get
    ``amp: false`` for ``"off"``. PyYAML's dumper quotes every string YAML 1.1 would read as
    something else, so the master reads back exactly these values."""
    fd, name = tempfile.mkstemp(prefix="hwnas-run-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(dict(config), fh, sort_keys=False)
        yield Path(name)
    finally:
        os.unlink(name)


def read_result(trial: Any) -> dict[str, Any] | None:
    """The latest result report of a Determined trial (``Trial.iter_metrics``), or None."""
    latest = None
    for report in trial.iter_metrics(RESULT_GROUP):
        if latest is None or report.steps_completed >= latest.steps_completed:
            latest = report
    if latest is None:
        return None
    text = (latest.metrics or {}).get(RESULT_KEY)
    try:
        result = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        result = None
    if not isinstance(result, dict) or "ok" not in result:
        logger.warning("trial %s: unreadable result report %r", trial.id, text)
        return None
    return result


def _state(experiment: Any) -> str:
    state = experiment.state
    return str(getattr(state, "name", state)).removeprefix("STATE_")


def _failed(trial_id: int, length: int, kind: str, message: str) -> TrialOutcome:
    return TrialOutcome(trial_id, length, False, kind=kind, message=message)


__all__ = [
    "BACKEND_STATE_VERSION",
    "TERMINAL_STATES",
    "DeterminedBackend",
    "Run",
    "SdkBackendError",
    "master_version",
    "needs_max_length",
    "read_result",
]
