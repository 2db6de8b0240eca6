"""Classification accuracy score (CAS): train on synthetic, test on real."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MetricError
from ._validate import check_features

__all__ = ["cas"]


def _labels(y: Any, n: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise MetricError(f"{name} labels must be one value per sample ({n}), got shape {y.shape}.")
    if hasattr(y, "isna") or y.dtype == object:
        if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in y):
            raise MetricError(f"{name} labels contain missing values.")
    return y


def _fit_linear(x, y, xt, seed, max_iter):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    clf.fit(x, y)
    return clf.predict(xt)


def _fit_cnn(x, y, xt, seed, epochs, batch_size=64):
    import torch
    from torch import nn

    classes, yi = np.unique(y, return_inverse=True)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        c = x.shape[1]
        net = nn.Sequential(
            nn.Conv2d(c, 16, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, 2, 1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, len(classes)),
        )
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    ys = torch.from_numpy(yi.astype(np.int64))
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for s in range(0, len(x), batch_size):
            i = perm[s : s + batch_size]
            opt.zero_grad()
            nn.functional.cross_entropy(net(torch.from_numpy(_rows(x, i.numpy()))), ys[i]).backward()
            opt.step()
    net.eval()
    preds = []
    with torch.no_grad():
        for batch in _in_batches(xt, 256):
            preds.append(net(torch.from_numpy(np.ascontiguousarray(batch, np.float32))).argmax(1).numpy())
    pred = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    return classes[pred]


def _rows(x: Any, idx: np.ndarray) -> np.ndarray:
    """Images ``idx`` of an array, or of an ImageSet (a file-backed one decodes only those)."""
    if hasattr(x, "read") and hasattr(x, "metadata"):
        return x.read(idx)
    return np.ascontiguousarray(x[idx], np.float32)


def _in_batches(x: Any, size: int):
    if hasattr(x, "batches") and hasattr(x, "metadata"):
        yield from x.batches(size)
    else:
        for s in range(0, len(x), size):
            yield x[s : s + size]


def cas(
    synthetic: Any,
    synthetic_labels: Any,
    real_train: Any,
    real_train_labels: Any,
    real_test: Any,
    real_test_labels: Any,
    mode: str = "linear",
    seed: int = 0,
    epochs: int = 10,
    max_iter: int = 1000,
) -> dict:
    """Accuracy on real test data of a classifier trained on synthetic data, and of one trained on real data.

    Parameters
    ----------
    synthetic, real_train, real_test : features (N, D) for ``mode="linear"``, images (N, C, H, W) for ``mode="cnn"``
        In ``"cnn"`` mode an :class:`~medsynth_explore.data.ImageSet` may be
        given: training reads shuffled batches of it and testing streams it,
        so a file-backed set is never loaded whole.
    *_labels : array-like (N,)
        Class labels (e.g. a finding, sex).
    mode : {"linear", "cnn"}
        ``"linear"``: standardised logistic regression on features (a linear probe).
        ``"cnn"``: a small three-layer CNN trained for ``epochs`` epochs on images.
    seed : int

    Returns
    -------
    dict
        ``cas`` (train synthetic, test real), ``trtr`` (train real, test real),
        ``ratio`` (cas / trtr), ``n_test``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(200) % 2
    >>> x = rng.normal(size=(200, 3)) + y[:, None] * 2
    >>> r = cas(x[:100], y[:100], x[100:150], y[100:150], x[150:], y[150:])
    >>> r["cas"] > 0.8 and r["trtr"] > 0.8
    True
    """
    if mode == "linear":
        xs = check_features(synthetic, "synthetic features", 2)
        xr = check_features(real_train, "real train features", 2)
        xt = check_features(real_test, "real test features", 1)
        if not (xs.shape[1] == xr.shape[1] == xt.shape[1]):
            raise MetricError("synthetic, real train and real test features must have the same dimension.")
    elif mode == "cnn":
        from ..data.imageset import as_image_array

        def images(v):  # an ImageSet stays as it is (a file-backed one is read in batches); arrays are checked
            return v if hasattr(v, "batches") and hasattr(v, "metadata") else as_image_array(v)

        try:
            xs, xr, xt = (images(v) for v in (synthetic, real_train, real_test))
        except Exception as exc:
            raise MetricError(f"CAS cnn mode needs images: {exc}") from exc
        if not (tuple(xs.shape[1:]) == tuple(xr.shape[1:]) == tuple(xt.shape[1:])):
            raise MetricError("synthetic, real train and real test images must have the same shape.")
    else:
        raise MetricError(f"mode must be 'linear' or 'cnn', got {mode!r}.")
    ys = _labels(synthetic_labels, len(xs), "synthetic")
    yr = _labels(real_train_labels, len(xr), "real train")
    yt = _labels(real_test_labels, len(xt), "real test")
    for nm, y in (("synthetic", ys), ("real train", yr)):
        if len(np.unique(y)) < 2:
            raise MetricError(f"{nm} labels hold a single class; a classifier needs at least two.")
    fit = (
        (lambda x, y, t: _fit_linear(x, y, t, seed, max_iter))
        if mode == "linear"
        else (lambda x, y, t: _fit_cnn(x, y, t, seed, epochs))
    )
    acc_s = float((fit(xs, ys, xt) == yt).mean())
    acc_r = float((fit(xr, yr, xt) == yt).mean())
    return {"cas": acc_s, "trtr": acc_r, "ratio": acc_s / acc_r if acc_r > 0 else float("nan"), "n_test": int(len(xt))}
