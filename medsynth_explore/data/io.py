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
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import DataError
from .decode import PIXEL_LIMIT
from .decode import pil_to_array as _pil_to_array  # noqa: F401  (shards.py reads exported PNGs with it)
from .files import read_csv_table
from .folder import write_folder
from .imageset import ImageSet
from .labels import harmonise
from .layouts.dicom import read_dicom_folder
from .registry import dataset_loader, is_registered, registered_names_hint

__all__ = ["load_dataset", "write_folder", "read_folder", "read_medmnist", "read_dicom_folder", "read_csv_table", "cache_dir"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
FILENAME_COLUMNS = ("filename", "file", "path", "image", "image_path")
MEDMNIST_SPLITS = ("train", "val", "test")


def cache_dir() -> Path:
    """Directory for caches (simulated data, features): ``$MEDSYNTH_CACHE_DIR`` or ``~/.cache/medsynth_explore``."""
    return Path(os.environ.get("MEDSYNTH_CACHE_DIR") or Path.home() / ".cache" / "medsynth_explore")


# --------------------------------------------------------------------------- dispatch
def load_dataset(source: Any, **kwargs: Any) -> ImageSet:
    """Load an image set from a registered name, a folder or a file, in memory or file-backed.

    Parameters
    ----------
    source : str or path-like
        * a registered data set name (:func:`~medsynth_explore.data.list_datasets`;
          names win over folders of the same name), e.g. ``"phantomcxr"``
          (alias ``"phantom"``): the built-in simulator with a fixed seed,
          cached on disk and held in memory (:func:`medsynth_explore.phantom.load_phantomcxr`).
          Keywords: ``n`` (default 2000), ``size`` (64), ``seed`` (0),
          ``population`` (a :class:`~medsynth_explore.phantom.Population`),
          ``cache`` (True).
        * a folder in a public chest X-ray layout, found from its files or
          named with ``layout=``: ``"chexpert"`` (``train.csv`` / ``valid.csv``
          with a ``Path`` column), ``"mimic-cxr-jpg"``
          (``mimic-cxr-2.0.0-metadata.csv[.gz]`` and ``files/``), ``"nih-cxr14"``
          (``Data_Entry_2017*.csv`` and ``images*/``); see
          :mod:`medsynth_explore.data.layouts`. These get the harmonised
          columns of :mod:`medsynth_explore.data.labels` beside their raw ones.
        * a folder with ``metadata.csv`` (a filename column plus any attributes)
          and PNG/JPEG/TIFF images (``layout="folder"``); :func:`write_folder`
          writes this layout. Keywords: ``filename_column``, ``columns`` /
          ``labels`` (map raw columns to the harmonised ones, see
          :func:`~medsynth_explore.data.labels.harmonise`).
        * a folder tree of DICOM files (``.dcm`` or files starting with the
          DICOM preamble; ``layout="dicom"``): see :mod:`medsynth_explore.data.dicom`.
        * a MedMNIST ``.npz`` file (``train_images``, ``train_labels``, ...).
          Keyword ``split``: ``"train"``, ``"val"``, ``"test"`` or None for all,
          recorded in a ``split`` column.
        * a ``.csv`` file: a folder CSV (paths relative to the CSV's folder),
          or CheXpert's ``train.csv`` / ``valid.csv``.
    layout : str, optional
        Choose the layout instead of detecting it (needed when a folder
        matches several).
    size : int or (height, width), optional
        Resize every image on load (:mod:`medsynth_explore.data.decode`:
        ``aspect="crop"`` (default), ``"pad"`` or ``"stretch"``); the original
        size goes into ``original_width`` / ``original_height``. Without it
        all images must share one size.
    lazy : True, False or "auto"
        File-backed (pixels stay on disk, decoded in batches when needed),
        in memory, or (default) in memory when the decoded pixels fit in
        :func:`~medsynth_explore.data.imageset.memory_limit` (512 MiB by default).
    on_error : {"raise", "skip"}
        What a missing, unreadable, truncated or oversized file does
        (:mod:`medsynth_explore.data.files`); skipped files are listed in
        ``provenance["skipped"]``.
    allow_outside_root : bool
        Accept CSV paths that are absolute or lead outside the data folder
        (:mod:`medsynth_explore.data.paths`).
    uncertain : {"ignore", "ones", "zeros"}
        CheXpert / MIMIC-CXR uncertain (-1) labels: NA, 1 or 0.
    **kwargs
        Passed to the loader of that source (``channels``, ``pixel_limit``,
        ``workers``, ``verify``, and the layout's own).

    Returns
    -------
    ImageSet

    Raises
    ------
    DataError
        Missing path or unknown name (the message lists the registered
        names), unreadable or truncated file, missing columns or arrays,
        mixed image sizes without ``size=``, paths outside the data folder,
        a folder that matches several layouts.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from medsynth_explore.data import ImageSet
    >>> d = tempfile.mkdtemp()
    >>> _ = ImageSet(np.full((2, 1, 8, 8), 0.5, np.float32)).to_folder(d, overwrite=True)
    >>> load_dataset(d).shape
    (2, 1, 8, 8)
    >>> load_dataset(d, size=4, lazy=True)
    ImageSet(n=2, channels=1, size=4x4, file-backed, source='folder', columns=[filename, original_width, original_height])
    """
    from .layouts import detect_layout, layout_loader

    if isinstance(source, ImageSet):
        return source
    layout = kwargs.pop("layout", None)
    if layout is None and is_registered(source):
        data = dataset_loader(source)(**kwargs)
        if not isinstance(data, ImageSet):
            raise DataError(f"the loader of data set {source!r} returned {type(data).__name__}, not an ImageSet.")
        return data
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"load_dataset needs a data set name, a folder or a file path, got {type(source).__name__}.")
    path = Path(source).expanduser()
    if not path.exists():
        hint = f" {registered_names_hint()}" if isinstance(source, str) and os.sep not in source else ""
        raise DataError(f"no such file or folder: {str(path)!r}.{hint}")
    if layout is not None:
        return layout_loader(layout)(path, **kwargs)
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return read_medmnist(path, **kwargs)
        if path.suffix.lower() == ".csv":
            found = detect_layout(path)
            if found is not None:
                return layout_loader(found)(path, **kwargs)
            return read_folder(path.parent, csv=path.name, **kwargs)
        raise DataError(
            f"cannot load {str(path)!r}: give a folder (images + metadata.csv, a CheXpert / MIMIC-CXR-JPG / NIH layout, "
            "or DICOM files), a .csv file or a MedMNIST .npz file."
        )
    if kwargs.get("csv"):
        return read_folder(path, **kwargs)
    found = detect_layout(path)
    if found is not None:
        return layout_loader(found)(path, **kwargs)
    if _has_dicoms(path):
        return read_dicom_folder(path, **kwargs)
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
        raise DataError(
            f"{str(path)!r} holds images but no metadata.csv; add one with a 'filename' column "
            "(one row per image, any other columns become attributes)."
        )
    raise DataError(f"found no images, metadata.csv, known layout or DICOM files in {str(path)!r}.")


