"""What a :class:`~medsynth_explore.evaluate.Report` carries besides its numbers: the evidence to look at.

:func:`collect_evidence` runs inside :func:`medsynth_explore.evaluate` once
the features are known. It records, JSON-ready (so ``Report.to_json`` /
``from_json`` keep it):

- ``samples``: small PNG thumbnails (base64) of a few seeded-random images of
  each side, with captions (sex, age, findings) and their row numbers;
- ``privacy`` (when a metric that needs the training set was computed): the
  copy threshold (the ``quantile`` of held-out-to-train nearest-neighbour
  distances, as the copy rate uses it), histograms of the synthetic-to-train
  and held-out-to-train distances, and the synthetic images closest to a
  training image beside that training image, with their distance.

Images are read only for the rows shown (``ImageSet.read(rows)``),
so a set whose pixels stay on disk is never decoded whole here. When the
inputs were feature arrays there are no pictures: the evidence then says so
and keeps the distances.

Examples
--------
>>> import numpy as np
>>> from medsynth_explore.data import ImageSet
>>> rng = np.random.default_rng(0)
>>> s = ImageSet(rng.random((20, 1, 8, 8)).astype(np.float32))
>>> ev = collect_evidence(s, s, features=(rng.normal(size=(20, 3)), rng.normal(size=(20, 3))), n_samples=4)
>>> len(ev["samples"]["real"]["shown"]), ev["samples"]["real"]["given"], ev["privacy"]
(4, True, None)
"""

from __future__ import annotations

import base64
from typing import Any, Sequence

import numpy as np

from .errors import MetricError

__all__ = ["EVIDENCE_VERSION", "REPORT_THUMB_SIDE", "collect_evidence", "png_of"]

#: Layout version of the evidence dict.
EVIDENCE_VERSION = 1
#: Longest side in pixels of the thumbnails a report stores.
REPORT_THUMB_SIDE = 128
#: Histogram bins of the nearest-neighbour distances.
HIST_BINS = 30


def png_of(entry: dict, key: str = "png") -> bytes | None:
    """The PNG bytes stored (base64) under ``key`` of an evidence entry, or None.

    Examples
    --------
    >>> png_of({"png": base64.b64encode(b"abc").decode()})
    b'abc'
    """
    v = entry.get(key)
    return base64.b64decode(v) if isinstance(v, str) and v else None


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def _thumbs(imageset: Any, rows: Sequence[int], labels: Sequence[str], max_side: int) -> list[dict]:
    from .data.display import png_bytes, read_rows

    rows = [int(r) for r in rows]
    pixels = read_rows(imageset, rows) if imageset is not None and rows else None
    out = []
    for k, r in enumerate(rows):
        item = {"index": r, "caption": labels[k]}
        if pixels is not None:
            item["png"] = _b64(png_bytes(pixels[k], max_side=max_side))
        out.append(item)
    return out


def _labels(metadata: Any, rows: Sequence[int]) -> list[str]:
    from .data.display import captions

    if metadata is None or not len(rows):
        return [f"#{int(r)}" for r in rows]
    caps = captions(metadata.iloc[list(rows)])
    return [f"#{int(r)}" + (f" · {c}" if c else "") for r, c in zip(rows, caps)]


def _side(imageset: Any, metadata: Any, n_rows: int, n_samples: int, rng: np.random.Generator, max_side: int) -> dict:
    k = min(int(n_samples), int(n_rows))
    rows = np.sort(rng.choice(n_rows, k, replace=False)) if k else np.zeros(0, np.int64)
    entry = {"given": imageset is not None, "n": int(n_rows), "shown": []}
    if imageset is not None:
        entry["shown"] = _thumbs(imageset, rows, _labels(metadata, rows), max_side)
    return entry


