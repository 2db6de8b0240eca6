"""Anatomy checks of generators: CTR per requested condition, implausible anatomy, what inpainting keeps.

* :func:`ctr_by_condition`: the cardiothoracic-ratio distribution of samples
  per requested condition. Asked for cardiomegaly, a generator should move
  the CTR past 0.5; asked for no finding, it should not.
* :func:`anatomy_report`: that table for no finding and each finding, plus
  the rate of implausible anatomy over all samples, with intervals.
* :func:`inpainting_anatomy`: Dice of each structure between an image and
  its inpainted version, outside the mask (what should be kept) and inside it.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..errors import DataError
from .truth import STRUCTURES

__all__ = ["DEFAULT_CONDITIONS", "ctr_by_condition", "anatomy_report", "inpainting_anatomy", "mean_interval"]

#: Conditions :func:`anatomy_report` samples: no finding, then each PhantomCXR finding alone.
DEFAULT_CONDITIONS = {
    "no finding": {"findings": []},
    "cardiomegaly": {"findings": ["cardiomegaly"]},
    "nodule": {"findings": ["nodule"]},
    "effusion": {"findings": ["effusion"]},
    "pneumothorax": {"findings": ["pneumothorax"]},
}


def mean_interval(values: Any, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of the finite values and its percentile-bootstrap interval.

    Examples
    --------
    >>> m, lo, hi = mean_interval([0.0, 1.0] * 50, n_boot=200)
    >>> m, lo < 0.5 < hi
    (0.5, True)
    """
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boots = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(1)
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return float(v.mean()), float(lo), float(hi)


def _segmenter(segmenter: Any):
    from .segmenter import load_segmenter

    return load_segmenter(segmenter)


def ctr_by_condition(
    generator: Any,
    conditions: Mapping[str, Any] | None = None,
    n: int = 64,
    seed: int = 0,
    segmenter: Any = None,
    n_boot: int = 1000,
    callback: Any = None,
) -> pd.DataFrame:
    """CTR and plausibility of a generator's samples, per requested condition.

    Parameters
    ----------
    generator : Generator or str
        A generator or a name :func:`~medsynth_explore.load_generator` knows.
    conditions : mapping label -> conditions, optional
        Default :data:`DEFAULT_CONDITIONS`.
    n : int
        Samples per condition.
    seed : int
        Sampling seed (the same for every condition, so the rows differ only by the condition).
    segmenter : optional
        See :func:`~medsynth_explore.anatomy.measure`.
    n_boot : int
        Bootstrap resamples of the intervals.
    callback : callable(done, total), optional
        Called after each condition; returning ``False`` cancels (:class:`~medsynth_explore.errors.CancelledError`).

    Returns
    -------
    DataFrame
        One row per condition: ``condition``, ``n``, ``ctr_mean`` with
        ``ctr_low`` / ``ctr_high`` (95% bootstrap interval), ``ctr_median``,
        ``ctr_above_half`` (share with CTR > 0.5) and ``implausible_rate``.
        ``attrs["measurements"]`` holds every image's measurements (with a
        ``condition`` column), ``attrs["provenance"]`` the generator, seed and
        segmenter.

    Examples
    --------
    >>> t = ctr_by_condition("phantomcxr-physics", {"normal": {"findings": []}}, n=8)
    >>> t[["condition", "n"]].values.tolist()
    [['normal', 8]]
    """
    table, _ = _by_condition(generator, conditions, n, seed, segmenter, n_boot, callback)
    return table


def _by_condition(generator, conditions, n, seed, segmenter, n_boot, callback):
    """:func:`ctr_by_condition`'s table and the samples it measured (label -> ImageSet)."""
    from ..generators import load_generator
    from ..generators.base import check_callback
    from .measure import measure

    gen = load_generator(generator) if isinstance(generator, str) else generator
    conditions = dict(DEFAULT_CONDITIONS if conditions is None else conditions)
    if not conditions:
        raise DataError("give at least one condition, e.g. {'normal': {'findings': []}}.")
    seg = _segmenter(segmenter)
    rows, tables, samples = [], [], {}
    for j, (label, cond) in enumerate(conditions.items()):
        out = gen.sample(n, conditions=cond, seed=seed)
        samples[label] = out
        m = measure(out.images, segmenter=seg)
        m.insert(0, "condition", label)
        tables.append(m)
        mean, lo, hi = mean_interval(m["ctr"], n_boot=n_boot, seed=seed)
        ctr = m["ctr"].to_numpy(float)
        rows.append(
            {
                "condition": label,
                "n": int(len(m)),
                "ctr_mean": mean,
                "ctr_low": lo,
                "ctr_high": hi,
                "ctr_median": float(np.nanmedian(ctr)) if np.isfinite(ctr).any() else float("nan"),
                "ctr_above_half": float((ctr[np.isfinite(ctr)] > 0.5).mean()) if np.isfinite(ctr).any() else float("nan"),
                "implausible_rate": float(1 - m["plausible"].mean()),
            }
        )
        check_callback(callback, j + 1, len(conditions), "anatomy check")
    table = pd.DataFrame(rows)
    table.attrs["measurements"] = pd.concat(tables, ignore_index=True)
    table.attrs["provenance"] = {
        "generator": gen.name,
        "checkpoint_sha256": gen.sha256,
        "n_per_condition": int(n),
        "seed": int(seed),
        "conditions": {k: dict(v) if isinstance(v, Mapping) else v for k, v in conditions.items()},
        **seg.describe(),
    }
    return table, samples


