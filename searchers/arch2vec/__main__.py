"""CLI: ``python -m hwnas.searchers.arch2vec pretrain|quality``.

``pretrain --space nb201 --out FILE [--option KEY=VALUE --epochs N --seed S --limit M]`` trains
the graph VAE on the space's architectures and writes FILE plus its JSON sidecar, with the CPU
kernels pinned (``numerics.py``) so the same command gives the same bits on any x86-64 machine
with AVX2; ``quality --model FILE``
prints reconstruction, decoded validity and smoothness on the NB201 table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hwnas.arguments import (
    OneLineParser,
    add_space_option,
    non_negative_int,
    positive_float,
    positive_int,
)
from hwnas.searchers.arch2vec.numerics import pin_numerics

#: Table columns the quality report checks: CIFAR-10 accuracy and a few devices' latency.
QUALITY_COLUMNS = ("c10_valid", "lat_ms_gold_6226", "lat_ms_pixel2", "lat_ms_1080ti_1")


def _pretrain(args: argparse.Namespace) -> int:
    import torch

    from hwnas.searchers.arch2vec.model import Arch2VecConfig
    from hwnas.searchers.arch2vec.numerics import numerics_in_force
    from hwnas.searchers.arch2vec.pretrain import (
        default_config,
        pretrain,
        save_model,
        space_graphs,
        training_archs,
    )
    from hwnas.spaces import get_space

    torch.set_num_threads(args.threads)
    space = get_space(args.space, **dict(args.option))
    archs = training_archs(space, limit=args.limit, seed=args.seed)
    adj, ops = space_graphs(space, archs)
    config = default_config(space)
    overrides = json.loads(args.config)
    if overrides:
        config = Arch2VecConfig.from_dict({**config.to_dict(), **overrides})

    def show(epoch: int, parts: dict[str, float]) -> None:
        text = ", ".join(f"{k} {v:.4f}" for k, v in parts.items())
        print(f"epoch {epoch + 1}/{args.epochs}: {text}", flush=True)

    result = pretrain(
        adj,
        ops,
        config,
        epochs=args.epochs,
        seed=args.seed,
        batch_size=args.batch_size,
        lr=args.lr,
        on_epoch=show,
    )
    training = {**result.training, "numerics": numerics_in_force()}
    meta = save_model(result.model, args.out, space=space, training=training)
    print(
        f"wrote {args.out} ({len(archs)} graphs, {result.training['seconds']} s, "
        f"sha256 {meta['sha256']})"
    )
    return 0


def _quality(args: argparse.Namespace) -> int:
    import numpy as np

    from hwnas.searchers.arch2vec.pretrain import check_model_fits, load_model
    from hwnas.searchers.arch2vec.quality import format_report, quality_report
    from hwnas.spaces import get_space
    from hwnas.spaces.nb201_table import load_table

    model, meta = load_model(args.model)
    space = get_space(meta["space"], **meta.get("space_options", {}))
    check_model_fits(meta, space, args.model)
    if space.name != "nb201":
        print(f"quality needs the NB201 table; model is for {space.name!r}", file=sys.stderr)
        return 2
    table = load_table(args.table)
    columns = {c: np.asarray(table[c], dtype=float) for c in args.columns.split(",")}
    report = quality_report(model, space, list(table.archs), columns, seed=args.seed)
    report["model"] = {"path": str(args.model), "sha256": meta["sha256"], **meta["training"]}
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m hwnas.searchers.arch2vec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain", help="train the graph VAE and write weights + sidecar")
    p.add_argument("--space", default="nb201", help="search space name (default nb201)")
    add_space_option(p)
    p.add_argument("--out", required=True, type=Path, help="weights file to write (.pt)")
    p.add_argument("--epochs", type=positive_int, default=20, help="epochs (default 20)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed (default 0)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="batch (default 64)")
    p.add_argument("--lr", type=positive_float, default=2e-3, help="Adam step (default 2e-3)")
    p.add_argument("--limit", type=positive_int, default=None, help="train on a random subsample")
    p.add_argument("--config", default="{}", help="JSON overrides of the VAE config")
    p.add_argument(
        "--threads", type=positive_int, default=1, help="torch threads (1: reproducible)"
    )
    p.set_defaults(func=_pretrain)
    q = sub.add_parser("quality", help="embedding quality on the NB201 table")
    q.add_argument("--model", required=True, type=Path, help="weights file (.pt + .json)")
    q.add_argument("--table", default=None, help="NB201 table (default: the shared one)")
    q.add_argument("--columns", default=",".join(QUALITY_COLUMNS), help="table columns to check")
    q.add_argument("--seed", type=non_negative_int, default=0, help="seed (default 0)")
    q.add_argument("--json", default=None, help="also write the report as JSON")
    q.set_defaults(func=_quality)
    args = parser.parse_args(argv)
    if args.command == "pretrain" and not pin_numerics():
        print(
            "note: torch was loaded before pretraining, so its CPU kernels are not pinned "
            "(hwnas.searchers.arch2vec.numerics): the weights repeat on this machine only",
            file=sys.stderr,
        )
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
