"""Precision, recall, density and coverage (Naeem et al. 2020), chunked.

Definitions (k nearest neighbours, Euclidean distance, ``NND_k(x)`` the
distance from ``x`` to its k-th nearest other point of its own set):

* precision = share of synthetic points inside at least one real ball
  ``B(x_i, NND_k(x_i))`` (strict ``<``);
* recall = share of real points inside at least one synthetic ball;
* density = ``1 / (k M) * sum_j sum_i 1[y_j in B(x_i, NND_k(x_i))]``;
* coverage = share of real points whose ball holds at least one synthetic point.

Two routes (:mod:`medsynth_explore.metrics.knn`). The exact one compares
distances squared, in float64, over blocks of rows so that no N x M matrix is
held whole. The approximate one, which ``route="auto"`` takes for large sets,
finds the members of every real ball among the ``candidates`` nearest
synthetic points of its centre (approximate index, true distances), and
takes recall from the balls of those same synthetic points; a ball
that holds all its candidates is searched again with four times as many,
and measured against every point exactly if it still holds them all. The
radii of a set are computed once per content hash and k and reused by later
calls (subgroups, panels, the live metrics).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MetricError
from ._validate import check_features, check_pair
from .knn import _block_rows, _note, choose_route, features_hash, knn, memo, self_knn, sq_dists

__all__ = ["sq_dists", "knn_radii", "prdc"]

#: How many times more candidates the approximate route looks at for a full ball or a real point in no ball.
WIDER = 4


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


def cached_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Squared k-NN radii of ``x`` (the exact route's :func:`knn_radii`), computed once per content hash and k.

    The returned array is shared by every caller: do not modify it.

    Examples
    --------
    >>> x = np.array([[0.0], [1.0], [3.0]])
    >>> cached_radii(x, 1).tolist(), cached_radii(x, 1) is cached_radii(x.copy(), 1)
    ([1.0, 1.0, 4.0], True)
    """
    x = check_features(x, min_n=k + 1)
    return memo((features_hash(x), "radii-exact", int(k)), lambda: knn_radii(x, k, squared=True))


def prdc(real: Any, fake: Any, k: int = 5, route: str = "auto", seed: int = 0, candidates: int = 24) -> dict:
    """Precision, recall, density and coverage of ``fake`` against ``real``.

    Parameters
    ----------
    real, fake : array-like (N, D), (M, D)
        Features; each side needs more than ``k`` samples.
    k : int
        Neighbourhood size (default 5, as in Naeem et al. 2020).
    route : {"auto", "exact", "approximate"}
        Neighbour search (:mod:`~medsynth_explore.metrics.knn`). ``"auto"``
        is exact unless the sets are large (for example 100,000 x 100,000 at
        768 dimensions).
    seed : int
        Seed of the approximate route's partition.
    candidates : int
        Approximate route only: nearest points of the other side examined per
        ball; a ball holding all of them is measured exactly.

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
    if k < 1:
        raise MetricError(f"k must be at least 1, got {k}.")
    n = max(len(real), len(fake))
    chosen = choose_route(n, n, real.shape[1], route)
    if chosen == "approximate":
        return _prdc_approximate(real, fake, k, seed, candidates)
    _note("prdc", n, n, real.shape[1], k, "exact")
    r_real = cached_radii(real, k)
    r_fake = cached_radii(fake, k)
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


def _ball_members(centres: np.ndarray, others: np.ndarray, radii_sq: np.ndarray, candidates: int, seed: int, what: str):
    """For balls ``B(centres[i], sqrt(radii_sq[i]))``: how many ``others`` each holds, which others are in any,
    and the first search's ``candidates`` nearest others of every centre (a :class:`KnnResult`).

    The ``candidates`` nearest others of each centre come from the
    approximate index. A ball that holds all of them may hold more: those
    balls are searched again with four times as many candidates, and the
    few still full are measured against every other row exactly (blocked).
    What can still be missed is an other row the index did not return among
    a ball's nearest.
    """
    counts = np.zeros(len(centres), np.int64)
    hit = np.zeros(len(others), bool)
    rows = np.arange(len(centres))
    m = min(max(candidates, 1), len(others))
    for attempt in range(2):
        res = knn(centres[rows], others, m, "approximate", seed, what=what if not attempt else what + " (full balls, wider)")
        if not attempt:
            first = res
        inside = res.distances**2 < radii_sq[rows, None]
        full = inside[:, -1] if m < len(others) else np.zeros(len(rows), bool)
        done = ~full
        counts[rows[done]] = inside[done].sum(1)
        hit[res.indices[done][inside[done]]] = True
        rows = rows[full]
        if not len(rows) or m >= len(others):
            break
        m = min(WIDER * m, len(others))
    if len(rows):
        _note(what + " (full balls, exact)", len(rows), len(others), others.shape[1], 0, "exact")
        o64 = others.astype(np.float64)
        o_sq = (o64 * o64).sum(1)
        step = _block_rows(len(others))
        for s in range(0, len(rows), step):
            r = rows[s : s + step]
            c64 = centres[r].astype(np.float64)
            d_in = sq_dists(c64, o64, (c64 * c64).sum(1), o_sq) < radii_sq[r, None]
            counts[r] = d_in.sum(1)
            hit |= d_in.any(axis=0)
    return counts, hit, first


def _prdc_approximate(real: np.ndarray, fake: np.ndarray, k: int, seed: int, candidates: int) -> dict:
    """PRDC from one search of the real points' nearest synthetic points (see :func:`prdc`).

    The real balls' members give density, coverage and precision. Recall
    asks whether a real point lies in some synthetic ball; it is answered
    from the same search, looking at the balls of the real point's
    ``candidates`` nearest synthetic points (four times as many for the
    real points found in none), so no search over the synthetic balls is
    made. What this can miss is a real point inside the ball of a synthetic
    point farther than those;
    ``benchmarks/bench_map_scale.py --only error`` measures the effect
    against the exact route.
    """
    real32, fake32 = real.astype(np.float32), fake.astype(np.float32)
    r_real = self_knn(real32, k, "approximate", seed, what="prdc radii (real)").distances[:, k - 1] ** 2
    r_fake = self_knn(fake32, k, "approximate", seed, what="prdc radii (synthetic)").distances[:, k - 1] ** 2
    in_real_balls, fake_hit, near = _ball_members(real32, fake32, r_real, candidates, seed, "prdc real balls")
    real_hit = (near.distances**2 < r_fake[near.indices]).any(axis=1)
    miss = np.flatnonzero(~real_hit)  # few: looked at again with four times as many synthetic points
    wider = min(WIDER * near.indices.shape[1], len(fake32))
    if len(miss) and wider > near.indices.shape[1]:
        again = knn(real32[miss], fake32, wider, "approximate", seed, what="prdc recall (not yet in a ball, wider)")
        real_hit[miss] = (again.distances**2 < r_fake[again.indices]).any(axis=1)
    return {
        "precision": float(fake_hit.mean()),
        "recall": float(real_hit.mean()),
        "density": float(in_real_balls.sum() / (k * len(fake))),
        "coverage": float((in_real_balls > 0).mean()),
    }
