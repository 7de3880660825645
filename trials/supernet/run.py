"""One supernet trial: train the weight-sharing supernet and its architecture, derive an
architecture, score candidates with the shared weights, report one metrics dict.

Per training step (first-order, as GAEA's and DARTS's ``train_search.py``):

1. after ``supernet.warmup_epochs``: an architecture step on a search batch — the mixed
   supernet's cross-entropy plus the expected-latency term, differentiated in the
   architecture weights only, stepped by GAEA's exponentiated gradient or DARTS's Adam;
2. a weight step on a training batch with the architecture weights held fixed, plus, after
   the landmark warm-up, the landmark ranking loss on the search batch.

Single level (``levels: 1``, GAEA's ERM): search batches are an independent reshuffle of the
training split. Bi-level (``levels: 2``): the training split is halved; weights learn from
one half, the architecture (and the landmark loss) from the other. The held-out validation
split is used only to score: the mixture, the derived architecture and the ranked candidates.

``SupernetRun`` has ``TrialRun``'s interface (``train_to``, ``metrics``, ``save``,
``restore``, ``epoch``, ``latency``), so the Core API entrypoint and the local backend's child
run it unchanged (``hwnas.trials.dispatch``). Checkpoints hold weights, architecture,
both optimizers, the schedule and every RNG, and resume bitwise on CPU.
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

from hwnas.atomic import write_json_atomic
from hwnas.spaces import ArchitectureError, get_space
from hwnas.trials.batchnorm import kept_batchnorm_statistics
from hwnas.trials.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from hwnas.trials.data import INIT_STREAM, TRAIN_STREAM, TrialData, derive_seed, load_data
from hwnas.trials.errors import InvalidTrial, TrainingDiverged
from hwnas.trials.hparams import HParamsError
from hwnas.trials.supernet.architecture import (
    ArchParameters,
    make_arch_optimizer,
    parameter_kind,
)
from hwnas.trials.supernet.batchnorm import recalibrate_subnetwork
from hwnas.trials.supernet.cost import ExpectedLatency, additive_predictor
from hwnas.trials.supernet.landmarks import (
    coefficient,
    draw_pairs,
    landmark_payload,
    load_landmarks,
    ranking_loss,
)
from hwnas.trials.supernet.networks import build_supernet
from hwnas.trials.supernet.settings import SupernetHParams, parse_supernet_hparams

log = logging.getLogger(__name__)

# Stream ids for ``derive_seed`` beyond ``trials.data``'s (1-5).
ARCH_INIT_STREAM, LANDMARK_STREAM, PAIR_STREAM, RANK_STREAM = 11, 12, 13, 14
#: Single-level search batches reshuffle the training split as "epoch" OFFSET + e.
SEARCH_EPOCH_OFFSET = 1_000_000
#: Training batches used for BN recalibration come from this fixed "epoch".
RECALIBRATION_EPOCH = 2_000_000
#: Name of the ranking file written beside the checkpoint.
RANKING_FILE = "ranking.json"
RANKING_FORMAT = "hwnas-supernet-ranking/1"
NAN_CHECK_EVERY = 20

EpochCallback = Callable[[int, dict[str, Any]], None]


def _kendall_spearman(x: list[float], y: list[float]) -> tuple[float, float]:
    from scipy.stats import kendalltau, spearmanr

    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan"), float("nan")
    return float(kendalltau(x, y).statistic), float(spearmanr(x, y).statistic)


class SupernetRun:
    """A supernet's training state: supernet, architecture, optimizers, data, progress."""

    def __init__(
        self,
        hparams: dict[str, Any] | SupernetHParams,
        *,
        device: str | None = None,
        data: TrialData | None = None,
    ) -> None:
        from hwnas.trials.loop import check_latency_backend, default_device

        self.hp = parse_supernet_hparams(hparams)
        hp, training, sn = self.hp, self.hp.training, self.hp.supernet
        self.device = torch.device(device) if device else default_device()
        ignored = [
            name
            for name, on in (
                (f"amp={training.amp}", training.amp != "off"),
                ("compile", training.compile),
                ("channels_last", training.channels_last),
            )
            if on
        ]
        if ignored:
            log.warning("supernet trials train in fp32, eagerly: ignoring %s", ", ".join(ignored))
        if hp.latency.enabled:
            check_latency_backend(hp.latency.backend)
        if self.device.type == "cpu" and training.cpu_threads is not None:
            torch.set_num_threads(training.cpu_threads)
        self.data = data if data is not None else load_data(hp.data, hp.seed)
        info = self.data.info
        try:
            self.space = get_space(hp.space, **hp.space_options)
        except TypeError as exc:
            raise HParamsError(f"hparams.space_options {hp.space_options}: {exc}") from exc
        except ArchitectureError as exc:
            raise InvalidTrial(f"search space {hp.space!r} refused: {exc}") from exc

        torch.manual_seed(derive_seed(hp.seed, INIT_STREAM))
        model = build_supernet(
            hp.space,
            self.space.space_options(),
            info.num_classes,
            info.input_shape,
            exclude_none=sn.exclude_none,
            bn_mode=sn.bn,
            bn_affine=sn.bn_affine,
        )
        self.model = model.to(self.device)
        generator = torch.Generator().manual_seed(derive_seed(hp.seed, ARCH_INIT_STREAM))
        self.arch = ArchParameters(self.model.arch_shapes, parameter_kind(sn.update), generator).to(
            self.device
        )
        train_seed = derive_seed(hp.seed, TRAIN_STREAM)
        torch.manual_seed(train_seed)
        np.random.seed(train_seed % 2**32)
        random.seed(train_seed)

        if sn.levels == 2:
            self.weight_data, self.search_data = self.data.split_train(0.5, hp.seed)
        else:
            self.weight_data = self.search_data = self.data
        batch = training.batch_size
        self.steps_per_epoch = min(
            self.weight_data.steps_per_epoch(batch), self.search_data.steps_per_epoch(batch)
        )
        if self.steps_per_epoch == 0:
            raise HParamsError(
                f"hparams.training.batch_size={batch} exceeds the training images of "
                f"{'a half' if sn.levels == 2 else 'the split'} ({self.weight_data.train_size})"
            )
        decay = [p for p in self.model.parameters() if p.ndim > 1]
        no_decay = [p for p in self.model.parameters() if p.ndim <= 1]
        self.optimizer = torch.optim.SGD(
            [
                {"params": decay, "weight_decay": training.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=training.lr,
            momentum=training.momentum,
        )
        total_steps = self.steps_per_epoch * training.max_epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps)),
        )
        self.arch_optimizer = make_arch_optimizer(
            self.arch, sn.update, sn.arch_step_size, sn.arch_weight_decay
        )
        self.latency_term: ExpectedLatency | None = None
        if sn.latency_predictor:
            self.latency_term = ExpectedLatency(
                additive_predictor(sn.latency_predictor, self.space),
                self.model,
                weight=sn.latency_weight,
                target_ms=sn.latency_target_ms,
            )
        self.landmarks = load_landmarks(
            sn.landmarks, self.space, derive_seed(hp.seed, LANDMARK_STREAM)
        )
        self._landmark_choices = [self.model.choice_of(lm.arch) for lm in self.landmarks]
        self.criterion = nn.CrossEntropyLoss()
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.latency: dict[str, Any] | None = None
        self.ranking: dict[str, Any] | None = None
        self._scores: dict[str, tuple[float, float]] = {}
        self._costs: dict[str, dict[str, int]] = {}

    # -- architecture ----------------------------------------------------------------------
    def probabilities(self) -> dict[str, torch.Tensor]:
        """The architecture's per-edge mixing weights (detached)."""
        return {k: v.detach() for k, v in self.arch.probabilities().items()}

    def derive(self) -> str:
        """The architecture the current weights point at, validated by the space."""
        return self.space.validate(self.model.derive(self.probabilities()))

    def expected_latency_ms(self) -> float | None:
        if self.latency_term is None:
            return None
        with torch.no_grad():
            return float(self.latency_term(self.probabilities()))

    # -- training --------------------------------------------------------------------------
    def _arch_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        probs = self.arch.probabilities()
        loss = self.criterion(self.model(x, probs), y)
        if self.latency_term is not None:
            loss = loss + self.latency_term.penalty(probs).to(loss.device)
        params = list(self.arch.parameters())
        grads = torch.autograd.grad(loss, params)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        self.arch_optimizer.step()
        self.arch_optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def _landmark_loss(
        self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator
    ) -> torch.Tensor:
        settings = self.hp.supernet.landmarks
        total = torch.zeros((), device=self.device)
        for worse, better in draw_pairs(len(self.landmarks), settings.pairs_per_step, rng):
            loss_worse = self.criterion(
                self.model.forward_path(x, self._landmark_choices[worse]), y
            )
            loss_better = self.criterion(
                self.model.forward_path(x, self._landmark_choices[better]), y
            )
            total = total + ranking_loss(loss_worse, loss_better, settings.loss, settings.margin)
        return total / settings.pairs_per_step

    def train_epoch(self) -> dict[str, Any]:
        """Train one epoch (``self.epoch`` -> ``self.epoch + 1``); returns its metrics."""
        hp, t, sn = self.hp, self.hp.training, self.hp.supernet
        e = self.epoch
        self.model.train()
        self._scores.clear()
        self.ranking = None
        arch_on = e >= sn.warmup_epochs
        coef = coefficient(sn.landmarks, e, t.max_epochs) if self.landmarks else 0.0
        pair_rng = np.random.default_rng(derive_seed(hp.seed, PAIR_STREAM, e))
        search_epoch = e if sn.levels == 2 else SEARCH_EPOCH_OFFSET + e
        weight_batches = self.weight_data.train_batches(e, t.batch_size, self.device)
        search_batches = self.search_data.train_batches(search_epoch, t.batch_size, self.device)
        loss_sum = torch.zeros((), device=self.device)
        rank_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        arch_loss, seen, steps = 0.0, 0, 0
        wall, cpu = time.perf_counter(), time.process_time()
        for step, ((x, y), (xs, ys)) in enumerate(
            zip(weight_batches, search_batches, strict=False), start=1
        ):
            if arch_on:
                arch_loss += self._arch_step(xs, ys)
            probs = self.probabilities()
            logits = self.model(x, probs)
            loss = self.criterion(logits, y)
            total = loss
            if coef > 0:
                rank = self._landmark_loss(xs, ys, pair_rng)
                total = total + coef * rank
                rank_sum += rank.detach()
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            if t.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            steps = step
            if step % NAN_CHECK_EVERY == 0:
                self._check_finite(loss_sum, f"step {step} of epoch {e + 1}")
        self._check_finite(loss_sum, f"epoch {e + 1}")
        self.epoch += 1
        metrics: dict[str, Any] = {
            "epoch": self.epoch,
            "train_loss": float(loss_sum) / seen,
            "train_accuracy": int(correct) / seen,
            "arch_loss": arch_loss / steps if arch_on else float("nan"),
            "lr": self.optimizer.param_groups[0]["lr"],
            "arch_updates": arch_on,
            "arch_entropy": self.arch.entropy(),
            "landmark_coef": coef,
            "landmark_rank_loss": float(rank_sum) / steps if coef > 0 else float("nan"),
            "derived_arch": self.derive(),
            "epoch_time_s": time.perf_counter() - wall,
            "cpu_time_s": time.process_time() - cpu,
        }
        expected = self.expected_latency_ms()
        if expected is not None:
            metrics["expected_latency_ms"] = expected
        self.history.append(metrics)
        log.info(
            "epoch %d/%d: train_loss %.4f train_acc %.4f entropy %.3f%s%s",
            self.epoch,
            t.max_epochs,
            metrics["train_loss"],
            metrics["train_accuracy"],
            metrics["arch_entropy"],
            f" E[latency] {expected:.3f} ms" if expected is not None else "",
            f" rank loss {metrics['landmark_rank_loss']:.4f}" if coef > 0 else "",
        )
        return metrics

    def _check_finite(self, loss_sum: torch.Tensor, where: str) -> None:
        if not torch.isfinite(loss_sum):
            raise TrainingDiverged(
                f"supernet training loss became {float(loss_sum)} at {where} "
                f"(lr {self.hp.training.lr}); stopping the trial"
            )

    def train_to(
        self,
        target_epochs: int,
        *,
        after_epoch: EpochCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> bool:
        """Train until ``target_epochs`` (cumulative); False if ``should_stop`` ended it."""
        max_epochs = self.hp.training.max_epochs
        if target_epochs > max_epochs:
            raise HParamsError(
                f"requested length {target_epochs} epochs exceeds hparams.training.max_epochs="
                f"{max_epochs} (the cosine schedule ends there)"
            )
        while self.epoch < target_epochs:
            metrics = self.train_epoch()
            if after_epoch is not None:
                after_epoch(self.epoch, metrics)
            if should_stop is not None and self.epoch < target_epochs and should_stop():
                return False
        return True

    # -- scoring ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _scoring(self) -> Iterator[None]:
        """Eval mode, no gradients, and BatchNorm statistics put back afterwards (scoring with
        recalibration must not change what training continues from)."""
        self.model.eval()
        try:
            with torch.no_grad(), kept_batchnorm_statistics(self.model):
                yield
        finally:
            self.model.train()

    def _val_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        t, limit = self.hp.training, self.hp.supernet.eval_images
        seen = 0
        for x, y in self.data.val_batches(t.batch_size * t.eval_batch_factor, self.device):
            if limit is not None:
                x, y = x[: limit - seen], y[: limit - seen]
            if len(y) == 0:
                return
            seen += len(y)
            yield x, y

    def _evaluate(self, forward: Callable[[torch.Tensor], torch.Tensor]) -> tuple[float, float]:
        loss_sum, correct, seen = 0.0, 0, 0
        for x, y in self._val_batches():
            logits = forward(x)
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        return correct / seen, loss_sum / seen

    def score(self, arch: str) -> tuple[float, float]:
        """``(accuracy, loss)`` of ``arch`` as a sub-network of the supernet on the held-out
        validation split (cached until the next training epoch)."""
        arch = self.space.validate(arch)
        if arch not in self._scores:
            choice = self.model.choice_of(arch)
            with self._scoring():
                if self.hp.supernet.bn == "recalibrate":
                    batches = self.weight_data.train_batches(
                        RECALIBRATION_EPOCH, self.hp.training.batch_size, self.device
                    )
                    recalibrate_subnetwork(
                        self.model,
                        choice,
                        itertools.islice(batches, self.hp.supernet.recalibrate_batches),
                    )
                self._scores[arch] = self._evaluate(lambda x: self.model.forward_path(x, choice))
        return self._scores[arch]

    def score_many(self, archs: list[str]) -> list[tuple[float, float]]:
        return [self.score(a) for a in archs]

    def evaluate_mixture(self) -> tuple[float, float]:
        """``(accuracy, loss)`` of the mixed supernet on the validation split."""
        probs = self.probabilities()
        with self._scoring():
            return self._evaluate(lambda x: self.model(x, probs))

    def rank(self) -> dict[str, Any]:
        """Score the derived architecture, ``rank_archs`` and ``rank_candidates`` random
        ones (distinct canonical keys, seeded), best first: the supernet as a proposal
        source for a multi-trial search (``strategy: supernet``)."""
        if self.ranking is not None:
            return self.ranking
        sn = self.hp.supernet
        pool: list[str] = []
        keys: set[str] = set()

        def add(arch: str) -> None:
            try:
                arch = self.space.validate(arch)
            except ArchitectureError:
                log.warning("ranking: skipping invalid architecture %r", arch)
                return
            key = self.space.canonical_key(arch)
            if key not in keys:
                keys.add(key)
                pool.append(arch)

        add(self.derive())
        for arch in sn.rank_archs:
            add(arch)
        rng = np.random.default_rng(derive_seed(self.hp.seed, RANK_STREAM))
        target, tries = len(pool) + sn.rank_candidates, 0
        while len(pool) < target and tries < 100 * max(1, sn.rank_candidates):
            add(self.space.sample(rng))
            tries += 1
        rows = []
        for arch in pool:
            accuracy, loss = self.score(arch)
            row: dict[str, Any] = {"arch": arch, "supernet_accuracy": accuracy}
            row["supernet_loss"] = loss
            if self.latency_term is not None:
                row["predicted_latency_ms"] = self.latency_term.predict(arch)
            rows.append(row)
        rows.sort(key=lambda r: (-r["supernet_accuracy"], r["supernet_loss"], r["arch"]))
        self.ranking = {
            "format": RANKING_FORMAT,
            "space": self.space.name,
            "space_options": self.space.space_options(),
            "epochs": self.epoch,
            "seed": self.hp.seed,
            "update": sn.update,
            "landmarks": len(self.landmarks),
            "score": "supernet_accuracy",
            "candidates": rows,
        }
        return self.ranking

    def landmark_correlation(self) -> tuple[float, float]:
        """Kendall's tau and Spearman between the landmarks' stand-alone accuracy and their
        supernet accuracy (NaN without landmarks). They were trained on, so this is a fit
        figure, not a held-out one."""
        if len(self.landmarks) < 2:
            return float("nan"), float("nan")
        scores = [self.score(lm.arch)[0] for lm in self.landmarks]
        return _kendall_spearman([lm.accuracy for lm in self.landmarks], scores)

    # -- cost ------------------------------------------------------------------------------
    def cost(self, arch: str) -> dict[str, int]:
        """Parameters and FLOPs of ``arch``'s stand-alone network (validates that it builds)."""
        from hwnas.trials.loop import count_flops

        if arch not in self._costs:
            info = self.data.info
            net = self.space.build(arch, info.num_classes, info.input_shape)
            params = sum(p.numel() for p in net.parameters())
            flops = count_flops(net, info.input_shape, torch.device("cpu"))
            self._costs[arch] = {"params": params, "flops": flops}
        return dict(self._costs[arch])

    def measure_latency(self, arch: str) -> dict[str, Any]:
        """The derived architecture's measured latency (as ``TrialRun.measure_latency``),
        once per architecture; RNGs are left as they were."""
        settings = self.hp.latency
        if not settings.enabled:
            return {}
        if self.latency is not None and self.latency.get("latency_arch") == arch:
            return self.latency
        from hwnas import latency

        info = self.data.info
        rng = capture_rng_state()
        target = latency.MeasurementTarget(
            backend=settings.backend,
            batch=settings.batch,
            input_shape=info.input_shape,
            num_classes=info.num_classes,
            threads=settings.threads,
        )
        try:
            result = latency.measure_architecture(
                self.space, arch, target, cache_path=settings.cache
            )
        finally:
            restore_rng_state(rng)
        self.latency = {**result.to_metrics(), "latency_arch": arch}
        return self.latency

    # -- the report ------------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """The one flat metrics dict: the derived architecture's supernet score, cost and
        latency, the mixture's score, the ranking's head, and the search's state."""
        derived = self.derive()
        accuracy, loss = self.score(derived)
        mixed_accuracy, mixed_loss = self.evaluate_mixture()
        ranking = self.rank()
        tau, rho = self.landmark_correlation()
        last = self.history[-1] if self.history else {}
        info = self.data.info
        out: dict[str, Any] = {
            # The derived architecture scored with the shared weights (not trained alone).
            "validation_accuracy": accuracy,
            "validation_loss": loss,
            "supernet_accuracy": accuracy,
            "mixed_accuracy": mixed_accuracy,
            "mixed_loss": mixed_loss,
            "train_loss": last.get("train_loss", float("nan")),
            "train_accuracy": last.get("train_accuracy", float("nan")),
            "epochs": self.epoch,
            "arch_entropy": self.arch.entropy(),
            "landmarks": len(self.landmarks),
            "landmark_kendall": tau,
            "landmark_spearman": rho,
            "ranked": len(ranking["candidates"]),
            "ranking": ranking["candidates"][: self.hp.supernet.report_top],
        }
        out.update(self.cost(derived))
        measured = self.measure_latency(derived)
        out.update({k: v for k, v in measured.items() if k != "latency_arch"})
        if self.latency_term is not None:
            out["expected_latency_ms"] = self.expected_latency_ms()
            out["predicted_latency_ms"] = self.latency_term.predict(derived)
        out["lr"] = self.optimizer.param_groups[0]["lr"]
        out["train_time_s"] = sum(h["epoch_time_s"] for h in self.history)
        out["cpu_time_s"] = sum(h["cpu_time_s"] for h in self.history)
        out.update(
            {
                "kind": "supernet",
                "update": self.hp.supernet.update,
                "arch": derived,
                "derived_arch": derived,
                "space": self.hp.space,
                "dataset": info.name,
                "input_shape": list(info.input_shape),
                "num_classes": info.num_classes,
            }
        )
        return out

    # -- checkpoints -----------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        hp, sn = self.hp, self.hp.supernet
        return {
            "kind": "supernet",
            "space": hp.space,
            "space_options": self.space.space_options(),
            "seed": hp.seed,
            "dataset": hp.data.dataset,
            "max_epochs": hp.training.max_epochs,
            "batch_size": hp.training.batch_size,
            "update": sn.update,
            "levels": sn.levels,
            "landmarks": [lm.arch for lm in self.landmarks],
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bitwise."""
        return {
            "identity": self._identity(),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "arch": self.arch.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "arch_optimizer": self.arch_optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": capture_rng_state(),
            "history": self.history,
            "latency": self.latency,
            "landmark_set": landmark_payload(self.landmarks),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine, theirs = self._identity(), state.get("identity", {})
        differ = sorted(k for k in mine if mine[k] != theirs.get(k))
        if differ:
            detail = ", ".join(
                f"{k}: {str(theirs.get(k))[:80]!r} != {str(mine[k])[:80]!r}" for k in differ
            )
            raise CheckpointError(f"checkpoint belongs to another trial ({detail})")
        self.model.load_state_dict(state["model"])
        self.arch.load_state_dict(state["arch"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.latency = state["latency"]
        self._scores.clear()
        self.ranking = None

    def save(self, directory: str | Path) -> Path:
        """Checkpoint into ``directory`` (atomically), with ``ranking.json`` once ranked."""
        path = save_checkpoint(directory, self.state_dict())
        if self.ranking is not None:
            write_json_atomic(Path(directory) / RANKING_FILE, self.ranking, indent=1)
        return path

    def restore(self, directory: str | Path) -> bool:
        state = load_checkpoint(directory)
        if state is None:
            return False
        self.load_state_dict(state)
        log.info("resumed the supernet from %s at epoch %d", directory, self.epoch)
        return True


def train_supernet_to(
    hparams: dict[str, Any],
    target_epochs: int,
    checkpoint_dir: str | Path,
    *,
    report: EpochCallback | None = None,
) -> dict[str, Any]:
    """The local backend's entry (as ``trials.loop.train_to``): resume, train to
    ``target_epochs`` checkpointing every epoch, report; ``ranking.json`` lands beside the
    checkpoint and its path in the metrics (``ranking_file``)."""
    run = SupernetRun(hparams)
    run.restore(checkpoint_dir)

    def after_epoch(epoch: int, metrics: dict[str, Any]) -> None:
        run.save(checkpoint_dir)
        if report is not None:
            report(epoch, metrics)

    run.train_to(target_epochs, after_epoch=after_epoch)
    metrics = run.metrics()
    run.save(checkpoint_dir)  # keeps the measured latency and writes the ranking
    metrics["ranking_file"] = str(Path(checkpoint_dir) / RANKING_FILE)
    return metrics


__all__ = ["RANKING_FILE", "RANKING_FORMAT", "SupernetRun", "train_supernet_to"]
