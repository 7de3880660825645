"""``hwnas search CONFIG --backend determined``: the search on this machine, its trials on a
Determined cluster (0.37 or 0.38) through the Python SDK.

The search runs in the same driver as a local search (``hwnas.driver.local.run_search``: the
loop, ``state.json`` after every event, ``--resume``, the report) over
``sdk_backend.DeterminedBackend``. This module adds what is Determined's:

* ``determined.json`` in the output folder: the master, the trials' Determined settings (the
  trial experiment YAML, copied), the project and the search id, so ``hwnas search --resume
  DIR`` needs nothing else;
* the connection (``determined.experimental.client.Determined``: ``DET_USER``/``DET_PASS``,
  a cached ``det user login``, or the task's own token when the driver itself runs in a
  Determined task) and the project, created when missing;
* the search's own progress in the web UI: an unmanaged experiment (``core_v2``, in 0.37 and
  0.38) in the same project, whose validation metrics are the search's -- trials created and
  done, front size, hypervolume, best feasible accuracy -- and whose progress is the method's.
  ``tensorboard_mode=MANUAL``: the default AUTO imports torch or tensorflow to write
  tensorboard files for every report.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hwnas.atomic import write_json_atomic
from hwnas.driver.determined.experiment_config import load_yaml_mapping, search_label
from hwnas.driver.determined.progress import search_metrics
from hwnas.driver.determined.sdk_backend import DeterminedBackend, needs_max_length
from hwnas.driver.determined.warm_start import sweep_label
from hwnas.driver.local import STATE_FILE, RunnerError, RunSummary, load_state, run_search
from hwnas.driver.loop import SearchLoop
from hwnas.driver.preflight import preflight
from hwnas.driver.progress import ProgressView
from hwnas.searchers.config import SearchConfig, load_config
from hwnas.searchers.method import SearchMethod

logger = logging.getLogger("hwnas.determined")

SETTINGS_FILE = "determined.json"
DEFAULT_WORKSPACE = "Uncategorized"
#: Where ``--trial-experiment`` points by default (relative to the working directory).
DEFAULT_TRIAL_EXPERIMENT = "experiment_yamls/det_trials_gpu.yaml"


@dataclass
class SdkSettings:
    """What a Determined SDK search needs besides its search config (``determined.json``)."""

    search_id: str
    master: str | None
    trial_experiment: dict[str, Any]
    context_dir: str
    workspace: str = DEFAULT_WORKSPACE
    project: str | None = None  # None: the search's name
    poll_interval_s: float = 10.0
    report_progress: bool = True
    source: str = ""  # the trial experiment YAML it came from (for messages)
    extra: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def new_search_id(search_name: str) -> str:
        """Unique per search (labels name it): the search's name and 8 random hex digits."""
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in search_name)
        return f"{safe}-{secrets.token_hex(4)}"

    def save(self, out_dir: Path) -> None:
        write_json_atomic(out_dir / SETTINGS_FILE, asdict(self), indent=1)

    @classmethod
    def load(cls, out_dir: str | Path) -> SdkSettings:
        path = Path(out_dir) / SETTINGS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**data)
        except FileNotFoundError:
            raise RunnerError(f"{path}: not a Determined search (no {SETTINGS_FILE})") from None
        except (OSError, ValueError, TypeError) as exc:
            raise RunnerError(f"{path}: cannot read the Determined settings: {exc}") from None


def is_determined_run(out_dir: str | Path) -> bool:
    """Whether ``out_dir`` holds a search run through the Determined SDK backend."""
    return (Path(out_dir) / SETTINGS_FILE).is_file()


def connect(master: str | None) -> Any:
    """A ``Determined`` client (credentials as the SDK finds them: ``DET_USER``/``DET_PASS``,
    ``det user login``'s cache, or a Determined task's own token); ``RunnerError`` naming the
    master when it cannot be reached or refuses the login."""
    from determined.experimental import client

    from hwnas.driver.determined.sdk_backend import transient_errors

    try:
        return client.Determined(master=master)
    except transient_errors() as exc:
        where = master or "$DET_MASTER (or localhost:8080)"
        raise RunnerError(f"Determined master {where}: {type(exc).__name__}: {exc}") from None


def resolve_project(determined: Any, workspace: str, project: str) -> int:
    """The id of ``workspace``/``project``, creating the project when it does not exist."""
    from determined.common.api import errors

    try:
        ws = determined.get_workspace(workspace)
    except errors.NotFoundException:
        raise RunnerError(
            f"--project: workspace {workspace!r} does not exist on the master (create it, or "
            f"name one that does: WORKSPACE/PROJECT)"
        ) from None
    try:
        return int(ws.get_project(project).id)
    except errors.NotFoundException:
        logger.info("creating project %s/%s", workspace, project)
        return int(ws.create_project(project, description="hwnas searches").id)


