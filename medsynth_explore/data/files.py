"""From a list of files to an :class:`~medsynth_explore.data.ImageSet`: the one path every file loader takes.

:func:`build_file_set` probes every file (header, end marker, pixel
limit; in worker threads), applies ``on_error`` to the files that fail,
settles the image shape (``size=`` or one shared size) and the channels,
builds the identity keys and the decoder, and returns a set that is
file-backed or decoded into memory (``lazy``). Folder CSVs, the CheXpert,
MIMIC-CXR-JPG and NIH layouts and DICOM trees all call it, so the same
rules hold for all of them.

``on_error``:

* ``"raise"`` (default): the first file that is missing, not an image,
  truncated or over the pixel limit raises
  :class:`~medsynth_explore.errors.DataError` naming it;
* ``"skip"``: such files are dropped (a warning says how many) and listed
  in ``provenance["skipped"]`` as ``{"file", "reason"}``.

A file that passes the probe but still fails to decode later raises a
``DataError`` naming it when it is read; ``verify=True`` decodes every file
once at load so that ``on_error`` applies to those too (sets loaded into
memory are decoded at load anyway). DICOM objects that are not single-frame
images are always skipped and listed.
"""

from __future__ import annotations

import os
import stat
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from ..errors import DataError
from .decode import PIXEL_LIMIT, DecodeSettings, check_size, decode_image, probe_image, quiet_bomb_warnings
from .imageset import ImageSet, memory_limit
from .sources import FileSource, default_workers, file_keys

__all__ = ["build_file_set", "read_csv_table", "LAZY_CHOICES", "ON_ERROR"]

LAZY_CHOICES = (True, False, "auto")
ON_ERROR = ("raise", "skip")
_COLOUR_SAMPLE = 8


def read_csv_table(path: Any, what: str = "CSV") -> pd.DataFrame:
    """A CSV (or ``.csv.gz``) as a DataFrame; any parser failure becomes a ``DataError`` naming the file."""
    try:
        return pd.read_csv(path, keep_default_na=True, low_memory=False)
    except Exception as exc:
        raise DataError(f"cannot read {what} {str(path)!r}: {exc}") from exc


def _check(lazy: Any, on_error: Any, channels: Any) -> None:
    if lazy not in LAZY_CHOICES or isinstance(lazy, (int, float)) and not isinstance(lazy, bool):
        raise DataError(f"lazy must be True (file-backed), False (in memory) or 'auto', got {lazy!r}.")
    if on_error not in ON_ERROR:
        raise DataError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
    if channels is not None and channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}.")


