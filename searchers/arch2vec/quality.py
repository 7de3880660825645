"""How good an arch2vec embedding is: reconstruction, decoded validity, and smoothness.

Smoothness is what latent-space search relies on: architectures close in the latent space
should have close accuracy and latency. It is measured on the NB201 table against the same
statistics for the space's plain one-hot encoding, so the number has a baseline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from hwnas.searchers.arch2vec.embedding import embed_graphs, graph_key, graph_lookup
from hwnas.searchers.arch2vec.model import GraphVAE, decode_graphs, upper_mask
from hwnas.spaces.base import SearchSpace


def reconstruction(model: GraphVAE, adj: torch.Tensor, ops: torch.Tensor) -> dict[str, float]:
    """Decode each graph's latent means: per-node / per-edge accuracy and per-graph exactness."""
    model.eval()
    with torch.no_grad():
        mu, _ = model.encode(adj, ops)
    dec_adj, dec_ops = decode_graphs(model, mu)
    true_adj = adj.numpy().astype(np.uint8)
    true_ops = ops.numpy().astype(np.uint8)
    mask = upper_mask(model.config.num_nodes).numpy()
    node_ok = (dec_ops == true_ops).all(-1)
    edge_ok = dec_adj[:, mask] == true_adj[:, mask]
    ops_exact = node_ok.all(-1)
    adj_exact = edge_ok.all(-1)
    return {
        "ops_node_accuracy": float(node_ok.mean()),
        "ops_graph_exact": float(ops_exact.mean()),
        "adj_edge_accuracy": float(edge_ok.mean()),
        "adj_graph_exact": float(adj_exact.mean()),
        "graph_exact": float((ops_exact & adj_exact).mean()),
    }


def decoded_validity(
    model: GraphVAE, z: torch.Tensor, lookup: Mapping[bytes, str]
) -> tuple[float, list[str | None]]:
    """Fraction of latents ``(m, n, d)`` decoding to a graph of the space, and the archs."""
    dec_adj, dec_ops = decode_graphs(model, z)
    archs = [lookup.get(graph_key(a, o)) for a, o in zip(dec_adj, dec_ops, strict=True)]
    return float(np.mean([a is not None for a in archs])), archs


def validity_report(
    model: GraphVAE,
    adj: torch.Tensor,
    ops: torch.Tensor,
    archs: list[str],
    lookup: Mapping[bytes, str],
    rng: np.random.Generator,
    *,
    samples: int = 2000,
    scales: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0),
) -> dict[str, Any]:
    """Validity of prior samples, and of encoded archs perturbed by ``scale`` x latent std."""
    cfg = model.config
    shape = (samples, cfg.num_nodes, cfg.latent_dim)
    prior = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    prior_valid, prior_archs = decoded_validity(model, prior, lookup)
    # Node ops alone: an inner-product decoder of independent node latents almost never
    # draws a cell's exact wiring, so also report how often the ops form a cell.
    _, prior_ops = decode_graphs(model, prior)
    ops_keys = {key.split(b"|", 1)[1] for key in lookup}
    ops_valid = np.mean([o.astype(np.uint8).tobytes() in ops_keys for o in prior_ops])
    out: dict[str, Any] = {
        "prior_valid": prior_valid,
        "prior_unique_valid": len({a for a in prior_archs if a is not None}),
        "prior_ops_valid": float(ops_valid),
    }
    pick = rng.choice(adj.shape[0], size=min(samples, adj.shape[0]), replace=False)
    with torch.no_grad():
        mu, _ = model.encode(adj[pick], ops[pick])
    std = mu.reshape(-1, cfg.latent_dim).std(dim=0)
    perturbed = {}
    for scale in scales:
        noise = torch.from_numpy(rng.standard_normal(tuple(mu.shape)).astype(np.float32))
        valid, decoded = decoded_validity(model, mu + scale * std * noise, lookup)
        same = np.mean([d == archs[i] for d, i in zip(decoded, pick, strict=True)])
        perturbed[str(scale)] = {"valid": valid, "unchanged": float(same)}
    out["perturbed"] = perturbed
    return out


