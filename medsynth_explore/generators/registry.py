"""Finding and loading generators: built-in names, checkpoint files, diffusers pipelines, hub ids."""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from ..checkpoint import load_checkpoint
from ..errors import CheckpointError

__all__ = [
    "BUILTIN_GENERATORS",
    "FAMILY_CLASSES",
    "FOLDER_FORMATS",
    "ASSETS_DIR",
    "list_generators",
    "load_generator",
    "builtin_path",
]

#: Folder of the shipped checkpoints.
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"

#: Built-in generator names -> (family, checkpoint file name or None, what it is).
BUILTIN_GENERATORS: dict[str, tuple] = {
    "phantomcxr-diffusion": (
        "diffusion",
        "phantomcxr-diffusion.safetensors",
        "conditional latent-free diffusion model trained on PhantomCXR",
    ),
    "phantomcxr-vae": ("vae", "phantomcxr-vae.safetensors", "conditional VAE trained on PhantomCXR"),
    "phantomcxr-gan": ("gan", "phantomcxr-gan.safetensors", "conditional GAN trained on PhantomCXR"),
    "phantomcxr-physics": ("physics", None, "the PhantomCXR physics simulator itself (no weights)"),
}

#: Model card family -> "module:class" of its Generator. Each class provides
#: ``from_checkpoint(checkpoint, **kw)``.
FAMILY_CLASSES = {
    "vae": "medsynth_explore.generators.vae:VAEGenerator",
    "gan": "medsynth_explore.generators.gan:GANGenerator",
    "physics": "medsynth_explore.generators.physics:PhysicsGenerator",
    "diffusion": "medsynth_explore.generators.diffusion:DiffusionGenerator",
}


def _is_diffusers_folder(path: Path) -> bool:
    return (path / "model_index.json").is_file()


def _is_monai_bundle(path: Path) -> bool:
    return (path / "configs" / "metadata.json").is_file()


#: Model folders in published layouts, tried in order: (name, detector, "module:class.constructor", what it is).
#: The constructor takes the folder and ``load_generator``'s keyword arguments (``device``, ``dtype``, ``schema``...).
FOLDER_FORMATS = (
    (
        "diffusers",
        _is_diffusers_folder,
        "medsynth_explore.generators.diffusers_pipeline:DiffusersPipelineGenerator.from_pretrained",
        "a diffusers pipeline folder (model_index.json)",
    ),
    (
        "monai-bundle",
        _is_monai_bundle,
        "medsynth_explore.generators.monai_bundle:MonaiBundleGenerator.from_bundle",
        "a MONAI bundle (configs/metadata.json, configs/inference.json or .yaml, models/model.pt)",
    ),
)


