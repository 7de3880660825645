"""A Determined master at its REST boundary, for the SDK backend's tests (no master runs here).

``MasterDouble`` is an HTTP server on localhost that answers the requests
``determined.experimental.client`` (0.38.1 and 0.37.0) and ``core_v2`` send. Every response
carries the keys the client's ``bindings.py`` ``from_json`` requires (determined 0.38.1
``determined/common/api/bindings.py``; the same classes and keys in 0.37.0 for every call used
here); the request shapes were captured from both clients. Behaviour follows the master's Go
code at tag ``v0.38.1`` (``0.37.0`` where it differs), cited per handler.

No agent runs here either: the double schedules each managed experiment's trial itself. When
the driver polls (``GET /api/v1/experiments``) it runs one trial process: the real trial
entrypoint ``hwnas.trials.train.run_trial`` with the hparams the master would hand the trial
(sampled from the submitted config by the master's own rules), a Core API context wired to
this double (metrics, progress, checkpoints and the early-exit report land here, as their REST
calls would), and ``tests/fake_trials.py``'s learning curves instead of training.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np
import yaml
from determined import core

from hwnas.trials.train import run_trial

#: ``authentication.py`` salts and hashes passwords client-side before ``/auth/login``.
PASSWORD_SALT = "GubPEmmotfiK9TMD6Zdw"
TERMINAL = {"COMPLETED", "CANCELED", "ERROR", "DELETED"}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def hashed(password: str) -> str:
    return hashlib.sha512((PASSWORD_SALT + password).encode()).hexdigest()


# -- the master's hyperparameter rules ------------------------------------------------------
def sample_hparams(section: Any) -> dict[str, Any]:
    """What a ``searcher: single`` trial receives from ``hyperparameters``:
    ``HyperparameterV0.UnmarshalJSON`` (master/pkg/schemas/expconf/hyperparameters_config.go:
    a map without ``type`` is nested, any non-map value a constant) and ``sampleOne``
    (master/pkg/searcher/hyperparameters.go: a constant is its value). Only constants and
    nesting are supported here: hwnas submits nothing else."""

    def one(value: Any, name: str) -> Any:
        if isinstance(value, dict):
            if "type" not in value:
                return {k: one(v, f"{name}.{k}") for k, v in value.items()}
            if value["type"] == "const":
                if set(value) != {"type", "val"}:  # hyperparameter-const.json
                    raise ApiError(400, f"hyperparameters.{name}: const takes only 'val'")
                return value["val"]
            raise ApiError(400, f"hyperparameters.{name}: the double samples constants only")
        return value

    if not isinstance(section, dict):
        raise ApiError(400, "hyperparameters must be a map")
    return {k: one(v, k) for k, v in section.items()}


@dataclass
class Trial:
    id: int
    experiment_id: int
    hparams: dict[str, Any]
    state: str = "ACTIVE"
    restarts: int = 0
    run_id: int = 0
    latest_checkpoint: str | None = None
    processes: int = 0
    reports: list[dict[str, Any]] = field(default_factory=list)
    progress: list[float] = field(default_factory=list)
    early_exit: str | None = None
    external_id: str | None = None
    start_time: str = field(default_factory=now)
    end_time: str | None = None

    def to_json(self) -> dict[str, Any]:
        # trialv1Trial (bindings): id, experimentId, hparams, restarts, startTime, state,
        # totalBatchesProcessed required.
        steps = max((r["steps"] for r in self.reports), default=0)
        out = {
            "id": self.id,
            "experimentId": self.experiment_id,
            "hparams": self.hparams,
            "restarts": self.restarts,
            "startTime": self.start_time,
            "state": f"STATE_{self.state}",
            "totalBatchesProcessed": steps,
            "taskId": f"{self.experiment_id}.{self.id}",
        }
        if self.end_time:
            out["endTime"] = self.end_time
        return out


@dataclass
class Experiment:
    id: int
    config: dict[str, Any]
    original_config: str
    project_id: int
    unmanaged: bool = False
    state: str = "ACTIVE"
    trial_ids: list[int] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    progress: float | None = None
    external_id: str | None = None
    start_time: str = field(default_factory=now)
    end_time: str | None = None

    @property
    def labels(self) -> list[str]:
        return list(self.config.get("labels") or [])

    def to_json(self, workspace_id: int) -> dict[str, Any]:
        # v1Experiment (bindings): archived, config, id, jobId, name, numTrials,
        # originalConfig, projectId, projectOwnerId, searcherType, startTime, state, username.
        out = {
            "id": self.id,
            "name": self.config.get("name") or f"Experiment {self.id}",
            "state": f"STATE_{self.state}",
            "archived": False,
            "config": self.config,
            "originalConfig": self.original_config,
            "jobId": f"job-{self.id}",
            "numTrials": len(self.trial_ids),
            "projectId": self.project_id,
            "projectOwnerId": 1,
            "searcherType": str((self.config.get("searcher") or {}).get("name", "single")),
            "startTime": self.start_time,
            "username": "determined",
            "labels": self.labels,
            "workspaceId": workspace_id,
            "unmanaged": self.unmanaged,
            "description": self.config.get("description") or "",
        }
        if self.progress is not None:
            out["progress"] = self.progress
        if self.end_time:
            out["endTime"] = self.end_time
        if self.external_id:
            out["externalExperimentId"] = self.external_id
        return out


class _NoSearcher:
    """``core_context.searcher`` of a trial without searcher operations: 0.38 gives
    ``SearcherContextMissing`` without ``max_length`` (and fabricates a fake operation with
    it); hwnas's trial must use neither."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the trial used core_context.searcher.{name}")


