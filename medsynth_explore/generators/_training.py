"""Shared pieces of the training functions: the one training loop, data checks, provenance, saving."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np
import pandas as pd

from ..errors import DataError
from .conditions import ConditionSchema, condition_distribution

AGE_BANDS = (18, 40, 60, 90)


def condition_table(metadata: pd.DataFrame, schema: ConditionSchema) -> pd.DataFrame:
    """Read the schema's conditions from a training set's metadata.

    Findings are read from 0/1 columns named after each finding, or parsed from
    a ``findings`` column holding lists or ``;``/``,``-separated names.
    """
    out: dict[str, Any] = {}
    for c in schema.conditions:
        if c.kind in ("continuous", "categorical"):
            if c.name not in metadata:
                raise DataError(
                    f"training data lacks the metadata column {c.name!r} needed for the {c.name} condition; "
                    f"it has {list(metadata.columns)}."
                )
            out[c.name] = metadata[c.name].to_numpy()
        elif c.kind == "findings":
            parsed = None
            for name in c.names:
                if name in metadata:
                    out[name] = metadata[name].astype(float).astype(int).to_numpy()
                    continue
                if "findings" not in metadata:
                    raise DataError(
                        f"training data has neither a {name!r} column nor a 'findings' column; give one 0/1 column per finding."
                    )
                if parsed is None:
                    parsed = [
                        set(x)
                        if isinstance(x, (list, tuple, set, np.ndarray))
                        else {s.strip() for s in str(x).replace(";", ",").split(",") if s.strip()}
                        for x in metadata["findings"].fillna("")
                    ]
                out[name] = np.array([int(name in s) for s in parsed])
    df = pd.DataFrame(out, index=pd.RangeIndex(len(metadata)))
    try:
        schema.validate({k: df[k].to_numpy() for k in df.columns})
    except Exception as exc:
        raise DataError(f"training metadata does not fit the condition schema: {exc}") from exc
    return df


def training_images(data: Any, image_size: int) -> np.ndarray:
    from ..data.imageset import ImageSet

    if not isinstance(data, ImageSet):
        raise DataError(
            f"training data must be an ImageSet, got {type(data).__name__}; load it with medsynth_explore.load_dataset."
        )
    if len(data) < 2:
        raise DataError(f"training needs at least 2 images, got {len(data)}.")
    c, h, w = data.images.shape[1:]
    if c != 1 or h != image_size or w != image_size:
        raise DataError(
            f"training images have shape (C, H, W)=({c}, {h}, {w}); this model needs (1, {image_size}, {image_size}). "
            "Resize or simulate at that size."
        )
    return data.images


def data_provenance(data: Any, table: pd.DataFrame, schema: ConditionSchema) -> dict:
    """Training-data section of a model card: source, hashes, counts and condition distribution."""
    prov = dict(data.provenance)
    counts: dict[str, Any] = {"total": int(len(table))}
    if "sex" in table:
        counts["sex"] = {str(k): int(v) for k, v in table["sex"].astype(str).value_counts().sort_index().items()}
    if "age" in table:
        bands = pd.cut(table["age"].astype(float), bins=list(AGE_BANDS), include_lowest=True, right=False)
        counts["age_band"] = {str(k): int(v) for k, v in bands.value_counts().sort_index().items()}
    meta = data.metadata
    for col in ("site", "race", "ethnicity", "view"):
        if col in meta:
            counts[col] = {str(k): int(v) for k, v in meta[col].astype(str).value_counts().sort_index().items()}
    finding_counts = {n: int(table[n].sum()) for n in schema.finding_names if n in table}
    out = {
        "dataset": str(prov.get("source", prov.get("dataset", "unknown"))),
        "version": str(prov.get("version", "unknown")),
        "seed": prov.get("seed"),
        "split": prov.get("split"),
        "content_hash": data.content_hash,
        "size": int(len(data)),
        "image_shape": list(data.images.shape[1:]),
        "counts": counts,
        "finding_counts": finding_counts,
        "condition_distribution": condition_distribution(table, schema),
    }
    if prov.get("population"):  # simulated data: who was simulated, so the set can be rebuilt
        out["population"] = prov["population"]
    return {k: _plain(v) for k, v in out.items()}


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    return v


def torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def check_epochs(epochs: Any, batch_size: Any) -> tuple[int, int]:
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise DataError(f"epochs must be a positive integer, got {epochs!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}.")
    return int(epochs), int(batch_size)


def out_path(out: Any):
    from pathlib import Path

    if not isinstance(out, (str, os.PathLike)):
        raise DataError(f"out must be a file path ending in .safetensors, got {out!r}.")
    p = Path(out)
    if p.suffix != ".safetensors":
        raise DataError(f"out must end in .safetensors, got {p.name!r}.")
    return p


def _storage_dtype(tensors: dict, weights_dtype: str) -> dict:
    import torch

    if weights_dtype not in ("float16", "float32"):
        raise DataError(f"weights_dtype must be 'float16' or 'float32', got {weights_dtype!r}.")
    dt = torch.float16 if weights_dtype == "float16" else torch.float32
    return {k: (v.to(dt) if v.is_floating_point() else v) for k, v in tensors.items()}


def prepare_training(data: Any, schema: ConditionSchema | None = None):
    """Images, condition table and encoded conditions of a training set (shared by every trainer).

    Returns
    -------
    schema, images (float32 (N, 1, H, W)), table (DataFrame), cond (torch tensor (N, K))
    """
    from .conditions import encode_conditions, phantomcxr_schema

    schema = schema or phantomcxr_schema()
    images = training_images(data, int(getattr(data, "images", np.zeros((1, 1, 64, 64))).shape[-1]))
    table = condition_table(data.metadata, schema)
    return schema, images, table, encode_conditions(table, schema)


# ----------------------------------------------------------------------------------------------
# the one training loop
# ----------------------------------------------------------------------------------------------
class TrainingResult(NamedTuple):
    """What every ``train_*`` function returns: the trained model and its model card.

    It unpacks as ``model, card = train_vae(...)``.

    Attributes
    ----------
    model
        The trained model: a :class:`~medsynth_explore.generators.Generator`
        (VAE, GAN, diffusion), a :class:`~medsynth_explore.features.domain_clip.DomainCLIP`
        or a :class:`~medsynth_explore.features.reference_classifier.ReferenceClassifier`.
        When a file was written, it is the model as loaded back from that file.
    card : dict
        The model card. When a file was written: the card as stored in it, plus
        ``"sha256"``, the SHA-256 of the file.

    Examples
    --------
    >>> model, card = TrainingResult("net", {"name": "m"})
    >>> model, card["name"]
    ('net', 'm')
    """

    model: Any
    card: dict


def duration(seconds: float) -> float:
    """A duration for a model card: four significant digits, never rounded to zero.

    Examples
    --------
    >>> duration(273.98765), duration(0.000123456), duration(0)
    (274.0, 0.0001235, 0.0)
    """
    s = float(seconds)
    return float(f"{s:.4g}") if s > 0 else 0.0


def check_budget(max_seconds: Any) -> float | None:
    """Validate a wall-clock budget in seconds (``None``: no budget).

    Examples
    --------
    >>> check_budget(90), check_budget(None)
    (90.0, None)
    """
    if max_seconds is None:
        return None
    if (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, (int, float, np.number))
        or not np.isfinite(max_seconds)
        or max_seconds < 0
    ):
        raise DataError(f"max_seconds must be a number of seconds >= 0 (or None for no budget), got {max_seconds!r}.")
    return float(max_seconds)


def epoch_batches(n: int, batch_size: int, generator: Any, drop_last: bool = True) -> list:
    """Index batches of one epoch: a seeded permutation of ``range(n)`` cut into ``batch_size`` pieces.

    ``drop_last`` leaves out the last, incomplete batch (and always keeps at
    least one batch).

    Examples
    --------
    >>> import torch
    >>> [len(b) for b in epoch_batches(10, 4, torch.Generator().manual_seed(0))]
    [4, 4]
    >>> [len(b) for b in epoch_batches(10, 4, torch.Generator().manual_seed(0), drop_last=False)]
    [4, 4, 2]
    """
    import torch

    perm = torch.randperm(n, generator=generator)
    if not drop_last:
        return list(perm.split(batch_size))
    return [perm[i * batch_size : (i + 1) * batch_size] for i in range(max(1, n // batch_size))]


class ParameterEMA:
    """Exponential moving average of a network's weights (what GAN and diffusion training save).

    Update ``t`` (0, 1, ...) uses the decay ``min(decay, (1 + t) / (10 + t))``,
    so early averages are not dominated by the random initialisation.

    Parameters
    ----------
    net : torch.nn.Module
        The network being trained; the average starts as a copy of it.
    decay : float
    formula : {"lerp", "mul_add"}
        ``ema.lerp_(p, 1 - d)`` or ``ema * d + p * (1 - d)``: the same average up
        to floating-point rounding. Each trainer keeps the formula its shipped
        checkpoint was trained with, so that a retrain reproduces it bit for bit.
    buffers_each_update : bool
        Copy the buffers (e.g. batch-norm statistics) at every update, or only
        at :meth:`copy_buffers`.

    Attributes
    ----------
    model : torch.nn.Module
        The averaged network (in eval mode, no gradients).

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(2, 1)
    >>> ema = ParameterEMA(net, 0.9)
    >>> with torch.no_grad():
    ...     _ = net.weight.add_(1.0)
    >>> ema.update()  # first update: decay 0.1, the average moves 90 % of the way
    >>> bool(torch.allclose(ema.model.weight, net.weight - 0.1))
    True
    """

    def __init__(self, net: Any, decay: float, *, formula: str = "lerp", buffers_each_update: bool = True) -> None:
        import copy

        if formula not in ("lerp", "mul_add"):
            raise ValueError(f"formula must be 'lerp' or 'mul_add', got {formula!r}.")
        self.net, self.decay, self.formula, self.buffers_each_update = net, float(decay), formula, buffers_each_update
        self.model = copy.deepcopy(net).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.updates = 0

    def update(self) -> None:
        """Blend the current weights of ``net`` into the average."""
        import torch

        t = self.updates
        d = min(self.decay, (1 + t) / (10 + t))
        with torch.no_grad():
            for pe, p in zip(self.model.parameters(), self.net.parameters()):
                if self.formula == "lerp":
                    pe.lerp_(p, 1.0 - d)
                else:
                    pe.mul_(d).add_(p.detach(), alpha=1 - d)
        if self.buffers_each_update:
            self.copy_buffers()
        self.updates += 1

    def copy_buffers(self) -> None:
        """Copy ``net``'s buffers (batch-norm statistics) into the average."""
        import torch

        with torch.no_grad():
            for be, b in zip(self.model.buffers(), self.net.buffers()):
                be.copy_(b)


