"""The ``hwnas`` command: each room registers its own sub-commands."""

from __future__ import annotations

import argparse
import importlib
import sys

import hwnas

# Modules providing ``add_parser(subparsers)``; handlers set via ``set_defaults(handler=...)``
# return an exit code. Imported lazily so ``hwnas space`` does not pay for torch.
ROOM_CLIS = ("hwnas.spaces.cli", "hwnas.searchers.cli", "hwnas.latency.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwnas", description="Hardware-aware neural architecture search."
    )
    parser.add_argument("--version", action="version", version=f"hwnas {hwnas.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module_name in ROOM_CLIS:
        importlib.import_module(module_name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
