"""Trial checkpoints: one ``torch.save`` file of tensors and JSON-able values, written atomically
and loaded with ``weights_only=True`` (no arbitrary pickled objects)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwnas.atomic import atomic_open
from hwnas.trials.errors import TrialError

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT_VERSION = 1


class CheckpointError(TrialError):
    """A checkpoint is unreadable or belongs to a different trial."""


def save_checkpoint(directory: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` to ``directory/checkpoint.pt`` via a temp file + ``os.replace``, so a crash
    mid-write leaves the previous checkpoint intact."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / CHECKPOINT_FILE
    with atomic_open(target, "wb") as f:
        torch.save({"format": FORMAT_VERSION, **state}, f)
    return target


def load_checkpoint(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The checkpoint in ``directory`` (tensors on CPU), or ``None`` when there is none."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/unsafe files
        raise CheckpointError(f"cannot load checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a format-{FORMAT_VERSION} trial checkpoint")
    return state


def load_model_weights(directory: str | os.PathLike[str]) -> tuple[dict[str, Any], int | None]:
    """The model ``state_dict`` of the checkpoint in ``directory`` and the epoch it was saved
    at (for exporting a trained trial); ``CheckpointError`` when there is none.

    When the checkpoint holds BatchNorm statistics recalibrated for its epoch (what the
    trial's validation used), they replace the training's running statistics, so the
    exported model is the one whose accuracy was reported."""
    state = load_checkpoint(directory)
    if state is None:
        raise CheckpointError(f"{Path(directory) / CHECKPOINT_FILE}: no checkpoint to load")
    weights = state.get("model")
    if not isinstance(weights, dict):
        raise CheckpointError(f"{Path(directory) / CHECKPOINT_FILE}: holds no model weights")
    epoch = state.get("epoch")
    bn = state.get("bn_recalibration")
    if isinstance(bn, dict) and bn.get("epoch") == epoch and isinstance(bn.get("buffers"), dict):
        weights = {**weights, **{k: v for k, v in bn["buffers"].items() if k in weights}}
    return weights, int(epoch) if isinstance(epoch, int) else None


def capture_rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy-global and python ``random`` states as tensors and lists."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": _python_state_to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng_state``."""
    torch.set_rng_state(state["torch"])
    nps = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": nps["bit_generator"],
            "state": {"key": nps["key"].numpy().astype(np.uint32), "pos": nps["pos"]},
            "has_gauss": nps["has_gauss"],
            "gauss": nps["gauss"],
        }
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def _python_state_to_lists(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]
