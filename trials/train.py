"""Determined Core API entrypoint: ``python3 -m hwnas.trials.train``.

On a cluster the hyperparameters come from ``det.get_cluster_info().trial.hparams`` and the
operations from the master. Off-cluster (smoke tests) ``det.core.init()`` gives Determined's
dummy contexts; then ``--hparams FILE`` supplies the hyperparameters, ``--length`` the dummy
operation's length, ``--checkpoint-storage`` where checkpoints go and ``--latest-checkpoint``
a checkpoint to resume from. Those flags are refused on a cluster.

Invalid architectures, malformed hparams, out-of-memory and NaN losses end the trial through
``det.InvalidHP``: the master marks it as exited early (the searcher's ``invalid_hp`` path)
instead of errored, so Determined does not restart a trial that would fail the same way again.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from hwnas.trials.errors import InvalidTrial, TrainingDiverged
from hwnas.trials.hparams import HParamsError

log = logging.getLogger("hwnas.trials.train")


def reportable(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics Determined accepts for charts: finite numbers and bools (no None/str/NaN)."""
    return {
        k: v
        for k, v in metrics.items()
        if isinstance(v, (bool, int)) or (isinstance(v, float) and math.isfinite(v))
    }


def searcher_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The dict passed to ``op.report_completed``: every key, NaN/inf as None (JSON-safe)."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in metrics.items()
    }


def run_trial(core_context: Any, hparams: dict[str, Any], latest_checkpoint: str | None) -> None:
    """Serve the searcher's operations for one trial through a Core API context.

    For each operation: train to its cumulative length (checkpointing and reporting training
    metrics every epoch, stopping after a checkpoint when preempted), validate, report
    validation metrics, and complete the operation with the full metrics dict."""
    import determined as det

    from hwnas.trials.dispatch import make_run

    try:
        trial = make_run(hparams)  # TrialRun, or SupernetRun for ``kind: supernet``
        if latest_checkpoint is not None:
            with core_context.checkpoint.restore_path(latest_checkpoint) as path:
                trial.restore(path)

        def store_checkpoint() -> None:
            metadata = {"steps_completed": trial.epoch}
            with core_context.checkpoint.store_path(metadata) as (path, _storage_id):
                trial.save(path)

        for op in core_context.searcher.operations():

            def after_epoch(epoch: int, train_metrics: dict[str, Any], op: Any = op) -> None:
                store_checkpoint()
                core_context.train.report_training_metrics(
                    steps_completed=epoch, metrics=reportable(train_metrics)
                )
                op.report_progress(float(epoch))

            finished = trial.train_to(
                op.length, after_epoch=after_epoch, should_stop=core_context.preempt.should_preempt
            )
            if not finished:
                return  # preempted: the checkpoint is stored; the master restarts us later
            had_latency = trial.latency is not None
            metrics = trial.metrics()
            # Keep the measurement (a restarted trial need not redo it) and a supernet's
            # ranking (stored beside its checkpoint).
            if (trial.latency is not None and not had_latency) or getattr(trial, "ranking", None):
                store_checkpoint()
            core_context.train.report_validation_metrics(
                steps_completed=trial.epoch, metrics=reportable(metrics)
            )
            op.report_progress(float(trial.epoch))
            op.report_completed(searcher_metrics(metrics))
            if core_context.preempt.should_preempt():
                return
    except (InvalidTrial, TrainingDiverged, HParamsError) as exc:
        log.error("trial ends as invalid (%s): %s", exc.kind, exc)
        raise det.InvalidHP(f"{exc.kind}: {exc}") from exc


def _read_hparams_file(path: str) -> dict[str, Any]:
    try:
        hparams = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"hwnas.trials.train: cannot read --hparams {path}: {exc}") from exc
    if not isinstance(hparams, dict):
        raise SystemExit(f"hwnas.trials.train: --hparams {path} must hold a JSON object")
    return hparams


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m hwnas.trials.train", description=__doc__)
    parser.add_argument("--hparams", help="off-cluster only: hyperparameters JSON file")
    parser.add_argument("--length", type=int, help="off-cluster only: dummy operation length")
    parser.add_argument("--checkpoint-storage", help="off-cluster only: checkpoint directory")
    parser.add_argument("--latest-checkpoint", help="off-cluster only: storage id to resume")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )

    import determined as det
    from determined import core

    info = det.get_cluster_info()
    off_cluster_flags = [
        flag
        for flag, value in (
            ("--hparams", args.hparams),
            ("--length", args.length),
            ("--checkpoint-storage", args.checkpoint_storage),
            ("--latest-checkpoint", args.latest_checkpoint),
        )
        if value is not None
    ]
    if info is not None:
        if off_cluster_flags:
            parser.error(f"{', '.join(off_cluster_flags)}: only for runs outside a cluster")
        hparams, latest, storage = info.trial.hparams, info.latest_checkpoint, None
    else:
        if args.hparams is None:
            parser.error("off-cluster runs need --hparams FILE (no Determined cluster info)")
        hparams, latest = _read_hparams_file(args.hparams), args.latest_checkpoint
        storage = args.checkpoint_storage

    with det.core.init(checkpoint_storage=storage) as core_context:
        if info is None and args.length is not None:
            # Determined's own dummy searcher, with the one operation as long as asked.
            core_context.searcher = core.DummySearcherContext(
                core_context.distributed, length=args.length
            )
        run_trial(core_context, hparams, latest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
