"""Latency predictors for cheap pre-filtering, saved as JSON (never pickle).

* ``lookup``: an operator lookup table summed over the network. Per-choice costs are fitted by
  non-negative least squares on measured networks, over the space's one-hot encoding plus an
  intercept: each coefficient is the cost of one choice (NB201: one op on one cell edge, summed
  over all cells that share the genotype; MobileNet: one option of one stage) and the intercept
  is the fixed part (stem, head). Fitting on whole networks rather than timing ops in isolation
  keeps the costs in the runtime's real context (fusion, layout transforms, cache effects).
* ``ridge``: a learned regressor: ridge regression (alpha by cross-validation) on the one-hot
  encoding and all pairwise products, the products scaled by 0.2 so they are penalised 25x
  more than the main effects (an additive model first, interactions only where the data insist;
  unscaled products overfit at n = 50-100 on the NB201 table's devices). The pairwise terms
  capture choices whose costs interact (a stage's cost depends on its input width). It is a
  linear model, so its JSON holds exactly what prediction needs (coefficients, intercept) and
  loading needs neither scikit-learn nor pickle.
* ``table:<device>``: the NB201 table's measured latency for a named device (e.g.
  ``table:pixel2``), for "predict cost on a device we cannot reach". The table is the packaged
  one unless ``$HWNAS_NB201_TABLE`` names another (``docs/tables.md``).

``LatencyPredictor.load(path_or_spec)`` returns any of them; all offer ``predict(arch) -> ms``
and ``predict_many(archs) -> ndarray`` (NaN where there is no figure, e.g. a cell missing from
a user's table), and ``target``: what the figure is of (where it was measured, the network,
the input), so a search can refuse a predictor made for something else than it measures.
"""

from __future__ import annotations

import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.atomic import write_json_atomic

PREDICTOR_KINDS = ("lookup", "ridge")
TABLE_PREFIX = "table:"
_FORMAT = "hwnas-latency-predictor/1"
#: Scale of the pairwise features in ``ridge`` (a ridge penalty 1/scale^2 times the main one).
INTERACTION_SCALE = 0.2


def _space(name: str, options: dict[str, Any]) -> Any:
    from hwnas.spaces import get_space

    return get_space(name, **options)


class LatencyPredictor(ABC):
    """Predicts latency in milliseconds from an architecture string."""

    kind: str

    def predict(self, arch: str) -> float:
        return float(self.predict_many([arch])[0])

    @property
    @abstractmethod
    def target(self) -> dict[str, Any]:
        """What a prediction is of, as far as known: ``backend`` (a latency backend) or
        ``table_device`` (a column of an NB201 table, with ``table``: its path), ``batch``,
        ``threads``, ``precision``, ``input_shape`` (C, H, W), ``space``, ``space_options``
        (the space's full options, ``prune`` included). Keys that are unknown are absent."""

    @abstractmethod
    def predict_many(self, archs: Sequence[str]) -> np.ndarray:
        """Predicted milliseconds, one per architecture."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form that ``LatencyPredictor.from_dict`` inverts."""

    def save(self, path: str | Path) -> None:
        """Write the JSON atomically (temp file + ``os.replace``)."""
        # allow_nan: held-out statistics are NaN when a tiny evaluation set is constant.
        write_json_atomic(path, {"format": _FORMAT, **self.to_dict()}, indent=1, allow_nan=True)

    @staticmethod
    def from_dict(data: dict[str, Any], *, source: str = "predictor") -> LatencyPredictor:
        kind = data.get("kind")
        if kind in PREDICTOR_KINDS:
            return LinearLatencyPredictor.from_dict(data, source=source)
        if kind == "table":
            return TableLatencyPredictor(data["device"], table_path=data.get("table_path"))
        raise ValueError(f"{source}: unknown predictor kind {kind!r}; known: lookup, ridge, table")

    @staticmethod
    def load(path: str | Path) -> LatencyPredictor:
        """A saved predictor (JSON file) or ``"table:<device>"`` for the NB201 table."""
        text = str(path)
        if text.startswith(TABLE_PREFIX):
            return TableLatencyPredictor(text[len(TABLE_PREFIX) :])
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"latency predictor file {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"latency predictor file {path} is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"{path}: not a latency predictor (expected format {_FORMAT!r})")
        return LatencyPredictor.from_dict(data, source=str(path))


def _features(encoded: np.ndarray, interaction_scale: float | None) -> np.ndarray:
    """Rows of the encoding, with all pairwise products (times the scale) appended."""
    if interaction_scale is None:
        return encoded
    i, j = np.triu_indices(encoded.shape[1], k=1)
    return np.hstack([encoded, interaction_scale * encoded[:, i] * encoded[:, j]])


