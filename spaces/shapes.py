"""Checks shared by the torch builders: input shapes and class counts."""

from __future__ import annotations

from numbers import Integral
from typing import Any

from hwnas.spaces.base import ArchitectureError


def _positive_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and int(value) >= 1


def check_build_args(num_classes: int, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Validate ``num_classes`` and a ``(channels, height, width)`` shape; return the shape."""
    if not _positive_int(num_classes):
        raise ArchitectureError(f"num_classes must be a positive int, got {num_classes!r}")
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else ()
    if len(shape) != 3 or not all(_positive_int(v) for v in shape):
        raise ArchitectureError(
            "input_shape must be three positive ints (channels, height, width), "
            f"got {input_shape!r}"
        )
    return (int(shape[0]), int(shape[1]), int(shape[2]))