Summary = Callable[[int, dict], tuple]


class TrainingLoop:
    """Steps, progress, cancelling, time budget, history and log lines of one training run.

    A trainer defines its model and a ``step`` function (one optimiser step,
    returning its losses as floats); the loop runs it in epochs
    (:meth:`run_epochs`) or for a number of steps (:meth:`run_steps`).

    Parameters
    ----------
    total : int
        Planned optimiser steps: the ``total`` of ``callback(done, total)``.
    callback : callable(done, total), optional
        Called once before the first step (``done=0``) and after every step.
        Returning ``False`` cancels: :class:`~medsynth_explore.errors.CancelledError`
        is raised and the trainer saves nothing.
    max_seconds : float, optional
        Wall-clock budget. It is checked between epochs (:meth:`run_epochs`) or
        between steps (:meth:`run_steps`); the first always runs. The card
        records what ran.
    log : callable(str), optional
        Receives a line after every epoch, or every ``every`` steps, e.g.
        ``"epoch 2/9: recon RMSE 0.0421, KL 30.12 nats, 61 s"`` or
        ``"step 50, loss 0.0500, 5 s"``.
    clock : callable() -> float
        Seconds (``time.perf_counter``); tests pass a fake one.
    what : str
        Named in the cancel message.

    Attributes
    ----------
    step : int
        Optimiser steps done so far.
    epochs : int
        Epochs run so far (:meth:`run_epochs`).
    history : list
        One record per epoch (or per ``every`` steps), as made by ``summary``.

    Examples
    --------
    >>> lines = []
    >>> loop = TrainingLoop(4, log=lines.append, clock=lambda: 0.0)
    >>> history = loop.run_epochs(2, lambda epoch: [0, 1], lambda batch: {"loss": 1.0 + batch},
    ...                           lambda epoch, m: (round(m["loss"], 2), f"loss {m['loss']:.2f}"))
    >>> loop.step, history, lines
    (4, [1.5, 1.5], ['epoch 1/2: loss 1.50, 0 s', 'epoch 2/2: loss 1.50, 0 s'])
    """

    def __init__(
        self,
        total: int,
        callback: Callable[[int, int], Any] | None = None,
        max_seconds: float | None = None,
        log: Callable[[str], Any] | None = None,
        clock: Callable[[], float] | None = None,
        what: str = "training",
    ) -> None:
        import time

        self.total = int(total)
        self.callback, self.log, self.what = callback, log, what
        self.max_seconds = check_budget(max_seconds)
        self.clock = clock or time.perf_counter
        self.step = self.epochs = 0
        self.history: list = []
        self._t0: float | None = None
        self._sums: dict[str, float] = {}
        self._count = 0

    # -- time ---------------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Seconds since the first step began (0 before)."""
        return 0.0 if self._t0 is None else self.clock() - self._t0

    def out_of_time(self) -> bool:
        """Whether the budget is spent."""
        return self.max_seconds is not None and self.elapsed() > self.max_seconds

    # -- running ------------------------------------------------------------------------------
    def _start(self) -> None:
        from .base import check_callback

        self._t0 = self.clock()
        check_callback(self.callback, 0, self.total, self.what)

    def _one(self, step: Callable, *args: Any) -> None:
        from .base import check_callback

        losses = step(*args)
        for k, v in ({"loss": losses} if not isinstance(losses, Mapping) else losses).items():
            self._sums[k] = self._sums.get(k, 0.0) + float(v)
        self._count += 1
        self.step += 1
        check_callback(self.callback, self.step, self.total, self.what)

    def _record(self, at: int, summary: Summary | None, prefix: str) -> None:
        means = {k: v / max(self._count, 1) for k, v in self._sums.items()}
        self._sums, self._count = {}, 0
        if summary is None:
            return
        record, text = summary(at, means)
        self.history.append(record)
        if self.log is not None:
            self.log(f"{prefix}{text}, {self.elapsed():.0f} s")

    def run_epochs(
        self, epochs: int, batches: Callable[[int], Any], step: Callable[[Any], Any], summary: Summary | None = None
    ) -> list:
        """Run up to ``epochs`` passes (fewer when the budget runs out).

        Parameters
        ----------
        epochs : int
        batches : callable(epoch) -> iterable
            The batches of an epoch (e.g. :func:`epoch_batches`); each is passed to ``step``.
        step : callable(batch) -> float or dict of floats
            One optimiser step; returns its loss (or named losses).
        summary : callable(epoch, means) -> (record, text), optional
            ``means``: the mean of each returned loss over the epoch. ``record``
            goes to :attr:`history`, ``text`` into the log line.

        Returns
        -------
        list
            :attr:`history`.
        """
        self._start()
        for epoch in range(epochs):
            if epoch and self.out_of_time():
                break
            for batch in batches(epoch):
                self._one(step, batch)
            self.epochs += 1
            self._record(epoch + 1, summary, f"epoch {epoch + 1}/{epochs}: ")
        return self.history

    def run_steps(self, step: Callable[[], Any], every: int = 50, summary: Summary | None = None) -> list:
        """Run up to :attr:`total` steps (fewer when the budget runs out).

        ``summary(step, means)`` is called every ``every`` steps with the mean
        of each loss since the previous call; see :meth:`run_epochs`.
        """
        self._start()
        while self.step < self.total:
            if self.step and self.out_of_time():
                break
            self._one(step)
            if self.step % every == 0:
                self._record(self.step, summary, f"step {self.step}, ")
        return self.history