class LinearLatencyPredictor(LatencyPredictor):
    """``lookup`` (NNLS per-choice costs) or ``ridge`` (log target, pairwise terms)."""

    def __init__(
        self,
        kind: str,
        space: str,
        space_options: dict[str, Any],
        coef: np.ndarray,
        intercept: float,
        *,
        encoding: str = "onehot",
        meta: dict[str, Any] | None = None,
    ) -> None:
        if kind not in PREDICTOR_KINDS:
            raise ValueError(f"unknown predictor kind {kind!r}; known: {PREDICTOR_KINDS}")
        self.kind = kind
        self.space_name = space
        self.space_options = dict(space_options)
        if space == "nb201" and "prune" not in self.space_options:
            # Written before NB201 pruned dead edges: it was fitted on full cells.
            self.space_options["prune"] = False
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)
        self.encoding = encoding
        self.meta = dict(meta or {})
        self._space = _space(space, self.space_options)

    @property
    def target(self) -> dict[str, Any]:
        """From the fit's ``meta`` (``hwnas latency profile`` records backend, batch and input
        shape) and the space it was fitted on."""
        known = {k: self.meta.get(k) for k in ("backend", "batch", "threads", "precision")}
        shape = self.meta.get("input_shape")
        out = {k: v for k, v in known.items() if v is not None}
        if shape is not None:
            out["input_shape"] = [int(d) for d in shape]
        out["space"] = self.space_name
        out["space_options"] = self._space.space_options()
        return out

    @property
    def interaction_scale(self) -> float | None:
        return (
            float(self.meta.get("interaction_scale", INTERACTION_SCALE))
            if self.kind == "ridge"
            else None
        )

    def design(self, archs: Sequence[str]) -> np.ndarray:
        encoded = np.stack([self._space.encode(a, self.encoding) for a in archs]).astype(float)
        return _features(encoded, self.interaction_scale)

    def predict_many(self, archs: Sequence[str]) -> np.ndarray:
        if len(archs) == 0:
            return np.zeros(0)
        x = self.design(archs)
        if x.shape[1] != self.coef.size:
            raise ValueError(
                f"predictor expects {self.coef.size} features, {self.space_name} encoding "
                f"{self.encoding!r} gives {x.shape[1]}: fitted for another space setting?"
            )
        return x @ self.coef + self.intercept

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "space": self.space_name,
            "space_options": self.space_options,
            "encoding": self.encoding,
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, source: str = "predictor"
    ) -> LinearLatencyPredictor:
        try:
            return cls(
                data["kind"],
                data["space"],
                data.get("space_options", {}),
                np.asarray(data["coef"], dtype=np.float64),
                float(data["intercept"]),
                encoding=data.get("encoding", "onehot"),
                meta=data.get("meta"),
            )
        except KeyError as exc:
            raise ValueError(f"{source}: predictor lacks field {exc.args[0]!r}") from None


def fit_predictor(
    kind: str,
    space: Any,
    archs: Sequence[str],
    latencies_ms: Sequence[float],
    *,
    meta: dict[str, Any] | None = None,
) -> LinearLatencyPredictor:
    """Fit a ``lookup`` or ``ridge`` predictor on measured ``(arch, ms)`` pairs of ``space``."""
    y = np.asarray(latencies_ms, dtype=np.float64)
    if len(archs) != y.size:
        raise ValueError(f"{len(archs)} architectures but {y.size} latencies")
    if y.size < 5:
        raise ValueError(f"need at least 5 measured architectures to fit, got {y.size}")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("latencies must be finite and positive (milliseconds)")
    encoded = np.stack([space.encode(a, "onehot") for a in archs]).astype(float)
    meta = {"n_train": int(y.size), **(meta or {})}
    if kind == "lookup":
        from scipy.optimize import nnls

        x = np.hstack([encoded, np.ones((y.size, 1))])
        solution, _ = nnls(x, y)
        coef, intercept = solution[:-1], solution[-1]
    elif kind == "ridge":
        from sklearn.linear_model import RidgeCV

        meta["interaction_scale"] = INTERACTION_SCALE
        x = _features(encoded, INTERACTION_SCALE)
        model = RidgeCV(alphas=np.logspace(-4, 3, 15)).fit(x, y)
        coef, intercept = model.coef_, float(model.intercept_)
        meta["alpha"] = float(model.alpha_)
    else:
        raise ValueError(f"unknown predictor kind {kind!r}; known: {', '.join(PREDICTOR_KINDS)}")
    return LinearLatencyPredictor(
        kind, space.name, space.space_options(), coef, intercept, meta=meta
    )


def evaluate_predictor(
    predictor: LatencyPredictor, archs: Sequence[str], measured_ms: Sequence[float]
) -> dict[str, float]:
    """Held-out Spearman and Kendall rank correlation, MAPE (fraction) and count."""
    from scipy.stats import kendalltau, spearmanr

    y = np.asarray(measured_ms, dtype=np.float64)
    pred = predictor.predict_many(list(archs))
    return {
        "spearman": float(spearmanr(pred, y).statistic),
        "kendall": float(kendalltau(pred, y).statistic),
        "mape": float(np.mean(np.abs(pred - y) / y)),
        "n": int(y.size),
    }


class TableLatencyPredictor(LatencyPredictor):
    """An NB201 table's measured latency column for one device (``table:<device>``).

    The figures are of the table's network (``hwnas.spaces.nb201_table.TABLE_NETWORK``:
    full cells, C=16, N=5, 3x32x32); a cell the table lacks predicts NaN (no figure).
    """

    kind = "table"

    def __init__(self, device: str, *, table_path: str | Path | None = None) -> None:
        from hwnas.spaces.nb201_table import load_table

        self.device = device
        self.table_path = str(table_path) if table_path is not None else None
        self._table = load_table(table_path)
        try:
            self._column = self._table.latency(device)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        self._space = _space("nb201", {})

    @property
    def target(self) -> dict[str, Any]:
        from hwnas.spaces.nb201_table import TABLE_NETWORK

        return {"table_device": self.device, "table": str(self._table.path), **TABLE_NETWORK}

    def predict_many(self, archs: Sequence[str]) -> np.ndarray:
        out = np.full(len(archs), np.nan)
        for i, arch in enumerate(archs):
            with contextlib.suppress(KeyError):  # not a row of this table: no figure
                out[i] = self._column[self._table.index_of(self._space.validate(arch))]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "table", "device": self.device, "table_path": self.table_path}
