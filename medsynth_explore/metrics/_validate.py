"""Input checks shared by the metrics: clear :class:`MetricError` messages."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MetricError

__all__ = ["check_features", "check_pair"]


def check_features(x: Any, name: str = "features", min_n: int = 1, dtype=np.float64) -> np.ndarray:
    """A 2-D finite array (N, D) with at least ``min_n`` rows, as ``dtype``.

    With ``dtype=None`` float32 and float64 arrays are returned as they are
    (no copy); other input becomes float64.

    Examples
    --------
    >>> check_features([[1, 2], [3, 4]]).shape
    (2, 2)
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
        if dtype is not None or not (arr.dtype == np.float32 or arr.dtype == np.float64):
            arr = np.asarray(arr, dtype=dtype or np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricError(f"{name} must be a numeric array of shape (N, D): {exc}") from exc
    if arr.ndim == 1:
        raise MetricError(
            f"{name} must have shape (N, D), got a 1-D array of length {arr.shape[0]}; use x[:, None] for one feature."
        )
    if arr.ndim != 2:
        raise MetricError(
            f"{name} must have shape (N, D), got shape {arr.shape}. Encode images first (medsynth_explore.features)."
        )
    if arr.shape[1] == 0:
        raise MetricError(f"{name} have zero feature dimensions.")
    if len(arr) < min_n:
        raise MetricError(f"{name} have {len(arr)} sample(s); this metric needs at least {min_n}.")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise MetricError(f"{name} contain NaN or infinite values in {bad} row(s); drop or fix them before computing metrics.")
    return arr


def check_pair(a: Any, b: Any, names=("real", "synthetic"), min_n: int = 1, dtype=np.float64):
    """Two feature arrays with the same number of columns.

    Examples
    --------
    >>> a, b = check_pair(np.zeros((3, 2)), np.ones((4, 2)))
    >>> a.shape, b.shape
    ((3, 2), (4, 2))
    """
    a = check_features(a, f"{names[0]} features", min_n, dtype)
    b = check_features(b, f"{names[1]} features", min_n, dtype)
    if a.shape[1] != b.shape[1]:
        raise MetricError(
            f"{names[0]} features have {a.shape[1]} dimensions but {names[1]} features have {b.shape[1]}; "
            "encode both sets with the same encoder."
        )
    return a, b
