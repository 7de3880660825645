"""What an architecture IS: genotypes, canonical keys, encodings and torch builders."""

from __future__ import annotations

from typing import Any

from hwnas.spaces.base import ArchitectureError, SearchSpace

SPACE_NAMES = ("nb201", "mobilenet")


def get_space(name: str, **options: Any) -> SearchSpace:
    """Construct the search space registered as ``name`` with its keyword options."""
    if name == "nb201":
        from hwnas.spaces.nb201 import NB201Space

        return NB201Space(**options)
    if name == "mobilenet":
        from hwnas.spaces.mobilenet import MobileNetSpace

        return MobileNetSpace(**options)
    raise ArchitectureError(f"unknown search space {name!r}; known: {', '.join(SPACE_NAMES)}")


__all__ = ["SPACE_NAMES", "ArchitectureError", "SearchSpace", "get_space"]
