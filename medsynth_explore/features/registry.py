"""Encoder registry: :func:`get_encoder` by name or by the files of a model folder, and the default encoder.

Three ways to name an encoder:

1. a registered name (``"pixels"``, ``"inception"``, ``"open_clip:<model>"``,
   ``"rad-dino"``, ``"biomedclip"``, ``"xrv-densenet121"``...; see :func:`list_encoders`);
2. a path: a folder or file in a published model layout, detected from its
   files by the table :data:`ENCODER_FORMATS` (one entry per format: an open_clip
   hub folder, a transformers image-model folder, a TorchXRayVision weights
   file, a torchvision / timm state dict with ``arch=``, a domain-CLIP
   checkpoint);
3. an :class:`Encoder` instance.

Real medical encoders given by name are looked up in a models folder:
``$MEDSYNTH_MODELS`` (default ``~/.cache/medsynth-explore/models``), as
``<models>/rad-dino/``, ``<models>/biomedclip/`` and ``<models>/xrv-densenet121/``.
When the files are not there, :class:`~medsynth_explore.errors.OfflineError`
names them and gives the command that fetches them on a connected machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import FeatureError, OfflineError
from .base import Encoder
from .locations import MODELS_ENV, models_dir

__all__ = [
    "get_encoder",
    "list_encoders",
    "register_encoder",
    "unregister_encoder",
    "EncoderEntry",
    "default_encoder_name",
    "DEFAULT_ENCODER",
    "DOMAIN_CLIP_ASSET",
    "ENCODER_FORMATS",
    "EncoderFormat",
    "MODELS_ENV",
    "NAMED_MODELS",
    "detect_format",
    "models_dir",
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


# ------------------------------------------------------------------ real models: files on disk, by format
@dataclass(frozen=True)
class EncoderFormat:
    """One published model layout: how to recognise it from its files and how to build its encoder."""

    name: str
    detect: Callable[[Path, dict], bool]
    build: Callable[..., Encoder]
    description: str


def _is_open_clip_folder(path: Path, kw: dict) -> bool:
    return path.is_dir() and (path / "open_clip_config.json").is_file()


def _is_hf_image_folder(path: Path, kw: dict) -> bool:
    return path.is_dir() and (path / "config.json").is_file() and (path / "preprocessor_config.json").is_file()


def _is_state_dict(path: Path, kw: dict) -> bool:
    return path.is_file() and "arch" in kw


def _is_xrv_file(path: Path, kw: dict) -> bool:
    if not path.is_file() or path.suffix not in (".pt", ".pth"):
        return False
    from .xrv import pickle_globals

    try:
        names = pickle_globals(path)  # reads the pickle's opcodes; nothing is unpickled
    except (OSError, FeatureError, ValueError):
        return False
    return any(n.endswith(".DenseNet") and ("torchxrayvision" in n or n.startswith("models.")) for n in names)


def _is_domain_clip(path: Path, kw: dict) -> bool:
    if not path.is_file() or path.suffix != ".safetensors":
        return False
    try:
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            meta = f.metadata() or {}
    except Exception:  # not a safetensors file
        return False
    return any('"family": "clip"' in v for v in meta.values())


def _build_open_clip_folder(path: Path, **kw: Any) -> Encoder:
    from .openclip import OpenCLIPFolderEncoder

    return OpenCLIPFolderEncoder(path, **kw)


def _build_hf_image(path: Path, **kw: Any) -> Encoder:
    from .hf_image import TransformersImageEncoder

    return TransformersImageEncoder(path, **kw)


def _build_state_dict(path: Path, **kw: Any) -> Encoder:
    from .backbone import StateDictEncoder

    return StateDictEncoder(path, **kw)


def _build_xrv(path: Path, **kw: Any) -> Encoder:
    from .xrv import XRVDenseNetEncoder

    return XRVDenseNetEncoder(path, **kw)


def _build_domain_clip(path: Path, **kw: Any) -> Encoder:
    return _domain_clip(path=path, **kw)


#: Published layouts, tried in order on a path given to :func:`get_encoder`.
ENCODER_FORMATS: tuple = (
    EncoderFormat(
        "open_clip-hub",
        _is_open_clip_folder,
        _build_open_clip_folder,
        "open_clip hub folder: open_clip_config.json + open_clip_pytorch_model.bin (BiomedCLIP); image and text towers",
    ),
    EncoderFormat(
        "transformers-image",
        _is_hf_image_folder,
        _build_hf_image,
        "transformers image model: config.json + model.safetensors + preprocessor_config.json (RAD-DINO)",
    ),
    EncoderFormat(
        "state-dict", _is_state_dict, _build_state_dict, "a torchvision or timm state dict, with arch= (RadImageNet-style)"
    ),
    EncoderFormat("torchxrayvision", _is_xrv_file, _build_xrv, "a TorchXRayVision DenseNet weights file (a pickled module)"),
    EncoderFormat("domain-clip", _is_domain_clip, _build_domain_clip, "a domain-CLIP checkpoint (.safetensors with its card)"),
)


def detect_format(path: Any, **kw: Any) -> EncoderFormat | None:
    """The :data:`ENCODER_FORMATS` entry whose files ``path`` has (``kw``: the builder's arguments, e.g. ``arch``).

    Examples
    --------
    >>> detect_format("/nonexistent") is None
    True
    """
    p = Path(path).expanduser()
    return next((f for f in ENCODER_FORMATS if f.detect(p, kw)), None)


def _from_path(path: Path, kw: dict) -> Encoder:
    fmt = detect_format(path, **kw)
    if fmt is None:
        kinds = "; ".join(f.description for f in ENCODER_FORMATS)
        extra = " (a state dict needs arch=, e.g. arch='resnet50')" if path.is_file() else ""
        raise FeatureError(f"{path} is in none of the encoder layouts read here{extra}: {kinds}.")
    return fmt.build(path, **kw)


#: Named real models: name -> (sub-folder of models_dir(), hub or download source, files, builder keyword arguments).
NAMED_MODELS = {
    "rad-dino": ("rad-dino", "microsoft/rad-dino", ("config.json", "model.safetensors", "preprocessor_config.json"), {}),
    "biomedclip": (
        "biomedclip",
        "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
        ("open_clip_config.json", "open_clip_pytorch_model.bin", "text/config.json", "text/vocab.txt"),
        {"text_repo_id": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"},
    ),
}


def _named_folder(name: str, **kw: Any) -> Encoder:
    sub, repo, files, extra = NAMED_MODELS[name]
    folder = Path(kw.pop("path", None) or models_dir() / sub).expanduser()
    missing = [f for f in files if not (folder / f).is_file()]
    if missing and name == "biomedclip" and not [f for f in missing if not f.startswith("text/")]:
        missing = []  # the text tower may come from the Hugging Face cache instead; the encoder says if not
    if missing:
        top = [f for f in files if "/" not in f]
        listed = " ".join(top) + " " if name == "rad-dino" else ""  # BiomedCLIP: the whole repository (tokenizer files too)
        cmds = [f"huggingface-cli download {repo} {listed}--local-dir {folder}"]
        if name == "biomedclip":
            cmds.append(f"huggingface-cli download {extra['text_repo_id']} config.json vocab.txt --local-dir {folder / 'text'}")
        raise OfflineError(
            f"{name} is not on this machine: {folder} lacks {', '.join(missing)}. On a connected machine run "
            + " and ".join(f"`{c}`" for c in cmds)
            + f", then copy that folder to {folder} on this machine (or set {MODELS_ENV} to the folder holding {sub}/)."
        )
    kw.setdefault("repo_id", repo)
    for k, v in extra.items():
        kw.setdefault(k, v)
    return _from_path(folder, kw)


def _rad_dino(**kw: Any) -> Encoder:
    return _named_folder("rad-dino", **kw)


def _biomedclip(**kw: Any) -> Encoder:
    return _named_folder("biomedclip", **kw)


def _xrv_densenet(weights: str | None, **kw: Any) -> Encoder:
    from .xrv import XRVDenseNetEncoder

    return XRVDenseNetEncoder(weights=weights or kw.pop("weights", "all"), **kw)


def _looks_like_path(key: str) -> bool:
    return key.startswith((".", "/", "~")) or os.sep in key or key.endswith((".pt", ".pth", ".bin", ".safetensors"))


def get_encoder(name_or_encoder: Any = None, **kw: Any) -> Encoder:
    """An encoder by name, or the encoder given.

    Parameters
    ----------
    name_or_encoder : str, Encoder or None
        ``"pixels"``, ``"random-cnn"``, ``"inception"``,
        ``"open_clip:<model>[:<pretrained>]"`` (``<pretrained>`` is a tag, a
        local checkpoint path, or absent for an ``hf-hub:`` model id),
        ``"dinov2"`` (``"dinov2:<variant>"``, e.g. ``dinov2:vits14``),
        ``"phantomcxr-clip"``, ``"rad-dino"``, ``"biomedclip"``,
        ``"xrv-densenet121"`` (``"xrv-densenet121:<weights>"``), a path to a
        model folder or file in a published layout (:data:`ENCODER_FORMATS`),
        an :class:`Encoder` instance (returned as is), or ``None`` for
        :func:`default_encoder_name`.
    **kw
        Passed to the encoder's constructor (e.g. ``size=32`` for pixels,
        ``weights=path`` for inception, ``device="cuda"``, ``dtype="bfloat16"``,
        ``allow_pickle=True`` for pickle-format weights, ``arch="resnet50"``
        for a state dict, ``pool="mean"`` for a transformers model).

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
    if isinstance(name, os.PathLike):
        return _from_path(Path(name).expanduser(), kw)
    if not isinstance(name, str):
        raise FeatureError(f"encoder must be a name, a path or an Encoder, got {type(name).__name__}.")
    key = name.strip()
    registered = key.lower() in _ENCODER_KEYS or key.partition(":")[0].lower() in _ENCODER_KEYS
    if not registered and (Path(key).expanduser().exists() or _looks_like_path(key)):
        path = Path(key).expanduser()
        if not path.exists():
            raise OfflineError(f"encoder path {path} does not exist; put the model's files there or fix the path.")
        return _from_path(path, kw)
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
    "rad-dino",
    _rad_dino,
    aliases=("raddino", "microsoft/rad-dino"),
    description="RAD-DINO (Dinov2 on chest X-rays), CLS embedding; files in $MEDSYNTH_MODELS/rad-dino",
)
register_encoder(
    "biomedclip",
    _biomedclip,
    aliases=("biomed-clip", "microsoft/biomedclip-pubmedbert_256-vit_base_patch16_224"),
    description="BiomedCLIP image and text towers (CLIPScore); files in $MEDSYNTH_MODELS/biomedclip; allow_pickle=True",
)
register_encoder(
    "xrv-densenet121",
    _xrv_densenet,
    aliases=("torchxrayvision", "xrv"),
    takes_argument=True,
    shown_as="xrv-densenet121[:<weights>]",
    description="TorchXRayVision DenseNet-121, 1024-d features and 18 pathologies; allow_pickle=True",
)
register_encoder(
    "phantomcxr-clip",
    _domain_clip,
    aliases=("domain-clip", "phantomcxr_clip"),
    description="the domain CLIP trained on PhantomCXR image-report pairs (the default)",
)
