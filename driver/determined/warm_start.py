"""Earlier results for a new sweep to continue from (scheduled / recurring sweeps).

A source is either a file or directory inside the context (an exported ``pareto.json`` /
``trials.json`` / ``trials.csv``, the local backend's ``state.json``, or a downloaded searcher
checkpoint holding ``hwnas_method.json``), ``experiment:<id>``: an earlier Determined trial
experiment read through the SDK (``determined.experimental.client``; each trial's hparams and
its validation metrics), or ``latest:<label>``: the newest finished experiment carrying that
label (the searcher labels its trial experiment ``hwnas-sweep:<search name>``, so a recurring
sweep names its own earlier runs; none yet means a cold start). When that experiment belongs to
a search run through the SDK backend (one experiment per run, labelled
``hwnas-search:<search id>``), every experiment of that search is read: the whole previous
sweep, each architecture at the longest length it was trained to. Every source becomes the
same list of records, which ``SearchMethod.warm_start`` takes::

    {"arch": "<string>", "space": "nb201", "metrics": {...}, "length": 9}

(``length`` is the longest training a result was measured at; ``space`` may be absent).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_EXPERIMENT_RE = re.compile(r"^(?:experiment|exp):(\d+)$")
_LATEST_RE = re.compile(r"^latest:(.+)$")
#: States of an experiment whose trials' results are final (the SDK's ExperimentState names).
FINISHED_STATES = ("COMPLETED", "CANCELED", "ERROR")
#: Files looked for, in this order, when the source is a directory.
DIRECTORY_FILES = (
    "hwnas_method.json",
    "state.json",
    "report/trials.json",
    "trials.json",
    "report/trials.csv",
    "trials.csv",
    "report/pareto.json",
    "pareto.json",
)


class WarmStartError(ValueError):
    """The warm-start source cannot be read; the message names it and what is wrong."""


def sweep_label(search_name: str) -> str:
    """The label the searcher puts on its trial experiment (``latest:<label>`` finds it)."""
    return f"hwnas-sweep:{search_name}"


def load_warm_start(source: str, *, client: Any = None) -> list[dict[str, Any]]:
    """Records from ``source``: a path, ``experiment:<id>`` or ``latest:<label>`` (the last two
    read through ``client``, by default ``determined.experimental.client``)."""
    source = source.strip()
    by_id, latest = _EXPERIMENT_RE.match(source), _LATEST_RE.match(source)
    if not (by_id or latest):
        return records_from_path(Path(source))
    if client is None:
        from determined.experimental import client as det_client

        client = det_client
    if by_id:
        return records_from_experiment(client.get_experiment(int(by_id.group(1))))
    assert latest is not None
    experiment = latest_experiment(client, latest.group(1))
    if experiment is None:
        return []
    labels = getattr(experiment, "labels", None) or ()
    search = next((x for x in labels if x.startswith(SEARCH_PREFIX)), None)
    if search is not None:
        return records_from_search(client, search.removeprefix(SEARCH_PREFIX))
    return records_from_experiment(experiment)


def latest_experiment(client: Any, label: str) -> Any | None:
    """The finished experiment with ``label`` and the highest id, or None."""
    state_enum = getattr(client, "ExperimentState", None)
    if state_enum is None:  # a Determined object rather than the client module
        from determined.experimental.client import ExperimentState as state_enum
    states = [getattr(state_enum, name) for name in FINISHED_STATES]
    experiments = client.list_experiments(labels=[label], states=states)
    return max(experiments, key=lambda e: e.id, default=None)


#: Label prefix of every experiment of an SDK-backend search (``search_label``).
SEARCH_PREFIX = "hwnas-search:"


def records_from_search(client: Any, search_id: str) -> list[dict[str, Any]]:
    """Records from every finished run of an SDK-backend search: each architecture once, at
    the longest length a run of it reported (its result report, else its validation
    metrics). The search's own progress experiment (no ``arch``) is skipped."""
    from hwnas.driver.determined.sdk_backend import read_result

    best: dict[str, dict[str, Any]] = {}
    for experiment in client.list_experiments(labels=[SEARCH_PREFIX + search_id]):
        for trial in experiment.list_trials():
            hparams = trial.hparams or {}
            if not isinstance(hparams.get("arch"), str):
                continue
            result = read_result(trial)
            if result is not None and result.get("ok"):
                metrics = {k: v for k, v in result["metrics"].items() if _usable(v)}
                length = int(float(metrics.get("epochs", hparams.get("target_length", 0))))
                record = {"arch": hparams["arch"], "metrics": metrics, "length": length}
            else:
                try:
                    [record] = records_from_experiment(_OneTrial(experiment.id, trial))
                except WarmStartError:
                    continue  # failed or never validated
            if hparams.get("space"):
                record["space"] = hparams["space"]
            known = best.get(record["arch"])
            if known is None or (record["length"] or 0) > (known["length"] or 0):
                best[record["arch"]] = record
    if not best:
        raise WarmStartError(
            f"search {search_id}: no finished run with an 'arch' hyperparameter and metrics"
        )
    return list(best.values())


