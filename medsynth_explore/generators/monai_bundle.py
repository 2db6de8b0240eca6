"""MONAI model-zoo bundles (DDPM and latent diffusion) behind the :class:`Generator` protocol.

A bundle is a folder in MONAI's published layout::

    my_bundle/
        configs/metadata.json          network_data_format: the output's spatial_shape, num_channels, value_range
        configs/inference.json|.yaml   (or infer.yaml, with common.yaml beside it, as mednist_ddpm has)
        models/model.pt                the diffusion network's state dict
        models/model_autoencoder.pt    latent bundles: the autoencoder (autoencoder.pt / .pth also found)
        models/text_encoder/, models/tokenizer/   text bundles: a transformers CLIP text model and its tokenizer
        conditions.json                optional: the model's condition schema (see conditions.read_conditions_file)

What is built, and how. The networks (``network_def`` or ``diffusion_def``,
and ``autoencoder_def``), the ``scheduler`` (or ``noise_scheduler``) and the
``inferer`` are instantiated by ``monai.bundle.ConfigParser`` from the
bundle's own definitions. A bundle config is code (``$`` expressions are
evaluated by Python), so only those definitions are parsed, and only after a
check that they, and every ``@reference`` they use, hold plain values and
``_target_`` classes of MONAI itself: no ``$`` expression, no ``%`` macro,
no ``_requires_`` (which would run the bundle's own ``torch.load``). The
bundle's ``imports`` and ``scripts/`` are never run. Targets of the retired
``generative`` package (MONAI Generative Models, before MONAI 1.4) are read
as their MONAI 1.4 names (``generative.networks.nets.X`` ->
``monai.networks.nets.X``; ``num_channels`` -> ``channels``) and their weights
with ``load_old_state_dict``. Weights are read with
``torch.load(weights_only=True)``; a path named in the config is used only if
it stays inside the bundle folder.

Sampling runs the bundle's inferer (``DiffusionInferer`` or
``LatentDiffusionInferer``; a bundle whose inferer is a script gets MONAI's
``LatentDiffusionInferer`` with the config's ``scale_factor``) with its
scheduler. Each image's noise comes from its own seed, also at every
stochastic scheduler step, so results do not depend on the batch size; each
denoising step is reported and can cancel. Text bundles (a network built
``with_conditioning``) turn the conditions into a prompt, encode it with the
bundle's CLIP text encoder and sample with classifier-free guidance against
the empty prompt, as MONAI's chest X-ray latent diffusion bundle does.

Image shape and value range come from ``metadata.json``
(``network_data_format.outputs``); outputs are mapped from ``value_range`` to
[0, 1]. Where a bundle gives no range, [0, 1] is assumed, and the card says so.
2-D bundles only: a 3-D bundle is refused with :class:`CapabilityError`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import CapabilityError, CheckpointError, OfflineError
from .base import Generator, randn_per_image, torch_generators
from .conditions import ConditionSchema, as_schema, chexpert_schema, conditions_to_prompt, read_conditions_file
from .devices import dtype_name, resolve_device, resolve_dtype

__all__ = ["MonaiBundleGenerator", "is_monai_bundle", "BUNDLE_NETWORK_IDS"]

#: Config ids searched, in order, for each part of a generative bundle.
BUNDLE_NETWORK_IDS = ("network_def", "diffusion_def", "diffusion_model_def", "unet_def")
_AUTOENCODER_IDS = ("autoencoder_def", "autoencoderkl_def", "vqvae_def")
_SCHEDULER_IDS = ("scheduler", "noise_scheduler")
_INFERER_IDS = ("inferer",)
_INFERENCE_CONFIGS = ("inference", "infer")
_CONFIG_SUFFIXES = (".json", ".yaml", ".yml")

#: Weight files looked for when the config names none (first found wins).
_NETWORK_WEIGHTS = ("models/model.pt", "models/diffusion_model.pth", "models/diffusion_model.pt", "models/model.pth")
_AUTOENCODER_WEIGHTS = ("models/model_autoencoder.pt", "models/autoencoder.pt", "models/autoencoder.pth")

#: The retired MONAI Generative Models package -> MONAI >= 1.4.
_RENAMED_PACKAGES = (
    ("generative.networks.nets.", "monai.networks.nets."),
    ("generative.networks.schedulers.", "monai.networks.schedulers."),
    ("generative.inferers.", "monai.inferers."),
)
_RENAMED_ARGS = {"num_channels": "channels"}
_MAX_CONFIG_BYTES = 4 << 20


def is_monai_bundle(folder: Any) -> bool:
    """Whether ``folder`` has a MONAI bundle's ``configs/metadata.json`` and an inference config.

    Examples
    --------
    >>> is_monai_bundle("/nonexistent")
    False
    """
    configs = Path(folder) / "configs"
    return (configs / "metadata.json").is_file() and _inference_config(configs) is not None


def _inference_config(configs: Path) -> Path | None:
    for stem in _INFERENCE_CONFIGS:
        for suffix in _CONFIG_SUFFIXES:
            if (configs / f"{stem}{suffix}").is_file():
                return configs / f"{stem}{suffix}"
    return None


def _digest(folder: Path, files: list) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(Path(f).relative_to(folder)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------ reading a bundle safely
class _SafeConfig:
    """The bundle's definitions of networks, scheduler and inferer, checked to be plain MONAI components."""

    def __init__(self, raw: dict, where: str) -> None:
        self.raw = raw
        self.where = where
        self.legacy = False

    def has(self, key: str) -> bool:
        return key in self.raw and self.raw[key] is not None

    def first(self, ids: tuple) -> str | None:
        return next((i for i in ids if self.has(i)), None)

    def _clean(self, value: Any, path: str, needed: set, seen: tuple) -> Any:
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if k == "_requires_":
                    continue  # would run the bundle's own loading code; weights are loaded here instead
                if k == "_target_":
                    out[k] = self._target(v, path)
                    continue
                out[_RENAMED_ARGS.get(k, k) if self.legacy else k] = self._clean(v, f"{path}::{k}", needed, seen)
            return out
        if isinstance(value, list):
            return [self._clean(v, f"{path}[{i}]", needed, seen) for i, v in enumerate(value)]
        if isinstance(value, str):
            if value.startswith("$"):
                raise CheckpointError(
                    f"{self.where}: {path} is a Python expression ({value[:80]!r}); bundle definitions used here must be "
                    "plain values and MONAI classes, so it is not evaluated. Replace it with its value."
                )
            if value.startswith("%"):
                raise CheckpointError(f"{self.where}: {path} is a macro ({value[:80]!r}) into another file; it is not followed.")
            if value.startswith("@"):
                ref = value[1:].split("::")[0].split("#")[0]
                if ref in seen:
                    raise CheckpointError(f"{self.where}: circular reference {' -> '.join((*seen, ref))}.")
                if ref not in self.raw:
                    raise CheckpointError(f"{self.where}: {path} refers to @{ref}, which the config does not define.")
                needed.add(ref)
                self._clean(self.raw[ref], ref, needed, (*seen, ref))
        return value

    def _target(self, target: Any, path: str) -> str:
        name = str(target)
        for old, new in _RENAMED_PACKAGES:
            if name.startswith(old):
                self.legacy = True
                name = new + name[len(old) :]
        if not name.startswith("monai."):
            raise CheckpointError(
                f"{self.where}: {path} builds {target!r}, which is not a MONAI class; only monai.* components are built "
                "from a bundle (its scripts/ are never imported)."
            )
        return name

    def build(self, key: str, extra: dict | None = None) -> Any:
        """Instantiate ``key`` with ``monai.bundle.ConfigParser`` after the checks (``extra``: already built objects)."""
        from monai.bundle import ConfigParser

        needed: set = set()
        cleaned = self._clean(copy.deepcopy(self.raw[key]), key, needed, (key,))
        safe: dict = {key: cleaned}
        for ref in needed:
            safe[ref] = self._clean(copy.deepcopy(self.raw[ref]), ref, set(), (ref,))
        parser = ConfigParser(safe)
        for name, obj in (extra or {}).items():
            if name in needed:
                parser[name] = obj  # share the instance (e.g. the inferer's scheduler) instead of building a twin
        try:
            return parser.get_parsed_content(key, instantiate=True)
        except Exception as exc:  # MONAI raises many types for a bad definition
            raise CheckpointError(f"{self.where}: cannot build {key} ({type(exc).__name__}: {str(exc)[:300]}).") from exc

    def literal(self, key: str, default: Any = None) -> Any:
        v = self.raw.get(key, default)
        return default if isinstance(v, str) and v[:1] in "$@%" else v


