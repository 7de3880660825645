"""Determined Core API entrypoint: ``python3 -m hwnas.trials.train``.

A trial learns how far to train in one of two ways:

* **searcher operations** (the custom searcher, Determined <= 0.37): it serves
  ``core_context.searcher.operations()``, training to each operation's cumulative length and
  completing it with the whole metrics dict;
* **``target_length`` in its hparams** (the SDK backend: one ``searcher: single`` experiment
  per run, Determined 0.37 and 0.38): it trains to that length once and reports its result
  (``hwnas.contract``: ``{"ok": true, "metrics": ...}``) as JSON text in the metrics group
  ``hwnas_result``. It never touches ``core_context.searcher`` (0.38 deprecated it and raises
  without ``searcher.max_length``) and reports progress as a fraction.

On a cluster the hyperparameters come from ``det.get_cluster_info().trial.hparams``.
Off-cluster (smoke tests) ``det.core.init()`` gives Determined's dummy contexts; then
``--hparams FILE`` supplies the hyperparameters, ``--length`` the dummy operation's length,
``--checkpoint-storage`` where checkpoints go and ``--latest-checkpoint`` a checkpoint to
resume from. Those flags are refused on a cluster.

Invalid architectures, malformed hparams, out-of-memory and NaN losses end the trial: it first
reports *why* — the failed result dict (``{"ok": false, "kind": ..., "message": ...}``) through
``op.report_completed`` or the ``hwnas_result`` group — and then raises ``det.InvalidHP``, so
Determined does not restart a trial that would fail the same way again. The report is how the
search learns the reason: Determined 0.37 sends a custom searcher only ``trialClosed`` for an
``InvalidHP`` exit (``master/internal/trial.go``: ``SetUserInitiatedEarlyExit`` records the
reason, the clean exit becomes ``CompletedState``, no ``trialExitedEarly``), and a trial still
alive 10 s later is killed and reported as ``USER_CANCELED``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from hwnas.contract import RESULT_GROUP, RESULT_KEY, failed_result, json_safe, ok_result
from hwnas.trials.errors import InvalidTrial, TrainingDiverged
from hwnas.trials.hparams import HParamsError
from hwnas.trials.session import PHASES, PhaseTimer, seconds_since_process_start

log = logging.getLogger("hwnas.trials.train")

#: Failures that would repeat on a retry: the trial ends as invalid (``det.InvalidHP``).
INVALID_ERRORS = (InvalidTrial, TrainingDiverged, HParamsError)


def reportable(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics Determined accepts for charts: finite numbers and bools (no None/str/NaN)."""
    return {
        k: v
        for k, v in metrics.items()
        if isinstance(v, (bool, int)) or (isinstance(v, float) and math.isfinite(v))
    }


