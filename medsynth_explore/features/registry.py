"""Encoder registry: :func:`get_encoder` by name, and the default encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import FeatureError
from .base import Encoder

__all__ = ["get_encoder", "list_encoders", "default_encoder_name", "DEFAULT_ENCODER", "DOMAIN_CLIP_ASSET"]

#: Shipped checkpoint of the domain CLIP trained on PhantomCXR image-report pairs.
DOMAIN_CLIP_ASSET = Path(__file__).resolve().parent.parent / "assets" / "phantomcxr-clip.safetensors"


def default_encoder_name() -> str:
    """``"phantomcxr-clip"`` when its shipped checkpoint exists, else ``"pixels"``.

    Examples
    --------
    >>> default_encoder_name() in ("phantomcxr-clip", "pixels")
    True
    """
    return "phantomcxr-clip" if DOMAIN_CLIP_ASSET.is_file() else "pixels"


#: Name of the encoder used when none is given (evaluated at import time; use
#: :func:`default_encoder_name` to re-check after the asset appears).
DEFAULT_ENCODER = default_encoder_name()


def list_encoders() -> list[str]:
    """Names accepted by :func:`get_encoder`.

    Examples
    --------
    >>> "pixels" in list_encoders()
    True
    """
    return ["pixels", "random-cnn", "inception", "open_clip:<model>[:<pretrained>]", "dinov2", "phantomcxr-clip"]


def _domain_clip(**kw: Any) -> Encoder:
    try:
        from .domain_clip import DomainCLIPEncoder  # written alongside the shipped checkpoint
    except ImportError as exc:
        raise FeatureError(
            "the 'phantomcxr-clip' encoder is not available: medsynth_explore.features.domain_clip "
            f"could not be imported ({exc}). Use encoder='pixels' or 'random-cnn' meanwhile."
        ) from exc
    if "checkpoint" not in kw and "path" not in kw and not DOMAIN_CLIP_ASSET.is_file():
        raise FeatureError(
            f"the 'phantomcxr-clip' encoder needs its shipped checkpoint {DOMAIN_CLIP_ASSET}, which is missing. "
            "Reinstall medsynth-explore or train it, or use encoder='pixels'."
        )
    return DomainCLIPEncoder(**kw)


def get_encoder(name_or_encoder: Any = None, **kw: Any) -> Encoder:
    """An encoder by name, or the encoder given.

    Parameters
    ----------
    name_or_encoder : str, Encoder or None
        ``"pixels"``, ``"random-cnn"``, ``"inception"``,
        ``"open_clip:<model>[:<pretrained>]"`` (``<pretrained>`` is a tag, a
        local checkpoint path, or absent for an ``hf-hub:`` model id),
        ``"dinov2"`` (``"dinov2:<variant>"``, e.g. ``dinov2:vits14``),
        ``"phantomcxr-clip"``, an :class:`Encoder` instance (returned as is), or
        ``None`` for :func:`default_encoder_name`.
    **kw
        Passed to the encoder's constructor (e.g. ``size=32`` for pixels,
        ``weights=path`` for inception).

    Raises
    ------
    FeatureError
        Unknown name or an encoder that cannot be built.
    OfflineError
        The encoder's weights are not on this machine.

    Examples
    --------
    >>> get_encoder("pixels", size=8).dim
    64
    >>> get_encoder("random-cnn", dim=16).dim
    16
    """
    if isinstance(name_or_encoder, Encoder):
        if kw:
            raise FeatureError("keyword arguments are only used when the encoder is given by name.")
        return name_or_encoder
    name = default_encoder_name() if name_or_encoder is None else name_or_encoder
    if not isinstance(name, str):
        raise FeatureError(f"encoder must be a name or an Encoder, got {type(name).__name__}.")
    key = name.strip()
    low = key.lower()
    if low in ("pixels", "pixel"):
        from .simple import PixelEncoder

        return PixelEncoder(**kw)
    if low in ("random-cnn", "random_cnn", "randomcnn"):
        from .simple import RandomCNNEncoder

        return RandomCNNEncoder(**kw)
    if low in ("inception", "inception-v3", "inceptionv3"):
        from .inception import InceptionEncoder

        return InceptionEncoder(**kw)
    if low.startswith("open_clip:") or low.startswith("open-clip:"):
        from .openclip import OpenCLIPEncoder

        rest = key.split(":", 1)[1]
        if rest.startswith("hf-hub:"):
            return OpenCLIPEncoder(rest, **kw)
        model, _, pretrained = rest.partition(":")
        if not model:
            raise FeatureError("give the open_clip model name, e.g. 'open_clip:ViT-B-32:laion2b_s34b_b79k'.")
        if pretrained:
            kw.setdefault("pretrained", pretrained)
        return OpenCLIPEncoder(model, **kw)
    if low == "dinov2" or low.startswith("dinov2:"):
        from .dinov2 import DINOv2Encoder

        variant = key.split(":", 1)[1] if ":" in key else kw.pop("variant", "vits14")
        return DINOv2Encoder(variant, **kw)
    if low in ("phantomcxr-clip", "domain-clip", "phantomcxr_clip"):
        return _domain_clip(**kw)
    raise FeatureError(f"unknown encoder {name!r}; choose one of {list_encoders()} or pass an Encoder instance.")
