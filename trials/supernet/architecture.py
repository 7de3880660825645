"""Architecture parameters and their updates: GAEA's exponentiated gradient and DARTS's
softmax-with-Adam baseline.

GAEA (Li et al., ICLR 2021; ``liamcli/gaea_release`` ``cnn/architect/architect_edarts.py``)
keeps the architecture as **probabilities**: one point on the simplex per edge, started
uniform, used directly as the mixing weights. Its step is mirror descent with the entropic
mirror map (exponentiated gradient), per edge:

    alpha_e <- alpha_e * exp(-lr * grad_e) / sum(alpha_e * exp(-lr * grad_e))

with every weight clamped to at least 1e-5 before renormalising, so none reaches exactly 0.

DARTS (``quark0/darts`` ``cnn/architect.py``) keeps **logits** (``1e-3 * randn``), mixes with
their softmax, and steps them with Adam (lr 3e-4, betas (0.5, 0.999), weight decay 1e-3).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

#: GAEA's floor on every probability before renormalising (``normalize(..., min_v=1e-5)``).
SIMPLEX_FLOOR = 1e-5


class ExponentiatedGradient(torch.optim.Optimizer):
    """Mirror descent on the probability simplex of each row (the last dimension).

    Parameters must hold rows on the simplex; after each step they still do. No momentum,
    no weight decay: GAEA's DARTS-space and NB201 configs use neither."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, floor: float = SIMPLEX_FLOOR):
        if lr <= 0:
            raise ValueError(f"exponentiated-gradient lr must be > 0, got {lr}")
        super().__init__(params, {"lr": lr, "floor": floor})

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                # Multiplicative update in log space would be the same; this is GAEA's form.
                p.mul_(torch.exp(-group["lr"] * p.grad))
                p.clamp_(min=group["floor"])
                p.div_(p.sum(dim=-1, keepdim=True))
        return loss


class ArchParameters(nn.Module):
    """One architecture tensor per name (``rows x candidate ops``), as probabilities
    (``simplex``, GAEA) or logits (``logits``, DARTS); ``probabilities()`` gives the mixing
    weights either way."""

    def __init__(
        self, shapes: Mapping[str, tuple[int, int]], kind: str, generator: torch.Generator
    ) -> None:
        super().__init__()
        if kind not in ("simplex", "logits"):
            raise ValueError(f"architecture parameters are 'simplex' or 'logits', not {kind!r}")
        self.kind = kind
        params = {}
        for name, (rows, cols) in shapes.items():
            if kind == "simplex":
                value = torch.full((rows, cols), 1.0 / cols)
            else:
                value = 1e-3 * torch.randn(rows, cols, generator=generator)
            params[name] = nn.Parameter(value)
        self.params = nn.ParameterDict(params)

    def probabilities(self) -> dict[str, torch.Tensor]:
        """Per-edge mixing weights; differentiable in the parameters."""
        if self.kind == "simplex":
            return dict(self.params.items())
        return {name: torch.softmax(p, dim=-1) for name, p in self.params.items()}

    def entropy(self) -> float:
        """Mean per-edge entropy of the probabilities, in nats (log(ops) at uniform)."""
        with torch.no_grad():
            rows = [p.clamp_min(1e-12) for p in self.probabilities().values()]
            ent = [-(p * p.log()).sum(-1) for p in rows]
            return float(torch.cat(ent).mean())


def make_arch_optimizer(
    arch: ArchParameters, update: str, lr: float, weight_decay: float | None
) -> torch.optim.Optimizer:
    """GAEA's exponentiated gradient (``simplex``) or DARTS's Adam (``logits``)."""
    if update == "gaea":
        return ExponentiatedGradient(arch.parameters(), lr=lr)
    if update == "darts":
        wd = 1e-3 if weight_decay is None else weight_decay
        return torch.optim.Adam(arch.parameters(), lr=lr, betas=(0.5, 0.999), weight_decay=wd)
    raise ValueError(f"unknown architecture update {update!r}; known: gaea, darts")


def parameter_kind(update: str) -> str:
    """The parameterisation each update works on."""
    return "simplex" if update == "gaea" else "logits"


__all__ = [
    "SIMPLEX_FLOOR",
    "ArchParameters",
    "ExponentiatedGradient",
    "make_arch_optimizer",
    "parameter_kind",
]
