"""Surrogate models shared by the model-based strategies (predictor-guided, arch2vec)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Matern length scales (on standardised features) x noise levels, tried by marginal likelihood.
GP_GRID = tuple((ls, noise) for ls in (1.0, 2.0, 4.0, 8.0) for noise in (0.01, 0.1, 0.5))


def matern52(d: np.ndarray) -> np.ndarray:
    """Matern-5/2 correlation of scaled distances ``d``, in ``d``'s precision.

    Updated in place: on a pool's float32 kernel this is ~4x faster than the plain
    expression, whose float64 constant ``np.sqrt(5.0)`` promoted every pass to float64.
    """
    d = np.asarray(d)
    dtype = d.dtype if d.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    r = np.multiply(d, dtype.type(math.sqrt(5.0)), dtype=dtype)
    out = np.negative(r)
    np.exp(out, out=out)
    poly = np.square(r)  # r^2 / 3 + r + 1
    poly *= dtype.type(1.0 / 3.0)
    poly += r
    poly += 1.0
    out *= poly
    return out


def distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``A`` and ``B``, by one matrix product
    (``|a|^2 + |b|^2 - 2 a.b``): several times faster than ``cdist`` on a large pool."""
    sq = np.einsum("ij,ij->i", A, A)[:, None] + np.einsum("ij,ij->i", B, B)[None, :]
    sq -= 2.0 * (A @ B.T)
    np.maximum(sq, 0.0, out=sq)
    return np.sqrt(sq, out=sq)


