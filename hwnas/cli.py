"""The ``hwnas`` command: ``search``, ``report`` and ``export`` run and read local searches;
``space`` and ``latency`` come from their rooms (``hwnas.spaces.cli``, ``hwnas.latency.cli``).

Exit codes: 0 done, 1 the run failed or was interrupted (state saved), 2 bad input (an invalid
config names the field; nothing was started).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import hwnas

# Room commands: modules providing ``add_parser(subparsers)``; handlers set via
# ``set_defaults(handler=...)`` return an exit code. Imported lazily so ``hwnas space`` does
# not pay for torch.
ROOM_CLIS = ("hwnas.spaces.cli", "hwnas.latency.cli")

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _error(message: str) -> None:
    print(f"hwnas: error: {message}", file=sys.stderr)


def _default_out(config: Path) -> Path:
    return Path("runs") / config.stem


def cmd_search(args: argparse.Namespace) -> int:
    """Start a search from CONFIG, or continue the one in ``--resume DIR``."""
    from hwnas.driver.local import RunnerError, run_search
    from hwnas.searchers.config import ConfigError

    if args.resume is not None and args.config is not None:
        _error("give either CONFIG or --resume DIR, not both")
        return EXIT_BAD_INPUT
    if args.resume is None and args.config is None:
        _error("give a CONFIG to start a search or --resume DIR to continue one")
        return EXIT_BAD_INPUT
    if args.concurrency is not None and args.concurrency < 1:
        _error(f"--concurrency must be >= 1, got {args.concurrency}")
        return EXIT_BAD_INPUT
    from hwnas.driver.determined.sdk_search import determined_search_runner
    from hwnas.driver.determined.warm_start import WarmStartError

    try:
        # Trials on a Determined cluster (--backend determined, or resuming such a search).
        runner = determined_search_runner(args)
        if runner is not None:
            summary = runner()
        elif args.resume is not None:
            summary = run_search(None, args.resume, resume=True, concurrency=args.concurrency)
        else:
            out = args.out if args.out is not None else _default_out(args.config)
            warm = _warm_start_records(args.warm_start)
            summary = run_search(args.config, out, concurrency=args.concurrency, warm_start=warm)
    except (ConfigError, RunnerError, WarmStartError) as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    print(
        f"{summary.out_dir}: {summary.trials} trials ({summary.completed} evaluated, "
        f"{summary.failed} failed), {summary.events} events, {summary.elapsed_s:.0f} s; "
        f"{summary.reason}"
    )
    for path in summary.report_files:
        print(f"  wrote {path}")
    return EXIT_FAILED if summary.interrupted else EXIT_OK


def _warm_start_records(source: str | None) -> list | None:
    """Records of ``--warm-start`` (files only without a Determined client; see
    ``hwnas.driver.determined.warm_start``)."""
    if not source:
        return None
    from hwnas.driver.determined.warm_start import load_warm_start

    return load_warm_start(source)


def cmd_report(args: argparse.Namespace) -> int:
    """Re-render pareto.json, trials.csv and the plots from DIR/state.json."""
    from hwnas.driver.local import RunnerError, render_report
    from hwnas.searchers.config import ConfigError

    try:
        paths = render_report(args.dir)
    except (RunnerError, ConfigError) as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    for path in paths:
        print(f"wrote {path}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """Export front member ``--rank`` of DIR as ONNX + architecture JSON + weights."""
    from hwnas.driver.local import RunnerError
    from hwnas.export import ExportCommandError, describe, export_member

    try:
        exported = export_member(args.dir, args.rank, args.dest)
    except (ExportCommandError, RunnerError) as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    print(describe(exported))
    return EXIT_OK


def add_search_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``search``, ``report`` and ``export``."""
    search = subparsers.add_parser(
        "search",
        help="run a search (trials as local child processes, or Determined experiments)",
        description="Run the search in CONFIG on this machine, or continue one with --resume.",
    )
    search.add_argument("config", nargs="?", type=Path, help="search config YAML")
    search.add_argument(
        "--out", type=Path, default=None, help="output folder (default: runs/<config name>)"
    )
    search.add_argument(
        "--resume", type=Path, default=None, metavar="DIR", help="continue the search saved in DIR"
    )
    search.add_argument(
        "--concurrency",
        type=int,
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
    export.add_argument("--rank", type=int, default=1, help="front rank to export (default 1)")
    export.add_argument(
        "--dest", type=Path, default=None, help="destination folder (default: DIR/export/rank<K>)"
    )
    export.set_defaults(handler=cmd_export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwnas", description="Hardware-aware neural architecture search."
    )
    parser.add_argument("--version", action="version", version=f"hwnas {hwnas.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_search_commands(sub)
    for module_name in ROOM_CLIS:
        importlib.import_module(module_name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
