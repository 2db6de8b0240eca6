"""One label vocabulary for chest radiographs, real and synthetic.

Public chest X-ray data sets name the same findings differently (CheXpert's
``Pleural Effusion``, NIH ChestX-ray14's ``Effusion``, PhantomCXR's
``effusion``) and code sex and view differently (``Male``/``Female``, ``M``/``F``).
Every loader maps its raw columns into the names below, keeping the raw
columns beside them, so that real and synthetic sides share finding and
subgroup columns without anyone renaming anything.

Harmonised columns: ``age`` (years), ``sex`` (``"F"``/``"M"``), ``view``
(``"PA"``/``"AP"``/``"LATERAL"``), ``patient_id``, and one column per finding
in :data:`FINDINGS` (1.0 present, 0.0 absent, NA unknown or uncertain under
the ``"ignore"`` policy).

Examples
--------
>>> CHEXPERT_LABELS["Pleural Effusion"], NIH_LABELS["Pleural_Thickening"]
('pleural_effusion', 'pleural_thickening')
>>> normalise_sex(["Male", "female", "Unknown", None]).tolist()
['M', 'F', <NA>, <NA>]
"""

from __future__ import annotations

from typing import Any, Iterable

import pandas as pd

__all__ = [
    "CHEXPERT_LABELS",
    "NIH_LABELS",
    "CHEXPERT_FINDINGS",
    "FINDINGS",
    "PHANTOMCXR_FINDINGS",
    "normalise_sex",
    "normalise_view",
]

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
