"""Landmark regularisation (Yu, Ranftl, Salzmann, CVPR 2021; ``kcyu2014/nas-landmarkreg``
``nasws/cnn/procedures/landmark_procedures.py``).

A few *landmark* architectures with known stand-alone accuracy; each training step draws a
random pair of them, computes both sub-networks' supernet losses on the same batch, and adds a
ranking loss that penalises the better one having the higher loss:
``coef * max(0, L(better) - L(worse) + margin)`` (the code's default ``mae_relu``, margin 0).
The coefficient is 0 during a warm-up, then ``weight * s(t)`` with ``s`` rising from 0 to 1
(``cosine_increase``: 0.5 (1 + cos(pi (t + 1)))), updated once per epoch.

Landmarks come from a file (a JSON list or a search's ``trials.csv``: earlier trials of a
multi-trial search, or a small stand-alone run) or from the NB201 table.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwnas.spaces.base import ArchitectureError, SearchSpace
from hwnas.trials.hparams import HParamsError
from hwnas.trials.supernet.settings import LandmarkSettings


class LandmarkError(HParamsError):
    """A landmark source is missing, malformed or has too few usable architectures."""


@dataclass(frozen=True)
class Landmark:
    arch: str
    accuracy: float


def _read_file(path: Path, metric: str) -> list[tuple[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LandmarkError(f"landmarks.path {path}: cannot read: {exc}") from None
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if rows and ("arch" not in rows[0] or metric not in rows[0]):
            raise LandmarkError(
                f"landmarks.path {path}: needs columns 'arch' and {metric!r}; "
                f"has {', '.join(rows[0])}"
            )
        return [(r["arch"], r[metric]) for r in rows]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LandmarkError(f"landmarks.path {path}: not JSON or CSV: {exc}") from None
    if isinstance(data, dict):
        data = data.get("landmarks")
    if not isinstance(data, list):
        raise LandmarkError(
            f"landmarks.path {path}: expected a list of objects (or {{'landmarks': [...]}})"
        )
    out = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "arch" not in item or metric not in item:
            raise LandmarkError(f"landmarks.path {path}: item {i} lacks 'arch' or {metric!r}")
        out.append((item["arch"], item[metric]))
    return out


def _read_table(path: str | None, metric: str) -> list[tuple[str, Any]]:
    from hwnas.spaces.nb201_table import TableError, load_table

    try:
        table = load_table(path)
        column = table[metric]
    except (TableError, KeyError) as exc:
        raise LandmarkError(f"landmarks (table): {exc}") from None
    return list(zip(table.archs, np.asarray(column, dtype=float).tolist(), strict=True))


def load_landmarks(
    settings: LandmarkSettings, space: SearchSpace, seed: int, exclude: set[str] = frozenset()
) -> list[Landmark]:
    """The selected landmarks, **sorted from worst to best** accuracy.

    Entries that are invalid in ``space``, lack a finite accuracy, or share a canonical key
    with an earlier entry or with ``exclude`` are skipped. ``selection: random`` draws
    ``count`` uniformly (seeded); ``spaced`` takes them evenly spaced in accuracy order."""
    if settings.source == "none":
        return []
    if settings.source == "table":
        if space.name != "nb201":
            raise LandmarkError(f"landmarks.source 'table' is the NB201 table, not {space.name}")
        raw = _read_table(settings.path, settings.metric or "c10_test")
    else:
        raw = _read_file(
            Path(str(settings.path)).expanduser(), settings.metric or "validation_accuracy"
        )
    seen = {space.canonical_key(a) for a in exclude}
    usable: list[Landmark] = []
    for arch, value in raw:
        try:
            arch = space.validate(str(arch))
            accuracy = float(value)
        except (ArchitectureError, TypeError, ValueError):
            continue
        key = space.canonical_key(arch)
        if not math.isfinite(accuracy) or key in seen:
            continue
        seen.add(key)
        usable.append(Landmark(arch, accuracy))
    if len(usable) < 2:
        raise LandmarkError(
            f"landmarks ({settings.source}): {len(usable)} usable architecture(s) of "
            f"{len(raw)}; the ranking loss needs at least 2"
        )
    usable.sort(key=lambda lm: (lm.accuracy, lm.arch))
    count = min(settings.count, len(usable))
    if settings.selection == "spaced":
        picks = np.unique(np.round(np.linspace(0, len(usable) - 1, count)).astype(int))
    else:
        rng = np.random.default_rng(seed)
        picks = np.sort(rng.choice(len(usable), size=count, replace=False))
    return [usable[int(i)] for i in picks]


def coefficient(settings: LandmarkSettings, epoch: int, max_epochs: int) -> float:
    """The ranking loss's coefficient during 0-based ``epoch``: 0 before the warm-up ends,
    then ``weight * s(t)`` with t = (epochs since warm-up + 1) / (epochs after warm-up)."""
    if settings.source == "none" or settings.weight == 0 or epoch < settings.warmup_epochs:
        return 0.0
    span = max(1, max_epochs - settings.warmup_epochs)
    t = min(1.0, (epoch - settings.warmup_epochs + 1) / span)
    if settings.schedule == "constant":
        s = 1.0
    elif settings.schedule == "linear_increase":
        s = t
    else:  # cosine_increase: 0 -> 1
        s = 0.5 * (1.0 + math.cos(math.pi * (t + 1.0)))
    return settings.weight * s


def draw_pairs(count: int, pairs: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``pairs`` random pairs ``(worse, better)`` of distinct landmark indices (the list is
    sorted worst to best, so the larger index is the better landmark)."""
    out = []
    for _ in range(pairs):
        a, b = rng.choice(count, size=2, replace=False)
        out.append((int(min(a, b)), int(max(a, b))))
    return out


def ranking_loss(
    loss_worse: torch.Tensor, loss_better: torch.Tensor, kind: str = "hinge", margin: float = 0.0
) -> torch.Tensor:
    """Penalise the better landmark having the higher supernet loss."""
    gap = loss_better - loss_worse + margin
    if kind == "softplus":
        return torch.nn.functional.softplus(gap)
    return torch.relu(gap)


def landmark_payload(landmarks: list[Landmark]) -> list[dict[str, Any]]:
    """JSON form (for checkpoints and reports)."""
    return [{"arch": lm.arch, "accuracy": lm.accuracy} for lm in landmarks]


__all__ = [
    "Landmark",
    "LandmarkError",
    "coefficient",
    "draw_pairs",
    "landmark_payload",
    "load_landmarks",
    "ranking_loss",
]
