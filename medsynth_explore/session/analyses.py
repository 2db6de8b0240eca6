"""What the Explorer panels show, computed from a session: fairness, privacy, trilemma, inpainting, sample tables.

Each function takes the :class:`~medsynth_explore.session.Session` it reads
(its reference, stores, encoder and judges) and returns plain data; the
session's methods of the same names call these. Metric values come from the
registry (:mod:`medsynth_explore.metrics.registry`), so a metric's name,
direction and needs are stated in one place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..data import ImageSet
from ..errors import DataError, MetricError

__all__ = [
    "InpaintResult",
    "fairness",
    "privacy",
    "trilemma",
    "inpaint",
    "nearest_reference",
    "describe_samples",
    "TRILEMMA_METRICS",
]

#: Quality and diversity values the trilemma measures beside speed.
TRILEMMA_METRICS = ("fid", "precision", "recall", "coverage")


def _adaptive_k(k: int, *sizes: int) -> int:
    """``k`` for nearest-neighbour metrics, lowered for small sets (each side needs more than k rows)."""
    return int(min(k, *(n - 1 for n in sizes)))


# ------------------------------------------------------------------ fairness
def fairness(
    session: Any,
    by: Sequence[str] | str = ("sex",),
    generator: str | None = None,
    metric: str = "coverage",
    n_boot: int = 100,
    min_group: int = 8,
) -> pd.DataFrame:
    """One metric per subgroup, with bootstrap intervals, the worst group and the gap (see :meth:`Session.fairness`)."""
    from ..metrics.registry import compute_metrics, get_metric, higher_is_better
    from ..metrics.subgroups import by_group

    name = generator or session.active
    store = session.store(name)
    if len(store) == 0:
        raise DataError("no synthetic images yet; generate some first.")
    spec = get_metric(metric)
    if spec.kind != "set" or set(spec.needs) - {"real", "synthetic"}:
        raise MetricError(
            f"fairness compares real and synthetic features per subgroup; {metric} is not such a metric "
            f"(it needs {', '.join(spec.needs)}). Choose e.g. coverage, precision, recall, fid or kid."
        )
    by = [by] if isinstance(by, str) else list(by)
    if not by:
        raise DataError("give at least one metadata column to group by, e.g. by=['sex'].")
    by = ["age_group" if c == "age" else c for c in by]
    from ..data.labels import for_grouping, harmonise

    # one vocabulary on both sides (CheXpert's "Pleural Effusion", PhantomCXR's "effusion" -> pleural_effusion);
    # a missing value (an uncertain label, an unknown sex) is its own group, "unknown"
    ref_meta = for_grouping(harmonise(session.reference.metadata), by)
    syn_meta = for_grouping(harmonise(store.images.metadata), by)
    for c in by:
        col = "age" if c == "age_group" else c
        if col not in ref_meta.columns or col not in syn_meta.columns:
            raise DataError(f"cannot group by {c!r}: it must be a column of both the reference and the synthetic metadata.")

    def value(real: np.ndarray, syn: np.ndarray) -> float:
        return compute_metrics([metric], real, syn, seed=session.seed, k=_adaptive_k(5, len(syn), len(real)))[metric]

    result = by_group(
        value,
        metric,
        session.reference_features(),
        ref_meta,
        store.features,
        syn_meta,
        by,
        n_boot=n_boot,
        seed=session.seed,
        higher_is_better=higher_is_better(metric),
        min_n=min_group,
        dedupe_bootstrap=spec.neighbours,
    )
    table = result.by_group.rename(columns={"n": "n_synthetic"}).reset_index(names="group")
    table = table[np.isfinite(table["value"].astype(float))].reset_index(drop=True)
    if table.empty:
        raise DataError(f"no subgroup of {list(by)} has at least {min_group} images on both sides; generate more.")
    table.insert(1, "metric", metric)
    worst = result.worst()
    table["worst"] = table["group"] == worst
    table.attrs.update(
        difference=result.difference(), ratio=result.ratio(), worst=worst, best=result.best(), overall=float(result.overall)
    )
    return table


# ------------------------------------------------------------------ inpainting
@dataclass
class InpaintResult:
    """Before, after and what changed, for one inpainting run."""

    before: np.ndarray  # (C, H, W)
    after: np.ndarray  # (C, H, W)
    mask: np.ndarray  # (H, W) bool, True = regenerated
    psnr_outside: float
    ssim_outside: float
    probs_before: pd.Series | None = None
    probs_after: pd.Series | None = None
    result: ImageSet | None = field(default=None, repr=False)

    @property
    def difference(self) -> np.ndarray:
        """after - before, (C, H, W), in [-1, 1]."""
        return self.after - self.before

    @property
    def probability_change(self) -> pd.Series | None:
        """Reference classifier output after minus before (None without a classifier)."""
        if self.probs_before is None or self.probs_after is None:
            return None
        return self.probs_after - self.probs_before


def inpaint(session: Any, image: np.ndarray, mask: np.ndarray, generator: str | None = None, **kwargs: Any) -> InpaintResult:
    """Regenerate the region where ``mask`` is 1 and report what changed (see :meth:`Session.inpaint`)."""
    from .. import metrics as M

    image = np.asarray(image, np.float32)
    if image.ndim == 2:
        image = image[None]
    mask = np.asarray(mask)
    if mask.shape != image.shape[-2:]:
        raise DataError(f"mask has shape {mask.shape} but the image is {image.shape[-2:]}; draw the mask on this image.")
    if not mask.any():
        raise DataError("the mask is empty: paint the region to regenerate first.")
    if mask.all():
        raise DataError("the mask covers the whole image: leave some context to keep (or use Generate).")
    out = session.generator(generator).inpaint(image[None], mask.astype(np.float32)[None, None], **kwargs)
    after = out.images[0]
    psnr_out = float(M.psnr(image[0], after[0], mask=mask.astype(bool)))
    ssim_out = float(M.ssim(image[0], after[0], mask=mask.astype(bool)))
    before_p = after_p = None
    if session.classifier is not None:
        pred = session.classifier.predict(np.stack([image, after]))
        before_p, after_p = pred.iloc[0], pred.iloc[1]
    return InpaintResult(image, after, mask.astype(bool), psnr_out, ssim_out, before_p, after_p, out)


# ------------------------------------------------------------------ neighbours and privacy
def nearest_reference(session: Any, features: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Indices and Euclidean distances of the k nearest reference images."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=min(k, len(session.reference))).fit(session.reference_features())
    d, i = nn.kneighbors(np.atleast_2d(features))
    return i, d


def privacy(session: Any, generator: str | None = None, quantile: float = 0.01) -> dict[str, Any]:
    """Distances synthetic-to-train vs held-out-to-train, copy rate, closest pairs (see :meth:`Session.privacy`)."""
    from ..metrics import copy_rate
    from ..metrics.privacy import nn_distances

    syn = session.synthetic_features(generator)
    if len(syn) == 0:
        raise DataError("no synthetic images yet; generate some first.")
    train, _ = session.privacy_sets()
    tf, hf = session.privacy_features()
    res = copy_rate(tf, syn, hf, q=quantile)
    d_syn, i_syn = nn_distances(syn, tf)
    order = np.argsort(d_syn)
    return {
        "synthetic_to_train": res["synthetic_to_train"],
        "holdout_to_train": res["heldout_to_train"],
        "threshold": res["threshold"],
        "quantile": quantile,
        "copy_rate": res["copy_rate"],
        "closest": [(int(j), int(i_syn[j]), float(d_syn[j])) for j in order[:8]],
        "train": train,
    }


# ------------------------------------------------------------------ trilemma
def trilemma(session: Any, n: int = 64, seed: int = 0, names: Sequence[str] | None = None, callback=None) -> pd.DataFrame:
    """Speed, quality and coverage of every loaded generator, measured now (see :meth:`Session.trilemma`)."""
    from ..metrics.registry import compute_metrics, warnings_once

    rows = []
    real = session.reference_features()
    names = list(names or session.generators)
    with warnings_once():  # one caveat per kind (FID's rank warning), not one per generator
        for j, name in enumerate(names):
            gen = session.generators[name]
            t0 = time.perf_counter()
            out = gen.sample(n, seed=seed)
            seconds = time.perf_counter() - t0
            feats = session.encoder.encode(out.images)
            values = compute_metrics(TRILEMMA_METRICS, real, feats, seed=session.seed, k=_adaptive_k(5, n))
            rows.append({"generator": name, "family": gen.card.get("family"), "images_per_s": n / seconds, **values, "n": n})
            if callback is not None and callback(j + 1, len(names)) is False:
                break
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ per-image table
def describe_samples(session: Any, samples: ImageSet) -> pd.DataFrame:
    """Per-image view of generated images: requested conditions, what the reference classifier sees, CLIPScore.

    CLIPScore (``100 * max(cos, 0)`` with the domain CLIP) is computed against
    the prompt when one was given, else against the report text in the
    metadata; it is absent (NaN) when the domain CLIP is not installed.
    """
    meta = samples.metadata
    keep = [
        c
        for c in ("age", "sex", "cardiomegaly", "nodule", "effusion", "pneumothorax", "prompt", "report", "seed")
        if c in meta.columns
    ]
    out = meta[keep].copy()
    clf = session.classifier
    if clf is not None:
        seen = clf.predict(samples.images).rename(columns={"age": "age_seen"})
        out = pd.concat([out.reset_index(drop=True), seen.reset_index(drop=True)], axis=1)
    texts = None
    if "prompt" in meta.columns and meta["prompt"].notna().all() and (meta["prompt"].astype(str).str.len() > 0).all():
        texts = meta["prompt"].astype(str).tolist()
    elif "report" in meta.columns:
        texts = meta["report"].astype(str).tolist()
    clip = session.domain_clip
    out["clip_score"] = np.nan
    if texts is not None and clip is not None:
        from ..metrics import clip_score

        out["clip_score"] = clip_score(
            clip.encode_image(samples.images), clip.encode_text(texts, truncate=True), convention="100max"
        )
    return out
