"""Anatomical measurements of chest radiographs from lung and heart masks, and whether they are plausible.

:func:`measure` segments images (the shipped segmenter, or a researcher's
own through :func:`~medsynth_explore.anatomy.segmenter.load_segmenter`) and
:func:`measure_masks` turns masks into one row of measurements per image:

* ``ctr``: the cardiothoracic ratio, the widest horizontal extent of the
  heart over the widest extent of the thorax (from the outer edge of the
  right lung to that of the left), as a radiologist measures it on a PA film;
* ``lung_area_right``, ``lung_area_left``, ``heart_area``: shares of the
  image area;
* ``heart_width``, ``thorax_width``: shares of the image width;
* ``*_main``: the share of each structure in its largest connected piece;
* ``heart_offset``: the heart's centre minus the thorax's centre, in thorax
  widths (the heart lies towards the patient's left, the image's right);
* ``heart_drop``: the heart's centre below the lungs' centre, in image heights.

An image is ``plausible`` when every structure is there, each is one piece
(its largest piece holds at least 90%), the right lung lies on the image's
left of the heart and the left lung on its right, and every measurement lies
within the range seen on the simulator's ground truth (the segmenter card's
``plausible_ranges``, widened by 10% of their width). ``implausible_reasons``
says which rule failed.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..errors import DataError
from .truth import STRUCTURES

__all__ = ["measure", "measure_masks", "reference_ranges", "check_plausible", "RANGED", "MIN_MAIN_SHARE"]

#: Measurements checked against reference ranges.
RANGED = ("ctr", "lung_area_right", "lung_area_left", "heart_area", "thorax_width", "heart_offset", "heart_drop")
#: A structure is one piece when its largest connected piece holds at least this share of it.
MIN_MAIN_SHARE = 0.9
_AREA = {"right_lung": "lung_area_right", "left_lung": "lung_area_left", "heart": "heart_area"}


def _span(cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last occupied column per image of an (N, W) occupancy (NaN when empty)."""
    has = cols.any(1)
    first = np.argmax(cols, 1).astype(float)
    last = (cols.shape[1] - 1 - np.argmax(cols[:, ::-1], 1)).astype(float)
    return np.where(has, first, np.nan), np.where(has, last, np.nan)


def _main_share(mask: np.ndarray) -> np.ndarray:
    """Share of each image's mask in its largest 8-connected piece (NaN for an empty mask)."""
    from scipy.ndimage import label

    out = np.full(len(mask), np.nan)
    eight = np.ones((3, 3), bool)
    for i, m in enumerate(mask):
        total = int(m.sum())
        if total:
            lab, k = label(m, structure=eight)
            out[i] = np.bincount(lab.ravel(), minlength=k + 1)[1:].max() / total
    return out


