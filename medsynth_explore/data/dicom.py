"""DICOM as scanners write it: headers, pixel transforms, compressed transfer syntaxes, folder trees.

Reading a DICOM file into [0, 1] (:func:`decode_dicom`), in this order:

1. **Pixels** by pydicom (``Dataset.pixel_array``), stored values with
   ``BitsStored`` and ``PixelRepresentation`` (signed) applied. Compressed
   transfer syntaxes decode through pydicom's plugins: RLE Lossless natively,
   JPEG Baseline, JPEG Extended and JPEG Lossless through
   ``pylibjpeg-libjpeg``, JPEG 2000 through ``pylibjpeg-openjpeg``
   (``pip install medsynth-explore[dicom]``); without them a compressed file
   raises a ``DataError`` that names the package.
2. **Modality transform**: ``RescaleSlope`` / ``RescaleIntercept`` (or a
   Modality LUT Sequence) to the scanner's units.
3. **VOI transform** (``voi="auto"``, the default): the first VOI LUT of a
   VOI LUT Sequence when the file has one (scaled by the LUT's own range of
   output values), else the first Window Center /
   Window Width pair with its ``VOILUTFunction`` (LINEAR, LINEAR_EXACT or
   SIGMOID, DICOM PS3.3 C.11.2.1.2), mapped to [0, 1]. A file with neither,
   or with a window width that is not valid (LINEAR needs width >= 1), is
   scaled by the range its ``BitsStored`` can hold instead. Which one was
   applied is recorded per image in the ``voi`` column (``"lut"``,
   ``"window"``, ``"stored range"``, or ``"stored range (invalid window)"``).
   ``voi="none"`` always uses the stored range; ``voi=(center, width)`` a
   window of the caller's in rescaled units.
4. **MONOCHROME1** images are inverted (1 - x), so that dense tissue is
   bright in every image.
5. RGB (and YBR, converted by pydicom) images are scaled by their bit depth.

Objects that are not single-frame images are skipped, always, and listed in
``provenance["skipped"]`` with the reason (a warning says how many): no
pixel data (structured reports, presentation states, DICOMDIR), more than
one frame, no rows or columns. Files that are damaged, or declare more than
:data:`~medsynth_explore.data.decode.PIXEL_LIMIT` pixels, follow ``on_error``.

Metadata per image: ``filename``, harmonised ``age`` (years, from
PatientAge), ``sex`` (F/M), ``view`` (PA/AP/LATERAL, from ViewPosition),
``patient_id``, ``study_uid`` and ``series_uid`` (so that splits stay
patient-level: ``ImageSet.split(group="patient_id")``), ``modality``, the
raw ``PatientAge``, ``PatientSex``, ``ViewPosition``, and how the pixels
were mapped: ``photometric``, ``bits_stored``, ``rescale_slope``,
``rescale_intercept``, ``voi``, ``window_center``, ``window_width``,
``transfer_syntax``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import DataError
from .decode import PIXEL_LIMIT, DecodeSettings, resize_array

__all__ = ["find_dicoms", "probe_dicom", "decode_dicom", "DicomInfo", "NotAnImage"]

_CODEC_HINT = (
    "Install the DICOM codecs: pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg "
    "(or pip install 'medsynth-explore[dicom]')."
)


class NotAnImage(Exception):
    """A DICOM object that is not a single-frame image (skipped, with its reason)."""


def find_dicoms(path: Any) -> list[Path]:
    """DICOM files under ``path``, recursively and sorted: ``*.dcm`` (any case) or files with the DICM preamble.

    Hidden files and folders (names starting with ``.``) are ignored.
    """
    root = Path(path)
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            p = Path(dirpath) / name
            if name.lower().endswith(".dcm"):
                files.append(p)
                continue
            try:
                with open(p, "rb") as fh:
                    head = fh.read(132)
            except OSError:
                continue
            if len(head) == 132 and head[128:132] == b"DICM":
                files.append(p)
    return files


@dataclass
class DicomInfo:
    """What a DICOM header says, and the metadata row it gives."""

    rows: int
    columns: int
    samples: int
    photometric: str
    row: dict = field(default_factory=dict)


def _text(ds, name: str) -> Optional[str]:
    v = getattr(ds, name, None)
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def _number(v: Any) -> Optional[float]:
    try:
        if hasattr(v, "__len__") and not isinstance(v, (str, bytes)):
            v = v[0] if len(v) else None
        f = float(v)
        return f if np.isfinite(f) else None
    except (TypeError, ValueError, IndexError):
        return None


def _window(ds, voi: Any) -> tuple[str, Optional[float], Optional[float]]:
    """(what is applied, center, width) for one header under the ``voi`` choice."""
    if isinstance(voi, tuple):
        return "window", float(voi[0]), float(voi[1])
    if voi == "none":
        return "stored range", None, None
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        return "lut", None, None
    c, w = _number(getattr(ds, "WindowCenter", None)), _number(getattr(ds, "WindowWidth", None))
    if c is None or w is None:
        return "stored range", None, None
    fn = (_text(ds, "VOILUTFunction") or "LINEAR").upper()
    if (fn == "LINEAR" and w < 1) or w <= 0:
        return "stored range (invalid window)", c, w
    return "window", c, w


def _check_voi(voi: Any) -> Any:
    if voi in ("auto", "none"):
        return voi
    try:
        c, w = (float(v) for v in voi)
    except (TypeError, ValueError):
        raise DataError(f"voi must be 'auto', 'none' or a (center, width) pair, got {voi!r}.") from None
    if not (np.isfinite(c) and np.isfinite(w) and w > 0):
        raise DataError(f"voi=(center, width) needs finite numbers and width > 0, got {voi!r}.")
    return (c, w)


def probe_dicom(path: Any, pixel_limit: int = PIXEL_LIMIT, voi: Any = "auto") -> DicomInfo:
    """Read a DICOM header (pixel data deferred) and the metadata row it gives.

    Raises
    ------
    NotAnImage
        For an object that is not a single-frame image (the reason is the message).
    DataError
        For a file that is not DICOM, is damaged, or has a malformed header.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    from .labels import normalise_age, normalise_sex, normalise_view

    voi = _check_voi(voi)
    try:
        ds = pydicom.dcmread(path, defer_size="1 KB")
        has_pixels = "PixelData" in ds or "FloatPixelData" in ds or "DoubleFloatPixelData" in ds
        if "PixelData" in ds:
            elem = ds.get_item(0x7FE00010)
            tell, length = getattr(elem, "value_tell", None), getattr(elem, "length", None)
            if tell is not None and length is not None and length != 0xFFFFFFFF and tell + length > os.path.getsize(path):
                raise DataError(
                    f"cannot read DICOM {str(path)!r} (corrupt, truncated): its pixel data needs {length:,} bytes "
                    f"from byte {tell:,} but the file ends at {os.path.getsize(path):,}."
                )
        rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
        frames = int(str(getattr(ds, "NumberOfFrames", 1) or 1).strip() or 1)
        samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
        photometric = (_text(ds, "PhotometricInterpretation") or "MONOCHROME2").upper()
        bits = int(getattr(ds, "BitsStored", 0) or getattr(ds, "BitsAllocated", 16) or 16)
        slope = _number(getattr(ds, "RescaleSlope", None))
        intercept = _number(getattr(ds, "RescaleIntercept", None))
        applied, center, width = _window(ds, voi)
        ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "") or None
        row = {
            "PatientAge": _text(ds, "PatientAge"),
            "PatientSex": _text(ds, "PatientSex"),
            "ViewPosition": _text(ds, "ViewPosition"),
            "patient_id": _text(ds, "PatientID"),
            "study_uid": _text(ds, "StudyInstanceUID"),
            "series_uid": _text(ds, "SeriesInstanceUID"),
            "modality": _text(ds, "Modality"),
            "photometric": photometric,
            "bits_stored": bits,
            "rescale_slope": 1.0 if slope is None else slope,
            "rescale_intercept": 0.0 if intercept is None else intercept,
            "voi": applied,
            "window_center": center,
            "window_width": width,
            "transfer_syntax": ts,
        }
    except (NotAnImage, DataError):
        raise
    except InvalidDicomError as exc:
        raise DataError(f"cannot read DICOM {str(path)!r} (corrupt, truncated or not DICOM): {exc}") from exc
    except Exception as exc:  # pydicom raises many types on malformed headers
        raise DataError(
            f"cannot read DICOM {str(path)!r} (corrupt, truncated or malformed header): {type(exc).__name__}: {exc}"
        ) from exc
    if not has_pixels:
        raise NotAnImage(f"no pixel data (SOP class {_text(ds, 'SOPClassUID') or 'unknown'})")
    if frames != 1:
        raise NotAnImage(f"{frames} frames; only single-frame images are read")
    if rows < 1 or cols < 1:
        raise NotAnImage(f"{rows}x{cols} pixels")
    if rows * cols > pixel_limit:
        raise DataError(
            f"DICOM {str(path)!r} declares {rows}x{cols} = {rows * cols:,} pixels, above the pixel limit of {pixel_limit:,} "
            "(a corrupt header or a decompression bomb); pass a larger pixel_limit= if the image is real."
        )
    if samples not in (1, 3):
        raise NotAnImage(f"{samples} samples per pixel")
    if not (1 <= bits <= 32):
        raise DataError(f"DICOM {str(path)!r} declares BitsStored={bits}; expected 1 to 32.")
    row["age"] = float(normalise_age([row["PatientAge"]])[0])
    row["sex"] = normalise_sex([row["PatientSex"]])[0]
    row["view"] = normalise_view([row["ViewPosition"]])[0]
    return DicomInfo(rows, cols, samples, photometric, row)


