"""What an architecture IS: genotypes, canonical keys, encodings and torch builders."""

from __future__ import annotations

from typing import Any

from hwnas.registry import Registry, UnknownNameError
from hwnas.spaces.base import ArchitectureError, SearchSpace

#: Search spaces by name; built-in ones register themselves with ``@SPACES.register(...)``.
SPACES: Registry[type[SearchSpace]] = Registry(
    "search space", ("hwnas.spaces.nb201", "hwnas.spaces.mobilenet", "hwnas.spaces.darts")
)


def space_names() -> tuple[str, ...]:
    """The registered search spaces."""
    return SPACES.names()


def get_space(name: str, **options: Any) -> SearchSpace:
    """Construct the search space registered as ``name`` with its keyword options."""
    try:
        cls = SPACES.get(name)
    except UnknownNameError as exc:
        raise ArchitectureError(str(exc)) from None
    return cls(**options)


__all__ = ["SPACES", "ArchitectureError", "SearchSpace", "get_space", "space_names"]
