"""Provenance that survives: signed C2PA manifests and an invisible watermark on exported images.

Three layers, written by :func:`medsynth_explore.export.export` and read
back by :func:`detect` (``medsynth detect FILE...``) and
:func:`medsynth_explore.export.verify`:

* PNG text chunks and XMP (``ai_generated=true``, IPTC
  ``DigitalSourceType=trainedAlgorithmicMedia``): readable by anything, lost
  on any re-save.
* A C2PA manifest (:mod:`~medsynth_explore.provenance.c2pa`, the official
  ``c2pa-python``): the generator, checkpoint SHA-256, model-card digest,
  seed, sampler settings and conditions, signed with the user's key; shows
  tampering; lost when metadata is stripped or the format changes.
* An invisible watermark (:mod:`~medsynth_explore.provenance.watermark`,
  ``invisible-watermark``): the AI-generated flag and a model-hash prefix in
  the pixels; survives stripping, JPEG, resizing and 8-bit conversion.

Examples
--------
>>> from medsynth_explore import provenance
>>> sorted(provenance.__all__)[:3]
['C2PAReport', 'C2PASigner', 'WatermarkReading']
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "detect": "detection",
    "format_detection": "detection",
    "C2PASigner": "c2pa",
    "C2PAReport": "c2pa",
    "make_test_signer": "c2pa",
    "created_manifest": "c2pa",
    "sign_bytes": "c2pa",
    "sign_file": "c2pa",
    "read_c2pa": "c2pa",
    "strip_c2pa": "c2pa",
    "WatermarkReading": "watermark",
    "embed_watermark": "watermark:embed",
    "read_watermark": "watermark:read",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    target = _NAMES.get(name)
    if target is None:
        raise AttributeError(f"module 'medsynth_explore.provenance' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, "c2pa", "detection", "watermark"})
