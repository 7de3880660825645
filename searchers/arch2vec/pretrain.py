"""Unsupervised pre-training of the arch2vec graph VAE, and its checksummed weight files.

A model is stored as two files: ``NAME.pt`` (a plain ``state_dict`` of tensors, loaded with
``torch.load(weights_only=True)``) and ``NAME.json`` (space, VAE config, training settings and
the SHA-256 of the weights). Loading recomputes the checksum and refuses a mismatch, so a
truncated or swapped file never silently feeds a search. Nothing is ever downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwnas.atomic import atomic_open, atomic_path
from hwnas.paths import user_cache_dir
from hwnas.searchers.arch2vec.model import Arch2VecConfig, GraphVAE, graphs_to_tensors, vae_loss
from hwnas.spaces.base import SearchSpace

FORMAT = "hwnas-arch2vec/1"
PACKAGE_WEIGHTS = Path(__file__).resolve().parent / "weights"


class ModelFileError(RuntimeError):
    """A weight file or its sidecar is missing, malformed, or fails its checksum."""


@dataclass
class PretrainResult:
    """A trained model with its training settings and per-epoch loss history."""

    model: GraphVAE
    training: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)


@contextlib.contextmanager
def deterministic_torch() -> Iterator[None]:
    """Deterministic kernels on one thread for the duration, restoring the caller's settings.

    One thread also makes the bits independent of the machine's core count (reductions split
    across threads sum in another order), and the model is small enough not to need more.
    """
    previous, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
        torch.set_num_threads(threads)


def space_graphs(space: SearchSpace, archs: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The graphs of ``archs`` in ``space`` as stacked tensors ``(B, n, n)``, ``(B, n, k)``."""
    return graphs_to_tensors([space.graph(a) for a in archs])


def training_archs(
    space: SearchSpace, *, limit: int | None = None, seed: int = 0, sample_size: int = 20000
) -> list[str]:
    """All archs of an enumerable space (or ``sample_size`` samples), optionally subsampled."""
    rng = np.random.default_rng(seed)
    try:
        archs = list(space.enumerate())
    except NotImplementedError:
        archs = sorted({space.sample(rng) for _ in range(sample_size)})
    if limit is not None and limit < len(archs):
        pick = np.sort(rng.choice(len(archs), size=limit, replace=False))
        archs = [archs[i] for i in pick]
    return archs


