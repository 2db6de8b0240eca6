"""Image tower of any open_clip model as a feature encoder.

Weights come from a local checkpoint file (``.safetensors`` or a plain state
dict ``.pt``/``.bin``, read with ``weights_only=True``), from an open_clip
pretrained tag already in the local cache, or from an ``hf-hub:`` model id
already in the Hugging Face cache. Nothing is downloaded unless
``allow_download=True``; without the files an :class:`OfflineError` says what
to fetch and where to put it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Optional

from ..errors import FeatureError, OfflineError
from .base import Encoder, file_hash, state_dict_hash

__all__ = ["OpenCLIPEncoder"]


@contextlib.contextmanager
def _hf_offline(active: bool):
    if not active:
        yield
        return
    old = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:  # huggingface_hub reads the variable once at import; switch its constant too
        from huggingface_hub import constants as hf_constants
    except ImportError:  # pragma: no cover
        hf_constants = None
    old_const = getattr(hf_constants, "HF_HUB_OFFLINE", None)
    if hf_constants is not None:
        hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if hf_constants is not None:
            hf_constants.HF_HUB_OFFLINE = old_const
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class OpenCLIPEncoder(Encoder):
    """Unit-length image embeddings of an open_clip model.

    Parameters
    ----------
    model_name : str
        An open_clip architecture (``open_clip.list_models()``, including
        configs registered with ``open_clip.add_model_config``) or an
        ``"hf-hub:org/repo"`` id.
    pretrained : str or path, optional
        A local checkpoint file, or an open_clip pretrained tag (e.g.
        ``"laion2b_s34b_b79k"``). Required unless ``model_name`` is an hf-hub id.
    cache_dir : path, optional
        Where open_clip looks for downloaded weights.
    allow_download : bool
        Permit network downloads (off by default: this package works offline).
    device : str

    Notes
    -----
    Images are prepared by the base class: grayscale repeated on 3 channels,
    resized to the model's square input size with antialiased bilinear
    interpolation (open_clip's own transform resizes the short side with
    bicubic interpolation and centre-crops; for square inputs only the
    interpolation differs), then normalised with the model's mean and std.

    Examples
    --------
    >>> enc = OpenCLIPEncoder("ViT-B-32", pretrained="laion2b_s34b_b79k")  # doctest: +SKIP
    """

    def __init__(
        self,
        model_name: str,
        pretrained: Optional[str | os.PathLike] = None,
        cache_dir: Optional[str] = None,
        allow_download: bool = False,
        device: str = "cpu",
    ):
        try:
            import open_clip
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise FeatureError("OpenCLIPEncoder needs open_clip_torch: pip install open_clip_torch") from exc

        hub = str(model_name).startswith("hf-hub:")
        if not hub and str(model_name) not in open_clip.list_models():
            raise FeatureError(
                f"unknown open_clip model {model_name!r}. Known models include {open_clip.list_models()[:8]}...; "
                "register a custom config with open_clip.add_model_config(path) first."
            )
        if not hub and pretrained is None:
            raise FeatureError(
                f"give pretrained= for {model_name!r}: a local checkpoint path or a tag from "
                f"{open_clip.list_pretrained_tags_by_model(model_name)} (random weights make meaningless features)."
            )
        local = pretrained is not None and Path(str(pretrained)).expanduser().is_file()
        if pretrained is not None and not local and any(s in str(pretrained) for s in ("/", "\\", ".safetensors", ".pt", ".bin")):
            raise OfflineError(f"checkpoint file {pretrained} does not exist; put the open_clip weights there or fix the path.")
        try:
            with _hf_offline(not allow_download):
                if hub:
                    model = open_clip.create_model(model_name, cache_dir=cache_dir, device=device)
                else:
                    arg = str(Path(str(pretrained)).expanduser()) if local else str(pretrained)
                    model = open_clip.create_model(
                        model_name, pretrained=arg, cache_dir=cache_dir, device=device, require_pretrained=True
                    )
        except (RuntimeError, KeyError) as exc:
            if local:
                raise FeatureError(f"{pretrained} does not hold {model_name} weights: {str(exc)[:300]}") from exc
            raise self._offline(model_name, pretrained, cache_dir, exc) from exc
        except Exception as exc:  # network / hub errors come in many types
            raise self._offline(model_name, pretrained, cache_dir, exc) from exc
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model
        self.device = device
        self.channels = 3
        size = model.visual.image_size
        self.input_size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        pcfg = getattr(model.visual, "preprocess_cfg", None) or {}
        self.mean = tuple(pcfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
        self.std = tuple(pcfg.get("std", open_clip.OPENAI_DATASET_STD))
        import torch

        with torch.no_grad():
            probe = model.encode_image(torch.zeros(1, 3, *self.input_size, device=device))
        self.dim = int(probe.shape[-1])
        self.model_name = str(model_name)
        self.pretrained = str(pretrained) if pretrained is not None else None
        weights = file_hash(Path(str(pretrained)).expanduser(), 8) if local else state_dict_hash(model, 8)
        tag = "local" if local else (self.pretrained or "hub")
        self.id = f"open_clip-{self.model_name}-{Path(tag).stem if local else tag}-{weights}-{self.input_size[0]}px"

    @staticmethod
    def _offline(model_name, pretrained, cache_dir, exc) -> OfflineError:
        where = cache_dir or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        what = model_name if str(model_name).startswith("hf-hub:") else f"{model_name} / pretrained={pretrained!r}"
        return OfflineError(
            f"open_clip weights for {what} are not on this machine and downloads are off ({type(exc).__name__}: "
            f"{str(exc)[:200]}). Download the checkpoint elsewhere and pass its file path as pretrained=..., "
            f"or place it in the Hugging Face cache ({where}), or pass allow_download=True where the network is reachable."
        )

    def _forward(self, x):
        return self.model.encode_image(x, normalize=True)
