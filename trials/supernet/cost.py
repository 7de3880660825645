"""The expected latency of the supernet's architecture distribution, differentiable in the
architecture weights.

hwnas's ``lookup`` latency predictor (``hwnas.latency.predictor``) is additive: a cost per
one-hot slot (one op on one edge) plus an intercept. Its expectation over a distribution of
architectures is therefore the intercept plus the slot costs weighted by each slot's marginal
probability, which the supernet computes from its architecture weights
(``SupernetBase.expected_cost``). The architecture loss adds either
``weight * max(0, E / target - 1)`` (a latency target) or ``weight * E / E_uniform`` (a plain
penalty, unit-free).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from hwnas.spaces.base import SearchSpace
from hwnas.trials.hparams import HParamsError
from hwnas.trials.supernet.networks import SupernetBase


def additive_predictor(spec: str, space: SearchSpace):  # -> LinearLatencyPredictor
    """A ``lookup`` predictor for ``space`` from ``spec``: a predictor JSON of kind
    ``lookup``, or ``table:<device>`` (NB201), for which a lookup is fitted by non-negative
    least squares on the table's whole column (an additive approximation of the table)."""
    from hwnas.latency.predictor import (
        LatencyPredictor,
        LinearLatencyPredictor,
        TableLatencyPredictor,
        fit_predictor,
    )

    try:
        predictor = LatencyPredictor.load(spec)
    except (ValueError, OSError) as exc:
        raise HParamsError(f"hparams.supernet.latency_predictor={spec!r}: {exc}") from None
    if isinstance(predictor, TableLatencyPredictor):
        if space.name != "nb201":
            raise HParamsError(
                f"hparams.supernet.latency_predictor={spec!r}: the table is NB201's, the "
                f"space is {space.name!r}"
            )
        archs = list(space.enumerate())
        return fit_predictor(
            "lookup", space, archs, predictor.predict_many(archs), meta={"fitted_on": spec}
        )
    if not isinstance(predictor, LinearLatencyPredictor) or predictor.kind != "lookup":
        raise HParamsError(
            f"hparams.supernet.latency_predictor={spec!r} is a {predictor.kind!r} predictor; "
            "the expected latency needs an additive one (hwnas latency profile --kind lookup)"
        )
    if predictor.space_name != space.name or predictor.encoding != "onehot":
        raise HParamsError(
            f"hparams.supernet.latency_predictor={spec!r} was fitted on {predictor.space_name}"
            f" ({predictor.encoding}), not on {space.name} (onehot)"
        )
    return predictor


class ExpectedLatency:
    """``E[latency]`` in ms for the supernet's architecture weights, and its penalty."""

    def __init__(
        self,
        predictor,
        supernet: SupernetBase,
        *,
        weight: float,
        target_ms: float | None,
    ) -> None:
        self.predictor = predictor
        self.supernet = supernet
        coef = np.asarray(predictor.coef, dtype=np.float64)
        self.intercept = float(predictor.intercept)
        self.tables = supernet.cost_tables(coef)
        self.weight = float(weight)
        self.target_ms = target_ms
        uniform = {
            name: torch.full(shape, 1.0 / shape[1]) for name, shape in supernet.arch_shapes.items()
        }
        with torch.no_grad():
            self.uniform_ms = float(self(uniform))

    def __call__(self, probs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.intercept + self.supernet.expected_cost(probs, self.tables)

    def penalty(self, probs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The term added to the architecture loss (0 when the weight is 0)."""
        if self.weight == 0:
            return torch.zeros(())
        expected = self(probs)
        if self.target_ms is not None:
            return self.weight * torch.relu(expected / self.target_ms - 1.0)
        return self.weight * expected / max(self.uniform_ms, 1e-9)

    def predict(self, arch: str) -> float:
        """The predictor's figure for one architecture."""
        return float(self.predictor.predict(arch))


__all__ = ["ExpectedLatency", "additive_predictor"]