class _Train(core.DummyTrainContext):
    """The trial's reports, as ``POST /api/v1/trials/{id}/metrics`` (group, steps_completed,
    metrics), ``/progress`` (``is_raw``) and ``/early_exit`` would record them."""

    def __init__(self, master: MasterDouble, trial: Trial) -> None:
        super().__init__()
        self.master, self.trial = master, trial

    def _report_trial_metrics(self, group: str, steps_completed: int, metrics: dict, *a) -> None:
        if group == "validation":
            self._get_serializable_metrics(metrics)  # the real context refuses None values
        wire = json.loads(json.dumps(metrics))  # det.util.json_encode on the way out
        self.master._add_metrics(self.trial, group, int(steps_completed), wire)

    def report_progress(self, progress: float) -> None:
        if not 0 <= progress <= 1:  # TrainContext.report_progress (0.37 and 0.38)
            raise ValueError(f"Progress should be between 0 and 1, not {progress}")
        self.trial.progress.append(float(progress))
        self.master.experiments[self.trial.experiment_id].progress = float(progress)

    def report_early_exit(self, reason: core.EarlyExitReason) -> None:
        self.trial.early_exit = core.EarlyExitReason(reason).value


class _Checkpoint(core.DummyCheckpointContext):
    def __init__(self, dist: Any, storage_manager: Any, trial: Trial) -> None:
        super().__init__(dist, storage_manager)
        self.trial = trial

    def _report_checkpoint(self, storage_id: str, resources: Any = None, metadata: Any = None):
        super()._report_checkpoint(storage_id, resources, metadata)
        self.trial.latest_checkpoint = storage_id  # db.LatestCheckpointForTrial