def searcher_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The dict passed to ``op.report_completed``: every key, NaN/inf as None (JSON-safe)."""
    return json_safe(metrics)


def run_trial(
    core_context: Any,
    hparams: dict[str, Any],
    latest_checkpoint: str | None,
    *,
    trial_factory: Callable[[dict[str, Any]], Any] | None = None,
) -> None:
    """Train one trial through a Core API context: to ``hparams["target_length"]`` when set,
    else to each searcher operation's length (see the module docstring).

    Every epoch it checkpoints (model, optimizer, schedule, RNG) and reports training metrics
    and progress, stopping after a checkpoint when preempted; at the target it validates and
    reports. ``trial_factory(hparams)`` builds the training state (default
    ``hwnas.trials.loop.TrialRun``; tests substitute a cheaper one with the same methods)."""
    target = hparams.get("target_length") if isinstance(hparams, dict) else None
    if target is not None:
        _train_to_target(core_context, hparams, latest_checkpoint, trial_factory, target)
    else:
        _serve_operations(core_context, hparams, latest_checkpoint, trial_factory)


class _Trial:
    """The trial's training state, built on first use, with checkpointing through Core API."""

    def __init__(
        self,
        core_context: Any,
        hparams: dict[str, Any],
        latest_checkpoint: str | None,
        factory: Callable[[dict[str, Any]], Any] | None,
    ) -> None:
        self.core = core_context
        self.hparams, self.latest, self.factory = hparams, latest_checkpoint, factory
        self.run: Any = None
        self.timer = PhaseTimer()
        self.before_s = seconds_since_process_start()  # interpreter, imports, Core API init

    def get(self) -> Any:
        if self.run is None:
            if self.factory is None:
                self.run = self._make_run()
            else:
                with self.timer.phase("build"):  # the dataset is loaded here too
                    self.run = self.factory(self.hparams)
            if self.latest is not None:
                with (
                    self.timer.phase("restore"),
                    self.core.checkpoint.restore_path(self.latest) as path,
                ):
                    self.run.restore(path)
        return self.run

    def _make_run(self) -> Any:
        """A ``TrialRun``, or a ``SupernetRun`` for ``kind: supernet`` (which loads its own
        data), with the imports, the dataset and the build timed apart."""
        with self.timer.phase("startup"):  # torch and the training code
            from hwnas.trials.dispatch import make_run
            from hwnas.trials.loop import TrialRun
            from hwnas.trials.supernet.settings import is_supernet
        if is_supernet(self.hparams):
            with self.timer.phase("build"):
                return make_run(self.hparams)
        from hwnas.trials.data import load_data
        from hwnas.trials.hparams import parse_hparams

        hp = parse_hparams(self.hparams)
        with self.timer.phase("data"):
            data = load_data(hp.data, hp.seed)
        with self.timer.phase("build"):
            return TrialRun(self.hparams, data=data)

    @property
    def epoch(self) -> int:
        return 0 if self.run is None else int(self.run.epoch)

    def store(self) -> None:
        with (
            self.timer.phase("checkpoint"),
            self.core.checkpoint.store_path({"steps_completed": self.run.epoch}) as (path, _),
        ):
            self.run.save(path)

    def train_and_validate(
        self, length: int, progress: Callable[[int], None]
    ) -> dict[str, Any] | None:
        """Train to ``length`` and validate; the metrics, or None when preempted first."""
        run = self.get()
        measured_now = False
        # A stand-alone architecture's latency (a supernet measures its derived one at the end).
        from hwnas.trials.supernet.settings import is_supernet

        if (
            run.latency is None
            and hasattr(run, "measure_latency")
            and not is_supernet(self.hparams)
        ):
            # Before training: it depends on the architecture alone, so the next epoch's
            # checkpoint carries it and no checkpoint is stored for it alone (an upload on a
            # cluster); the measurement leaves the RNGs as they were.
            with self.timer.phase("latency"):
                run.measure_latency()
            measured_now = run.latency is not None
        stored = False

        def after_epoch(epoch: int, train_metrics: dict[str, Any]) -> None:
            nonlocal stored
            self.store()
            stored = True
            self.core.train.report_training_metrics(
                steps_completed=epoch, metrics=reportable(train_metrics)
            )
            progress(epoch)

        with self.timer.phase("train"):
            finished = run.train_to(
                length, after_epoch=after_epoch, should_stop=self.core.preempt.should_preempt
            )
        if not finished:
            return None  # preempted: the checkpoint is stored; the master restarts us later
        # Whether the last checkpoint holds the figure (restored with it, or stored since).
        kept = run.latency is not None and (stored or not measured_now)
        with self.timer.phase("validate"):
            metrics = run.metrics()
        # Keep the measurement (a restarted trial need not redo it) and a supernet's ranking
        # (stored beside its checkpoint).
        if (run.latency is not None and not kept) or getattr(run, "ranking", None):
            self.store()
        self.core.train.report_validation_metrics(
            steps_completed=run.epoch, metrics=reportable(metrics)
        )
        log.info("hwnas timings %s", json.dumps(self.timings()))
        return metrics

    def timings(self) -> dict[str, float]:
        """Wall seconds per phase so far (``hwnas.trials.session.PHASES``); ``startup`` counts
        from the process start."""
        seconds = dict(self.timer.seconds)
        seconds["startup"] = seconds.get("startup", 0.0) + self.before_s
        return {k: round(seconds.get(k, 0.0), 4) for k in PHASES}


def _serve_operations(
    core_context: Any,
    hparams: dict[str, Any],
    latest_checkpoint: str | None,
    factory: Callable[[dict[str, Any]], Any] | None,
) -> None:
    """The custom-searcher path: one train-validate-report cycle per searcher operation."""
    trial = _Trial(core_context, hparams, latest_checkpoint, factory)
    for op in core_context.searcher.operations():
        try:
            metrics = trial.train_and_validate(
                op.length, lambda epoch, op=op: op.report_progress(float(epoch))
            )
        except INVALID_ERRORS as exc:
            # The searcher's only way to learn why (see the module docstring).
            op.report_completed(failed_result(exc.kind, str(exc)))
            _raise_invalid(exc)
        if metrics is None:
            return
        op.report_progress(float(trial.epoch))
        op.report_completed(searcher_metrics(metrics))
        if core_context.preempt.should_preempt():
            return


def _train_to_target(
    core_context: Any,
    hparams: dict[str, Any],
    latest_checkpoint: str | None,
    factory: Callable[[dict[str, Any]], Any] | None,
    target: int,
) -> None:
    """The SDK-backend path: train to ``target`` and report the result in ``RESULT_GROUP``."""
    trial = _Trial(core_context, hparams, latest_checkpoint, factory)

    def report(result: dict[str, Any]) -> None:
        core_context.train.report_metrics(
            group=RESULT_GROUP,
            steps_completed=trial.epoch,
            metrics={RESULT_KEY: json.dumps(result, allow_nan=False, default=_plain)},
        )

    def progress(epoch: int) -> None:
        core_context.train.report_progress(min(1.0, epoch / target))

    try:
        metrics = trial.train_and_validate(int(target), progress)
    except INVALID_ERRORS as exc:
        report(failed_result(exc.kind, str(exc)))
        _raise_invalid(exc)
    if metrics is not None:
        report(ok_result(metrics))


def _plain(value: Any) -> Any:
    """numpy scalars (and anything with ``.item()``) as plain Python for ``json.dumps``."""
    if hasattr(value, "item"):
        value = value.item()
        return None if isinstance(value, float) and not math.isfinite(value) else value
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _raise_invalid(exc: Exception) -> NoReturn:
    import determined as det

    kind = getattr(exc, "kind", "invalid")
    log.error("trial ends as invalid (%s): %s", kind, exc)
    raise det.InvalidHP(f"{kind}: {exc}") from exc


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
    from hwnas.trials.session import exit_without_teardown

    exit_without_teardown(main())
