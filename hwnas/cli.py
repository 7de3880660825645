"""The ``hwnas`` command: ``search``, ``report`` and ``export`` run and read local searches;
``space`` and ``latency`` come from their rooms (``hwnas.spaces.cli``, ``hwnas.latency.cli``).

Every known error is one line on stderr, ``hwnas: error: ...``, naming the file, field or
value at fault. Exit statuses (README, "Errors and exit codes"):

* 0 — done: the search spent its budget with at least one evaluated trial; the command did
  what it was asked.
* 1 — the work ran and failed: a search stopped after ``budget.max_consecutive_failures``
  failures in a row or ended with no trial evaluated; a latency measurement failed.
* 2 — bad input, nothing started: a bad argument, an invalid config, a latency backend or a
  dataset unusable on this machine, an unreadable state, a folder that cannot be written.
* 3 — busy: another hwnas search holds the run folder's lock.
* 130 — interrupted (Ctrl-C, SIGTERM): the state is saved; ``--resume`` continues.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import hwnas
from hwnas.arguments import OneLineParser, positive_int

# Room commands: modules providing ``add_parser(subparsers)``; handlers set via
# ``set_defaults(handler=...)`` return an exit code. Imported lazily so ``hwnas space`` does
# not pay for torch.
ROOM_CLIS = ("hwnas.spaces.cli", "hwnas.latency.cli")

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_BUSY, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

#: Known errors by (module, class), most specific first, with their exit status. Looked up
#: in ``sys.modules`` only: an error's class is loaded whenever one can have been raised.
KNOWN_ERRORS = (
    ("hwnas.driver.run_lock", "RunBusyError", EXIT_BUSY),
    ("hwnas.latency.errors", "BackendUnavailableError", EXIT_BAD_INPUT),
    ("hwnas.latency.errors", "LatencyError", EXIT_FAILED),
    ("hwnas.searchers.config", "ConfigError", EXIT_BAD_INPUT),
    ("hwnas.driver.local", "RunnerError", EXIT_BAD_INPUT),
    ("hwnas.export", "ExportCommandError", EXIT_BAD_INPUT),
    ("hwnas.spaces.base", "ArchitectureError", EXIT_BAD_INPUT),
    ("hwnas.searchers.arch2vec.pretrain", "ModelFileError", EXIT_BAD_INPUT),
    ("hwnas.driver.determined.warm_start", "WarmStartError", EXIT_BAD_INPUT),
)


def _error(message: str) -> None:
    print(f"hwnas: error: {message}", file=sys.stderr)


def one_line(exc: BaseException) -> str:
    """An error message on one line; an ``OSError`` names its path."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return " ".join(str(exc).split()) or type(exc).__name__


def exit_status(exc: BaseException) -> int | None:
    """The exit status of a known error, or None for anything else (a bug: traceback)."""
    for module_name, class_name, status in KNOWN_ERRORS:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if cls is not None and isinstance(exc, cls):
            return status
    if isinstance(exc, OSError):
        return EXIT_BAD_INPUT
    return None


def _default_out(config: Path) -> Path:
    return Path("runs") / config.stem


def search_exit_status(summary: object) -> int:
    """0 for a search that finished with a result, 1 for one that stopped on failures or
    has no evaluated trial, 130 for an interrupted one."""
    if getattr(summary, "interrupted", False):
        return EXIT_INTERRUPTED
    if getattr(summary, "outcome", "") == "stopped" or not getattr(summary, "completed", 0):
        return EXIT_FAILED
    return EXIT_OK


def cmd_search(args: argparse.Namespace) -> int:
    """Start a search from CONFIG, or continue the one in ``--resume DIR``."""
    from hwnas.driver.local import run_search
    from hwnas.summary import print_search_summary

    if args.resume is None and args.config is None:
        _error("give a CONFIG to start a search or --resume DIR to continue one")
        return EXIT_BAD_INPUT
    if args.resume is not None and args.out is not None:
        _error("--out applies to a new search; --resume DIR continues the search in DIR")
        return EXIT_BAD_INPUT
    from hwnas.driver.determined.sdk_search import determined_search_runner

    budget = {"max_trials": args.max_trials} if args.max_trials is not None else None
    # Trials on a Determined cluster (--backend determined, or resuming such a search).
    runner = determined_search_runner(args)
    if runner is not None:
        summary = runner()
    elif args.resume is not None:
        summary = run_search(
            args.config, args.resume, resume=True, budget=budget, concurrency=args.concurrency
        )
    else:
        out = args.out if args.out is not None else _default_out(args.config)
        warm = _warm_start_records(args.warm_start)
        summary = run_search(
            args.config, out, budget=budget, concurrency=args.concurrency, warm_start=warm
        )
    print_search_summary(summary)
    status = search_exit_status(summary)
    if status == EXIT_FAILED:
        why = summary.reason if summary.outcome == "stopped" else "no trial was evaluated"
        last = f"; last failure: {summary.last_failure}" if summary.last_failure else ""
        _error(f"search failed: {why}{last} (trial logs: {summary.out_dir}/trials/)")
    return status


