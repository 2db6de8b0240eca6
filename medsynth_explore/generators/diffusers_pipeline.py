"""Any diffusers pipeline behind the :class:`Generator` protocol.

Loads a local pipeline folder (one with ``model_index.json``) or a hub id
already in the local Hugging Face cache; nothing is downloaded. Text
pipelines (those with a ``prompt`` argument, e.g. Stable Diffusion) get the
PhantomCXR conditions turned into an English prompt ("frontal chest
radiograph of a 70 year old woman with pleural effusion"); an explicit
``prompt`` replaces that text. Conditions a caller leaves out are left
unspecified (not mentioned in the prompt, NA in the metadata) rather than
drawn, since an external pipeline records no training distribution.
Unconditional pipelines (e.g. ``DDPMPipeline``) accept no conditions. Colour
output is converted to one grey channel (channel mean).
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import CapabilityError, CheckpointError, OfflineError
from .base import Generator, torch_generators
from .conditions import ConditionSchema, phantomcxr_schema

__all__ = ["DiffusersPipelineGenerator", "conditions_to_prompt"]

_FINDING_WORDS = {
    "cardiomegaly": "cardiomegaly",
    "nodule": "a pulmonary nodule",
    "effusion": "pleural effusion",
    "pneumothorax": "pneumothorax",
}


def conditions_to_prompt(row: Any, finding_names: Any = tuple(_FINDING_WORDS)) -> str:
    """Describe one row of conditions in words.

    Unknown (missing or NA) values are left out of the text.

    Examples
    --------
    >>> conditions_to_prompt({"age": 70, "sex": "F", "effusion": 1, "nodule": 0})
    'frontal chest radiograph of a 70 year old woman with pleural effusion'
    >>> conditions_to_prompt(dict.fromkeys(["cardiomegaly", "nodule", "effusion", "pneumothorax"], 0))
    'frontal chest radiograph, no acute findings'
    """
    get = row.get if hasattr(row, "get") else (lambda k, d=None: d)

    def known(v: Any) -> bool:
        return v is not None and not (isinstance(v, float) and np.isnan(v)) and v is not pd.NA

    age, sex = get("age"), get("sex")
    who = ""
    if known(sex):
        noun = {"F": "woman", "M": "man"}.get(str(sex), "patient")
        who = f" of a {int(round(float(age)))} year old {noun}" if known(age) else f" of a {noun}"
    elif known(age):
        who = f" of a {int(round(float(age)))} year old patient"
    text = "frontal chest radiograph" + who
    stated = {f: get(f) for f in finding_names if known(get(f))}
    positive = [_FINDING_WORDS.get(f, f) for f, v in stated.items() if int(v) == 1]
    if positive:
        text += " with " + (positive[0] if len(positive) == 1 else ", ".join(positive[:-1]) + " and " + positive[-1])
    elif stated and len(stated) == len(tuple(finding_names)):
        text += ", no acute findings"
    return text


class _quiet:
    """Silence diffusers' loading progress bar for the duration of a block."""

    def __enter__(self):
        from diffusers.utils import logging as dlog

        self._was = dlog.is_progress_bar_enabled()
        dlog.disable_progress_bar()
        return self

    def __exit__(self, *exc):
        from diffusers.utils import logging as dlog

        if self._was:
            dlog.enable_progress_bar()
        return False


