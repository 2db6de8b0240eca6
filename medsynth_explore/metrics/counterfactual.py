"""How a classifier's output moves under counterfactual edits: the numbers of a stress test.

For each image a stress test has three scores of one classifier: on the
image (``before``), on the image with one thing edited inside a region
(``after``), and on the image with that region regenerated unchanged (a
*null edit*, ``null``). :func:`edit_effect` summarises them: the mean
``shift`` (after - before), ``null_shift`` (null - before) and ``effect``
(after - null: the movement due to the change of content alone), each with a
percentile-bootstrap interval over images, and the share of images whose
call at ``threshold`` flips. :func:`medsynth_explore.stress_test` builds the
pairs with a generator and reports these numbers per edit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MetricError

__all__ = ["edit_effect"]


def _scores(v: Any, name: str) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise MetricError(f"{name} scores must be numbers: {exc}") from exc
    if not np.isfinite(a).all():
        raise MetricError(f"{name} scores hold NaN or infinite values; the classifier returned something that is not a score.")
    return a


def edit_effect(
    before: Any,
    after: Any,
    null: Any,
    threshold: float = 0.5,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """Mean movement of scores under an edit, beside a null edit, with bootstrap intervals.

    Parameters
    ----------
    before, after, null : array-like (N,)
        One classifier's scores on the images, the edited images and the null-edited images (paired by position).
    threshold : float
        Score at which the classifier calls the finding (for ``flipped``).
    n_boot, level, seed :
        Percentile bootstrap over images (0 resamples: no intervals, NaN bounds).

    Returns
    -------
    dict
        ``n``, ``before``, ``after`` (means), ``shift``, ``null_shift``,
        ``effect`` with ``_low`` / ``_high`` bounds, ``flipped`` (share whose
        call changes from before to after).

    Examples
    --------
    >>> r = edit_effect([0.9, 0.8, 0.7], [0.2, 0.3, 0.1], [0.9, 0.8, 0.6], n_boot=200)
    >>> round(r["effect"], 3), r["effect_low"] <= r["effect"] <= r["effect_high"], r["flipped"]
    (-0.567, True, 1.0)
    """
    s0, s1, sn = _scores(before, "before"), _scores(after, "after"), _scores(null, "null")
    if not (len(s0) == len(s1) == len(sn)):
        raise MetricError(f"before, after and null must pair up one score per image; got {len(s0)}, {len(s1)} and {len(sn)}.")
    if not len(s0):
        raise MetricError("no scores: the edit changed no image.")
    if not 0 < level < 1:
        raise MetricError(f"level must lie in (0, 1), got {level}.")
    rng = np.random.default_rng(seed)
    out: dict = {"n": int(len(s0)), "before": float(s0.mean()), "after": float(s1.mean())}
    idx = rng.integers(0, len(s0), (int(n_boot), len(s0))) if n_boot and len(s0) > 1 else None
    q = [(1 - level) / 2, (1 + level) / 2]
    for name, v in (("shift", s1 - s0), ("null_shift", sn - s0), ("effect", s1 - sn)):
        out[name] = float(v.mean())
        if idx is None:
            out[f"{name}_low"], out[f"{name}_high"] = float("nan"), float("nan")
        else:
            lo, hi = np.quantile(v[idx].mean(1), q)
            out[f"{name}_low"], out[f"{name}_high"] = float(lo), float(hi)
    out["flipped"] = float(((s0 >= threshold) != (s1 >= threshold)).mean())
    return out
