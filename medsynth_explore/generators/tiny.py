"""Tiny random-weight models written in the real published layouts: a Stable Diffusion pipeline and MONAI bundles.

Weights cannot be downloaded here, so every loader of a real model format is
exercised on a tiny copy in exactly that format: the tests, the "bring your
own model" tutorial and ``benchmarks/bench_gpu.py`` write one with these
functions and load it the way a researcher loads the real model. The copies
make noise (their weights are random), but every file name, config key and
code path is the real one:

- :func:`write_stable_diffusion`: a diffusers ``StableDiffusionPipeline``
  folder (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``,
  ``tokenizer/``, ``scheduler/``) as RoentGen is published, with a CLIP
  tokenizer whose byte-level vocabulary is written here (no hub download);
  ``inpainting=True`` writes the 9-channel ``StableDiffusionInpaintPipeline``.
- :func:`write_monai_bundle`: ``configs/metadata.json`` + ``configs/inference.json``
  (or ``.yaml``) + ``models/*.pt`` in the layouts of MONAI's ``mednist_ddpm``
  (``kind="ddpm"``), ``brats_mri_axial_slices_generative_diffusion``
  (``kind="latent"``: an inferer written as a bundle script) and
  ``cxr_image_synthesis_latent_diffusion_model`` (``kind="text-latent"``:
  targets of the retired ``generative`` package, a CLIP text encoder in
  ``models/``), including the ``$`` expressions those configs carry.

Examples
--------
>>> import tempfile
>>> d = write_stable_diffusion(tempfile.mkdtemp(), size=32)  # doctest: +SKIP
>>> sorted(p.name for p in d.iterdir())  # doctest: +SKIP
['model_index.json', 'scheduler', 'text_encoder', 'tokenizer', 'unet', 'vae']
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The hub repository whose CLIP text encoder MONAI's chest X-ray latent diffusion bundle uses.
_SD21 = "stabilityai/stable-diffusion-2-1-base"

__all__ = ["write_clip_tokenizer", "write_stable_diffusion", "write_monai_bundle", "tiny_clip_text_model"]


def _byte_chars() -> list:
    """The 256 printable characters byte-level BPE (GPT-2, CLIP) maps bytes to."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return [chr(c) for c in cs]


