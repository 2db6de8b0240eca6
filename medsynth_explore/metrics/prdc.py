"""Precision, recall, density and coverage (Naeem et al. 2020), chunked.

Definitions (k nearest neighbours, Euclidean distance, ``NND_k(x)`` the
distance from ``x`` to its k-th nearest other point of its own set):

* precision = share of synthetic points inside at least one real ball
  ``B(x_i, NND_k(x_i))`` (strict ``<``);
* recall = share of real points inside at least one synthetic ball;
* density = ``1 / (k M) * sum_j sum_i 1[y_j in B(x_i, NND_k(x_i))]``;
* coverage = share of real points whose ball holds at least one synthetic point.

Distances are compared squared, in float64, over blocks of rows so that no
N x M matrix is held whole.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MetricError
from ._validate import check_features, check_pair

__all__ = ["sq_dists", "knn_radii", "prdc"]


def sq_dists(x: np.ndarray, y: np.ndarray, x_sq=None, y_sq=None) -> np.ndarray:
    """Squared Euclidean distances between rows (clipped at 0).

    Examples
    --------
    >>> sq_dists(np.zeros((1, 2)), np.array([[3.0, 4.0]])).tolist()
    [[25.0]]
    """
    xs = (x * x).sum(1) if x_sq is None else x_sq
    ys = (y * y).sum(1) if y_sq is None else y_sq
    d = x @ y.T
    d *= -2.0
    d += xs[:, None]
    d += ys[None, :]
    np.maximum(d, 0.0, out=d)
    return d


def _block_rows(n_cols: int, budget: int = 1 << 22) -> int:
    return max(1, budget // max(n_cols, 1))


def knn_radii(x: Any, k: int = 5, squared: bool = False) -> np.ndarray:
    """Distance from each row to its k-th nearest other row.

    Examples
    --------
    >>> knn_radii(np.array([[0.0], [1.0], [3.0]]), k=1).tolist()
    [1.0, 1.0, 2.0]
    """
    x = check_features(x, min_n=k + 1)
    if k < 1:
        raise MetricError(f"k must be at least 1, got {k}.")
    sq = (x * x).sum(1)
    out = np.empty(len(x))
    step = _block_rows(len(x))
    for s in range(0, len(x), step):
        d = sq_dists(x[s : s + step], x, sq[s : s + step], sq)
        # the point itself sits at distance 0 (index 0 after partition)
        out[s : s + step] = np.partition(d, k, axis=1)[:, k]
    return out if squared else np.sqrt(out)


def prdc(real: Any, fake: Any, k: int = 5) -> dict:
    """Precision, recall, density and coverage of ``fake`` against ``real``.

    Parameters
    ----------
    real, fake : array-like (N, D), (M, D)
        Features; each side needs more than ``k`` samples.
    k : int
        Neighbourhood size (default 5, as in Naeem et al. 2020).

    Returns
    -------
    dict with float ``precision``, ``recall``, ``density``, ``coverage``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> r = prdc(rng.normal(size=(300, 4)), rng.normal(size=(300, 4)))
    >>> sorted(r), 0.7 < r["coverage"] <= 1.0
    (['coverage', 'density', 'precision', 'recall'], True)
    """
    real, fake = check_pair(real, fake, min_n=k + 1)
    r_real = knn_radii(real, k, squared=True)
    r_fake = knn_radii(fake, k, squared=True)
    real_sq, fake_sq = (real * real).sum(1), (fake * fake).sum(1)
    in_real_ball = np.zeros(len(fake), bool)
    density_count = np.zeros(len(fake), np.int64)
    recall_hit = np.empty(len(real), bool)
    covered = np.empty(len(real), bool)
    step = _block_rows(len(fake))
    for s in range(0, len(real), step):
        d = sq_dists(real[s : s + step], fake, real_sq[s : s + step], fake_sq)
        inside = d < r_real[s : s + step, None]
        in_real_ball |= inside.any(axis=0)
        density_count += inside.sum(axis=0)
        covered[s : s + step] = inside.any(axis=1)
        recall_hit[s : s + step] = (d < r_fake[None, :]).any(axis=1)
    return {
        "precision": float(in_real_ball.mean()),
        "recall": float(recall_hit.mean()),
        "density": float(density_count.sum() / (k * len(fake))),
        "coverage": float(covered.mean()),
    }
