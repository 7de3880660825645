"""Architecture embeddings from a trained arch2vec model, and the graph -> arch inverse."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from hwnas.searchers.arch2vec.model import GraphVAE, graphs_to_tensors
from hwnas.spaces.base import SearchSpace


def embed_graphs(
    model: GraphVAE, adj: torch.Tensor, ops: torch.Tensor, *, batch_size: int = 4096
) -> np.ndarray:
    """Embeddings ``(B, latent_dim)`` as float64, computed in eval mode without gradients."""
    model.eval()
    out = []
    with torch.no_grad():
        for lo in range(0, adj.shape[0], batch_size):
            out.append(model.embed(adj[lo : lo + batch_size], ops[lo : lo + batch_size]))
    return torch.cat(out).numpy().astype(np.float64)


def embed_archs(model: GraphVAE, space: SearchSpace, archs: list[str]) -> np.ndarray:
    """Embeddings of ``archs`` (strings of ``space``), one row each, in order."""
    adj, ops = graphs_to_tensors([space.graph(a) for a in archs])
    return embed_graphs(model, adj, ops)


def graph_key(adj: np.ndarray, ops: np.ndarray) -> bytes:
    """Hashable identity of a hard graph (0/1 adjacency, one-hot ops)."""
    return (
        np.asarray(adj, dtype=np.uint8).tobytes() + b"|" + np.asarray(ops, dtype=np.uint8).tobytes()
    )


def graph_lookup(space: SearchSpace, archs: Iterable[str]) -> dict[bytes, str]:
    """``graph_key -> arch`` for every arch given: decodes graphs back to architectures."""
    return {graph_key(*space.graph(a)): a for a in archs}
