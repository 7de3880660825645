"""The ``hwnas`` command: one sub-command group per room, each registered by that room."""

from __future__ import annotations

import argparse
import importlib
import sys

# (sub-command, module providing ``add_parser(subparsers)``); each handler returns an exit code.
COMMANDS = (
    ("space", "spaces.cli"),
    ("search", "searchers.cli"),
    ("report", "searchers.cli"),
    ("export", "searchers.cli"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hwnas", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    registered: set[str] = set()
    for _, module_name in COMMANDS:
        if module_name in registered:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # room not built yet
        module.add_parser(sub)
        registered.add(module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
