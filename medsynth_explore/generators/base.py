"""The :class:`Generator` protocol shared by every model family.

The base class does everything that is the same for all models: it checks
``n``, seeds, sampler settings and conditions; resolves a per-image condition
table (conditions the caller leaves out are drawn, seeded, from the training
distribution recorded in the model card); splits the work into batches;
reports progress through ``callback(done, total)`` (returning ``False`` cancels
with :class:`~medsynth_explore.errors.CancelledError`); and builds the output
:class:`~medsynth_explore.data.ImageSet` whose metadata holds the conditions
and per-image provenance.

Subclasses implement ``_generate`` (and optionally ``_inpaint``).

Seeding contract
----------------
Each image gets its own 63-bit seed derived from the run ``seed`` and the
image's position (:func:`image_seeds`). ``_generate`` receives these per-image
seeds and must draw all of an image's randomness from its own seed (see
:func:`randn_per_image`). The image at position ``i`` therefore does not
depend on ``batch_size`` (up to floating-point rounding of batched
convolutions), and the first ``k`` images of ``sample(n, seed=s)`` equal those
of ``sample(k, seed=s)`` when the conditions are given. (The physics simulator
keeps only the first promise: it draws the patient attributes no condition
fixes, such as BMI and positioning, for the whole cohort at once.)
``tests/test_generator_contract.py`` checks these promises for every family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..checkpoint import format_card, validate_card
from ..errors import CancelledError, CapabilityError, CheckpointError, ConditionError, DataError
from .conditions import ConditionSchema, draw_conditions

__all__ = [
    "Generator",
    "CAPABILITIES",
    "SamplingStep",
    "image_seeds",
    "randn_per_image",
    "torch_generators",
    "check_callback",
]

#: Capability names a generator may declare.
CAPABILITIES = ("conditions", "text", "inpaint", "guidance", "steps")

_MAX_N = 10_000_000


def _imageset_cls():
    from ..data.imageset import ImageSet

    return ImageSet


def image_seeds(seed: int, n: int, stream: int = 0) -> np.ndarray:
    """Per-image 63-bit seeds derived from a run seed.

    The first ``k`` seeds do not depend on ``n``.

    Examples
    --------
    >>> a, b = image_seeds(7, 5), image_seeds(7, 3)
    >>> bool((a[:3] == b).all()), a.dtype
    (True, dtype('int64'))
    """
    words = np.random.SeedSequence([int(seed), int(stream)]).generate_state(max(int(n), 1), dtype=np.uint64)[: int(n)]
    return (words >> np.uint64(1)).astype(np.int64)


def torch_generators(seeds: Sequence[int], device: Any = "cpu") -> list:
    """One seeded ``torch.Generator`` per image seed.

    Examples
    --------
    >>> g = torch_generators([1, 2])
    >>> len(g)
    2
    """
    import torch

    out = []
    for s in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(s))
        out.append(g)
    return out


def randn_per_image(seeds: Sequence[int] | list, shape: Sequence[int], device: Any = "cpu", dtype: Any = None):
    """Standard normal noise of shape ``(len(seeds), *shape)``, row ``i`` drawn from seed ``i``.

    ``seeds`` may also be a list of ``torch.Generator`` (from
    :func:`torch_generators`) to continue their streams, e.g. at each step of a
    stochastic sampler.

    Examples
    --------
    >>> x = randn_per_image([3, 4], (2, 2))
    >>> bool((x[0] == randn_per_image([3], (2, 2))[0]).all())
    True
    """
    import torch

    dtype = dtype or torch.float32
    gens = seeds if (len(seeds) and isinstance(seeds[0], torch.Generator)) else torch_generators(seeds, device)
    if not len(gens):
        return torch.zeros((0, *shape), dtype=dtype, device=device)
    return torch.stack([torch.randn(tuple(shape), generator=g, device=device, dtype=dtype) for g in gens])


def check_callback(callback: Callable | None, done: int, total: int, what: str = "sampling") -> None:
    """Call ``callback(done, total)``; raise :class:`CancelledError` if it returns ``False``.

    Examples
    --------
    >>> check_callback(lambda d, t: False, 1, 2)
    Traceback (most recent call last):
    ...
    medsynth_explore.errors.CancelledError: sampling cancelled by the progress callback after 1 of 2.
    """
    if callback is None:
        return
    if callback(int(done), int(total)) is False:
        raise CancelledError(f"{what} cancelled by the progress callback after {done} of {total}.")


@dataclass(frozen=True)
class SamplingStep:
    """One denoising step of one batch, as reported to ``step_callback`` of :meth:`Generator.sample`.

    Attributes
    ----------
    step, steps : int
        Steps done in this batch (1-based) and steps the batch takes.
    start, stop, total : int
        The batch is images ``start:stop`` of ``total``.
    preview : numpy.ndarray or None
        The batch's current state as float32 (B, 1, H, W) in [0, 1] when the
        family has it cheaply (the pixel-space sample, or a latent rescaled for
        display), else None. It is a view of work in progress, not an output.

    Examples
    --------
    >>> SamplingStep(step=5, steps=10, start=4, stop=8, total=16).fraction
    0.375
    """

    step: int
    steps: int
    start: int
    stop: int
    total: int
    preview: Any = None

    @property
    def fraction(self) -> float:
        """Share of the whole run done, counting this batch's steps: in [0, 1]."""
        done = self.start + (self.stop - self.start) * min(self.step, self.steps) / max(self.steps, 1)
        return done / max(self.total, 1)


