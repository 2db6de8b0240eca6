"""Public chest X-ray layouts, each in its own module, detected from their files or chosen with ``layout=``.

=================  ==========================================================  =============================
layout             found by                                                    module
=================  ==========================================================  =============================
``chexpert``       ``train.csv`` / ``valid.csv`` with ``Path`` and             :mod:`.chexpert`
                   ``Frontal/Lateral`` columns (also one folder down, in a
                   ``CheXpert-v1.0*`` folder)
``mimic-cxr-jpg``  ``mimic-cxr-2.0.0-metadata.csv[.gz]``                       :mod:`.mimic`
``nih-cxr14``      ``Data_Entry_2017*.csv``                                    :mod:`.nih`
``folder``         ``metadata.csv``                                            :func:`~medsynth_explore.data.io.read_folder`
``dicom``          DICOM files anywhere below (checked last: it walks the      :mod:`.dicom`
                   tree)
``medmnist``       a ``.npz`` file                                             :func:`~medsynth_explore.data.io.read_medmnist`
=================  ==========================================================  =============================

A folder that matches more than one of the first four raises a
:class:`~medsynth_explore.errors.DataError` that lists them: name one with
``layout=``. Every real layout adds the harmonised columns of
:mod:`medsynth_explore.data.labels` (``age``, ``sex``, ``view``,
``patient_id``, ``race`` where known, the findings) beside its raw columns,
and takes the keywords of :func:`medsynth_explore.data.io.read_folder`
(``size``, ``aspect``, ``lazy``, ``on_error``, ``allow_outside_root``,
``uncertain``, ``blank``, ``channels``, ``pixel_limit``, ``workers``,
``verify``) plus its own.

Examples
--------
>>> sorted(LAYOUTS)
['chexpert', 'dicom', 'folder', 'medmnist', 'mimic-cxr-jpg', 'nih-cxr14']
>>> canonical_layout("MIMIC")
'mimic-cxr-jpg'
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Optional

from ...errors import DataError
from .common import FILE_KEYWORDS, reject_unknown, split_file_keywords

__all__ = [
    "LAYOUTS",
    "canonical_layout",
    "detect_layout",
    "layout_loader",
    "FILE_KEYWORDS",
    "reject_unknown",
    "split_file_keywords",
]

#: layout name -> (loader "module:function", aliases)
LAYOUTS = {
    "chexpert": ("medsynth_explore.data.layouts.chexpert:load_chexpert", ("chexpert-v1.0", "chexpert-small")),
    "mimic-cxr-jpg": ("medsynth_explore.data.layouts.mimic:load_mimic_cxr_jpg", ("mimic", "mimic-cxr", "mimic-jpg")),
    "nih-cxr14": ("medsynth_explore.data.layouts.nih:load_nih_cxr14", ("nih", "chestx-ray14", "chestxray14", "cxr14")),
    "folder": ("medsynth_explore.data.io:read_folder", ("csv", "metadata")),
    "dicom": ("medsynth_explore.data.layouts.dicom:read_dicom_folder", ("dcm",)),
    "medmnist": ("medsynth_explore.data.io:read_medmnist", ("npz",)),
}


def canonical_layout(name: Any) -> str:
    """The layout's canonical name from a name or alias (case-insensitive).

    Raises
    ------
    DataError
        An unknown layout (the message lists them).
    """
    key = str(name).strip().lower().replace("_", "-")
    for canon, (_, aliases) in LAYOUTS.items():
        if key == canon or key in aliases:
            return canon
    raise DataError(f"unknown layout {name!r}; layouts: {', '.join(sorted(LAYOUTS))}.")


def layout_loader(name: Any) -> Callable[..., Any]:
    """The loader of a layout, ``loader(path, **kwargs) -> ImageSet``."""
    target = LAYOUTS[canonical_layout(name)][0]
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def _matches(path: Path) -> list[str]:
    from . import chexpert, mimic, nih

    found = []
    if chexpert.detect(path):
        found.append("chexpert")
    if mimic.detect(path):
        found.append("mimic-cxr-jpg")
    if nih.detect(path):
        found.append("nih-cxr14")
    if path.is_dir() and (path / "metadata.csv").is_file():
        found.append("folder")
    return found


def detect_layout(path: Any) -> Optional[str]:
    """The layout a folder (or a CSV file) is in, from its marker files; None when none matches.

    DICOM trees are not detected here (that needs a walk of the tree):
    :func:`~medsynth_explore.data.load_dataset` looks for them after this.

    Raises
    ------
    DataError
        When the folder matches several layouts.
    """
    p = Path(path)
    if p.is_file():
        from . import chexpert

        return "chexpert" if chexpert.detect(p) else None
    found = _matches(p)
    if len(found) > 1:
        raise DataError(
            f"{str(p)!r} matches several layouts ({', '.join(found)}); choose one with layout=, "
            f"e.g. load_dataset({str(p)!r}, layout={found[0]!r})."
        )
    return found[0] if found else None