def smoothness(
    features: np.ndarray,
    values: np.ndarray,
    keys: list[str],
    rng: np.random.Generator,
    *,
    pairs: int = 20000,
    queries: int = 500,
    k: int = 10,
) -> dict[str, float]:
    """How well Euclidean distance in ``features`` tracks ``|value difference|``.

    ``spearman``: rank correlation of distance and |difference| over random pairs;
    ``knn_abs_diff``: mean |difference| to the ``k`` nearest neighbours (other canonical keys,
    so isomorphic duplicates do not count), vs ``random_abs_diff`` over random pairs.
    """
    ok = np.isfinite(values)
    feats, vals = features[ok], values[ok]
    kept = [key for key, good in zip(keys, ok, strict=True) if good]
    n = len(vals)
    i, j = rng.integers(0, n, size=pairs), rng.integers(0, n, size=pairs)
    diff = np.abs(vals[i] - vals[j])
    dist = np.linalg.norm(feats[i] - feats[j], axis=1)
    rho = spearmanr(dist, diff).statistic
    key_ids = np.unique(np.array(kept), return_inverse=True)[1]
    sq = np.sum(feats**2, axis=1)
    knn = []
    for q in rng.choice(n, size=min(queries, n), replace=False):
        d2 = sq + sq[q] - 2.0 * feats @ feats[q]
        d2[key_ids == key_ids[q]] = np.inf
        # stable sort: ties broken by row order, so the figure is deterministic
        nearest = np.argsort(d2, kind="stable")[:k]
        knn.append(np.mean(np.abs(vals[nearest] - vals[q])))
    return {
        "spearman": float(rho),
        "knn_abs_diff": float(np.mean(knn)),
        "random_abs_diff": float(diff.mean()),
    }


def quality_report(
    model: GraphVAE,
    space: SearchSpace,
    archs: list[str],
    table_columns: Mapping[str, np.ndarray],
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Reconstruction, validity, and smoothness of arch2vec vs one-hot for each table column.

    ``archs`` are the table's rows; ``table_columns`` maps a label (e.g. ``"c10_valid"``,
    ``"lat_ms_pixel2"``) to one value per row.
    """
    from hwnas.searchers.arch2vec.model import graphs_to_tensors

    rng = np.random.default_rng(seed)
    adj, ops = graphs_to_tensors([space.graph(a) for a in archs])
    report: dict[str, Any] = {"num_archs": len(archs)}
    report["reconstruction"] = reconstruction(model, adj, ops)
    report["validity"] = validity_report(model, adj, ops, archs, graph_lookup(space, archs), rng)
    latent = embed_graphs(model, adj, ops)
    onehot = np.stack([space.encode(a, "onehot") for a in archs]).astype(np.float64)
    keys = [space.canonical_key(a) for a in archs]
    report["smoothness"] = {
        label: {
            "arch2vec": smoothness(latent, np.asarray(col, dtype=float), keys, rng),
            "onehot": smoothness(onehot, np.asarray(col, dtype=float), keys, rng),
        }
        for label, col in table_columns.items()
    }
    return report


def format_report(report: Mapping[str, Any]) -> str:
    """Plain-text rendering of ``quality_report`` output."""
    lines = [f"arch2vec quality over {report['num_archs']} architectures"]
    rec = report["reconstruction"]
    lines.append(
        "reconstruction: ops per node {ops_node_accuracy:.4f}, "
        "ops per graph {ops_graph_exact:.4f}, adjacency per edge {adj_edge_accuracy:.4f}, "
        "adjacency per graph {adj_graph_exact:.4f}, "
        "whole graph {graph_exact:.4f}".format(**rec)
    )
    val = report["validity"]
    lines.append(
        f"prior samples valid: {val['prior_valid']:.4f} ({val['prior_unique_valid']} unique archs);"
        f" node ops alone valid: {val['prior_ops_valid']:.4f}"
    )
    for scale, v in val["perturbed"].items():
        lines.append(
            f"latent + {scale} x std noise: valid {v['valid']:.4f}, decodes to itself "
            f"{v['unchanged']:.4f}"
        )
    lines.append("smoothness (distance vs |difference|):")
    header = f"{'column':<22}{'encoding':<10}{'spearman':>9}{'kNN |d|':>10}{'random |d|':>12}"
    lines.append(f"  {header}{'ratio':>7}")
    for label, by_enc in report["smoothness"].items():
        for enc, s in by_enc.items():
            ratio = s["knn_abs_diff"] / s["random_abs_diff"] if s["random_abs_diff"] else np.nan
            lines.append(
                f"  {label:<22}{enc:<10}{s['spearman']:>9.3f}{s['knn_abs_diff']:>10.3f}"
                f"{s['random_abs_diff']:>12.3f}{ratio:>7.3f}"
            )
    return "\n".join(lines)