class MasterDouble:
    """See the module docstring. ``version``: what ``GET /api/v1/master`` says and which
    rules apply ("0.37.0" or "0.38.1"). ``trial_factory``: ``FakeTrials``."""

    def __init__(
        self,
        trial_factory: Callable[[dict[str, Any]], Any],
        storage: str | Path,
        *,
        version: str = "0.38.1",
        seed: int = 0,
        users: dict[str, str] | None = None,
    ) -> None:
        self.trial_factory = trial_factory
        self.storage = Path(storage)
        self.version = version
        self.minor = int(version.split(".")[1])
        self.rng = np.random.default_rng(seed)
        self.users = users or {"determined": "Hwnas-test-1"}
        self.tokens: dict[str, str] = {}
        self.lock = threading.RLock()
        self.experiments: dict[int, Experiment] = {}
        self.trials: dict[int, Trial] = {}
        self.workspaces = {1: "Uncategorized"}
        self.projects: dict[int, dict[str, Any]] = {
            1: {"id": 1, "name": "Uncategorized", "workspaceId": 1}
        }
        self._ids = itertools.count(1)
        self.requests: list[tuple[str, str]] = []
        #: Called with each new managed experiment (a test may act as a user).
        self.on_create: Callable[[Experiment], None] | None = None
        #: [method, path regex, n]: the n-th such request is handled but its response is
        #: lost (500, as a dropped connection looks to the client), once.
        self.lose_response: list[list[Any]] = []
        self.server: ThreadingHTTPServer | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> MasterDouble:
        handler = type("Handler", (_Handler,), {"master": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    # -- reading what happened -----------------------------------------------------------------
    def managed(self) -> list[Experiment]:
        return [e for e in self.experiments.values() if not e.unmanaged]

    def unmanaged(self) -> list[Experiment]:
        return [e for e in self.experiments.values() if e.unmanaged]

    def trial_of(self, experiment: Experiment) -> Trial:
        return self.trials[experiment.trial_ids[0]]

    # -- user actions --------------------------------------------------------------------------
    def kill_experiment(self, experiment_id: int) -> None:
        """A user kills an experiment (web UI / ``det e kill``): STOPPING_KILLED, its trials
        are killed -> CANCELED (``experiment.go KillExperiment``, ``trial.go transition``)."""
        with self.lock:
            exp = self.experiments[experiment_id]
            if exp.state in TERMINAL:
                return
            for tid in exp.trial_ids:
                self._trial_ended(self.trials[tid], "CANCELED")

    def run_one(self) -> bool:
        """Run one runnable trial's process (seeded choice); False when none can run."""
        with self.lock:
            runnable = [
                t
                for e in self.managed()
                if e.state == "ACTIVE"
                for t in (self.trials[i] for i in e.trial_ids)
                if t.state == "ACTIVE"
            ]
            if not runnable:
                return False
            self._run_process(runnable[int(self.rng.integers(len(runnable)))])
            return True

    # -- the trial process ---------------------------------------------------------------------
    def _run_process(self, trial: Trial) -> None:
        """One allocation: ``run_trial`` under a Core API context wired here, then what
        ``trial.go handleAllocationExit`` makes of its exit."""
        trial.processes += 1
        trial.run_id += 1
        ctx = core._dummy_init(checkpoint_storage=str(self.storage))
        ctx.train = _Train(self, trial)
        ctx.searcher = _NoSearcher()
        ctx.checkpoint = _Checkpoint(ctx.distributed, ctx.checkpoint._storage_manager, trial)
        code, hang = 0, False
        try:
            with ctx:  # Context.__exit__: det.InvalidHP -> report_early_exit + exit(0)
                run_trial(
                    ctx,
                    dict(trial.hparams),
                    trial.latest_checkpoint,
                    trial_factory=self.trial_factory,
                )
        except SystemExit as exc:
            code = int(exc.code or 0)
            cause = getattr(exc.__context__, "__cause__", None)
            hang = trial.early_exit is not None and bool(getattr(cause, "hang", False))
        except Exception:
            code = 1
        exp = self.experiments[trial.experiment_id]
        if hang:
            # Alive InvalidHPKillDelay (10 s) after reporting InvalidHP: STOPPING_KILLED ->
            # CANCELED, exited early USER_CANCELED (trial.go SetUserInitiatedEarlyExit).
            self._trial_ended(trial, "CANCELED")
        elif code != 0:
            trial.restarts += 1  # per trial (trial.go ``restarts``)
            if trial.restarts > int(exp.config.get("max_restarts", 5)):
                self._trial_ended(trial, "ERROR")
        else:
            # A clean exit (the run reached its length, or exit(0) after InvalidHP):
            # UserRequestedStop -> COMPLETED.
            self._trial_ended(trial, "COMPLETED")

    def _trial_ended(self, trial: Trial, state: str) -> None:
        """The trial's terminal state; a ``single`` searcher then shuts its experiment down
        (searcher.go ``TrialClosed``: every requested trial closed -> Shutdown with Failure
        when it errored, Cancel when it was canceled) and it ends in that state."""
        trial.state, trial.end_time = state, now()
        exp = self.experiments[trial.experiment_id]
        if all(self.trials[t].state in TERMINAL for t in exp.trial_ids):
            exp.state, exp.end_time = state, now()

    def _add_metrics(self, trial: Trial, group: str, steps: int, metrics: dict) -> None:
        """``ReportTrialMetrics`` (api_trials.go): a group must be non-empty without '.'
        (model/metrics.go ``MetricGroup.Validate``); stored per report, validation under
        ``validation_metrics``, any other group under ``avg_metrics`` (model/experiment.go)."""
        if not group or "." in group:
            raise ApiError(400, f"metric group {group!r} is invalid")
        trial.reports.append(
            {
                "id": next(self._ids),
                "group": group,
                "steps": steps,
                "metrics": metrics,
                "run": trial.run_id,
                "time": now(),
            }
        )

    # -- handlers --------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        for verb, pattern, fn in ROUTES:
            m = re.fullmatch(pattern, path)
            if verb == method and m:
                return fn(self, *m.groups(), query=query, body=body)
        raise ApiError(404, f"the double has no route {method} {path}")

    def _workspace_id(self, project_id: int) -> int:
        return int(self.projects[project_id]["workspaceId"])

    def _exp_json(self, exp: Experiment) -> dict[str, Any]:
        return exp.to_json(self._workspace_id(exp.project_id))

    def _project_json(self, p: dict[str, Any]) -> dict[str, Any]:
        # v1Project (bindings): archived, errorMessage, id, immutable, key, name, notes,
        # numActiveExperiments, numExperiments, numRuns, state, userId, username, workspaceId.
        n = sum(1 for e in self.experiments.values() if e.project_id == p["id"])
        return {
            "id": p["id"],
            "name": p["name"],
            "workspaceId": p["workspaceId"],
            "archived": False,
            "errorMessage": "",
            "immutable": p["id"] == 1,
            "key": f"P{p['id']}",
            "numActiveExperiments": 0,
            "numExperiments": n,
            "numRuns": n,
            "userId": 1,
            "username": "determined",
            "description": p.get("description", ""),
            "notes": [],
            "state": "WORKSPACE_STATE_UNSPECIFIED",
        }

    @staticmethod
    def _page(items: list[Any], query: dict[str, list[str]]) -> dict[str, Any]:
        """v1Pagination: ``read_paginated`` needs endIndex and total and stops at the end."""
        offset = int(query.get("offset", ["0"])[0] or 0)
        return {
            "offset": offset,
            "limit": 0,
            "startIndex": offset,
            "endIndex": len(items),
            "total": len(items),
        }

    def login(self, *, query: Any, body: Any) -> Any:
        """``POST /api/v1/auth/login``: a wrong password is 403 (``login_with_cache``)."""
        user = body.get("username")
        if user not in self.users or body.get("password") != hashed(self.users[user]):
            raise ApiError(403, "invalid credentials")
        token = f"token-{next(self._ids)}"
        self.tokens[token] = user
        return {"token": token, "user": self._user(user)}

    def me(self, *, query: Any, body: Any) -> Any:
        return {"user": self._user("determined")}

    @staticmethod
    def _user(name: str) -> dict[str, Any]:
        return {"id": 1, "username": name, "admin": True, "active": True}  # v1User

    def master_info(self, *, query: Any, body: Any) -> Any:
        # v1GetMasterResponse: clusterId, clusterName, hasCustomLogo, masterId,
        # strictJobQueueControl, version.
        return {
            "clusterId": "double",
            "clusterName": "double",
            "hasCustomLogo": False,
            "masterId": "double",
            "strictJobQueueControl": False,
            "version": self.version,
        }

    def get_workspaces(self, *, query: Any, body: Any) -> Any:
        name = query.get("name", [None])[0]
        found = [(i, n) for i, n in self.workspaces.items() if name in (None, n)]
        # v1Workspace: archived, errorMessage, id, immutable, name, numExperiments,
        # numProjects, pinned, state, userId, username.
        out = [
            {
                "id": i,
                "name": n,
                "archived": False,
                "errorMessage": "",
                "immutable": i == 1,
                "numExperiments": 0,
                "numProjects": 1,
                "pinned": False,
                "state": "WORKSPACE_STATE_UNSPECIFIED",
                "userId": 1,
                "username": "determined",
            }
            for i, n in found
        ]
        return {"workspaces": out, "pagination": self._page(out, query)}

    def get_projects(self, workspace_id: str, *, query: Any, body: Any) -> Any:
        name = query.get("name", [None])[0]
        found = [
            self._project_json(p)
            for p in self.projects.values()
            if p["workspaceId"] == int(workspace_id) and name in (None, p["name"])
        ]
        return {"projects": found, "pagination": self._page(found, query)}

    def post_project(self, workspace_id: str, *, query: Any, body: Any) -> Any:
        """``PostProject``: a name already in the workspace is refused."""
        if any(
            p["name"] == body["name"] and p["workspaceId"] == int(workspace_id)
            for p in self.projects.values()
        ):
            raise ApiError(409, f"project {body['name']} already exists")
        pid = max(self.projects) + 1
        self.projects[pid] = {
            "id": pid,
            "name": body["name"],
            "workspaceId": int(workspace_id),
            "description": body.get("description") or "",
        }
        return {"project": self._project_json(self.projects[pid])}

    # experiments
    def _project_for(self, config: dict[str, Any], project_id: int | None) -> int:
        """core_experiment.go ``getCreateExperimentsProject``: the request's projectId wins
        when > 1, else the config's workspace + project names, else Uncategorized."""
        if project_id and project_id > 1:
            if project_id not in self.projects:
                raise ApiError(404, f"project {project_id} not found")
            return project_id
        ws, name = config.get("workspace"), config.get("project")
        if ws and name:
            for p in self.projects.values():
                if p["name"] == name and self.workspaces.get(p["workspaceId"]) == ws:
                    return int(p["id"])
            raise ApiError(404, f"project {ws}/{name} not found")
        return 1

    def _check_config(self, config: dict[str, Any]) -> None:
        """What the master refuses at creation (core_experiment.go ``parseCreateExperiment``:
        schema completeness, ``AssertCurrent``)."""
        searcher = config.get("searcher") or {}
        name = searcher.get("name")
        if name == "custom" and self.minor >= 38:
            # v0.38.1 master/pkg/schemas/expconf/searcher_config.go AssertCurrent
            raise ApiError(
                400,
                "invalid experiment configuration: the 'custom' searcher has "
                "been removed and is not valid for new experiments",
            )
        if name != "single":
            raise ApiError(400, f"the double runs searcher 'single' only, not {name!r}")
        if not searcher.get("metric"):
            raise ApiError(400, "searcher.metric is required")  # eventuallyRequired
        if self.minor < 38 and "max_length" not in searcher:
            # 0.37.0 schemas/expconf/v0/searcher-single.json: eventuallyRequired max_length
            raise ApiError(400, "invalid experiment configuration: searcher.max_length: required")
        if not config.get("entrypoint"):
            raise ApiError(400, "entrypoint is required")

    def create_experiment(self, *, query: Any, body: Any) -> Any:
        """``POST /api/v1/experiments`` (v1CreateExperimentRequest: config as YAML text,
        modelDefinition, projectId, activate; ``unmanaged`` from core_v2)."""
        config = yaml.safe_load(body["config"])
        if body.get("unmanaged"):
            exp = self._new_unmanaged(config, body["config"], None)
        else:
            exp = self._new_managed(config, body)
        return {"experiment": self._exp_json(exp), "config": exp.config}

    def _new_managed(self, config: dict[str, Any], body: dict[str, Any]) -> Experiment:
        self._check_config(config)
        files = [f["path"] for f in body.get("modelDefinition") or []]
        entry = config["entrypoint"].split()
        if entry[:2] == ["python3", "-m"]:
            module_file = entry[2].removeprefix("hwnas.").replace(".", "/") + ".py"
            if module_file not in files:
                raise ApiError(400, f"the model definition has no {module_file} for {entry}")
        for f in body.get("modelDefinition") or []:
            base64.b64decode(f.get("content") or "")  # v1File.content is base64
        hparams = sample_hparams(config.get("hyperparameters") or {})
        source = (config.get("searcher") or {}).get("source_trial_id")
        latest = None
        if source is not None:
            # experiment.go checkpointFromTrialIDOrUUID -> the new trial's latest_checkpoint.
            src = self.trials.get(int(source))
            if src is None or src.latest_checkpoint is None:
                raise ApiError(400, f"no checkpoint found for source trial {source}")
            latest = src.latest_checkpoint
        exp = Experiment(
            next(self._ids),
            config,
            body["config"],
            self._project_for(config, body.get("projectId")),
            files=files,
        )
        trial = Trial(next(self._ids), exp.id, hparams, latest_checkpoint=latest)
        exp.trial_ids.append(trial.id)
        self.experiments[exp.id], self.trials[trial.id] = exp, trial
        if self.on_create is not None:
            self.on_create(exp)
        return exp

    def _new_unmanaged(self, config: dict[str, Any], text: str, external: str | None) -> Any:
        searcher = config.get("searcher") or {}
        if self.minor < 38 and "max_length" not in searcher:
            # The 0.37 master checks unmanaged configs for completeness too.
            raise ApiError(400, "invalid experiment configuration: searcher.max_length: required")
        exp = Experiment(
            next(self._ids),
            config,
            text,
            self._project_for(config, None),
            unmanaged=True,
            external_id=external,
        )
        self.experiments[exp.id] = exp
        return exp

    def put_experiment(self, external: str, *, query: Any, body: Any) -> Any:
        """``PUT /api/v1/experiments/by-external-id/{id}``: the experiment with that external
        id, created when new (core_v2 resuming an unmanaged search)."""
        external = unquote(external)
        exp = next((e for e in self.experiments.values() if e.external_id == external), None)
        if exp is None:
            inner = body.get("createExperimentRequest", body)
            exp = self._new_unmanaged(yaml.safe_load(inner["config"]), inner["config"], external)
        return {"experiment": self._exp_json(exp), "config": exp.config}

    def _matches(self, exp: Experiment, query: dict[str, list[str]]) -> bool:
        """``GetExperiments`` (api_experiment.go): every requested label must be present
        (``string_to_array(?, ',') <@ config.labels``), ``name`` is a case-insensitive
        substring, ``states`` and ``experimentIdFilter.incl`` filter exactly."""
        labels = [x for v in query.get("labels", []) for x in v.split(",")]
        if not set(labels) <= set(exp.labels):
            return False
        ids = {int(i) for i in query.get("experimentIdFilter.incl", [])}
        if ids and exp.id not in ids:
            return False
        states = set(query.get("states", []))
        if states and f"STATE_{exp.state}" not in states:
            return False
        name = query.get("name", [""])[0].lower()
        pid = query.get("projectId", [None])[0]
        return name in str(exp.config.get("name", "")).lower() and pid in (
            None,
            str(exp.project_id),
        )

    def list_experiments(self, *, query: Any, body: Any) -> Any:
        self.run_one()  # time passes while the driver polls: one trial process runs
        found = [self._exp_json(e) for e in self.experiments.values() if self._matches(e, query)]
        return {"experiments": found, "pagination": self._page(found, query)}

    def get_experiment(self, eid: str, *, query: Any, body: Any) -> Any:
        return {"experiment": self._exp_json(self._exp(eid))}

    def _exp(self, eid: str) -> Experiment:
        try:
            return self.experiments[int(eid)]
        except KeyError:
            raise ApiError(404, f"experiment {eid} not found") from None

    def kill(self, eid: str, *, query: Any, body: Any) -> Any:
        self.kill_experiment(self._exp(eid).id)
        return {}

    def list_trials(self, eid: str, *, query: Any, body: Any) -> Any:
        found = [self.trials[t].to_json() for t in self._exp(eid).trial_ids]
        return {"trials": found, "pagination": self._page(found, query)}

    def get_trial(self, tid: str, *, query: Any, body: Any) -> Any:
        return {"trial": self._trial(tid).to_json()}

    def _trial(self, tid: str | int) -> Trial:
        try:
            return self.trials[int(tid)]
        except KeyError:
            raise ApiError(404, f"trial {tid} not found") from None

    def trial_metrics(self, *, query: Any, body: Any) -> str:
        """``GET /api/v1/trials/metrics/trial_metrics`` (streamed, one JSON object per line:
        ``{"result": v1GetMetricsResponse}``; v1MetricsReport per report)."""
        group = query["group"][0]
        key = "validation_metrics" if group == "validation" else "avg_metrics"
        out = []
        for tid in query.get("trialIds", []):
            for r in self._trial(tid).reports:
                if r["group"] == group:
                    out.append(
                        {
                            "id": r["id"],
                            "trialId": int(tid),
                            "trialRunId": r["run"],
                            "totalBatches": r["steps"],
                            "endTime": r["time"],
                            "archived": False,
                            "group": group,
                            "metrics": {key: r["metrics"]},
                        }
                    )
        return json.dumps({"result": {"metrics": out}}) + "\n"

    # unmanaged trials (core_v2)
    def create_trial(self, *, query: Any, body: Any) -> Any:
        exp = self._exp(body["experimentId"])
        trial = Trial(next(self._ids), exp.id, body.get("hparams") or {})
        exp.trial_ids.append(trial.id)
        self.trials[trial.id] = trial
        return {"trial": trial.to_json()}

    def put_trial(self, *, query: Any, body: Any) -> Any:
        ext = body["externalTrialId"]
        found = next((t for t in self.trials.values() if t.external_id == ext), None)
        if found is None:
            found = self._trial(
                self.create_trial(query=query, body=body["createTrialRequest"])["trial"]["id"]
            )
            found.external_id = ext
        return {"trial": found.to_json()}

    def start_trial(self, tid: str, *, query: Any, body: Any) -> Any:
        """trials/api_trials.go ``StartTrial``: unmanaged only; without ``resume`` a started
        trial is refused; the run id goes up and the trial runs again."""
        trial = self._trial(tid)
        if not self.experiments[trial.experiment_id].unmanaged:
            raise ApiError(400, "only unmanaged trials are supported")
        if not body.get("resume") and trial.run_id:
            raise ApiError(400, "trial has already been started")
        trial.run_id += 1
        self._set_unmanaged_state(trial, "RUNNING")
        return {"trialRunId": trial.run_id, "stepsCompleted": 0}

    def patch_trial(self, tid: str, *, query: Any, body: Any) -> Any:
        trial = self._trial(tid)
        if body.get("state"):
            self._set_unmanaged_state(trial, body["state"].removeprefix("STATE_"))
        return {"trial": trial.to_json()}

    def _set_unmanaged_state(self, trial: Trial, state: str) -> None:
        trial.state = state
        exp = self.experiments[trial.experiment_id]
        exp.state = {"RUNNING": "ACTIVE"}.get(state, state)

    def post_metrics(self, tid: str, *, query: Any, body: Any) -> Any:
        m = body["metrics"]
        self._add_metrics(
            self._trial(tid), body["group"], int(m["stepsCompleted"]), m["metrics"]["avgMetrics"]
        )
        return {}

    def post_progress(self, tid: str, *, query: Any, body: Any) -> Any:
        trial = self._trial(tid)
        trial.progress.append(float(body["progress"]))
        self.experiments[trial.experiment_id].progress = float(body["progress"])
        return {}

    def run_prepare(self, *, query: Any, body: Any) -> Any:
        return {"storageId": 1}  # v1RunPrepareForReportingResponse

    def ok(self, *args: Any, query: Any, body: Any) -> Any:
        return {}


ROUTES: list[tuple[str, str, Callable[..., Any]]] = [
    ("POST", r"/api/v1/auth/login", MasterDouble.login),
    ("GET", r"/api/v1/me", MasterDouble.me),
    ("GET", r"/api/v1/master", MasterDouble.master_info),
    ("GET", r"/api/v1/workspaces", MasterDouble.get_workspaces),
    ("GET", r"/api/v1/workspaces/(\d+)/projects", MasterDouble.get_projects),
    ("POST", r"/api/v1/workspaces/(\d+)/projects", MasterDouble.post_project),
    ("POST", r"/api/v1/experiments", MasterDouble.create_experiment),
    ("PUT", r"/api/v1/experiments/by-external-id/([^/]+)", MasterDouble.put_experiment),
    ("GET", r"/api/v1/experiments", MasterDouble.list_experiments),
    ("GET", r"/api/v1/experiments/(\d+)", MasterDouble.get_experiment),
    ("POST", r"/api/v1/experiments/(\d+)/kill", MasterDouble.kill),
    ("GET", r"/api/v1/experiments/(\d+)/trials", MasterDouble.list_trials),
    ("GET", r"/api/v1/trials/metrics/trial_metrics", MasterDouble.trial_metrics),
    ("GET", r"/api/v1/trials/(\d+)", MasterDouble.get_trial),
    ("POST", r"/api/v1/trials", MasterDouble.create_trial),
    ("PUT", r"/api/v1/trials", MasterDouble.put_trial),
    ("POST", r"/api/v1/trials/(\d+)/start", MasterDouble.start_trial),
    ("PATCH", r"/api/v1/trials/(\d+)", MasterDouble.patch_trial),
    ("POST", r"/api/v1/trials/(\d+)/metrics", MasterDouble.post_metrics),
    ("POST", r"/api/v1/trials/(\d+)/progress", MasterDouble.post_progress),
    ("POST", r"/api/v1/runs/start", MasterDouble.run_prepare),
    ("POST", r"/task-logs", MasterDouble.ok),  # core/_log_shipper.py _ship (not under /api)
]


class _Handler(BaseHTTPRequestHandler):
    master: MasterDouble

    def _serve(self, method: str) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        master = self.master
        with master.lock:
            master.requests.append((method, url.path))
            try:
                if url.path != "/api/v1/auth/login":
                    auth = self.headers.get("Authorization", "")
                    if auth.removeprefix("Bearer ") not in master.tokens:
                        raise ApiError(401, "unauthenticated")
                result = master.handle(method, url.path, parse_qs(url.query), body)
                status = 200
                for lost in master.lose_response:
                    if lost[0] == method and re.fullmatch(lost[1], url.path):
                        lost[2] -= 1
                        if lost[2] == 0:  # handled, but the answer never reaches the client
                            master.lose_response.remove(lost)
                            status, result = 500, {"error": {"error": "lost (injected)"}}
                        break
            except ApiError as exc:
                status, result = exc.status, {"error": {"error": exc.message}}
        text = result if isinstance(result, str) else json.dumps(result)
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, *args: Any) -> None:
        pass


__all__ = ["ApiError", "MasterDouble", "hashed", "sample_hparams"]
