"""What may change when a saved search continues: its budget and where trials run, nothing else.

``hwnas search --resume DIR [CONFIG] [--max-trials N]`` continues the search saved in DIR.
A CONFIG given with it must describe the same search: only ``budget.*`` (how much more to try)
and ``runner.*`` (timeouts, devices) may differ; any other change would mix two searches in one
state, so it is refused naming the first field that differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from hwnas.searchers.config import BudgetConfig, ConfigError, SearchConfig, field_error

#: Top-level sections a resumed search may change.
CHANGEABLE = ("budget", "runner")


def first_difference(old: Any, new: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first dotted field where two JSON-like values differ, with both values."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in [*old, *(k for k in new if k not in old)]:
            found = first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
            if found is not None:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            found = first_difference(a, b, f"{path}.{i}")
            if found is not None:
                return found
        return None
    return None if old == new else (path or "<root>", old, new)


def resumed_config(
    saved: SearchConfig,
    saved_source: str,
    given: SearchConfig | None = None,
    given_source: str = "<config>",
    budget: Mapping[str, Any] | None = None,
) -> SearchConfig:
    """The config a resumed search runs with: ``saved``, with ``given``'s budget and runner
    (``ConfigError`` naming the field when ``given`` changes anything else), then the
    ``budget`` overrides from the command line (e.g. ``{"max_trials": 50}``)."""
    config = saved
    if given is not None:
        old = saved.model_dump(mode="json")
        new = given.model_dump(mode="json")
        for section in CHANGEABLE:
            old.pop(section), new.pop(section)
        found = first_difference(old, new)
        if found is not None:
            field, before, after = found
            raise field_error(
                given_source,
                field,
                f"differs from the saved search ({saved_source} has {before!r}); a resumed "
                f"search may change only {', '.join(f'{s}.*' for s in CHANGEABLE)}: start a "
                "new search (another --out) to change the rest",
                after,
            )
        config = saved.model_copy(update={s: getattr(given, s) for s in CHANGEABLE})
    return with_budget(config, budget)


def with_budget(config: SearchConfig, budget: Mapping[str, Any] | None) -> SearchConfig:
    """``config`` with some budget fields replaced (``{"max_trials": 50}``), validated."""
    if not budget:
        return config
    try:
        new_budget = BudgetConfig.model_validate({**config.budget.model_dump(), **budget})
    except ValidationError as exc:
        problems = "; ".join(
            f"budget.{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        )
        raise ConfigError(problems) from None
    return config.model_copy(update={"budget": new_budget})


__all__ = ["CHANGEABLE", "first_difference", "resumed_config", "with_budget"]