def _read_configs(folder: Path) -> _SafeConfig:
    from monai.bundle import ConfigParser

    configs = folder / "configs"
    main = _inference_config(configs)
    if main is None:
        raise CheckpointError(
            f"{folder} has no configs/inference.json (or .yaml, or infer.yaml), so it is not a MONAI bundle with an "
            "inference config."
        )
    files = [p for p in (configs / f"common{s}" for s in _CONFIG_SUFFIXES) if p.is_file()] + [main]
    for f in files:
        if f.stat().st_size > _MAX_CONFIG_BYTES:
            raise CheckpointError(f"{f} is larger than 4 MB; a bundle config is a short JSON or YAML file.")
    try:
        raw = ConfigParser.load_config_files([str(f) for f in files])
    except Exception as exc:  # JSON / YAML errors
        raise CheckpointError(f"cannot read the bundle config {', '.join(f.name for f in files)}: {str(exc)[:300]}") from exc
    if not isinstance(raw, dict):
        raise CheckpointError(f"{main} must hold a mapping of config ids.")
    return _SafeConfig(raw, f"{folder.name}/configs/{main.name}")


def _read_metadata(folder: Path) -> dict:
    path = folder / "configs" / "metadata.json"
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise CheckpointError(f"{path} is larger than 4 MB.")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}).") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} must hold a JSON object.")
    return meta


