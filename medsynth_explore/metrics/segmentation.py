"""Metrics on segmentations: Dice overlap, cardiothoracic-ratio error, and a summary of anatomy measurements.

These are pure functions on masks and measurement tables; the masks and
measurements of images come from :mod:`medsynth_explore.anatomy`
(``anatomy.measure(images)``, ``Segmenter.predict(images)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import MetricError

__all__ = ["dice", "ctr_error", "anatomy_summary"]


def _masks(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == object:
        raise MetricError(f"{name} must be a boolean or 0/1 array, got dtype object.")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise MetricError(f"{name} must be masks of shape (N, H, W) or (H, W), got shape {arr.shape}.")
    if arr.dtype != bool:
        if not np.isfinite(arr).all() or not np.isin(arr, (0, 1)).all():
            raise MetricError(f"{name} must hold only 0 and 1 (or booleans).")
        arr = arr.astype(bool)
    return arr


def dice(a: Any, b: Any, region: Any = None) -> np.ndarray:
    """Dice overlap ``2 |A & B| / (|A| + |B|)`` of paired masks, per image, optionally inside a region only.

    Parameters
    ----------
    a, b : array (N, H, W) or (H, W)
        Boolean (or 0/1) masks of the same shape.
    region : array (N, H, W), (H, W) or None
        Count only pixels where ``region`` is true, e.g. ``1 - inpainting_mask``
        for the structures outside what was regenerated.

    Returns
    -------
    ndarray (N,)
        In [0, 1]; an image where both masks are empty (in the region) counts
        1.0, since they agree.

    Examples
    --------
    >>> a = np.zeros((1, 4, 4), bool); a[0, :2] = True
    >>> b = np.zeros((1, 4, 4), bool); b[0, 1:3] = True
    >>> dice(a, b).tolist(), dice(a, a).tolist()
    ([0.5], [1.0])
    >>> dice(a, b, region=np.arange(16).reshape(4, 4) < 8).tolist()
    [0.6666666666666666]
    """
    a, b = _masks(a, "a"), _masks(b, "b")
    if a.shape != b.shape:
        raise MetricError(f"masks must have the same shape, got {a.shape} and {b.shape}.")
    if region is not None:
        r = np.broadcast_to(_masks(region, "region"), a.shape) if np.ndim(region) == 2 else _masks(region, "region")
        if r.shape != a.shape:
            raise MetricError(f"region has shape {r.shape}; expected {a.shape} or {a.shape[1:]}.")
        a, b = a & r, b & r
    inter = (a & b).sum((1, 2)).astype(float)
    size = (a.sum((1, 2)) + b.sum((1, 2))).astype(float)
    return np.where(size > 0, 2 * inter / np.maximum(size, 1.0), 1.0)


def ctr_error(measured: Any, true: Any) -> dict:
    """Error of measured cardiothoracic ratios against the true ones.

    Parameters
    ----------
    measured, true : array-like (N,)
        Measured CTR per image (NaN where the measurement failed) and the
        true CTR (e.g. the simulator's ``ctr`` column).

    Returns
    -------
    dict
        ``ctr_mae`` (mean absolute error over measured images), ``ctr_bias``
        (mean signed error), ``failed`` (images without a measurement), ``n``.

    Examples
    --------
    >>> ctr_error([0.5, 0.42, float("nan")], [0.45, 0.44, 0.5])
    {'ctr_mae': 0.035, 'ctr_bias': 0.015, 'failed': 1, 'n': 3}
    """
    m, t = np.asarray(measured, float).ravel(), np.asarray(true, float).ravel()
    if m.shape != t.shape:
        raise MetricError(f"measured and true CTR must have the same length, got {m.size} and {t.size}.")
    if not np.isfinite(t).all():
        raise MetricError("the true CTR holds NaN or infinite values.")
    ok = np.isfinite(m)
    if not ok.any():
        raise MetricError("no image has a measured CTR (every segmentation failed).")
    d = m[ok] - t[ok]
    return {
        "ctr_mae": round(float(np.abs(d).mean()), 12),
        "ctr_bias": round(float(d.mean()), 12),
        "failed": int((~ok).sum()),
        "n": int(m.size),
    }


def anatomy_summary(measurements: pd.DataFrame) -> dict:
    """Rates and means of a table of anatomy measurements (as ``anatomy.measure`` returns).

    Returns
    -------
    dict
        ``implausible_rate`` (share of images with ``plausible`` false),
        ``ctr_mean`` (over images with a CTR), ``ctr_above_half`` (share of
        measured images with CTR > 0.5, the usual cut-off for an enlarged
        heart), ``n``.

    Examples
    --------
    >>> t = pd.DataFrame({"ctr": [0.45, 0.55, float("nan")], "plausible": [True, True, False]})
    >>> {k: round(v, 3) for k, v in anatomy_summary(t).items()}
    {'implausible_rate': 0.333, 'ctr_mean': 0.5, 'ctr_above_half': 0.5, 'n': 3}
    """
    if not isinstance(measurements, pd.DataFrame) or not {"ctr", "plausible"} <= set(measurements.columns):
        raise MetricError("anatomy_summary needs a DataFrame with 'ctr' and 'plausible' columns (from anatomy.measure).")
    if len(measurements) == 0:
        raise MetricError("no measurements to summarise.")
    ctr = measurements["ctr"].to_numpy(float)
    ok = np.isfinite(ctr)
    return {
        "implausible_rate": float(1.0 - measurements["plausible"].astype(bool).mean()),
        "ctr_mean": float(ctr[ok].mean()) if ok.any() else float("nan"),
        "ctr_above_half": float((ctr[ok] > 0.5).mean()) if ok.any() else float("nan"),
        "n": int(len(measurements)),
    }