def _centroid(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, h, w = mask.shape
    area = mask.sum((1, 2)).astype(float)
    ys, xs = (np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (mask.sum(1) * xs).sum(1) / area
        cy = (mask.sum(2) * ys).sum(1) / area
    return np.where(area > 0, cx, np.nan), np.where(area > 0, cy, np.nan)


def _check_masks(masks: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if not isinstance(masks, Mapping):
        raise DataError(f"masks must be a dict {list(STRUCTURES)} -> bool arrays (N, H, W), got {type(masks).__name__}.")
    missing = [s for s in STRUCTURES if s not in masks]
    if missing:
        raise DataError(f"masks lack {missing}; give {list(STRUCTURES)} as bool arrays (N, H, W).")
    out = {s: np.asarray(masks[s]).astype(bool) for s in STRUCTURES}
    shapes = {s: m.shape for s, m in out.items()}
    if len(set(shapes.values())) != 1 or out[STRUCTURES[0]].ndim != 3:
        raise DataError(f"every mask must be a bool array (N, H, W) of one shape; got {shapes}.")
    return out


def measure_masks(masks: Mapping[str, Any]) -> pd.DataFrame:
    """Measurements of right lung, left lung and heart masks, one row per image (see the module notes).

    Parameters
    ----------
    masks : dict
        :data:`~medsynth_explore.anatomy.truth.STRUCTURES` -> bool (N, H, W).

    Returns
    -------
    DataFrame
        ``ctr``, ``lung_area_right``, ``lung_area_left``, ``heart_area``,
        ``heart_width``, ``thorax_width``, ``right_lung_main``,
        ``left_lung_main``, ``heart_main``, centroids ``*_x`` / ``*_y`` (image
        fractions), ``heart_offset``, ``heart_drop``. A missing structure gives
        area 0 and NaN for what needs it.

    Examples
    --------
    >>> m = {s: np.zeros((1, 10, 10), bool) for s in ("right_lung", "left_lung", "heart")}
    >>> m["right_lung"][0, 2:8, 1:4] = True; m["left_lung"][0, 2:8, 6:9] = True; m["heart"][0, 5:8, 3:7] = True
    >>> r = measure_masks(m).iloc[0]
    >>> float(r["ctr"]), float(r["heart_area"]), float(r["heart_main"])
    (0.5, 0.12, 1.0)
    """
    m = _check_masks(masks)
    n, h, w = m["heart"].shape
    rows: dict[str, np.ndarray] = {}
    for s in STRUCTURES:
        rows[_AREA[s]] = m[s].sum((1, 2)) / float(h * w)
    hf, hl = _span(m["heart"].any(1))
    lungs = m["right_lung"] | m["left_lung"]
    tf, tl = _span(lungs.any(1))
    heart_w = (hl - hf + 1) / w
    thorax_w = (tl - tf + 1) / w
    with np.errstate(invalid="ignore", divide="ignore"):
        rows["ctr"] = heart_w / thorax_w
    rows["heart_width"], rows["thorax_width"] = heart_w, thorax_w
    for s in STRUCTURES:
        rows[f"{s}_main"] = _main_share(m[s])
    for s in STRUCTURES:
        rows[f"{s}_x"], rows[f"{s}_y"] = _centroid(m[s])
    mid = (tf + tl + 1) / 2 / w
    with np.errstate(invalid="ignore", divide="ignore"):
        rows["heart_offset"] = (rows["heart_x"] - mid) / thorax_w
    _, lung_y = _centroid(lungs)
    rows["heart_drop"] = rows["heart_y"] - lung_y
    order = ["ctr", "lung_area_right", "lung_area_left", "heart_area", "heart_width", "thorax_width"]
    df = pd.DataFrame(rows)
    return df[order + [c for c in df.columns if c not in order]]


def reference_ranges(measurements: pd.DataFrame, q: float = 0.001) -> dict:
    """The ``[q, 1 - q]`` quantile range of every measurement in :data:`RANGED` on reference anatomy.

    Examples
    --------
    >>> df = pd.DataFrame({c: np.linspace(0, 1, 101) for c in RANGED})
    >>> reference_ranges(df, q=0.01)["ctr"]
    [0.01, 0.99]
    """
    missing = [c for c in RANGED if c not in measurements.columns]
    if missing:
        raise DataError(f"reference measurements lack {missing}.")
    out = {}
    for c in RANGED:
        v = measurements[c].to_numpy(float)
        v = v[np.isfinite(v)]
        if not len(v):
            raise DataError(f"no finite reference values of {c!r}.")
        lo, hi = np.quantile(v, [q, 1 - q])
        out[c] = [round(float(lo), 5), round(float(hi), 5)]
    return out


def check_plausible(measurements: pd.DataFrame, ranges: Mapping[str, Any], margin: float = 0.1) -> pd.DataFrame:
    """``plausible`` (bool) and ``implausible_reasons`` (text) for each row of :func:`measure_masks`.

    Parameters
    ----------
    measurements : DataFrame
    ranges : mapping measurement -> [low, high]
        E.g. the segmenter card's ``plausible_ranges``.
    margin : float
        Each range is widened by this share of its width on both sides.

    Examples
    --------
    >>> m = {s: np.zeros((1, 10, 10), bool) for s in ("right_lung", "left_lung", "heart")}
    >>> m["right_lung"][0, 2:8, 1:4] = True; m["heart"][0, 5:8, 3:7] = True
    >>> check_plausible(measure_masks(m), {})["implausible_reasons"].tolist()
    ['no left lung']
    """
    rows = []
    for _, r in measurements.iterrows():
        reasons = []
        for s in STRUCTURES:
            if not r[_AREA[s]] > 0:
                reasons.append(f"no {s.replace('_', ' ')}")
            elif r[f"{s}_main"] < MIN_MAIN_SHARE:
                reasons.append(f"{s.replace('_', ' ')} in pieces")
        if not reasons and not (r["right_lung_x"] < r["heart_x"] < r["left_lung_x"]):
            reasons.append("lungs and heart out of place")
        if not reasons:
            for c, (lo, hi) in ranges.items():
                pad = margin * (hi - lo)
                v = r[c]
                if not np.isfinite(v) or v < lo - pad or v > hi + pad:
                    reasons.append(f"{c} {v:.3g} outside {lo - pad:.3g}..{hi + pad:.3g}")
        rows.append({"plausible": not reasons, "implausible_reasons": "; ".join(reasons)})
    return pd.DataFrame(rows, index=measurements.index, columns=["plausible", "implausible_reasons"])


def measure(images: Any, segmenter: Any = None, ranges: Mapping[str, Any] | None = None, batch_size: int = 128) -> pd.DataFrame:
    """Segment chest radiographs and measure their anatomy.

    Parameters
    ----------
    images : ImageSet or array (N, C, H, W)
        Frontal radiographs in [0, 1].
    segmenter : optional
        Anything :func:`~medsynth_explore.anatomy.segmenter.load_segmenter`
        takes (default: the shipped segmenter), e.g. a torch module with
        ``targets`` or a segmenter already loaded.
    ranges : mapping, optional
        Plausible range of each measurement; default the ranges the shipped
        segmenter's card records from the simulator's ground truth (adult
        PhantomCXR anatomy; give your own for other populations).

    Returns
    -------
    DataFrame
        One row per image: the columns of :func:`measure_masks`, ``plausible``
        and ``implausible_reasons``. ``attrs["provenance"]`` names the
        segmenter (name, SHA-256) and where the ranges came from.

    Examples
    --------
    >>> from medsynth_explore.phantom import simulate
    >>> df = measure(simulate(4, seed=0))
    >>> {"ctr", "lung_area_left", "lung_area_right", "heart_area", "plausible"} <= set(df.columns)
    True
    >>> bool(df["plausible"].all()), bool(df["ctr"].between(0.3, 0.7).all())
    (True, True)
    """
    from .segmenter import Segmenter, load_segmenter

    seg = load_segmenter(segmenter)
    source = "given"
    if ranges is None:
        card = seg.card if isinstance(seg, Segmenter) else Segmenter().card
        ranges = card.get("plausible_ranges")
        source = f"{card.get('name')} card (simulator ground truth)"
        if not ranges:
            raise DataError("the segmenter's card records no plausible_ranges; pass ranges=... .")
    masks = seg.predict(images, batch_size=batch_size)
    df = measure_masks(masks)
    df = pd.concat([df, check_plausible(df, ranges)], axis=1)
    df.attrs["provenance"] = {**seg.describe(), "ranges": source, "n": len(df)}
    return df
