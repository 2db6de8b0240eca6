"""Frechet distance (FID) in float64 without a general matrix square root.

``FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)``. The eigenvalues of
``S1 S2`` are those of the symmetric positive semi-definite matrix
``L^T S2 L`` where ``S1 = L L^T`` (a Cholesky factor, or ``V sqrt(W)`` from an
eigendecomposition when ``S1`` is singular), so ``tr sqrt(S1 S2)`` is the sum
of square roots of the (clipped at zero) eigenvalues of a symmetric matrix,
computed with ``eigvalsh``. The covariance is one float64 GEMM on centred data.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np

from ..errors import MetricError
from ._validate import check_features, check_pair

__all__ = ["feature_stats", "frechet_distance", "sqrt_trace_product", "fid", "fid_infinity", "relative_fd"]


def _cov_from_centred(xc: np.ndarray) -> np.ndarray:
    """X^T X of a centred float64 array via a symmetric rank-k update (half a GEMM)."""
    n = len(xc)
    if n <= 1:
        return np.zeros((xc.shape[1], xc.shape[1]))
    if n < xc.shape[1]:  # few rows (a streamed batch): a plain GEMM is cheaper than syrk + symmetrising
        return xc.T @ xc
    from scipy.linalg.blas import dsyrk

    xt = xc.T  # Fortran-ordered view of a C-ordered array: no copy
    if not xt.flags.f_contiguous:
        xt = np.asfortranarray(xt)
    g = dsyrk(1.0, xt, trans=0, lower=0)  # upper triangle of xc^T xc
    iu = np.tril_indices(len(g), -1)
    g[iu] = g.T[iu]
    return g


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a validated float32/float64 array (one float64 copy)."""
    mu = x.mean(axis=0, dtype=np.float64)
    xc = np.subtract(x, mu, dtype=np.float64)
    return mu, _cov_from_centred(xc) / (len(x) - 1)