def write_clip_tokenizer(folder: Any, model_max_length: int = 77) -> Path:
    """A CLIP tokenizer with a byte-level vocabulary (every byte, with and without ``</w>``, no merges) in ``folder``.

    Written as ``vocab.json`` + ``merges.txt`` and saved by ``transformers``
    as a loadable tokenizer folder; 514 tokens (``<|startoftext|>`` = 512,
    ``<|endoftext|>`` = 513). Any text tokenizes (one token per byte).
    """
    from transformers import CLIPTokenizer

    folder = Path(folder)
    raw = folder / "_vocab"
    raw.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": 256 + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = 512
    vocab["<|endoftext|>"] = 513
    (raw / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (raw / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tok = CLIPTokenizer(str(raw / "vocab.json"), str(raw / "merges.txt"), model_max_length=model_max_length)
    tok.save_pretrained(str(folder))
    for f in raw.iterdir():
        f.unlink()
    raw.rmdir()
    return folder


def tiny_clip_text_model(hidden: int = 16, seed: int = 0):
    """A 1-layer CLIP text encoder over the 514-token vocabulary of :func:`write_clip_tokenizer`."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    cfg = CLIPTextConfig(
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
        vocab_size=514,
        hidden_size=hidden,
        intermediate_size=hidden,
        num_attention_heads=2,
        num_hidden_layers=1,
        projection_dim=hidden,
        max_position_embeddings=77,
    )
    return CLIPTextModel(cfg).eval()


def _no_zero_layers(module: Any, seed: int) -> Any:
    """Give layers initialised to zero (output projections, by design of these architectures) small random weights.

    A freshly initialised UNet ignores its conditioning because its attention and output projections start at
    zero; tiny test copies need every input to matter so that tests can see conditions reach the network.
    """
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim > 1 and not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return module


def write_stable_diffusion(
    folder: Any, size: int = 64, seed: int = 0, inpainting: bool = False, conditions: dict | None = None
) -> Path:
    """A random-weight Stable Diffusion pipeline folder making ``size`` px images (latents ``size / 8``).

    Parameters
    ----------
    folder : path
    size : int
        Image side; a multiple of 32.
    seed : int
        Seed of the random weights.
    inpainting : bool
        Write ``StableDiffusionInpaintPipeline`` (a 9-channel UNet, as SD inpainting checkpoints have).
    conditions : dict, optional
        Written as ``conditions.json`` beside ``model_index.json`` (the model's own schema).
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    if size % 32:
        raise ValueError(f"size must be a multiple of 32, got {size}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[8, 8, 8, 8],
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=size,
    )
    unet = UNet2DConditionModel(
        sample_size=size // 8,
        in_channels=9 if inpainting else 4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    _no_zero_layers(unet, seed)
    scheduler = DDIMScheduler(
        num_train_timesteps=100,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    tokenizer_dir = write_clip_tokenizer(folder / "_tokenizer")
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    cls = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    from .devices import quiet_loading as _quiet

    with _quiet():
        pipe = cls(
            vae=vae,
            unet=unet,
            text_encoder=tiny_clip_text_model(seed=seed),
            tokenizer=tokenizer,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.save_pretrained(str(folder))
    for f in sorted(tokenizer_dir.rglob("*"), reverse=True):
        f.unlink() if f.is_file() else f.rmdir()
    tokenizer_dir.rmdir()
    if conditions is not None:
        (folder / "conditions.json").write_text(json.dumps(conditions, indent=2), encoding="utf-8")
    return folder


def _metadata(size: int, value_range: list, shape_with_channel: bool, name: str) -> dict:
    shape = [1, size, size] if shape_with_channel else [size, size]
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json",
        "version": "0.0.1",
        "changelog": {"0.0.1": "tiny random-weight copy for tests"},
        "monai_version": "1.4.0",
        "name": name,
        "task": "chest X-ray synthesis (random weights: makes noise)",
        "description": "A tiny random-weight bundle in the published layout, for offline tests.",
        "data_source": "none (random weights)",
        "intended_use": "Testing loaders only",
        "network_data_format": {
            "inputs": {"image": {"type": "noise", "num_channels": 1, "spatial_shape": shape, "dtype": "float32"}},
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": "xray",
                    "num_channels": 1,
                    "spatial_shape": shape,
                    "dtype": "float32",
                    "value_range": value_range,
                    "is_patch_data": False,
                    "channel_def": {"0": "image"},
                }
            },
        },
    }


def write_monai_bundle(folder: Any, kind: str = "ddpm", size: int = 32, seed: int = 0, config_format: str = "json") -> Path:
    """A random-weight MONAI generative bundle in one of three published layouts (see the module docstring).

    Parameters
    ----------
    folder : path
    kind : {"ddpm", "latent", "text-latent"}
    size : int
        Image side (a multiple of 16).
    seed : int
    config_format : {"json", "yaml"}
        ``configs/inference.json`` or ``configs/inference.yaml``.
    """
    import torch
    from monai.networks.nets import AutoencoderKL, DiffusionModelUNet

    if kind not in ("ddpm", "latent", "text-latent"):
        raise ValueError(f"kind must be 'ddpm', 'latent' or 'text-latent', got {kind!r}.")
    folder = Path(folder)
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(exist_ok=True)
    torch.manual_seed(seed)
    unet_args: dict = {
        "spatial_dims": 2,
        "channels": [8, 16],
        "attention_levels": [False, True],
        "num_res_blocks": 1,
        "num_head_channels": 8,
        "norm_num_groups": 4,
    }
    ae_args = {
        "spatial_dims": 2,
        "in_channels": 1,
        "out_channels": 1,
        "latent_channels": 3,
        "channels": [8, 8, 8],
        "num_res_blocks": 1,
        "norm_num_groups": 4,
        "attention_levels": [False, False, False],
        "with_encoder_nonlocal_attn": False,
        "with_decoder_nonlocal_attn": False,
        "include_fc": False,
    }
    config: dict = {"imports": ["$import torch", "$from pathlib import Path"], "bundle_root": "."}
    config["device"] = "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')"
    if kind == "ddpm":  # mednist_ddpm, as published for MONAI >= 1.4
        unet_args.update(in_channels=1, out_channels=1)
        net = _no_zero_layers(DiffusionModelUNet(**unet_args), seed)
        torch.save(net.state_dict(), folder / "models" / "model.pt")
        config.update(
            {
                "image_dim": size,
                "network_def": {"_target_": "monai.networks.nets.DiffusionModelUNet", **unet_args},
                "network": "$@network_def.to(@device)",
                "ckpt_path": "$@bundle_root + '/models/model.pt'",
                "num_train_timesteps": 100,
                "scheduler": {
                    "_target_": "monai.networks.schedulers.DDPMScheduler",
                    "num_train_timesteps": "@num_train_timesteps",
                },
                "inferer": {"_target_": "monai.inferers.DiffusionInferer", "scheduler": "@scheduler"},
                "noise": "$torch.rand(1,1,@image_dim,@image_dim)",
                "load_state": "$@network.load_state_dict(torch.load(@ckpt_path))",
                "sample": "$lambda x: @inferer.sample(input_noise=x, diffusion_model=@network, scheduler=@scheduler)",
                "testing": ["@load_state", "$torch.save(@sample(@noise.to(@device)), 'out.pt')"],
            }
        )
        meta = _metadata(size, [], True, "tiny mednist-style DDPM")
    elif kind == "latent":  # brats_mri_axial_slices_generative_diffusion
        ae = AutoencoderKL(**ae_args)
        unet_args.update(in_channels=3, out_channels=3, include_fc=False)
        net = _no_zero_layers(DiffusionModelUNet(**unet_args), seed)
        torch.save(net.state_dict(), folder / "models" / "model.pt")
        torch.save(ae.state_dict(), folder / "models" / "model_autoencoder.pt")
        config.update(
            {
                "latent_channels": 3,
                "latent_shape": ["@latent_channels", size // 4, size // 4],
                "autoencoder_def": {"_target_": "monai.networks.nets.autoencoderkl.AutoencoderKL", **ae_args},
                "network_def": {"_target_": "monai.networks.nets.diffusion_model_unet.DiffusionModelUNet", **unet_args},
                "load_autoencoder_path": "$@bundle_root + '/models/model_autoencoder.pt'",
                "load_autoencoder": "$@autoencoder_def.load_old_state_dict(torch.load(@load_autoencoder_path))",
                "load_diffusion_path": "$@bundle_root + '/models/model.pt'",
                "load_diffusion": "$@network_def.load_old_state_dict(torch.load(@load_diffusion_path))",
                "scale_factor": 0.8,
                "noise_scheduler": {
                    "_target_": "monai.networks.schedulers.ddim.DDIMScheduler",
                    "_requires_": ["@load_diffusion", "@load_autoencoder"],
                    "num_train_timesteps": 100,
                    "beta_start": 0.0015,
                    "beta_end": 0.0195,
                    "schedule": "scaled_linear_beta",
                    "clip_sample": False,
                },
                "set_timesteps": "$@noise_scheduler.set_timesteps(num_inference_steps=10)",
                "inferer": {"_target_": "scripts.ldm_sampler.LDMSampler", "_requires_": "@set_timesteps"},
            }
        )
        meta = _metadata(size, [0, 1], False, "tiny latent diffusion")
    else:  # cxr_image_synthesis_latent_diffusion_model: generative.* targets, CLIP text encoder
        from transformers import CLIPTokenizer

        ae = AutoencoderKL(**ae_args)
        unet_args.update(in_channels=3, out_channels=3, with_conditioning=True, cross_attention_dim=16)
        net = _no_zero_layers(DiffusionModelUNet(**unet_args), seed)
        torch.save(net.state_dict(), folder / "models" / "diffusion_model.pth")
        torch.save(ae.state_dict(), folder / "models" / "autoencoder.pth")
        from .devices import quiet_loading as _quiet

        write_clip_tokenizer(folder / "models" / "tokenizer")
        with _quiet():
            tiny_clip_text_model(seed=seed).save_pretrained(str(folder / "models" / "text_encoder"))
        CLIPTokenizer.from_pretrained(str(folder / "models" / "tokenizer"))  # fails here, not in a test, if unreadable
        legacy = lambda args: {("num_channels" if k == "channels" else k): v for k, v in args.items()}  # noqa: E731
        config["imports"] += ["$from transformers import CLIPTextModel", "$from transformers import CLIPTokenizer"]
        config.update(
            {
                "model_dir": "$@bundle_root + '/models'",
                "prompt": "Big right-sided pleural effusion",
                "guidance_scale": 3.0,
                "tokenizer": f'$CLIPTokenizer.from_pretrained("{_SD21}", subfolder="tokenizer")',
                "text_encoder": f'$CLIPTextModel.from_pretrained("{_SD21}", subfolder="text_encoder")',
                "autoencoder_def": {"_target_": "generative.networks.nets.AutoencoderKL", **legacy(ae_args)},
                "load_autoencoder_path": "$@model_dir + '/autoencoder.pth'",
                "diffusion_def": {"_target_": "generative.networks.nets.DiffusionModelUNet", **legacy(unet_args)},
                "load_diffusion_path": "$@model_dir + '/diffusion_model.pth'",
                "scheduler": {
                    "_target_": "generative.networks.schedulers.DDIMScheduler",
                    "beta_start": 0.0015,
                    "beta_end": 0.0205,
                    "num_train_timesteps": 100,
                    "schedule": "scaled_linear_beta",
                    "prediction_type": "v_prediction",
                    "clip_sample": False,
                },
                "set_timesteps": "$@scheduler.set_timesteps(num_inference_steps=8)",
                "sampler": {"_target_": "scripts.sampler.Sampler", "_requires_": "@set_timesteps"},
                "scale_factor": 0.3,
            }
        )
        meta = _metadata(size, [0, 1], False, "tiny text-conditioned latent diffusion")
    (folder / "configs" / "metadata.json").write_text(json.dumps(meta, indent=4), encoding="utf-8")
    if config_format == "yaml":
        import yaml

        (folder / "configs" / "inference.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    else:
        (folder / "configs" / "inference.json").write_text(json.dumps(config, indent=4), encoding="utf-8")
    return folder
