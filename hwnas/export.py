"""``hwnas export OUT --rank K``: one front member as ONNX + architecture JSON + weights.

Rank ``K`` is the ``rank`` in ``OUT/pareto.json`` (see ``hwnas.report``: feasible members first,
best first by the first objective). The destination folder (default
``OUT/export/rank<K>``) receives:

- ``model.onnx``: exported by ``hwnas.latency.export.export_onnx`` (checked against torch in ORT);
- ``architecture.json``: space name and options, arch string, metrics, ``num_classes``,
  ``input_shape``, trial id and rank;
- ``weights.pt``: the model's ``state_dict`` from the trial's last checkpoint (tensors only);
- ``README.txt``: how to load it with nothing but torch and the space definition.

The weights come from the trial's last checkpoint, read by the trials room's own
``load_model_weights`` (``weights_only=True``); the hyperparameters from the search's saved
state.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.atomic import atomic_path, write_json_atomic
from hwnas.contract import DATASET_SHAPES
from hwnas.report import PARETO_JSON, read_pareto

RECIPE = """\
Exported by `hwnas export` from {out} (trial {trial_id}, front rank {rank}).

Run with ONNX Runtime:
    import numpy as np, onnxruntime as ort
    session = ort.InferenceSession("model.onnx")
    logits = session.run(None, {{"{input_name}": np.zeros((1, {shape}), np.float32)}})[0]

Load in PyTorch with only torch and the search-space definition (the hwnas `spaces` package):
    import json, torch
    from hwnas.spaces import get_space
    arch = json.load(open("architecture.json"))
    model = get_space(arch["space"], **arch["space_options"]).build(
        arch["arch"], num_classes=arch["num_classes"], input_shape=tuple(arch["input_shape"]))
    model.load_state_dict(torch.load("weights.pt", weights_only=True))
    model.eval()
"""


class ExportCommandError(RuntimeError):
    """The requested front member cannot be exported (no such rank, no checkpoint, ...)."""


@dataclass(frozen=True)
class ExportedModel:
    """Where the export went and what it holds."""

    dest: Path
    trial_id: int
    rank: int
    arch: str
    onnx_path: Path
    weights_path: Path
    architecture_path: Path
    max_abs_diff: float


def _front_member(pareto: dict[str, Any], rank: int, source: Path) -> dict[str, Any]:
    front = pareto.get("front") or []
    if not front:
        raise ExportCommandError(f"{source}: the Pareto front is empty (no evaluated trial)")
    for member in front:
        if int(member["rank"]) == rank:
            return member
    raise ExportCommandError(
        f"{source}: no front member with rank {rank}; ranks 1..{len(front)} exist"
    )


def _trial_hparams(out: Path, trial_id: int) -> tuple[dict[str, Any], Path]:
    """The trial's hparams from the search's ``state.json`` and its folder."""
    from hwnas.driver.local import LocalBackend, load_state

    state = load_state(out)
    hparams = state["loop"]["hparams"].get(str(trial_id))
    if hparams is None:
        raise ExportCommandError(f"{out}/state.json has no trial {trial_id}")
    return dict(hparams), LocalBackend.trial_folder(out, trial_id)


def data_shape(metrics: dict[str, Any], hparams: dict[str, Any]) -> tuple[tuple[int, ...], int]:
    """``(input_shape, num_classes)`` of a trial: from its metrics, else from its dataset."""
    if "input_shape" in metrics and "num_classes" in metrics:
        return tuple(int(v) for v in metrics["input_shape"]), int(metrics["num_classes"])
    dataset = str((hparams.get("data") or {}).get("dataset", "digits"))
    if dataset not in DATASET_SHAPES:
        raise ExportCommandError(
            f"cannot tell the input shape and class count of dataset {dataset!r}: the trial's "
            "metrics carry no input_shape/num_classes"
        )
    return DATASET_SHAPES[dataset]


def load_weights(trial_dir: Path) -> tuple[dict[str, Any], int | None]:
    """The model ``state_dict`` from a trial's last checkpoint and the epoch it was saved at."""
    from hwnas.trials.checkpoint import CheckpointError, load_model_weights

    try:
        return load_model_weights(trial_dir / "checkpoint")
    except CheckpointError as exc:
        raise ExportCommandError(f"trial folder {trial_dir}: {exc}") from exc


