"""What an architecture IS: genotypes, canonical keys, encodings and torch builders."""

from __future__ import annotations

import inspect
from typing import Any

from hwnas.registry import Registry, UnknownNameError
from hwnas.spaces.base import ArchitectureError, SearchSpace

#: Search spaces by name; built-in ones register themselves with ``@SPACES.register(...)``.
SPACES: Registry[type[SearchSpace]] = Registry(
    "search space", ("hwnas.spaces.nb201", "hwnas.spaces.mobilenet", "hwnas.spaces.darts")
)


class UnknownOptionError(ArchitectureError, TypeError):
    """A space option its constructor does not take: an ``ArchitectureError`` naming the
    accepted ones, and a ``TypeError`` like the call it stands for."""


def space_names() -> tuple[str, ...]:
    """The registered search spaces."""
    return SPACES.names()


def get_space(name: str, **options: Any) -> SearchSpace:
    """Construct the search space registered as ``name`` with its keyword options; an unknown
    name or option, or a bad value, is an ``ArchitectureError`` naming it."""
    try:
        cls = SPACES.get(name)
    except UnknownNameError as exc:
        raise ArchitectureError(str(exc)) from None
    try:
        inspect.signature(cls).bind(**options)
    except TypeError:
        accepted = [
            p.name
            for p in inspect.signature(cls).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        unknown = sorted(set(options) - set(accepted))
        raise UnknownOptionError(
            f"space {name!r} has no option {', '.join(map(repr, unknown)) or '?'}; "
            f"its options: {', '.join(accepted) or 'none'}"
        ) from None
    return cls(**options)


__all__ = [
    "SPACES",
    "ArchitectureError",
    "SearchSpace",
    "UnknownOptionError",
    "get_space",
    "space_names",
]
