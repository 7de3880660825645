"""``python -m hwnas.latency measure|profile``: measure one architecture, or profile a space and fit
a predictor. ``add_parser`` lets ``hwnas`` mount the same commands as ``hwnas latency ...``."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwnas.arguments import (
    OneLineParser,
    add_space_option,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_int,
)
from hwnas.atomic import atomic_open
from hwnas.latency.errors import BackendUnavailableError, LatencyError
from hwnas.latency.target import MeasurementTarget
from hwnas.latency.timing import TimingConfig

#: Architectures a predictor needs to fit (``hwnas.latency.predictor.fit_predictor`` refuses
#: fewer), checked before anything is measured.
MIN_FIT = 5

#: Exit statuses, as ``hwnas`` documents them (README, "Errors and exit codes").
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _input_shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must look like 3x32x32, got {text!r}") from None
    if len(dims) != 3 or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"must be three positive dimensions CxHxW, got {text!r}")
    return dims


def _common(parser: argparse.ArgumentParser) -> None:
    from hwnas.latency.backends import backend_names
    from hwnas.spaces import space_names

    parser.add_argument(
        "--space", required=True, choices=space_names(), help="search space name, e.g. nb201"
    )
    add_space_option(parser)
    parser.add_argument(
        "--backend",
        default="ort-cpu",
        choices=backend_names(),
        help="latency backend (default ort-cpu); GPU ones need a GPU and their runtime",
    )
    parser.add_argument(
        "--precision", default=None, help="fp32 | fp16 | bf16 (default: the backend's own)"
    )
    parser.add_argument(
        "--batch", type=positive_int, default=1, help="batch size of the timed input (default 1)"
    )
    parser.add_argument(
        "--input",
        type=_input_shape,
        default=(3, 32, 32),
        metavar="CxHxW",
        help="one sample's shape (default 3x32x32)",
    )
    parser.add_argument(
        "--num-classes", type=positive_int, default=10, help="classifier outputs (default 10)"
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="intra-op threads of CPU backends (default 1)",
    )
    parser.add_argument(
        "--clock",
        default="auto",
        choices=("auto", "wall", "thread_cpu"),
        help="CPU clock: auto is the thread's CPU time on one thread, else wall (default auto)",
    )
    parser.add_argument(
        "--reference",
        action="store_true",
        help="time alternately with a fixed reference net; adds the ratio (ONNX backends)",
    )
    parser.add_argument("--compile", action="store_true", help="torch backends: torch.compile")
    parser.add_argument("--cuda-graph", action="store_true", help="torch-cuda: CUDA graph")
    defaults = TimingConfig()
    parser.add_argument(
        "--warmup",
        type=non_negative_float,
        default=defaults.warmup_s,
        metavar="S",
        help=f"warm-up seconds before timing (default {defaults.warmup_s})",
    )
    parser.add_argument(
        "--min-runs",
        type=positive_int,
        default=defaults.min_runs,
        help=f"timed runs at least (default {defaults.min_runs})",
    )
    parser.add_argument(
        "--min-duration",
        type=non_negative_float,
        default=defaults.min_duration_s,
        metavar="S",
        help=f"timed seconds at least (default {defaults.min_duration_s})",
    )
    parser.add_argument(
        "--max-attempts",
        type=positive_int,
        default=defaults.max_attempts,
        help=f"re-measurements when too noisy (default {defaults.max_attempts})",
    )
    parser.add_argument(
        "--cv-threshold",
        type=non_negative_float,
        default=defaults.cv_threshold,
        help=f"coefficient of variation above which to re-measure (default "
        f"{defaults.cv_threshold})",
    )


def _space(args: argparse.Namespace) -> Any:
    from hwnas.spaces import get_space

    return get_space(args.space, **dict(args.option))


def _target(args: argparse.Namespace) -> MeasurementTarget:
    """What the command measures, validated before any work starts."""
    return MeasurementTarget(
        backend=args.backend,
        precision=args.precision,
        batch=args.batch,
        input_shape=args.input,
        num_classes=args.num_classes,
        threads=args.threads,
        clock=args.clock,
        compile=args.compile,
        cuda_graph=args.cuda_graph,
        reference=args.reference,
    )


def _timing(args: argparse.Namespace) -> TimingConfig:
    return TimingConfig(
        warmup_s=args.warmup,
        min_runs=args.min_runs,
        min_duration_s=args.min_duration,
        max_attempts=args.max_attempts,
        cv_threshold=args.cv_threshold,
    )


def add_parser(sub: Any, name: str = "latency") -> argparse.ArgumentParser:
    """Register ``measure`` and ``profile`` under a ``latency`` sub-command."""
    parser = sub.add_parser(
        name,
        help="measure latency / profile a space",
        description="Measure one architecture's latency, or profile a space and fit a "
        "latency predictor.",
    )
    _fill(parser)
    return parser


def _fill(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="latency_command", required=True)
    measure = commands.add_parser(
        "measure",
        help="measure one architecture",
        description="Export one architecture to ONNX (or keep it in torch) and time it.",
    )
    _common(measure)
    measure.add_argument("--arch", required=True, help="architecture string of the space")
    measure.add_argument(
        "--cache", default=None, metavar="PATH", help="SQLite latency cache to read and fill"
    )
    measure.add_argument("--json", action="store_true", help="print the full JSON")
    measure.set_defaults(handler=_guard(run_measure))
    profile = commands.add_parser(
        "profile",
        help="measure a sample, fit and save a predictor",
        description="Measure a sample of the space, fit latency predictors and save one. "
        "Measurements are cached (by default beside --out), so an interrupted profile "
        "continues where it stopped when run again.",
    )
    _common(profile)
    profile.add_argument(
        "--n", type=positive_int, default=200, help="architectures to measure (default 200)"
    )
    profile.add_argument(
        "--seed", type=non_negative_int, default=0, help="sampling seed (default 0)"
    )
    profile.add_argument(
        "--kind",
        default="lookup",
        choices=("lookup", "ridge"),
        help="predictor to save (default lookup)",
    )
    profile.add_argument(
        "--test-fraction",
        type=fraction,
        default=0.2,
        help="share held out to report accuracy (default 0.2)",
    )
    profile.add_argument("--out", required=True, help="predictor JSON to write")
    profile.add_argument("--measurements", default=None, help="also write measurements (JSONL)")
    cache = profile.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache",
        default=None,
        metavar="PATH",
        help="SQLite latency cache (default: --out with suffix .latency.sqlite)",
    )
    cache.add_argument(
        "--no-cache", action="store_true", help="measure everything again, keep nothing"
    )
    profile.set_defaults(handler=_guard(run_profile))


def _guard(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run ``handler``; a known error becomes one line on stderr and an exit status: 2 for bad
    input (a backend unusable here, a bad architecture, option or setting, a path that cannot
    be written), 1 for a measurement that failed, 130 for Ctrl-C."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except KeyboardInterrupt:
            _say("interrupted")
            return EXIT_INTERRUPTED
        except BackendUnavailableError as exc:
            _say(str(exc))
            return EXIT_BAD_INPUT
        except LatencyError as exc:  # export or measurement failed
            _say(str(exc))
            return EXIT_FAILED
        except OSError as exc:
            _say(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
            return EXIT_BAD_INPUT
        except ValueError as exc:  # bad architecture, space option or target setting
            _say(str(exc))
            return EXIT_BAD_INPUT

    return run


def _say(message: str) -> None:
    print(f"hwnas: error: {' '.join(message.split())}", file=sys.stderr)


def run_measure(args: argparse.Namespace) -> int:
    """``measure``: one architecture, printed as a line (or JSON)."""
    from hwnas.latency.measure import measure_architecture

    target = _target(args)  # before building anything: a bad setting fails at once
    space = _space(args)
    arch = space.validate(args.arch)
    result = measure_architecture(space, arch, target, cache_path=args.cache, timing=_timing(args))
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    flag = "  UNSTABLE" if result.stats.unstable else ""
    print(
        f"{result.backend} {result.precision} batch {result.batch}: median "
        f"{summary['median_ms']:.4f} ms, p90 {summary['p90_ms']:.4f} ms, cv "
        f"{summary['cv']:.3f} ({summary['runs']} runs, {summary['attempts']} attempt(s)){flag}"
    )
    if result.info.get("reference"):
        ref = result.info["reference"]
        print(f"reference ratio {ref['ratio']:.4f} (reference median {ref['median_ms']:.4f} ms)")
    print(f"device: {result.to_metrics()['latency_device']}; cached: {result.cached}")
    return 0


def profile_cache_path(args: argparse.Namespace) -> Path | None:
    """Where ``profile`` caches measurements: ``--cache``, else beside ``--out``."""
    if args.no_cache:
        return None
    if args.cache:
        return Path(args.cache)
    return Path(args.out).with_suffix(".latency.sqlite")


def run_profile(args: argparse.Namespace) -> int:
    """``profile``: measure a sample (cached, resumable), fit, report and save a predictor."""
    import numpy as np
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from hwnas.latency.profile import fit_and_evaluate, measure_many, sample_unique

    console = Console(stderr=True)
    target = _target(args)  # before measuring anything: a bad setting fails at once
    target.create_backend().check_available()
    space = _space(args)
    timing = _timing(args)
    cache = profile_cache_path(args)
    archs = sample_unique(space, args.n, np.random.default_rng(args.seed))
    if len(archs) < args.n:
        console.print(f"[yellow]only {len(archs)} distinct architectures in the space")
    held_out = max(1, round(len(archs) * args.test_fraction))  # as fit_and_evaluate splits
    if len(archs) - held_out < MIN_FIT:
        raise ValueError(
            f"--n {args.n}: {len(archs) - held_out} architectures would be left to fit on after "
            f"holding out {held_out} (--test-fraction {args.test_fraction}); a predictor needs "
            f"{MIN_FIT}: use --n {MIN_FIT + held_out} or more"
        )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        console.print(f"measurements cached in {cache}")
    done = 0

    def advance(_: Any) -> None:
        nonlocal done
        done += 1
        progress.advance(task)

    try:
        with Progress(console=console) as progress:
            task = progress.add_task(f"measuring on {args.backend}", total=len(archs))
            results = measure_many(
                space, archs, target, cache_path=cache, timing=timing, on_result=advance
            )
    except KeyboardInterrupt:
        kept = (
            f"they are cached in {cache}: run the same command again to continue"
            if cache is not None
            else "nothing was kept (--no-cache)"
        )
        _say(f"interrupted after {done} of {len(archs)} measurements; {kept}")
        return EXIT_INTERRUPTED
    if args.measurements:
        with atomic_open(args.measurements) as handle:
            for r in results:
                handle.write(json.dumps(r.summary()) + "\n")
    latencies = [r.median_ms for r in results]
    meta = {"backend": args.backend, "batch": args.batch, "input_shape": list(args.input)}
    report = fit_and_evaluate(
        space, archs, latencies, test_fraction=args.test_fraction, seed=args.seed, meta=meta
    )
    table = Table(title=f"held-out ({report['n_test']} archs, trained on {report['n_train']})")
    for column in ("predictor", "spearman", "kendall", "MAPE"):
        table.add_column(column)
    for kind, entry in report["kinds"].items():
        f = entry["held_out"]
        table.add_row(kind, f"{f['spearman']:.3f}", f"{f['kendall']:.3f}", f"{f['mape']:.1%}")
    Console().print(table)
    unstable = sum(r.stats.unstable for r in results)
    cached = sum(r.cached for r in results)
    print(f"unstable measurements: {unstable}/{len(results)}; from the cache: {cached}")
    report["kinds"][args.kind]["predictor"].save(args.out)
    print(f"saved {args.kind} predictor (fitted on all {len(archs)}) to {args.out}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``python -m hwnas.latency``: the same commands as ``hwnas latency``."""
    parser = OneLineParser(prog="python -m hwnas.latency", description=__doc__)
    _fill(parser)
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