def _has_dicoms(path: Path) -> bool:
    from .dicom import find_dicoms

    return bool(find_dicoms(path))


_read_csv = read_csv_table


def read_folder(
    path: Any,
    csv: str = "metadata.csv",
    channels: int | None = None,
    filename_column: str | None = None,
    *,
    size: Any = None,
    aspect: str = "crop",
    lazy: Any = "auto",
    on_error: str = "raise",
    allow_outside_root: bool = False,
    columns: dict | None = None,
    labels: dict | None = None,
    uncertain: str = "ignore",
    blank: str = "na",
    pixel_limit: int = PIXEL_LIMIT,
    workers: int | None = None,
    verify: bool = False,
) -> ImageSet:
    """Read a folder of images listed in a metadata CSV.

    The CSV needs a filename column (``filename``, ``file``, ``path``,
    ``image`` or ``image_path``, or name it with ``filename_column``); paths
    are relative to the folder and must stay inside it
    (``allow_outside_root=True`` lifts that). Other columns become metadata;
    ``columns=`` / ``labels=`` add harmonised columns from them
    (:func:`~medsynth_explore.data.labels.harmonise`). Intensity, size and
    error rules: :mod:`medsynth_explore.data.decode`, :mod:`medsynth_explore.data.files`.
    Without ``size=`` all images must have one size.
    """
    from .files import build_file_set
    from .paths import resolve_listed

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
    listed = meta[col].tolist()
    files = resolve_listed(path, listed, allow_outside_root=allow_outside_root, where=csv, column=col)
    prov: dict = {}
    prov_file = path / "provenance.json"
    if prov_file.exists():
        try:
            prov = json.loads(prov_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{str(prov_file)!r} is not valid JSON: {exc}") from exc
        if not isinstance(prov, dict):
            raise DataError(f"{str(prov_file)!r} must hold a JSON object, got {type(prov).__name__}.")
        prov.pop("content_hash", None)
    prov.setdefault("source", "folder")
    prov["path"] = str(path)
    meta = meta.drop(columns=["filename"] if col != "filename" and "filename" in meta.columns else []).rename(
        columns={col: "filename"}
    )
    meta["filename"] = meta["filename"].astype(str)
    if columns or labels:
        meta = harmonise(meta, uncertain=uncertain, blank=blank, columns=columns, labels=labels)
    return build_file_set(
        files,
        meta,
        root=path,
        kind="image",
        provenance=prov,
        size=size,
        aspect=aspect,
        channels=channels,
        lazy=lazy,
        on_error=on_error,
        pixel_limit=pixel_limit,
        workers=workers,
        verify=verify,
        listed_in=csv,
        names=[str(v) for v in listed],
    )


# --------------------------------------------------------------------------- MedMNIST
def read_medmnist(
    path: Any,
    split: str | Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    *,
    size: Any = None,
    aspect: str = "crop",
    lazy: Any = "auto",
) -> ImageSet:
    """Read a MedMNIST ``.npz`` file (``{split}_images`` and ``{split}_labels`` arrays).

    The image arrays are not loaded whole: their headers give the shapes, and
    a file-backed set (``lazy=True``, or ``"auto"`` above the memory limit)
    reads rows from inside the ``.npz`` as batches are needed. Nothing is
    unpickled (object arrays are refused).

    Parameters
    ----------
    path : path-like
    split : str, list of str or None
        Which of train/val/test to read; None reads every split present.
    label_names : list of str, optional
        Column names for the label columns; default ``label`` for one column,
        ``label_0``, ``label_1``, ... for multi-label files.
    size, aspect : resize on load (see :mod:`medsynth_explore.data.decode`).
    lazy : True, False or "auto"
    """
    from .decode import DecodeSettings, check_size, resize_array
    from .files import LAZY_CHOICES
    from .imageset import memory_limit
    from .sources import ConcatSource, NpzSource, file_keys, npz_member_layout

    path = Path(path).expanduser()
    out_hw = check_size(size)
    if lazy not in LAZY_CHOICES:
        raise DataError(f"lazy must be True (file-backed), False (in memory) or 'auto', got {lazy!r}.")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"cannot read {str(path)!r} as an .npz file (corrupt, truncated or not numpy): {exc}") from exc
    sources, frames = [], []
    st = path.stat()
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
        for s in wanted:
            layout = npz_member_layout(path, f"{s}_images")
            _, dtype, row_shape, _ = layout
            if len(row_shape) == 2:
                c, h, w = 1, *row_shape
            elif len(row_shape) == 3 and row_shape[-1] in (1, 3):
                h, w, c = row_shape
            else:
                raise DataError(f"'{s}_images' has rows of shape {row_shape}; expected (N, H, W) or (N, H, W, C).")
            if f"{s}_labels" not in z.files:
                raise DataError(f"{str(path)!r} has '{s}_images' but no '{s}_labels'.")
            try:
                y = np.asarray(z[f"{s}_labels"])
            except Exception as exc:
                raise DataError(f"cannot read '{s}_labels' from {str(path)!r} (truncated file?): {exc}") from exc
            n_rows = _npz_rows(path, f"{s}_images")
            if len(y) != n_rows:
                raise DataError(f"'{s}_labels' has {len(y)} rows but '{s}_images' has {n_rows}.")
            settings = DecodeSettings(size=out_hw, aspect=aspect, channels=c)
            transform = (lambda a, hw=out_hw: resize_array(a, hw, aspect)) if out_hw is not None else None
            shape = (c, *(out_hw if out_hw is not None else (h, w)))
            keys = file_keys(
                [f"{path.resolve()}::{s}_images::{i}" for i in range(n_rows)],
                [(st.st_size, st.st_mtime_ns)] * n_rows,
                settings.digest(),
            )
            sources.append(NpzSource(path, f"{s}_images", np.arange(n_rows), shape, keys, transform, layout, {"size": out_hw}))
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
    src = sources[0] if len(sources) == 1 else ConcatSource(sources)
    meta = pd.concat(frames, ignore_index=True)
    prov = {"source": "medmnist", "path": str(path), "splits": wanted}
    if lazy is False or (lazy == "auto" and src.nbytes <= memory_limit()):
        return ImageSet(src.read(np.arange(len(src))), meta, prov)
    prov["file_backed"] = True
    return ImageSet(metadata=meta, provenance=prov, source=src)


def _npz_rows(path: Path, member: str) -> int:
    """Number of rows of an array inside an ``.npz``, from its header."""
    import zipfile

    from numpy.lib import format as npf

    try:
        with zipfile.ZipFile(path) as z, z.open(member + ".npy") as fh:
            version = npf.read_magic(fh)
            shape = (npf.read_array_header_1_0(fh) if version == (1, 0) else npf.read_array_header_2_0(fh))[0]
    except Exception as exc:
        raise DataError(f"cannot read {member!r} from {str(path)!r} (corrupt or truncated): {exc}") from exc
    return int(shape[0]) if shape else 0