def pretrain(
    adj: torch.Tensor,
    ops: torch.Tensor,
    config: Arch2VecConfig,
    *,
    epochs: int = 20,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 2e-3,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> PretrainResult:
    """Train a fresh VAE on the graphs; the same seed and data give bit-identical weights."""
    if adj.shape[1:] != (config.num_nodes, config.num_nodes) or ops.shape[1:] != (
        config.num_nodes,
        config.num_ops,
    ):
        raise ValueError(
            f"graphs have shape adj {tuple(adj.shape)}, ops {tuple(ops.shape)}; config expects "
            f"{config.num_nodes} nodes and {config.num_ops} ops"
        )
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs ({epochs}) and batch_size ({batch_size}) must be >= 1")
    start = time.perf_counter()
    history: list[dict[str, float]] = []
    with deterministic_torch():
        torch.manual_seed(seed)
        model = GraphVAE(config)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        n = adj.shape[0]
        for epoch in range(epochs):
            order = torch.randperm(n, generator=gen)
            sums = {"loss": 0.0, "ops_ce": 0.0, "adj_bce": 0.0, "kl": 0.0}
            for lo in range(0, n, batch_size):
                idx = order[lo : lo + batch_size]
                a, o = adj[idx], ops[idx]
                out = model(a, o, generator=gen)
                loss, parts = vae_loss(config, a, o, *out)
                opt.zero_grad()
                loss.backward()
                opt.step()
                w = len(idx) / n
                sums["loss"] += loss.item() * w
                for key, value in parts.items():
                    sums[key] += value * w
            history.append(sums)
            if on_epoch is not None:
                on_epoch(epoch, sums)
        model.eval()
    training = {
        "epochs": epochs,
        "seed": seed,
        "batch_size": batch_size,
        "lr": lr,
        "num_graphs": int(adj.shape[0]),
        "final_loss": history[-1]["loss"],
        "seconds": round(time.perf_counter() - start, 2),
        "torch": torch.__version__,
    }
    return PretrainResult(model=model, training=training, history=history)


def weights_checksum(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over tensor names, dtypes, shapes and bytes (independent of the file's name)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def sidecar_path(path: Path) -> Path:
    """``model.pt`` -> ``model.json``."""
    return Path(path).with_suffix(".json")


def save_model(
    model: GraphVAE,
    path: str | Path,
    *,
    space: SearchSpace,
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``path`` (weights) and its JSON sidecar atomically; return the sidecar dict."""
    path = Path(path)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "space": space.name,
        "space_options": space.space_options(),
        "op_names": list(space.graph_op_names()),
        "config": model.config.to_dict(),
        "training": training or {},
        "sha256": weights_checksum(state),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    with atomic_open(sidecar_path(path)) as fh:
        fh.write(json.dumps(meta, indent=2) + "\n")
    return meta


def load_model(path: str | Path) -> tuple[GraphVAE, dict[str, Any]]:
    """Load weights + sidecar, verify the checksum and config; return ``(model, sidecar)``."""
    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file():
        raise ModelFileError(f"arch2vec weights not found: {path}")
    if not side.is_file():
        raise ModelFileError(f"arch2vec sidecar not found: {side} (expected next to {path})")
    try:
        meta = json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"arch2vec sidecar {side} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{side}: field 'format' must be {FORMAT!r}")
    for key in ("space", "config", "sha256"):
        if key not in meta:
            raise ModelFileError(f"{side}: missing field {key!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt archives
        raise ModelFileError(f"arch2vec weights {path} cannot be read: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{path} is not a state_dict of tensors")
    actual = weights_checksum(state)
    if actual != meta["sha256"]:
        raise ModelFileError(
            f"arch2vec weights {path} fail their checksum: sha256 {actual} != {meta['sha256']} "
            f"recorded in {side}; re-create them with `python -m hwnas.searchers.arch2vec pretrain`"
        )
    try:
        config = Arch2VecConfig.from_dict(meta["config"])
    except ValueError as exc:
        raise ModelFileError(f"{side}: {exc}") from exc
    model = GraphVAE(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelFileError(f"{path} does not match the config in {side}: {exc}") from exc
    model.eval()
    return model, meta


def check_model_fits(meta: dict[str, Any], space: SearchSpace, path: str | Path) -> None:
    """Refuse a model trained on another space or graph format than ``space``'s."""
    if meta.get("space") != space.name:
        raise ModelFileError(
            f"{path} was trained on space {meta.get('space')!r}, not {space.name!r}"
        )
    adj, _ = space.graph(space.sample(np.random.default_rng(0)))
    if meta.get("config", {}).get("num_nodes") != adj.shape[0]:
        raise ModelFileError(
            f"{path} was trained on {meta.get('config', {}).get('num_nodes')}-node graphs, but "
            f"space {space.name!r} has {adj.shape[0]} nodes"
        )
    if meta.get("op_names") != list(space.graph_op_names()):
        raise ModelFileError(
            f"{path} was trained on node ops {meta.get('op_names')}, but space {space.name!r} "
            f"uses {space.graph_op_names()}"
        )


def graph_format_key(space: SearchSpace) -> str:
    """Short hash of what a model depends on: the node-op vocabulary and the node count."""
    adj, _ = space.graph(space.sample(np.random.default_rng(0)))
    text = json.dumps({"ops": list(space.graph_op_names()), "nodes": int(adj.shape[0])})
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def model_file_name(space: SearchSpace) -> str:
    """``<space>.pt`` when the graph format is the default space's, else ``<space>-<hash>.pt``.

    NB201's C/N do not change its graphs, so every NB201 space shares ``nb201.pt``.
    """
    from hwnas.spaces import get_space

    key = graph_format_key(space)
    default = graph_format_key(get_space(space.name))
    return f"{space.name}.pt" if key == default else f"{space.name}-{key}.pt"


def default_model_path(space: SearchSpace) -> Path:
    """The shipped file if the package has one for this space, else the user-cache location."""
    shipped = PACKAGE_WEIGHTS / model_file_name(space)
    if shipped.is_file():
        return shipped
    return user_cache_dir() / "arch2vec" / model_file_name(space)


def default_config(space: SearchSpace) -> Arch2VecConfig:
    """The VAE shape used for a space: nodes and ops from its graph format."""
    adj, ops = space.graph(space.sample(np.random.default_rng(0)))
    return Arch2VecConfig(num_nodes=int(adj.shape[0]), num_ops=int(ops.shape[1]))


def pretrain_in_child(space: SearchSpace, target: Path, *, epochs: int, seed: int) -> None:
    """Pretrain ``space``'s model into ``target`` as ``python -m hwnas.searchers.arch2vec
    pretrain`` does, in a child process: this one has loaded torch, too late to pin the CPU
    kernels that make the bits the same on every machine (``numerics.py``)."""
    import hwnas

    options = [f"--option={k}={json.dumps(v)}" for k, v in space.space_options().items()]
    argv = [sys.executable, "-m", "hwnas.searchers.arch2vec", "pretrain", "--space", space.name]
    argv += [*options, "--out", str(target), "--epochs", str(epochs), "--seed", str(seed)]
    # The folder holding the hwnas package (a checkout's root, or site-packages).
    root = str(Path(hwnas.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    target.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        argv, env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelFileError(f"pretraining arch2vec for {space.name} into {target} failed: {last}")


def load_or_pretrain(
    space: SearchSpace, path: str | Path | None = None, *, epochs: int = 20, seed: int = 0
) -> tuple[GraphVAE, dict[str, Any], Path]:
    """Load the space's model from ``path`` (default: shipped or cached); pretrain if absent.

    Only the default location is filled on first use; an explicit missing ``path`` is an error.
    """
    target = Path(path) if path is not None else default_model_path(space)
    if not target.is_file():
        if path is not None:
            raise ModelFileError(f"arch2vec weights not found: {target}")
        pretrain_in_child(space, target, epochs=epochs, seed=seed)
    model, meta = load_model(target)
    check_model_fits(meta, space, target)
    return model, meta, target
