"""The ``mimic-cxr-jpg`` layout: MIMIC-CXR-JPG 2.x (Johnson et al. 2019).

What the layout is (from the data set's documentation on PhysioNet):

* ``files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg`` (``XX``: the first two digits
  of the subject id);
* ``mimic-cxr-2.0.0-metadata.csv[.gz]``: one row per image, ``dicom_id``,
  ``subject_id``, ``study_id``, ``ViewPosition``, ``Rows``, ``Columns``,
  ``StudyDate``, ...;
* ``mimic-cxr-2.0.0-chexpert.csv[.gz]`` (and ``-negbio``): the 14 CheXpert
  labels per study (``subject_id``, ``study_id``), 1.0 / 0.0 / -1.0 / blank;
* ``mimic-cxr-2.0.0-split.csv[.gz]``: ``dicom_id``, ``study_id``,
  ``subject_id``, ``split`` (train / validate / test).

Demographics are not part of MIMIC-CXR-JPG: they come from MIMIC-IV's
``patients.csv[.gz]`` (``subject_id``, ``gender``, ``anchor_age``,
``anchor_year``) and ``admissions.csv[.gz]`` (``subject_id``, ``race``; older
releases ``ethnicity``) when the user passes them (``patients=``,
``admissions=``). Both data sets shift dates per patient the same way, so the
age at a study is ``anchor_age + (year of StudyDate - anchor_year)``
(``anchor_age`` alone when the study date is missing). A patient with
admissions of several recorded races gets the most frequent (the first
listed on a tie); the raw per-admission values are not kept.

Metadata: the metadata CSV's columns, the label columns (raw names), ``split``
where the split file exists, ``filename`` and the harmonised ``patient_id``
(``subject_id``), ``view``, findings (under ``uncertain``), and ``sex``,
``age``, ``race`` with MIMIC-IV's files. Rows whose JPEG is absent (a partial
download) follow ``on_error``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from ...errors import DataError
from ..files import build_file_set, read_csv_table
from ..labels import CHEXPERT_LABELS, harmonise
from ..paths import resolve_listed
from .common import reject_unknown, split_file_keywords

__all__ = ["load_mimic_cxr_jpg", "detect", "METADATA", "LABELERS", "SPLITS"]

METADATA = "mimic-cxr-2.0.0-metadata.csv"
LABELERS = {"chexpert": "mimic-cxr-2.0.0-chexpert.csv", "negbio": "mimic-cxr-2.0.0-negbio.csv"}
SPLIT = "mimic-cxr-2.0.0-split.csv"
SPLITS = ("train", "validate", "test")


def _find(root: Path, name: str) -> Optional[Path]:
    for cand in (root / name, root / (name + ".gz")):
        if cand.is_file():
            return cand
    return None


def detect(path: Any) -> bool:
    """Whether ``path`` is a MIMIC-CXR-JPG folder (its metadata CSV is there)."""
    p = Path(path)
    return p.is_dir() and _find(p, METADATA) is not None


def _need(t: pd.DataFrame, cols: Sequence[str], where: Path) -> None:
    missing = [c for c in cols if c not in t.columns]
    if missing:
        raise DataError(f"{str(where)!r} lacks column(s) {missing} (columns: {list(t.columns)}).")


def _int_ids(t: pd.DataFrame, cols: Sequence[str], where: Path) -> pd.DataFrame:
    t = t.copy()
    for c in cols:
        v = pd.to_numeric(t[c], errors="coerce")
        if v.isna().any() or (v % 1 != 0).any() or (v < 0).any():
            bad = t[c][v.isna() | (v % 1 != 0) | (v < 0)].iloc[0]
            raise DataError(f"{str(where)!r}: column {c!r} must hold whole non-negative numbers; found {bad!r}.")
        t[c] = v.astype(np.int64)
    return t


def _age_at_study(meta: pd.DataFrame) -> pd.Series:
    age = pd.to_numeric(meta["anchor_age"], errors="coerce")
    if "StudyDate" in meta.columns and "anchor_year" in meta.columns:
        year = pd.to_numeric(meta["StudyDate"], errors="coerce") // 10000
        shift = year - pd.to_numeric(meta["anchor_year"], errors="coerce")
        age = age + shift.where(shift.notna(), 0)
    return age.where((age >= 0) & (age <= 120))


def load_mimic_cxr_jpg(
    path: Any,
    split: Optional[str | Sequence[str]] = None,
    labeler: str = "chexpert",
    patients: Any = None,
    admissions: Any = None,
    uncertain: str = "ignore",
    blank: str = "na",
    allow_outside_root: bool = False,
    **kwargs: Any,
):
    """Load MIMIC-CXR-JPG from its folder (the one with ``files/`` and the CSVs).

    Parameters
    ----------
    path : path-like
    split : {"train", "validate", "test"}, a list of them, or None (all)
        Needs ``mimic-cxr-2.0.0-split.csv[.gz]``.
    labeler : {"chexpert", "negbio"}
        Which label file to read (blank findings when it is absent).
    patients, admissions : path-like, optional
        MIMIC-IV's ``patients.csv[.gz]`` and ``admissions.csv[.gz]``, for
        ``sex``, ``age`` and ``race``.
    uncertain, blank, allow_outside_root, **kwargs
        As for :func:`~medsynth_explore.data.layouts.chexpert.load_chexpert`.

    Returns
    -------
    ImageSet
    """
    files_kw, rest = split_file_keywords(kwargs)
    reject_unknown(rest, "mimic-cxr-jpg", ())
    root = Path(path).expanduser()
    md_path = _find(root, METADATA)
    if md_path is None:
        raise DataError(f"{str(root)!r} has no {METADATA}[.gz]; it is not a MIMIC-CXR-JPG folder.")
    if labeler not in LABELERS:
        raise DataError(f"labeler must be one of {sorted(LABELERS)}, got {labeler!r}.")
    meta = read_csv_table(md_path, "MIMIC-CXR metadata")
    _need(meta, ("dicom_id", "subject_id", "study_id"), md_path)
    meta = _int_ids(meta, ("subject_id", "study_id"), md_path)
    meta["dicom_id"] = meta["dicom_id"].astype(str)
    lab_path = _find(root, LABELERS[labeler])
    if lab_path is not None:
        labels = read_csv_table(lab_path, "MIMIC-CXR labels")
        _need(labels, ("subject_id", "study_id"), lab_path)
        labels = _int_ids(labels, ("subject_id", "study_id"), lab_path).drop_duplicates(["subject_id", "study_id"])
        keep = ["subject_id", "study_id"] + [c for c in CHEXPERT_LABELS if c in labels.columns]
        meta = meta.merge(labels[keep], on=["subject_id", "study_id"], how="left")
    for c in CHEXPERT_LABELS:
        if c not in meta.columns:
            meta[c] = np.nan
    split_path = _find(root, SPLIT)
    if split_path is not None:
        sp = read_csv_table(split_path, "MIMIC-CXR split")
        _need(sp, ("dicom_id", "split"), split_path)
        sp = sp[["dicom_id", "split"]].astype({"dicom_id": str}).drop_duplicates("dicom_id")
        meta = meta.merge(sp, on="dicom_id", how="left")
    if split is not None:
        wanted = [split] if isinstance(split, str) else list(split)
        bad = [s for s in wanted if s not in SPLITS]
        if bad:
            raise DataError(f"split must be one of {list(SPLITS)} or a list of them; got {bad[0]!r}.")
        if "split" not in meta.columns:
            raise DataError(f"split={split!r} needs {SPLIT}[.gz] in {str(root)!r}.")
        meta = meta[meta["split"].isin(wanted)].reset_index(drop=True)
    if patients is not None:
        pt_path = Path(patients).expanduser()
        pt = read_csv_table(pt_path, "MIMIC-IV patients")
        _need(pt, ("subject_id", "gender", "anchor_age"), pt_path)
        pt = _int_ids(pt, ("subject_id",), pt_path).drop_duplicates("subject_id")
        cols = ["subject_id", "gender", "anchor_age"] + (["anchor_year"] if "anchor_year" in pt.columns else [])
        meta = meta.merge(pt[cols], on="subject_id", how="left")
        meta["age"] = _age_at_study(meta)
    if admissions is not None:
        ad_path = Path(admissions).expanduser()
        ad = read_csv_table(ad_path, "MIMIC-IV admissions")
        col = "race" if "race" in ad.columns else ("ethnicity" if "ethnicity" in ad.columns else None)
        if col is None:
            raise DataError(f"{str(ad_path)!r} has neither a 'race' nor an 'ethnicity' column.")
        _need(ad, ("subject_id",), ad_path)
        ad = _int_ids(ad, ("subject_id",), ad_path)
        ad = ad[ad[col].notna()]
        mode = ad.groupby("subject_id", sort=False)[col].agg(lambda s: s.value_counts(sort=True).index[0])
        meta["race"] = pd.array(meta["subject_id"].map(mode), dtype="string")
    if len(meta) == 0:
        raise DataError(f"no MIMIC-CXR-JPG images left in {str(root)!r} after the split filter.")
    sid = meta["subject_id"].astype(str)
    rel = ("files/p" + sid.str[:2] + "/p" + sid + "/s" + meta["study_id"].astype(str) + "/" + meta["dicom_id"] + ".jpg").tolist()
    files = resolve_listed(root, rel, allow_outside_root=allow_outside_root, where=md_path.name, column="dicom_id")
    meta.insert(0, "filename", rel)
    meta["patient_id"] = pd.array(sid, dtype="string")
    meta = harmonise(meta, uncertain=uncertain, blank=blank)
    prov = {
        "source": "mimic-cxr-jpg",
        "layout": "mimic-cxr-jpg",
        "path": str(root),
        "labeler": labeler if lab_path is not None else None,
        "uncertain": uncertain,
        "blank": blank,
        "demographics": bool(patients is not None),
    }
    return build_file_set(files, meta, root=root, kind="image", provenance=prov, listed_in=md_path.name, names=rel, **files_kw)