def network_from_card(generator: "Generator", build: Callable, tensors: Mapping[str, Any], what: str, device: Any = "cpu"):
    """Build a generator's network from its card's architecture and load its weights (for the VAE and GAN classes).

    ``build`` takes ``image_size``, ``channels``, ``latent_dim``, ``width``
    and ``cond_dim``; floating-point weights are computed in float32 whatever
    their storage type. Returns the network in eval mode on ``device``.
    """
    import torch

    arch = dict(generator.card["architecture"])
    keys = {"image_size", "channels", "latent_dim", "width", "cond_dim"}
    try:
        net = build(**{k: int(v) for k, v in arch.items() if k in keys})
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"the {what} weights do not fit the architecture in the model card ({str(exc)[:300]}).") from exc
    width = generator.conditions.width
    if width != net.cond_dim:
        raise CheckpointError(f"the card's condition schema encodes {width} values but the {what} expects {net.cond_dim}.")
    return net.to(torch.device(device)).eval()


def _check_n(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise DataError(f"n must be a positive integer number of images, got {n!r}.")
    if n < 1 or n > _MAX_N:
        raise DataError(f"n must be between 1 and {_MAX_N:,}, got {n}.")
    return int(n)


def _check_seed(seed: Any) -> int:
    if seed is None:
        return int(np.random.SeedSequence().entropy % (2**63))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer (or None for a fresh random seed), got {seed!r}.")
    return int(seed)


class Generator:
    """Base class of every image generator.

    Parameters
    ----------
    card : mapping
        The model card (see :mod:`medsynth_explore.checkpoint`).
    sha256 : str, optional
        SHA-256 of the checkpoint file; for models without a file (the
        physics simulator) the weights digest of the card or ``"builtin"``.
    path : str, optional
        Where the checkpoint came from.

    Attributes
    ----------
    card : mapping (read-only)
    sha256 : str
    name : str
    conditions : ConditionSchema
    capabilities : frozenset of str
        Among ``"conditions"``, ``"text"``, ``"inpaint"``, ``"guidance"``, ``"steps"``.

    Notes
    -----
    Subclasses implement ``_generate(cond_table, rng_seed, steps, guidance,
    prompts)`` returning float32 (N, C, H, W) images in [0, 1], where
    ``rng_seed`` is an int64 array with one seed per row of ``cond_table``
    and ``prompts`` is a list of strings or ``None``. Inpainting models also
    implement ``_inpaint(images, masks, cond_table, rng_seed, steps, guidance,
    prompts)``; the base class then keeps the pixels outside the mask exactly.
    A subclass that overrides ``_resolve`` keeps its signature ``(n,
    conditions, prompts, seed, context=None)``: ``context`` is the metadata of
    the images being inpainted. :meth:`sample` and :meth:`inpaint` share one
    batch loop (``_run``).

    Examples
    --------
    >>> import numpy as np
    >>> from medsynth_explore.generators import Generator
    >>> class Flat(Generator):
    ...     def _generate(self, cond_table, rng_seed, steps, guidance, prompts):
    ...         return np.full((len(cond_table), 1, 8, 8), 0.5, np.float32)
    >>> g = Flat({"name": "flat", "family": "physics", "architecture": {"image_size": 8}})
    >>> g.sample(3, seed=0).images.shape
    (3, 1, 8, 8)
    """

    default_batch_size = 32

    def __init__(self, card: Mapping[str, Any], sha256: str | None = None, path: str | None = None) -> None:
        self._card = validate_card(card)
        self._sha256 = sha256 or self._card.get("weights_digest") or "builtin"
        self._path = path
        self._schema = ConditionSchema.from_dict(self._card.get("conditions"))
        caps = self._card.get("capabilities") or []
        unknown = sorted(set(caps) - set(CAPABILITIES))
        if unknown:
            raise CapabilityError(
                f"model card declares unknown capabilities {unknown}; known ones are {', '.join(CAPABILITIES)}."
            )
        if not caps and len(self._schema):
            caps = ["conditions"]
        self._capabilities = frozenset(caps)

    @classmethod
    def from_checkpoint(cls, checkpoint: Any, **kw: Any) -> "Generator":
        """Build the generator from a :class:`~medsynth_explore.checkpoint.Checkpoint`.

        :func:`~medsynth_explore.generators.load_generator` calls this on the
        class registered for the card's family; every weight-bearing subclass
        overrides it.
        """
        raise NotImplementedError(f"{cls.__name__} does not implement from_checkpoint(checkpoint, **kw).")

    # -- description ------------------------------------------------------------------
    @property
    def card(self) -> Mapping[str, Any]:
        """The model card (read-only view)."""
        return MappingProxyType(self._card)

    @property
    def sha256(self) -> str:
        """SHA-256 of the checkpoint file."""
        return self._sha256

    @property
    def name(self) -> str:
        return self._card["name"]

    @property
    def family(self) -> str:
        return self._card["family"]

    @property
    def path(self) -> str | None:
        return self._path

    @property
    def conditions(self) -> ConditionSchema:
        """The :class:`ConditionSchema` of the conditions this model accepts."""
        return self._schema

    @property
    def capabilities(self) -> frozenset:
        return self._capabilities

    @property
    def image_shape(self) -> tuple:
        """(C, H, W) of the images this model makes."""
        arch = self._card["architecture"]
        size = int(arch.get("image_size", 64))
        return (int(arch.get("channels", 1)), size, size)

    @property
    def sampler(self) -> str:
        """Name of the default sampler, recorded in the output metadata."""
        return str(self._card.get("sampler_defaults", {}).get("sampler", self.family))

    def describe(self) -> str:
        """The model card as Markdown (with the checkpoint SHA-256)."""
        return format_card(self._card, self._sha256)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, family={self.family!r}, "
            f"image_shape={self.image_shape}, capabilities={sorted(self.capabilities)}, sha256={self.sha256[:12]}...)"
        )

    def _repr_html_(self) -> str:
        """The notebook display: the card in brief, capabilities and condition schema (never samples)."""
        from .display import generator_html

        return generator_html(self, CAPABILITIES)

    # -- argument checks -----------------------------------------------------------------
    def _sampler_settings(self, steps: Any, guidance: Any) -> tuple:
        defaults = self._card.get("sampler_defaults") or {}
        if steps is not None:
            if "steps" not in self.capabilities:
                raise CapabilityError(
                    f"{self.name} has no sampling steps to set (capabilities: {sorted(self.capabilities)}); leave steps=None."
                )
            if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
                raise DataError(f"steps must be a positive integer, got {steps!r}.")
            steps = int(steps)
        else:
            steps = defaults.get("steps") if "steps" in self.capabilities else None
        if guidance is not None:
            if "guidance" not in self.capabilities:
                raise CapabilityError(
                    f"{self.name} does not support guidance (capabilities: {sorted(self.capabilities)}); leave guidance=None."
                )
            if (
                isinstance(guidance, bool)
                or not isinstance(guidance, (int, float, np.number))
                or not math.isfinite(guidance)
                or guidance < 0
            ):
                raise DataError(f"guidance must be a finite number >= 0, got {guidance!r}.")
            guidance = float(guidance)
        else:
            guidance = defaults.get("guidance") if "guidance" in self.capabilities else None
        return steps, guidance

    def _prompts(self, prompt: Any, n: int) -> list | None:
        if prompt is None:
            return None
        if "text" not in self.capabilities:
            raise CapabilityError(
                f"{self.name} is not text-conditioned (capabilities: {sorted(self.capabilities)}); "
                "use conditions={...} instead of prompt."
            )
        prompts = [prompt] * n if isinstance(prompt, str) else list(prompt)
        if len(prompts) != n:
            raise ConditionError(f"got {len(prompts)} prompts for {n} images; give one prompt or one per image.")
        bad = [p for p in prompts if not isinstance(p, str)]
        if bad:
            raise ConditionError(f"prompts must be strings, got {bad[0]!r}.")
        text = next((c for c in self._schema if c.kind == "text"), None)
        if text is not None:
            self._schema.validate({text.name: prompts})
        return prompts

    def _resolve(
        self, n: int, conditions: Any, prompts: list | None, seed: int, context: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """Per-image condition table: given values, the rest drawn (seeded).

        ``context`` is the metadata of the images being inpainted (None when
        sampling); subclasses may use it, e.g. to keep the same patient.
        """
        if conditions is not None and len(conditions) and "conditions" not in self.capabilities and not self._schema.has_text:
            raise CapabilityError(f"{self.name} is unconditional; call sample(n) without conditions.")
        given = self._schema.validate(conditions)
        if prompts is not None:
            given["prompt"] = np.array(prompts, dtype=object)
        rng = np.random.default_rng([seed, 1])
        dist = (self._card.get("training_data") or {}).get("condition_distribution") or {}
        table = draw_conditions(n, self._schema, dist, rng, given)
        if "prompt" not in table:
            table["prompt"] = ""
        return table

    def _provenance_columns(
        self, table: pd.DataFrame, seed: int, seeds: np.ndarray, sampler: str, steps: Any, guidance: Any
    ) -> pd.DataFrame:
        meta = table.copy()
        meta["generator"] = self.name
        meta["checkpoint_sha256"] = self.sha256
        meta["seed"] = seed
        meta["image_seed"] = seeds
        meta["sampler"] = sampler
        meta["steps"] = steps if steps is not None else pd.NA
        meta["guidance"] = guidance if guidance is not None else np.nan
        return meta

    def _check_output(self, out: Any, b: int) -> np.ndarray:
        if hasattr(out, "detach"):
            out = out.detach().cpu().numpy()
        out = np.asarray(out, dtype=np.float32)
        want = (b, *self.image_shape)
        if out.shape != want:
            raise DataError(
                f"{type(self).__name__} produced images of shape {out.shape}, expected {want}; the model is misconfigured."
            )
        if not np.isfinite(out).all():
            raise DataError(f"{self.name} produced NaN or infinite pixels; the checkpoint may be damaged.")
        return np.clip(out, 0.0, 1.0)

    def _batch_size(self, batch_size: Any) -> int:
        if batch_size is None:
            return int(self.default_batch_size)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise DataError(f"batch_size must be a positive integer, got {batch_size!r}.")
        return int(batch_size)

    # -- public sampling API -------------------------------------------------------------
    def sample(
        self,
        n: int,
        conditions: Mapping[str, Any] | pd.DataFrame | None = None,
        prompt: str | Sequence[str] | None = None,
        seed: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        batch_size: int | None = None,
        callback: Callable[[int, int], Any] | None = None,
        step_callback: Callable[[SamplingStep], Any] | None = None,
    ):
        """Generate ``n`` images.

        Parameters
        ----------
        n : int
            Number of images (>= 1).
        conditions : dict or DataFrame, optional
            Requested conditions, e.g. ``{"age": 70, "sex": "F", "findings":
            ["effusion"]}``; scalars apply to every image, sequences give one
            value per image. Conditions left out are drawn from the training
            distribution in the model card (seeded). See
            :meth:`ConditionSchema.validate` for the accepted forms.
        prompt : str or list of str, optional
            Text prompt(s), only for models with the ``"text"`` capability.
        seed : int, optional
            Same seed, same images. ``None`` draws a fresh seed, recorded in
            the output metadata so the run can be repeated.
        steps, guidance : optional
            Sampler settings for models with those capabilities (defaults from
            the model card); passing them to other models raises
            :class:`CapabilityError`.
        batch_size : int, optional
            Images per forward pass; does not change the result (beyond
            floating-point rounding).
        callback : callable(done, total), optional
            Called after each batch (and, for step-wise samplers, again with the
            same ``done`` at every denoising step, so that cancelling takes effect
            mid-batch); return ``False`` to cancel (:class:`CancelledError` is raised).
        step_callback : callable(SamplingStep), optional
            Called at every denoising step of families that sample in steps
            (diffusion, diffusers pipelines, MONAI bundles) with the step, the
            batch and a cheap preview when there is one; return ``False`` to
            cancel. Families without steps never call it.

        Returns
        -------
        ImageSet
            Metadata columns: the conditions (``age``, ``sex``, one 0/1 column
            per finding, ``prompt``) and provenance (``generator``,
            ``checkpoint_sha256``, ``seed``, ``image_seed``, ``sampler``,
            ``steps``, ``guidance``).

        Examples
        --------
        >>> from medsynth_explore.generators import load_generator
        >>> g = load_generator("phantomcxr-physics")
        >>> s = g.sample(2, conditions={"sex": "F", "findings": ["effusion"]}, seed=0)
        >>> s.metadata[["sex", "effusion"]].values.tolist()
        [['F', 1], ['F', 1]]
        """
        return self._run(
            _check_n(n), conditions, prompt, seed, steps, guidance, batch_size, callback, step_callback=step_callback
        )

    def _run(
        self,
        n: int,
        conditions: Any,
        prompt: Any,
        seed: Any,
        steps: Any,
        guidance: Any,
        batch_size: Any,
        callback: Callable | None,
        inpainting: tuple | None = None,
        step_callback: Callable | None = None,
    ):
        """The one batch loop behind :meth:`sample` and :meth:`inpaint`.

        Checks the settings, resolves the per-image condition table, runs
        ``_generate`` (or ``_inpaint`` when ``inpainting`` is ``(images,
        masks, metadata)``) batch by batch with progress and cancelling, checks
        each output, and builds the ImageSet with its provenance.
        """
        seed = _check_seed(seed)
        steps, guidance = self._sampler_settings(steps, guidance)
        bs = self._batch_size(batch_size)
        prompts = self._prompts(prompt, n)
        images, masks, context = inpainting if inpainting is not None else (None, None, None)
        requested = conditions
        if context is not None:
            conditions = self._conditions_with(context, conditions)
        table = self._resolve(n, conditions, prompts, seed, context=context)
        seeds = image_seeds(seed, n, stream=0 if inpainting is None else 2)
        what, sampler = ("sampling", self.sampler) if inpainting is None else ("inpainting", f"inpaint:{self.sampler}")
        out = np.empty((n, *self.image_shape), np.float32)
        check_callback(callback, 0, n, what)
        try:
            for a in range(0, n, bs):
                b = min(n, a + bs)
                args = (
                    table.iloc[a:b].reset_index(drop=True),
                    seeds[a:b],
                    steps,
                    guidance,
                    prompts[a:b] if prompts is not None else None,
                )
                self._step_context = (callback, step_callback, a, b, n, what)
                made = self._generate(*args) if inpainting is None else self._inpaint(images[a:b], masks[a:b], *args)
                out[a:b] = self._check_output(made, b - a)
                check_callback(callback, b, n, what)
        finally:
            self._step_context = None
        meta = self._provenance_columns(table, seed, seeds, sampler, steps, guidance)
        prov = {
            "source": f"generator:{self.name}" + ("" if inpainting is None else ":inpaint"),
            "generator": self.name,
            "family": self.family,
            "checkpoint_sha256": self.sha256,
            "seed": seed,
            "n": n,
        }
        if inpainting is None:
            prov["requested_conditions"] = sorted(self._schema.validate(requested)) if requested is not None else []
            prov["prompt"] = prompt if isinstance(prompt, str) else (None if prompt is None else "per-image")
        else:
            out = masks * out + (1.0 - masks) * images  # keep the pixels outside the mask exactly
            meta["mask_fraction"] = masks.reshape(n, -1).mean(1)
        prov.update(sampler=sampler, steps=steps, guidance=guidance)
        return _imageset_cls()(np.clip(out, 0, 1), meta, prov)

    _step_context: tuple | None = None

    def _report_step(self, step: int, steps: int, preview: Any = None) -> None:
        """Report denoising step ``step`` of ``steps`` of the current batch (families call this from ``_generate``).

        Calls the run's ``callback`` with the images done so far (so a cancel
        takes effect within a batch) and its ``step_callback`` with a
        :class:`SamplingStep`; either returning ``False`` raises
        :class:`CancelledError`. Outside a ``sample``/``inpaint`` call it does nothing.
        ``preview`` may be a callable returning the preview array, so it is only
        computed when a ``step_callback`` wants it.
        """
        ctx = self._step_context
        if ctx is None:
            return
        callback, step_callback, a, b, n, what = ctx
        check_callback(callback, a, n, what)
        if step_callback is not None:
            shown = preview() if callable(preview) else preview
            info = SamplingStep(int(step), int(steps), a, b, n, shown)
            if step_callback(info) is False:
                raise CancelledError(f"{what} cancelled at step {step} of {steps} (images {a}-{b} of {n}).")

    def _conditions_with(self, context: pd.DataFrame, conditions: Any) -> dict:
        """The conditions recorded with the images being inpainted, updated by the explicit ones."""
        cols = [c for c in context.columns if c in set(self._schema.names) | set(self._schema.finding_names)]
        cols = [c for c in cols if context[c].notna().all()]  # unknown (NA, e.g. from an external pipeline) stays unknown
        merged = self._schema.validate(context[cols]) if cols else {}
        merged.update(self._schema.validate(conditions))
        return merged

    def _generate(
        self, cond_table: pd.DataFrame, rng_seed: np.ndarray, steps: Any, guidance: Any, prompts: list | None
    ) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement _generate.")

    # -- inpainting ----------------------------------------------------------------------
    def _inpaint(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        cond_table: pd.DataFrame,
        rng_seed: np.ndarray,
        steps: Any,
        guidance: Any,
        prompts: list | None,
    ) -> np.ndarray:
        raise CapabilityError(f"{self.name} cannot inpaint.")

    def _inpaint_inputs(self, image: Any, mask: Any) -> tuple:
        from ..data.imageset import as_image_array

        ImageSet = _imageset_cls()
        meta = None
        if isinstance(image, ImageSet):
            meta = image.metadata
            imgs = image.images
        else:
            imgs = as_image_array(image, "image")
        if imgs.shape[1:] != self.image_shape:
            raise DataError(
                f"image has shape {imgs.shape[1:]} (C, H, W) but {self.name} works on {self.image_shape}; "
                "resize or convert the image first."
            )
        if hasattr(mask, "detach"):
            mask = mask.detach().cpu().numpy()
        m = np.asarray(mask)
        if m.dtype == object or not (np.issubdtype(m.dtype, np.number) or m.dtype == bool):
            raise DataError(f"mask must be a numeric or boolean array, got dtype {m.dtype}.")
        m = m.astype(np.float32)
        h, w = self.image_shape[1:]
        if m.ndim == 2:
            m = m[None, None]
        elif m.ndim == 3:
            m = m[:, None] if m.shape[0] == len(imgs) and m.shape[0] != 1 else m[None]
        if m.ndim != 4 or m.shape[1] != 1 or m.shape[2:] != (h, w) or m.shape[0] not in (1, len(imgs)):
            raise DataError(
                f"mask has shape {np.asarray(mask).shape} but must be (H, W)=({h}, {w}), (1, H, W) or (N, 1, H, W) "
                f"matching the {len(imgs)} image(s)."
            )
        if not np.isfinite(m).all() or m.min() < 0 or m.max() > 1:
            raise DataError("mask values must be 0 (keep) or 1 (regenerate).")
        m = (m > 0.5).astype(np.float32)
        m = np.broadcast_to(m, (len(imgs), 1, h, w)).copy()
        empty = np.flatnonzero(m.reshape(len(m), -1).sum(1) == 0)
        if empty.size:
            raise DataError(
                f"mask is empty (all zero) for image(s) {empty[:5].tolist()}: nothing to regenerate. "
                "Set the region to regenerate to 1."
            )
        return imgs, m, meta

    def inpaint(
        self,
        image: Any,
        mask: Any,
        conditions: Mapping[str, Any] | pd.DataFrame | None = None,
        prompt: str | Sequence[str] | None = None,
        seed: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        batch_size: int | None = None,
        callback: Callable[[int, int], Any] | None = None,
        step_callback: Callable[[SamplingStep], Any] | None = None,
    ):
        """Regenerate the masked region of images, keeping the rest exactly.

        Parameters
        ----------
        image : ImageSet or array, shape (N, C, H, W), (C, H, W) or (H, W)
            Images in [0, 1] of this model's size. For an ImageSet, condition
            columns in its metadata are used when ``conditions`` is omitted.
        mask : array, shape (H, W), (1, H, W) or (N, 1, H, W)
            1 = regenerate, 0 = keep (values are thresholded at 0.5). A mask
            that is all zero for an image raises :class:`DataError`.
        conditions, prompt, seed, steps, guidance, batch_size, callback, step_callback
            As in :meth:`sample`.

        Returns
        -------
        ImageSet
            One image per input image, with a ``mask_fraction`` column.

        Raises
        ------
        CapabilityError
            If the model cannot inpaint.

        Examples
        --------
        >>> import numpy as np
        >>> from medsynth_explore.generators import load_generator
        >>> g = load_generator("phantomcxr-physics")
        >>> img = g.sample(1, seed=0)
        >>> m = np.zeros((64, 64)); m[40:, :] = 1
        >>> out = g.inpaint(img, m, conditions={"findings": ["effusion"]}, seed=1)
        >>> bool((out.images[0, 0, :40] == img.images[0, 0, :40]).all())
        True
        """
        if "inpaint" not in self.capabilities:
            raise CapabilityError(
                f"{self.name} ({self.family}) cannot inpaint; use a model with the 'inpaint' capability "
                "(e.g. phantomcxr-diffusion or phantomcxr-physics)."
            )
        imgs, masks, meta = self._inpaint_inputs(image, mask)
        return self._run(
            len(imgs),
            conditions,
            prompt,
            seed,
            steps,
            guidance,
            batch_size,
            callback,
            inpainting=(imgs, masks, meta),
            step_callback=step_callback,
        )