def anatomy_report(
    generator: Any, n: int = 64, seed: int = 0, segmenter: Any = None, n_boot: int = 1000, callback: Any = None
) -> dict:
    """The anatomy of a generator's samples: CTR per condition and the rate of implausible anatomy.

    Returns
    -------
    dict
        ``by_condition`` (:func:`ctr_by_condition` on :data:`DEFAULT_CONDITIONS`),
        ``implausible_rate`` with ``implausible_low`` / ``implausible_high``
        (95% bootstrap interval over all samples), ``cardiomegaly_ctr_shift``
        (mean CTR asked for cardiomegaly minus asked for no finding),
        ``reasons`` (how often each rule failed), ``measurements`` (every
        image, with its ``condition``), ``samples`` (condition -> ImageSet, in
        the order of ``measurements``) and ``provenance``.
    """
    table, samples = _by_condition(generator, DEFAULT_CONDITIONS, n, seed, segmenter, n_boot, callback)
    m = table.attrs["measurements"]
    rate, lo, hi = mean_interval(~m["plausible"].astype(bool), n_boot=n_boot, seed=seed)
    by = table.set_index("condition")["ctr_mean"]
    shift = float(by["cardiomegaly"] - by["no finding"]) if {"cardiomegaly", "no finding"} <= set(by.index) else float("nan")
    reasons = m.loc[~m["plausible"], "implausible_reasons"].str.split("; ").explode()
    kinds = reasons.str.replace(r" [-0-9.e]+ outside .*", "", regex=True).value_counts()
    return {
        "by_condition": table,
        "implausible_rate": rate,
        "implausible_low": lo,
        "implausible_high": hi,
        "cardiomegaly_ctr_shift": shift,
        "reasons": {str(k): int(v) for k, v in kinds.items()},
        "measurements": m,
        "samples": samples,
        "provenance": table.attrs["provenance"],
    }


def inpainting_anatomy(before: Any, after: Any, mask: Any, segmenter: Any = None) -> pd.DataFrame:
    """Dice of each structure between images and their inpainted versions, outside and inside the mask.

    Inpainting should keep the anatomy outside its mask. The pixels there may
    be kept exactly, yet a segmenter sees each pixel in context, so a region
    regenerated out of keeping with its surroundings can still move the
    structures outside it; ``dice_outside_*`` near 1 says it did not.

    Parameters
    ----------
    before, after : ImageSet or array (N, C, H, W)
        The images and their inpainted versions.
    mask : array (N, 1, H, W), (N, H, W) or (H, W)
        1 = regenerated, 0 = kept (the package's convention).
    segmenter : optional
        See :func:`~medsynth_explore.anatomy.measure`.

    Returns
    -------
    DataFrame
        One row per image: ``dice_outside_<structure>`` and
        ``dice_inside_<structure>`` for each of
        :data:`~medsynth_explore.anatomy.truth.STRUCTURES`, and ``mask_fraction``.

    Examples
    --------
    >>> from medsynth_explore.phantom import simulate
    >>> x = simulate(2, seed=0).images
    >>> m = np.zeros((64, 64)); m[40:, :20] = 1
    >>> inpainting_anatomy(x, x, m)["dice_outside_heart"].tolist()
    [1.0, 1.0]
    """
    from ..metrics.segmentation import dice

    b = np.asarray(getattr(before, "images", before))
    a = np.asarray(getattr(after, "images", after))
    if b.shape != a.shape or b.ndim != 4:
        raise DataError(f"before and after must be images of one shape (N, C, H, W); got {b.shape} and {a.shape}.")
    m = np.asarray(mask, float)
    if m.ndim == 4:
        m = m[:, 0]
    m = np.broadcast_to(m, (len(b), *b.shape[-2:])) if m.ndim == 2 else m
    if m.shape != (len(b), *b.shape[-2:]):
        raise DataError(f"mask has shape {np.shape(mask)}; expected (H, W), (N, H, W) or (N, 1, H, W) for images {b.shape}.")
    if not np.isfinite(m).all():
        raise DataError("mask holds NaN or infinite values.")
    regen = m > 0.5
    seg = _segmenter(segmenter)
    pb, pa = seg.predict(b), seg.predict(a)
    out = {}
    for s in STRUCTURES:
        out[f"dice_outside_{s}"] = dice(pb[s], pa[s], region=~regen)
    for s in STRUCTURES:
        out[f"dice_inside_{s}"] = dice(pb[s], pa[s], region=regen)
    out["mask_fraction"] = regen.reshape(len(regen), -1).mean(1)
    return pd.DataFrame(out)