def _folder_constructor(target: str):
    module, attr = target.split(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


_TRAIN_HINT = {
    "vae": "medsynth train --model vae --data DIR --out {path}",
    "gan": "medsynth train --model gan --data DIR --out {path}",
    "diffusion": "medsynth train --model diffusion --data DIR --out {path}",
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def _family_class(family: str):
    target = FAMILY_CLASSES.get(family)
    if target is None:
        if family == "clip":
            raise CheckpointError(
                "this checkpoint is a CLIP feature encoder, not an image generator; "
                "load it with medsynth_explore.get_encoder(path) instead."
            )
        raise CheckpointError(f"no generator class for model family {family!r}; known families: {', '.join(FAMILY_CLASSES)}.")
    module, attr = target.split(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise CheckpointError(f"the {family} generator ({module}) is not available in this installation: {exc}.") from exc
    return getattr(mod, attr)


def builtin_path(name: str) -> Path | None:
    """Path of a built-in generator's checkpoint file (``None`` for the physics simulator).

    Examples
    --------
    >>> builtin_path("phantomcxr-vae").name
    'phantomcxr-vae.safetensors'
    """
    if name not in BUILTIN_GENERATORS:
        raise CheckpointError(f"{name!r} is not a built-in generator; built-ins are {', '.join(BUILTIN_GENERATORS)}.")
    fname = BUILTIN_GENERATORS[name][1]
    return None if fname is None else ASSETS_DIR / fname


def list_generators() -> pd.DataFrame:
    """The built-in generators and whether their weights are present.

    Returns
    -------
    pandas.DataFrame
        Columns ``name``, ``family``, ``available``, ``path``, ``description``.

    Examples
    --------
    >>> df = list_generators()
    >>> sorted(df["name"])[-1]
    'phantomcxr-vae'
    >>> bool(df.set_index("name").loc["phantomcxr-physics", "available"])
    True
    """
    rows = []
    for name, (family, fname, desc) in BUILTIN_GENERATORS.items():
        path = None if fname is None else ASSETS_DIR / fname
        rows.append(
            {
                "name": name,
                "family": family,
                "available": path is None or path.is_file(),
                "path": "" if path is None else str(path),
                "description": desc,
            }
        )
    return pd.DataFrame(rows)


def load_generator(name_or_path: Any, allow_pickle: bool = False, **kw: Any):
    """Load a generator by built-in name, checkpoint file, diffusers folder or hub id.

    Parameters
    ----------
    name_or_path : str or path-like
        One of

        - a built-in name (see :func:`list_generators`): ``"phantomcxr-diffusion"``,
          ``"phantomcxr-vae"``, ``"phantomcxr-gan"``, ``"phantomcxr-physics"``;
        - a ``.safetensors`` checkpoint written by
          :func:`medsynth_explore.checkpoint.save_checkpoint` (the class is
          chosen by the card's family);
        - a ``.pt``/``.ckpt`` state dict with a card (only with ``allow_pickle=True``);
        - a local diffusers pipeline folder (with ``model_index.json``);
        - a MONAI bundle folder (``configs/metadata.json`` and an inference
          config; see :mod:`medsynth_explore.generators.monai_bundle`);
        - a Hugging Face hub id ``"org/model"`` already in the local cache.
    allow_pickle : bool, default False
        Allow pickle-based checkpoint files (read with ``weights_only=True``).
    **kw
        Passed to the generator class: ``device`` and ``dtype`` for every
        family (e.g. ``device="cuda", dtype="float16"``; see
        :mod:`medsynth_explore.generators.devices`); ``schema`` and
        ``prompt_template`` for text pipelines and bundles.

    Returns
    -------
    Generator

    Raises
    ------
    CheckpointError
        Unknown name, missing built-in weights (the message says how to train
        them), or a corrupt/mismatched checkpoint.
    OfflineError
        A hub id that is not in the local cache (the message says how to fetch it).

    Examples
    --------
    >>> g = load_generator("phantomcxr-physics")
    >>> g.family, g.image_shape
    ('physics', (1, 64, 64))
    """
    from .base import Generator

    if isinstance(name_or_path, Generator):
        return name_or_path
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise CheckpointError(f"load_generator takes a name or a path, got {type(name_or_path).__name__}.")
    key = str(name_or_path)
    if key in BUILTIN_GENERATORS:
        family, fname, _ = BUILTIN_GENERATORS[key]
        if fname is None:
            return _family_class(family)(**kw)
        path = ASSETS_DIR / fname
        if not path.is_file():
            raise CheckpointError(
                f"the weights of built-in generator {key!r} are not installed (expected {path}). "
                f"Train them with `{_TRAIN_HINT[family].format(path=path)}` (DIR: a PhantomCXR folder, e.g. from "
                "`medsynth simulate`), or reinstall medsynth-explore with its assets."
            )
        return _load_file(path, allow_pickle, **kw)
    path = Path(key).expanduser()
    if path.is_dir():
        for _name, detect, target, _what in FOLDER_FORMATS:
            if detect(path):
                return _folder_constructor(target)(path, **kw)
        found = sorted(path.glob("*.safetensors"))
        hint = f" It contains {found[0].name}; pass that file." if found else ""
        kinds = "; ".join(what for _n, _d, _t, what in FOLDER_FORMATS)
        raise CheckpointError(f"{key!r} is a folder in none of the model layouts read here ({kinds}).{hint}")
    if path.is_file():
        return _load_file(path, allow_pickle, **kw)
    looks_like_path = (
        key.endswith((".safetensors", ".pt", ".pth", ".ckpt", ".bin"))
        or key.startswith((".", "/", "~"))
        or os.sep in key.replace("/", "", 1)
    )
    if _HUB_ID.match(key) and not looks_like_path:
        from .diffusers_pipeline import DiffusersPipelineGenerator

        return DiffusersPipelineGenerator.from_hub(key, **kw)
    raise CheckpointError(
        f"{key!r} is neither a built-in generator ({', '.join(BUILTIN_GENERATORS)}), an existing file or folder, "
        "nor a hub id of the form 'org/model'. Check the spelling or the path; list_generators() shows the built-ins."
    )


def _load_file(path: Path, allow_pickle: bool, **kw: Any):
    ck = load_checkpoint(path, allow_pickle=allow_pickle)
    cls = _family_class(ck.card["family"])
    return cls.from_checkpoint(ck, **kw)