def _warm_start_records(source: str | None) -> list | None:
    """Records of ``--warm-start`` (files only without a Determined client; see
    ``hwnas.driver.determined.warm_start``)."""
    if not source:
        return None
    from hwnas.driver.determined.warm_start import load_warm_start

    return load_warm_start(source)


def cmd_report(args: argparse.Namespace) -> int:
    """Re-render pareto.json, trials.csv and the plots from DIR/state.json."""
    from hwnas.driver.local import render_report

    for path in render_report(args.dir):
        print(f"wrote {path}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """Export front member ``--rank`` of DIR as ONNX + architecture JSON + weights."""
    from hwnas.export import describe, export_member

    print(describe(export_member(args.dir, args.rank, args.dest)))
    return EXIT_OK


def add_search_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``search``, ``report`` and ``export``."""
    search = subparsers.add_parser(
        "search",
        help="run a search (trials as local child processes, or Determined experiments)",
        description="Run the search in CONFIG on this machine, or continue one with --resume "
        "DIR. A resumed search may change its budget (--max-trials, or a CONFIG whose "
        "budget/runner sections differ); a finished search continues while the new budget "
        "allows. Exit status: 0 done, 1 the search failed, 2 bad input, 3 DIR in use, "
        "130 interrupted (state saved).",
    )
    search.add_argument(
        "config",
        nargs="?",
        type=Path,
        help="search config YAML (with --resume: optional, may change only budget and runner)",
    )
    search.add_argument(
        "--out", type=Path, default=None, help="output folder (default: runs/<config name>)"
    )
    search.add_argument(
        "--resume", type=Path, default=None, metavar="DIR", help="continue the search saved in DIR"
    )
    search.add_argument(
        "--max-trials",
        type=positive_int,
        default=None,
        metavar="N",
        help="trials in total (overrides budget.max_trials; with --resume, extends the search)",
    )
    search.add_argument(
        "--concurrency",
        type=positive_int,
        default=None,
        metavar="N",
        help="trials at once (default: one per GPU, else min(2, CPUs, budget.max_concurrent))",
    )
    search.add_argument(
        "--warm-start",
        default=None,
        metavar="SOURCE",
        help="start from earlier results: pareto.json/trials.csv/state.json or a folder holding "
        "one; with --backend determined also experiment:<id> or latest:<label>",
    )
    determined = search.add_argument_group(
        "Determined", "run every trial as an experiment on a Determined 0.37/0.38 cluster"
    )
    determined.add_argument(
        "--backend", choices=("local", "determined"), default="local", help="default: local"
    )
    determined.add_argument("--master", default=None, help="master URL (default: $DET_MASTER)")
    determined.add_argument(
        "--trial-experiment",
        type=Path,
        default=None,
        metavar="FILE",
        help="Determined settings of each trial's experiment (image, resources, entrypoint; "
        "default: experiment_yamls/det_trials_gpu.yaml)",
    )
    determined.add_argument(
        "--project",
        default=None,
        metavar="[WORKSPACE/]PROJECT",
        help="where the experiments go (default: Uncategorized/<search name>)",
    )
    search.set_defaults(handler=cmd_search)

    report = subparsers.add_parser(
        "report",
        help="re-render a search's Pareto report",
        description="Re-render pareto.json, trials.csv, pareto.png and hypervolume.png "
        "from DIR/state.json.",
    )
    report.add_argument("dir", type=Path, help="search output folder")
    report.set_defaults(handler=cmd_report)

    export = subparsers.add_parser(
        "export",
        help="export a front member as ONNX + architecture JSON + weights",
        description="Export front member --rank of DIR/pareto.json (rank 1: best by the "
        "first objective among feasible front members).",
    )
    export.add_argument("dir", type=Path, help="search output folder")
    export.add_argument(
        "--rank", type=positive_int, default=1, help="front rank to export (default 1)"
    )
    export.add_argument(
        "--dest", type=Path, default=None, help="destination folder (default: DIR/export/rank<K>)"
    )
    export.set_defaults(handler=cmd_export)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="hwnas", description="Hardware-aware neural architecture search.")
    parser.add_argument(
        "--version",
        action="version",
        version=f"hwnas {hwnas.__version__}",
        help="print the version and exit",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_search_commands(sub)
    for module_name in ROOM_CLIS:
        importlib.import_module(module_name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:  # outside a search's own handling (it saves and returns 130)
        _error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:
        status = exit_status(exc)
        if status is None:
            raise
        _error(one_line(exc))
        return status


if __name__ == "__main__":
    sys.exit(main())