def _output_format(meta: dict, where: str) -> tuple:
    """(channels, height, width, value_range or None) of the bundle's image output."""
    fmt = (meta.get("network_data_format") or {}).get("outputs") or {}
    if not isinstance(fmt, dict) or not fmt:
        raise CheckpointError(f"{where}: metadata.json has no network_data_format.outputs to read the image shape from.")
    out = fmt.get("pred") or next(iter(fmt.values()))
    try:
        shape = [int(v) for v in out["spatial_shape"]]
        channels = int(out.get("num_channels", 1))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: network_data_format.outputs lacks a numeric spatial_shape ({exc}).") from exc
    if len(shape) == 3 and shape[0] == channels:  # mednist_ddpm writes [channels, H, W]
        shape = shape[1:]
    if len(shape) != 2:
        raise CapabilityError(
            f"{where}: the bundle makes {len(shape)}-D outputs {shape}; only 2-D image bundles are supported here."
        )
    rng = out.get("value_range") or None
    if rng is not None:
        try:
            lo, hi = float(rng[0]), float(rng[1])
        except (TypeError, ValueError, IndexError) as exc:
            raise CheckpointError(f"{where}: value_range {rng!r} is not [low, high].") from exc
        if not hi > lo:
            raise CheckpointError(f"{where}: value_range {rng!r} must have high > low.")
        rng = (lo, hi)
    return channels, shape[0], shape[1], rng


_QUOTED = re.compile(r"""['"](/?[\w./-]+\.(?:pt|pth|ckpt|bin|safetensors))['"]""")


def _weights_path(folder: Path, cfg: _SafeConfig, keys: tuple, defaults: tuple, what: str, given: Any) -> Path:
    """The weights file: ``given``, else a path the config names (read, not evaluated), else a published default."""
    root = folder.resolve()
    candidates: list = []
    if given is not None:
        candidates = [Path(given)]
    else:
        for key in keys:
            v = cfg.raw.get(key)
            m = _QUOTED.search(v) if isinstance(v, str) else None
            if m:
                rel = m.group(1).lstrip("/")
                if not rel.startswith("models/") and "model_dir" in v:
                    rel = "models/" + rel
                candidates.append(folder / rel)
        candidates += [folder / d for d in defaults]
    for c in candidates:
        p = c if c.is_absolute() else (folder / c)
        p = p.resolve()
        if given is None and not p.is_relative_to(root):
            raise CheckpointError(f"the bundle config names weights outside the bundle folder ({p}); refusing to read them.")
        if p.is_file():
            return p
    names = ", ".join(str(Path(c).relative_to(folder)) if not Path(c).is_absolute() else str(c) for c in candidates[:4])
    raise OfflineError(
        f"the {what} weights of bundle {folder.name} are not there (looked for {names}). Fetch the bundle with its "
        f"weights on a connected machine: `python -m monai.bundle download --name {folder.name} --bundle_dir DIR` "
        "(or the large_files.yml URLs), then copy the folder here."
    )


