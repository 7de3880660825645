"""Command-line pieces every hwnas command shares: a parser whose errors are one line, and
argument types that refuse nonsense (``--batch 0``, ``--threads 0``) before any work starts.

A leaf module (standard library only), so each room's command line may use it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

#: Exit status of a usage error (argparse's, kept for every bad-input error).
EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line on stderr, exit 2:
    ``PROG: error: MESSAGE (see PROG --help)``. Sub-parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(EXIT_USAGE)


def _integer(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, batch sizes, threads)."""
    return _integer(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seeds)."""
    return _integer(text, 0)


def positive_float(text: str) -> float:
    """A finite number > 0 (durations, thresholds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a warm-up that may be skipped)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON (``C=8``, ``depths=[1,2]``), else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"option {text!r} must look like KEY=VALUE")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def add_space_option(parser: argparse.ArgumentParser) -> None:
    """``--option KEY=VALUE`` (repeatable): a search space constructor option, the one form
    every command takes them in (``hwnas space``, ``hwnas latency``)."""
    parser.add_argument(
        "--option",
        dest="option",
        action="append",
        default=[],
        type=key_value,
        metavar="KEY=VALUE",
        help="search space option, VALUE read as JSON (repeatable), e.g. --option C=8",
    )


__all__ = [
    "EXIT_USAGE",
    "OneLineParser",
    "add_space_option",
    "fraction",
    "key_value",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
]