def save_and_reload(out: Any, tensors: Mapping[str, Any], card: Mapping[str, Any], weights_dtype: str | None = None):
    """Write a trained model's checkpoint, read it back, and return ``(checkpoint, card)``.

    Reading the file back checks that it loads; the returned card is the one
    stored in the file plus ``"sha256"``, the file's SHA-256.

    Parameters
    ----------
    out : path-like
        A ``.safetensors`` path.
    tensors : mapping of str to torch.Tensor
    card : mapping
    weights_dtype : {"float16", "float32"}, optional
        Storage type of the floating-point tensors (as given when omitted).
    """
    from ..checkpoint import load_checkpoint, save_checkpoint

    tensors = {k: v.detach().clone() for k, v in tensors.items()}
    if weights_dtype is not None:
        tensors = _storage_dtype(tensors, weights_dtype)
    sha = save_checkpoint(out_path(out), tensors, card)
    ck = load_checkpoint(out)
    return ck, {**dict(ck.card), "sha256": sha}


def run_record(loop: TrainingLoop, seed: int) -> dict:
    """The part of a card's ``training`` section every run has: seed, time, machine, threads.

    ``time_seconds`` is the loop's wall-clock time so far (see :func:`duration`).
    """
    from ..checkpoint import machine_description

    return {
        "seed": seed,
        "time_seconds": duration(loop.elapsed()),
        "machine": machine_description(),
        "torch_threads": torch_threads(),
    }


