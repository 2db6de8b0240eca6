"""Encoder registry: :func:`get_encoder` by name, and the default encoder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import FeatureError
from .base import Encoder

__all__ = [
    "get_encoder",
    "list_encoders",
    "register_encoder",
    "unregister_encoder",
    "EncoderEntry",
    "default_encoder_name",
    "DEFAULT_ENCODER",
    "DOMAIN_CLIP_ASSET",
]

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


@dataclass(frozen=True)
class EncoderEntry:
    """One registered encoder: how to build it from a name (and what the name may carry after a colon)."""

    name: str
    build: Callable[..., Encoder]
    aliases: tuple[str, ...] = ()
    description: str = ""
    takes_argument: bool = False  # "name:<argument>" passes the argument to build as its first parameter
    shown_as: str = ""


_ENCODERS: dict[str, EncoderEntry] = {}
_ENCODER_KEYS: dict[str, str] = {}  # lower-case name or alias -> registered name


def register_encoder(
    name: str,
    build: Callable[..., Encoder],
    aliases: tuple[str, ...] = (),
    description: str = "",
    takes_argument: bool = False,
    shown_as: str = "",
    replace: bool = False,
) -> EncoderEntry:
    """Make ``get_encoder(name, **kw)`` call ``build(**kw)`` (or ``build(argument, **kw)`` for ``name:argument``).

    Parameters
    ----------
    name : str
        The encoder's name; matched case-insensitively, as are ``aliases``.
    build : callable
        Returns an :class:`Encoder`; import heavy libraries inside it, so
        that registering costs nothing.
    takes_argument : bool
        The name may carry an argument after a colon (``"dinov2:vitb14"``).
    shown_as : str
        How :func:`list_encoders` shows the name (e.g. ``"dinov2[:<variant>]"``).

    Examples
    --------
    >>> from medsynth_explore.features.simple import PixelEncoder
    >>> _ = register_encoder("tiny-pixels", lambda **kw: PixelEncoder(size=4, **kw), description="4x4 pixels")
    >>> get_encoder("Tiny-Pixels").dim
    16
    >>> unregister_encoder("tiny-pixels")
    """
    keys = [name.lower(), *(a.lower() for a in aliases)]
    taken = [k for k in keys if k in _ENCODER_KEYS and _ENCODER_KEYS[k] != name]
    if (name in _ENCODERS or taken) and not replace:
        raise FeatureError(
            f"an encoder called {name!r} (or one of its aliases {taken}) is already registered; pass replace=True."
        )
    entry = EncoderEntry(name, build, tuple(aliases), description, takes_argument, shown_as or name)
    _ENCODERS[name] = entry
    for k in keys:
        _ENCODER_KEYS[k] = name
    return entry


def unregister_encoder(name: str) -> None:
    """Remove an encoder registered with :func:`register_encoder`."""
    entry = _ENCODERS.pop(name, None)
    if entry is None:
        raise FeatureError(f"no encoder called {name!r} is registered.")
    for k in [name.lower(), *(a.lower() for a in entry.aliases)]:
        _ENCODER_KEYS.pop(k, None)


def list_encoders() -> list[str]:
    """Names accepted by :func:`get_encoder`.

    Examples
    --------
    >>> "pixels" in list_encoders()
    True
    """
    return [e.shown_as for e in _ENCODERS.values()]


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
    head, sep, argument = key.partition(":")
    entry = _ENCODERS.get(_ENCODER_KEYS.get(key.lower(), ""))
    if entry is not None and not entry.takes_argument:
        return entry.build(**kw)
    entry = _ENCODERS.get(_ENCODER_KEYS.get(head.lower(), ""))
    if entry is not None and entry.takes_argument:
        return entry.build(argument, **kw) if sep else entry.build(None, **kw)
    raise FeatureError(f"unknown encoder {name!r}; choose one of {list_encoders()} or pass an Encoder instance.")


# ------------------------------------------------------------------------------------ built-ins
def _pixels(**kw: Any) -> Encoder:
    from .simple import PixelEncoder

    return PixelEncoder(**kw)


def _random_cnn(**kw: Any) -> Encoder:
    from .simple import RandomCNNEncoder

    return RandomCNNEncoder(**kw)


def _inception(**kw: Any) -> Encoder:
    from .inception import InceptionEncoder

    return InceptionEncoder(**kw)


def _open_clip(rest: str | None, **kw: Any) -> Encoder:
    from .openclip import OpenCLIPEncoder

    rest = rest or ""
    if rest.startswith("hf-hub:"):
        return OpenCLIPEncoder(rest, **kw)
    model, _, pretrained = rest.partition(":")
    if not model:
        raise FeatureError("give the open_clip model name, e.g. 'open_clip:ViT-B-32:laion2b_s34b_b79k'.")
    if pretrained:
        kw.setdefault("pretrained", pretrained)
    return OpenCLIPEncoder(model, **kw)


def _dinov2(variant: str | None, **kw: Any) -> Encoder:
    from .dinov2 import DINOv2Encoder

    return DINOv2Encoder(variant or kw.pop("variant", "vits14"), **kw)


register_encoder("pixels", _pixels, aliases=("pixel",), description="downsampled pixels (a transparent baseline)")
register_encoder("random-cnn", _random_cnn, aliases=("random_cnn", "randomcnn"), description="a seeded random-weight CNN")
register_encoder(
    "inception", _inception, aliases=("inception-v3", "inceptionv3"), description="Inception-v3 with the FID weights"
)
register_encoder(
    "open_clip",
    _open_clip,
    aliases=("open-clip",),
    takes_argument=True,
    shown_as="open_clip:<model>[:<pretrained>]",
    description="any open_clip model: a pretrained tag, a local checkpoint or an hf-hub: id",
)
register_encoder("dinov2", _dinov2, takes_argument=True, shown_as="dinov2[:<variant>]", description="DINOv2 through torch.hub")
register_encoder(
    "phantomcxr-clip",
    _domain_clip,
    aliases=("domain-clip", "phantomcxr_clip"),
    description="the domain CLIP trained on PhantomCXR image-report pairs (the default)",
)
