"""One label vocabulary for chest radiographs, real and synthetic.

Public chest X-ray data sets name the same findings differently (CheXpert's
``Pleural Effusion``, NIH ChestX-ray14's ``Effusion``, PhantomCXR's
``effusion``) and code sex and view differently (``Male``/``Female``, ``M``/``F``).
Every loader maps its raw columns into the names below, keeping the raw
columns beside them, so that real and synthetic sides share finding and
subgroup columns without anyone renaming anything.

Harmonised columns: ``age`` (years), ``sex`` (``"F"``/``"M"``), ``view``
(``"PA"``/``"AP"``/``"LATERAL"``), ``patient_id``, ``race`` where a data set
records it, and one column per finding in :data:`FINDINGS` (nullable
integers: 1 present, 0 absent, NA unknown, or uncertain under the
``"ignore"`` policy).

Uncertain labels (CheXpert's and MIMIC-CXR's -1.0) follow a policy, the
U-Ignore / U-Ones / U-Zeros of the CheXpert paper (Irvin et al. 2019):
``uncertain="ignore"`` (default: NA), ``"ones"`` (1) or ``"zeros"`` (0).
A blank label (the labeler found no mention) is NA by default;
``blank="zeros"`` reads it as absent, as many CheXpert papers do.

Where the mapping happens: the real-data layouts
(:mod:`medsynth_explore.data.layouts`) call :func:`harmonise` when they
load, and :func:`medsynth_explore.evaluate`, the Session's fairness analysis
and the Fairness panel call it on both sides when they compare, so that a
synthetic set from PhantomCXR or a shipped generator (``effusion``,
``nodule``, ``chest_tube``, read through :data:`PHANTOMCXR_FINDINGS`) meets a
real set (``pleural_effusion``, ``lung_lesion``, ``support_devices``) with
nobody renaming anything, and also sets written to folders by any earlier
version. The sets' own metadata is not changed by a comparison (harmonise
works on a copy and only adds columns), so ``conditions={"findings":
["effusion"]}`` and every existing column name keep working.

Examples
--------
>>> CHEXPERT_LABELS["Pleural Effusion"], NIH_LABELS["Pleural_Thickening"]
('pleural_effusion', 'pleural_thickening')
>>> normalise_sex(["Male", "female", "Unknown", None]).tolist()
['M', 'F', <NA>, <NA>]
>>> h = harmonise(pd.DataFrame({"sex": ["F", "M"], "effusion": [1, 0], "nodule": [0, 1]}))
>>> h[["pleural_effusion", "lung_lesion"]].astype(int).values.tolist()
[[1, 0], [0, 1]]
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Optional

import numpy as np
import pandas as pd

from ..errors import DataError

__all__ = [
    "CHEXPERT_LABELS",
    "NIH_LABELS",
    "CHEXPERT_FINDINGS",
    "FINDINGS",
    "PHANTOMCXR_FINDINGS",
    "HARMONISED_COLUMNS",
    "UNCERTAIN_POLICIES",
    "finding_values",
    "for_grouping",
    "harmonise",
    "nih_findings",
    "normalise_age",
    "normalise_sex",
    "normalise_view",
    "vocabulary_twins",
]

#: Columns every real set gets beside the findings (``race`` only where the data set has it).
HARMONISED_COLUMNS = ("age", "sex", "view", "patient_id", "race")
#: Policies for uncertain (-1) labels: NA, 1 or 0.
UNCERTAIN_POLICIES = ("ignore", "ones", "zeros")
_BLANK_POLICIES = ("na", "zeros")

#: CheXpert and MIMIC-CXR-JPG (its ``mimic-cxr-2.0.0-chexpert.csv``) observation columns -> vocabulary names.
CHEXPERT_LABELS = {
    "No Finding": "no_finding",
    "Enlarged Cardiomediastinum": "enlarged_cardiomediastinum",
    "Cardiomegaly": "cardiomegaly",
    "Lung Opacity": "lung_opacity",
    "Lung Lesion": "lung_lesion",
    "Edema": "edema",
    "Consolidation": "consolidation",
    "Pneumonia": "pneumonia",
    "Atelectasis": "atelectasis",
    "Pneumothorax": "pneumothorax",
    "Pleural Effusion": "pleural_effusion",
    "Pleural Other": "pleural_other",
    "Fracture": "fracture",
    "Support Devices": "support_devices",
}

#: NIH ChestX-ray14 ``Finding Labels`` names -> vocabulary names.
NIH_LABELS = {
    "No Finding": "no_finding",
    "Atelectasis": "atelectasis",
    "Cardiomegaly": "cardiomegaly",
    "Consolidation": "consolidation",
    "Edema": "edema",
    "Effusion": "pleural_effusion",
    "Emphysema": "emphysema",
    "Fibrosis": "fibrosis",
    "Hernia": "hernia",
    "Infiltration": "infiltration",
    "Mass": "mass",
    "Nodule": "nodule",
    "Pleural_Thickening": "pleural_thickening",
    "Pneumonia": "pneumonia",
    "Pneumothorax": "pneumothorax",
}

#: The 14 CheXpert observations in their published order (the labels of RoentGen-style text-to-image models).
CHEXPERT_FINDINGS = tuple(CHEXPERT_LABELS.values())

#: Every finding of the vocabulary: the CheXpert observations, then NIH's extras.
FINDINGS = CHEXPERT_FINDINGS + tuple(v for v in NIH_LABELS.values() if v not in CHEXPERT_FINDINGS)

#: PhantomCXR's labels (and the shipped generators' conditions) -> the vocabulary columns they stand for.
#: A simulated nodule is a lung lesion in CheXpert's terms and a nodule in NIH's; a chest tube is a support device.
PHANTOMCXR_FINDINGS = {
    "cardiomegaly": ("cardiomegaly",),
    "nodule": ("nodule", "lung_lesion"),
    "effusion": ("pleural_effusion",),
    "pneumothorax": ("pneumothorax",),
    "chest_tube": ("support_devices",),
}

_SEX = {"m": "M", "male": "M", "man": "M", "f": "F", "female": "F", "woman": "F"}
_VIEW = {"pa": "PA", "ap": "AP", "lateral": "LATERAL", "lat": "LATERAL", "ll": "LATERAL", "rl": "LATERAL", "lateral_l": "LATERAL"}


def _normalise(values: Iterable[Any], table: dict) -> pd.Series:
    s = pd.Series(list(values) if not isinstance(values, pd.Series) else values, dtype=object)
    out = s.map(lambda v: table.get(str(v).strip().lower()) if isinstance(v, str) else None)
    return out.astype("string")


def normalise_sex(values: Iterable[Any]) -> pd.Series:
    """``"F"``/``"M"`` from the ways data sets write sex (``Female``, ``M``, ``male``); anything else is NA.

    Examples
    --------
    >>> normalise_sex(["F", "M", "Other"]).tolist()
    ['F', 'M', <NA>]
    """
    return _normalise(values, _SEX)


def normalise_view(values: Iterable[Any]) -> pd.Series:
    """``"PA"``/``"AP"``/``"LATERAL"`` from DICOM ViewPosition-style codes (``PA``, ``AP``, ``LL``, ``LATERAL``).

    Examples
    --------
    >>> normalise_view(["pa", "AP", "LL", "AP AXIAL"]).tolist()
    ['PA', 'AP', 'LATERAL', <NA>]
    """
    return _normalise(values, _VIEW)


#: Raw column names each harmonised column is read from when it is missing (first present wins).
_SOURCES = {
    "sex": ("Sex", "PatientSex", "Patient Gender", "gender", "Gender", "patient_sex"),
    "age": ("Age", "PatientAge", "Patient Age", "anchor_age", "patient_age"),
    "view": ("ViewPosition", "View Position", "view_position"),
    "patient_id": ("Patient ID", "PatientID", "subject_id", "patient"),
    "race": ("Race", "ethnicity", "Ethnicity"),
}

_LABEL_TEXT = {
    "1": 1.0, "1.0": 1.0, "true": 1.0, "yes": 1.0, "positive": 1.0, "present": 1.0,
    "0": 0.0, "0.0": 0.0, "false": 0.0, "no": 0.0, "negative": 0.0, "absent": 0.0,
    "-1": -1.0, "-1.0": -1.0, "uncertain": -1.0,
    "": np.nan, "nan": np.nan, "na": np.nan, "n/a": np.nan, "none": np.nan,
}  # fmt: skip


def _check_policy(uncertain: str, blank: str) -> None:
    if uncertain not in UNCERTAIN_POLICIES:
        raise DataError(f"uncertain must be one of {list(UNCERTAIN_POLICIES)} (U-Ignore, U-Ones, U-Zeros), got {uncertain!r}.")
    if blank not in _BLANK_POLICIES:
        raise DataError(f"blank must be one of {list(_BLANK_POLICIES)}, got {blank!r}.")


def finding_values(values: Iterable[Any], uncertain: str = "ignore", blank: str = "na", column: str = "label") -> pd.Series:
    """One finding column as nullable integers 1 / 0 / NA, with the uncertainty and blank policies.

    Accepts 1, 0, -1 (uncertain) as numbers, booleans or text (``"1.0"``,
    ``"yes"``, ``"negative"``, ``"uncertain"``), and blanks.

    Raises
    ------
    DataError
        Any other value (named, with the column).

    Examples
    --------
    >>> finding_values([1.0, 0.0, -1.0, None]).tolist()
    [1, 0, <NA>, <NA>]
    >>> finding_values([1.0, -1.0, None], uncertain="ones", blank="zeros").tolist()
    [1, 1, 0]
    """
    _check_policy(uncertain, blank)
    raw = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    if pd.api.types.is_bool_dtype(raw.dtype):
        num = raw.astype(float).to_numpy()
    elif pd.api.types.is_numeric_dtype(raw.dtype):
        num = (
            raw.astype("Float64").astype(float).to_numpy(na_value=np.nan) if raw.dtype.kind not in "fiu" else raw.to_numpy(float)
        )
    else:
        num = np.empty(len(raw), float)
        bad = []
        for i, v in enumerate(raw.tolist()):
            if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
                num[i] = np.nan
            elif isinstance(v, (bool, np.bool_)):
                num[i] = float(v)
            elif isinstance(v, (int, float, np.integer, np.floating)):
                num[i] = float(v)
            else:
                key = str(v).strip().lower()
                if key in _LABEL_TEXT:
                    num[i] = _LABEL_TEXT[key]
                else:
                    num[i] = np.nan
                    bad.append(v)
        if bad:
            raise DataError(
                f"column {column!r} holds {len(bad)} value(s) that are not a label, e.g. {bad[0]!r}; "
                "expected 1 (present), 0 (absent), -1 (uncertain) or blank."
            )
    odd = ~np.isnan(num) & ~np.isin(num, (1.0, 0.0, -1.0))
    if odd.any():
        raise DataError(
            f"column {column!r} holds {int(odd.sum())} value(s) that are not a label, e.g. {num[odd][0]!r}; "
            "expected 1 (present), 0 (absent), -1 (uncertain) or blank."
        )
    out = num.copy()
    out[num == -1.0] = {"ignore": np.nan, "ones": 1.0, "zeros": 0.0}[uncertain]
    if blank == "zeros":
        out[np.isnan(num)] = 0.0
    return pd.Series(pd.array(np.where(np.isnan(out), None, out), dtype="Int64"), index=raw.index, name=column)


def normalise_age(values: Iterable[Any]) -> pd.Series:
    """Age in years (float) from numbers, numeric text or DICOM Age Strings (``"045Y"``, ``"018M"``); outside 0-120 is NA.

    Examples
    --------
    >>> normalise_age([45, "61", "018M", "412", "n/a"]).tolist()
    [45.0, 61.0, 1.5, nan, nan]
    """
    out = []
    for v in list(values) if not isinstance(values, pd.Series) else values.tolist():
        years = float("nan")
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            years = float(v)
        elif isinstance(v, str):
            m = re.fullmatch(r"\s*(\d{1,3}(?:\.\d+)?)\s*([DWMYdwmy]?)\s*", v)
            if m:
                n, unit = float(m.group(1)), (m.group(2) or "Y").upper()
                years = {"D": n / 365.25, "W": n / 52.1775, "M": n / 12.0, "Y": n}[unit]
        if not np.isfinite(years) or years < 0 or years > 120:
            years = float("nan")
        out.append(years)
    return pd.Series(out, dtype=float)


def nih_findings(labels: Iterable[Any]) -> pd.DataFrame:
    """NIH ChestX-ray14 ``Finding Labels`` (``"Cardiomegaly|Effusion"``, ``"No Finding"``) -> vocabulary columns.

    One nullable-integer column per NIH finding (0/1; NA where the label text
    is blank), plus ``lung_lesion`` = nodule or mass (CheXpert's "Lung
    Lesion" covers both).

    Raises
    ------
    DataError
        A label name NIH does not use (named).

    Examples
    --------
    >>> t = nih_findings(["Cardiomegaly|Effusion", "No Finding"])
    >>> t[["cardiomegaly", "pleural_effusion", "no_finding"]].astype(int).values.tolist()
    [[1, 1, 0], [0, 0, 1]]
    """
    names = sorted(set(NIH_LABELS.values()))
    rows = list(labels) if not isinstance(labels, pd.Series) else labels.tolist()
    data = {c: np.zeros(len(rows), float) for c in names}
    known = {k.lower(): v for k, v in NIH_LABELS.items()}
    blank = np.zeros(len(rows), bool)
    for i, text in enumerate(rows):
        if text is None or (isinstance(text, float) and np.isnan(text)) or not str(text).strip():
            blank[i] = True
            continue
        for part in str(text).split("|"):
            key = part.strip().lower().replace(" ", "_") if part.strip().lower() != "no finding" else "no finding"
            col = known.get(key) or known.get(part.strip().lower())
            if col is None:
                raise DataError(
                    f"'Finding Labels' row {i + 1} names {part.strip()!r}, not one of NIH's labels {sorted(NIH_LABELS)}."
                )
            data[col][i] = 1.0
    out = pd.DataFrame({c: pd.array(np.where(blank, None, v), dtype="Int64") for c, v in data.items()})
    out["lung_lesion"] = pd.array(np.where(blank, None, np.maximum(data["nodule"], data["mass"])), dtype="Int64")
    return out


def _aligned(values: Any, index: pd.Index) -> pd.Series:
    """``values`` as a Series on ``index``, keeping a nullable dtype (by position, not by label)."""
    if isinstance(values, pd.Series):
        return pd.Series(values.array, index=index, name=values.name)
    return pd.Series(values, index=index)


def harmonise(
    metadata: pd.DataFrame,
    uncertain: str = "ignore",
    blank: str = "na",
    columns: Optional[Mapping[str, str]] = None,
    labels: Optional[Mapping[str, str]] = None,
) -> pd.DataFrame:
    """A copy of ``metadata`` with the harmonised columns added (raw columns kept beside them).

    Parameters
    ----------
    metadata : DataFrame
    uncertain : {"ignore", "ones", "zeros"}
        Policy for uncertain (-1) labels of CheXpert-style columns.
    blank : {"na", "zeros"}
        Blank labels: unknown (NA) or absent (0).
    columns : mapping harmonised name -> raw column, optional
        For a table whose columns have other names, e.g.
        ``{"sex": "Gender", "age": "Years", "patient_id": "Subject"}``.
        Names: ``age, sex, view, patient_id, race``.
    labels : mapping raw column -> finding, optional
        Finding columns of a table, e.g. ``{"Effusion?": "pleural_effusion"}``;
        finding names from :data:`FINDINGS`. Values as :func:`finding_values` reads them.

    Returns
    -------
    DataFrame
        With ``age``, ``sex``, ``view``, ``patient_id``, ``race`` where a
        source column exists, and the vocabulary's finding columns that can be
        read: from ``labels``, CheXpert's observation names, NIH's
        ``Finding Labels``, and PhantomCXR's findings
        (:data:`PHANTOMCXR_FINDINGS`; ``no_finding`` when none of its four
        findings is present). A harmonised column that exists already is
        kept, except that ``sex`` and ``view`` are normalised (their raw
        values kept as ``sex_raw`` / ``view_raw`` when that changes them).
        ``attrs["harmonised_from"]`` maps each added column to its source.
        Applying it twice changes nothing.

    Raises
    ------
    DataError
        Unknown harmonised names or findings, missing raw columns, or label
        values that are not labels.

    Examples
    --------
    >>> raw = pd.DataFrame({"Sex": ["Male", "Female"], "Age": [60, 70], "Pleural Effusion": [1.0, -1.0]})
    >>> h = harmonise(raw)
    >>> h[["sex", "age"]].values.tolist(), h["pleural_effusion"].tolist()
    ([['M', 60.0], ['F', 70.0]], [1, <NA>])
    >>> harmonise(raw, uncertain="ones")["pleural_effusion"].tolist()
    [1, 1]
    """
    if not isinstance(metadata, pd.DataFrame):
        raise DataError(f"metadata must be a pandas DataFrame, got {type(metadata).__name__}.")
    _check_policy(uncertain, blank)
    out = metadata.copy()
    origin: dict[str, str] = dict(metadata.attrs.get("harmonised_from", {}) or {})
    columns = dict(columns or {})
    labels = dict(labels or {})
    for name, raw in columns.items():
        if name not in HARMONISED_COLUMNS:
            raise DataError(
                f"columns= maps harmonised names {list(HARMONISED_COLUMNS)} to raw columns; {name!r} is none of them."
            )
        if raw not in out.columns:
            raise DataError(
                f"columns= names {raw!r} for {name!r}, but the table has no such column (columns: {list(out.columns)})."
            )
    for raw, name in labels.items():
        if name not in FINDINGS:
            raise DataError(f"labels= maps raw columns to findings of the vocabulary; {name!r} is not one of {list(FINDINGS)}.")
        if raw not in out.columns:
            raise DataError(f"labels= names column {raw!r}, but the table has no such column (columns: {list(out.columns)}).")

    def source_of(name: str) -> Optional[str]:
        if name in columns:
            return columns[name]
        return next((c for c in _SOURCES[name] if c in out.columns), None)

    def put(name: str, values: pd.Series, raw: str) -> None:
        if name in out.columns and name != raw:
            if name + "_raw" not in out.columns:
                out[name + "_raw"] = out[name]
        out[name] = _aligned(values, out.index)
        if name != raw:
            origin[name] = raw

    # sex and view: normalised in place when present, else read from a raw column
    for name, norm in (("sex", normalise_sex), ("view", normalise_view)):
        raw = columns.get(name) or (name if name in out.columns else source_of(name))
        if raw is None:
            continue
        vals = norm(out[raw].tolist())
        if raw == name:
            before = out[name].astype("string")
            changed = (before.fillna("") != vals.fillna("")).any()
            if changed:
                if name + "_raw" not in out.columns:
                    out[name + "_raw"] = out[name]
                out[name] = _aligned(vals, out.index)
        else:
            put(name, vals, raw)
    if "view" not in out.columns and "Frontal/Lateral" in out.columns:  # CheXpert
        fl = out["Frontal/Lateral"].astype("string").str.strip().str.lower()
        appa = (
            normalise_view(out["AP/PA"].tolist()) if "AP/PA" in out.columns else pd.Series(pd.NA, index=out.index, dtype="string")
        )
        view = appa.where(fl.to_numpy() != "lateral", "LATERAL")
        out["view"] = _aligned(view, out.index)
        origin["view"] = "Frontal/Lateral, AP/PA"
    # age
    raw = columns.get("age") or ("age" if "age" in out.columns else source_of("age"))
    if raw is not None:
        col = out[raw]
        if raw != "age" or not pd.api.types.is_numeric_dtype(col.dtype):
            put("age", normalise_age(col.tolist()), raw)
    for name in ("patient_id", "race"):
        raw = columns.get(name) or (None if name in out.columns else source_of(name))
        if raw is not None:
            put(name, out[raw].astype("string"), raw)
    # findings: explicit labels, CheXpert names, NIH's Finding Labels, PhantomCXR's names
    for raw, name in labels.items():
        put(name, finding_values(out[raw], uncertain, blank, column=raw), raw)
    for raw, name in CHEXPERT_LABELS.items():
        if raw in out.columns and name not in out.columns:
            put(name, finding_values(out[raw], uncertain, blank, column=raw), raw)
    if "Finding Labels" in out.columns:
        nih = nih_findings(out["Finding Labels"])
        for name in nih.columns:
            if name not in out.columns:
                put(name, nih[name], "Finding Labels")
    for raw, names in PHANTOMCXR_FINDINGS.items():
        if raw not in out.columns:
            continue
        for name in names:
            if name not in out.columns and name != raw:
                put(name, finding_values(out[raw], "ignore", "na", column=raw), raw)
    phantom4 = ("cardiomegaly", "nodule", "effusion", "pneumothorax")
    if "no_finding" not in out.columns and all(c in out.columns for c in phantom4):
        vals = [finding_values(out[c], "ignore", "na", column=c) for c in phantom4]
        anyf = pd.concat(vals, axis=1).max(axis=1, skipna=False)
        put("no_finding", (1 - anyf).astype("Int64"), "+".join(phantom4))
    out.attrs["harmonised_from"] = origin
    return out


def vocabulary_twins(metadata: pd.DataFrame) -> dict[str, str]:
    """Harmonised columns that :func:`harmonise` derived from raw columns of the same table: ``{added: raw}``.

    ``raw`` names one column, or several joined by ``+`` (``no_finding`` from
    PhantomCXR's four findings). A panel offering grouping columns uses it to
    show one of each pair.

    Examples
    --------
    >>> vocabulary_twins(harmonise(pd.DataFrame({"effusion": [0, 1]})))
    {'pleural_effusion': 'effusion'}
    """
    origin = metadata.attrs.get("harmonised_from", {}) or {}
    return {k: v for k, v in origin.items() if all(part in metadata.columns for part in v.split("+"))}


def for_grouping(metadata: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """A copy whose ``columns`` read ``"unknown"`` where a value is missing, so that every row has a group label.

    Harmonised columns are nullable (NA for an unknown sex, an uncertain label
    under U-Ignore); a subgroup breakdown shows those rows as their own group
    ``column=unknown``, as ages without a value fall into ``age_group=unknown``.

    Examples
    --------
    >>> t = for_grouping(harmonise(pd.DataFrame({"Pleural Effusion": [1.0, -1.0]})), ["pleural_effusion"])
    >>> t["pleural_effusion"].tolist()
    [1, 'unknown']
    """
    out = metadata.copy()
    for c in columns:
        if c in out.columns and out[c].isna().any():
            col = out[c].astype(object)
            out[c] = col.where(out[c].notna().to_numpy(), "unknown")
    return out
