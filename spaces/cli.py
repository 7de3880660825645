"""``hwnas space``: explore a search space (info, sample, validate) from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from hwnas.arguments import add_space_option, non_negative_int
from hwnas.spaces import ArchitectureError, SearchSpace, get_space, space_names


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``space`` with sub-commands ``info``, ``sample`` and ``validate``."""
    space = subparsers.add_parser(
        "space",
        help="explore a search space (info, sample, validate)",
        description="Explore a search space: its size and options, random samples, and "
        "whether an architecture string is valid.",
    )
    sub = space.add_subparsers(dest="space_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("space", choices=space_names(), help="search space name")
        add_space_option(p)

    info = sub.add_parser("info", help="size, unique count and options of a space")
    common(info)
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(handler=_info)

    sample = sub.add_parser("sample", help="draw architectures uniformly, one per line")
    common(sample)
    sample.add_argument("--n", type=non_negative_int, default=5, help="how many (default 5)")
    sample.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    sample.set_defaults(handler=_sample)

    validate = sub.add_parser("validate", help="check an architecture; print its normal form")
    common(validate)
    validate.add_argument("arch", help="architecture string")
    validate.set_defaults(handler=_validate)


def _space(args: argparse.Namespace) -> SearchSpace:
    return get_space(args.space, **dict(args.option))


def _run(args: argparse.Namespace, body: Any) -> int:
    try:
        return body(_space(args))
    except ArchitectureError as exc:
        print(f"hwnas: error: {exc}", file=sys.stderr)
        return 2


def space_info(space: SearchSpace) -> dict[str, Any]:
    """What ``hwnas space info`` reports: name, size, unique count (where cheap), options."""
    unique = getattr(space, "unique_count", None)
    return {
        "space": space.name,
        "size": space.size(),
        "unique": unique() if unique is not None else None,
        "space_options": space.space_options(),
        "options": space.options(),
    }


def _info(args: argparse.Namespace) -> int:
    def body(space: SearchSpace) -> int:
        info = space_info(space)
        if args.json:
            print(json.dumps(info, indent=2))
            return 0
        unique = info["unique"]
        lines = {
            "space": info["space"],
            "size": f"{info['size']:,}",
            "unique": f"{unique:,}" if unique is not None else "(not computed)",
            **{key: json.dumps(value) for key, value in info["options"].items()},
        }
        width = max(len(key) for key in lines) + 2
        for key, value in lines.items():
            print(f"{key + ':':<{width}}{value}")
        return 0

    return _run(args, body)


def _sample(args: argparse.Namespace) -> int:
    def body(space: SearchSpace) -> int:
        rng = np.random.default_rng(args.seed)
        for _ in range(args.n):
            print(space.sample(rng))
        return 0

    return _run(args, body)


def _validate(args: argparse.Namespace) -> int:
    def body(space: SearchSpace) -> int:
        print(space.validate(args.arch))
        return 0

    return _run(args, body)
