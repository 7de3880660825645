"""The arch2vec graph variational autoencoder (after Yan et al., NeurIPS 2020).

An encoder of graph-isomorphism (GIN) layers maps a cell graph, given as an upper-triangular
adjacency plus one-hot node ops, to a per-node Gaussian latent; a decoder reconstructs the node
ops (softmax over the op vocabulary) and the adjacency (sigmoid of latent inner products). The
architecture's embedding is the mean over nodes of the latent means. It is trained without
labels, so it can be built before any architecture has been evaluated.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Arch2VecConfig:
    """Shape and loss settings of one graph VAE; stored next to its weights."""

    num_nodes: int
    num_ops: int
    hidden_dim: int = 64
    latent_dim: int = 16
    num_layers: int = 4
    #: Weight of the KL term (per node, summed over latent dims) against reconstruction.
    kl_weight: float = 0.005
    #: Weight of the adjacency BCE against the ops cross-entropy.
    adj_weight: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Arch2VecConfig:
        """Build from a JSON dict; unknown or missing fields raise one clear error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"arch2vec config has unknown field(s) {unknown}; known: {sorted(known)}"
            )
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"arch2vec config is incomplete: {exc}") from exc


def graphs_to_tensors(
    graphs: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(adjacency, node_ops)`` pairs into float tensors ``(B, n, n)`` and ``(B, n, k)``."""
    if not graphs:
        raise ValueError("no graphs given")
    adj = torch.from_numpy(np.stack([np.asarray(a, dtype=np.float32) for a, _ in graphs]))
    ops = torch.from_numpy(np.stack([np.asarray(o, dtype=np.float32) for _, o in graphs]))
    return adj, ops


def message_matrix(adj: torch.Tensor) -> torch.Tensor:
    """Both edge directions, so information flows forwards and backwards through the cell."""
    return adj + adj.transpose(-1, -2)


class GINLayer(nn.Module):
    """One graph-isomorphism layer: ``MLP((1 + eps) * h + sum of neighbours' h)``."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.eps = nn.Parameter(torch.zeros(1))
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim), nn.ReLU()
        )

    def forward(self, h: torch.Tensor, msg: torch.Tensor) -> torch.Tensor:
        return self.mlp((1.0 + self.eps) * h + msg @ h)


class GraphVAE(nn.Module):
    """GIN encoder to per-node ``(mu, logvar)``; op-softmax and inner-product adjacency decoder."""

    def __init__(self, config: Arch2VecConfig) -> None:
        super().__init__()
        self.config = config
        dims = [config.num_ops] + [config.hidden_dim] * config.num_layers
        self.layers = nn.ModuleList(GINLayer(a, b) for a, b in itertools.pairwise(dims))
        self.to_mu = nn.Linear(config.hidden_dim, config.latent_dim)
        self.to_logvar = nn.Linear(config.hidden_dim, config.latent_dim)
        self.to_ops = nn.Linear(config.latent_dim, config.num_ops)

    def encode(self, adj: torch.Tensor, ops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-node latent means and log-variances, each ``(B, n, latent_dim)``."""
        msg = message_matrix(adj)
        h = ops
        for layer in self.layers:
            h = layer(h, msg)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Op logits ``(B, n, k)`` and adjacency logits ``(B, n, n)`` from node latents."""
        return self.to_ops(z), z @ z.transpose(-1, -2)

    def forward(
        self, adj: torch.Tensor, ops: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reparameterised pass: ``(op_logits, adj_logits, mu, logvar)``."""
        mu, logvar = self.encode(adj, ops)
        if self.training:
            noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
            z = mu + noise * torch.exp(0.5 * logvar)
        else:
            z = mu
        op_logits, adj_logits = self.decode(z)
        return op_logits, adj_logits, mu, logvar

    def embed(self, adj: torch.Tensor, ops: torch.Tensor) -> torch.Tensor:
        """Architecture embeddings ``(B, latent_dim)``: node-mean of the latent means."""
        mu, _ = self.encode(adj, ops)
        return mu.mean(dim=1)


def upper_mask(n: int) -> torch.Tensor:
    """Boolean mask of the strictly upper-triangular entries (the only possible edges)."""
    return torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)


def vae_loss(
    config: Arch2VecConfig,
    adj: torch.Tensor,
    ops: torch.Tensor,
    op_logits: torch.Tensor,
    adj_logits: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Ops cross-entropy + weighted adjacency BCE + weighted KL; returns the parts too."""
    ops_ce = F.cross_entropy(op_logits.reshape(-1, config.num_ops), ops.argmax(-1).reshape(-1))
    mask = upper_mask(config.num_nodes)
    adj_bce = F.binary_cross_entropy_with_logits(adj_logits[:, mask], adj[:, mask])
    kl = -0.5 * torch.mean(torch.sum(1.0 + logvar - mu.pow(2) - logvar.exp(), dim=-1))
    total = ops_ce + config.adj_weight * adj_bce + config.kl_weight * kl
    parts = {"ops_ce": ops_ce.item(), "adj_bce": adj_bce.item(), "kl": kl.item()}
    return total, parts


def decode_graphs(model: GraphVAE, z: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Hard graphs from latents: upper-triangular 0/1 adjacency and one-hot (argmax) ops."""
    with torch.no_grad():
        op_logits, adj_logits = model.decode(z)
    n, k = model.config.num_nodes, model.config.num_ops
    adj = ((adj_logits > 0) & upper_mask(n)).to(torch.uint8).numpy()
    ops = np.eye(k, dtype=np.uint8)[op_logits.argmax(-1).numpy()]
    return adj, ops
