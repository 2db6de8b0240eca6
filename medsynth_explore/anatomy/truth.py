"""Ground-truth structure masks of PhantomCXR images: right lung, left lung and heart.

The simulator's :func:`~medsynth_explore.phantom.anatomy` returns one mask
for both lungs; the two lungs never touch (the mediastinum lies between
them), so each patient's lung mask is split at the patient's midline, which
the simulator shifts by ``shift_x_mm`` from the image centre. The patient's
left lung is on the image's right, as a frontal (PA) film is viewed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError

__all__ = ["STRUCTURES", "truth_masks", "label_map"]

#: Structures the segmenter draws, in the order of its output classes 1..3 (0 is background).
STRUCTURES = ("right_lung", "left_lung", "heart")

# columns a table must have for the simulator to rebuild a patient's anatomy
_PATIENT_COLUMNS = ("anatomy_seed", "age", "sex")


def _patient_table(metadata: Any) -> pd.DataFrame:
    meta = getattr(metadata, "metadata", metadata)
    if not isinstance(meta, pd.DataFrame):
        raise DataError(f"ground-truth masks need PhantomCXR metadata (a DataFrame or an ImageSet), got {type(meta).__name__}.")
    missing = [c for c in _PATIENT_COLUMNS if c not in meta.columns]
    if missing:
        raise DataError(
            f"ground-truth masks need the PhantomCXR patient columns {list(_PATIENT_COLUMNS)}; the metadata lacks {missing}. "
            "Only images simulated by PhantomCXR (or inpainted from them by the physics generator) carry them."
        )
    return meta.reset_index(drop=True)


def truth_masks(metadata: Any, size: int = 64) -> dict[str, np.ndarray]:
    """Right lung, left lung and heart of PhantomCXR patients, as the simulator drew them.

    Parameters
    ----------
    metadata : DataFrame or ImageSet
        PhantomCXR patient rows (as :func:`~medsynth_explore.phantom.simulate` writes them).
    size : int
        Pixel grid of the masks (32 to 256).

    Returns
    -------
    dict
        :data:`STRUCTURES` -> bool array (N, size, size). The lungs are the
        aerated lung fields (an effusion or a pneumothorax takes its space away).

    Examples
    --------
    >>> from medsynth_explore.phantom import sample_patients
    >>> m = truth_masks(sample_patients(2, seed=0), size=32)
    >>> sorted(m), m["heart"].shape
    (['heart', 'left_lung', 'right_lung'], (2, 32, 32))
    >>> bool((m["left_lung"] & m["right_lung"]).any())
    False
    """
    from ..phantom import FOV_MM, anatomy, complete_patients

    table = complete_patients(_patient_table(metadata))
    masks = anatomy(table, size=size).masks
    px = FOV_MM / size
    x = -FOV_MM / 2 + (np.arange(size) + 0.5) * px  # column centres in mm, image left to right
    midline = table["shift_x_mm"].to_numpy(float)[:, None, None]
    patient_left = (x[None, None, :] - midline) >= 0
    lungs = masks["lungs"]
    return {"right_lung": lungs & ~patient_left, "left_lung": lungs & patient_left, "heart": masks["heart"].copy()}


def label_map(masks: dict[str, np.ndarray]) -> np.ndarray:
    """One class index per pixel: 0 background, then 1, 2, 3 for :data:`STRUCTURES` (later ones win overlaps).

    Examples
    --------
    >>> m = {"right_lung": np.eye(2, dtype=bool)[None], "left_lung": np.zeros((1, 2, 2), bool),
    ...      "heart": np.array([[[0, 1], [0, 0]]], bool)}
    >>> label_map(m).tolist()
    [[[1, 3], [0, 1]]]
    """
    first = masks[STRUCTURES[0]]
    out = np.zeros(first.shape, np.int64)
    for k, name in enumerate(STRUCTURES, start=1):
        out[np.asarray(masks[name], bool)] = k
    return out
