"""The ``dicom`` layout: every single-frame DICOM image under a folder, recursively.

The pixel transforms and the metadata are described in
:mod:`medsynth_explore.data.dicom`, which decodes the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ...errors import DataError
from ..dicom import find_dicoms
from ..files import build_file_set
from ..paths import is_inside
from .common import reject_unknown, split_file_keywords

__all__ = ["read_dicom_folder"]


def read_dicom_folder(path: Any, **kwargs: Any):
    """Read every single-frame DICOM image under a folder (recursively) into an ImageSet.

    Keywords as :func:`medsynth_explore.data.io.read_folder` takes them
    (``size``, ``aspect``, ``channels``, ``lazy``, ``on_error``,
    ``pixel_limit``, ``workers``, ``verify``) plus ``voi`` (``"auto"``,
    ``"none"`` or ``(center, width)``). See the module docstring for the
    pixel transforms and the metadata.

    Raises
    ------
    DataError
        No DICOM files, no image among them, damaged files (with
        ``on_error="raise"``), mixed sizes without ``size=``.
    """
    files_kw, rest = split_file_keywords(kwargs)
    reject_unknown(rest, "dicom", ("voi", "allow_outside_root"))
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{str(root)!r} is not a folder; the dicom layout reads a folder tree of DICOM files.")
    files = find_dicoms(root)
    if not files:
        raise DataError(f"found no DICOM files in {str(root)!r}.")
    names = [f.relative_to(root).as_posix() for f in files]
    resolved = [f.resolve() for f in files]
    if not rest.get("allow_outside_root", False):  # a symbolic link in the tree must not lead out of it
        root_r = root.resolve()
        for nm, r in zip(names, resolved):
            if not is_inside(r, root_r):
                raise DataError(
                    f"{nm!r} in {str(root)!r} is a link to {str(r)!r}, outside the folder; "
                    "pass allow_outside_root=True to read it anyway."
                )
    meta = pd.DataFrame({"filename": names})
    return build_file_set(
        resolved,
        meta,
        root=root,
        kind="dicom",
        provenance={"source": "dicom", "path": str(root), "layout": "dicom"},
        voi=rest.get("voi", "auto"),
        listed_in=f"the DICOM tree {str(root)!r}",
        names=names,
        **files_kw,
    )
