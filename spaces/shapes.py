"""Checks shared by the torch builders: input shapes and class counts."""

from __future__ import annotations

from spaces.base import ArchitectureError


def check_build_args(num_classes: int, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Validate ``num_classes`` and a ``(channels, height, width)`` shape; return the shape."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ArchitectureError(f"num_classes must be a positive int, got {num_classes!r}")
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape
    ):
        raise ArchitectureError(
            "input_shape must be three positive ints (channels, height, width), "
            f"got {input_shape!r}"
        )
    return shape  # type: ignore[return-value]