def _load_weights(net: Any, path: Path, legacy: bool, what: str) -> None:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot read {path.name} as a plain state dict with weights_only=True ({type(exc).__name__}: {str(exc)[:200]}). "
            "Bundle weights must be tensors only; pickled objects are refused."
        ) from exc
    if isinstance(state, dict) and len(state) <= 4:
        for key in ("state_dict", "model", "network", "net"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise CheckpointError(f"{path.name} does not hold a state dict (got {type(state).__name__}).")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        if hasattr(net, "load_old_state_dict"):
            try:
                net.load_old_state_dict(state)
                return
            except Exception:  # report the first, clearer error
                pass
        raise CheckpointError(f"{path.name} does not fit the bundle's {what} definition ({str(exc)[:300]}).") from exc


# ------------------------------------------------------------------ sampling helpers
class _PerImageNoise:
    """A scheduler whose stochastic steps draw image i's noise from its own generator (batch-size independent)."""

    def __init__(self, scheduler: Any, generators: list) -> None:
        self._scheduler = scheduler
        self._generators = generators
        import inspect

        self._takes_generator = "generator" in inspect.signature(scheduler.step).parameters

    def __getattr__(self, name: str) -> Any:
        return getattr(self._scheduler, name)

    def step(self, model_output: Any, timestep: Any, sample: Any, *args: Any, **kw: Any):
        import torch

        if not self._takes_generator:
            return self._scheduler.step(model_output, timestep, sample, *args, **kw)
        prev, orig = [], []
        for i, g in enumerate(self._generators):
            p, o = self._scheduler.step(model_output[i : i + 1], timestep, sample[i : i + 1], *args, generator=g, **kw)
            prev.append(p)
            orig.append(o)
        return torch.cat(prev), torch.cat(orig)


def _net_module(owner: "MonaiBundleGenerator", net: Any, context: Any, uncond: Any, guidance: float | None):
    """The network as the inferer calls it, with step reports and (for text bundles) classifier-free guidance."""
    import torch

    class Stepped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.calls = 0

        def forward(self, x, timesteps=None, context=None, **kw):
            self.calls += 1
            owner._report_step(self.calls, owner._steps_now, lambda: owner._preview(x))
            x = x.to(owner.dtype)
            t = timesteps.to(x.device) if timesteps is not None else None
            if ctx is None:
                return self.net(x, timesteps=t, **kw).float()
            if guidance is None or uncond is None:
                return self.net(x, timesteps=t, context=ctx, **kw).float()
            both = self.net(torch.cat([x, x]), timesteps=t, context=torch.cat([uncond.expand_as(ctx), ctx]), **kw).float()
            u, c = both.chunk(2)
            return u + guidance * (c - u)

    ctx = context
    return Stepped()


class MonaiBundleGenerator(Generator):
    """A MONAI generative bundle (DDPM or latent diffusion) as a generator.

    Build it with :meth:`from_bundle` or :func:`~medsynth_explore.generators.load_generator`
    on the bundle folder; see the module docstring for what is read and how.

    Parameters of :meth:`from_bundle`
    ---------------------------------
    folder : path
    device, dtype : optional
        Where the networks run and in which precision (default CPU, float32).
    schema, prompt_template : optional
        Text bundles: the model's conditions and how they become a prompt
        (default: ``conditions.json`` in the bundle, else the CheXpert schema).
    text_encoder : path, optional
        Text bundles: a folder with ``text_encoder/`` and ``tokenizer/``
        (default: the bundle's ``models/``).
    weights, autoencoder_weights : path, optional
        Override the weight files.
    value_range : (low, high), optional
        Override the output range of ``metadata.json``.
    scale_factor : float, optional
        Latent bundles: the latent scaling (default: the inferer's, or the
        config's ``scale_factor``, else 1).
    default_steps, default_guidance : optional
        Sampler defaults (default: the config's, else the scheduler's own).

    Examples
    --------
    >>> from medsynth_explore.generators import load_generator
    >>> g = load_generator("models/mednist_ddpm")  # doctest: +SKIP
    >>> g.sample(4, seed=0, steps=50).images.shape  # doctest: +SKIP
    (4, 1, 64, 64)
    """

    default_batch_size = 8

    def __init__(self, card: dict, parts: dict, folder: Path, files: list, device: Any, dtype: Any) -> None:
        super().__init__(card, sha256="pending", path=str(folder))
        self._parts = parts
        self._folder = folder
        self._files = files
        self._sha_cache: str | None = None
        self.device, self.dtype = device, dtype
        self._steps_now = 0

    @property
    def sha256(self) -> str:
        """SHA-256 over the bundle's configs and weight files (computed on first use)."""
        if self._sha_cache is None:
            self._sha_cache = _digest(self._folder, self._files)
        return self._sha_cache

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_bundle(
        cls,
        folder: Any,
        device: Any = None,
        dtype: Any = None,
        schema: Any = None,
        prompt_template: Any = None,
        text_encoder: Any = None,
        weights: Any = None,
        autoencoder_weights: Any = None,
        value_range: Any = None,
        scale_factor: float | None = None,
        default_steps: int | None = None,
        default_guidance: float | None = None,
    ) -> "MonaiBundleGenerator":
        """Load a bundle folder (see the class docstring for the parameters).

        Raises
        ------
        CheckpointError
            A missing or malformed config or metadata, a definition that is
            not plain MONAI, or weights that do not fit.
        CapabilityError
            A 3-D bundle, or a device this machine lacks.
        OfflineError
            Weights or the text encoder are not in the folder (the message
            says how to fetch them).
        """
        try:
            import monai  # noqa: F401
        except ImportError as exc:
            raise CheckpointError(
                'MONAI bundles need the monai package: pip install "medsynth-explore[models]" (or pip install monai).'
            ) from exc
        folder = Path(folder)
        if not (folder / "configs" / "metadata.json").is_file():
            raise CheckpointError(f"{folder} has no configs/metadata.json, so it is not a MONAI bundle.")
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        meta = _read_metadata(folder)
        cfg = _read_configs(folder)
        channels, h, w, rng = _output_format(meta, folder.name)
        if value_range is not None:
            rng = (float(value_range[0]), float(value_range[1]))
        net_id = cfg.first(BUNDLE_NETWORK_IDS)
        sched_id = cfg.first(_SCHEDULER_IDS)
        if net_id is None or sched_id is None:
            raise CheckpointError(
                f"{cfg.where} defines no diffusion network ({' / '.join(BUNDLE_NETWORK_IDS)}) or no scheduler "
                f"({' / '.join(_SCHEDULER_IDS)}); only generative bundles load as generators."
            )
        ae_id = cfg.first(_AUTOENCODER_IDS)
        network = cfg.build(net_id)
        files = [p for p in (folder / "configs").iterdir() if p.is_file() and p.suffix in (".json", ".yaml", ".yml")]
        net_path = _weights_path(
            folder, cfg, ("load_diffusion_path", "ckpt_path", "load_path"), _NETWORK_WEIGHTS, "network", weights
        )
        _load_weights(network, net_path, cfg.legacy, net_id)
        files.append(net_path)
        autoencoder = None
        if ae_id is not None:
            autoencoder = cfg.build(ae_id)
            ae_path = _weights_path(
                folder, cfg, ("load_autoencoder_path",), _AUTOENCODER_WEIGHTS, "autoencoder", autoencoder_weights
            )
            _load_weights(autoencoder, ae_path, cfg.legacy, ae_id)
            files.append(ae_path)
        scheduler = cfg.build(sched_id)
        inferer = None
        inf_id = cfg.first(_INFERER_IDS)
        if inf_id is not None and str(
            cfg.raw[inf_id].get("_target_", "") if isinstance(cfg.raw[inf_id], dict) else ""
        ).startswith(("monai.", "generative.")):
            inferer = cfg.build(inf_id, extra={sched_id: scheduler})
        if inferer is None:
            from monai.inferers import DiffusionInferer, LatentDiffusionInferer

            if autoencoder is None:
                inferer = DiffusionInferer(scheduler)
            else:
                sf = scale_factor if scale_factor is not None else cfg.literal("scale_factor", 1.0)
                inferer = LatentDiffusionInferer(scheduler, scale_factor=float(sf))
        elif scale_factor is not None and hasattr(inferer, "scale_factor"):
            inferer.scale_factor = float(scale_factor)
        network = network.to(dev, dt).eval()
        if autoencoder is not None:
            autoencoder = autoencoder.to(dev, dt).eval()
        text = bool(getattr(network, "with_conditioning", False))
        parts = {"network": network, "autoencoder": autoencoder, "scheduler": scheduler, "inferer": inferer}
        caps = ["steps"]
        resolved: ConditionSchema | None = None
        template = prompt_template
        limitations = ["External bundle: training data, licence and intended use are those of its own metadata and docs."]
        if rng is None:
            rng = (0.0, 1.0)
            limitations.append("metadata.json gives no value_range; outputs are taken as [0, 1] and clipped.")
        if channels > 1:
            limitations.append(f"The bundle makes {channels} channels; they are averaged to one grey channel.")
        if text:
            caps += ["text", "conditions", "guidance"]
            file_schema, file_template = read_conditions_file(folder)
            resolved = as_schema(schema) or file_schema or chexpert_schema(text=True)
            if not resolved.has_text:
                from .conditions import Condition

                resolved = ConditionSchema((*resolved.conditions, Condition("prompt", "text", max_tokens=77)))
            template = template if template is not None else file_template
            parts.update(_text_tower(folder, cfg, text_encoder, dev, dt))
            limitations.append("Conditions are passed as an English prompt; the bundle may ignore them.")
        elif schema is not None:
            raise CapabilityError(f"bundle {folder.name} has an unconditional network, so it takes no condition schema.")
        latent_shape = None
        if autoencoder is not None:
            lc = int(getattr(network, "in_channels", 0) or cfg.literal("latent_channels", 3))
            down = 2 ** (len(getattr(autoencoder.encoder, "channels", (0, 0, 0))) - 1)
            latent_shape = (lc, h // down, w // down)
        steps_default = default_steps or _configured_steps(cfg) or int(getattr(scheduler, "num_inference_steps", 50) or 50)
        sampler_defaults: dict[str, Any] = {"sampler": type(scheduler).__name__, "steps": int(steps_default)}
        if text:
            sampler_defaults["guidance"] = float(
                default_guidance if default_guidance is not None else cfg.literal("guidance_scale", 7.0)
            )
        card = {
            "name": str(meta.get("name") or folder.name),
            "family": "diffusion",
            "architecture": {
                "format": "monai-bundle",
                "network": type(network).__name__,
                "autoencoder": type(autoencoder).__name__ if autoencoder is not None else None,
                "inferer": type(inferer).__name__,
                "image_size": int(h),
                "image_height": int(h),
                "image_width": int(w),
                "channels": 1,
                "bundle_channels": int(channels),
                "value_range": list(rng),
                "latent_shape": list(latent_shape) if latent_shape else None,
                "device": str(dev),
                "dtype": dtype_name(dt),
                "bundle_version": meta.get("version"),
                "monai_version": meta.get("monai_version"),
            },
            "description": str(meta.get("description") or meta.get("task") or f"MONAI bundle {folder.name}"),
            "conditions": resolved.to_dict() if resolved is not None else None,
            "capabilities": caps,
            "training_data": {"dataset": str(meta.get("data_source") or "see the bundle's metadata")},
            "sampler_defaults": sampler_defaults,
            "license": "see the bundle's LICENSE",
            "intended_use": str(meta.get("intended_use") or ""),
            "limitations": limitations,
        }
        if h != w:
            raise CapabilityError(f"bundle {folder.name} makes {h}x{w} images; only square images are supported here.")
        gen = cls(card, parts, folder, files, dev, dt)
        gen.prompt_template = template
        return gen

    # -- protocol -------------------------------------------------------------------------
    def _resolve(
        self, n: int, conditions: Any, prompts: list | None, seed: int, context: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        if "text" not in self.capabilities:
            return super()._resolve(n, conditions, prompts, seed, context)
        given = self._schema.validate(conditions)
        table = pd.DataFrame(index=pd.RangeIndex(n))
        for col in self._schema.columns:
            if col != "prompt":
                v = given.get(col, pd.NA)
                table[col] = list(v) if isinstance(v, np.ndarray) else [v] * n
        if prompts is not None:
            table["prompt"] = prompts
        elif "prompt" in given:
            v = given["prompt"]
            table["prompt"] = list(v) if isinstance(v, np.ndarray) else [v] * n
        else:
            names = self._schema.finding_names
            table["prompt"] = [conditions_to_prompt(table.iloc[i].to_dict(), names, self.prompt_template) for i in range(n)]
        return table

    def _preview(self, x: Any) -> np.ndarray:
        a = x.detach().float().mean(1, keepdim=True).cpu().numpy()
        lo = a.reshape(len(a), -1).min(1)[:, None, None, None]
        hi = a.reshape(len(a), -1).max(1)[:, None, None, None]
        return ((a - lo) / np.maximum(hi - lo, 1e-8)).astype(np.float32)

    def _encode_text(self, prompts: list):
        import torch

        tok, enc = self._parts["tokenizer"], self._parts["text_encoder"]
        ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            return enc(ids.input_ids.to(self.device))[0].to(self.dtype)

    def _generate(self, cond_table, rng_seed, steps, guidance, prompts):
        import torch

        p = self._parts
        sched = p["scheduler"]
        sched.set_timesteps(num_inference_steps=int(steps))
        self._steps_now = len(sched.timesteps)
        arch = self.card["architecture"]
        shape = tuple(arch["latent_shape"]) if arch.get("latent_shape") else (int(arch["bundle_channels"]), *self.image_shape[1:])
        noise = randn_per_image(rng_seed, shape).to(self.device, self.dtype)
        gens = torch_generators([int(s) ^ 0x5EED for s in rng_seed])
        context = uncond = None
        if "text" in self.capabilities:
            context = self._encode_text(list(cond_table["prompt"]))
            uncond = self._encode_text([""])
        net = _net_module(self, p["network"], context, uncond, guidance if context is not None else None)
        kw: dict[str, Any] = {
            "input_noise": noise,
            "diffusion_model": net,
            "scheduler": _PerImageNoise(sched, gens),
            "verbose": False,
        }
        if context is not None:
            kw["conditioning"] = context  # the guided module above builds the (uncond, cond) batch itself
        with torch.inference_mode():
            if p["autoencoder"] is not None:
                out = p["inferer"].sample(autoencoder_model=_Decoder(p["autoencoder"], self.dtype), **kw)
            else:
                out = p["inferer"].sample(**kw)
        lo, hi = arch["value_range"]
        x = (out.float() - lo) / (hi - lo)
        if x.shape[1] > 1:
            x = x.mean(1, keepdim=True)
        return torch.clamp(x, 0, 1).cpu().numpy()


class _Decoder:
    """The autoencoder as the latent inferer uses it (``decode_stage_2_outputs``), in the model's precision."""

    def __init__(self, autoencoder: Any, dtype: Any) -> None:
        self._ae = autoencoder
        self._dtype = dtype

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ae, name)

    def decode_stage_2_outputs(self, z: Any) -> Any:
        return self._ae.decode_stage_2_outputs(z.to(self._dtype)).float()


def _configured_steps(cfg: _SafeConfig) -> int | None:
    """``num_inference_steps`` written in the config (read as text, never evaluated)."""
    for key in ("num_inference_steps", "set_timesteps"):
        v = cfg.raw.get(key)
        if isinstance(v, int) and v > 0:
            return v
        m = re.search(r"num_inference_steps\s*=\s*(\d+)", v) if isinstance(v, str) else None
        if m:
            return int(m.group(1))
    return None


def _text_tower(folder: Path, cfg: _SafeConfig, given: Any, device: Any, dtype: Any) -> dict:
    """The CLIP text encoder and tokenizer of a text bundle, from local files only."""
    try:
        from transformers import CLIPTextModel, CLIPTokenizer
    except ImportError as exc:
        raise CheckpointError(
            'this bundle is text-conditioned and needs transformers: pip install "medsynth-explore[models]".'
        ) from exc
    root = Path(given) if given is not None else folder / "models"
    enc_dir, tok_dir = root / "text_encoder", root / "tokenizer"
    if not (enc_dir / "config.json").is_file() or not tok_dir.is_dir():
        repo = "stabilityai/stable-diffusion-2-1-base"
        for v in cfg.raw.values():
            m = re.search(r"from_pretrained\(\s*['\"]([\w.-]+/[\w.-]+)['\"]", v) if isinstance(v, str) else None
            if m:
                repo = m.group(1)
                break
        raise OfflineError(
            f"bundle {folder.name} encodes prompts with the CLIP text encoder of {repo}, which is not in {root} "
            f"(expected {enc_dir.name}/ and {tok_dir.name}/ there). On a connected machine run "
            f'`huggingface-cli download {repo} --include "text_encoder/*" "tokenizer/*" --local-dir {root}` '
            "and copy the folder here (or pass text_encoder=DIR)."
        )
    from .devices import quiet_loading as _quiet

    try:
        with _quiet():
            tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
            encoder = CLIPTextModel.from_pretrained(str(enc_dir), local_files_only=True).to(device, dtype).eval()
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot load the bundle's text encoder from {root}: {str(exc)[:300]}") from exc
    return {"tokenizer": tokenizer, "text_encoder": encoder}
