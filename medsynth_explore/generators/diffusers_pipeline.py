"""Any diffusers pipeline behind the :class:`Generator` protocol.

Loads a local pipeline folder (one with ``model_index.json``) or a hub id
already in the local Hugging Face cache; nothing is downloaded.

Conditions. Text pipelines (those with a ``prompt`` argument, e.g. Stable
Diffusion, RoentGen) take the model's own condition schema: ``schema=`` (a
:class:`ConditionSchema`, its dict form or ``"chexpert"`` / ``"phantomcxr"``),
else a ``conditions.json`` beside ``model_index.json`` (see
:func:`~medsynth_explore.generators.conditions.read_conditions_file`), else
the ready CheXpert schema (14 findings, sex, age, race: the vocabulary of the
real-data loaders). Each image's conditions become its prompt through
:func:`~medsynth_explore.generators.conditions.conditions_to_prompt` with the
pipeline's ``prompt_template`` (argument or ``conditions.json``); an explicit
``prompt`` replaces that text. Conditions a caller leaves out are left
unspecified (not in the prompt, NA in the metadata) rather than drawn, since
an external pipeline records no training distribution. Unconditional
pipelines (e.g. ``DDPMPipeline``) accept no conditions.

Device and precision. ``device=`` and ``dtype=`` are honoured (the pipeline is
moved with ``pipeline.to(device, dtype)``; float16 / bfloat16 on a GPU). The
noise of image *i* is drawn on the CPU from its own seed whatever the device,
so a seed makes the same starting noise on every machine.

Progress. Each denoising step is reported (``step_callback`` of
:meth:`Generator.sample`, and ``callback`` with the images done so far), so a
512 px pipeline on a CPU shows its progress and is cancelled mid-sampling:
through diffusers' ``callback_on_step_end`` where the pipeline has it (the
preview is its latent, rescaled for display), else through a forward hook on
the denoising network (the preview is the pixel-space sample).

Inpainting. Pipelines with ``image`` and ``mask_image`` arguments inpaint; a
Stable-Diffusion text-to-image pipeline also inpaints through
``AutoPipelineForInpainting.from_pipe`` (same weights, no copy). The mask
convention is the package's (1 = regenerate), which is also diffusers'
(white = repaint). Colour output is converted to one grey channel (channel mean).

Stable Diffusion pipelines need ``transformers`` (their text encoder and
tokenizer), installed by the ``models`` extra: ``pip install "medsynth-explore[models]"``.
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
from .conditions import ConditionSchema, as_schema, chexpert_schema, conditions_to_prompt, read_conditions_file
from .devices import dtype_name, quiet_loading, resolve_device, resolve_dtype

__all__ = ["DiffusersPipelineGenerator", "conditions_to_prompt"]

_WRAPPER_ARGS = ("default_steps", "default_guidance", "schema", "prompt_template", "device", "dtype")


_quiet = quiet_loading  # loading bars of diffusers and transformers, silenced


def _dir_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _needs_transformers(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return "transformers" in text and ("import" in text or "install" in text or "not found" in text)


def _latent_preview(latents: Any) -> np.ndarray:
    """A latent (B, C, h, w) shown as one grey channel: the channel mean, rescaled per image to [0, 1]."""
    x = latents.detach().float().mean(1, keepdim=True).cpu().numpy()
    lo = x.reshape(len(x), -1).min(1)[:, None, None, None]
    hi = x.reshape(len(x), -1).max(1)[:, None, None, None]
    return ((x - lo) / np.maximum(hi - lo, 1e-8)).astype(np.float32)


def _pixel_preview(sample: Any) -> np.ndarray:
    """A pixel-space sample in [-1, 1] as grey [0, 1] (channel mean)."""
    x = sample.detach().float().mean(1, keepdim=True).cpu().numpy()
    return np.clip((x + 1) / 2, 0, 1).astype(np.float32)


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
        Local folder of the weights, hashed (lazily) for :attr:`sha256`; its
        ``conditions.json`` is read when ``schema`` is not given.
    default_steps : int, default 50
    default_guidance : float, default 7.5 (text pipelines only)
    schema : ConditionSchema, dict or str, optional
        The model's conditions (text pipelines only; see the module docstring).
    prompt_template : str or callable, optional
        How conditions become a prompt (see :func:`conditions_to_prompt`).
    device, dtype : optional
        Where the pipeline runs and in which precision (see
        :mod:`medsynth_explore.generators.devices`); default CPU, float32.

    Attributes
    ----------
    device : torch.device
    dtype : torch.dtype

    Examples
    --------
    >>> from medsynth_explore.generators import load_generator
    >>> g = load_generator("/path/to/roentgen", device="cuda", dtype="float16")  # doctest: +SKIP
    >>> g.sample(2, conditions={"age": 70, "findings": ["pleural_effusion"]}, seed=0).images.shape  # doctest: +SKIP
    (2, 1, 512, 512)
    """

    default_batch_size = 8

    def __init__(
        self,
        pipeline: Any,
        name: str,
        source: str,
        folder: Any = None,
        default_steps: int = 50,
        default_guidance: float = 7.5,
        schema: Any = None,
        prompt_template: Any = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        if hasattr(pipeline, "to") and (device is not None or dtype is not None):
            if getattr(pipeline, "dtype", self.dtype) != self.dtype and _to_takes_dtype(pipeline):
                pipeline = pipeline.to(self.device, self.dtype)  # loaded in another precision (older diffusers)
            else:
                pipeline = pipeline.to(self.device)
        self.pipeline = pipeline
        self._folder = Path(folder) if folder is not None else None
        params = inspect.signature(pipeline.__call__).parameters
        self._text = "prompt" in params
        self._has_guidance = "guidance_scale" in params
        self._step_end = "callback_on_step_end" in params
        self._inpaint_pipe = pipeline if ("mask_image" in params and "image" in params) else None
        if self._inpaint_pipe is None and self._text:
            self._inpaint_pipe = _inpainting_twin(pipeline)
        unet = getattr(pipeline, "unet", None) or getattr(pipeline, "transformer", None)
        size = getattr(getattr(unet, "config", None), "sample_size", 64) or 64
        if isinstance(size, (list, tuple)):
            size = size[0]
        vae = getattr(pipeline, "vae", None)
        if vae is not None:
            size = int(size) * int(getattr(pipeline, "vae_scale_factor", 8))
        file_schema, file_template = read_conditions_file(self._folder) if self._folder is not None else (None, None)
        self.prompt_template = prompt_template if prompt_template is not None else file_template
        caps = ["steps"]
        resolved: ConditionSchema | None = None
        schema_source = None
        if self._text:
            caps += ["text", "conditions"]
            if self._has_guidance:
                caps.append("guidance")
            if self._inpaint_pipe is not None:
                caps.append("inpaint")
            resolved = as_schema(schema)
            schema_source = "argument"
            if resolved is None and file_schema is not None:
                resolved, schema_source = file_schema, "conditions.json"
            if resolved is None:
                resolved, schema_source = chexpert_schema(text=True), "default (CheXpert findings, sex, age, race)"
            if not resolved.has_text:  # the prompt itself is always accepted by a text pipeline
                from .conditions import Condition

                resolved = ConditionSchema((*resolved.conditions, Condition("prompt", "text", max_tokens=77)))
        elif schema is not None:
            raise CapabilityError(f"{type(pipeline).__name__} takes no prompt, so it takes no condition schema.")
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
                "device": str(self.device),
                "dtype": dtype_name(self.dtype),
            },
            "description": f"diffusers pipeline {type(pipeline).__name__} loaded from {source}.",
            "conditions": resolved.to_dict() if resolved is not None else None,
            "capabilities": caps,
            "training_data": {"dataset": "unknown (external pipeline)"},
            "sampler_defaults": sampler_defaults,
            "license": "see the pipeline's own model card",
            "limitations": [
                "External pipeline: training data, licence and intended use are those of its own model card.",
                "Conditions are passed as an English prompt; the pipeline may ignore them.",
                "Colour output is averaged to one grey channel.",
            ],
        }
        if schema_source is not None:
            card["limitations"].append(f"Condition schema: {schema_source}.")
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

        Keyword arguments ``default_steps``, ``default_guidance``, ``schema``,
        ``prompt_template``, ``device`` and ``dtype`` go to the wrapper; the
        rest to ``DiffusionPipeline.from_pretrained``.

        Raises
        ------
        CheckpointError
            Not a pipeline folder, a component that cannot be loaded, or a
            pipeline that needs ``transformers`` when it is not installed.
        """
        from diffusers import DiffusionPipeline

        folder = Path(folder)
        if not (folder / "model_index.json").is_file():
            raise CheckpointError(f"{str(folder)!r} has no model_index.json, so it is not a diffusers pipeline folder.")
        wrap = {k: kw.pop(k) for k in _WRAPPER_ARGS if k in kw}
        _load_dtype(wrap, kw)
        kw.setdefault("low_cpu_mem_usage", False)
        try:
            with _quiet():
                pipe = DiffusionPipeline.from_pretrained(str(folder), local_files_only=True, **kw)
        except (OSError, ValueError, TypeError, KeyError, ImportError, AttributeError, RuntimeError) as exc:
            if _needs_transformers(exc):
                raise CheckpointError(
                    f"the pipeline in {str(folder)!r} needs the transformers package (its text encoder and tokenizer); "
                    'install it with pip install "medsynth-explore[models]" (or pip install transformers).'
                ) from exc
            raise CheckpointError(
                f"cannot load the diffusers pipeline in {str(folder)!r}: {str(exc).splitlines()[0][:300]}"
            ) from exc
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, name=folder.name, source=str(folder), folder=folder, **wrap)

    @classmethod
    def from_hub(cls, repo_id: str, **kw: Any) -> "DiffusersPipelineGenerator":
        """Load a hub pipeline from the local cache only; raise :class:`OfflineError` when it is not there."""
        from diffusers import DiffusionPipeline

        wrap = {k: kw.pop(k) for k in _WRAPPER_ARGS if k in kw}
        _load_dtype(wrap, kw)
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
        built = [conditions_to_prompt(table.iloc[i].to_dict(), names, self.prompt_template) for i in range(n)]
        if prompts is not None:
            table["prompt"] = prompts
        elif "prompt" in given:
            v = given["prompt"]
            table["prompt"] = list(v) if isinstance(v, np.ndarray) else [v] * n
        else:
            table["prompt"] = built
        return table

    def _to_gray(self, images: Any) -> np.ndarray:
        if hasattr(images, "detach"):
            images = images.detach().float().cpu().numpy()
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

    def _call(self, pipe: Any, cond_table, rng_seed, steps, guidance, extra: dict) -> np.ndarray:
        import torch

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
        params = inspect.signature(pipe.__call__).parameters
        hook = None
        if "callback_on_step_end" in params:
            done = [0]

            def on_step_end(pipeline, i, t, tensors):
                done[0] = int(i) + 1
                total = int(getattr(pipeline, "num_timesteps", 0) or steps or done[0])
                latents = tensors.get("latents")
                self._report_step(done[0], total, (lambda: _latent_preview(latents)) if latents is not None else None)
                return tensors

            kw["callback_on_step_end"] = on_step_end
        else:
            net = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
            if net is not None and hasattr(net, "register_forward_pre_hook"):
                count = [0]

                def before_step(_module, args):
                    count[0] += 1
                    total = len(getattr(pipe.scheduler, "timesteps", ())) or steps or count[0]
                    sample = args[0] if args else None
                    self._report_step(count[0], total, (lambda: _pixel_preview(sample)) if sample is not None else None)

                hook = net.register_forward_pre_hook(before_step)
        try:
            with torch.inference_mode():
                out = pipe(**kw)
        finally:
            if hook is not None:
                hook.remove()
        images = out.images if hasattr(out, "images") else out[0]
        return self._to_gray(images)

    def _generate(self, cond_table, rng_seed, steps, guidance, prompts):
        return self._call(self.pipeline, cond_table, rng_seed, steps, guidance, {})

    def _inpaint(self, images, masks, cond_table, rng_seed, steps, guidance, prompts):
        import torch

        if self._inpaint_pipe is None:  # pragma: no cover - the capability check comes first
            raise CapabilityError(f"{self.name} cannot inpaint.")
        rgb = torch.from_numpy(np.repeat(images, 3, axis=1))
        extra = {"image": rgb, "mask_image": torch.from_numpy(masks)}
        if "strength" in inspect.signature(self._inpaint_pipe.__call__).parameters:
            extra["strength"] = 1.0  # regenerate the masked region from noise, every step
        return self._call(self._inpaint_pipe, cond_table, rng_seed, steps, guidance, extra)


def _load_dtype(wrap: dict, kw: dict) -> None:
    """Check device and dtype before loading, and load in the asked precision (diffusers keeps the modules a model
    marks as float32-only in float32 when the dtype is given at load time, not when the pipeline is cast afterwards)."""
    dt = resolve_dtype(wrap.get("dtype"), resolve_device(wrap.get("device")))
    if str(dt) != "torch.float32" and "torch_dtype" not in kw:
        kw.setdefault("dtype", dt)


def _to_takes_dtype(pipeline: Any) -> bool:
    try:
        params = inspect.signature(pipeline.to).parameters
    except (TypeError, ValueError):
        return False
    return "dtype" in params or any(p.kind == p.VAR_POSITIONAL for p in params.values())


def _inpainting_twin(pipeline: Any) -> Any:
    """The inpainting pipeline of the same family sharing ``pipeline``'s components, or None when there is none."""
    try:
        from diffusers import AutoPipelineForInpainting

        twin = AutoPipelineForInpainting.from_pipe(pipeline)
    except Exception:  # no inpainting counterpart (diffusers raises ValueError) or an unusual pipeline
        return None
    if hasattr(twin, "set_progress_bar_config"):
        twin.set_progress_bar_config(disable=True)
    params = inspect.signature(twin.__call__).parameters
    return twin if "mask_image" in params and "image" in params else None