def _binary(X: np.ndarray) -> bool:
    """Whether every entry of ``X`` is 0 or 1."""
    return bool(np.all((X == 0) | (X == 1)))


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
        self._inv: np.ndarray | None = None
        self.X = X
        return self

    def predict(self, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation per row."""
        Ks = self._cross(Xs)
        return self.mean_from_cross(Ks), self.std_from_cross(Ks)

    def predict_mean(self, Xs: np.ndarray) -> np.ndarray:
        """Posterior mean per row (no variance: a fraction of ``predict``'s cost)."""
        return self.mean_from_cross(self._cross(Xs))

    def cross(self, Xs: np.ndarray, dist: np.ndarray | None = None) -> np.ndarray:
        """The kernel between ``Xs`` and the training rows, for the ``*_from_cross`` methods
        (one kernel serves the mean of a whole pool and the spread of a part of it).
        ``dist``: ``distances(Xs, X)`` to the training rows ``X``, when the caller has them
        (models fitted on the same rows share them)."""
        if dist is not None:
            return matern52(np.asarray(dist, dtype=np.float32) / np.float32(self.params[0]))
        return self._cross(Xs)

    def mean_from_cross(self, Ks: np.ndarray) -> np.ndarray:
        """Posterior mean of the rows whose kernel to the training rows is ``Ks``."""
        mean = Ks @ self.alpha.astype(np.float32)
        return mean.astype(np.float64) * self.sd + self.mu

    def std_from_cross(self, Ks: np.ndarray) -> np.ndarray:
        """Posterior standard deviation of the rows whose kernel is ``Ks`` (each row's value
        depends on that row alone: a part of a pool gets what the whole pool would)."""
        from scipy.linalg.blas import strmm

        if len(Ks) == 0:
            return np.zeros(0)
        # v = L^-1 k(x) for every row at once: a triangular matrix product (BLAS trmm), made
        # once per fit; 15,625 x 200 in 9 ms against 14 ms (general product) and 37 ms (a
        # triangular solve against every row)
        Kt = np.asarray(Ks, dtype=np.float32).T  # (training rows, candidates), Fortran order
        v = strmm(1.0, self._chol_inv(), Kt, side=0, lower=1)
        var = np.maximum(1.0 - np.einsum("ij,ij->j", v, v, dtype=np.float64), 1e-12)
        return np.sqrt(var) * self.sd

    def _chol_inv(self) -> np.ndarray:
        """``L^-1`` of the fitted kernel's Cholesky factor (single precision, Fortran
        order), made once per fit, when a spread is first asked for."""
        if self._inv is None:
            from scipy.linalg import solve_triangular

            eye = np.eye(len(self.chol))
            inv = solve_triangular(self.chol, eye, lower=True, check_finite=False)
            self._inv = np.asfortranarray(inv, dtype=np.float32)
        return self._inv

    def std_upper(self, Ks: np.ndarray) -> np.ndarray:
        """An upper bound on ``std_from_cross(Ks)``, at a fraction of its cost: the posterior
        variance given only the most correlated training row (more data never raises an exact
        GP's variance), with a margin for single-precision rounding."""
        k = np.max(Ks, axis=1).astype(np.float64) if Ks.shape[1] else np.zeros(len(Ks))
        var = np.maximum(1.0 - k * k / (1.0 + self.params[1]), 1e-12)
        return np.sqrt(var) * self.sd * (1.0 + 1e-3) + 1e-6 * self.sd

    def _cross(self, Xs: np.ndarray) -> np.ndarray:
        """Kernel between ``Xs`` and the training rows, in single precision: on a pool of
        thousands of candidates the kernel and the variance's triangular product are most of a
        prediction's cost, and float32 halves them (relative error ~1e-6, far below the
        noise level the variance is floored by, >= 0.01)."""
        X = self.X.astype(np.float32)
        Xs = np.asarray(Xs, dtype=np.float32)
        if X.shape[1] <= 255 and _binary(X) and _binary(Xs):
            # 0/1 rows (one-hot encodings): squared distances are the integers 0..dim, so the
            # kernel is a table lookup, ~6x cheaper than sqrt/exp over the whole matrix.
            dim = X.shape[1]
            table = matern52(np.sqrt(np.arange(dim + 1)) / self.params[0]).astype(np.float32)
            na, nb = np.einsum("ij,ij->i", Xs, Xs), np.einsum("ij,ij->i", X, X)
            ones = na[0] if len(na) else 0.0
            if len(na) and len(nb) and np.all(na == ones) and np.all(nb == ones):
                # as many ones in every row (NB201: one op per edge): the squared distance
                # is 2 * (ones - shared ones), so the product of the rows (small integers,
                # exact in float32) indexes the table directly: fewer passes over the
                # matrix, the same values
                c = int(ones)
                shared = (Xs @ X.T).astype(np.uint8)
                return np.take(table[2 * c - 2 * np.arange(c + 1)], shared)
            sq = na[:, None] + nb[None, :]
            sq -= 2.0 * (Xs @ X.T)
            return table[np.rint(sq, out=sq).astype(np.uint8)]
        return matern52(distances(Xs, X) / np.float32(self.params[0]))

    def thompson(self, Xs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and one independent posterior draw per row (Thompson sampling)."""
        mean, std = self.predict(Xs)
        return mean, mean + std * rng.standard_normal(len(Xs))


class ArdGaussianProcess:
    """GP regression with a Matern-5/2 kernel and one length scale per feature (ARD).

    scikit-learn's ``GaussianProcessRegressor`` (amplitude x anisotropic Matern + white noise,
    standardised targets), its hyperparameters fitted by L-BFGS on the log marginal
    likelihood. Per-feature length scales let the model learn which choices matter (on NB201,
    which edge's op), which the isotropic ``GaussianProcess`` cannot. ``fit(..., theta=...)``
    reuses earlier hyperparameters (log scale, sklearn's ``kernel_.theta``) without
    optimising: a refit is then one Cholesky factorisation.
    """

    def __init__(self, restarts: int = 0, seed: int = 0) -> None:
        self.restarts = restarts
        self.seed = seed
        self.model: object | None = None

    def _kernel(self, dim: int) -> object:
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        return ConstantKernel(1.0, (1e-2, 1e2)) * Matern(
            length_scale=np.full(dim, 2.0), length_scale_bounds=(5e-2, 1e2), nu=2.5
        ) + WhiteKernel(0.1, (1e-4, 1.0))

    def fit(
        self, X: np.ndarray, y: np.ndarray, theta: Sequence[float] | None = None
    ) -> ArdGaussianProcess:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor

        kernel = self._kernel(X.shape[1])
        if theta is not None and len(theta) == len(kernel.theta):  # type: ignore[attr-defined]
            kernel = kernel.clone_with_theta(np.asarray(theta, dtype=float))  # type: ignore[attr-defined]
        model = GaussianProcessRegressor(
            kernel,
            normalize_y=True,
            optimizer=None if theta is not None else "fmin_l_bfgs_b",
            n_restarts_optimizer=self.restarts,
            random_state=self.seed,
        )
        with warnings.catch_warnings():  # bounds reached on tiny data sets are expected
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        self.model = model
        return self

    @property
    def theta(self) -> list[float]:
        """The fitted hyperparameters (log scale), for ``fit(..., theta=...)``."""
        return [float(t) for t in self.model.kernel_.theta]  # type: ignore[attr-defined]

    def predict(self, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation (of the latent function, noise excluded)."""
        mean, std = self.model.predict(Xs, return_std=True)  # type: ignore[attr-defined]
        # return_std includes the white noise; the latent function's spread excludes it
        noise = float(np.exp(self.theta[-1])) * float(self.model._y_train_std) ** 2  # type: ignore[attr-defined]
        latent = np.sqrt(np.maximum(std**2 - noise, 1e-12))
        return mean, latent

    def thompson(self, Xs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and one independent posterior draw per row."""
        mean, std = self.predict(Xs)
        return mean, mean + std * rng.standard_normal(len(Xs))