def export_member(
    out_dir: str | Path, rank: int = 1, dest: str | Path | None = None
) -> ExportedModel:
    """Export front member ``rank`` of the search in ``out_dir`` into ``dest``."""
    import torch

    from hwnas.latency.export import INPUT_NAME, export_onnx
    from hwnas.spaces import get_space

    out = Path(out_dir)
    if rank < 1:
        raise ExportCommandError(f"--rank must be >= 1, got {rank}")
    pareto_path = out / PARETO_JSON
    try:
        pareto = read_pareto(out)
    except FileNotFoundError:
        raise ExportCommandError(
            f"{pareto_path}: no report here; run `hwnas report {out}` first"
        ) from None
    member = _front_member(pareto, rank, pareto_path)
    trial_id, arch, metrics = int(member["trial_id"]), str(member["arch"]), member["metrics"]
    hparams, trial_dir = _trial_hparams(out, trial_id)
    space_name = str(hparams["space"])
    space_options = dict(hparams.get("space_options") or {})
    input_shape, num_classes = data_shape(metrics, hparams)

    space = get_space(space_name, **space_options)
    model = space.build(arch, num_classes=num_classes, input_shape=input_shape)
    weights, checkpoint_epoch = load_weights(trial_dir)
    if checkpoint_epoch is not None and checkpoint_epoch != member.get("epochs"):
        # E.g. a trial that failed while training past its last reported length.
        warnings.warn(
            f"trial {trial_id}: its checkpoint is from epoch {checkpoint_epoch} but its "
            f"reported metrics are from epoch {member.get('epochs')}",
            stacklevel=2,
        )
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise ExportCommandError(
            f"trial {trial_id}: checkpoint weights do not fit {space_name} {arch} with "
            f"num_classes={num_classes}, input_shape={input_shape}: {exc}"
        ) from exc
    model.eval()

    target = Path(dest) if dest is not None else out / "export" / f"rank{rank}"
    target.mkdir(parents=True, exist_ok=True)
    onnx_path = target / "model.onnx"
    result = export_onnx(
        model, onnx_path, input_shape=tuple(input_shape), label=f"trial {trial_id} ({arch})"
    )
    weights_path = target / "weights.pt"
    with atomic_path(weights_path) as tmp:
        torch.save(model.state_dict(), tmp)
    architecture = {
        "space": space_name,
        "space_options": space_options,
        "arch": arch,
        "num_classes": num_classes,
        "input_shape": list(input_shape),
        "trial_id": trial_id,
        "rank": rank,
        "feasible": bool(member.get("feasible", True)),
        "epochs": member.get("epochs"),
        "checkpoint_epoch": checkpoint_epoch,
        "metrics": metrics,
        "objectives": pareto.get("objectives"),
        "constraints": pareto.get("constraints"),
        "onnx": {
            "file": onnx_path.name,
            "opset": result.opset,
            "input_name": INPUT_NAME,
            "max_abs_diff_vs_torch": result.max_abs_diff,
        },
    }
    architecture_path = target / "architecture.json"
    write_json_atomic(architecture_path, architecture, indent=1, allow_nan=True)
    recipe = RECIPE.format(
        out=out,
        trial_id=trial_id,
        rank=rank,
        input_name=INPUT_NAME,
        shape=", ".join(str(s) for s in input_shape),
    )
    (target / "README.txt").write_text(recipe, encoding="utf-8")
    return ExportedModel(
        target,
        trial_id,
        rank,
        arch,
        onnx_path,
        weights_path,
        architecture_path,
        result.max_abs_diff,
    )


def describe(exported: ExportedModel) -> str:
    """A short human summary for the CLI."""
    return json.dumps(
        {
            "dest": str(exported.dest),
            "trial_id": exported.trial_id,
            "rank": exported.rank,
            "arch": exported.arch,
            "max_abs_diff_vs_torch": exported.max_abs_diff,
        },
        indent=1,
    )


__all__ = [
    "ExportCommandError",
    "ExportedModel",
    "data_shape",
    "describe",
    "export_member",
    "load_weights",
]
