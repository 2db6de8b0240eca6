"""Memorisation and data-copying checks on features.

All distances are Euclidean nearest-neighbour distances in feature space,
found by :mod:`medsynth_explore.metrics.knn`: exactly, in row blocks (no
N x M matrix held whole), or for large sets (``route="auto"``) by the
approximate index, whose reported distances are exact. The nearest other
training image of every training image (authenticity) is computed once per
training set and cached.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu

from ..errors import MetricError
from ._validate import check_features, check_pair
from .knn import _block_rows, _note, choose_route, features_hash, knn, memo, self_knn, sq_dists

__all__ = ["nn_distances", "authenticity", "copy_rate", "ct_test", "privacy_report"]


def nn_distances(
    query: Any, reference: Any, exclude_self: bool = False, route: str = "auto", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each query row to its nearest reference row, and that row's index.

    With ``exclude_self=True`` (query and reference the same set), a row is not
    its own neighbour. ``route`` chooses the neighbour search
    (:mod:`~medsynth_explore.metrics.knn`); the exact route is the blocked
    brute force.

    Examples
    --------
    >>> d, i = nn_distances([[0.0], [2.5]], [[0.0], [2.0], [4.0]])
    >>> d.tolist(), i.tolist()
    ([0.0, 0.5], [0, 1])
    """
    q, r = check_pair(query, reference, names=("query", "reference"))
    if exclude_self and len(r) < 2:
        raise MetricError("nearest other neighbour needs at least 2 reference rows.")
    if exclude_self and len(q) != len(r):
        raise MetricError(f"exclude_self needs the query and reference to be one set; got {len(q)} and {len(r)} rows.")
    if choose_route(len(q), len(r), r.shape[1], route) == "approximate":
        if exclude_self:
            res = self_knn(r.astype(np.float32), 1, "approximate", seed, what="nearest other (privacy)")
        else:
            res = knn(q.astype(np.float32), r.astype(np.float32), 1, "approximate", seed, what="nearest (privacy)")
        return res.distances[:, 0], res.indices[:, 0]
    _note("nearest (privacy)", len(q), len(r), r.shape[1], 1, "exact")
    rs = (r * r).sum(1)
    qs = (q * q).sum(1)
    dist = np.empty(len(q))
    idx = np.empty(len(q), np.int64)
    step = _block_rows(len(r))
    for s in range(0, len(q), step):
        d = sq_dists(q[s : s + step], r, qs[s : s + step], rs)
        if exclude_self:
            rows = np.arange(len(d))
            d[rows, s + rows] = np.inf
        j = d.argmin(1)
        idx[s : s + step] = j
        dist[s : s + step] = d[np.arange(len(d)), j]
    return np.sqrt(dist), idx


def _nearest_other(train: np.ndarray, route: str, seed: int) -> np.ndarray:
    """Distance of each training row to its nearest other training row, computed once per training set."""
    if choose_route(len(train), len(train), train.shape[1], route) == "approximate":
        return nn_distances(train, train, exclude_self=True, route="approximate", seed=seed)[0]
    key = (features_hash(train), "nearest-other-exact")
    return memo(key, lambda: nn_distances(train, train, exclude_self=True, route="exact")[0])


def authenticity(train: Any, synthetic: Any, route: str = "auto", seed: int = 0) -> dict:
    """Authenticity (Alaa et al. 2022): share of synthetic samples that are not copies.

    A synthetic sample ``s`` with nearest training point ``t`` is
    *unauthentic* when ``d(s, t) < d(t, t')``, where ``t'`` is the nearest other
    training point of ``t``: it sits closer to ``t`` than any real neighbour does.

    Returns
    -------
    dict
        ``authenticity`` (share authentic), ``unauthentic`` (boolean per
        synthetic sample), ``nearest_train`` (index per synthetic sample) and
        ``synthetic_to_train`` (its distance).

    Examples
    --------
    >>> tr = np.array([[0.0], [1.0], [2.0]])
    >>> authenticity(tr, np.array([[0.01], [3.5]]))["authenticity"]
    0.5
    """
    train, synthetic = check_pair(train, synthetic, names=("train", "synthetic"), min_n=1)
    train = check_features(train, "train features", min_n=2)
    d_syn, j = nn_distances(synthetic, train, route=route, seed=seed)
    d_train = _nearest_other(train, route, seed)
    unauth = d_syn < d_train[j]
    return {"authenticity": float(1.0 - unauth.mean()), "unauthentic": unauth, "nearest_train": j, "synthetic_to_train": d_syn}


