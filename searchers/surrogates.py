"""Surrogate models shared by the model-based strategies (predictor-guided, arch2vec)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Matern length scales (on standardised features) x noise levels, tried by marginal likelihood.
GP_GRID = tuple((ls, noise) for ls in (1.0, 2.0, 4.0, 8.0) for noise in (0.01, 0.1, 0.5))


def matern52(d: np.ndarray) -> np.ndarray:
    """Matern-5/2 correlation of scaled distances ``d``."""
    r = np.sqrt(5.0) * d
    return (1.0 + r + r * r / 3.0) * np.exp(-r)


class GaussianProcess:
    """Exact GP regression with a Matern-5/2 kernel on standardised targets.

    Length scale and noise come from ``params`` or the best log marginal likelihood over
    ``GP_GRID``: a dozen Cholesky factorisations, deterministic and steadier than gradient
    fitting on tiny data (numpy/scipy: scikit-learn's per-call overhead dominated here).
    Predictions are in the target's own units.
    """

    def fit(
        self, X: np.ndarray, y: np.ndarray, params: Sequence[float] | None = None
    ) -> GaussianProcess:
        from scipy.linalg import cho_factor, cho_solve
        from scipy.spatial.distance import cdist

        self.mu = float(y.mean())
        self.sd = float(y.std()) or 1.0
        z = (y - self.mu) / self.sd
        D = cdist(X, X)
        best = None
        for ls, noise in [tuple(params)] if params else GP_GRID:
            K = matern52(D / ls) + noise * np.eye(len(X))
            try:
                c, low = cho_factor(K, lower=True)
            except np.linalg.LinAlgError:
                continue
            alpha = cho_solve((c, low), z)
            lml = -0.5 * float(z @ alpha) - float(np.log(np.diag(c)).sum())
            if best is None or lml > best[0]:
                best = (lml, (float(ls), float(noise)), c, alpha)
        if best is None:
            raise np.linalg.LinAlgError("no kernel setting gave a positive-definite matrix")
        _, self.params, self.chol, self.alpha = best
        self.X = X
        return self

    def predict(self, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation per row."""
        from scipy.linalg import solve_triangular
        from scipy.spatial.distance import cdist

        Ks = matern52(cdist(Xs, self.X) / self.params[0])
        mean = Ks @ self.alpha
        v = solve_triangular(self.chol, Ks.T, lower=True)
        var = np.maximum(1.0 - np.sum(v * v, axis=0), 1e-12)
        return mean * self.sd + self.mu, np.sqrt(var) * self.sd

    def thompson(self, Xs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and one independent posterior draw per row (Thompson sampling)."""
        mean, std = self.predict(Xs)
        return mean, mean + std * rng.standard_normal(len(Xs))
