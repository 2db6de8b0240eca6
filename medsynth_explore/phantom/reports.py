"""Radiology reports of PhantomCXR, composed from the labels with varied phrasing."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .population import complete_patients

__all__ = ["write_reports"]

_SIDE_WORD = {"left": "left", "right": "right", "both": "bilateral"}

_NEG = {
    "cardiomegaly": [
        "Heart size is normal.",
        "Normal cardiac size.",
        "The cardiomediastinal silhouette is within normal limits.",
        "No cardiomegaly.",
    ],
    "nodule": [
        "No pulmonary nodule.",
        "No focal lung nodule or mass.",
        "No suspicious pulmonary nodule is seen.",
    ],
    "effusion": [
        "No pleural effusion.",
        "No effusion.",
        "Costophrenic angles are sharp.",
        "No pleural fluid.",
    ],
    "pneumothorax": [
        "No pneumothorax.",
        "There is no pneumothorax.",
        "No evidence of pneumothorax.",
    ],
}

_OPENERS = ["PA chest radiograph.", "Frontal view of the chest.", "Single PA view of the chest.", ""]
_CLOSERS = ["", "", "Bones and soft tissues are unremarkable.", "No acute osseous abnormality."]
_NORMAL_IMPRESSION = ["No acute cardiopulmonary abnormality.", "Normal chest radiograph.", "No acute findings."]


def _size_word(value: float, cuts: tuple, words: tuple) -> str:
    for c, w in zip(cuts, words):
        if value < c:
            return w
    return words[-1]


def _zone(y: float) -> str:
    if y < 0.36:
        return "upper"
    if y < 0.5:
        return "mid"
    return "lower"


def _positive(finding: str, row: pd.Series, r: np.random.Generator) -> str:
    pick = lambda opts: opts[r.integers(len(opts))]  # noqa: E731
    if finding == "cardiomegaly":
        ctr = float(row["ctr"])
        deg = _size_word(ctr, (0.56, 0.62), ("mild", "moderate", "marked"))
        return pick(
            [
                "Heart size is enlarged.",
                f"The heart is enlarged ({deg} cardiomegaly).",
                f"{deg.capitalize()} cardiomegaly.",
                f"Cardiomegaly, cardiothoracic ratio about {ctr:.2f}.",
                "Enlarged cardiac silhouette.",
            ]
        )
    if finding == "nodule":
        side = row["nodule_side"]
        d = float(row["nodule_diameter_mm"])
        zone = _zone(float(row["nodule_y"]))
        cm = f"{d / 10:.1f} cm"
        return pick(
            [
                f"A {cm} nodule in the {side} {zone} zone.",
                f"{cm} rounded opacity in the {side} {zone} lung, likely a nodule.",
                f"Pulmonary nodule measuring about {d:.0f} mm in the {zone} {side} lung.",
                f"Solitary {side}-sided lung nodule ({cm}).",
            ]
        )
    if finding == "effusion":
        side = _SIDE_WORD.get(row["effusion_side"], "")
        v = float(row["effusion_volume_ml"])
        size = _size_word(v, (350, 800), ("Small", "Moderate", "Large"))
        if side == "bilateral":
            return pick(
                [
                    f"{size} bilateral pleural effusions.",
                    f"{size} bilateral effusions blunting both costophrenic angles.",
                    "Bilateral pleural fluid with blunted costophrenic angles.",
                ]
            )
        return pick(
            [
                f"{size} {side}-sided effusion blunting the costophrenic angle.",
                f"{size} {side} pleural effusion.",
                f"Blunting of the {side} costophrenic angle, consistent with a {size.lower()} effusion.",
                f"{side.capitalize()} pleural effusion with a meniscus.",
            ]
        )
    if finding == "pneumothorax":
        side = row["pneumothorax_side"]
        s = float(row["pneumothorax_size"])
        size = _size_word(s, (0.3, 0.45), ("Small", "Moderate", "Large"))
        return pick(
            [
                f"{size} {side} pneumothorax.",
                f"{size} {side}-sided pneumothorax with a visible pleural line.",
                f"There is a {size.lower()} {side} apical pneumothorax.",
                f"{side.capitalize()} pneumothorax, no lung markings beyond the pleural edge.",
            ]
        )
    raise KeyError(finding)


def write_reports(patients: pd.DataFrame, seed: int = 0) -> list[str]:
    """Compose a free-text radiology report for each row of a patient table.

    Each present finding is described with its side and size (drawn from the
    parameters) in one of several phrasings; each absent finding is either
    negated ("No pleural effusion.") or left unmentioned; a chest tube is
    reported with its side. Phrasing, order and which negations appear are
    chosen by ``seed`` and the row, so reports vary but are reproducible.

    Parameters
    ----------
    patients : pandas.DataFrame
        A table as from :func:`~medsynth_explore.phantom.sample_patients`
        (completed by :func:`~medsynth_explore.phantom.complete_patients`).
    seed : int
        Seed of the phrasing.

    Returns
    -------
    list of str
        One report per row.

    Examples
    --------
    >>> from medsynth_explore.phantom import sample_patients
    >>> t = sample_patients(3, seed=0)
    >>> t["effusion"] = [1, 0, 0]; t["effusion_side"] = ["left", "none", "none"]
    >>> t["effusion_volume_ml"] = [200.0, float("nan"), float("nan")]
    >>> "effusion" in write_reports(t, seed=0)[0].lower()
    True
    """
    t = complete_patients(patients, seed=seed)
    out = []
    for i, row in t.iterrows():
        r = np.random.default_rng([int(seed), int(row["anatomy_seed"]) % (2**31), i, 0x52505254])
        pick = lambda opts: opts[r.integers(len(opts))]  # noqa: E731
        positives, negatives = [], []
        for f in ("cardiomegaly", "nodule", "effusion", "pneumothorax"):
            if int(row[f]) == 1:
                positives.append(_positive(f, row, r))
            elif r.random() < 0.75:
                negatives.append(pick(_NEG[f]))
        if int(row["chest_tube"]) == 1:
            side = row["chest_tube_side"]
            positives.append(
                pick(
                    [
                        f"{side.capitalize()} chest tube in place.",
                        f"A {side}-sided chest tube is present.",
                        f"Chest drain on the {side} with its tip towards the apex.",
                    ]
                )
            )
        r.shuffle(negatives)
        parts = [pick(_OPENERS)] + positives + negatives + [pick(_CLOSERS)]
        if not positives and r.random() < 0.5:
            parts.append("Impression: " + pick(_NORMAL_IMPRESSION))
        out.append(" ".join(p for p in parts if p))
    return out