def feature_stats(x: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (ddof=1) of features, in float64.

    Examples
    --------
    >>> mu, cov = feature_stats([[0.0, 1.0], [2.0, 3.0]])
    >>> mu.tolist(), cov.tolist()
    ([1.0, 2.0], [[2.0, 2.0], [2.0, 2.0]])
    """
    return _stats(check_features(x, min_n=2, dtype=None))


class _Factor(np.ndarray):
    """A factor L of S = L L^T that remembers whether it is lower triangular."""

    lower_triangular = False


def _psd_factor(s: np.ndarray) -> np.ndarray:
    """A matrix L with ``s = L L^T``: Cholesky, or ``V sqrt(max(W, 0))`` if singular."""
    try:
        f = np.linalg.cholesky(s).view(_Factor)
        f.lower_triangular = True
        return f
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(s)
        return (v * np.sqrt(np.clip(w, 0.0, None))).view(_Factor)


def _congruence(L: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """``L^T S2 L`` (triangular multiplies when L is a Cholesky factor)."""
    if getattr(L, "lower_triangular", False):
        from scipy.linalg.blas import dtrmm

        a = np.asfortranarray(np.asarray(L))
        t = dtrmm(1.0, a, np.asfortranarray(s2), side=1, lower=1)  # S2 L
        return dtrmm(1.0, a, t, side=0, lower=1, trans_a=1, overwrite_b=1)  # L^T (S2 L)
    L = np.asarray(L)
    return L.T @ (s2 @ L)


def sqrt_trace_product(s1: np.ndarray, s2: np.ndarray, factor1: Optional[np.ndarray] = None) -> float:
    """``tr sqrt(S1 S2)`` for symmetric positive semi-definite ``S1``, ``S2``.

    Parameters
    ----------
    s1, s2 : ndarray (D, D)
    factor1 : ndarray (D, D), optional
        A precomputed ``L`` with ``S1 = L L^T`` (e.g. cached for a fixed real set).

    Examples
    --------
    >>> float(sqrt_trace_product(np.diag([4.0, 9.0]), np.eye(2)))
    5.0
    """
    s1 = np.asarray(s1, dtype=np.float64)
    s2 = np.asarray(s2, dtype=np.float64)
    L = _psd_factor(s1) if factor1 is None else factor1
    m = _congruence(L, s2)
    m = (m + m.T) * 0.5
    return _sqrt_trace_sym(m)


def _sqrt_trace_sym(m: np.ndarray) -> float:
    """Sum of square roots of the (clipped) eigenvalues of a symmetric matrix."""
    w = np.linalg.eigvalsh(m)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2, factor1: Optional[np.ndarray] = None) -> float:
    """Frechet distance between two Gaussians given means and covariances.

    Examples
    --------
    >>> round(frechet_distance(np.zeros(2), np.eye(2), np.ones(2), np.eye(2)), 6)
    2.0
    """
    mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
    s1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    s2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise MetricError(f"mean/covariance shapes do not match: {mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape}.")
    for nm, arr in (("mu1", mu1), ("sigma1", s1), ("mu2", mu2), ("sigma2", s2)):
        if not np.isfinite(arr).all():
            raise MetricError(f"{nm} contains NaN or infinite values.")
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * sqrt_trace_product(s1, s2, factor1))
    # rounding can leave tiny negative values for identical statistics
    return max(value, 0.0)


def _warn_small(n_min: int, d: int) -> None:
    if n_min < d:
        warnings.warn(
            f"FID from {n_min} samples in {d} dimensions: the covariance is rank-deficient (N < D), so the value "
            "is strongly biased upwards and only comparable at equal N. Use more samples or a lower-dimensional encoder.",
            RuntimeWarning,
            stacklevel=3,
        )


def fid(a: Any, b: Any) -> float:
    """Frechet distance between two feature sets (FID when the features are Inception's).

    Parameters
    ----------
    a, b : array-like (N, D) and (M, D)
        Features of the two sets (e.g. real and synthetic), N, M >= 2.

    Returns
    -------
    float
        Non-negative distance. Warns (RuntimeWarning) when N or M is below D.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 4))
    >>> fid(x, x) < 1e-9
    True
    >>> round(fid(x, x + 1.0), 6)
    4.0
    """
    a, b = check_pair(a, b, min_n=2, dtype=None)
    _warn_small(min(len(a), len(b)), a.shape[1])
    mu1, s1 = _stats(a)
    mu2, s2 = _stats(b)
    return frechet_distance(mu1, s1, mu2, s2)


def fid_infinity(a: Any, b: Any, n_points: int = 15, min_n: Optional[int] = None, seed: int = 0) -> dict:
    """FID extrapolated to infinitely many synthetic samples (Chong & Forsyth 2020).

    FID is biased with a bias linear in ``1/N``. Subsets of ``b`` of sizes
    evenly spaced in ``1/N`` between ``min_n`` and ``len(b)`` are drawn
    (without replacement, seeded); FID against all of ``a`` is fitted as
    ``fid = intercept + slope / N`` by least squares; the intercept is FID-inf.

    Returns
    -------
    dict
        ``fid_inf`` (intercept), ``slope``, ``n`` (subset sizes) and ``fid`` (values).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> r = fid_infinity(rng.normal(size=(400, 3)), rng.normal(size=(400, 3)), n_points=5)
    >>> abs(r["fid_inf"]) < 0.05
    True
    """
    a, b = check_pair(a, b, min_n=4)
    n_b = len(b)
    lo = min_n if min_n is not None else max(2, min(n_b // 5, max(50, 2 * a.shape[1])))
    lo = int(min(max(lo, 2), n_b))
    if n_points < 2 or lo >= n_b:
        raise MetricError(
            f"fid_infinity needs at least 2 subset sizes between {lo} and {n_b}; give more synthetic samples or a smaller min_n."
        )
    inv = np.linspace(1.0 / lo, 1.0 / n_b, n_points)
    sizes = np.unique(np.round(1.0 / inv).astype(int))
    rng = np.random.default_rng(seed)
    mu1, s1 = feature_stats(a)
    L = _psd_factor(s1)
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for n in sizes:
            idx = rng.choice(n_b, size=int(n), replace=False)
            mu2, s2 = feature_stats(b[idx])
            values.append(frechet_distance(mu1, s1, mu2, s2, factor1=L))
    values = np.asarray(values)
    design = np.stack([np.ones(len(sizes)), 1.0 / sizes], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, values, rcond=None)
    return {"fid_inf": float(intercept), "slope": float(slope), "n": sizes.tolist(), "fid": values.tolist()}


def relative_fd(real: Any, synthetic: Any, seed: int = 0) -> dict:
    """Frechet distance relative to the distance between two halves of the real set.

    ``FD(real, synthetic) / FD(real half A, real half B)``: about 1 means the
    synthetic set is as far from the real set as real data is from itself at
    this sample size; the ratio is comparable across encoders.

    Returns
    -------
    dict
        ``relative`` (the ratio), ``fd`` and ``fd_real_halves``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> r = relative_fd(rng.normal(size=(400, 2)), rng.normal(size=(200, 2)) + 3)
    >>> r["relative"] > 10
    True
    """
    real, synthetic = check_pair(real, synthetic, min_n=4)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(real))
    h = len(real) // 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        base = fid(real[perm[:h]], real[perm[h : 2 * h]])
    value = fid(real, synthetic)
    if base <= 0:
        raise MetricError(
            "the two halves of the real set have zero Frechet distance (duplicated data?); relative FD is undefined."
        )
    return {"relative": value / base, "fd": value, "fd_real_halves": base}
