"""Writing an image set as a folder of PNG files with ``metadata.csv`` and ``provenance.json``.

:func:`~medsynth_explore.data.load_dataset` reads such a folder back. The
writer needs only the set's arrays and tables, not the :class:`ImageSet`
class, so ``ImageSet.to_folder`` and the loaders both use it without
importing each other.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

__all__ = ["write_folder"]


def _ensure_dir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


# --------------------------------------------------------------------------- folders
def write_folder(data: Any, path: Any, *, bits: int = 16, overwrite: bool = False, filename_pattern: str = "{:06d}.png") -> Path:
    """Write ``data`` as PNG images, ``metadata.csv`` and ``provenance.json``.

    Parameters
    ----------
    data : ImageSet
        (anything with ``images`` (N, C, H, W) in [0, 1], ``metadata`` and ``provenance``)
    path : path-like
        Target folder. It is written in a temporary sibling and renamed into
        place, so an interrupted write never leaves a half-written folder.
    bits : {8, 16}
        PNG bit depth. Images quantised to 16-bit levels (as PhantomCXR makes
        them) round-trip exactly with ``bits=16``.
    overwrite : bool
        Replace an existing folder.

    Returns
    -------
    pathlib.Path
    """
    from PIL import Image

    path = Path(path).expanduser()
    if bits not in (8, 16):
        raise DataError(f"bits must be 8 or 16, got {bits}.")
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise DataError(f"{str(path)!r} exists and is not empty; pass overwrite=True (or --overwrite) to replace it.")
    channels = data.shape[1] if hasattr(data, "batches") else data.images.shape[1]
    if channels not in (1, 3):
        raise DataError(f"can only write 1- or 3-channel images as PNG, got {channels} channels.")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=_ensure_dir(path.parent)))
    try:
        names = []
        scale = 65535.0 if bits == 16 else 255.0
        batches = data.batches(64) if hasattr(data, "batches") else [data.images]  # a file-backed set streams
        images = (im for batch in batches for im in batch)
        for i, im in enumerate(images):
            q = np.rint(im * scale)
            name = filename_pattern.format(i)
            if im.shape[0] == 1:
                arr = q[0].astype(np.uint16 if bits == 16 else np.uint8)
                pil = Image.fromarray(arr)
            else:
                if bits == 16:
                    raise DataError("16-bit PNG supports grey images only; use bits=8 for RGB.")
                pil = Image.fromarray(q.transpose(1, 2, 0).astype(np.uint8), mode="RGB")
            pil.save(tmp / name)
            names.append(name)
        meta = data.metadata.drop(columns=["filename"], errors="ignore")
        meta.insert(0, "filename", names)
        meta.to_csv(tmp / "metadata.csv", index=False)
        (tmp / "provenance.json").write_text(json.dumps(data.provenance, indent=2, default=str))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
