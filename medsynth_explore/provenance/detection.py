"""Is this image synthetic? Read its watermark, its C2PA manifest and its labels, in one call (:func:`detect`).

:func:`detect` takes a file (PNG, JPEG, TIFF, WebP, ...), its bytes or an
array and reports the three layers of provenance an export writes, from the
most fragile to the most robust: the PNG text / XMP labels (gone after any
re-save), the C2PA manifest (gone after metadata stripping or format
conversion, and shown as tampered after an edit), and the invisible
watermark (survives stripping, JPEG, resizing, 8-bit conversion).

Examples
--------
>>> import numpy as np
>>> from medsynth_explore.provenance import watermark
>>> x = watermark.embed(np.full((1, 64, 64), 0.4, np.float32), "cd34" + "0" * 60)
>>> r = detect(x)
>>> r["watermark"], r["payload"]["model_sha256_prefix"], r["c2pa"], r["c2pa_valid"]
(True, 'cd34', None, False)
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError
from . import watermark as _wm
from .c2pa import read_c2pa, sniff_format

__all__ = ["detect", "format_detection", "image_from_array"]

_AI_SOURCE = "trainedAlgorithmicMedia"


def image_from_array(array: Any) -> np.ndarray:
    """A (C, H, W) float image in [0, 1] from an array in a common layout.

    Floats must already be in [0, 1] ((H, W) or (C, H, W), C = 1 or 3, the
    package's convention); ``uint8`` and ``uint16`` arrays may also be
    (H, W, 3) or (H, W, 4) (alpha dropped), as other libraries read them.

    Examples
    --------
    >>> image_from_array(np.full((4, 4, 3), 255, np.uint8)).shape
    (3, 4, 4)
    """
    a = np.asarray(array)
    if a.dtype == np.uint8 or a.dtype == np.uint16:
        scale = 255.0 if a.dtype == np.uint8 else 65535.0
        if a.ndim == 3 and a.shape[-1] in (3, 4) and a.shape[0] not in (1, 3):
            a = a[..., :3].transpose(2, 0, 1)
        a = a.astype(np.float32) / np.float32(scale)
    elif a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        raise DataError(f"an image array must hold numbers (floats in [0, 1], uint8 or uint16), got dtype {a.dtype}.")
    elif not np.issubdtype(a.dtype, np.floating):
        raise DataError(f"integer images must be uint8 or uint16, got {a.dtype}; or give floats in [0, 1].")
    return _wm._as_chw(a, "the image").astype(np.float32)


def _pil_pixels(im: Any) -> np.ndarray:
    """(C, H, W) float32 in [0, 1] of a PIL image: 16-bit grey exactly, 8-bit grey, else RGB (alpha dropped)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im, dtype=np.uint16).astype(np.float32)[None] / np.float32(65535.0)
    if im.mode == "I":
        return (np.asarray(im, dtype=np.int64).clip(0, 65535) / 65535.0).astype(np.float32)[None]
    if im.mode == "F":  # 32-bit float TIFFs: taken as values in [0, 1]
        return np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)[None]
    if im.mode in ("L", "LA", "1"):
        g = im.convert("L") if im.mode != "L" else im
        return np.asarray(g, dtype=np.uint8).astype(np.float32)[None] / np.float32(255.0)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)


def _read_pixels(data: bytes, name: str) -> tuple[np.ndarray, dict, str]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            fmt = (im.format or "").lower()
            info = {str(k): v for k, v in im.info.items() if isinstance(v, (str, bytes))}
            a = _pil_pixels(im)
    except UnidentifiedImageError:
        raise DataError(f"cannot read {name}: not an image format Pillow reads (PNG, JPEG, TIFF, WebP, ...).") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read {name} as an image: {exc}") from exc
    return np.ascontiguousarray(a, np.float32), info, fmt


def _label_says_ai(info: dict) -> bool:
    if str(info.get("ai_generated", "")).lower() == "true" or info.get("DigitalSourceType") == _AI_SOURCE:
        return True
    for key in ("XML:com.adobe.xmp", "xmp"):
        v = info.get(key)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        if isinstance(v, str) and _AI_SOURCE in v:
            return True
    return False


def detect(
    source: Any,
    key: str = _wm.DEFAULT_KEY,
    trust_anchors: bytes | str | None = None,
    sizes: Sequence[int] | None = None,
) -> dict:
    """Look for every provenance mark in one image.

    Parameters
    ----------
    source : path-like, bytes or array
        An image file (any format Pillow reads; C2PA is read from PNG, JPEG
        and the other formats c2pa-python supports), its bytes, or pixels
        (see :func:`image_from_array`).
    key : str
        The watermark key (the default is public).
    trust_anchors : bytes or str, optional
        PEM root certificate(s) whose signers count as trusted.
    sizes : list of int, optional
        Longer sides to try when the image may have been resized (see
        :func:`medsynth_explore.provenance.watermark.read`).

    Returns
    -------
    dict
        ``watermark`` (bool), ``watermark_score`` (normalised correlation,
        threshold 0.75), ``payload`` (``version``, ``ai_generated``,
        ``model_sha256_prefix``; None without a watermark), ``c2pa`` (the
        active manifest as a dict, or None), ``c2pa_valid`` (intact and
        correctly signed), ``c2pa_trusted``, ``c2pa_tampered``,
        ``c2pa_failures``, ``c2pa_summary``, ``label`` (the PNG/XMP
        AI-generated label is present), ``format``, ``size`` (H, W),
        ``path``.

    Raises
    ------
    DataError
        A file that cannot be read as an image, a bad array.
    """
    path = None
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise DataError(f"{str(path)!r} is not a file.")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read {str(path)!r}: {exc}") from exc
        source = data
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        image, info, fmt = _read_pixels(data, repr(str(path)) if path else "these bytes")
        mime = sniff_format(data)
        c2 = read_c2pa(data, fmt=mime or (f"image/{fmt}" if fmt else None), trust_anchors=trust_anchors)
        label = _label_says_ai(info)
    else:
        image, fmt, label = image_from_array(source), "array", False
        from .c2pa import C2PAReport

        c2 = C2PAReport()
    reading = _wm.read(image, key=key, sizes=sizes)
    return {
        "path": str(path) if path is not None else None,
        "format": fmt,
        "size": tuple(int(s) for s in image.shape[-2:]),
        "watermark": reading.detected,
        "watermark_score": round(reading.score, 4),
        "payload": reading.payload(),
        "c2pa": c2.manifest,
        "c2pa_valid": bool(c2.valid),
        "c2pa_trusted": bool(c2.trusted),
        "c2pa_tampered": bool(c2.tampered),
        "c2pa_failures": list(c2.failures),
        "c2pa_summary": c2.summary(),
        "label": label,
    }


def format_detection(result: dict) -> str:
    """One line for a :func:`detect` result (what ``medsynth detect`` prints).

    Examples
    --------
    >>> format_detection({"path": "a.png", "watermark": False, "watermark_score": 0.1, "payload": None,
    ...                   "c2pa_summary": "none", "label": False})
    'a.png: watermark no (score 0.10) | C2PA none | AI label no'
    """
    wm = (
        f"watermark YES (model SHA-256 {result['payload']['model_sha256_prefix']}..., score {result['watermark_score']:.2f})"
        if result["watermark"]
        else f"watermark no (score {result['watermark_score']:.2f})"
    )
    label = "yes" if result["label"] else "no"
    return f"{result.get('path') or 'image'}: {wm} | C2PA {result['c2pa_summary']} | AI label {label}"