def copy_rate(train: Any, synthetic: Any, heldout: Any, q: float = 0.01, route: str = "auto", seed: int = 0) -> dict:
    """Share of synthetic samples closer to a training image than real held-out data usually is.

    The threshold is the ``q``-quantile (default 1st percentile) of held-out-to-train
    nearest-neighbour distances; a synthetic sample nearer than that to its
    closest training image counts as a probable copy. Held-out data is by
    construction not copied, so about ``q`` is the expected rate for a model
    that does not memorise.

    Returns
    -------
    dict
        ``copy_rate``, ``threshold``, ``expected`` (= q), ``synthetic_to_train`` and
        ``heldout_to_train`` (distance arrays).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> tr = rng.normal(size=(300, 3))
    >>> copy_rate(tr, tr[:50] + 1e-6, rng.normal(size=(300, 3)))["copy_rate"]
    1.0
    """
    if not 0.0 < q < 1.0:
        raise MetricError(f"q must lie in (0, 1), got {q}.")
    train = check_features(train, "train features", min_n=1)
    d_syn, _ = nn_distances(synthetic, train, route=route, seed=seed)
    d_held, _ = nn_distances(heldout, train, route=route, seed=seed)
    thr = float(np.quantile(d_held, q))
    return {
        "copy_rate": float((d_syn < thr).mean()),
        "threshold": thr,
        "expected": float(q),
        "synthetic_to_train": d_syn,
        "heldout_to_train": d_held,
    }


def ct_test(train: Any, heldout: Any, synthetic: Any, n_cells: int = 10, min_count: int = 20, seed: int = 0) -> dict:
    """The C_T data-copying statistic (Meehan, Chaudhuri & Dasgupta 2020).

    The training set is partitioned into ``n_cells`` cells by k-means. In each
    cell, the nearest-training-point distances of held-out samples and of
    synthetic samples falling in it are compared with a Mann-Whitney U test;
    ``Z = (U - mn/2) / sqrt(mn(m+n+1)/12)`` where U counts pairs with the
    synthetic distance larger. C_T is the average of Z over cells holding at
    least ``min_count`` synthetic and held-out samples, weighted by the
    share of held-out samples in each cell. Clearly negative (e.g. below -3):
    synthetic samples sit closer to training data than fresh real data
    (data copying); clearly positive: under-fitting.

    Returns
    -------
    dict
        ``ct`` (the statistic), ``z`` per cell (NaN for skipped cells),
        ``n_heldout`` and ``n_synthetic`` per cell, ``cells_used``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> tr = rng.normal(size=(400, 2))
    >>> r = ct_test(tr, rng.normal(size=(400, 2)), tr[:400] + 1e-3, n_cells=3)
    >>> r["ct"] < -3
    True
    """
    from sklearn.cluster import KMeans

    train = check_features(train, "train features", min_n=n_cells)
    heldout, synthetic = check_pair(heldout, synthetic, names=("held-out", "synthetic"))
    if train.shape[1] != heldout.shape[1]:
        raise MetricError(f"train features have {train.shape[1]} dimensions but held-out have {heldout.shape[1]}.")
    km = KMeans(n_clusters=n_cells, n_init=4, random_state=seed).fit(train)
    cell_h = km.predict(heldout)
    cell_s = km.predict(synthetic)
    d_h, _ = nn_distances(heldout, train)
    d_s, _ = nn_distances(synthetic, train)
    z = np.full(n_cells, np.nan)
    nh = np.bincount(cell_h, minlength=n_cells)
    ns = np.bincount(cell_s, minlength=n_cells)
    for c in range(n_cells):
        m, n = ns[c], nh[c]
        if m < min_count or n < min_count:
            continue
        u = mannwhitneyu(d_s[cell_s == c], d_h[cell_h == c], alternative="two-sided").statistic
        z[c] = (u - m * n / 2.0) / np.sqrt(m * n * (m + n + 1) / 12.0)
    used = ~np.isnan(z)
    if not used.any():
        raise MetricError(
            f"no k-means cell holds {min_count} synthetic and held-out samples; use fewer cells (n_cells) or more samples."
        )
    w = nh[used] / len(heldout)
    return {"ct": float((w * z[used]).sum() / w.sum()), "z": z, "n_heldout": nh, "n_synthetic": ns, "cells_used": int(used.sum())}


def privacy_report(
    train: Any, synthetic: Any, heldout: Any = None, q: float = 0.01, n_cells: int = 10, seed: int = 0, route: str = "auto"
) -> dict:
    """Scalar privacy summary: authenticity, and with held-out data copy rate and C_T.

    ``route`` chooses the neighbour search of authenticity and the copy rate
    (:mod:`~medsynth_explore.metrics.knn`).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> r = privacy_report(rng.normal(size=(200, 2)), rng.normal(size=(100, 2)))
    >>> sorted(r)
    ['authenticity', 'median_nn_synthetic_to_train']
    """
    out = {}
    a = authenticity(train, synthetic, route=route, seed=seed)
    out["authenticity"] = a["authenticity"]
    out["median_nn_synthetic_to_train"] = float(np.median(a["synthetic_to_train"]))
    if heldout is not None:
        c = copy_rate(train, synthetic, heldout, q, route=route, seed=seed)
        out["copy_rate"] = c["copy_rate"]
        out["median_nn_heldout_to_train"] = float(np.median(c["heldout_to_train"]))
        cells = int(max(1, min(n_cells, len(check_features(heldout)) // 20, len(check_features(synthetic)) // 20)))
        out["ct"] = ct_test(train, heldout, synthetic, n_cells=cells, seed=seed)["ct"]
    return out