class _OneTrial:
    """An experiment view holding one trial (for ``records_from_experiment``)."""

    def __init__(self, experiment_id: int, trial: Any) -> None:
        self.id, self._trial = experiment_id, trial

    def list_trials(self) -> list[Any]:
        return [self._trial]


# -- files -----------------------------------------------------------------------------------
def records_from_path(path: Path) -> list[dict[str, Any]]:
    """Records from a results file or a directory holding one (see ``DIRECTORY_FILES``)."""
    if path.is_dir():
        for name in DIRECTORY_FILES:
            if (path / name).is_file():
                return records_from_path(path / name)
        raise WarmStartError(
            f"{path}: no results file in this directory (looked for {', '.join(DIRECTORY_FILES)})"
        )
    if not path.is_file():
        raise WarmStartError(f"{path}: no such file")
    if path.suffix == ".csv":
        return _records_from_csv(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WarmStartError(f"{path}: cannot read JSON: {exc}") from None
    records = normalise_records(_record_list(data, path), str(path))
    if not records:
        raise WarmStartError(f"{path}: holds no finished results to warm-start from")
    return records


def _record_list(data: Any, path: Path) -> list[Any]:
    """The list of per-trial entries inside any of the JSON shapes we export."""
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        raise WarmStartError(f"{path}: expected a JSON list or object, got {type(data).__name__}")
    if "method" in data and "request_ids" in data:  # the Determined searcher's checkpoint
        return _record_list(data["method"], path)
    for key in ("records", "trials", "front", "pareto_front"):
        if isinstance(data.get(key), list | dict):
            value = data[key]
            return list(value.values()) if isinstance(value, dict) else value
    for key in ("method", "state", "search"):  # nested method state (local runner)
        if isinstance(data.get(key), dict):
            return _record_list(data[key], path)
    raise WarmStartError(
        f"{path}: no 'records', 'trials' or 'front' list found (keys: {sorted(data)[:10]})"
    )


def _records_from_csv(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if rows and "arch" not in rows[0]:
        raise WarmStartError(f"{path}: no 'arch' column (columns: {', '.join(rows[0])})")
    entries = []
    for row in rows:
        metrics = {k: _number(v) for k, v in row.items() if k not in _CSV_NON_METRICS}
        entry: dict[str, Any] = {"arch": row["arch"], "metrics": metrics}
        if row.get("space"):
            entry["space"] = row["space"]
        if row.get("status"):
            entry["status"] = row["status"]
        entries.append(entry)
    records = normalise_records(entries, str(path))
    if not records:
        raise WarmStartError(f"{path}: holds no finished results to warm-start from")
    return records


_CSV_NON_METRICS = ("arch", "space", "status", "trial_id")


def _number(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return {"true": True, "false": False}.get(text.lower(), text)


# -- normalising -----------------------------------------------------------------------------
_SKIP_STATUS = {
    "errored",
    "error",
    "failed",
    "invalid",
    "invalid_hp",
    "canceled",
    "user_canceled",
    "rejected",
}


def normalise_records(entries: Iterable[Any], source: str) -> list[dict[str, Any]]:
    """``{"arch", "metrics", "length"[, "space"]}`` for each entry that has results.

    Accepts flat entries (metric keys beside ``arch``), ``metrics`` dicts, or per-length
    ``metrics`` (``{"3": {...}, "9": {...}}``: the longest is kept). Entries without an arch or
    without any metric, and failed ones, are skipped.
    """
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise WarmStartError(f"{source}: entry {i} is not an object: {entry!r}")
        arch = entry.get("arch")
        if not isinstance(arch, str) or not arch:
            continue
        if str(entry.get("status", "")).lower() in _SKIP_STATUS:
            continue
        metrics, length = _pick_metrics(entry)
        if not metrics:
            continue
        record: dict[str, Any] = {"arch": arch, "metrics": metrics, "length": length}
        if isinstance(entry.get("space"), str):
            record["space"] = entry["space"]
        out.append(record)
    return out


def _pick_metrics(entry: Mapping[str, Any]) -> tuple[dict[str, Any], int | None]:
    # SearchMethod.records() has "results" ({length: metrics}) beside the latest "metrics".
    raw = entry.get("metrics_by_length") or entry.get("results") or entry.get("metrics")
    if isinstance(raw, list):  # [{"length": L, "metrics": {...}}, ...]
        raw = {str(item["length"]): item["metrics"] for item in raw if isinstance(item, Mapping)}
    if raw is None:
        raw = {k: v for k, v in entry.items() if k not in ("arch", "space", "status", "trial_id")}
    if not isinstance(raw, Mapping):
        return {}, None
    by_length = {k: v for k, v in raw.items() if isinstance(v, Mapping)}
    if by_length and len(by_length) == len(raw):
        longest = max(by_length, key=lambda k: float(k))
        return dict(by_length[longest]), int(float(longest))
    metrics = {k: v for k, v in raw.items() if _usable(v)}
    length = entry.get("length", metrics.get("epochs"))
    return metrics, None if length is None else int(float(length))


def _usable(value: Any) -> bool:
    if isinstance(value, bool | str):
        return True
    return isinstance(value, int | float) and math.isfinite(float(value))


# -- a Determined experiment through the SDK -------------------------------------------------
def records_from_experiment(experiment: Any) -> list[dict[str, Any]]:
    """Records from an earlier trial experiment (``client.get_experiment(id)``): each trial's
    hparams (``space``/``arch``) and its last validation metrics (the longest training)."""
    records = []
    for trial in experiment.list_trials():
        hparams = trial.hparams or {}
        arch = hparams.get("arch")
        if not isinstance(arch, str):
            continue  # not an hwnas trial
        last = None
        for report in trial.iter_metrics("validation"):
            if last is None or report.steps_completed >= last.steps_completed:
                last = report
        if last is None or not last.metrics:
            continue
        metrics = {k: v for k, v in dict(last.metrics).items() if _usable(v)}
        epochs = metrics.get("epochs", last.steps_completed)
        record: dict[str, Any] = {
            "arch": arch,
            "metrics": metrics,
            "length": int(float(epochs)),
            "space": hparams.get("space"),
        }
        records.append({k: v for k, v in record.items() if v is not None})
    if not records:
        raise WarmStartError(
            f"experiment {getattr(experiment, 'id', '?')}: no trial with an 'arch' "
            "hyperparameter and validation metrics (give the id of the trial experiment the "
            "searcher created, labelled hwnas-sweep:<search name>, not the searcher's own)"
        )
    return records


__all__ = [
    "DIRECTORY_FILES",
    "WarmStartError",
    "latest_experiment",
    "load_warm_start",
    "normalise_records",
    "records_from_experiment",
    "records_from_path",
    "records_from_search",
    "sweep_label",
]
