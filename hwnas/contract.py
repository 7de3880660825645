"""What a searcher and a trial agree on, defined once: the trial's hyperparameters and the
input shape of each built-in dataset.

The searcher builds a trial's hparams from these models (``searchers.config`` uses the same
sections for its ``data``, ``training`` and ``latency`` keys) and the trial validates what it
receives with them (``trials.hparams``). Both rooms import this module; it imports neither.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    # Sections reject unknown keys so a typo ("learning_rate") fails loudly, in the config file
    # as in a trial's hparams.
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSettings(_Section):
    """Which dataset, where it lives, and how the validation split is held out."""

    dataset: Literal["digits", "cifar10", "cifar100", "imagefolder"] = "digits"
    root: str | None = None
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    download: bool = False
    num_workers: int = Field(0, ge=0)
    #: Side of the square crop for ``imagefolder`` data (other datasets have a fixed size).
    image_size: int = Field(224, ge=8)
    #: Use only the first N training images after the split (quick runs and benchmarks).
    train_subset: int | None = Field(None, ge=1)


class TrainingSettings(_Section):
    """Optimisation settings a search shares across its trials (lengths are epochs)."""

    batch_size: int = Field(64, ge=2)
    lr: float = Field(0.05, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    #: Max gradient norm; None or 0 disables clipping.
    grad_clip: float | None = Field(5.0, ge=0.0)
    amp: Literal["off", "bf16", "fp16"] = "off"
    channels_last: bool = False
    compile: bool = False
    #: torch intra-op threads for CPU training (None: torch's default, one per core).
    cpu_threads: int | None = Field(None, ge=1)
    #: Batch-size multiplier for evaluation (no gradients, so more fits).
    eval_batch_factor: int = Field(4, ge=1)
    #: Before each validation, recompute the BatchNorm statistics over this many training
    #: batches (weights frozen; ``trials.batchnorm``): after a short training the running
    #: statistics lag the weights and early rungs would compare noise. 0 turns it off.
    bn_recalibration_batches: int = Field(20, ge=0)


class TrialTraining(TrainingSettings):
    """A trial's training section: the shared settings plus the planned length, which spans
    the cosine schedule (the search's full training length, whatever rung a trial stops at)."""

    max_epochs: int = Field(9, ge=1)


class LatencySettings(_Section):
    """How the latency module measures the trial's architecture (once per trial)."""

    enabled: bool = True
    backend: str = "ort-cpu"
    batch: int = Field(1, ge=1)
    threads: int = Field(1, ge=1)
    cache: str | None = None


class TrialHParams(BaseModel):
    """All a trial needs: architecture, seed, data, training and latency settings."""

    # Top-level extras are allowed: searchers may add bookkeeping keys the trial ignores.
    model_config = ConfigDict(extra="ignore", frozen=True)

    space: str
    space_options: dict[str, Any] = Field(default_factory=dict)
    arch: str
    seed: int = 0
    data: DataSettings = Field(default_factory=DataSettings)
    training: TrialTraining = Field(default_factory=TrialTraining)
    latency: LatencySettings = Field(default_factory=LatencySettings)
    #: Cumulative epochs to train to when no searcher operation says so: a run the Determined
    #: SDK backend starts as its own ``searcher: single`` experiment (Determined 0.38 has no
    #: searcher operations; 0.38 deprecates ``max_length``, so the length belongs to the trial).
    target_length: int | None = Field(None, ge=1)


# -- what a trial run reports back -----------------------------------------------------------
# One result dict per run, ``{"ok": true, "metrics": {...}}`` or ``{"ok": false, "kind": KIND,
# "message": "..."}`` (KIND: ``invalid``, ``oom``, ``nan``, ``error``; ``invalid`` means the
# hyperparameters cannot run). The local child writes it to a file; a Determined trial without a
# searcher operation reports it as JSON text in the metrics group ``RESULT_GROUP``; a Determined
# custom-searcher trial passes the metrics dict (success) or the failed result dict (failure)
# to ``op.report_completed`` before it exits, so the searcher learns why (Determined 0.37
# forwards no reason of its own for an ``InvalidHP`` exit).

#: Metrics group (``core.train.report_metrics``) holding ``{RESULT_KEY: <result as JSON text>}``.
RESULT_GROUP = "hwnas_result"
RESULT_KEY = "result"


def json_safe(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Non-finite floats become ``None`` (strict JSON has no NaN/inf)."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in metrics.items()
    }


def ok_result(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The result of a run that produced metrics."""
    return {"ok": True, "metrics": json_safe(metrics)}


def failed_result(kind: str, message: str) -> dict[str, Any]:
    """The result of a run that ended without metrics (``kind`` as in the comment above)."""
    return {"ok": False, "kind": str(kind), "message": str(message)[:2000]}


def is_failed_result(value: Any) -> bool:
    """Whether ``value`` is a failed result dict (never true for a metrics dict)."""
    return isinstance(value, Mapping) and value.get("ok") is False and "kind" in value


#: ``(input_shape, num_classes)`` of each dataset with a fixed shape (``trials.data`` builds
#: exactly these; a test checks it). ``imagefolder`` depends on the folder, so it has no entry.
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "digits": ((1, 16, 16), 10),
    "cifar10": ((3, 32, 32), 10),
    "cifar100": ((3, 32, 32), 100),
}

__all__ = [
    "DATASET_SHAPES",
    "RESULT_GROUP",
    "RESULT_KEY",
    "DataSettings",
    "LatencySettings",
    "TrainingSettings",
    "TrialHParams",
    "TrialTraining",
    "failed_result",
    "is_failed_result",
    "json_safe",
    "ok_result",
]
