"""Per-sample and classifier-based scores: Inception-style score and CLIPScore."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import xlogy

from ..errors import MetricError
from ._validate import check_features, check_pair

__all__ = ["inception_score", "clip_score"]


def inception_score(probs: Any, splits: int = 10) -> tuple[float, float]:
    """Inception-style score from a (domain) classifier's class probabilities.

    ``exp(E_x KL(p(y|x) || p(y)))`` computed on ``splits`` consecutive parts of
    the samples; mean and population standard deviation over parts are
    returned. With a domain classifier (e.g. PhantomCXR findings) instead of
    ImageNet Inception, it rewards confident and diverse predictions.

    Parameters
    ----------
    probs : array-like (N, K)
        Rows are probability vectors (non-negative, summing to 1).

    Examples
    --------
    >>> inception_score(np.eye(4)[np.arange(40) % 4], splits=2)
    (4.0, 0.0)
    """
    p = check_features(probs, "class probabilities", min_n=1)
    if (p < 0).any() or not np.allclose(p.sum(1), 1.0, atol=1e-4):
        raise MetricError("class probabilities must be non-negative rows that sum to 1; apply softmax to logits first.")
    if splits < 1 or splits > len(p):
        raise MetricError(f"splits must be between 1 and the number of samples ({len(p)}), got {splits}.")
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(0, keepdims=True)
        kl = (xlogy(part, part) - xlogy(part, py)).sum(1).mean()
        scores.append(np.exp(kl))
    scores = np.asarray(scores)
    return float(scores.mean()), float(scores.std())


def clip_score(image_features: Any, text_features: Any, convention: str = "100max") -> np.ndarray:
    """CLIPScore per sample between paired image and text embeddings.

    Parameters
    ----------
    image_features, text_features : array-like (N, D)
        Row i of each is one image and its caption/report (normalised here).
    convention : {"100max", "w2.5"}
        ``"100max"``: ``100 * max(cos, 0)`` (the torchmetrics convention);
        ``"w2.5"``: ``2.5 * max(cos, 0)`` (Hessel et al. 2021, w = 2.5).

    Returns
    -------
    ndarray (N,)

    Examples
    --------
    >>> clip_score([[1.0, 0.0]], [[1.0, 1.0]]).round(4).tolist()
    [70.7107]
    >>> clip_score([[1.0, 0.0]], [[1.0, 1.0]], convention="w2.5").round(4).tolist()
    [1.7678]
    """
    a, b = check_pair(image_features, text_features, names=("image", "text"))
    if len(a) != len(b):
        raise MetricError(f"clip_score needs paired rows: {len(a)} image and {len(b)} text embeddings.")
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    if (na == 0).any() or (nb == 0).any():
        raise MetricError("clip_score got an all-zero embedding; cosine similarity is undefined.")
    cos = (a * b).sum(1) / (na * nb)
    w = {"100max": 100.0, "w2.5": 2.5}.get(convention)
    if w is None:
        raise MetricError(f"unknown CLIPScore convention {convention!r}; use '100max' or 'w2.5'.")
    return w * np.maximum(cos, 0.0)