def _stored_range(bits: int, signed: bool) -> tuple[float, float]:
    if signed:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _apply_window(v: np.ndarray, c: float, w: float, fn: str) -> np.ndarray:
    if fn == "SIGMOID":
        return 1.0 / (1.0 + np.exp(np.clip(-4.0 * (v - c) / w, -60, 60)))
    if fn == "LINEAR_EXACT":
        return np.clip((v - c) / w + 0.5, 0.0, 1.0)
    return np.clip((v - (c - 0.5)) / (w - 1.0) + 0.5, 0.0, 1.0) if w > 1 else (v > c - 0.5).astype(np.float64)


def decode_dicom(path: Any, settings: DecodeSettings) -> np.ndarray:
    """Decode one DICOM image into float32 (C, H, W) in [0, 1] (the steps in the module docstring).

    Raises
    ------
    DataError
        A damaged file, a missing codec (named), a pixel array of the wrong shape.
    """
    import pydicom

    voi = _check_voi(settings.voi)
    try:
        ds = pydicom.dcmread(path)
        rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
        if rows * cols > settings.pixel_limit:
            raise DataError(
                f"DICOM {str(path)!r} declares {rows}x{cols} pixels, above the pixel limit of {settings.pixel_limit:,}."
            )
        try:
            px = ds.pixel_array
        except (NotImplementedError, RuntimeError) as exc:
            msg = str(exc)
            hint = f" {_CODEC_HINT}" if "plugin" in msg.lower() or "decod" in msg.lower() or "handler" in msg.lower() else ""
            raise DataError(f"cannot decode the pixel data of DICOM {str(path)!r}: {msg}{hint}") from exc
        photometric = (str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2")).strip().upper()
        samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
        bits = int(getattr(ds, "BitsStored", 0) or getattr(ds, "BitsAllocated", 16) or 16)
        signed = int(getattr(ds, "PixelRepresentation", 0) or 0) == 1
        want = (rows, cols) if samples == 1 else (rows, cols, 3)
        if tuple(px.shape) != want:
            raise DataError(
                f"DICOM {str(path)!r} holds pixels of shape {tuple(px.shape)}, not the {want} its header declares "
                "(multi-frame or inconsistent header)."
            )
        if samples == 3:
            a = px.astype(np.float64) / (2.0 ** min(bits, 16) - 1)
            a = np.clip(a, 0.0, 1.0).transpose(2, 0, 1)
        else:
            a = _grey(ds, px, bits, signed, voi)
            if photometric == "MONOCHROME1":
                a = 1.0 - a
            a = a[None]
    except DataError:
        raise
    except Exception as exc:  # damaged pixel data, odd headers: all data problems
        raise DataError(
            f"cannot read DICOM {str(path)!r} (corrupt, truncated or no pixel data): {type(exc).__name__}: {exc}"
        ) from exc
    a = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    c = settings.channels
    if a.shape[0] == 3 and c == 1:
        a = (a.transpose(1, 2, 0) @ np.array([0.299, 0.587, 0.114], np.float32))[None]
    elif a.shape[0] == 1 and c == 3:
        a = np.repeat(a, 3, axis=0)
    if settings.size is not None:
        a = resize_array(a, settings.size, settings.aspect)
    return np.ascontiguousarray(np.clip(a, 0.0, 1.0), dtype=np.float32)


def _lut(item, values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """A LUT of a Modality or VOI LUT Sequence item applied to ``values`` (DICOM PS3.3 C.11.1 / C.11.2), and its range.

    The descriptor gives (entries, first value mapped, bits); entries 0 means
    65536. Values below the first mapped value take the first entry, values
    past the last take the last entry.
    """
    desc = [int(v) for v in item.LUTDescriptor]
    n, first = (desc[0] or 65536), desc[1]
    data = np.asarray(item.LUTData, dtype=np.float64).reshape(-1)
    if data.size < 1:
        raise DataError("a LUT of the DICOM file has no data.")
    n = min(n, data.size)
    idx = np.clip(np.rint(values).astype(np.int64) - first, 0, n - 1)
    return data[idx], float(data[:n].min()), float(data[:n].max())


def _modality(ds, px: np.ndarray) -> np.ndarray:
    """Stored values -> the modality's units: the Modality LUT Sequence, else RescaleSlope / RescaleIntercept."""
    if "ModalityLUTSequence" in ds and len(ds.ModalityLUTSequence):
        return _lut(ds.ModalityLUTSequence[0], px.astype(np.float64))[0]
    slope = _number(getattr(ds, "RescaleSlope", None))
    intercept = _number(getattr(ds, "RescaleIntercept", None))
    return px.astype(np.float64) * (1.0 if slope is None else slope) + (0.0 if intercept is None else intercept)


def _grey(ds, px: np.ndarray, bits: int, signed: bool, voi: Any) -> np.ndarray:
    """One grey image through the modality and VOI transforms, to float64 in [0, 1]."""
    applied, c, w = _window(ds, voi)
    if applied == "lut":
        v, lo, hi = _lut(ds.VOILUTSequence[0], _modality(ds, px))
        return np.clip((v - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros(v.shape)
    if applied == "window":
        v = _modality(ds, px)
        fn = "LINEAR" if isinstance(voi, tuple) else (str(getattr(ds, "VOILUTFunction", "") or "LINEAR").strip().upper())
        return _apply_window(v, float(c), float(w), fn)
    lo, hi = _stored_range(bits, signed)  # the modality rescale is affine: it does not change this scaling
    return np.clip((px.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0)
