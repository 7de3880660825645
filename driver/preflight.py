"""What a search checks on this machine before any trial: whatever would fail every trial.

``searchers.config`` checks what holds anywhere (names, options, constraints that can hold
together); this module checks what depends on the machine the trials run on:

* the latency backend runs here (``Backend.check_available()``: imports its runtime, needs no
  model), so ``trt-fp16`` on a CPU machine stops now instead of failing every trial;
* the dataset is where the trials will look (``hwnas.trials.data_paths``, loads nothing).

The output folder's writability is checked by the first write (``hwnas.driver.local``).
A Determined search runs its trials on the cluster's agents, not here: it leaves these checks
to each trial (``preflight(..., on_this_machine=False)`` says so in its notes).
"""

from __future__ import annotations

from hwnas.searchers.config import ConfigError, SearchConfig, field_error


class PreflightError(ConfigError):
    """A config that is valid in itself cannot run on this machine; names file and field."""


def check_latency_backend(config: SearchConfig, source: str) -> None:
    """The configured latency backend can measure on this machine."""
    lat = config.latency
    if not lat.enabled:
        return
    from hwnas.latency.backends import BackendOptions, get_backend
    from hwnas.latency.errors import BackendUnavailableError

    try:
        get_backend(lat.backend, BackendOptions(threads=lat.threads)).check_available()
    except BackendUnavailableError as exc:
        error = field_error(source, "latency.backend", f"cannot run here: {exc}", lat.backend)
        raise PreflightError(str(error)) from None


def check_data(config: SearchConfig, source: str) -> None:
    """The trials' dataset is present (or can be downloaded)."""
    from hwnas.trials.data_paths import data_problem

    problem = data_problem(config.data)
    if problem is not None:
        field, why = problem
        value = getattr(config.data, field.split(".")[-1])
        raise PreflightError(str(field_error(source, field, why, value)))


def preflight(config: SearchConfig, source: str, *, on_this_machine: bool = True) -> list[str]:
    """Raise ``PreflightError`` for the first problem found; return notes on what was not
    checked (``on_this_machine=False``: the trials run elsewhere, e.g. on Determined agents)."""
    if not on_this_machine:
        return [
            f"latency backend {config.latency.backend!r} and dataset "
            f"{config.data.dataset!r} are checked by each trial where it runs, not here"
        ]
    check_latency_backend(config, source)
    check_data(config, source)
    return []


__all__ = ["PreflightError", "check_data", "check_latency_backend", "preflight"]
