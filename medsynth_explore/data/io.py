"""Reading and writing image sets: folders, MedMNIST ``.npz``, DICOM; named data sets through the registry.

Every loader returns an :class:`~medsynth_explore.data.ImageSet` and raises a
:class:`~medsynth_explore.errors.DataError` that names the file and the fix for
input a user can get wrong. Named data sets (the built-in ``"phantomcxr"``,
plugins) are looked up in :mod:`medsynth_explore.data.registry`; their loaders
live in their own modules (PhantomCXR: :mod:`medsynth_explore.phantom.dataset`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import DataError
from .folder import write_folder
from .imageset import ImageSet
from .registry import dataset_loader, is_registered, registered_names_hint

__all__ = ["load_dataset", "write_folder", "read_folder", "read_medmnist", "read_dicom_folder", "cache_dir"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
FILENAME_COLUMNS = ("filename", "file", "path", "image", "image_path")
MEDMNIST_SPLITS = ("train", "val", "test")


def cache_dir() -> Path:
    """Directory for caches (simulated data, features): ``$MEDSYNTH_CACHE_DIR`` or ``~/.cache/medsynth_explore``."""
    return Path(os.environ.get("MEDSYNTH_CACHE_DIR") or Path.home() / ".cache" / "medsynth_explore")


# --------------------------------------------------------------------------- dispatch
def load_dataset(source: Any, **kwargs: Any) -> ImageSet:
    """Load an image set from a registered name, a folder or a file.

    Parameters
    ----------
    source : str or path-like
        * a registered data set name (:func:`~medsynth_explore.data.list_datasets`;
          names win over folders of the same name), e.g. ``"phantomcxr"``
          (alias ``"phantom"``): the built-in simulator with a fixed seed,
          cached on disk (:func:`medsynth_explore.phantom.load_phantomcxr`).
          Keywords: ``n`` (default 2000), ``size`` (64), ``seed`` (0),
          ``population`` (a :class:`~medsynth_explore.phantom.Population`),
          ``cache`` (True).
        * a folder with ``metadata.csv`` (a filename column plus any attributes)
          and PNG/JPEG/TIFF images; :func:`write_folder` writes this layout.
          Keywords: ``channels`` (None: 1 when all images are grey, else 3).
        * a folder of DICOM files (``.dcm`` or files starting with the DICOM
          preamble); PatientAge and PatientSex become ``age`` and ``sex``.
        * a MedMNIST ``.npz`` file (``train_images``, ``train_labels``, ...).
          Keyword ``split``: ``"train"``, ``"val"``, ``"test"`` or None for all,
          recorded in a ``split`` column.
    **kwargs
        Passed to the loader of that source.

    Returns
    -------
    ImageSet

    Raises
    ------
    DataError
        Missing path or unknown name (the message lists the registered
        names), unreadable or truncated file, missing columns or arrays,
        mixed image sizes.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from medsynth_explore.data import ImageSet
    >>> d = tempfile.mkdtemp()
    >>> _ = ImageSet(np.full((2, 1, 8, 8), 0.5, np.float32)).to_folder(d, overwrite=True)
    >>> load_dataset(d).shape
    (2, 1, 8, 8)
    """
    if isinstance(source, ImageSet):
        return source
    if is_registered(source):
        data = dataset_loader(source)(**kwargs)
        if not isinstance(data, ImageSet):
            raise DataError(f"the loader of data set {source!r} returned {type(data).__name__}, not an ImageSet.")
        return data
    path = Path(source).expanduser()
    if not path.exists():
        hint = f" {registered_names_hint()}" if isinstance(source, str) and os.sep not in source else ""
        raise DataError(f"no such file or folder: {str(path)!r}.{hint}")
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return read_medmnist(path, **kwargs)
        if path.suffix.lower() == ".csv":
            return read_folder(path.parent, csv=path.name, **kwargs)
        raise DataError(
            f"cannot load {str(path)!r}: give a folder (images + metadata.csv, or DICOM files) or a MedMNIST .npz file."
        )
    if (path / "metadata.csv").exists() or kwargs.get("csv"):
        return read_folder(path, **kwargs)
    if _find_dicoms(path):
        return read_dicom_folder(path, **kwargs)
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
        raise DataError(
            f"{str(path)!r} holds images but no metadata.csv; add one with a 'filename' column "
            "(one row per image, any other columns become attributes)."
        )
    raise DataError(f"found no images, metadata.csv or DICOM files in {str(path)!r}.")


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, keep_default_na=True)
    except Exception as exc:
        raise DataError(f"cannot read CSV {str(path)!r}: {exc}") from exc


def read_folder(
    path: Any, csv: str = "metadata.csv", channels: int | None = None, filename_column: str | None = None
) -> ImageSet:
    """Read a folder of images listed in a metadata CSV.

    The CSV needs a filename column (``filename``, ``file``, ``path``,
    ``image`` or ``image_path``, or name it with ``filename_column``); paths
    are relative to the folder. Other columns become metadata. 16-bit images
    are scaled by 65535, 8-bit by 255. All images must have one size.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path).expanduser()
    csv_path = path / csv
    if not csv_path.exists():
        raise DataError(f"{str(path)!r} has no {csv}; add one with a 'filename' column listing the images.")
    meta = _read_csv(csv_path)
    col = filename_column or next((c for c in FILENAME_COLUMNS if c in meta.columns), None)
    if col is None or col not in meta.columns:
        raise DataError(
            f"{str(csv_path)!r} has no filename column; expected one of {list(FILENAME_COLUMNS)} "
            f"(columns found: {list(meta.columns)})."
        )
    if len(meta) == 0:
        raise DataError(f"{str(csv_path)!r} lists no images.")
    arrays, sizes = [], {}
    for fname in meta[col].astype(str):
        f = path / fname
        if not f.exists():
            raise DataError(f"image {fname!r} listed in {csv} is missing from {str(path)!r}.")
        try:
            with Image.open(f) as im:
                im.load()
                arr = _pil_to_array(im)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"cannot read image {str(f)!r} (unreadable or truncated): {exc}") from exc
        sizes.setdefault(arr.shape[:2], []).append(fname)
        arrays.append(arr)
    if len(sizes) > 1:
        desc = "; ".join(f"{h}x{w}: {len(v)} image(s), e.g. {v[0]!r}" for (h, w), v in sizes.items())
        raise DataError(
            f"images in {str(path)!r} have mixed sizes ({desc}). Resize them to one size first, "
            "e.g. with PIL: Image.open(f).resize((64, 64), Image.BILINEAR)."
        )
    grey = all(a.ndim == 2 or np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]) for a in arrays)
    c = channels or (1 if grey else 3)
    if c not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}.")
    out = np.empty((len(arrays), c) + arrays[0].shape[:2], np.float32)
    for i, a in enumerate(arrays):
        if a.ndim == 2:
            out[i] = a[None]
        elif c == 1:
            out[i, 0] = a[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32) if not grey else a[..., 0]
        else:
            out[i] = a[..., :3].transpose(2, 0, 1)
    prov: dict = {}
    prov_file = path / "provenance.json"
    if prov_file.exists():
        try:
            prov = json.loads(prov_file.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{str(prov_file)!r} is not valid JSON: {exc}") from exc
        prov.pop("content_hash", None)
    prov.setdefault("source", "folder")
    prov["path"] = str(path)
    meta = meta.drop(columns=["filename"] if col != "filename" and "filename" in meta.columns else []).rename(
        columns={col: "filename"}
    )
    meta["filename"] = meta["filename"].astype(str)
    return ImageSet(out, meta, prov)


def _pil_to_array(im) -> np.ndarray:
    """PIL image -> float32 array in [0, 1], (H, W) grey or (H, W, 3/4) colour."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im, dtype=np.uint16).astype(np.float32) / 65535.0
    if mode == "I":
        a = np.asarray(im, dtype=np.int64)
        return (a.clip(0, 65535) / 65535.0).astype(np.float32)
    if mode == "F":
        a = np.asarray(im, dtype=np.float32)
        lo, hi = float(a.min()), float(a.max())
        return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    if mode == "L":
        return np.asarray(im, dtype=np.uint8).astype(np.float32) / 255.0
    if mode == "LA":
        return np.asarray(im.convert("L"), dtype=np.uint8).astype(np.float32) / 255.0
    return np.asarray(im.convert("RGB"), dtype=np.uint8).astype(np.float32) / 255.0


# --------------------------------------------------------------------------- MedMNIST
def read_medmnist(path: Any, split: str | Sequence[str] | None = None, label_names: Sequence[str] | None = None) -> ImageSet:
    """Read a MedMNIST ``.npz`` file (``{split}_images`` and ``{split}_labels`` arrays).

    Parameters
    ----------
    path : path-like
    split : str, list of str or None
        Which of train/val/test to read; None reads every split present.
    label_names : list of str, optional
        Column names for the label columns; default ``label`` for one column,
        ``label_0``, ``label_1``, ... for multi-label files.
    """
    path = Path(path).expanduser()
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"cannot read {str(path)!r} as an .npz file (corrupt, truncated or not numpy): {exc}") from exc
    with z:
        present = [s for s in MEDMNIST_SPLITS if f"{s}_images" in z.files]
        if not present:
            raise DataError(
                f"{str(path)!r} has no MedMNIST arrays: expected 'train_images'/'train_labels' (and val_, test_); "
                f"found {z.files}."
            )
        wanted = present if split is None else ([split] if isinstance(split, str) else list(split))
        for s in wanted:
            if s not in present:
                raise DataError(f"split {s!r} not in {str(path)!r}; present: {present}.")
        images, frames = [], []
        for s in wanted:
            try:
                x = z[f"{s}_images"]
            except Exception as exc:
                raise DataError(f"cannot read '{s}_images' from {str(path)!r} (truncated file?): {exc}") from exc
            if f"{s}_labels" not in z.files:
                raise DataError(f"{str(path)!r} has '{s}_images' but no '{s}_labels'.")
            y = np.asarray(z[f"{s}_labels"])
            if x.ndim == 3:
                x = x[:, None]
            elif x.ndim == 4 and x.shape[-1] in (1, 3):
                x = x.transpose(0, 3, 1, 2)
            else:
                raise DataError(f"'{s}_images' has shape {x.shape}; expected (N, H, W) or (N, H, W, C).")
            if len(y) != len(x):
                raise DataError(f"'{s}_labels' has {len(y)} rows but '{s}_images' has {len(x)}.")
            scale = 255.0 if x.dtype == np.uint8 else (65535.0 if x.dtype == np.uint16 else 1.0)
            images.append(x.astype(np.float32) / scale)
            y = y.reshape(len(y), -1)
            names = (
                list(label_names)
                if label_names
                else (["label"] if y.shape[1] == 1 else [f"label_{j}" for j in range(y.shape[1])])
            )
            if len(names) != y.shape[1]:
                raise DataError(f"label_names has {len(names)} names but the labels have {y.shape[1]} columns.")
            f = pd.DataFrame(y, columns=names)
            f.insert(0, "split", s)
            f.insert(1, "index", np.arange(len(y)))
            frames.append(f)
    return ImageSet(
        np.concatenate(images), pd.concat(frames, ignore_index=True), {"source": "medmnist", "path": str(path), "splits": wanted}
    )


# --------------------------------------------------------------------------- DICOM
def _find_dicoms(path: Path) -> list[Path]:
    files = []
    for p in sorted(path.rglob("*")):
        if not p.is_file():
            continue
        if p.suffix.lower() == ".dcm":
            files.append(p)
            continue
        try:
            with open(p, "rb") as fh:
                head = fh.read(132)
            if len(head) == 132 and head[128:132] == b"DICM":
                files.append(p)
        except OSError:
            continue
    return files


def _parse_age(value: Any) -> float:
    """DICOM Age String (e.g. ``'045Y'``, ``'018M'``) -> years, NaN when absent."""
    if value is None:
        return float("nan")
    m = re.fullmatch(r"\s*(\d{1,3})\s*([DWMY]?)\s*", str(value))
    if not m:
        return float("nan")
    n, unit = int(m.group(1)), m.group(2) or "Y"
    return {"D": n / 365.25, "W": n / 52.18, "M": n / 12.0, "Y": float(n)}[unit]


def read_dicom_folder(path: Any) -> ImageSet:
    """Read every DICOM image in a folder (recursively) with pydicom.

    Each image is scaled to [0, 1] by its stored bit depth (``BitsStored``,
    signed or not), and MONOCHROME1 images are inverted so that dense tissue
    is bright. The modality rescale (slope, intercept) is recorded in the
    metadata, not applied: it maps to physical units, which [0, 1] drops. Metadata:
    ``filename``, ``age`` (years, from PatientAge), ``sex`` (from PatientSex),
    ``patient_id``, ``modality``, ``view`` and ``study_uid`` where present.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path).expanduser()
    files = _find_dicoms(path)
    if not files:
        raise DataError(f"found no DICOM files in {str(path)!r}.")
    arrays, rows, sizes = [], [], {}
    for f in files:
        try:
            ds = pydicom.dcmread(f)
            px = ds.pixel_array.astype(np.float64)
        except (InvalidDicomError, AttributeError, ValueError, OSError, KeyError, EOFError) as exc:
            raise DataError(f"cannot read DICOM {str(f)!r} (corrupt, truncated or no pixel data): {exc}") from exc
        if px.ndim != 2:
            raise DataError(f"DICOM {str(f)!r} holds a {px.ndim}-D pixel array; only single-frame grey images are supported.")
        bits = int(getattr(ds, "BitsStored", 16) or 16)
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
        signed = int(getattr(ds, "PixelRepresentation", 0) or 0) == 1
        lo = -(2 ** (bits - 1)) if signed else 0
        hi = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
        a = (px - lo) / (hi - lo)
        a = np.clip(a, 0.0, 1.0)
        if str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
            a = 1.0 - a
        arrays.append(a.astype(np.float32))
        sizes.setdefault(a.shape, []).append(f.name)
        rows.append(
            {
                "filename": str(f.relative_to(path)),
                "age": _parse_age(getattr(ds, "PatientAge", None)),
                "sex": str(getattr(ds, "PatientSex", "") or "") or None,
                "patient_id": str(getattr(ds, "PatientID", "") or "") or None,
                "modality": str(getattr(ds, "Modality", "") or "") or None,
                "view": str(getattr(ds, "ViewPosition", "") or "") or None,
                "study_uid": str(getattr(ds, "StudyInstanceUID", "") or "") or None,
                "rescale_slope": slope,
                "rescale_intercept": intercept,
            }
        )
    if len(sizes) > 1:
        desc = "; ".join(f"{h}x{w}: {len(v)} file(s), e.g. {v[0]!r}" for (h, w), v in sizes.items())
        raise DataError(f"DICOM images in {str(path)!r} have mixed sizes ({desc}); resample them to one size first.")
    return ImageSet(np.stack(arrays)[:, None], pd.DataFrame(rows), {"source": "dicom", "path": str(path)})
