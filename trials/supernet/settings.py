"""A supernet trial's hyperparameters: the trial contract's sections (``hwnas.contract``) plus
a ``supernet`` section, validated once at the edge with errors that name the field.

A supernet trial is told apart from a stand-alone one by ``kind: supernet``; it needs no
``arch`` (it derives one). Defaults follow GAEA (``liamcli/gaea_release``: architecture
learning rate 0.1, no warm-up, single level) and the landmark code
(``kcyu2014/nas-landmarkreg``: 30 landmarks, one random pair per step, hinge with zero margin,
coefficient 10 rising on a cosine); see ``docs/supernet.md``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hwnas.contract import DataSettings, LatencySettings, TrialTraining
from hwnas.trials.hparams import HParamsError

#: The value of ``hparams["kind"]`` that selects a supernet trial.
KIND = "supernet"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LandmarkSettings(_Section):
    """Landmark architectures with known stand-alone accuracy and the ranking loss on them."""

    #: ``none``: no landmark loss. ``file``: a JSON list of ``{"arch", <metric>}`` objects (or
    #: ``{"landmarks": [...]}``) or a CSV with ``arch`` and ``<metric>`` columns, such as the
    #: ``trials.csv`` of an earlier multi-trial search. ``table``: the NB201 table (nb201 only).
    source: Literal["none", "file", "table"] = "none"
    #: The file (``file``) or the NB201 table (``table``; default: ``$HWNAS_NB201_TABLE``, else
    #: the packaged table).
    path: str | None = None
    #: The accuracy key or column (``table``: ``c10_test``, ``c10_valid``, ``c100_test``, ...).
    metric: str | None = None
    #: How many landmarks to draw from the source (all if it has fewer).
    count: int = Field(30, ge=2)
    #: ``random``: a uniform draw; ``spaced``: evenly spaced in accuracy order.
    selection: Literal["random", "spaced"] = "random"
    #: The ranking loss's coefficient at full strength.
    weight: float = Field(10.0, ge=0.0)
    #: How the coefficient grows after ``warmup_epochs`` (updated once per epoch).
    schedule: Literal["constant", "cosine_increase", "linear_increase"] = "cosine_increase"
    #: Epochs of plain supernet training before the ranking loss starts.
    warmup_epochs: int = Field(0, ge=0)
    #: Random landmark pairs per step (each costs two single-path forward/backward passes).
    pairs_per_step: int = Field(1, ge=1)
    #: ``hinge``: max(0, L(better) - L(worse) + margin); ``softplus``: its smooth version.
    loss: Literal["hinge", "softplus"] = "hinge"
    margin: float = Field(0.0, ge=0.0)

    @model_validator(mode="after")
    def _source_needs(self) -> LandmarkSettings:
        if self.source == "file" and not self.path:
            raise ValueError("landmarks.source 'file' needs landmarks.path")
        return self


class SupernetSettings(_Section):
    """How the weight-sharing supernet is trained and how its architecture is derived."""

    #: ``gaea``: exponentiated-gradient (mirror-descent) steps on per-edge simplices;
    #: ``darts``: softmax over logits with Adam (DARTS's first-order baseline).
    update: Literal["gaea", "darts"] = "gaea"
    #: Architecture step size (default: gaea 0.1, darts 3e-4).
    arch_lr: float | None = Field(None, gt=0.0)
    #: darts: Adam weight decay on the logits (default 1e-3); gaea: none.
    arch_weight_decay: float | None = Field(None, ge=0.0)
    #: 1: architecture and weights both learn from the training split (GAEA's ERM); 2:
    #: bi-level, the training split halved into a weight half and an architecture half.
    levels: Literal[1, 2] = 1
    #: Epochs in which only the weights train (the architecture stays uniform).
    warmup_epochs: int = Field(0, ge=0)
    #: Leave ``none`` out of the mixed ops (default: nb201 yes, as GAEA; darts no, as DARTS).
    exclude_none: bool | None = None
    #: ``batch``: BatchNorm always normalises with the batch's statistics, so every
    #: sub-network is scored without running statistics of other sub-networks; ``recalibrate``:
    #: running statistics, recomputed for each sub-network before it is scored.
    bn: Literal["batch", "recalibrate"] = "batch"
    #: Training batches used to recalibrate each sub-network (``bn: recalibrate``).
    recalibrate_batches: int = Field(4, ge=1)
    #: Learnable scale and shift in the cells' BatchNorm (DARTS/GAEA search: off).
    bn_affine: bool = False
    #: An additive latency predictor: a ``lookup`` JSON from ``hwnas latency profile`` or
    #: ``table:<device>`` (nb201; a lookup is fitted on the table's column).
    latency_predictor: str | None = None
    #: Weight of the expected-latency term in the architecture loss (0: off).
    latency_weight: float = Field(0.0, ge=0.0)
    #: With a target: weight * max(0, E[latency] / target - 1); without: weight * E[latency]
    #: / E[latency at the uniform architecture].
    latency_target_ms: float | None = Field(None, gt=0.0)
    landmarks: LandmarkSettings = Field(default_factory=LandmarkSettings)
    #: Random architectures scored by the trained supernet for the ranking (besides the
    #: derived one and ``rank_archs``).
    rank_candidates: int = Field(100, ge=0)
    #: Architectures to score as well (e.g. a multi-trial search's candidates).
    rank_archs: list[str] = Field(default_factory=list)
    #: Score sub-networks on at most this many validation images (None: all).
    eval_images: int | None = Field(None, ge=1)
    #: Top ranked candidates reported in the metrics dict (the whole ranking goes to a file).
    report_top: int = Field(10, ge=0)

    @model_validator(mode="after")
    def _latency_needs(self) -> SupernetSettings:
        if self.latency_weight > 0 and not self.latency_predictor:
            raise ValueError("supernet.latency_weight > 0 needs supernet.latency_predictor")
        return self

    @property
    def arch_step_size(self) -> float:
        if self.arch_lr is not None:
            return self.arch_lr
        return 0.1 if self.update == "gaea" else 3e-4


class SupernetHParams(BaseModel):
    """All a supernet trial needs. Top-level extras are ignored, as in ``TrialHParams``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: Literal["supernet"]
    space: Literal["nb201", "darts"]
    space_options: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    data: DataSettings = Field(default_factory=DataSettings)
    training: TrialTraining = Field(default_factory=TrialTraining)
    latency: LatencySettings = Field(default_factory=LatencySettings)
    supernet: SupernetSettings = Field(default_factory=SupernetSettings)


def is_supernet(hparams: Any) -> bool:
    """Whether ``hparams`` ask for a supernet trial (``kind: supernet``)."""
    if isinstance(hparams, SupernetHParams):
        return True
    return isinstance(hparams, dict) and hparams.get("kind") == KIND


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_supernet_hparams(raw: Any) -> SupernetHParams:
    """Validate a supernet trial's hyperparameters; one ``HParamsError`` naming each bad field."""
    if isinstance(raw, SupernetHParams):
        return raw
    if not isinstance(raw, dict):
        raise HParamsError(f"trial hparams must be a JSON object, got {type(raw).__name__}")
    try:
        return SupernetHParams.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"hparams.{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']} "
            f"(got {_short(err.get('input'))})"
            for err in exc.errors()
        )
        raise HParamsError(f"invalid supernet hparams: {problems}") from None


__all__ = [
    "KIND",
    "LandmarkSettings",
    "SupernetHParams",
    "SupernetSettings",
    "is_supernet",
    "parse_supernet_hparams",
]
