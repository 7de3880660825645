"""Train one architecture: build it through ``spaces``, train epoch by epoch with a cosine
schedule over the planned maximum, checkpoint, validate, and report one metrics dict.

Validation runs with recalibrated BatchNorm statistics (``trials.batchnorm``): the weights'
own statistics, averaged over ``training.bn_recalibration_batches`` training batches drawn
from their own seed stream. The training state keeps its running statistics untouched, so a
recalibration never changes what training does next and resume stays bitwise; the
recalibrated statistics are kept beside it (and in the checkpoint, for export).

The same ``TrialRun`` serves the local backend (``train_to``) and Determined
(``hwnas.trials.train``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.contract import TrialHParams
from hwnas.spaces import ArchitectureError, get_space
from hwnas.trials.batchnorm import (
    batchnorm_layers,
    batchnorm_state,
    batchnorm_statistics,
    load_batchnorm_state,
    recalibrate_batchnorm,
)
from hwnas.trials.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from hwnas.trials.data import (
    BN_STREAM,
    INIT_STREAM,
    TRAIN_STREAM,
    TrialData,
    derive_seed,
    load_data,
)
from hwnas.trials.errors import (
    InvalidTrial,
    TrainingDiverged,
    TrialError,
    TrialOutOfMemory,
    is_out_of_memory,
)
from hwnas.trials.hparams import HParamsError, parse_hparams

log = logging.getLogger(__name__)

#: Check the running loss for NaN/inf every this many steps (a host sync, so not every step).
NAN_CHECK_EVERY = 20
#: Metrics that depend on wall-clock time (excluded when comparing runs for equality).
TIMING_KEYS = ("epoch_time_s", "images_per_second", "train_time_s", "bn_recalibration_s")

EpochCallback = Callable[[int, dict[str, Any]], None]


def default_device() -> torch.device:
    """The first CUDA device when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def count_flops(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> int:
    """FLOPs of one forward pass at batch 1 (eval mode, so BN statistics stay untouched)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def check_latency_backend(backend: str) -> None:
    """Fail before training when the latency backend cannot run here (no device time wasted
    on a trial whose cost could never be measured)."""
    from hwnas import latency

    try:
        latency.get_backend(backend).check_available()
    except latency.LatencyError as exc:
        raise TrialError(f"hparams.latency.backend={backend!r} cannot run here: {exc}") from exc


@contextlib.contextmanager
def _out_of_memory_is_invalid(what: str) -> Iterator[None]:
    """Turn allocator failures into ``TrialOutOfMemory`` (the trial is invalid at this size)."""
    try:
        yield
    except TrialOutOfMemory:
        raise
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise TrialOutOfMemory(f"out of memory while {what}: {exc}") from exc


class TrialRun:
    """One architecture's training state: model, optimizer, schedule, data and progress."""

    def __init__(
        self,
        hparams: dict[str, Any] | TrialHParams,
        *,
        device: str | None = None,
        data: TrialData | None = None,
    ) -> None:
        """``data`` replaces the dataset named in the hparams (benchmarks use synthetic data)."""
        self.hp = parse_hparams(hparams)
        self.device = torch.device(device) if device else default_device()
        hp, training = self.hp, self.hp.training
        if hp.latency.enabled:
            check_latency_backend(hp.latency.backend)
        if self.device.type == "cpu" and training.cpu_threads is not None:
            torch.set_num_threads(training.cpu_threads)
        self.data = data if data is not None else load_data(hp.data, hp.seed)
        info = self.data.info
        try:
            self.space = get_space(hp.space, **hp.space_options)
        except TypeError as exc:  # an option the space's constructor does not take
            raise HParamsError(f"hparams.space_options {hp.space_options}: {exc}") from exc
        except ArchitectureError as exc:
            raise InvalidTrial(f"search space {hp.space!r} refused: {exc}") from exc
        try:
            self.arch = self.space.validate(hp.arch)
            torch.manual_seed(derive_seed(hp.seed, INIT_STREAM))
            with _out_of_memory_is_invalid("building the model"):
                model = self.space.build(self.arch, info.num_classes, info.input_shape)
        except ArchitectureError as exc:
            raise InvalidTrial(f"architecture rejected by space {hp.space!r}: {exc}") from exc
        # Training randomness (dropout, drop-path) has its own stream, independent of init.
        train_seed = derive_seed(hp.seed, TRAIN_STREAM)
        torch.manual_seed(train_seed)
        np.random.seed(train_seed % 2**32)
        random.seed(train_seed)

        self.memory_format = (
            torch.channels_last if training.channels_last else torch.preserve_format
        )
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fastest kernels; GPU runs are not bitwise
            torch.set_float32_matmul_precision("high")
        with _out_of_memory_is_invalid("moving the model to the device"):
            self.model = model.to(self.device, memory_format=self.memory_format)
        self._forward = torch.compile(self.model) if training.compile else self.model

        self.steps_per_epoch = self.data.steps_per_epoch(training.batch_size)
        if self.steps_per_epoch == 0:
            raise HParamsError(
                f"hparams.training.batch_size={training.batch_size} exceeds the "
                f"{self.data.train_size} training images"
            )
        self.optimizer = self._make_optimizer()
        total_steps = self.steps_per_epoch * training.max_epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps)),
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=training.amp == "fp16")
        self.criterion = nn.CrossEntropyLoss(label_smoothing=training.label_smoothing)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.latency: dict[str, Any] | None = None
        self._cost: dict[str, int] | None = None
        #: Recalibrated BatchNorm statistics for the current weights: ``epoch``, ``buffers``,
        #: ``requested`` / ``batches`` (asked for / used) and ``seconds``; None until computed.
        self.bn_recalibration: dict[str, Any] | None = None
        self._has_batchnorm = bool(batchnorm_layers(self.model))

    # -- setup ---------------------------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        t = self.hp.training
        # No weight decay on biases and normalisation parameters (the usual recipe).
        decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim <= 1]
        groups = [
            {"params": decay, "weight_decay": t.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        if t.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=t.lr)
        return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, nesterov=t.momentum > 0)

    def _autocast(self) -> contextlib.AbstractContextManager:
        amp = self.hp.training.amp
        if amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.memory_format is torch.channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    # -- training ------------------------------------------------------------------------------
    def train_epoch(self) -> dict[str, Any]:
        """Train one epoch (``self.epoch`` -> ``self.epoch + 1``); returns training metrics."""
        t = self.hp.training
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        with _out_of_memory_is_invalid(f"training epoch {self.epoch + 1}"):
            batches = self.data.train_batches(self.epoch, t.batch_size, self.device)
            for step, (x, y) in enumerate(batches, start=1):
                with self._autocast():
                    logits = self._forward(self._prepare(x))
                loss = self.criterion(logits.float(), y)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if t.grad_clip:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                loss_sum += loss.detach() * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                seen += len(y)
                if step % NAN_CHECK_EVERY == 0:
                    self._check_finite(loss_sum, f"step {step} of epoch {self.epoch + 1}")
        self._check_finite(loss_sum, f"epoch {self.epoch + 1}")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - start
        self.epoch += 1
        metrics = {
            "epoch": self.epoch,
            "train_loss": float(loss_sum) / seen,
            "train_accuracy": int(correct) / seen,
            "lr": self.optimizer.param_groups[0]["lr"],
            "epoch_time_s": elapsed,
            "images_per_second": seen / elapsed if elapsed > 0 else float("nan"),
        }
        self.history.append(metrics)
        log.info(
            "epoch %d/%d: train_loss %.4f train_acc %.4f lr %.5f %.0f img/s",
            self.epoch,
            t.max_epochs,
            metrics["train_loss"],
            metrics["train_accuracy"],
            metrics["lr"],
            metrics["images_per_second"],
        )
        return metrics

    def _check_finite(self, loss_sum: torch.Tensor, where: str) -> None:
        if not torch.isfinite(loss_sum):
            raise TrainingDiverged(
                f"training loss became {float(loss_sum)} at {where} "
                f"(lr {self.hp.training.lr}, arch {self.arch}); stopping the trial"
            )

    def train_to(
        self,
        target_epochs: int,
        *,
        after_epoch: EpochCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> bool:
        """Train until ``target_epochs`` (cumulative); ``after_epoch`` runs after each epoch (to
        checkpoint and report). Returns False if ``should_stop`` ended it early."""
        max_epochs = self.hp.training.max_epochs
        if target_epochs > max_epochs:
            raise HParamsError(
                f"requested length {target_epochs} epochs exceeds hparams.training.max_epochs="
                f"{max_epochs} (the cosine schedule ends there)"
            )
        if self.epoch > target_epochs:
            log.warning(
                "asked for %d epochs but the checkpoint is already at %d; reporting epoch %d",
                target_epochs,
                self.epoch,
                self.epoch,
            )
        while self.epoch < target_epochs:
            metrics = self.train_epoch()
            if self.epoch == target_epochs:
                # Before the epoch's checkpoint, which then holds the statistics validation uses.
                self.recalibrate_batchnorm()
            if after_epoch is not None:
                after_epoch(self.epoch, metrics)
            if should_stop is not None and self.epoch < target_epochs and should_stop():
                log.info("stopping at epoch %d of %d on request", self.epoch, target_epochs)
                return False
        return True

    # -- evaluation and cost -------------------------------------------------------------------
    def recalibrate_batchnorm(self) -> dict[str, Any] | None:
        """Recalibrated BatchNorm statistics for the current weights (computed once per epoch;
        None when turned off or the model has no BatchNorm).

        The batches come from the trial seed's own stream (``BN_STREAM``, per epoch), every
        RNG is left as it was, and the model's running statistics are put back: training
        goes on exactly as without the recalibration."""
        requested = self.hp.training.bn_recalibration_batches
        if requested == 0 or not self._has_batchnorm:
            return None
        done = self.bn_recalibration
        if done is not None and done["epoch"] == self.epoch and done["requested"] == requested:
            return done
        running = batchnorm_state(self.model)
        rng = capture_rng_state()
        start = time.perf_counter()
        batches = self.data.sample_batches(
            derive_seed(self.hp.seed, BN_STREAM, self.epoch),
            self.hp.training.batch_size,
            self.device,
        )
        try:
            with _out_of_memory_is_invalid("recalibrating BatchNorm"):
                result = recalibrate_batchnorm(
                    self.model,
                    itertools.islice(batches, requested),
                    prepare=self._prepare,
                    autocast=self._autocast,
                )
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # kernels finish before the clock stops
            self.bn_recalibration = {
                "epoch": self.epoch,
                "buffers": batchnorm_state(self.model),
                "requested": requested,
                "batches": result.batches,
                "seconds": time.perf_counter() - start,
            }
        finally:
            getattr(batches, "close", lambda: None)()  # stop a loader's workers
            load_batchnorm_state(self.model, running)
            restore_rng_state(rng)
        log.info(
            "BatchNorm recalibrated on %d batches in %.2f s",
            result.batches,
            self.bn_recalibration["seconds"],
        )
        return self.bn_recalibration

    def evaluate(self, *, running_stats: bool = False) -> dict[str, float]:
        """Loss and accuracy on the held-out validation split, with recalibrated BatchNorm
        statistics (unless turned off, or ``running_stats``: the training's running ones)."""
        recalibrated = None if running_stats else self.recalibrate_batchnorm()
        if recalibrated is None:
            return self._evaluate()
        with batchnorm_statistics(self.model, recalibrated["buffers"]):
            return self._evaluate()

    def _evaluate(self) -> dict[str, float]:
        self.model.eval()
        batch = self.hp.training.batch_size * self.hp.training.eval_batch_factor
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        with _out_of_memory_is_invalid("validating"), torch.no_grad():
            for x, y in self.data.val_batches(batch, self.device):
                with self._autocast():
                    logits = self._forward(self._prepare(x))
                loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum")
                correct += (logits.argmax(1) == y).sum()
                seen += len(y)
        self.model.train()
        self._check_finite(loss_sum, f"validation after epoch {self.epoch}")
        return {
            "validation_accuracy": int(correct) / seen,
            "validation_loss": float(loss_sum) / seen,
        }

    def cost(self) -> dict[str, int]:
        """Parameter count and FLOPs (one forward at batch 1), computed once."""
        if self._cost is None:
            params = sum(p.numel() for p in self.model.parameters())
            flops = count_flops(self.model, self.data.info.input_shape, self.device)
            self._cost = {"params": params, "flops": flops}
        return self._cost

    def measure_latency(self, worker: Any = None) -> dict[str, Any]:
        """The latency module's figures for this architecture, measured once per trial.

        Runs outside any timed training loop, and leaves every RNG as it found it so that a
        trial measured at a different moment still trains bitwise the same. ``worker``: a
        running ``hwnas.latency.worker.OnnxWorker`` to time in (a warm trial worker keeps one)
        instead of starting one for this measurement."""
        if self.latency is not None or not self.hp.latency.enabled:
            return self.latency or {}
        from hwnas import latency

        settings, info = self.hp.latency, self.data.info
        rng = capture_rng_state()
        start = time.perf_counter()
        target = latency.MeasurementTarget(
            backend=settings.backend,
            batch=settings.batch,
            input_shape=info.input_shape,
            num_classes=info.num_classes,
            threads=settings.threads,
        )
        calibration = None
        if target.create_backend().needs_calibration():  # int8: scales from real images
            calibration = self.calibration_images()
        try:
            result = latency.measure_architecture(
                self.space,
                self.arch,
                target,
                cache_path=settings.cache,
                calibration=calibration,
                worker=worker,
            )
        finally:
            restore_rng_state(rng)
        self.latency = dict(result.to_metrics())
        log.info(
            "latency %.4f ms (cv %.3f) on %s, %s in %.1f s",
            self.latency["latency_ms"],
            self.latency["latency_cv"],
            settings.backend,
            "from the cache" if self.latency.get("latency_cached") else "measured",
            time.perf_counter() - start,
        )
        return self.latency

    def calibration_images(self, count: int = 64) -> np.ndarray:
        """Up to ``count`` validation images, normalised as the model sees them: the int8
        latency backends' calibration data (quantisation scales)."""
        x, _ = next(iter(self.data.val_batches(count, self.device)))
        return x[:count].float().cpu().numpy()

    def metrics(self) -> dict[str, Any]:
        """The one flat metrics dict a trial reports (see the searcher <-> trial contract)."""
        out: dict[str, Any] = dict(self.evaluate())
        last = self.history[-1] if self.history else {}
        out["train_loss"] = last.get("train_loss", float("nan"))
        out["train_accuracy"] = last.get("train_accuracy", float("nan"))
        out["epochs"] = self.epoch
        out.update(self.cost())
        out.update(self.measure_latency())
        out["lr"] = self.optimizer.param_groups[0]["lr"]
        out["images_per_second"] = last.get("images_per_second", float("nan"))
        out["train_time_s"] = sum(h["epoch_time_s"] for h in self.history)
        bn = self.bn_recalibration
        used = bn is not None and bn["epoch"] == self.epoch
        out["bn_recalibration_batches"] = int(bn["batches"]) if used else 0
        out["bn_recalibration_s"] = float(bn["seconds"]) if used else 0.0
        info = self.data.info
        out.update({"arch": self.arch, "space": self.hp.space, "dataset": info.name})
        # What a consumer needs to rebuild the model (hwnas export), whatever the dataset.
        out.update({"input_shape": list(info.input_shape), "num_classes": info.num_classes})
        return out

    # -- checkpoints ---------------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        hp = self.hp
        return {
            "space": hp.space,
            "space_options": dict(hp.space_options),
            "arch": self.arch,
            "seed": hp.seed,
            "dataset": hp.data.dataset,
            "max_epochs": hp.training.max_epochs,
            "batch_size": hp.training.batch_size,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bitwise: weights, optimizer, schedule, scaler, RNGs."""
        return {
            "identity": self._identity(),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "history": self.history,
            "latency": self.latency,
            # Kept apart from the model's running statistics (see the module docstring).
            "bn_recalibration": self.bn_recalibration,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict()``; refuses a checkpoint from a different trial."""
        mine, theirs = self._identity(), state.get("identity", {})
        differ = sorted(k for k in mine if mine[k] != theirs.get(k))
        if differ:
            detail = ", ".join(f"{k}: {theirs.get(k)!r} != {mine[k]!r}" for k in differ)
            raise CheckpointError(f"checkpoint belongs to another trial ({detail})")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.latency = state["latency"]
        self.bn_recalibration = state.get("bn_recalibration")  # None in older checkpoints

    def save(self, directory: str | Path) -> Path:
        """Checkpoint into ``directory`` (atomically)."""
        return save_checkpoint(directory, self.state_dict())

    def restore(self, directory: str | Path) -> bool:
        """Resume from ``directory`` if it holds a checkpoint; True when one was loaded."""
        state = load_checkpoint(directory)
        if state is None:
            return False
        self.load_state_dict(state)
        log.info("resumed from %s at epoch %d", directory, self.epoch)
        return True


def train_to(
    hparams: dict[str, Any],
    target_epochs: int,
    checkpoint_dir: str | Path,
    *,
    report: EpochCallback | None = None,
) -> dict[str, Any]:
    """Train ``hparams``' architecture to ``target_epochs`` (cumulative), resuming from and
    checkpointing (every epoch) to ``checkpoint_dir``; returns the metrics dict.

    ``report(epoch, training_metrics)`` is called after each epoch's checkpoint is written."""
    run = TrialRun(hparams)
    run.restore(checkpoint_dir)

    def after_epoch(epoch: int, metrics: dict[str, Any]) -> None:
        run.save(checkpoint_dir)
        if report is not None:
            report(epoch, metrics)

    run.train_to(target_epochs, after_epoch=after_epoch)
    had_latency = run.latency is not None
    metrics = run.metrics()
    if run.latency is not None and not had_latency:
        run.save(checkpoint_dir)  # keep the measurement so a resumed trial does not redo it
    return metrics
