"""hwnas from Python (notebooks, scripts): run a search, or open a run folder, and get the
front and the trial table back.

``hwnas.search(config, out)`` runs what ``hwnas search CONFIG --out OUT`` runs (the local
backend: trials as child processes) and returns a ``SearchResult``; ``hwnas.open_run(out)``
reads a run folder (finished, interrupted or still running) into the same ``SearchResult``
without writing anything. Errors are the command's, raised: ``ConfigError`` (an invalid config
or one this machine cannot run, naming file and field), ``RunnerError``, ``RunBusyError``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class SearchResult:
    """A search's outcome: its ranked Pareto front and one row per trial."""

    out_dir: Path
    #: ``{"metric", "goal"}`` per objective, in the config's order.
    objectives: list[dict[str, str]]
    #: Front members, rank 1 first, as ``pareto.json`` lists them: ``rank``, ``trial_id``,
    #: ``arch``, ``feasible``, ``epochs``, ``status``, ``metrics``.
    front: list[dict[str, Any]]
    #: One dict per trial with ``trials.csv``'s columns (``trial_columns``, in order).
    trials: list[dict[str, Any]]
    trial_columns: list[str]
    #: ``finished``, ``stopped`` (after failures in a row), ``interrupted``, or ``running``
    #: (another process is running it now).
    outcome: str
    #: What the run did, when this result comes from ``search()`` (``hwnas.driver.local``).
    summary: Any = None

    @property
    def winner(self) -> dict[str, Any] | None:
        """Front rank 1 (best by the first objective among feasible members), if any."""
        return self.front[0] if self.front else None

    def trials_frame(self) -> Any:
        """The trial table as a ``pandas.DataFrame`` (pandas is not a dependency of hwnas)."""
        import pandas as pd

        return pd.DataFrame(self.trials, columns=self.trial_columns)

    def front_table(self) -> Any:
        """The front as a ``rich`` table (what ``hwnas search`` prints)."""
        from hwnas.summary import front_table

        return front_table(self.front, self.objectives)

    def __repr__(self) -> str:
        best = "" if self.winner is None else f", winner=trial {self.winner['trial_id']}"
        return (
            f"SearchResult({str(self.out_dir)!r}, {self.outcome}, {len(self.trials)} trials, "
            f"{len(self.front)} on the front{best})"
        )


def _config(config: Any) -> Any:
    """A path stays a path (its copy keeps the comments); a mapping is validated here."""
    from hwnas.searchers.config import SearchConfig, parse_config

    if config is None or isinstance(config, (str, Path, SearchConfig)):
        return config
    if isinstance(config, Mapping):
        return parse_config(config, "<config>")
    raise TypeError(f"config must be a path, a mapping or a SearchConfig, got {type(config)}")


def search(
    config: str | Path | Mapping[str, Any] | Any | None,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    max_trials: int | None = None,
    concurrency: int | None = None,
    progress: bool = True,
) -> SearchResult:
    """Run a local search and return its result.

    ``config``: a YAML path, a mapping with the YAML's content, or a ``SearchConfig`` (None
    with ``resume=True``: the saved one).
    ``out``: the run folder (default ``runs/<config name>``); it must not hold a search unless
    ``resume=True``, which continues it (``config`` may then change only budget and runner).
    ``max_trials`` overrides ``budget.max_trials`` (extends a resumed search).
    ``progress=False`` runs without the live display.
    """
    from hwnas.driver.local import run_search
    from hwnas.driver.progress import ProgressView

    cfg = _config(config)
    if out is None:
        if cfg is None:
            raise ValueError("give the run folder (out) of the search to resume")
        name = Path(cfg).stem if isinstance(cfg, (str, Path)) else cfg.name
        out = Path("runs") / name
    view = None if progress else ProgressView.for_stream(sys.stderr, quiet=True)
    summary = run_search(
        cfg,
        out,
        resume=resume,
        budget={"max_trials": max_trials} if max_trials is not None else None,
        concurrency=concurrency,
        progress=view,
    )
    result = open_run(out)
    result.summary = summary
    result.outcome = summary.outcome
    return result


def open_run(out_dir: str | Path) -> SearchResult:
    """Read the search in ``out_dir`` (its ``state.json``) without changing anything."""
    from hwnas.driver.local import STATE_FILE, load_state, restore_method
    from hwnas.driver.run_lock import is_locked
    from hwnas.report import compute_front, front_rows, trial_table

    out = Path(out_dir)
    state = load_state(out)
    method = restore_method(state, out / STATE_FILE)  # with the config it ran with
    records = sorted(method.records(), key=lambda r: r.trial_id)
    columns, table = trial_table(records)
    if is_locked(out):
        outcome = "running"
    elif method.abort_reason:
        outcome = "stopped"
    elif method.shut_down:
        outcome = "finished"
    else:
        outcome = "interrupted"
    return SearchResult(
        out_dir=out,
        objectives=[{"metric": o.metric, "goal": o.goal} for o in method.objectives.objectives],
        front=front_rows(compute_front(records, method.objectives)),
        trials=table,
        trial_columns=columns,
        outcome=outcome,
    )


__all__ = ["SearchResult", "open_run", "search"]
