"""The reference classifier: what a model trained on real images sees in an image.

A small CNN trained on real (simulated) PhantomCXR radiographs predicts the
probability of each finding, the probability that the patient is female, and
the age. It judges generated images: does a sample conditioned on
"effusion" show an effusion to a model that learned effusions from real data?
It is independent of the generators and of the domain CLIP.

The shipped checkpoint is ``assets/phantomcxr-classifier.safetensors``;
:func:`train_reference_classifier` reproduces it
(``medsynth train --model classifier``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from ..errors import CheckpointError, DataError
from .base import to_image_array

if TYPE_CHECKING:
    from ..generators._training import TrainingResult

__all__ = ["ReferenceClassifier", "train_reference_classifier", "CLASSIFIER_ASSET", "TARGETS"]

CLASSIFIER_ASSET = Path(__file__).resolve().parent.parent / "assets" / "phantomcxr-classifier.safetensors"
FINDINGS = ("cardiomegaly", "nodule", "effusion", "pneumothorax")
#: Output columns of :meth:`ReferenceClassifier.predict`.
TARGETS = tuple(f"p_{f}" for f in FINDINGS) + ("p_female", "age")
AGE_RANGE = (18.0, 90.0)


def _network(width: int = 16):
    import torch
    import torch.nn as nn

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2)]

    class Net(nn.Module):
        # max pooling beside average pooling: a small lesion anywhere in the image counts
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                *block(1, width),
                *block(width, 2 * width),
                *block(2 * width, 3 * width),
                nn.Conv2d(3 * width, 4 * width, 3, padding=1),
                nn.BatchNorm2d(4 * width),
                nn.ReLU(inplace=True),
            )
            self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(8 * width, len(FINDINGS) + 2))

        def forward(self, x):
            h = self.body(x)
            return self.head(torch.cat([h.amax((2, 3)), h.mean((2, 3))], 1))

    return Net()


def _prepare(images: Any, size: int):
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(to_image_array(images))
    if x.shape[1] == 3:
        x = x.mean(1, keepdim=True)
    elif x.shape[1] != 1:
        raise DataError(f"the reference classifier takes grey or RGB images, got {x.shape[1]} channels.")
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


class ReferenceClassifier:
    """Findings, sex and age as seen by a CNN trained on real images.

    Parameters
    ----------
    path : path-like, optional
        A checkpoint written by :func:`train_reference_classifier`; default the
        shipped one.

    Examples
    --------
    >>> clf = ReferenceClassifier()  # doctest: +SKIP
    >>> clf.predict(images).columns.tolist()  # doctest: +SKIP
    ['p_cardiomegaly', 'p_nodule', 'p_effusion', 'p_pneumothorax', 'p_female', 'age']
    """

    def __init__(self, path: Any = None) -> None:
        from ..checkpoint import load_checkpoint

        path = Path(path) if path is not None else CLASSIFIER_ASSET
        if not path.is_file():
            raise CheckpointError(
                f"reference classifier checkpoint {str(path)!r} is missing; train it with "
                "`medsynth train --model classifier --data phantomcxr --out FILE`."
            )
        ckpt = load_checkpoint(path)
        if ckpt.card.get("family") != "classifier":
            raise CheckpointError(f"{str(path)!r} is a {ckpt.card.get('family')!r} checkpoint, not a reference classifier.")
        arch = ckpt.card["architecture"]
        self.size = int(arch["image_size"])
        self.net = _network(int(arch["width"]))
        try:
            self.net.load_state_dict({k: v.float() for k, v in ckpt.tensors.items()})
        except RuntimeError as exc:
            raise CheckpointError(f"weights in {str(path)!r} do not fit the classifier described by its card: {exc}") from exc
        self.net.eval()
        self.card, self.sha256, self.path = ckpt.card, ckpt.sha256, str(path)

    def predict(self, images: Any, batch_size: int = 256) -> pd.DataFrame:
        """Per-image probabilities of each finding and of female sex, and the age in years."""
        import torch

        x = _prepare(images, self.size)
        outs = []
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                outs.append(self.net(x[i : i + batch_size]))
        out = torch.cat(outs) if outs else torch.zeros((0, len(FINDINGS) + 2))
        probs = torch.sigmoid(out[:, : len(FINDINGS) + 1]).numpy()
        lo, hi = AGE_RANGE
        age = (lo + (hi - lo) * out[:, -1].numpy()).clip(lo, hi)
        return pd.DataFrame(np.column_stack([probs, age]).astype(np.float64), columns=list(TARGETS))


#: Degradations drawn during training (per image, each with probability 1/2), so
#: the judge reads anatomy rather than pixel texture: generators smooth and add
#: noise, and a judge that keys on fine texture scores that as "middle-aged".
AUGMENT = {"blur_sigma_px": (0.3, 1.2), "noise_std": (0.005, 0.04), "contrast": (0.85, 1.15), "probability": 0.5}


def _degrade(x, generator):
    """Randomly blur, rescale contrast and add noise to a batch (N, 1, H, W) in [0, 1]."""
    import torch
    import torch.nn.functional as F

    n = len(x)
    p = AUGMENT["probability"]

    def draw(lo_hi):
        lo, hi = lo_hi
        on = (torch.rand(n, generator=generator) < p).float()
        return on, lo + (hi - lo) * torch.rand(n, generator=generator)

    on, sigma = draw(AUGMENT["blur_sigma_px"])
    r = 4
    d = torch.arange(-r, r + 1, dtype=x.dtype)
    k1 = torch.exp(-(d[None] ** 2) / (2 * sigma[:, None] ** 2))
    k1 = k1 / k1.sum(1, keepdim=True)
    delta = (d == 0).to(x.dtype)[None].expand(n, -1)
    k1 = on[:, None] * k1 + (1 - on[:, None]) * delta
    # separable per-image blur as a grouped convolution, reflecting at the border
    y = F.pad(x.transpose(0, 1), (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k1[:, None, None, :], groups=n)
    y = F.conv2d(y, k1[:, None, :, None], groups=n).transpose(0, 1)
    on, c = draw(AUGMENT["contrast"])
    c = (on * c + (1 - on))[:, None, None, None]
    m = y.mean((2, 3), keepdim=True)
    y = m + c * (y - m)
    on, s = draw(AUGMENT["noise_std"])
    y = y + (on * s)[:, None, None, None] * torch.randn(y.shape, generator=generator)
    return y.clamp(0, 1)


def _targets(meta: pd.DataFrame) -> np.ndarray:
    missing = [c for c in (*FINDINGS, "sex", "age") if c not in meta.columns]
    if missing:
        raise DataError(f"training the reference classifier needs metadata columns {missing}.")
    lo, hi = AGE_RANGE
    return np.column_stack(
        [
            meta[list(FINDINGS)].to_numpy(float),
            (meta["sex"] == "F").to_numpy(float),
            (meta["age"].to_numpy(float) - lo) / (hi - lo),
        ]
    ).astype(np.float32)


def _scores(net, x, y) -> dict:
    """Finding AUROC, sex accuracy and age MAE of ``net`` on images ``x`` with targets ``y``."""
    import torch
    from sklearn.metrics import roc_auc_score

    with torch.no_grad():
        o = torch.cat([net(x[i : i + 256]) for i in range(0, len(x), 256)]).numpy()
    out = {}
    for j, f in enumerate(FINDINGS):
        out[f"auroc_{f}"] = float(roc_auc_score(y[:, j], o[:, j])) if 0 < y[:, j].sum() < len(y) else None
    out["sex_accuracy"] = float(((o[:, 4] > 0) == (y[:, 4] > 0.5)).mean())
    lo, hi = AGE_RANGE
    out["age_mae_years"] = float(np.abs((o[:, 5] - y[:, 5]) * (hi - lo)).mean())
    return out


def train_reference_classifier(
    data: Any,
    out: Any,
    epochs: int = 40,
    seed: int = 0,
    width: int = 16,
    image_size: int = 64,
    batch_size: int = 64,
    lr: float = 2e-3,
    augment: bool = True,
    callback: Callable[[int, int], Any] | None = None,
    *,
    max_seconds: float | None = None,
    log: Callable[[str], Any] | None = None,
) -> TrainingResult:
    """Train the reference classifier on real images with labels and save it.

    Parameters
    ----------
    data : ImageSet
        Images with metadata columns ``cardiomegaly``, ``nodule``,
        ``effusion``, ``pneumothorax``, ``sex`` and ``age``. 15% of the
        patients are held out to measure AUROC, sex accuracy and age MAE,
        written to the card's ``metrics``.
    out : path-like
        The ``.safetensors`` file to write.
    augment : bool
        Train on randomly blurred, contrast-scaled and noisy copies
        (:data:`AUGMENT`) so that the judge is not fooled by smoothing or
        noise. The card's ``metrics`` also hold the held-out scores on
        blurred (sigma 0.8 px) and noisy (std 0.03) images.
    callback : callable(done_steps, total_steps), optional
        Called after every step; returning ``False`` cancels (raises
        :class:`~medsynth_explore.errors.CancelledError`; nothing is saved).
    max_seconds : float, optional
        Stop after the first epoch that ends past this wall-clock budget; the
        card records the epochs actually run.
    log : callable(str), optional
        Receives one line per epoch with the mean loss.

    Returns
    -------
    TrainingResult
        ``(classifier, card)``: the :class:`ReferenceClassifier` loaded back
        from ``out``, and its model card plus ``"sha256"`` of the file.
    """
    import torch
    import torch.nn.functional as F

    from ..checkpoint import machine_description, new_card
    from ..generators._training import TrainingLoop, TrainingResult, duration, epoch_batches, out_path, save_and_reload

    out = out_path(out)
    parts = data.split({"train": 0.85, "val": 0.15}, seed=seed)
    tr, va = parts["train"], parts["val"]
    xt, yt = _prepare(tr, image_size), torch.from_numpy(_targets(tr.metadata))
    xv, yv = _prepare(va, image_size), _targets(va.metadata)
    torch.manual_seed(seed)
    net = _network(width)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * int(np.ceil(len(xt) / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    # findings are rare: weight positives up to the negatives' share so each finding counts
    pos = yt[:, :5].mean(0).clamp(0.01, 0.99)
    pos_weight = (1 - pos) / pos
    loop = TrainingLoop(steps, callback, max_seconds, log)

    def step(idx):
        xb, yb = xt[idx], yt[idx]
        if augment:
            xb = _degrade(xb, g)
        o = net(xb)
        loss = F.binary_cross_entropy_with_logits(o[:, :5], yb[:, :5], pos_weight=pos_weight) + F.mse_loss(o[:, 5], yb[:, 5]) * 4
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        return float(loss.detach())

    net.train()
    loop.run_epochs(
        epochs,
        lambda epoch: epoch_batches(len(xt), batch_size, g, drop_last=False),
        step,
        lambda epoch, m: (round(m["loss"], 4), f"loss {m['loss']:.4f}"),
    )
    seconds = loop.elapsed()
    net.eval()
    card = new_card(
        "phantomcxr-classifier",
        "classifier",
        {"image_size": image_size, "width": width, "outputs": list(TARGETS)},
        training_data=_training_data_record(data, tr),
        training={
            "epochs": loop.epochs,
            "epochs_planned": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "seconds": duration(seconds),
            "loss_history": loop.history,
            "augmentation": {k: list(v) if isinstance(v, tuple) else v for k, v in AUGMENT.items()} if augment else None,
            "machine": machine_description(),
            "threads": torch.get_num_threads(),
        },
        metrics=_heldout_metrics(net, xv, yv, seed),
        intended_use="Judging whether generated PhantomCXR-like images show the findings, sex and age they were asked for.",
        limitations=["Trained on simulated radiographs only; not a diagnostic model."],
    )
    _, card = save_and_reload(out, net.state_dict(), card)
    return TrainingResult(ReferenceClassifier(out), card)


def _training_data_record(data: Any, train: Any) -> dict:
    """The training-data section of the classifier's card."""
    return {
        "dataset": data.provenance.get("source"),
        "version": data.provenance.get("version"),
        "seed": data.provenance.get("seed"),
        "content_hash": data.content_hash,
        "size": len(data),
        "n_train": len(train),
        "counts": {f: int(data.metadata[f].sum()) for f in FINDINGS} | {"female": int((data.metadata.sex == "F").sum())},
    }


def _heldout_metrics(net: Any, xv: Any, yv: np.ndarray, seed: int) -> dict:
    """Scores on the held-out images, as they are and degraded as generators degrade them."""
    import torch
    from scipy.ndimage import gaussian_filter

    metrics = _scores(net, xv, yv)
    metrics["n_validation"] = int(len(xv))
    blurred = torch.from_numpy(gaussian_filter(xv.numpy(), (0, 0, 0.8, 0.8)))
    noisy = (xv + 0.03 * torch.randn(xv.shape, generator=torch.Generator().manual_seed(seed))).clamp(0, 1)
    metrics["blurred_sigma_0.8px"] = _scores(net, blurred, yv)
    metrics["noisy_std_0.03"] = _scores(net, noisy, yv)
    return metrics
