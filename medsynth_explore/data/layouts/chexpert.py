"""The ``chexpert`` layout: CheXpert (Irvin et al. 2019), full or ``-small``.

What the layout is (from the data set's documentation):

* ``CheXpert-v1.0[-small]/train.csv`` and ``valid.csv``, one row per
  image: ``Path``, ``Sex`` (``Male``/``Female``/``Unknown``), ``Age``,
  ``Frontal/Lateral``, ``AP/PA`` and the 14 observations (No Finding,
  Enlarged Cardiomediastinum, Cardiomegaly, Lung Opacity, Lung Lesion,
  Edema, Consolidation, Pneumonia, Atelectasis, Pneumothorax, Pleural
  Effusion, Pleural Other, Fracture, Support Devices) valued 1.0, 0.0, -1.0
  (uncertain) or blank (not mentioned);
* ``Path`` is relative to the folder *above* the dataset folder
  (``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``).

Users rename the dataset folder and move the CSVs, so a path is resolved
against the CSV's own folder after dropping its leading dataset-folder
component when that is where the file is; else as written under that folder;
else under the folder above it, the documented parent (which then becomes
the data root): :func:`medsynth_explore.data.paths.strip_dataset_folder`.
No path may leave the data root.

Metadata: the raw columns, ``split`` (the CSV's name: ``train`` / ``valid``),
``filename`` (the path under the data root), ``study`` (``patient00001/study1``),
and the harmonised ``patient_id`` (``patient00001``), ``age``, ``sex``,
``view`` (``LATERAL`` for lateral images, else ``AP``/``PA``) and the 14
findings under the ``uncertain`` policy (default U-Ignore: NA).

:func:`write_chexpert` writes an image set in this layout (the tutorial
builds one from PhantomCXR images).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from ...errors import DataError
from ..files import build_file_set, read_csv_table
from ..labels import CHEXPERT_LABELS, harmonise
from ..paths import resolve_listed, strip_dataset_folder
from .common import reject_unknown, split_file_keywords

__all__ = ["load_chexpert", "write_chexpert", "detect", "CSV_NAMES", "DATASET_PREFIX"]

#: The CSVs of the layout, in the order they are read.
CSV_NAMES = ("train.csv", "valid.csv")
#: Names of the dataset folder start with this.
DATASET_PREFIX = "CheXpert-v1.0"
_NEEDED = ("Path", "Frontal/Lateral")


def _header(csv: Path) -> list[str]:
    try:
        with open(csv, encoding="utf-8", errors="replace") as fh:
            return [c.strip().strip('"') for c in fh.readline().rstrip("\r\n").split(",")]
    except OSError:
        return []


def _is_chexpert_csv(csv: Path) -> bool:
    return csv.is_file() and all(c in _header(csv) for c in _NEEDED)


def _dataset_folder(path: Path) -> Optional[Path]:
    """The folder holding the CSVs: ``path`` itself, or its one ``CheXpert-v1.0*`` child that has them."""
    if any(_is_chexpert_csv(path / n) for n in CSV_NAMES):
        return path
    kids = [p for p in sorted(path.glob(DATASET_PREFIX + "*")) if p.is_dir() and any(_is_chexpert_csv(p / n) for n in CSV_NAMES)]
    return kids[0] if len(kids) == 1 else None


def detect(path: Any) -> bool:
    """Whether ``path`` (a folder, or a CSV file) is in the CheXpert layout."""
    p = Path(path)
    if p.is_file():
        return p.suffix.lower() == ".csv" and _is_chexpert_csv(p)
    return p.is_dir() and _dataset_folder(p) is not None


def load_chexpert(
    path: Any,
    split: Optional[str | Sequence[str]] = None,
    uncertain: str = "ignore",
    blank: str = "na",
    allow_outside_root: bool = False,
    **kwargs: Any,
):
    """Load CheXpert from its folder (or the folder above it, or one of its CSVs).

    Parameters
    ----------
    path : path-like
        The dataset folder (``CheXpert-v1.0-small``, however it is named now),
        the folder above it, or ``train.csv`` / ``valid.csv`` itself.
    split : {"train", "valid"}, list of them, or None
        Which CSVs to read; None reads every one present.
    uncertain : {"ignore", "ones", "zeros"}
        U-Ignore (NA), U-Ones or U-Zeros for -1.0 labels.
    blank : {"na", "zeros"}
        Blank labels: unknown (NA, default) or absent.
    allow_outside_root : bool
        Accept paths that lead outside the data root.
    **kwargs
        ``size``, ``aspect``, ``channels``, ``lazy``, ``on_error``,
        ``pixel_limit``, ``workers``, ``verify`` (:func:`medsynth_explore.data.io.read_folder`).

    Returns
    -------
    ImageSet
    """
    files_kw, rest = split_file_keywords(kwargs)
    reject_unknown(rest, "chexpert", ("split", "uncertain", "blank", "allow_outside_root"))
    p = Path(path).expanduser()
    if p.is_file():
        csvs, root = [p], p.parent
    else:
        root = _dataset_folder(p)
        if root is None:
            raise DataError(
                f"{str(p)!r} is not a CheXpert folder: expected train.csv / valid.csv with columns {list(_NEEDED)} "
                f"in it or in a {DATASET_PREFIX}* folder below it."
            )
        wanted = CSV_NAMES if split is None else tuple(f"{s}.csv" for s in ([split] if isinstance(split, str) else split))
        for w in wanted:
            if w not in CSV_NAMES:
                raise DataError(f"split must be 'train', 'valid' or a list of them; got {w[:-4]!r}.")
        csvs = [root / w for w in wanted if (root / w).is_file()]
        if not csvs:
            raise DataError(f"{str(root)!r} has none of {list(wanted)}.")
    frames, files, listed = [], [], []
    base_root = root
    dropped = None
    for csv in csvs:
        t = read_csv_table(csv, "CheXpert CSV")
        missing = [c for c in ("Path",) if c not in t.columns]
        if missing:
            raise DataError(
                f"{str(csv)!r} has no {missing[0]!r} column; CheXpert CSVs list images in 'Path' (columns: {list(t.columns)})."
            )
        if len(t) == 0:
            continue
        raw = t["Path"].tolist()
        for i, v in enumerate(raw):
            if not isinstance(v, str) or not v.strip():
                raise DataError(f"row {i + 1} of {csv.name} has an empty 'Path'; every row must name an image.")
        rel, base, d = strip_dataset_folder(raw, root, (DATASET_PREFIX,))
        dropped = dropped or d
        base_root = base
        resolved = resolve_listed(base, rel, allow_outside_root=allow_outside_root, where=csv.name, column="Path")
        t = t.copy()
        t.insert(0, "split", csv.stem)
        t.insert(1, "filename", rel)
        frames.append(t)
        files.extend(resolved)
        listed.extend(raw)
    if not frames:
        raise DataError(f"the CheXpert CSVs in {str(root)!r} list no images.")
    meta = pd.concat(frames, ignore_index=True)
    for col in CHEXPERT_LABELS:  # a CSV without some observation column: unknown, not absent
        if col not in meta.columns:
            meta[col] = np.nan
    ids = [re.search(r"(patient\d+)", str(x)) for x in meta["Path"]]
    studies = [re.search(r"(patient\d+)/(study\d+)", str(x).replace("\\", "/")) for x in meta["Path"]]
    meta["patient_id"] = pd.array([m.group(1) if m else None for m in ids], dtype="string")
    meta["study"] = pd.array([f"{m.group(1)}/{m.group(2)}" if m else None for m in studies], dtype="string")
    meta = harmonise(meta, uncertain=uncertain, blank=blank)
    prov = {
        "source": "chexpert",
        "layout": "chexpert",
        "path": str(base_root),
        "csvs": [c.name for c in csvs],
        "uncertain": uncertain,
        "blank": blank,
        "dropped_prefix": dropped,
    }
    return build_file_set(
        files,
        meta,
        root=base_root,
        kind="image",
        provenance=prov,
        listed_in=" / ".join(c.name for c in csvs),
        names=[str(v) for v in listed],
        **files_kw,
    )


def _label_value(v: Any) -> Any:
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return np.nan
    return float(v)


def write_chexpert(
    data: Any,
    folder: Any,
    split: str = "train",
    name: str = "CheXpert-v1.0-small",
    view: str = "PA",
    quality: int = 95,
    overwrite: bool = False,
) -> Path:
    """Write an image set in the CheXpert layout: ``folder/name/{split}.csv`` and JPEG files.

    Labels come from the harmonised columns (:func:`~medsynth_explore.data.labels.harmonise`
    is applied first, so PhantomCXR's ``effusion`` becomes ``Pleural Effusion``);
    a finding the set does not record is left blank. ``Path`` is written
    relative to ``folder``, as CheXpert does (``name/train/patient00001/study1/view1_frontal.jpg``).
    Images become 8-bit grey JPEGs (``quality``). ``view`` is used for
    images without a ``view`` column (PhantomCXR draws PA radiographs).

    Returns
    -------
    pathlib.Path
        The dataset folder ``folder/name``.

    Raises
    ------
    DataError
        The CSV exists already (without ``overwrite``), or images with more than one channel.
    """
    from PIL import Image

    from ..labels import normalise_view

    folder = Path(folder).expanduser()
    root = folder / name
    csv = root / f"{split}.csv"
    if csv.exists() and not overwrite:
        raise DataError(f"{str(csv)!r} exists; pass overwrite=True to replace it.")
    if data.shape[1] != 1:
        raise DataError(f"CheXpert images are grey; this set has {data.shape[1]} channels.")
    meta = harmonise(data.metadata)
    n = len(data)
    pid = meta["patient_id"].astype(str).tolist() if "patient_id" in meta.columns else [f"p{i}" for i in range(n)]
    order = {p: k for k, p in enumerate(dict.fromkeys(pid))}
    views = normalise_view(meta["view"].tolist()) if "view" in meta.columns else pd.Series([view] * n, dtype="string")
    views = views.fillna(view)
    seen: dict[str, int] = {}
    rows = []
    batches = data.batches(64)
    k = 0
    for batch in batches:
        for im in batch:
            p = pid[k]
            seen[p] = seen.get(p, 0) + 1
            frontal = str(views.iloc[k]) != "LATERAL"
            rel = f"{split}/patient{order[p] + 1:05d}/study{seen[p]}/view1_{'frontal' if frontal else 'lateral'}.jpg"
            out = root / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.rint(im[0] * 255.0).astype(np.uint8), mode="L").save(out, quality=int(quality))
            sex = meta["sex"].iloc[k] if "sex" in meta.columns else None
            age = meta["age"].iloc[k] if "age" in meta.columns else None
            row = {
                "Path": f"{name}/{rel}",
                "Sex": {"F": "Female", "M": "Male"}.get(str(sex), "Unknown"),
                "Age": int(round(float(age))) if age is not None and not pd.isna(age) else np.nan,
                "Frontal/Lateral": "Frontal" if frontal else "Lateral",
                "AP/PA": str(views.iloc[k]) if frontal else np.nan,
            }
            for raw, voc in CHEXPERT_LABELS.items():
                row[raw] = _label_value(meta[voc].iloc[k]) if voc in meta.columns else np.nan
            rows.append(row)
            k += 1
    pd.DataFrame(rows).to_csv(csv, index=False)
    return root