class SearchProgress:
    """The search's own numbers in the web UI: one unmanaged experiment per search (core_v2),
    found again by its external id on resume. Failures to report are logged, never raised:
    the display must not stop the search."""

    def __init__(
        self,
        determined: Any,
        search: SearchConfig,
        settings: SdkSettings,
        out_dir: Path,
        *,
        max_length: bool,
    ) -> None:
        self.det, self.search, self.settings = determined, search, settings
        self.out_dir, self.max_length = out_dir, max_length
        self.context: Any = None
        self._hooks = (sys.exit, sys.excepthook)
        self.last: dict[str, float] | None = None
        self.last_progress: float | None = None
        self.experiment_id: int | None = None

    def start(self) -> None:
        from determined import core
        from determined.experimental import core_v2

        sid = self.settings.search_id
        searcher: dict[str, Any] = {
            "name": "single",
            "metric": "hypervolume",
            "smaller_is_better": False,
        }
        if self.max_length:
            searcher["max_length"] = 1  # 0.37 checks unmanaged configs for completeness too
        config = core_v2.Config(
            name=f"{self.search.name} (hwnas search {sid})",
            description="hwnas search progress: trials, front size, hypervolume",
            labels=["hwnas", "hwnas-progress", search_label(sid), sweep_label(self.search.name)],
            workspace=self.settings.workspace,
            project=self.settings.project or self.search.name,
            hparams={"search_id": sid, "search": self.search.model_dump(mode="json")},
            searcher=searcher,
            external_experiment_id=f"hwnas-search-{sid}",
            external_trial_id=f"hwnas-search-{sid}",
        )
        storage = self.out_dir / "determined-storage"
        storage.mkdir(exist_ok=True)
        # core_v2's heartbeat replaces sys.exit and sys.excepthook for good; put them back on
        # close (this runs inside the driver, maybe inside a test process).
        self._hooks = (sys.exit, sys.excepthook)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.context = core_v2.init_context(
                config=config,
                client=self.det,
                checkpoint_storage=str(storage.resolve()),
                tensorboard_mode=core.TensorboardMode.MANUAL,
            )
        self.context.start()
        self.experiment_id = self.context.info.trial.experiment_id

    def update(self, loop: SearchLoop, method: SearchMethod) -> None:
        if self.context is None:
            return
        try:
            metrics = search_metrics(method)
            if metrics != self.last:
                self.context.train.report_validation_metrics(
                    steps_completed=loop.events, metrics=metrics
                )
                self.last = metrics
            progress = min(1.0, max(0.0, float(method.progress())))
            if math.isfinite(progress) and progress != self.last_progress:
                self.context.train.report_progress(progress)
                self.last_progress = progress
        except Exception as exc:  # the display must never stop the search
            logger.warning("cannot report the search's progress to Determined: %s", exc)

    def close(self, finished: bool) -> None:
        """Mark the progress trial COMPLETED when the search finished, else ERROR (interrupted
        or failed; a resumed driver starts it again: ``StartTrial`` with ``resume``)."""
        if self.context is None:
            return
        try:
            error = None if finished else RuntimeError("the search stopped before its end")
            self.context.close(type(error) if error else None, error, None)
        except Exception as exc:
            logger.warning("cannot close the search's progress experiment: %s", exc)
        finally:
            sys.exit, sys.excepthook = self._hooks
        self.context = None


def _poll_interval(given: float | None) -> float:
    """Seconds between polls of the runs in flight: given, else ``$HWNAS_DETERMINED_POLL_S``,
    else 10."""
    if given is not None:
        return float(given)
    text = os.environ.get("HWNAS_DETERMINED_POLL_S", "10")
    try:
        value = float(text)
    except ValueError:
        raise RunnerError(f"HWNAS_DETERMINED_POLL_S={text!r}: not a number of seconds") from None
    if not value >= 0:
        raise RunnerError(f"HWNAS_DETERMINED_POLL_S={text!r}: must be >= 0")
    return value


