"""Feature encoders: images -> one feature vector per image, plus an on-disk cache.

The heavy encoders (Inception, open_clip, DINOv2, the domain CLIP) are imported
only when asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Encoder, file_hash, state_dict_hash, to_image_array
from .registry import DEFAULT_ENCODER, default_encoder_name, get_encoder, list_encoders, register_encoder, unregister_encoder
from .simple import PixelEncoder, RandomCNNEncoder

__all__ = [
    "Encoder",
    "PixelEncoder",
    "RandomCNNEncoder",
    "InceptionEncoder",
    "OpenCLIPEncoder",
    "DINOv2Encoder",
    "DomainCLIPEncoder",
    "FeatureCache",
    "encode_cached",
    "get_encoder",
    "list_encoders",
    "register_encoder",
    "unregister_encoder",
    "default_encoder_name",
    "DEFAULT_ENCODER",
    "to_image_array",
    "state_dict_hash",
    "file_hash",
]

_LAZY = {
    "InceptionEncoder": "inception",
    "OpenCLIPEncoder": "openclip",
    "DINOv2Encoder": "dinov2",
    "FeatureCache": "cache",
    "encode_cached": "cache",
    "DomainCLIPEncoder": "domain_clip",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'medsynth_explore.features' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value
