"""Classifier stress tests with counterfactual edits: does the model look at the finding or at something else?

:func:`stress_test` takes a classifier, a generator that can inpaint, and
images, and builds counterfactual pairs: the same image with one thing
changed inside a region (a finding added or removed, a chest tube removed),
everything outside the region kept exactly. It reports how the classifier's
output moves per edit, with bootstrap intervals, in the spirit of RadEdit
(Perez-Garcia et al. 2024, "RadEdit: stress-testing biomedical vision models
via diffusion image editing").

Each edit is paired with a *null edit*: the same region regenerated under the
image's own conditions. A classifier can react to the regeneration itself
(new noise, a seam); the edit's ``effect`` is the edited score minus the
null-edited one, per image, so that only the change of content counts.

Regions come from ground truth when the images carry PhantomCXR patient
metadata (the simulator redraws each patient with and without the finding,
or with and without the tube), and otherwise from the anatomy segmenter (a
lung's lower zone for an effusion, its upper outer part for a pneumothorax,
a disc in its mid zone for a nodule, the grown heart for cardiomegaly). The
physics generator inpaints PhantomCXR images exactly (the same patient,
re-rendered); the diffusion model and the VAE inpaint by their own methods.

Examples
--------
>>> import numpy as np
>>> from medsynth_explore.phantom import Population, simulate
>>> images = simulate(24, seed=0, population=Population(prevalence={"pneumothorax": 1.0},
...                   chest_tube_given_pneumothorax=1.0))
>>> def brightness(x):  # a "classifier": mean intensity of the image
...     return x.mean(axis=(1, 2, 3))
>>> r = stress_test(brightness, "phantomcxr-physics", images, edits=["remove chest tube"], n_boot=100)
>>> r.table[["edit", "n"]].values.tolist()
[['remove chest tube', 24]]
>>> bool(r.table["effect"].iloc[0] < 0)  # the tube is bright: removing it darkens the image
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .errors import CapabilityError, CheckpointError, DataError

__all__ = [
    "Edit",
    "StressResult",
    "ShortcutDemo",
    "stress_test",
    "shortcut_demo",
    "inpainting_anatomy_check",
    "as_scorer",
    "edit_regions",
    "EDITABLE",
]

#: What an edit can add or remove.
EDITABLE = ("cardiomegaly", "nodule", "effusion", "pneumothorax", "chest_tube")
_PATIENT_COLUMNS = ("anatomy_seed", "bmi", "site")


@dataclass(frozen=True)
class Edit:
    """One counterfactual edit.

    Parameters
    ----------
    action : {"add", "remove"}
    finding : str
        One of :data:`EDITABLE`.
    side : {"left", "right"}, optional
        The patient's side, for regions drawn from the segmenter (default: the larger lung).
    dilate : int
        Pixels the region is grown by (the finding's rim belongs to it).
    mask : array (H, W) or (N, H, W), optional
        A region of your own (1 = regenerate) instead of the automatic one.
    name : str, optional
        Label in the results (default e.g. ``"remove chest tube"``).

    Examples
    --------
    >>> Edit.parse("remove chest tube"), Edit.parse("add:nodule").label
    (Edit(action='remove', finding='chest_tube', side=None, dilate=2, name=None), 'add nodule')
    """

    action: str
    finding: str
    side: str | None = None
    dilate: int = 2
    mask: Any = field(default=None, repr=False, compare=False)
    name: str | None = None

    def __post_init__(self) -> None:
        if self.action not in ("add", "remove"):
            raise DataError(f"an edit's action must be 'add' or 'remove', got {self.action!r}.")
        if self.finding not in EDITABLE:
            raise DataError(f"cannot edit {self.finding!r}; editable: {', '.join(EDITABLE)}.")
        if self.side not in (None, "left", "right"):
            raise DataError(f"side must be 'left', 'right' or None, got {self.side!r}.")
        if isinstance(self.dilate, bool) or not isinstance(self.dilate, (int, np.integer)) or self.dilate < 0:
            raise DataError(f"dilate must be a whole number of pixels >= 0, got {self.dilate!r}.")

    @property
    def label(self) -> str:
        return self.name or f"{self.action} {self.finding.replace('_', ' ')}"

    @classmethod
    def parse(cls, spec: Any) -> "Edit":
        """An Edit from itself, a string (``"remove chest tube"``, ``"add:nodule"``, ``"remove_pneumothorax"``) or a dict."""
        if isinstance(spec, Edit):
            return spec
        if isinstance(spec, dict):
            return cls(**spec)
        if not isinstance(spec, str):
            raise DataError(f"an edit is an Edit, a dict or a string such as 'remove chest tube'; got {type(spec).__name__}.")
        words = [w for w in re.split(r"[\s:_\-]+", spec.strip().lower()) if w]
        if len(words) < 2 or words[0] not in ("add", "remove"):
            raise DataError(f"cannot read the edit {spec!r}; write e.g. 'remove chest tube', 'add nodule' or 'remove effusion'.")
        finding = "_".join(words[1:])
        return cls(words[0], finding)


# ------------------------------------------------------------------------------------ classifiers
def as_scorer(classifier: Any, target: Any = None, allow_pickle: bool = False, activation: str | None = None) -> Callable:
    """A function images (N, C, H, W) -> scores (N,) from a classifier.

    Parameters
    ----------
    classifier : callable, torch module, TorchScript file, or an object with ``predict``
        * an object whose ``predict(images)`` returns a DataFrame (e.g. the
          reference classifier): ``target`` names the column;
        * a ``torch.nn.Module`` (or a TorchScript file, loaded only with
          ``allow_pickle=True``): called on a float tensor; an output
          (N, K) is reduced to column ``target`` (an index, or a name among
          the module's ``targets`` / ``pathologies``);
        * any other callable: called on the numpy images.
    target : int or str, optional
        Which output is the score (required when there are several).
    activation : {None, "sigmoid", "softmax"}
        Applied to a torch module's output before the column is taken.

    Examples
    --------
    >>> f = as_scorer(lambda x: x.mean(axis=(1, 2, 3)))
    >>> f(np.ones((2, 1, 4, 4), np.float32)).tolist()
    [1.0, 1.0]
    """
    import os

    if isinstance(classifier, (str, os.PathLike)):
        from pathlib import Path

        path = Path(classifier)
        if not path.is_file():
            raise CheckpointError(f"classifier file {str(path)!r} does not exist; check the path.")
        if not allow_pickle:
            raise CheckpointError(
                f"{str(path)!r} is a TorchScript file, whose archive holds pickled data; it is refused by default. "
                "If you trust the file, pass allow_pickle=True."
            )
        import torch

        try:
            classifier = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise CheckpointError(f"cannot load {str(path)!r} as a TorchScript module: {str(exc)[:300]}") from exc
    if activation not in (None, "sigmoid", "softmax"):
        raise DataError(f"activation must be None, 'sigmoid' or 'softmax', got {activation!r}.")
    if hasattr(classifier, "predict") and not _is_torch_module(classifier):
        return _predict_scorer(classifier, target)
    if _is_torch_module(classifier):
        return _module_scorer(classifier, target, activation)
    if callable(classifier):
        return _callable_scorer(classifier, target)
    raise DataError(f"a classifier must be callable, a torch module or have predict(); got {type(classifier).__name__}.")


def _is_torch_module(obj: Any) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(obj, (torch.nn.Module, torch.jit.ScriptModule))


def _column(out: np.ndarray, target: Any, names: Sequence[str] | None, n: int) -> np.ndarray:
    out = np.asarray(out, float)
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.ndim == 2:
        if target is None:
            raise DataError(f"the classifier gives {out.shape[1]} outputs per image; pass target= (an index or a name).")
        if isinstance(target, str):
            if not names or target not in list(names):
                raise DataError(f"target {target!r} is not among the classifier's outputs {list(names or [])}.")
            target = list(names).index(target)
        if not (isinstance(target, (int, np.integer)) and -out.shape[1] <= target < out.shape[1]):
            raise DataError(f"target {target!r} is not an output index of a classifier with {out.shape[1]} outputs.")
        out = out[:, int(target)]
    if out.shape != (n,):
        raise DataError(f"the classifier returned scores of shape {out.shape} for {n} images; expected ({n},) or ({n}, K).")
    if not np.isfinite(out).all():
        raise DataError("the classifier returned NaN or infinite scores.")
    return out


def _predict_scorer(model: Any, target: Any) -> Callable:
    def score(images: np.ndarray) -> np.ndarray:
        out = model.predict(images)
        if isinstance(out, pd.DataFrame):
            if target is None and out.shape[1] > 1:
                raise DataError(
                    f"the classifier predicts {list(out.columns)}; pass target= naming the score, e.g. {out.columns[0]!r}."
                )
            col = out.columns[0] if target is None else target
            if col not in out.columns:
                raise DataError(f"target {col!r} is not among the classifier's outputs {list(out.columns)}.")
            return _column(out[col].to_numpy(), None, None, len(images))
        return _column(out, target, None, len(images))

    return score


def _module_scorer(module: Any, target: Any, activation: str | None) -> Callable:
    import torch

    names = getattr(module, "targets", None) or getattr(module, "pathologies", None)
    module.eval()

    def score(images: np.ndarray) -> np.ndarray:
        outs = []
        with torch.no_grad():
            for i in range(0, len(images), 128):
                y = module(torch.from_numpy(np.ascontiguousarray(images[i : i + 128])))
                y = y[0] if isinstance(y, (tuple, list)) else y
                y = y.float()
                if activation == "sigmoid":
                    y = torch.sigmoid(y)
                elif activation == "softmax":
                    y = torch.softmax(y, 1)
                outs.append(y.reshape(len(y), -1).numpy())
        return _column(np.concatenate(outs), target, names, len(images))

    return score


def _callable_scorer(fn: Callable, target: Any) -> Callable:
    def score(images: np.ndarray) -> np.ndarray:
        out = fn(images)
        if hasattr(out, "detach"):
            out = out.detach().cpu().numpy()
        return _column(out, target, None, len(images))

    return score


# ------------------------------------------------------------------------------------ regions
def _has_patients(meta: pd.DataFrame | None) -> bool:
    return meta is not None and all(c in meta.columns for c in _PATIENT_COLUMNS)


def _edited_table(meta: pd.DataFrame, edit: Edit) -> pd.DataFrame:
    t = meta.copy()
    t[edit.finding] = 1 if edit.action == "add" else 0
    return t


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    from scipy.ndimage import binary_dilation

    if pixels <= 0 or not mask.any():
        return mask
    grow = np.ones((1, 2 * pixels + 1, 2 * pixels + 1), bool)
    return binary_dilation(mask, structure=grow)


def _truth_region(meta: pd.DataFrame, edit: Edit, size: int) -> np.ndarray:
    """Where the finding is, before or after the edit, as the simulator draws the same patients."""
    from .phantom import anatomy, complete_patients, render

    before = complete_patients(meta)
    after = complete_patients(_edited_table(meta, edit))
    if edit.finding == "chest_tube":
        # the tube is not one of the simulator's masks: it is where the two renderings (same noise) differ clearly
        diff = np.abs(render(before, size=size, seed=0) - render(after, size=size, seed=0))[:, 0]
        region = diff > 0.01
    else:
        key = "heart" if edit.finding == "cardiomegaly" else edit.finding
        region = anatomy(before, size=size).masks[key] | anatomy(after, size=size).masks[key]
    return _grow(region, edit.dilate)


def _segmented_region(images: np.ndarray, edit: Edit, segmenter: Any) -> np.ndarray:
    """Regions drawn from the segmenter's lungs and heart (images without ground truth)."""
    from .anatomy import load_segmenter

    if edit.finding == "chest_tube":
        raise DataError(
            "removing a chest tube needs to know where the tube is: give PhantomCXR images with their patient metadata, "
            "or an Edit with mask=... ."
        )
    masks = load_segmenter(segmenter).predict(images)
    n, _, h, w = images.shape
    out = np.zeros((n, h, w), bool)
    rows = np.arange(h)[:, None]
    cols = np.arange(w)[None, :]
    for i in range(n):
        if edit.finding == "cardiomegaly":
            heart = masks["heart"][i]
            width = int(heart.any(0).sum())
            out[i] = _grow(heart[None], max(2, int(0.15 * width)))[0]
            continue
        sides = [edit.side] if edit.side else [max(("left", "right"), key=lambda s: masks[f"{s}_lung"][i].sum())]
        for side in sides:
            lung = masks[f"{side}_lung"][i]
            if not lung.any():
                continue
            ys, xs = np.nonzero(lung)
            top, bottom = ys.min(), ys.max()
            if edit.finding == "effusion":
                out[i] |= lung & (rows >= top + 0.65 * (bottom - top))
            elif edit.finding == "pneumothorax":
                outer = xs.mean()
                lateral = (cols <= outer) if side == "right" else (cols >= outer)
                out[i] |= lung & (rows <= top + 0.6 * (bottom - top)) & lateral
            else:  # nodule: a disc in the lung's mid zone
                cy, cx = top + 0.45 * (bottom - top), xs.mean()
                r = max(2.0, 0.05 * w)
                out[i] |= (rows - cy) ** 2 + (cols - cx) ** 2 <= r * r
    return _grow(out, edit.dilate)


def edit_regions(images: Any, edit: Any, segmenter: Any = None) -> np.ndarray:
    """The region (N, H, W) bool each image is regenerated in for an edit (see the module notes).

    Examples
    --------
    >>> from medsynth_explore.phantom import simulate
    >>> ds = simulate(2, seed=0)
    >>> edit_regions(ds, "add effusion").shape
    (2, 64, 64)
    """
    edit = Edit.parse(edit)
    arr = np.asarray(getattr(images, "images", images), np.float32)
    if arr.ndim != 4:
        raise DataError(f"images must be (N, C, H, W) or an ImageSet, got shape {arr.shape}.")
    meta = getattr(images, "metadata", None)
    n, _, h, w = arr.shape
    if edit.mask is not None:
        m = np.asarray(edit.mask, float)
        m = np.broadcast_to(m, (n, h, w)) if m.ndim == 2 else m
        if m.shape != (n, h, w) or not np.isfinite(m).all():
            raise DataError(f"the edit's mask has shape {np.shape(edit.mask)}; expected ({h}, {w}) or ({n}, {h}, {w}).")
        return m > 0.5
    if _has_patients(meta) and h == w:
        return _truth_region(meta, edit, h)
    return _segmented_region(arr, edit, segmenter)


# ------------------------------------------------------------------------------------ the test
@dataclass
class StressResult:
    """What :func:`stress_test` found.

    Attributes
    ----------
    table : DataFrame
        One row per edit: ``edit``, ``n`` (pairs), ``before`` (mean score of
        the originals), ``after`` (of the edited images), ``shift`` (mean of
        after - before) with ``shift_low`` / ``shift_high``, ``null_shift``
        (mean of null-edited - before) with its interval, ``effect`` (mean of
        after - null-edited, per image) with ``effect_low`` / ``effect_high``,
        ``flipped`` (share of pairs whose score crosses ``threshold``) and
        ``skipped`` (images the edit did not apply to).
    pairs : DataFrame
        One row per pair: ``edit``, ``index`` (of the input image),
        ``before``, ``after``, ``null``, ``region_fraction``.
    examples : dict
        edit label -> dict of arrays ``before``, ``after``, ``null``
        (N, C, H, W) and ``region`` (N, H, W), for display.
    provenance : dict
        Generator, checkpoint SHA-256, seed, bootstrap settings, region source.
    """

    table: pd.DataFrame
    pairs: pd.DataFrame
    examples: dict
    provenance: dict


def _finding_present(meta: pd.DataFrame | None, finding: str, n: int) -> np.ndarray | None:
    if meta is None or finding not in meta.columns:
        return None
    v = pd.to_numeric(meta[finding], errors="coerce").fillna(0).to_numpy()
    return v.astype(int) == 1


def stress_test(
    classifier: Any,
    generator: Any,
    images: Any,
    edits: Sequence[Any] = ("remove chest tube",),
    *,
    target: Any = None,
    threshold: float = 0.5,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    segmenter: Any = None,
    allow_pickle: bool = False,
    activation: str | None = None,
    keep_examples: int = 8,
    callback: Callable[[int, int], Any] | None = None,
) -> StressResult:
    """Move a classifier's inputs by counterfactual edits and measure how its output moves.

    Parameters
    ----------
    classifier : callable, torch module, TorchScript path or object with ``predict``
        See :func:`as_scorer`; its score should be the probability (or
        logit) of the finding it detects.
    generator : Generator or str
        Must be able to inpaint (the physics simulator, the diffusion model, the VAE).
    images : ImageSet or array (N, C, H, W)
        The images to edit, at the generator's size. With PhantomCXR metadata
        an edit applies only to images it changes (a tube is removed only
        where there is one) and its region is the ground truth.
    edits : sequence
        :class:`Edit` objects or strings such as ``"remove chest tube"``,
        ``"add nodule"``, ``"remove pneumothorax"``.
    target, activation : passed to :func:`as_scorer`.
    threshold : float
        Score at which the classifier calls the finding, for ``flipped``.
    n_boot, level : bootstrap of the intervals (images resampled).
    seed : int
        Seed of the inpainting and the bootstrap.
    segmenter : optional
        Segmenter of the regions of images without ground truth.
    keep_examples : int
        Pairs kept per edit in :attr:`StressResult.examples`.
    callback : callable(done, total), optional
        Called after each edit; returning ``False`` cancels (``CancelledError``).

    Returns
    -------
    StressResult
    """
    from .data import ImageSet
    from .generators import load_generator
    from .generators.base import check_callback
    from .metrics.counterfactual import edit_effect

    gen = load_generator(generator) if isinstance(generator, str) else generator
    if "inpaint" not in getattr(gen, "capabilities", ()):
        raise CapabilityError(
            f"{getattr(gen, 'name', gen)} cannot inpaint, so it cannot make counterfactual pairs; "
            "use phantomcxr-physics, phantomcxr-diffusion or phantomcxr-vae."
        )
    score = as_scorer(classifier, target=target, allow_pickle=allow_pickle, activation=activation)
    data = images if isinstance(images, ImageSet) else ImageSet(images)
    if data.images.shape[1:] != gen.image_shape:
        raise DataError(
            f"images have shape {data.images.shape[1:]} but {gen.name} works on {gen.image_shape}; resize them first."
        )
    meta = data.metadata if len(data.metadata.columns) else None
    edits = [Edit.parse(e) for e in edits]
    if not edits:
        raise DataError("give at least one edit, e.g. edits=['remove chest tube'].")
    if len({e.label for e in edits}) != len(edits):
        raise DataError("two edits have the same label; give them different names.")
    base_scores = score(data.images)
    rows, pair_rows, examples = [], [], {}
    check_callback(callback, 0, len(edits), "stress test")
    for j, edit in enumerate(edits):
        if edit.finding == "chest_tube" and gen.family != "physics":
            raise CapabilityError(
                f"{gen.name} has no chest-tube condition, so it cannot remove a tube on request; "
                "use phantomcxr-physics for tube edits."
            )
        present = _finding_present(meta, edit.finding, len(data))
        if present is None:
            chosen = np.arange(len(data))
        else:
            chosen = np.flatnonzero(present if edit.action == "remove" else ~present)
        skipped = len(data) - len(chosen)
        if not len(chosen):
            rows.append({"edit": edit.label, "n": 0, "skipped": skipped})
            check_callback(callback, j + 1, len(edits), "stress test")
            continue
        part = data.subset(chosen)
        region = edit_regions(part, edit, segmenter=segmenter)
        empty = ~region.reshape(len(region), -1).any(1)
        if empty.any():  # a finding the simulator drew nowhere (e.g. a tiny nodule off the grid): nothing to edit
            keep = np.flatnonzero(~empty)
            skipped += int(empty.sum())
            chosen, part, region = chosen[keep], part.subset(keep), region[keep]
            if not len(chosen):
                rows.append({"edit": edit.label, "n": 0, "skipped": skipped})
                check_callback(callback, j + 1, len(edits), "stress test")
                continue
        mask = region[:, None].astype(np.float32)
        edited_input, conditions = part, None
        if edit.finding == "chest_tube":
            edited_input = ImageSet(part.images, _edited_table(part.metadata, edit), part.provenance)
        else:
            conditions = _edited_conditions(gen, part, edit)
        after = gen.inpaint(edited_input, mask, conditions=conditions, seed=seed)
        null = gen.inpaint(part, mask, seed=seed + 1)
        s0, s1, sn = base_scores[chosen], score(after.images), score(null.images)
        row = {"edit": edit.label}
        row.update(edit_effect(s0, s1, sn, threshold=threshold, n_boot=n_boot, level=level, seed=seed + j))
        row["skipped"] = skipped
        rows.append(row)
        pair_rows.append(
            pd.DataFrame(
                {
                    "edit": edit.label,
                    "index": chosen,
                    "before": s0,
                    "after": s1,
                    "null": sn,
                    "region_fraction": region.reshape(len(region), -1).mean(1),
                }
            )
        )
        k = min(keep_examples, len(chosen))
        examples[edit.label] = {
            "before": part.images[:k],
            "after": after.images[:k],
            "null": null.images[:k],
            "region": region[:k],
        }
        check_callback(callback, j + 1, len(edits), "stress test")
    columns = ["edit", "n", "before", "after", "shift", "shift_low", "shift_high", "null_shift", "null_shift_low"]
    columns += ["null_shift_high", "effect", "effect_low", "effect_high", "flipped", "skipped"]
    table = pd.DataFrame(rows).reindex(columns=columns)
    pairs = (
        pd.concat(pair_rows, ignore_index=True)
        if pair_rows
        else pd.DataFrame(columns=["edit", "index", "before", "after", "null"])
    )
    provenance = {
        "generator": gen.name,
        "family": gen.family,
        "checkpoint_sha256": gen.sha256,
        "seed": int(seed),
        "n_images": int(len(data)),
        "n_boot": int(n_boot),
        "level": float(level),
        "threshold": float(threshold),
        "regions": "PhantomCXR ground truth" if _has_patients(meta) else "anatomy segmenter",
        "edits": [e.label for e in edits],
        "images_content_hash": data.content_hash,
    }
    return StressResult(table, pairs, examples, provenance)


def _edited_conditions(gen: Any, part: Any, edit: Edit) -> dict:
    """Per-image finding flags with the edit applied (age, sex and the rest are kept from the images' metadata)."""
    names = list(gen.conditions.finding_names)
    if edit.finding not in names:
        raise CapabilityError(f"{gen.name} has no {edit.finding!r} condition; its findings are {names}.")
    meta = part.metadata
    out = {}
    for c in names:
        v = (
            pd.to_numeric(meta[c], errors="coerce").fillna(0).astype(int).to_numpy()
            if c in meta.columns
            else np.zeros(len(part), int)
        )
        out[c] = v
    out[edit.finding] = np.full(len(part), 1 if edit.action == "add" else 0)
    return out


# ------------------------------------------------------------------------------------ the embedded demonstration
@dataclass
class ShortcutDemo:
    """Two pneumothorax classifiers on the embedded default and the images to stress-test them on.

    Attributes
    ----------
    classifiers : dict
        ``"trained with the tube shortcut"`` and ``"trained without it"``:
        functions images -> P(pneumothorax).
    images : ImageSet
        Pneumothorax patients with a chest tube (PhantomCXR, with metadata),
        none of whom either classifier saw.
    settings : dict
        The cohorts' sizes, seeds and tube rates.
    """

    classifiers: dict
    images: Any
    settings: dict


def shortcut_demo(
    n_train: int = 600,
    n_test: int = 48,
    seed: int = 1,
    tube_rate: float = 0.9,
    prevalence: float = 0.3,
    pneumothorax_size: float = 0.1,
    pixels: int = 64,
) -> ShortcutDemo:
    """Train a pneumothorax classifier on a cohort where chest tubes mark pneumothorax, and one where they do not.

    Both are logistic regressions on ``pixels`` x ``pixels`` downsampled
    images (tutorial 03 uses 32 x 32). In the confounded cohort ``tube_rate`` of
    the pneumothorax patients have a tube and nobody else has one; in the
    other, tubes occur at the same overall rate in everyone, whatever the
    pneumothorax. Every pneumothorax has size ``pneumothorax_size`` (small,
    so the tube is the easier signal). The test images are new pneumothorax
    patients, all with a tube.

    Examples
    --------
    >>> demo = shortcut_demo(n_train=60, n_test=4)
    >>> sorted(demo.classifiers), len(demo.images)
    (['trained with the tube shortcut', 'trained without it'], 4)
    """
    from sklearn.linear_model import LogisticRegression

    from .data import ImageSet
    from .features import PixelEncoder
    from .phantom import Population, render, sample_patients

    if not 0 < pneumothorax_size < 1:
        raise DataError(f"pneumothorax_size is a fraction of the lung area in (0, 1), got {pneumothorax_size}.")
    enc = PixelEncoder(size=pixels)
    overall = tube_rate * prevalence

    def cohort(n, s, with_ptx, without_ptx, prev):
        pop = Population(
            prevalence={"pneumothorax": prev},
            chest_tube_given_pneumothorax=with_ptx,
            chest_tube_given_no_pneumothorax=without_ptx,
        )
        table = sample_patients(n, pop, seed=s)
        table.loc[table["pneumothorax"] == 1, "pneumothorax_size"] = pneumothorax_size
        return table, render(table, size=64, seed=s)

    classifiers = {}
    for name, (a, b) in {"trained with the tube shortcut": (tube_rate, 0.0), "trained without it": (overall, overall)}.items():
        table, x = cohort(n_train, seed, a, b, prevalence)
        model = LogisticRegression(C=1.0, max_iter=3000).fit(enc.encode(x), table["pneumothorax"].to_numpy())
        classifiers[name] = _logistic_scorer(model, enc)
    table, x = cohort(n_test, seed + 1000, 1.0, 0.0, 1.0)
    images = ImageSet(x, table, {"source": "phantomcxr", "seed": seed + 1000, "population": "pneumothorax with chest tube"})
    settings = {
        "n_train": n_train,
        "seed": seed,
        "tube_rate_confounded": [tube_rate, 0.0],
        "tube_rate_unconfounded": [overall, overall],
        "prevalence": prevalence,
        "pneumothorax_size": pneumothorax_size,
        "features": enc.id,
        "n_test": n_test,
    }
    return ShortcutDemo(classifiers, images, settings)


def _logistic_scorer(model: Any, encoder: Any) -> Callable:
    def p_pneumothorax(images: np.ndarray) -> np.ndarray:
        return model.predict_proba(encoder.encode(images))[:, 1]

    return p_pneumothorax


def inpainting_anatomy_check(
    generator: Any, images: Any, edit: Any = "add effusion", seed: int = 0, segmenter: Any = None, n_boot: int = 1000
) -> dict:
    """Does a generator's inpainting keep the anatomy outside its mask? One edit on each image, segmented before and after.

    The region of ``edit`` (:func:`edit_regions`) is regenerated with the
    edit's conditions; :func:`~medsynth_explore.anatomy.inpainting_anatomy`
    then compares the structures before and after, outside the region and
    inside it.

    Returns
    -------
    dict
        ``table`` (one row per image, from ``inpainting_anatomy``),
        ``summary`` (per structure: mean Dice outside and inside with 95%
        bootstrap intervals), ``before``, ``after`` (ImageSets), ``regions``
        and ``provenance``.

    Examples
    --------
    >>> from medsynth_explore.phantom import simulate
    >>> r = inpainting_anatomy_check("phantomcxr-physics", simulate(4, seed=0), "add effusion", n_boot=50)
    >>> sorted(r["summary"].columns)[:3]
    ['dice_inside', 'dice_inside_high', 'dice_inside_low']
    """
    from .anatomy import STRUCTURES, inpainting_anatomy
    from .anatomy.checks import mean_interval
    from .data import ImageSet
    from .generators import load_generator

    gen = load_generator(generator) if isinstance(generator, str) else generator
    if "inpaint" not in gen.capabilities:
        raise CapabilityError(f"{gen.name} cannot inpaint.")
    edit = Edit.parse(edit)
    data = images if isinstance(images, ImageSet) else ImageSet(images)
    regions = edit_regions(data, edit, segmenter=segmenter)
    keep = np.flatnonzero(regions.reshape(len(regions), -1).any(1))
    if not len(keep):
        raise DataError(f"the edit {edit.label!r} has an empty region in every image; nothing to inpaint.")
    data, regions = data.subset(keep), regions[keep]
    mask = regions[:, None].astype(np.float32)
    if edit.finding == "chest_tube":
        if gen.family != "physics":
            raise CapabilityError(f"{gen.name} has no chest-tube condition; use phantomcxr-physics for tube edits.")
        after = gen.inpaint(ImageSet(data.images, _edited_table(data.metadata, edit), data.provenance), mask, seed=seed)
    else:
        after = gen.inpaint(data, mask, conditions=_edited_conditions(gen, data, edit), seed=seed)
    table = inpainting_anatomy(data, after, regions, segmenter=segmenter)
    rows = []
    for s in STRUCTURES:
        row = {"structure": s}
        for where in ("outside", "inside"):
            m, lo, hi = mean_interval(table[f"dice_{where}_{s}"], n_boot=n_boot, seed=seed)
            row.update({f"dice_{where}": m, f"dice_{where}_low": lo, f"dice_{where}_high": hi})
        rows.append(row)
    provenance = {
        "generator": gen.name,
        "checkpoint_sha256": gen.sha256,
        "edit": edit.label,
        "seed": int(seed),
        "n": int(len(data)),
        "regions": "PhantomCXR ground truth" if _has_patients(data.metadata) else "anatomy segmenter",
    }
    return {
        "table": table,
        "summary": pd.DataFrame(rows),
        "before": data,
        "after": after,
        "regions": regions,
        "provenance": provenance,
    }