# ----------------------------------------------------------------------------------------------
# what the VAE and the GAN trainers share
# ----------------------------------------------------------------------------------------------
@dataclass
class ImageTrainingSet:
    """The checked inputs of a VAE or GAN run (made by :func:`image_training_set`)."""

    out: Any
    epochs: int
    batch_size: int
    schema: ConditionSchema
    table: pd.DataFrame
    cond: Any  #: encoded conditions, torch (N, K)
    images: Any  #: torch (N, 1, S, S)
    arch: dict  #: the network's architecture, for the card

    @property
    def total_steps(self) -> int:
        """Optimiser steps of the planned epochs (the last, incomplete batch of an epoch is left out)."""
        return self.epochs * max(1, len(self.images) // self.batch_size)


def image_training_set(
    data: Any, out: Any, epochs: Any, batch_size: Any, schema: ConditionSchema | None, seed: int, latent_dim: int, width: int
) -> ImageTrainingSet:
    """Check a VAE or GAN trainer's arguments, read the training set, and seed torch for the network's initialisation."""
    import torch

    epochs, batch_size = check_epochs(epochs, batch_size)
    out = out_path(out)
    schema, images, table, cond = prepare_training(data, schema)
    arch = {
        "image_size": int(images.shape[-1]),
        "channels": 1,
        "latent_dim": int(latent_dim),
        "width": int(width),
        "cond_dim": int(schema.width),
    }
    torch.manual_seed(seed)
    return ImageTrainingSet(out, epochs, batch_size, schema, table, cond, torch.from_numpy(images), arch)


def image_model_card(
    name: str,
    family: str,
    run: ImageTrainingSet,
    data: Any,
    loop: TrainingLoop,
    seed: int,
    *,
    training: Mapping[str, Any],
    limitations: list,
    **fields: Any,
) -> dict:
    """The model card of a VAE or GAN run: the fields both write, plus the family's own.

    ``training`` holds the family's settings; the epochs, steps, batch size,
    seed, time, machine and the last five history records are added.
    ``fields`` go to :func:`~medsynth_explore.checkpoint.new_card`.
    """
    from ..checkpoint import new_card

    return new_card(
        name,
        family,
        run.arch,
        conditions=run.schema.to_dict(),
        training_data=data_provenance(data, run.table, run.schema),
        training={
            "epochs": loop.epochs,
            "epochs_planned": run.epochs,
            "steps": loop.step,
            "batch_size": run.batch_size,
            **training,
            **run_record(loop, seed),
            "history": loop.history[-5:],
        },
        intended_use="Teaching and method development on simulated PhantomCXR radiographs; not for clinical use.",
        limitations=[
            "Trained only on simulated PhantomCXR images; it has never seen a real radiograph.",
            "Conditions the user leaves out are drawn independently per condition (findings per sex) from the training "
            "distribution.",
            *limitations,
        ],
        **fields,
    )
