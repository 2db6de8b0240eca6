"""The ``nih-cxr14`` layout: NIH ChestX-ray14 (Wang et al. 2017).

What the layout is (from the data set's documentation):

* ``Data_Entry_2017.csv`` (or the re-issued ``Data_Entry_2017_v2020.csv``),
  one row per image: ``Image Index`` (``00000001_000.png``), ``Finding
  Labels`` (``Cardiomegaly|Effusion`` or ``No Finding``), ``Follow-up #``,
  ``Patient ID``, ``Patient Age``, ``Patient Gender`` (M/F), ``View
  Position`` (PA/AP), original size and pixel spacing;
* the PNGs (1024 x 1024, 8-bit grey) in ``images/`` or, as the archives
  unpack, ``images_001/images/`` ... ``images_012/images/``;
* optionally ``train_val_list.txt`` and ``test_list.txt``, the official split.

Files are found by their ``Image Index`` under the ``images*`` folders (a
name must be a plain file name; a link that leads out of the data folder is
refused unless ``allow_outside_root=True``). Metadata: the raw columns,
``split`` (``train_val`` / ``test``) when the lists exist, ``filename``,
and the harmonised ``patient_id``, ``age`` (years; NIH's few impossible ages
above 120 become NA), ``sex``, ``view`` and the findings: NIH's 14 and
``no_finding`` as 0/1 and ``lung_lesion`` = nodule or mass (the CheXpert
observations NIH does not label get no column). Rows whose PNG is absent
(not every archive unpacked) follow ``on_error``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd

from ...errors import DataError
from ..files import build_file_set, read_csv_table
from ..labels import harmonise
from ..paths import is_inside
from .common import reject_unknown, split_file_keywords

__all__ = ["load_nih_cxr14", "detect", "CSV_NAMES"]

#: The label file, newest first.
CSV_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
_LISTS = {"train_val": "train_val_list.txt", "test": "test_list.txt"}


def _csv(root: Path) -> Optional[Path]:
    return next((root / n for n in CSV_NAMES if (root / n).is_file()), None)


def detect(path: Any) -> bool:
    """Whether ``path`` is a NIH ChestX-ray14 folder (its ``Data_Entry_2017*.csv`` is there)."""
    p = Path(path)
    return p.is_dir() and _csv(p) is not None


def _index_images(root: Path) -> dict[str, Path]:
    """File name -> path of every PNG under the ``images*`` folders (the first found wins)."""
    out: dict[str, Path] = {}
    for top in sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower().startswith("images")):
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                if name.lower().endswith(".png"):
                    out.setdefault(name, Path(dirpath) / name)
    return out


def load_nih_cxr14(
    path: Any,
    split: Optional[str | Sequence[str]] = None,
    allow_outside_root: bool = False,
    **kwargs: Any,
):
    """Load NIH ChestX-ray14 from its folder.

    Parameters
    ----------
    path : path-like
    split : {"train_val", "test"}, a list of them, or None (all)
        Needs ``train_val_list.txt`` / ``test_list.txt``.
    allow_outside_root : bool
    **kwargs
        ``size``, ``aspect``, ``channels``, ``lazy``, ``on_error``,
        ``pixel_limit``, ``workers``, ``verify``. (``uncertain`` is accepted and
        ignored: NIH labels have no uncertain value.)

    Returns
    -------
    ImageSet
    """
    files_kw, rest = split_file_keywords(kwargs)
    rest.pop("uncertain", None)
    rest.pop("blank", None)
    reject_unknown(rest, "nih-cxr14", ("split", "allow_outside_root"))
    root = Path(path).expanduser()
    csv = _csv(root)
    if csv is None:
        raise DataError(f"{str(root)!r} has no {' or '.join(CSV_NAMES)}; it is not a NIH ChestX-ray14 folder.")
    meta = read_csv_table(csv, "NIH ChestX-ray14 labels")
    meta = meta.drop(columns=[c for c in meta.columns if str(c).startswith("Unnamed")])
    missing = [c for c in ("Image Index", "Finding Labels") if c not in meta.columns]
    if missing:
        raise DataError(f"{str(csv)!r} lacks column(s) {missing} (columns: {list(meta.columns)}).")
    names = meta["Image Index"].astype(str).str.strip()
    for i, nm in enumerate(names):
        if not nm or "/" in nm or "\\" in nm or nm in (".", "..") or "\x00" in nm:
            raise DataError(
                f"row {i + 1} of {csv.name} has 'Image Index' {nm!r}; it must be a plain file name like 00000001_000.png."
            )
    lists = {k: root / v for k, v in _LISTS.items() if (root / v).is_file()}
    if lists:
        which = {}
        for k, f in lists.items():
            for line in f.read_text(errors="replace").split():
                which.setdefault(line.strip(), k)
        meta.insert(0, "split", pd.array(names.map(which), dtype="string"))
    if split is not None:
        wanted = [split] if isinstance(split, str) else list(split)
        bad = [s for s in wanted if s not in _LISTS]
        if bad:
            raise DataError(f"split must be one of {list(_LISTS)} or a list of them; got {bad[0]!r}.")
        if "split" not in meta.columns:
            raise DataError(f"split={split!r} needs {' and '.join(_LISTS.values())} in {str(root)!r}.")
        keep = meta["split"].isin(wanted).to_numpy()
        meta, names = meta[keep].reset_index(drop=True), names[keep].reset_index(drop=True)
    if len(meta) == 0:
        raise DataError(f"{str(csv)!r} lists no images (after the split filter).")
    index = _index_images(root)
    root_r = root.resolve()
    files, rel = [], []
    for nm in names:
        p = index.get(nm)
        if p is None:
            p = root / "images" / nm  # where it should be: reported as missing by the loader
        r = p.resolve()
        if not allow_outside_root and not is_inside(r, root_r):
            raise DataError(f"{nm!r} in {str(root)!r} links to {str(r)!r}, outside the folder; pass allow_outside_root=True.")
        files.append(r)
        rel.append(p.relative_to(root).as_posix())
    meta.insert(0, "filename", rel)
    meta = harmonise(meta)
    prov = {"source": "nih-cxr14", "layout": "nih-cxr14", "path": str(root), "csv": csv.name, "split_lists": sorted(lists)}
    return build_file_set(
        files, meta, root=root, kind="image", provenance=prov, listed_in=csv.name, names=list(names), **files_kw
    )
