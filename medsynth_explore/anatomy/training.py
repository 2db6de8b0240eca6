"""Training the anatomy segmenter, and its scores on held-out PhantomCXR patients.

:func:`train_segmenter` trains the U-Net of :mod:`~medsynth_explore.anatomy.segmenter`
on PhantomCXR images and the simulator's masks through the one training loop
(:class:`~medsynth_explore.generators._training.TrainingLoop`) and writes a
checkpoint whose card holds the training record, the plausible range of every
measurement on the simulator's ground truth, and :func:`heldout_metrics`.
``medsynth train --model segmenter`` runs it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..errors import DataError
from .segmenter import Segmenter, _network
from .truth import STRUCTURES, label_map, truth_masks

if TYPE_CHECKING:
    from ..generators._training import TrainingResult

__all__ = ["train_segmenter", "heldout_metrics"]


def train_segmenter(
    data: Any,
    out: Any,
    epochs: int = 30,
    seed: int = 0,
    width: int = 16,
    batch_size: int = 32,
    lr: float = 3e-3,
    augment: bool = True,
    heldout: Any = None,
    callback: Callable[[int, int], Any] | None = None,
    *,
    max_seconds: float | None = None,
    log: Callable[[str], Any] | None = None,
) -> TrainingResult:
    """Train the anatomy segmenter on PhantomCXR images and the simulator's masks, and save it.

    Parameters
    ----------
    data : ImageSet
        PhantomCXR images (1, S, S) with their patient metadata (the
        simulator redraws each patient's masks from it). 10% of the patients
        are held back to choose nothing but to report the loss.
    out : path-like
        The ``.safetensors`` file to write.
    epochs, seed, width, batch_size, lr :
        Training settings (AdamW, one-cycle schedule); ``width`` is the first
        level's channels.
    augment : bool
        Train on randomly blurred, contrast-scaled and noisy copies (the
        reference classifier's degradations).
    heldout : ImageSet, optional
        Held-out PhantomCXR images (other patients) on which the card's
        ``metrics`` report Dice per structure and the CTR error against the
        simulator's true ``ctr``, also on blurred and noisy copies; default
        the 10% held back.
    callback, max_seconds, log :
        As for every trainer (:class:`~medsynth_explore.generators._training.TrainingLoop`).

    Returns
    -------
    TrainingResult
        ``(segmenter, card)``: the :class:`Segmenter` loaded back from
        ``out``, and its card plus ``"sha256"``.
    """
    import torch
    import torch.nn.functional as F

    from ..checkpoint import machine_description, new_card
    from ..data import ImageSet
    from ..features.reference_classifier import AUGMENT, _degrade
    from ..generators._training import (
        TrainingLoop,
        TrainingResult,
        check_epochs,
        duration,
        epoch_batches,
        out_path,
        save_and_reload,
    )
    from .measure import measure_masks, reference_ranges

    if not isinstance(data, ImageSet):
        raise DataError(f"training data must be an ImageSet of PhantomCXR images, got {type(data).__name__}.")
    epochs, batch_size = check_epochs(epochs, batch_size)
    out = out_path(out)
    size = int(data.images.shape[-1])
    if data.images.shape[1] != 1 or data.images.shape[-2] != size:
        raise DataError(f"training images must be square and grey, got shape {data.images.shape[1:]}.")
    parts = data.split({"train": 0.9, "val": 0.1}, seed=seed)
    tr, va = parts["train"], parts["val"]
    truth_tr = truth_masks(tr.metadata, size)
    xt = torch.from_numpy(tr.images)
    yt = torch.from_numpy(label_map(truth_tr))
    xv, yv = torch.from_numpy(va.images), torch.from_numpy(label_map(truth_masks(va.metadata, size)))
    torch.manual_seed(seed)
    net = _network(width)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * int(np.ceil(len(xt) / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    g = torch.Generator().manual_seed(seed)
    loop = TrainingLoop(steps, callback, max_seconds, log)
    k = 1 + len(STRUCTURES)

    def loss_of(logits, y):
        ce = F.cross_entropy(logits, y)
        p = torch.softmax(logits, 1)[:, 1:]
        onehot = F.one_hot(y, k).permute(0, 3, 1, 2)[:, 1:].float()
        inter = (p * onehot).sum((0, 2, 3))
        soft_dice = (2 * inter + 1) / (p.sum((0, 2, 3)) + onehot.sum((0, 2, 3)) + 1)
        return ce + (1 - soft_dice).mean()

    def step(idx):
        xb, yb = xt[idx], yt[idx]
        if augment:
            xb = _degrade(xb, g)
        loss = loss_of(net(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        return float(loss.detach())

    def summary(epoch, m):
        net.eval()
        with torch.no_grad():
            vl = float(loss_of(net(xv), yv)) if len(xv) else float("nan")
        net.train()
        return {"epoch": epoch, "loss": round(m["loss"], 4), "val_loss": round(vl, 4)}, f"loss {m['loss']:.4f}, val {vl:.4f}"

    net.train()
    cpu0 = time.process_time()
    loop.run_epochs(epochs, lambda epoch: epoch_batches(len(xt), batch_size, g, drop_last=False), step, summary)
    seconds = loop.elapsed()
    net.eval()
    ranges = reference_ranges(measure_masks(truth_tr))
    test = heldout if heldout is not None else va
    card = new_card(
        "phantomcxr-segmenter",
        "segmenter",
        {
            "image_size": size,
            "width": width,
            "structures": list(STRUCTURES),
            "network": "U-Net, 4 levels, softmax over 4 classes",
        },
        training_data={
            "dataset": data.provenance.get("source"),
            "version": data.provenance.get("version"),
            "seed": data.provenance.get("seed"),
            "size": len(data),
            "n_train": len(tr),
            "population": data.provenance.get("population"),
            "content_hash": data.content_hash,
            "masks": "phantom.anatomy lungs split at the patient midline (shift_x_mm), heart",
        },
        training={
            "epochs": loop.epochs,
            "epochs_planned": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "optimizer": "AdamW, one-cycle",
            "loss": "cross-entropy + (1 - soft Dice) over the three structures",
            "seed": seed,
            "seconds": duration(seconds),
            "cpu_seconds": round(time.process_time() - cpu0, 1),
            "command": _command(data, epochs, seed, width, batch_size, lr, augment, max_seconds),
            "history": loop.history,
            "augmentation": {k: list(v) if isinstance(v, tuple) else v for k, v in AUGMENT.items()} if augment else None,
            "machine": machine_description(),
            "threads": torch.get_num_threads(),
        },
        plausible_ranges=ranges,
        intended_use="Measuring lung and heart anatomy (CTR, areas, plausibility) of PhantomCXR-like generated radiographs.",
        limitations=[
            "Trained on simulated radiographs only; not a diagnostic model.",
            "Lungs are the aerated lung fields: an effusion or a pneumothorax takes its space away from the lung mask.",
        ],
    )
    _, card = save_and_reload(out, net.state_dict(), card)
    seg = Segmenter(out)
    card["metrics"] = heldout_metrics(seg, test)
    _, card = save_and_reload(out, net.state_dict(), {k: v for k, v in card.items() if k != "sha256"})
    return TrainingResult(Segmenter(out), card)


def _command(data: Any, epochs: int, seed: int, width: int, batch_size: int, lr: float, augment: bool, max_seconds) -> str | None:
    """The ``medsynth train`` command that rebuilds this run's data and settings, or None when no command can.

    Examples
    --------
    >>> from medsynth_explore.data import load_dataset
    >>> _command(load_dataset("phantomcxr", n=8), 6, 0, 16, 32, 3e-3, True, 1080.0)
    'medsynth train --model segmenter --data phantomcxr --n 8 --seed 0 --epochs 6 --minutes 18 --out FILE'
    """
    prov = data.provenance
    simulated = prov.get("source") == "phantomcxr" and prov.get("seed") == 0 and "split" not in prov
    if not simulated or prov.get("population", _default_population()) != _default_population():
        return None  # data the command line's ``--data phantomcxr --n N`` does not rebuild
    if (width, lr, augment) != (16, 3e-3, True):  # settings the command line does not set
        return None
    cmd = f"medsynth train --model segmenter --data phantomcxr --n {len(data)} --seed {seed} --epochs {epochs}"
    if batch_size != 32:
        cmd += f" --batch-size {batch_size}"
    if max_seconds is not None:
        cmd += f" --minutes {max_seconds / 60:g}"
    return cmd + " --out FILE"


def _default_population() -> dict:
    from ..phantom import Population

    return Population().to_dict()


def heldout_metrics(segmenter: Any, heldout: Any) -> dict:
    """Dice per structure and CTR error of a segmenter on held-out PhantomCXR images, clean, blurred and noisy.

    The CTR error is the mean absolute difference between the CTR measured
    on the predicted masks and the simulator's true ``ctr`` (over the images
    with a measurement; ``ctr_failed`` counts the others); the same
    measurement on the simulator's own masks (``ctr_mae_truth_masks``) is the
    floor set by the pixel grid.
    """
    import torch
    from scipy.ndimage import gaussian_filter

    from ..metrics.segmentation import ctr_error, dice
    from .measure import measure_masks

    size = heldout.images.shape[-1]
    truth = truth_masks(heldout.metadata, size)
    true_ctr = heldout.metadata["ctr"].to_numpy(float)
    floor = ctr_error(measure_masks(truth)["ctr"], true_ctr)["ctr_mae"]

    def scores(images):
        pred = segmenter.predict(images)
        ctr = measure_masks(pred)["ctr"].to_numpy()
        ok = np.isfinite(ctr).any()  # an untrained network may find no heart anywhere: no CTR to score
        return {
            **{f"dice_{k}": round(float(dice(pred[k], truth[k]).mean()), 4) for k in STRUCTURES},
            "ctr_mae": round(ctr_error(ctr, true_ctr)["ctr_mae"], 4) if ok else None,
            "ctr_failed": int((~np.isfinite(ctr)).sum()),
        }

    x = heldout.images
    noisy = np.clip(x + 0.03 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).numpy(), 0, 1)
    return {
        "heldout": {
            "n": len(heldout),
            "seed": heldout.provenance.get("seed"),
            "population": heldout.provenance.get("population"),
            "content_hash": heldout.content_hash,
        },
        **scores(x),
        "ctr_mae_truth_masks": round(floor, 4),
        "blurred_sigma_0.8px": scores(gaussian_filter(x, (0, 0, 0.8, 0.8)).astype(np.float32)),
        "noisy_std_0.03": scores(noisy.astype(np.float32)),
    }