def _dir_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class DiffusersPipelineGenerator(Generator):
    """Wrap a loaded ``diffusers`` pipeline.

    Build it with :meth:`from_pretrained` (a local folder) or
    :meth:`from_hub` (a cached hub id), or through
    :func:`~medsynth_explore.generators.load_generator`.

    Parameters
    ----------
    pipeline : diffusers.DiffusionPipeline
    name : str
    source : str
        Folder or hub id it came from.
    folder : path-like, optional
        Local folder of the weights, hashed (lazily) for :attr:`sha256`.
    default_steps : int, default 50
    default_guidance : float, default 7.5 (text pipelines only)

    Examples
    --------
    >>> from medsynth_explore.generators import load_generator
    >>> g = load_generator("/path/to/ddpm-pipeline")  # doctest: +SKIP
    >>> g.sample(2, seed=0, steps=10).images.shape  # doctest: +SKIP
    (2, 1, 64, 64)
    """

    default_batch_size = 8

    def __init__(
        self, pipeline: Any, name: str, source: str, folder: Any = None, default_steps: int = 50, default_guidance: float = 7.5
    ) -> None:
        self.pipeline = pipeline
        self._folder = Path(folder) if folder is not None else None
        params = inspect.signature(pipeline.__call__).parameters
        self._text = "prompt" in params
        self._can_inpaint = "mask_image" in params and "image" in params
        self._has_guidance = "guidance_scale" in params
        unet = getattr(pipeline, "unet", None) or getattr(pipeline, "transformer", None)
        size = getattr(getattr(unet, "config", None), "sample_size", 64) or 64
        if isinstance(size, (list, tuple)):
            size = size[0]
        vae = getattr(pipeline, "vae", None)
        if vae is not None:
            size = int(size) * int(getattr(pipeline, "vae_scale_factor", 8))
        caps = ["steps"]
        schema: ConditionSchema | None = None
        if self._text:
            caps += ["text", "conditions"]
            if self._has_guidance:
                caps.append("guidance")
            if self._can_inpaint:
                caps.append("inpaint")
            try:
                schema = phantomcxr_schema(text=True)
            except ImportError:  # pragma: no cover - phantom is part of the package
                schema = None
        sampler_defaults: dict[str, Any] = {
            "sampler": type(pipeline.scheduler).__name__ if hasattr(pipeline, "scheduler") else "diffusers",
            "steps": int(default_steps),
        }
        if self._has_guidance:
            sampler_defaults["guidance"] = float(default_guidance)
        card = {
            "name": name,
            "family": "diffusion",
            "architecture": {
                "pipeline_class": type(pipeline).__name__,
                "source": str(source),
                "image_size": int(size),
                "channels": 1,
            },
            "description": f"diffusers pipeline {type(pipeline).__name__} loaded from {source}.",
            "conditions": schema.to_dict() if schema is not None else None,
            "capabilities": caps,
            "training_data": {"dataset": "unknown (external pipeline)"},
            "sampler_defaults": sampler_defaults,
            "license": "see the pipeline's own model card",
            "limitations": [
                "External pipeline: training data, licence and intended use are those of its own model card.",
                "PhantomCXR conditions are passed as an English prompt; the pipeline may ignore them.",
                "Colour output is averaged to one grey channel.",
            ],
        }
        super().__init__(card, sha256="pending", path=str(source))
        self._sha_cache: str | None = None

    @property
    def sha256(self) -> str:
        """SHA-256 over the files of the pipeline folder (computed on first use)."""
        if self._sha_cache is None:
            self._sha_cache = _dir_digest(self._folder) if self._folder is not None and self._folder.is_dir() else "unknown"
        return self._sha_cache

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, folder: Any, **kw: Any) -> "DiffusersPipelineGenerator":
        """Load a local diffusers pipeline folder (with ``model_index.json``).

        Extra keyword arguments ``default_steps`` and ``default_guidance``
        go to the wrapper; the rest to ``DiffusionPipeline.from_pretrained``.
        """
        from diffusers import DiffusionPipeline

        folder = Path(folder)
        if not (folder / "model_index.json").is_file():
            raise CheckpointError(f"{str(folder)!r} has no model_index.json, so it is not a diffusers pipeline folder.")
        wrap = {k: kw.pop(k) for k in ("default_steps", "default_guidance") if k in kw}
        kw.pop("device", None)
        kw.setdefault("low_cpu_mem_usage", False)
        try:
            with _quiet():
                pipe = DiffusionPipeline.from_pretrained(str(folder), local_files_only=True, **kw)
        except (OSError, ValueError, TypeError, KeyError, ImportError, AttributeError) as exc:
            raise CheckpointError(
                f"cannot load the diffusers pipeline in {str(folder)!r}: {str(exc).splitlines()[0][:300]}"
            ) from exc
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, name=folder.name, source=str(folder), folder=folder, **wrap)

    @classmethod
    def from_hub(cls, repo_id: str, **kw: Any) -> "DiffusersPipelineGenerator":
        """Load a hub pipeline from the local cache only; raise :class:`OfflineError` when it is not there."""
        from diffusers import DiffusionPipeline

        wrap = {k: kw.pop(k) for k in ("default_steps", "default_guidance") if k in kw}
        kw.pop("device", None)
        kw.setdefault("low_cpu_mem_usage", False)
        try:
            folder = None
            try:
                from huggingface_hub import snapshot_download

                folder = snapshot_download(repo_id, local_files_only=True)
            except Exception:  # not cached; from_pretrained below gives the same answer
                folder = None
            with _quiet():
                pipe = DiffusionPipeline.from_pretrained(folder or repo_id, local_files_only=True, **kw)
        except (OSError, ValueError, EnvironmentError) as exc:
            raise OfflineError(
                f"the pipeline {repo_id!r} is not in the local Hugging Face cache and this machine cannot download it. "
                f"On a machine with internet run `huggingface-cli download {repo_id} --local-dir DIR`, copy DIR here, "
                "then call load_generator(DIR)."
            ) from exc
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, name=repo_id, source=repo_id, folder=folder, **wrap)

    # -- protocol -------------------------------------------------------------------------
    def _resolve(
        self, n: int, conditions: Any, prompts: list | None, seed: int, context: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        if not self._text:
            if conditions is not None and len(conditions):
                raise CapabilityError(f"{self.name} is an unconditional pipeline; call sample(n) without conditions.")
            return pd.DataFrame({"prompt": [""] * n})
        given = self._schema.validate(conditions)
        table = pd.DataFrame(index=pd.RangeIndex(n))
        for col in self._schema.columns:
            if col == "prompt":
                continue
            v = given.get(col, pd.NA)
            table[col] = list(v) if isinstance(v, np.ndarray) else [v] * n
        names = self._schema.finding_names
        built = [conditions_to_prompt(table.iloc[i].to_dict(), names) for i in range(n)]
        table["prompt"] = prompts if prompts is not None else built
        return table

    def _to_gray(self, images: Any) -> np.ndarray:
        arr = np.asarray(images, dtype=np.float32)
        if arr.ndim == 4 and arr.shape[-1] in (1, 3, 4):  # (B, H, W, C)
            arr = arr[..., :3].mean(-1)[:, None]
        elif arr.ndim == 3:
            arr = arr[:, None]
        size = self.image_shape[-1]
        if arr.shape[-1] != size or arr.shape[-2] != size:
            import torch

            arr = torch.nn.functional.interpolate(torch.from_numpy(arr), size=(size, size), mode="area").numpy()
        return np.clip(arr, 0.0, 1.0)

    def _call(self, cond_table, rng_seed, steps, guidance, extra: dict) -> np.ndarray:
        kw: dict[str, Any] = {"generator": torch_generators(rng_seed), "output_type": "np"}
        if steps is not None:
            kw["num_inference_steps"] = int(steps)
        if self._text:
            kw["prompt"] = list(cond_table["prompt"])
            if guidance is not None and self._has_guidance:
                kw["guidance_scale"] = float(guidance)
            kw["height"] = kw["width"] = self.image_shape[-1]
        else:
            kw["batch_size"] = len(cond_table)
        kw.update(extra)
        out = self.pipeline(**kw)
        images = out.images if hasattr(out, "images") else out[0]
        return self._to_gray(images)

    def _generate(self, cond_table, rng_seed, steps, guidance, prompts):
        return self._call(cond_table, rng_seed, steps, guidance, {})

    def _inpaint(self, images, masks, cond_table, rng_seed, steps, guidance, prompts):
        import torch

        rgb = torch.from_numpy(np.repeat(images, 3, axis=1))
        return self._call(cond_table, rng_seed, steps, guidance, {"image": rgb, "mask_image": torch.from_numpy(masks)})
