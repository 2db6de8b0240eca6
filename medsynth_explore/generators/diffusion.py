"""Conditional pixel-space diffusion model for 64x64 radiographs.

Design (numbers measured on the 1-core CPU budget this package targets):

* **Pixel space, folded.** The 64x64x1 image is folded losslessly into a
  16x16x16 tensor (``pixel_unshuffle`` by 4) before a small
  :class:`diffusers.UNet2DModel` and unfolded after it. A UNet working at 64x64
  (channels 32/64/128, attention at 32 and 16 px) needed 2.8 s for one
  denoising pass over 32 images; the folded UNet (channels 64/128/192,
  attention only at 4x4) needs 0.19 s, which is what makes 16 images with 20
  guided steps fit in a few seconds. A latent model would need an extra
  autoencoder, trained and shipped, for an image that is only 4096 pixels.
* **Conditioning.** The structured condition vector
  (:func:`~medsynth_explore.generators.conditions.encode_conditions`: age,
  sex, findings) and the pooled domain-CLIP text embedding of a prompt are
  mapped by a small MLP to a vector added to the timestep embedding. Every
  group (age, sex, findings, text) carries a presence flag; during training
  each group is dropped independently, and all of them together 10% of the
  time, so one network gives the unconditional prediction for
  classifier-free guidance, prompt-only sampling and any partial condition.
* **Guidance per condition.** Besides classifier-free guidance over all
  conditions, a single group can be guided on its own
  (:attr:`DiffusionGenerator.condition_guidance`), using the prediction with
  only that group dropped as its negative, at one more network pass a step.
  Age is the subtle condition (bone density, aortic knob, diaphragm: a few
  pixels at 64x64): a model that follows it only weakly (the one shipped
  before the current one: age MAE 11.6 years) follows it much better with
  ``{"age": 3}`` (7.7). The shipped model follows age without it (5.8), so
  the default is none.
* **Schedules and samplers** come from diffusers: cosine (``squaredcos_cap_v2``)
  betas and v-prediction, :class:`~diffusers.DDPMScheduler` for training,
  :class:`~diffusers.DPMSolverMultistepScheduler` (DPM-Solver++, 2nd order,
  the default) or :class:`~diffusers.DDIMScheduler` for sampling, and
  :class:`~diffusers.RePaintScheduler` for inpainting.
* **Inpainting** follows RePaint: at every step the known region is replaced
  by the original image noised to that step, and the trajectory jumps back in
  time (``jump_length`` steps, ``jump_n_sample`` times) so the generated
  region harmonises with the known one.

The shipped checkpoint ``assets/phantomcxr-diffusion.safetensors`` holds the
UNet, the condition MLP and a copy of the domain CLIP used to encode prompts,
so the file is self-contained.

Examples
--------
>>> g = DiffusionGenerator.tiny(seed=0)
>>> s = g.sample(2, conditions={"sex": "F", "findings": ["effusion"]}, seed=0, steps=2)
>>> s.images.shape, s.metadata["sex"].tolist()
((2, 1, 64, 64), ['F', 'F'])
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from ..checkpoint.card import machine_description
from ..errors import CheckpointError, ConditionError, DataError
from ._training import (
    ParameterEMA,
    TrainingLoop,
    TrainingResult,
    check_budget,
    data_provenance,
    duration,
    out_path,
    save_and_reload,
    torch_threads,
)
from .base import Generator, randn_per_image, torch_generators
from .conditions import ConditionSchema, condition_distribution, encode_conditions

__all__ = ["DiffusionConfig", "DiffusionGenerator", "train_diffusion", "SAMPLERS", "DEFAULT_DIFFUSION_PATH"]

DEFAULT_DIFFUSION_PATH = Path(__file__).resolve().parent.parent / "assets" / "phantomcxr-diffusion.safetensors"

#: Samplers :class:`DiffusionGenerator` can use for :meth:`~Generator.sample`.
SAMPLERS = ("dpmsolver++", "ddim")


@dataclass
class DiffusionConfig:
    """Architecture and noise schedule of the diffusion model.

    Parameters
    ----------
    image_size, channels : int
        Image shape (channels, image_size, image_size).
    fold : int
        Pixel-unshuffle factor; the UNet sees ``channels * fold**2`` channels at
        ``image_size / fold`` pixels.
    block_out_channels, attention : sequence
        UNet channels per level and which levels have self-attention.
    layers_per_block, norm_num_groups, attention_head_dim : int
        UNet settings (diffusers names).
    cond_hidden : int
        Width of the condition MLP; also the UNet's time-embedding width.
    num_train_timesteps, beta_schedule, prediction_type :
        Noise schedule shared by training and every sampler.
    """

    image_size: int = 64
    channels: int = 1
    fold: int = 4
    block_out_channels: tuple = (64, 128, 192)
    attention: tuple = (False, False, True)
    layers_per_block: int = 1
    norm_num_groups: int = 16
    attention_head_dim: int = 32
    cond_hidden: int = 256
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "v_prediction"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["block_out_channels"] = list(self.block_out_channels)
        d["attention"] = [bool(a) for a in self.attention]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DiffusionConfig":
        kw = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("block_out_channels", "attention"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)


def _tiny_config() -> DiffusionConfig:
    return DiffusionConfig(
        block_out_channels=(16, 32), attention=(False, True), norm_num_groups=8, attention_head_dim=8, cond_hidden=64
    )


def _groups(schema: ConditionSchema) -> list[tuple[str, int, int]]:
    """(name, start, stop) column slices of the encoded condition vector, per condition."""
    out, pos = [], 0
    for c in schema.conditions:
        if c.kind == "text":
            continue
        w = int(c.width)
        out.append((c.name, pos, pos + w))
        pos += w
    return out


def _build_net(cfg: DiffusionConfig, cond_width: int, n_groups: int, text_dim: int):
    import torch
    from diffusers import UNet2DModel
    from torch import nn

    class Denoiser(nn.Module):
        """Fold -> UNet2DModel (condition embedding added to the time embedding) -> unfold."""

        def __init__(self):
            super().__init__()
            c = cfg.channels * cfg.fold**2
            down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention)
            up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention))
            self.unet = UNet2DModel(
                sample_size=cfg.image_size // cfg.fold,
                in_channels=c,
                out_channels=c,
                down_block_types=down,
                up_block_types=up,
                block_out_channels=tuple(cfg.block_out_channels),
                layers_per_block=cfg.layers_per_block,
                norm_num_groups=cfg.norm_num_groups,
                attention_head_dim=cfg.attention_head_dim,
                class_embed_type="identity",
            )
            temb = cfg.block_out_channels[0] * 4
            cin = cond_width + n_groups + text_dim + 1
            self.cond = nn.Sequential(nn.Linear(cin, cfg.cond_hidden), nn.SiLU(), nn.Linear(cfg.cond_hidden, temb))
            nn.init.zeros_(self.cond[2].weight)
            nn.init.zeros_(self.cond[2].bias)

        def forward(self, x, t, c):
            f = cfg.fold
            z = torch.nn.functional.pixel_unshuffle(x, f) if f > 1 else x
            out = self.unet(z, t, class_labels=self.cond(c)).sample
            return torch.nn.functional.pixel_shuffle(out, f) if f > 1 else out

    return Denoiser()


def _make_sampler(name: str, cfg: DiffusionConfig):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    common = dict(
        num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule, prediction_type=cfg.prediction_type
    )
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing", **common)
    if name == "ddim":
        return DDIMScheduler(clip_sample=True, set_alpha_to_one=True, timestep_spacing="trailing", **common)
    raise ConditionError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}.")


class DiffusionGenerator(Generator):
    """A conditional pixel-space diffusion model (see the module notes).

    Capabilities: ``conditions``, ``text``, ``inpaint``, ``guidance``, ``steps``.

    Parameters
    ----------
    card : mapping
        Model card (``architecture`` holds the :class:`DiffusionConfig`).
    net : torch.nn.Module
        The denoiser (UNet plus condition MLP).
    clip : DomainCLIP or None
        Text encoder for prompts; without it prompts raise ``CapabilityError``.
    sha256, path : optional
        Checkpoint identity.
    device : str
        Torch device (default ``"cpu"``).
    dtype : str or torch.dtype, optional
        Precision of the denoiser (float32 default; bfloat16, or float16 on a
        GPU); the sampler's arithmetic and the images stay float32.
    sampler : {"dpmsolver++", "ddim"}, optional
        Sampler for :meth:`sample`; default from the card.
    condition_guidance : mapping, optional
        Extra guidance for single condition groups, e.g. ``{"age": 3.0}``, on
        top of ``guidance`` (one more network pass per group and step);
        default from the card's ``sampler_defaults``. Also a settable
        attribute; the ``condition_guidance`` metadata column records it.

    Notes
    -----
    When a prompt is given, only the conditions passed explicitly condition the
    model (the rest are drawn for the metadata table, as for every generator,
    but are *not* fed to the network so they cannot contradict the prompt).
    The ``conditioned_on`` metadata column says which inputs were used.

    Examples
    --------
    >>> g = DiffusionGenerator.tiny(seed=0)
    >>> sorted(g.capabilities)
    ['conditions', 'guidance', 'inpaint', 'steps', 'text']
    """

    default_batch_size = 32

    def __init__(
        self,
        card: Mapping[str, Any],
        net,
        clip=None,
        sha256: str | None = None,
        path: str | None = None,
        device: Any = "cpu",
        sampler: str | None = None,
        condition_guidance: Mapping[str, float] | None = None,
        dtype: Any = None,
    ):
        super().__init__(card, sha256=sha256, path=path)
        from .devices import resolve_device, resolve_dtype

        self.config = DiffusionConfig.from_dict(self.card["architecture"])
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.net = net.eval().to(self.device, self.dtype)
        self.clip = clip
        self.text_dim = int(self.card["architecture"].get("text_dim", 0))
        self._group_slices = _groups(self.conditions)
        chosen = sampler or (self.card.get("sampler_defaults") or {}).get("sampler", "dpmsolver++")
        if chosen not in SAMPLERS:
            raise ConditionError(f"unknown sampler {chosen!r}; choose one of {', '.join(SAMPLERS)}.")
        self.sampler_name = chosen
        d = self.card.get("sampler_defaults") or {}
        self.jump_length = int(d.get("jump_length", 5))
        self.jump_n_sample = int(d.get("jump_n_sample", 2))
        self.inpaint_steps = int(d.get("inpaint_steps", 25))
        self.condition_guidance = (d.get("condition_guidance") or {}) if condition_guidance is None else condition_guidance

    @property
    def guidable_conditions(self) -> list[str]:
        """Condition groups :attr:`condition_guidance` can name."""
        return [g for g, _, _ in self._group_slices]

    @property
    def condition_guidance(self) -> dict:
        """Extra guidance per condition group, e.g. ``{"age": 3.0}`` (see :meth:`_model_out`)."""
        return dict(self._condition_guidance)

    @condition_guidance.setter
    def condition_guidance(self, value: Mapping[str, float]) -> None:
        groups = self.guidable_conditions
        if not isinstance(value, Mapping):
            raise ConditionError(f"condition_guidance must be a mapping such as {{'age': 3.0}}, got {value!r}.")
        out = {}
        for k, v in value.items():
            if k not in groups:
                raise ConditionError(
                    f"condition_guidance names {k!r}, which is not a condition of {self.name}; choose from {', '.join(groups)}."
                )
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v) or v < 0:
                raise ConditionError(f"condition_guidance[{k!r}] must be a finite number >= 0, got {v!r}.")
            if v:
                out[k] = float(v)
        self._condition_guidance = out

    @property
    def sampler(self) -> str:
        return self.sampler_name

    def _provenance_columns(self, table, seed, seeds, sampler, steps, guidance):
        meta = super()._provenance_columns(table, seed, seeds, sampler, steps, guidance)
        # e.g. "age=3" when a condition group gets its own guidance (see _model_out); "" when none
        meta["condition_guidance"] = "" if guidance == 0 else ",".join(f"{k}={v:g}" for k, v in self._condition_guidance.items())
        return meta

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, checkpoint: Any, **kw: Any) -> "DiffusionGenerator":
        """Build from a :class:`~medsynth_explore.checkpoint.Checkpoint` (tensors and card)."""
        import torch

        card = checkpoint.card
        arch = card.get("architecture") or {}
        try:
            cfg = DiffusionConfig.from_dict(arch)
            schema = ConditionSchema.from_dict(card.get("conditions"))
            cond_width = int(arch["cond_width"])
            text_dim = int(arch.get("text_dim", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"diffusion checkpoint card is incomplete ({exc}); it cannot rebuild the network.") from exc
        net = _build_net(cfg, cond_width, len(_groups(schema)), text_dim)
        state = {k[4:]: torch.as_tensor(v).float() for k, v in checkpoint.tensors.items() if k.startswith("net.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"diffusion checkpoint does not match its card: missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}."
            )
        clip = None
        if arch.get("text_encoder"):
            from ..features.domain_clip import DomainCLIP

            ct = {k[5:]: v for k, v in checkpoint.tensors.items() if k.startswith("clip.")}
            clip = DomainCLIP.from_tensors(ct, {"name": "text-encoder", "family": "clip", "architecture": arch["text_encoder"]})
        return cls(card, net, clip, sha256=getattr(checkpoint, "sha256", None), path=getattr(checkpoint, "path", None), **kw)

    @classmethod
    def tiny(cls, seed: int = 0, text: bool = True) -> "DiffusionGenerator":
        """A tiny randomly initialised model (for tests and examples; makes noise).

        Examples
        --------
        >>> DiffusionGenerator.tiny().image_shape
        (1, 64, 64)
        """
        import torch

        from ..features.domain_clip import DomainCLIP, tiny_config
        from .conditions import phantomcxr_schema

        schema = phantomcxr_schema(text=text, max_tokens=60)
        cfg = _tiny_config()
        clip = (
            DomainCLIP.from_config(tiny_config(), ["no acute findings", "left pleural effusion", "cardiomegaly"], seed=seed)
            if text
            else None
        )
        # a made-up, uniform condition distribution so that left-out conditions can be drawn
        toy = pd.DataFrame(
            {"age": np.linspace(20, 85, 8), "sex": ["F", "M"] * 4, **{f: [0, 1] * 4 for f in schema.finding_names}}
        )
        data = {"dataset": "none (random weights)", "condition_distribution": condition_distribution(toy, schema)}
        card = _make_card("tiny-diffusion", cfg, schema, clip, data, {}, {"sampler": "dpmsolver++", "steps": 4, "guidance": 2.0})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _build_net(cfg, card["architecture"]["cond_width"], len(_groups(schema)), card["architecture"]["text_dim"])
            # give the zero-initialised output layer small random weights so conditions matter
            torch.nn.init.normal_(net.cond[2].weight, std=0.05)
        return cls(card, net, clip)

    # -- conditions -----------------------------------------------------------------------
    def _resolve(
        self, n: int, conditions: Any, prompts: list | None, seed: int, context: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        table = super()._resolve(n, conditions, prompts, seed, context=context)
        keys = set(self.conditions.validate(conditions)) if conditions is not None else set()
        given = set()
        for c in self.conditions:
            if c.name in keys or (c.kind == "findings" and keys & set(c.names)):
                given.add(c.name)
        has_prompt = table["prompt"].astype(str).str.len() > 0
        used = []
        for hp in has_prompt:
            if hp:
                names = [g for g, _, _ in self._group_slices if g in given] + ["prompt"]
            else:
                names = [g for g, _, _ in self._group_slices]
            used.append(",".join(names))
        table["conditioned_on"] = used
        return table

    def _cond_inputs(self, table: pd.DataFrame):
        """Network condition input (N, cond_width + groups + text_dim + 1) for a resolved table."""
        import torch

        n = len(table)
        vec = encode_conditions(table, self.conditions)
        flags = torch.zeros(n, len(self._group_slices))
        used = table["conditioned_on"].tolist() if "conditioned_on" in table else [None] * n
        for i, u in enumerate(used):
            names = set(u.split(",")) if isinstance(u, str) else {g for g, _, _ in self._group_slices}
            for j, (g, a, b) in enumerate(self._group_slices):
                if g in names:
                    flags[i, j] = 1.0
                else:
                    vec[i, a:b] = 0.0
        text = torch.zeros(n, self.text_dim + 1)
        prompts = table["prompt"].fillna("").astype(str).tolist() if "prompt" in table else [""] * n
        idx = [i for i, p in enumerate(prompts) if p.strip()]
        if idx:
            if self.clip is None or self.text_dim == 0:
                from ..errors import CapabilityError

                raise CapabilityError(f"{self.name} has no text encoder; pass conditions instead of a prompt.")
            emb = torch.from_numpy(self.clip.encode_text([prompts[i] for i in idx]))
            text[idx, : self.text_dim] = emb
            text[idx, self.text_dim] = 1.0
        return torch.cat([vec, flags, text], 1).to(self.device)

    # -- denoising --------------------------------------------------------------------------
    def _model_out(self, x, t, cond, guidance):
        """Network output with classifier-free guidance, plus guidance per condition group.

        ``u + g (c - u) + sum_k g_k (c - c_without_k)``: ``c`` is the output
        with every condition, ``u`` with none, and ``c_without_k`` with
        condition group *k* dropped (as in training). The extra terms
        (:attr:`condition_guidance`) strengthen one condition without
        over-guiding the others, at the cost of one more network pass each:
        the idea of composing guidance terms is that of Liu et al. (2022,
        "Compositional Visual Generation with Composable Diffusion Models").
        """
        import torch

        tt = torch.full((len(x),), int(t), dtype=torch.long, device=x.device)
        g = 1.0 if guidance is None else float(guidance)
        if g == 0.0:
            with torch.no_grad():
                return self._net(x, tt, torch.zeros_like(cond))
        variants = [cond] + ([torch.zeros_like(cond)] if g != 1.0 else [])
        scales = []
        flag0 = cond.shape[1] - self.text_dim - 1 - len(self._group_slices)
        for j, (name, a, b) in enumerate(self._group_slices):
            gk = self._condition_guidance.get(name, 0.0)
            if gk and bool((cond[:, flag0 + j] > 0).any()):
                without = cond.clone()
                without[:, a:b] = 0.0
                without[:, flag0 + j] = 0.0
                variants.append(without)
                scales.append(gk)
        k = len(variants)
        with torch.no_grad():
            outs = self._net(torch.cat([x] * k), torch.cat([tt] * k), torch.cat(variants)).chunk(k)
        c = outs[0]
        out = c if g == 1.0 else outs[1] + g * (c - outs[1])
        for gk, o in zip(scales, outs[k - len(scales) :]):
            out = out + gk * (c - o)
        return out

    def _net(self, x, t, cond):
        """The denoiser in its precision (:attr:`dtype`), answering in float32 for the sampler."""
        return self.net(x.to(self.dtype), t, cond.to(self.dtype)).float()

    def _generate(
        self, cond_table: pd.DataFrame, rng_seed: np.ndarray, steps: Any, guidance: Any, prompts: list | None
    ) -> np.ndarray:
        steps = int(steps or 20)
        cond = self._cond_inputs(cond_table)
        sched = _make_sampler(self.sampler_name, self.config)
        sched.set_timesteps(steps)
        c, s = self.config.channels, self.config.image_size
        x = randn_per_image(rng_seed, (c, s, s)).to(self.device) * sched.init_noise_sigma
        for t in sched.timesteps:
            xin = sched.scale_model_input(x, t)
            out = self._model_out(xin, t, cond, guidance)
            x = sched.step(out, t, x).prev_sample
        return ((x.clamp(-1, 1) + 1) / 2).cpu().numpy().astype(np.float32)

    def _eps_from_output(self, out, x, t, alphas_cumprod):
        if self.config.prediction_type == "epsilon":
            return out
        a = alphas_cumprod[int(t)]
        return a.sqrt() * out + (1 - a).sqrt() * x  # v-prediction -> noise

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
        """RePaint with ``inpaint_steps`` (or ``steps``) and resampling jumps; mask 1 = regenerate."""
        import torch
        from diffusers import RePaintScheduler

        steps = int(steps or self.inpaint_steps)
        cfg = self.config
        sched = RePaintScheduler(
            num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule, eta=1.0, clip_sample=True
        )
        jl = max(1, min(self.jump_length, steps - 1))
        sched.set_timesteps(steps, jump_length=jl, jump_n_sample=self.jump_n_sample)
        cond = self._cond_inputs(cond_table)
        orig = torch.from_numpy(images).to(self.device) * 2 - 1
        keep = 1.0 - torch.from_numpy(masks).to(self.device)  # diffusers RePaint: 1 = known pixel
        gens = torch_generators(rng_seed)
        x = randn_per_image(gens, orig.shape[1:]).to(self.device)
        ac = sched.alphas_cumprod.to(self.device)
        ts = sched.timesteps.tolist()
        prev_t = ts[0] + 1
        for t in ts:
            if t < prev_t:
                out = self._model_out(x, t, cond, guidance)
                eps = self._eps_from_output(out, x, t, ac)
                x = sched.step(eps, t, x, orig, keep, generator=gens).prev_sample
            else:  # jump back in time: re-noise
                x = sched.undo_step(x, t, generator=gens)
            prev_t = t
        x = keep * orig + (1 - keep) * x
        return ((x.clamp(-1, 1) + 1) / 2).cpu().numpy().astype(np.float32)

    # -- persistence ------------------------------------------------------------------------
    def state_tensors(self) -> dict:
        """Flat tensors for a checkpoint: ``net.*`` (fp16) and ``clip.*`` (the text encoder)."""
        out = {
            f"net.{k}": v.detach().cpu().half().contiguous() if v.is_floating_point() else v.detach().cpu()
            for k, v in self.net.state_dict().items()
        }
        if self.clip is not None:
            out.update({f"clip.{k}": v for k, v in self.clip.state_tensors().items()})
        return out

    def save(self, path) -> str:
        """Write the model as one safetensors checkpoint; returns its SHA-256."""
        from ..checkpoint import save_checkpoint

        return save_checkpoint(path, self.state_tensors(), dict(self.card))


def _make_card(name, cfg, schema, clip, training_data, training, sampler_defaults, metrics=None, limitations=None):
    from ..checkpoint.card import new_card

    cond_width = sum(b - a for _, a, b in _groups(schema))
    arch = {
        "type": "pixel-unshuffle UNet2DModel (diffusers) with condition MLP added to the time embedding",
        **cfg.to_dict(),
        "cond_width": int(cond_width),
        "text_dim": int(clip.dim) if clip is not None else 0,
    }
    if clip is not None:
        arch["text_encoder"] = {**asdict(clip.config), "vocab_size": int(clip.tokenizer.vocab_size)}
        arch["text_encoder_source"] = {"name": clip.card.get("name"), "weights_digest": clip.card.get("weights_digest")}
    caps = ["conditions", "guidance", "steps", "inpaint"] + (["text"] if clip is not None else [])
    # no extra guidance per condition by default: the shipped recipe follows age without it, and age
    # guidance costs diversity (benchmarks/bench_fidelity.py --age-guidance 0,1.5,3); 14 DPM-Solver++
    # steps score as 20 did
    defaults = {
        "sampler": "dpmsolver++",
        "steps": 14,
        "guidance": 2.0,
        "condition_guidance": {},
        "inpaint_steps": 25,
        "jump_length": 5,
        "jump_n_sample": 2,
    }
    defaults.update(sampler_defaults or {})
    return new_card(
        name,
        "diffusion",
        arch,
        description="Conditional pixel-space diffusion model (v-prediction, cosine schedule) for 64x64 chest radiographs, "
        "conditioned on age, sex, findings and free text (domain-CLIP embedding) with classifier-free guidance.",
        conditions=schema.to_dict(),
        training_data=training_data,
        training=training,
        sampler_defaults=defaults,
        capabilities=caps,
        intended_use="Exploring conditional generation, fidelity, fairness and privacy metrics on simulated PhantomCXR "
        "radiographs; teaching.",
        limitations=limitations
        or [
            "Trained only on simulated PhantomCXR images; it does not produce realistic clinical radiographs.",
            "Small network trained on a CPU: fine texture is smoothed and rare finding combinations are weak.",
            "Prompts are understood only through words present in the PhantomCXR reports.",
        ],
        metrics=metrics or {},
    )


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
class _NotGiven:
    def __repr__(self) -> str:
        return "<not given>"


_NOT_GIVEN: Any = _NotGiven()


def _budget_seconds(max_seconds: float | None, max_minutes: Any) -> float | None:
    """``max_seconds``, or the deprecated ``max_minutes`` converted to seconds."""
    if max_minutes is _NOT_GIVEN:
        return check_budget(max_seconds)
    warnings.warn(
        "train_diffusion(max_minutes=...) is deprecated; pass max_seconds (the budget in seconds) instead.",
        DeprecationWarning,
        stacklevel=3,
    )
    if max_seconds != DEFAULT_TRAINING_SECONDS:
        raise DataError(f"give the time budget once: max_seconds={max_seconds!r} or max_minutes={max_minutes!r}, not both.")
    return None if max_minutes is None else check_budget(60.0 * check_budget(max_minutes))


def _check_training_data(data) -> None:
    if len(data) < 2:
        raise DataError(f"training the diffusion model needs at least 2 images; got {len(data)}.")
    missing = [c for c in ("age", "sex") if c not in data.metadata.columns]
    if missing:
        raise DataError(f"training data lack the condition column(s) {missing}; PhantomCXR metadata has age, sex and findings.")


def _training_tensors(data, cfg: DiffusionConfig, clip, pixel_weights):
    """Checked training inputs: schema, metadata, images in [-1, 1], loss weights, condition vectors, text embeddings."""
    import torch

    from .conditions import phantomcxr_schema

    meta = data.metadata.copy()
    schema = phantomcxr_schema(text=clip is not None, max_tokens=60)
    for f in schema.finding_names:
        if f not in meta.columns:
            raise DataError(f"training data lack the finding column {f!r}.")
    meta["age"] = meta["age"].astype(float).clip(*schema["age"].range)
    x = torch.from_numpy(data.images)
    if x.shape[1] != cfg.channels:
        x = x.mean(1, keepdim=True)
    if x.shape[-1] != cfg.image_size or x.shape[-2] != cfg.image_size:
        x = torch.nn.functional.interpolate(
            x, size=(cfg.image_size, cfg.image_size), mode="bilinear", antialias=True, align_corners=False
        )
    x = x * 2 - 1
    wmap = None
    if pixel_weights is not None:
        wmap = torch.as_tensor(np.asarray(pixel_weights, dtype=np.float32))
        if wmap.shape != (len(x), 1, cfg.image_size, cfg.image_size):
            raise DataError(
                f"pixel_weights must have shape {(len(x), 1, cfg.image_size, cfg.image_size)}; got {tuple(wmap.shape)}."
            )
        if not torch.isfinite(wmap).all() or (wmap < 0).any() or (wmap.flatten(1).sum(1) <= 0).any():
            raise DataError("pixel_weights must be finite, non-negative and not all zero for any image.")
    vec = encode_conditions(meta, schema)
    if clip is not None:
        if "report" not in meta.columns:
            raise DataError("text conditioning needs a 'report' column; pass clip=False to train without text.")
        reports = meta["report"].fillna("").astype(str).tolist()
        uniq, inv = np.unique(np.asarray(reports, dtype=object).astype(str), return_inverse=True)
        emb_u = np.concatenate([clip.encode_text(list(uniq[i : i + 512]), truncate=True) for i in range(0, len(uniq), 512)])
        temb = torch.from_numpy(emb_u[inv])
    else:
        temb = torch.zeros(len(x), 0)
    return schema, meta, x, wmap, vec, temb


def _lr_factor(s: int, total: int, warm: int) -> float:
    """Linear warm-up over ``warm`` steps, then cosine from 1 to 0.1 at ``total``."""
    if s < warm:
        return (s + 1) / warm
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm))))


#: Default wall-clock budget of :func:`train_diffusion` (40 minutes).
DEFAULT_TRAINING_SECONDS = 2400.0


def train_diffusion(
    data,
    out: str | Path | None,
    clip_path: str | Path | None = None,
    steps: int = 100_000,
    max_minutes: Any = _NOT_GIVEN,
    seed: int = 0,
    callback: Callable[[int, int], Any] | None = None,
    config: DiffusionConfig | None = None,
    batch_size: int = 64,
    lr: float = 1e-3,
    ema_decay: float = 0.999,
    p_uncond: float = 0.1,
    p_drop_group: float = 0.15,
    p_text: float = 0.4,
    name: str = "phantomcxr-diffusion",
    clip=None,
    init_from: "DiffusionGenerator | None" = None,
    pixel_weights: np.ndarray | None = None,
    *,
    max_seconds: float | None = DEFAULT_TRAINING_SECONDS,
    log: Callable[[str], Any] | None = None,
) -> TrainingResult:
    """Train the conditional diffusion model on an ImageSet.

    Parameters
    ----------
    data : ImageSet
        Images of shape (N, 1, 64, 64) (other sizes are resized) with metadata
        columns ``age``, ``sex``, the finding columns and, for text
        conditioning, ``report``.
    out : str or Path or None
        Where to write the safetensors checkpoint; ``None`` writes nothing.
    clip_path : str or Path, optional
        Domain-CLIP checkpoint used to encode the reports (the shipped one when
        omitted). A copy of it is stored in the diffusion checkpoint.
    steps : int
        Maximum optimiser steps.
    max_minutes : float or None, deprecated
        The budget in minutes; use ``max_seconds``.
    seed : int
        Seed of initialisation, batches, timesteps, noise and condition dropout.
    callback : callable(done_steps, total_steps), optional
        Called after every step (``total_steps`` is ``steps``); returning
        ``False`` cancels (:class:`CancelledError`; nothing is saved).
    config : DiffusionConfig, optional
    batch_size, lr, ema_decay :
        AdamW with linear warm-up and cosine decay; the exponential moving
        average of the weights is what is saved.
    p_uncond, p_drop_group, p_text :
        Probability of dropping every condition (unconditional sample for
        guidance), of dropping each structured group (age, sex, findings)
        and of *giving* the report text.
    name : str
        Model name in the card.
    clip : DomainCLIP, optional
        An already loaded text encoder (overrides ``clip_path``); ``False``
        trains without text.
    init_from : DiffusionGenerator, optional
        Continue training from this model's weights (same architecture and
        condition layout), e.g. to add text conditioning in a second stage.
    pixel_weights : ndarray (N, 1, H, W), optional
        Per-pixel weights of the denoising loss, at the training resolution
        (1 everywhere when omitted). Small findings cover a few pixels of a
        4,096-pixel image, so a plain mean squared error barely asks the
        network to draw them; weighting the simulator's ground-truth lesion
        masks (:func:`~medsynth_explore.phantom.lesion_weights`) shifts the
        training signal onto them. The loss is the weighted mean, so its
        scale stays comparable.
    max_seconds : float or None
        Wall-clock budget (default 40 minutes); training stops at whichever
        of ``steps`` and this comes first (the card records both). ``None``:
        no budget.
    log : callable(str), optional
        Receives a line every 50 steps with the mean loss, e.g.
        ``"step 50, loss 0.0500, 5 s"``.

    Returns
    -------
    TrainingResult
        ``(generator, card)``: the trained :class:`DiffusionGenerator` (loaded
        back from ``out`` when written) and its model card (plus ``"sha256"``
        of the file when written).

    Examples
    --------
    >>> from medsynth_explore.data import ImageSet
    >>> rng = np.random.default_rng(0)
    >>> meta = pd.DataFrame({"age": [30, 70] * 4, "sex": ["F", "M"] * 4, "cardiomegaly": [0, 1] * 4,
    ...                      "nodule": 0, "effusion": [1, 0] * 4, "pneumothorax": 0, "report": "normal"})
    >>> ds = ImageSet(rng.random((8, 1, 64, 64)).astype(np.float32), meta)
    >>> gen, card = train_diffusion(ds, None, steps=2, config=_tiny_config(), batch_size=4, clip=False)
    >>> card["family"], card["training"]["steps"], gen.image_shape
    ('diffusion', 2, (1, 64, 64))
    """
    import torch
    from diffusers import DDPMScheduler

    budget = _budget_seconds(max_seconds, max_minutes)
    out = out_path(out) if out is not None else None
    cfg = config or DiffusionConfig()
    _check_training_data(data)
    if clip is None:
        from ..features.domain_clip import load_domain_clip

        clip = load_domain_clip(clip_path)
    clip = clip or None  # False: no text
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    schema, meta, x, wmap, vec, temb = _training_tensors(data, cfg, clip, pixel_weights)
    groups = _groups(schema)
    text_dim = clip.dim if clip is not None else 0
    card0 = _make_card(name, cfg, schema, clip, {}, {}, {})
    net = _build_net(cfg, card0["architecture"]["cond_width"], len(groups), text_dim)
    if init_from is not None:
        try:
            net.load_state_dict(init_from.net.state_dict())
        except RuntimeError as exc:
            raise CheckpointError(
                f"cannot continue from {init_from.name}: its network does not match this configuration ({exc})."
            ) from exc
    ema = ParameterEMA(net, ema_decay, formula="mul_add", buffers_each_update=False)
    sched = DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule, prediction_type=cfg.prediction_type
    )
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    warm = 100 if init_from is None else 20
    n = len(x)
    bs = min(batch_size, n)
    loop = TrainingLoop(steps, callback, budget, log, what="diffusion training")
    planned = {"steps": steps}  # for the lr schedule: the steps that fit in the budget, estimated at step 50

    def step():
        s = loop.step
        if budget is not None and s == 50:
            planned["steps"] = min(steps, int(budget / (loop.elapsed() / 50)))
        for g in opt.param_groups:
            g["lr"] = lr * _lr_factor(s, planned["steps"], warm)
        idx = torch.randint(0, n, (bs,), generator=gen)
        x0 = x[idx]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, cfg.num_train_timesteps, (bs,), generator=gen)
        xt = sched.add_noise(x0, noise, t)
        target = sched.get_velocity(x0, noise, t) if cfg.prediction_type == "v_prediction" else noise
        c = vec[idx].clone()
        flags = (torch.rand(bs, len(groups), generator=gen) > p_drop_group).float()
        tflag = (torch.rand(bs, 1, generator=gen) < p_text).float() if text_dim else torch.zeros(bs, 1)
        drop_all = (torch.rand(bs, 1, generator=gen) < p_uncond).float()
        flags = flags * (1 - drop_all)
        tflag = tflag * (1 - drop_all)
        for j, (_, a, b) in enumerate(groups):
            c[:, a:b] *= flags[:, j : j + 1]
        pred = net(xt, t, torch.cat([c, flags, temb[idx] * tflag, tflag], 1))
        if wmap is None:
            loss = torch.nn.functional.mse_loss(pred, target)
        else:
            w = wmap[idx]
            loss = (w * (pred - target) ** 2).sum() / (w.sum() * pred.shape[1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        ema.update()
        return float(loss.detach())

    net.train()
    history = loop.run_steps(step, every=50, summary=lambda s, m: ([s, round(m["loss"], 5)], f"loss {m['loss']:.4f}"))
    ema.copy_buffers()
    for p in ema.model.parameters():  # round-trip through fp16, as stored
        p.data = p.data.half().float()
    training = {
        "steps": int(loop.step),
        "max_steps": int(steps),
        "max_seconds": budget,
        "max_minutes": None if budget is None else budget / 60,
        "batch_size": int(bs),
        "lr": float(lr),
        "optimizer": "AdamW, grad-norm clip 1.0, 100-step warm-up (20 when continuing) then cosine to 0.1 lr",
        "ema_decay": float(ema_decay),
        "p_uncond": p_uncond,
        "p_drop_group": p_drop_group,
        "p_text": p_text,
        "seed": int(seed),
        "pixel_weights": None if wmap is None else {"mean": round(float(wmap.mean()), 4), "max": round(float(wmap.max()), 2)},
        "epochs": round(loop.step * bs / n, 2),
        "time_seconds": duration(loop.elapsed()),
        "machine": machine_description(),
        "torch_threads": torch_threads(),
        "loss_history": history,
    }
    _add_previous_stages(training, init_from)
    card = _make_card(name, cfg, schema, clip, data_provenance(data, meta, schema), training, {})
    model = DiffusionGenerator(card, ema.model, clip)
    if out is None:
        return TrainingResult(model, card)
    ck, card = save_and_reload(out, model.state_tensors(), card)
    return TrainingResult(DiffusionGenerator.from_checkpoint(ck), card)


def _add_previous_stages(training: dict, init_from) -> None:
    """Record the runs that shaped ``init_from``'s weights, and totals over every run (one run: the run itself)."""
    stages = []
    if init_from is not None:
        previous = dict(init_from.card.get("training") or {})
        if previous:
            earlier = list(previous.pop("previous_stages", None) or [])
            stages = training["previous_stages"] = [previous] + earlier
    training["total_time_seconds"] = duration(training["time_seconds"] + sum(float(p.get("time_seconds", 0)) for p in stages))
    training["total_steps"] = int(training["steps"] + sum(int(p.get("steps", 0)) for p in stages))