def _probe_all(paths: Sequence[Path], kind: str, pixel_limit: int, voi: Any, workers: int):
    """One result per file: ("ok", size, mtime_ns, info), ("missing", msg), ("error", msg) or ("skip", reason)."""
    from .dicom import NotAnImage, probe_dicom

    def one(p: Path):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            return ("missing", "missing")
        except OSError as exc:
            return ("error", f"cannot read {str(p)!r}: {exc}")
        if not stat.S_ISREG(st.st_mode):
            return ("error", f"{str(p)!r} is not a regular file")
        try:
            info = probe_image(p, pixel_limit) if kind == "image" else probe_dicom(p, pixel_limit, voi)
        except NotAnImage as exc:
            return ("skip", str(exc))
        except DataError as exc:
            return ("error", str(exc))
        return ("ok", int(st.st_size), int(st.st_mtime_ns), info)

    with quiet_bomb_warnings():
        if workers <= 1 or len(paths) < 16:
            return [one(p) for p in paths]
        # a few hundred files per task: one future per file would cost more than the header it reads
        step = max(64, -(-len(paths) // (workers * 8)))
        with ThreadPoolExecutor(workers, thread_name_prefix="medsynth-probe") as ex:
            parts = [ex.submit(lambda a: [one(p) for p in paths[a : a + step]], a) for a in range(0, len(paths), step)]
            return [r for f in parts for r in f.result()]


def _infer_channels(paths, infos, kind) -> int:
    """1 when every file is grey by its header, or the first colour files are grey pixel for pixel (R = G = B); else 3."""
    if kind == "dicom":
        return 3 if any(i.samples == 3 for i in infos) else 1
    colour = [p for p, i in zip(paths, infos) if not i.grey]
    if not colour:
        return 1
    probe = DecodeSettings(channels=3)
    for p in colour[:_COLOUR_SAMPLE]:
        a = decode_image(p, probe)
        if not (np.array_equal(a[0], a[1]) and np.array_equal(a[0], a[2])):
            return 3
    return 1


def build_file_set(
    paths: Sequence[Path],
    metadata: pd.DataFrame,
    *,
    root: Any,
    kind: str = "image",
    provenance: Optional[dict] = None,
    size: Any = None,
    aspect: str = "crop",
    channels: Optional[int] = None,
    lazy: Any = "auto",
    on_error: str = "raise",
    pixel_limit: int = PIXEL_LIMIT,
    workers: Optional[int] = None,
    verify: bool = False,
    voi: Any = "auto",
    listed_in: str = "the file list",
    names: Optional[Sequence[str]] = None,
) -> ImageSet:
    """An ImageSet over ``paths`` (one metadata row each), probed, checked and file-backed or in memory.

    Parameters
    ----------
    paths : sequence of Path
        Resolved files, already checked to lie inside the data root.
    metadata : DataFrame
        One row per path.
    root : path-like
        The data root (provenance, messages).
    kind : {"image", "dicom"}
    provenance : dict
        Keys to record (``source``, ``layout``, ...); ``path``, ``decode``,
        ``file_backed`` and ``skipped`` are added.
    size, aspect, channels, lazy, on_error, pixel_limit, workers, verify, voi
        See :func:`medsynth_explore.data.io.read_folder` and :mod:`medsynth_explore.data.dicom`.
    listed_in : str
        Where the paths were listed, for messages (``"metadata.csv"``).
    names : sequence of str, optional
        The paths as the table wrote them, for messages.

    Returns
    -------
    ImageSet
    """
    _check(lazy, on_error, channels)
    out_hw = check_size(size)
    if kind not in ("image", "dicom"):
        raise DataError(f"kind must be 'image' or 'dicom', got {kind!r}.")
    if not isinstance(pixel_limit, (int, np.integer)) or isinstance(pixel_limit, bool) or pixel_limit < 1:
        raise DataError(f"pixel_limit must be a positive integer, got {pixel_limit!r}.")
    root = Path(root)
    paths = [p if isinstance(p, Path) else Path(p) for p in paths]
    names = [str(n) for n in (names if names is not None else [p.name for p in paths])]
    if len(metadata) != len(paths):
        raise DataError(f"{len(metadata)} metadata rows for {len(paths)} files.")
    if not paths:
        raise DataError(f"{listed_in} lists no images.")
    n_workers = default_workers() if workers is None else max(1, int(workers))
    results = _probe_all(paths, kind, int(pixel_limit), voi, n_workers)
    skipped: list[dict] = []
    keep: list[int] = []
    missing = [i for i, r in enumerate(results) if r[0] == "missing"]
    for i, r in enumerate(results):
        if r[0] == "ok":
            keep.append(i)
            continue
        if r[0] == "skip":
            skipped.append({"file": names[i], "reason": r[1]})
            continue
        if on_error == "raise":
            if r[0] == "missing":
                more = f" ({len(missing)} of {len(paths)} listed files are missing)" if len(missing) > 1 else ""
                raise DataError(
                    f"image {names[i]!r} listed in {listed_in} is missing from {str(root)!r}{more}. "
                    "Fix the path, or pass on_error='skip' to load the files that are there."
                )
            raise DataError(f"{r[1]} (listed in {listed_in}; pass on_error='skip' to leave such files out)")
        skipped.append({"file": names[i], "reason": "missing" if r[0] == "missing" else r[1]})
    if skipped:
        kinds = {}
        for s in skipped:
            key = (
                s["reason"].split(" (")[0] if s["reason"] == "missing" else ("not an image" if kind == "dicom" else "unreadable")
            )
            kinds[key] = kinds.get(key, 0) + 1
        warnings.warn(
            f"skipped {len(skipped)} of {len(paths)} files listed in {listed_in} "
            f"({', '.join(f'{v} {k}' for k, v in kinds.items())}); see provenance['skipped'].",
            RuntimeWarning,
            stacklevel=3,
        )
    if not keep:
        raise DataError(f"none of the {len(paths)} files listed in {listed_in} could be read; first problem: {skipped[0]}.")
    kp = [paths[i] for i in keep]
    infos = [results[i][3] for i in keep]
    meta = metadata.iloc[keep].reset_index(drop=True)
    if kind == "dicom":
        rows = pd.DataFrame([i.row for i in infos])
        meta = pd.concat([meta.reset_index(drop=True), rows], axis=1)
        first = ["filename", "age", "sex", "view", "patient_id", "study_uid", "series_uid", "modality"]
        meta = meta[[c for c in first if c in meta.columns] + [c for c in meta.columns if c not in first]]
    wh = [(i.width, i.height) if kind == "image" else (i.columns, i.rows) for i in infos]
    if out_hw is None:
        by_size: dict = {}
        for (w, h), nm in zip(wh, (names[i] for i in keep)):
            by_size.setdefault((h, w), []).append(nm)
        if len(by_size) > 1:
            desc = "; ".join(f"{h}x{w}: {len(v)} image(s), e.g. {v[0]!r}" for (h, w), v in list(by_size.items())[:6])
            raise DataError(
                f"images in {str(root)!r} have mixed sizes ({desc}). Resize them on load with size=, e.g. "
                "load_dataset(path, size=256) (aspect='crop', 'pad' or 'stretch' says how), or resize the files first."
            )
        out_hw = next(iter(by_size))
        resized = False
    else:
        resized = True
    c = channels or _infer_channels(kp, infos, kind)
    settings = DecodeSettings(
        size=out_hw if resized else None, aspect=aspect, channels=c, pixel_limit=int(pixel_limit), kind=kind, voi=voi
    )
    if kind == "image":
        decoder = partial(decode_image, settings=settings)
    else:
        from .dicom import decode_dicom

        decoder = partial(decode_dicom, settings=settings)
    if resized:
        meta["original_width"] = [w for w, _ in wh]
        meta["original_height"] = [h for _, h in wh]
    keys = file_keys([str(p) for p in kp], [(results[i][1], results[i][2]) for i in keep], settings.digest())
    settings_record = {
        "kind": kind,
        "size": list(out_hw) if resized else None,
        "aspect": aspect if resized else None,
        "channels": c,
        "pixel_limit": int(pixel_limit),
        **({"voi": voi if isinstance(voi, str) else list(voi)} if kind == "dicom" else {}),
    }
    src = FileSource([str(p) for p in kp], decoder, (c, *out_hw), keys, settings_record, str(root))
    prov = dict(provenance or {})
    prov.pop("content_hash", None)
    prov.setdefault("path", str(root))
    prov["decode"] = settings_record
    if skipped:
        prov["skipped"] = skipped
    in_memory = lazy is False or (lazy == "auto" and src.nbytes <= memory_limit())
    if not in_memory:
        prov["file_backed"] = True
        data = ImageSet(metadata=meta, provenance=prov, source=src)
        return data.verify(on_error, workers=n_workers) if verify else data
    arrays = np.empty((len(src), *src.item_shape), np.float32)
    bad: list[tuple[int, str]] = []

    def fill(j: int) -> None:
        try:
            arrays[j] = decoder(src.paths[j])
        except DataError as exc:
            if on_error == "raise":
                raise
            bad.append((j, str(exc)))

    if n_workers <= 1 or len(src) < 4:
        for j in range(len(src)):
            fill(j)
    else:
        with ThreadPoolExecutor(n_workers, thread_name_prefix="medsynth-decode") as ex:
            for f in [ex.submit(fill, j) for j in range(len(src))]:
                f.result()
    if bad:
        bad.sort()
        drop = [j for j, _ in bad]
        prov["skipped"] = list(prov.get("skipped", [])) + [{"file": names[keep[j]], "reason": why} for j, why in bad]
        good = np.setdiff1d(np.arange(len(src)), drop)
        if not len(good):
            raise DataError(f"none of the {len(paths)} files listed in {listed_in} could be decoded; first: {bad[0][1]}")
        warnings.warn(f"skipped {len(bad)} files that failed to decode; see provenance['skipped'].", RuntimeWarning, stacklevel=3)
        arrays, meta = arrays[good], meta.iloc[good].reset_index(drop=True)
    return ImageSet(arrays, meta, prov)