def _privacy(
    real: Any,
    synthetic: Any,
    train: Any,
    rf: np.ndarray,
    sf: np.ndarray,
    tf: np.ndarray,
    smd: Any,
    tmd: Any,
    n_pairs: int,
    quantile: float,
    max_side: int,
) -> dict:
    from .metrics.privacy import nn_distances

    if not 0.0 < quantile < 1.0:
        raise MetricError(f"quantile must lie in (0, 1), got {quantile}.")
    d_syn, j_syn = nn_distances(sf, tf)
    d_held, _ = nn_distances(rf, tf)
    thr = float(np.quantile(d_held, quantile))
    top = float(np.quantile(np.concatenate([d_syn, d_held]), 0.995))
    top = top if top > 0 else float(max(d_syn.max(), d_held.max(), 1e-12))
    edges = np.linspace(0.0, top, HIST_BINS + 1)

    def counts(d: np.ndarray) -> list[int]:
        return np.histogram(np.clip(d, 0.0, top), edges)[0].astype(int).tolist()

    order = np.argsort(d_syn, kind="stable")[: max(0, int(n_pairs))]
    pairs = []
    if len(order):
        s_labels, t_labels = _labels(smd, order), _labels(tmd, j_syn[order])
        images = synthetic is not None and train is not None
        s_th = _thumbs(synthetic if images else None, order, s_labels, max_side)
        t_th = _thumbs(train if images else None, j_syn[order], t_labels, max_side)
        for i, a, b in zip(order, s_th, t_th):
            pairs.append(
                {
                    "synthetic_index": int(i),
                    "train_index": int(j_syn[i]),
                    "distance": float(d_syn[i]),
                    "below_threshold": bool(d_syn[i] < thr),
                    "synthetic_caption": a["caption"],
                    "train_caption": b["caption"],
                    "synthetic_png": a.get("png"),
                    "train_png": b.get("png"),
                }
            )
    return {
        "quantile": float(quantile),
        "threshold": thr,
        "n_below": int((d_syn < thr).sum()),
        "n_synthetic": int(len(d_syn)),
        "n_heldout": int(len(d_held)),
        "median_synthetic_to_train": float(np.median(d_syn)),
        "median_heldout_to_train": float(np.median(d_held)),
        "histogram": {"edges": edges.tolist(), "synthetic_to_train": counts(d_syn), "heldout_to_train": counts(d_held)},
        "images": bool(synthetic is not None and train is not None),
        "pairs": pairs,
    }


def collect_evidence(
    real: Any = None,
    synthetic: Any = None,
    train: Any = None,
    *,
    features: Sequence[Any],
    metadata: Sequence[Any] = (None, None, None),
    privacy: bool = False,
    n_samples: int = 8,
    n_pairs: int = 6,
    quantile: float = 0.01,
    seed: int = 0,
    max_side: int = REPORT_THUMB_SIDE,
) -> dict:
    """The evidence a report carries: thumbnails of each side and, for privacy, nearest-training-image pairs.

    Parameters
    ----------
    real, synthetic, train : ImageSet or None
        The image sets behind the features (None where features were given).
    features : (real, synthetic) or (real, synthetic, train) arrays
        The encoded features, row for row with the sets.
    metadata : (real, synthetic, train) DataFrames or None
        For the captions.
    privacy : bool
        Whether a privacy metric was computed (needs ``train`` features).
    n_samples : int
        Thumbnails per side (seeded-random rows; 0 stores none).
    n_pairs : int
        Closest synthetic/training pairs recorded.
    quantile : float
        The copy threshold's quantile of held-out-to-train distances (the copy rate's ``q``).
    seed : int
        Seeds the choice of sample rows.
    max_side : int
        Longest side of a stored thumbnail.

    Returns
    -------
    dict
        ``{"version", "samples": {"real", "synthetic"}, "privacy"}``, JSON-ready.
    """
    feats = list(features) + [None] * (3 - len(features))
    rf, sf, tf = feats[:3]
    mds = list(metadata) + [None] * (3 - len(metadata))
    for name, n in (("n_samples", n_samples), ("n_pairs", n_pairs)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise MetricError(f"{name} must be a non-negative integer, got {n!r}.")
    rng = np.random.default_rng([int(seed), 18])
    out: dict = {
        "version": EVIDENCE_VERSION,
        "samples": {
            "real": _side(real, mds[0], len(rf), n_samples, rng, max_side),
            "synthetic": _side(synthetic, mds[1], len(sf), n_samples, rng, max_side),
        },
        "privacy": None,
    }
    if privacy and tf is not None:
        out["privacy"] = _privacy(real, synthetic, train, rf, sf, tf, mds[1], mds[2], n_pairs, quantile, max_side)
    return out
