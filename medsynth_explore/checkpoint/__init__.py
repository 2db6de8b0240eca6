"""Checkpoint format: one ``.safetensors`` file per model, model card in its header.

Examples
--------
>>> import torch, tempfile, pathlib
>>> from medsynth_explore.checkpoint import new_card, save_checkpoint, load_checkpoint
>>> p = pathlib.Path(tempfile.mkdtemp()) / "m.safetensors"
>>> sha = save_checkpoint(p, {"w": torch.ones(2)}, new_card("m", "vae", {"latent_dim": 2}))
>>> load_checkpoint(p).sha256 == sha
True
"""

from .card import CARD_FIELDS, FAMILIES, format_card, machine_description, new_card, validate_card
from .io import (
    CARD_KEY,
    FORMAT_VERSION,
    Checkpoint,
    detect_format,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
    weights_digest,
)

__all__ = [
    "CARD_FIELDS",
    "CARD_KEY",
    "FAMILIES",
    "FORMAT_VERSION",
    "Checkpoint",
    "detect_format",
    "file_sha256",
    "format_card",
    "load_checkpoint",
    "machine_description",
    "new_card",
    "save_checkpoint",
    "validate_card",
    "weights_digest",
]