def run_determined_search(
    config: str | Path | SearchConfig | None,
    out_dir: str | Path,
    *,
    resume: bool = False,
    master: str | None = None,
    trial_experiment: str | Path | None = None,
    context_dir: str | Path = ".",
    project: str | None = None,
    warm_start: Sequence[Mapping[str, Any]] | str | None = None,
    determined: Any = None,
    poll_interval_s: float | None = None,
    report_progress: bool = True,
    progress: ProgressView | None = None,
    stop_after_events: int | None = None,
    write_report: bool = True,
) -> RunSummary:
    """Run (or resume) a search whose trials are Determined experiments; see the module
    docstring. ``project`` is ``PROJECT`` or ``WORKSPACE/PROJECT`` (default: the search's
    name in ``Uncategorized``); ``warm_start`` is a source for ``warm_start.load_warm_start``
    (``latest:<label>`` reads earlier experiments through this client) or its records;
    ``determined`` an existing client (tests)."""
    out = Path(out_dir)
    if resume:
        settings = SdkSettings.load(out)
        search = load_config(out / "config.yaml")
    else:
        if config is None:
            raise RunnerError("a config is needed to start a search")
        search = config if isinstance(config, SearchConfig) else load_config(config)
        if (out / "state.json").exists():
            raise RunnerError(
                f"{out} already holds a search (state.json); use --resume {out} to continue it"
            )
        trial_path = Path(trial_experiment or DEFAULT_TRIAL_EXPERIMENT)
        workspace, _, name = (project or "").rpartition("/")
        settings = SdkSettings(
            search_id=SdkSettings.new_search_id(search.name),
            master=master or os.environ.get("DET_MASTER"),
            trial_experiment=load_yaml_mapping(trial_path),
            context_dir=str(Path(context_dir).resolve()),
            workspace=workspace or DEFAULT_WORKSPACE,
            project=name or None,
            poll_interval_s=_poll_interval(poll_interval_s),
            report_progress=report_progress,
            source=str(trial_path),
        )
    det = determined if determined is not None else connect(settings.master)
    records = warm_start
    if isinstance(warm_start, str):
        from hwnas.driver.determined.warm_start import load_warm_start

        records = load_warm_start(warm_start, client=det) if not resume else None
    project_id = resolve_project(det, settings.workspace, settings.project or search.name)
    held: dict[str, Any] = {}

    def factory(cfg: SearchConfig, run_dir: Path, log: Any) -> DeterminedBackend:
        for note in preflight(cfg, str(run_dir / "config.yaml"), on_this_machine=False):
            log(note)
        if not resume:
            settings.save(run_dir)
        backend = DeterminedBackend(
            det,
            cfg,
            search_id=settings.search_id,
            trial_config=settings.trial_experiment,
            context_dir=settings.context_dir,
            project_id=project_id,
            poll_interval_s=settings.poll_interval_s,
            log=log,
        )
        held["backend"] = backend
        if settings.report_progress:
            reporter = SearchProgress(
                det, cfg, settings, run_dir, max_length=needs_max_length(backend.version)
            )
            try:
                reporter.start()
                log(f"search progress: experiment {reporter.experiment_id}")
            except Exception as exc:
                log(f"cannot show the search's progress in Determined ({exc}); going on")
            held["reporter"] = reporter
        return backend

    def on_change(loop: SearchLoop, method: SearchMethod) -> None:
        if "reporter" in held:
            held["reporter"].update(loop, method)

    summary: RunSummary | None = None
    try:
        summary = run_search(
            config if not resume else None,
            out,
            resume=resume,
            progress=progress,
            stop_after_events=stop_after_events,
            write_report=write_report,
            backend_factory=factory,
            on_change=on_change,
            warm_start=records if isinstance(records, list) else None,
            check_machine=False,  # the trials run on the cluster's agents, not here
        )
    finally:
        if summary is not None and not summary.interrupted and "backend" in held:
            killed = held["backend"].finish()
            if killed:
                logger.info("killed experiments still running: %s", killed)
                state = load_state(out)  # record the kills with the search
                state["backend"] = held["backend"].state_dict()
                write_json_atomic(out / STATE_FILE, state, allow_nan=True)
        if "reporter" in held:
            held["reporter"].close(finished=summary is not None and summary.finished)
    return summary


__all__ = [
    "DEFAULT_TRIAL_EXPERIMENT",
    "SETTINGS_FILE",
    "SdkSettings",
    "SearchProgress",
    "connect",
    "determined_search_runner",
    "is_determined_run",
    "resolve_project",
    "run_determined_search",
]


def determined_search_runner(args: Any) -> Any:
    """For ``hwnas search``: a callable running the search through this module when the
    command asks for it (``--backend determined``) or resumes such a search; else None."""
    if args.resume is not None and is_determined_run(args.resume):
        return lambda: run_determined_search(None, args.resume, resume=True)
    if getattr(args, "backend", "local") != "determined":
        if args.resume is None and any(
            getattr(args, name, None) for name in ("master", "trial_experiment", "project")
        ):
            raise RunnerError(
                "--master, --trial-experiment and --project need --backend determined"
            )
        return None
    if args.resume is not None:
        raise RunnerError(f"{args.resume}: not a Determined search (no {SETTINGS_FILE})")
    out = args.out if args.out is not None else Path("runs") / Path(args.config).stem
    return lambda: run_determined_search(
        args.config,
        out,
        master=args.master,
        trial_experiment=args.trial_experiment,
        project=args.project,
        warm_start=args.warm_start,
    )
