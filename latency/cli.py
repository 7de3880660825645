"""``python -m hwnas.latency measure|profile``: measure one architecture, or profile a space and fit
a predictor. ``add_parser`` lets ``hwnas`` mount the same commands as ``hwnas latency ...``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hwnas.latency.errors import LatencyError
from hwnas.latency.target import MeasurementTarget
from hwnas.latency.timing import TimingConfig


def _input_shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input must look like 3x32x32, got {text!r}") from None
    if len(dims) != 3 or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(
            f"--input must be three positive dimensions CxHxW, got {text!r}"
        )
    return dims


def _options(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--space-options is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--space-options must be a JSON object")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    from hwnas.latency.backends import backend_names

    parser.add_argument("--space", required=True, help="search space name, e.g. nb201")
    parser.add_argument(
        "--space-options", type=_options, default={}, help='JSON, e.g. \'{"C": 16, "N": 5}\''
    )
    parser.add_argument("--backend", default="ort-cpu", choices=backend_names())
    parser.add_argument("--precision", default=None, help="fp32 | fp16 | bf16 (backend-specific)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--input", type=_input_shape, default=(3, 32, 32), help="CxHxW")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", default=None, help="SQLite latency cache path")
    parser.add_argument("--clock", default="auto", choices=("auto", "wall", "thread_cpu"))
    parser.add_argument(
        "--reference",
        action="store_true",
        help="time alternately with a fixed reference net; adds the ratio (ONNX backends)",
    )
    parser.add_argument("--compile", action="store_true", help="torch backends: torch.compile")
    parser.add_argument("--cuda-graph", action="store_true", help="torch-cuda: CUDA graph")
    defaults = TimingConfig()
    parser.add_argument("--warmup", type=float, default=defaults.warmup_s, help="seconds")
    parser.add_argument("--min-runs", type=int, default=defaults.min_runs)
    parser.add_argument("--min-duration", type=float, default=defaults.min_duration_s)
    parser.add_argument("--max-attempts", type=int, default=defaults.max_attempts)
    parser.add_argument("--cv-threshold", type=float, default=defaults.cv_threshold)


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
    parser = sub.add_parser(name, help="measure latency / profile a space")
    _fill(parser)
    return parser


def _fill(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="latency_command", required=True)
    measure = commands.add_parser("measure", help="measure one architecture")
    _common(measure)
    measure.add_argument("--arch", required=True)
    measure.add_argument("--json", action="store_true", help="print the full JSON")
    measure.set_defaults(handler=run_measure)
    profile = commands.add_parser("profile", help="measure a sample, fit and save a predictor")
    _common(profile)
    profile.add_argument("--n", type=int, default=200, help="architectures to measure")
    profile.add_argument("--seed", type=int, default=0)
    profile.add_argument("--kind", default="lookup", choices=("lookup", "ridge"))
    profile.add_argument("--test-fraction", type=float, default=0.2)
    profile.add_argument("--out", required=True, help="predictor JSON to write")
    profile.add_argument("--measurements", default=None, help="also write measurements (JSONL)")
    profile.set_defaults(handler=run_profile)


def run_measure(args: argparse.Namespace) -> int:
    from hwnas.latency.measure import measure_architecture
    from hwnas.spaces import get_space

    space = get_space(args.space, **args.space_options)
    result = measure_architecture(
        space, args.arch, _target(args), cache_path=args.cache, timing=_timing(args)
    )
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


def run_profile(args: argparse.Namespace) -> int:
    import numpy as np
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from hwnas.latency.profile import fit_and_evaluate, measure_many, sample_unique
    from hwnas.spaces import get_space

    console = Console(stderr=True)
    target = _target(args)  # before measuring anything: a bad setting fails at once
    space = get_space(args.space, **args.space_options)
    archs = sample_unique(space, args.n, np.random.default_rng(args.seed))
    if len(archs) < args.n:
        console.print(f"[yellow]only {len(archs)} distinct architectures in the space")
    with Progress(console=console) as progress:
        task = progress.add_task(f"measuring on {args.backend}", total=len(archs))
        results = measure_many(
            space,
            archs,
            target,
            cache_path=args.cache,
            timing=_timing(args),
            on_result=lambda _: progress.advance(task),
        )
    if args.measurements:
        with open(args.measurements, "w", encoding="utf-8") as handle:
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
    print(f"unstable measurements: {unstable}/{len(results)}")
    report["kinds"][args.kind]["predictor"].save(args.out)
    print(f"saved {args.kind} predictor (fitted on all {len(archs)}) to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hwnas.latency", description=__doc__)
    _fill(parser)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (LatencyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
