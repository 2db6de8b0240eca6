"""Kernel two-sample distances: KID (polynomial kernel) and CMMD (Gaussian RBF)."""

from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import MetricError
from ._validate import check_pair

__all__ = ["poly_kernel", "rbf_kernel", "mmd2_unbiased", "mmd2_biased", "kid_subset_indices", "kid", "cmmd"]


def poly_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: Optional[float] = None, coef: float = 1.0) -> np.ndarray:
    """``(gamma * x.y + coef) ** degree`` with ``gamma = 1 / D`` by default.

    Examples
    --------
    >>> poly_kernel(np.ones((1, 2)), np.ones((1, 2))).tolist()
    [[8.0]]
    """
    g = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * g + coef) ** degree


def rbf_kernel(x: np.ndarray, y: np.ndarray, sigma: float = 10.0) -> np.ndarray:
    """``exp(-|x - y|^2 / (2 sigma^2))``.

    Examples
    --------
    >>> float(rbf_kernel(np.zeros((1, 1)), np.zeros((1, 1)))[0, 0])
    1.0
    """
    d2 = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    return np.exp(-np.clip(d2, 0.0, None) / (2.0 * sigma**2))


def mmd2_unbiased(kxx: np.ndarray, kxy: np.ndarray, kyy: np.ndarray) -> float:
    """Unbiased MMD^2 (U-statistic: kernel diagonals left out) from kernel matrices.

    Examples
    --------
    >>> k = np.ones((3, 3))
    >>> mmd2_unbiased(k, k, k)
    0.0
    """
    m, n = kxx.shape[0], kyy.shape[0]
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def mmd2_biased(kxx: np.ndarray, kxy: np.ndarray, kyy: np.ndarray) -> float:
    """Biased MMD^2 (V-statistic: kernel diagonals included).

    Examples
    --------
    >>> k = np.ones((2, 2))
    >>> mmd2_biased(k, k, k)
    0.0
    """
    return float(kxx.mean() + kyy.mean() - 2.0 * kxy.mean())


def kid_subset_indices(n_real: int, n_fake: int, subsets: int, subset_size: int, seed: int = 0) -> list:
    """The (real, synthetic) row indices of each KID subset, drawn without replacement.

    Examples
    --------
    >>> pairs = kid_subset_indices(10, 12, subsets=2, subset_size=5, seed=0)
    >>> len(pairs), pairs[0][0].shape
    (2, (5,))
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(subsets)):
        out.append((rng.permutation(n_real)[:subset_size], rng.permutation(n_fake)[:subset_size]))
    return out


def kid(
    a: Any,
    b: Any,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: Optional[float] = None,
    coef: float = 1.0,
    seed: int = 0,
    indices: Optional[Sequence] = None,
) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel.

    The kernel is ``(x.y / D + 1)^3``. MMD^2 is estimated on ``subsets``
    random subsets of ``subset_size`` rows from each side (Binkowski et al.
    2018); the mean and the population standard deviation over subsets are
    returned (the torchmetrics convention). When a side has fewer rows than
    ``subset_size``, the subset size shrinks to the smaller side and a
    RuntimeWarning says so.

    Parameters
    ----------
    a, b : array-like (N, D), (M, D)
    subsets, subset_size : int
    degree, gamma, coef : kernel parameters (``gamma=None`` means 1/D)
    seed : int
        Seed of the subset draws (:func:`kid_subset_indices`).
    indices : sequence of (real_idx, fake_idx), optional
        Explicit subsets, overriding ``subsets``/``subset_size``/``seed``.

    Returns
    -------
    (mean, std) : tuple of float

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 8))
    >>> m, s = kid(x, x + 1.0, subsets=10, subset_size=100)
    >>> m > 0.1, kid(x, x, subsets=10, subset_size=100, seed=1)[0] < 0.01
    (True, True)
    """
    a, b = check_pair(a, b, min_n=2)
    if indices is None:
        size = int(min(subset_size, len(a), len(b)))
        if size < subset_size:
            warnings.warn(
                f"KID subset_size={subset_size} is larger than the smaller set ({size} samples); "
                f"using subsets of {size}. Values from different subset sizes are comparable in expectation only.",
                RuntimeWarning,
                stacklevel=2,
            )
        if subsets < 1:
            raise MetricError(f"KID needs subsets >= 1, got {subsets}.")
        indices = kid_subset_indices(len(a), len(b), subsets, size, seed)
    scores = []
    for ia, ib in indices:
        x, y = a[np.asarray(ia)], b[np.asarray(ib)]
        if len(x) < 2 or len(y) < 2:
            raise MetricError("each KID subset needs at least 2 samples per side.")
        scores.append(
            mmd2_unbiased(
                poly_kernel(x, x, degree, gamma, coef),
                poly_kernel(x, y, degree, gamma, coef),
                poly_kernel(y, y, degree, gamma, coef),
            )
        )
    scores = np.asarray(scores)
    return float(scores.mean()), float(scores.std())


def cmmd(a: Any, b: Any, sigma: float = 10.0, scale: float = 1000.0, unbiased: bool = False, chunk: int = 2048) -> float:
    """CMMD (Jayasumana et al. 2024): MMD with a Gaussian RBF kernel on CLIP-like embeddings.

    ``scale * MMD^2`` with kernel ``exp(-|x-y|^2 / (2 sigma^2))``, sigma = 10
    and scale = 1000 as in the paper. Embeddings are used as given (CLIP image
    embeddings are usually L2-normalised first). The default is the biased
    (V-statistic) estimate the paper reports; ``unbiased=True`` leaves the
    kernel diagonals out.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(100, 4)); x /= np.linalg.norm(x, axis=1, keepdims=True)
    >>> cmmd(x, x)
    0.0
    """
    a, b = check_pair(a, b, min_n=2)

    def ksum(x, y):
        total = 0.0
        for s in range(0, len(x), chunk):
            total += rbf_kernel(x[s : s + chunk], y, sigma).sum()
        return total

    m, n = len(a), len(b)
    kxx, kyy, kxy = ksum(a, a), ksum(b, b), ksum(a, b)
    if unbiased:
        # diagonal entries of an RBF kernel are exactly 1
        v = (kxx - m) / (m * (m - 1)) + (kyy - n) / (n * (n - 1)) - 2.0 * kxy / (m * n)
    else:
        v = kxx / m**2 + kyy / n**2 - 2.0 * kxy / (m * n)
    return float(scale * v) if abs(v) > 1e-15 else 0.0
