"""``ImageSet``: images, one metadata row per image, and where they came from; in memory or file-backed.

An ImageSet holds its pixels in one of two ways, behind one API (``len``,
``metadata``, ``provenance``, ``subset``, ``query``, ``split``, ``concat``,
:meth:`ImageSet.batches`, :meth:`ImageSet.read`):

* **in memory**: a float32 array (N, C, H, W) in [0, 1], as made by the
  simulator, the generators and small loaders;
* **file-backed**: a :mod:`source <medsynth_explore.data.sources>` (the files
  and a safe decoder with its size policy); pixels stay on disk and are
  decoded in batches, in worker threads, when something needs them. The
  loaders make such sets for folders, CSV layouts, DICOM trees and ``.npz``
  files too large to hold (``lazy="auto"``), or whenever asked (``lazy=True``).

Everything that consumes images streams them with :meth:`ImageSet.batches`
(encoders, :func:`medsynth_explore.evaluate`, the Session's reference and
privacy sets, CAS). The ``images`` attribute of a file-backed set decodes
the whole set into memory only while that stays within
:func:`memory_limit` (default 512 MiB of float32 pixels,
``$MEDSYNTH_MEMORY_LIMIT`` to change it, e.g. ``2GB``); above it it raises a
:class:`~medsynth_explore.errors.DataError` that says to iterate batches or
take a subset. A subset of a file-backed set is file-backed and reads only
its own rows.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from ..errors import DataError
from .hashing import hash_array, image_keys
from .sources import apply_transform, transformed_shape

__all__ = ["ImageSet", "as_image_array", "hash_array", "image_keys", "memory_limit", "DEFAULT_MEMORY_LIMIT"]

#: Bytes of decoded float32 pixels a set may hold in memory by default (512 MiB); see :func:`memory_limit`.
DEFAULT_MEMORY_LIMIT = 512 * 2**20

_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6, "mib": 2**20, "g": 1e9, "gb": 1e9, "gib": 2**30}


def memory_limit() -> int:
    """Most bytes of decoded pixels a set holds in memory: ``$MEDSYNTH_MEMORY_LIMIT`` or :data:`DEFAULT_MEMORY_LIMIT`.

    The value may carry a unit (``"2GB"``, ``"512MiB"``, ``"1e9"``). Loaders with
    ``lazy="auto"`` decode a set into memory when it fits, else keep it on
    disk; :attr:`ImageSet.images` of a file-backed set refuses to load more.

    Examples
    --------
    >>> memory_limit() > 0
    True
    """
    text = os.environ.get("MEDSYNTH_MEMORY_LIMIT", "").strip()
    if not text:
        return DEFAULT_MEMORY_LIMIT
    m = re.fullmatch(r"([0-9.eE+]+)\s*([A-Za-z]*)", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise DataError(f"MEDSYNTH_MEMORY_LIMIT must be a size such as 2GB or 536870912, got {text!r}.")
    try:
        return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    except ValueError:
        raise DataError(f"MEDSYNTH_MEMORY_LIMIT must be a size such as 2GB or 536870912, got {text!r}.") from None


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def as_image_array(images: Any, name: str = "images") -> np.ndarray:
    """Check and convert ``images`` to the package convention.

    Accepts a numpy array or torch tensor of shape (N, C, H, W), (C, H, W) or
    (H, W) with values in [0, 1], and returns a C-contiguous float32 array of
    shape (N, C, H, W).

    Raises
    ------
    DataError
        For a wrong number of dimensions, NaN or infinite values, or values
        outside [0, 1].

    Examples
    --------
    >>> as_image_array(np.zeros((8, 8))).shape
    (1, 1, 8, 8)
    """
    if hasattr(images, "detach"):  # torch tensor, without importing torch here
        images = images.detach().cpu().numpy()
    arr = np.asarray(images)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{name} must be a numeric array, got dtype {arr.dtype}.")
    if arr.ndim == 2:
        arr = arr[None, None]
    elif arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise DataError(f"{name} must have shape (N, C, H, W), (C, H, W) or (H, W); got shape {arr.shape}.")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.size and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).reshape(len(arr), -1).any(1).sum())
        raise DataError(f"{name} contain NaN or infinite values in {bad} image(s); clean or drop them first.")
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise DataError(
            f"{name} must lie in [0, 1]; got values from {arr.min():.4g} to {arr.max():.4g}. "
            "Rescale them (for 8-bit data divide by 255)."
        )
    return arr


class ImageSet:
    """A set of images with one metadata row per image and provenance, in memory or file-backed.

    Parameters
    ----------
    images : array-like, shape (N, C, H, W), optional
        float32 values in [0, 1]. Checked and converted on construction.
        Omit it for a file-backed set and give ``source`` instead.
    metadata : pandas.DataFrame, optional
        One row per image. An empty frame with N rows is made when omitted.
    provenance : dict, optional
        Where the images came from: ``source``, ``version``, ``seed`` and any
        other keys. ``content_hash`` is filled in when missing: the SHA-256
        of the pixels for an in-memory set, of the per-image identity keys
        (file, size, modification time, decoding settings) for a file-backed one.
    source : ImageSource, optional (keyword only)
        Where a file-backed set's pixels come from
        (:mod:`medsynth_explore.data.sources`); the loaders make it.

    Examples
    --------
    >>> s = ImageSet(np.zeros((4, 1, 8, 8), np.float32),
    ...              pd.DataFrame({"sex": ["F", "M", "F", "M"]}))
    >>> len(s), len(s.query("sex == 'F'"))
    (4, 2)
    >>> [b.shape[0] for b in s.batches(3)]
    [3, 1]
    """

    def __init__(
        self,
        images: Any = None,
        metadata: Optional[pd.DataFrame] = None,
        provenance: Optional[dict] = None,
        *,
        source: Any = None,
    ) -> None:
        if source is not None:
            if images is not None:
                raise DataError("give an ImageSet either images (in memory) or a source (file-backed), not both.")
            self._source = source
            self._images: Optional[np.ndarray] = None
            n = len(source)
        else:
            if images is None:
                raise DataError("an ImageSet needs images (N, C, H, W), or a source for a file-backed set.")
            self._source = None
            self._images = as_image_array(images)
            n = len(self._images)
        if metadata is None:
            metadata = pd.DataFrame(index=pd.RangeIndex(n))
        if not isinstance(metadata, pd.DataFrame):
            raise DataError(f"metadata must be a pandas DataFrame, got {type(metadata).__name__}.")
        if len(metadata) != n:
            raise DataError(f"metadata has {len(metadata)} rows but there are {n} images; give one row per image.")
        self.metadata = metadata.reset_index(drop=True)
        self.provenance = dict(provenance or {})
        if "content_hash" not in self.provenance:
            self.provenance["content_hash"] = hash_array(self._images) if self._source is None else self._identity_hash()

    def _identity_hash(self) -> str:
        h = hashlib.sha256(f"file-backed{self.shape}".encode())
        for k in self._source.keys().tolist():
            h.update(k.encode())
        return h.hexdigest()

    # -- basic container protocol ------------------------------------------------
    def __len__(self) -> int:
        return len(self._images) if self._source is None else len(self._source)

    def __repr__(self) -> str:
        n, c, h, w = self.shape
        cols = ", ".join(map(str, self.metadata.columns[:8]))
        more = ", ..." if self.metadata.shape[1] > 8 else ""
        src = self.provenance.get("source", "?")
        where = ", file-backed" if self.file_backed else ""
        return f"ImageSet(n={n}, channels={c}, size={h}x{w}{where}, source={src!r}, columns=[{cols}{more}])"

    @property
    def file_backed(self) -> bool:
        """Whether the pixels stay on disk and are decoded when needed."""
        return self._source is not None

    @property
    def source(self):
        """The :mod:`source <medsynth_explore.data.sources>` of a file-backed set (None in memory)."""
        return self._source

    @property
    def shape(self) -> tuple:
        """Shape (N, C, H, W) of the images (known without decoding a file-backed set)."""
        if self._source is None:
            return tuple(self._images.shape)
        return (len(self._source), *self._source.item_shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the decoded float32 images (what :attr:`images` would hold)."""
        n, c, h, w = self.shape
        return int(n) * int(c) * int(h) * int(w) * 4

    @property
    def images(self) -> np.ndarray:
        """All images as one float32 array (N, C, H, W) in [0, 1].

        For a file-backed set the first access decodes every image (in
        parallel) and keeps the array, if it fits in :func:`memory_limit`;
        a larger set raises :class:`~medsynth_explore.errors.DataError`:
        iterate :meth:`batches`, :meth:`read` a few rows, or take a subset.
        """
        if self._images is None:
            need, limit = self.nbytes, memory_limit()
            if need > limit:
                n, c, h, w = self.shape
                raise DataError(
                    f"this file-backed set holds {n:,} images of {c}x{h}x{w} ({_gb(need)} as float32), more than the "
                    f"in-memory limit of {_gb(limit)}. Iterate it in batches (for batch in data.batches(64): ...), read "
                    "a few rows (data.read([0, 1, 2])), take a subset (data[:500].images), load it with a smaller size=, "
                    "or raise the limit with MEDSYNTH_MEMORY_LIMIT (e.g. 8GB)."
                )
            self._images = self._source.read(np.arange(len(self._source)))
        return self._images

    @property
    def content_hash(self) -> str:
        """SHA-256 of the image array (in memory) or of the per-image identity keys (file-backed)."""
        return self.provenance["content_hash"]

    def image_hashes(self) -> list[str]:
        """Per-image keys of the feature cache.

        In memory: content hashes (:func:`image_keys`). File-backed: the file's
        identity (resolved path, size, modification time) and the decoding
        settings (:func:`medsynth_explore.data.sources.file_keys`), read
        without decoding, so that a second evaluation of the same reference
        finds its features without touching a pixel.
        """
        if self._source is not None:
            return self._source.keys().tolist()
        return image_keys(self._images).tolist()

    # -- reading -----------------------------------------------------------------------
    def read(self, index: Any, workers: Optional[int] = None) -> np.ndarray:
        """The images at integer positions ``index`` as float32 (k, C, H, W); decodes only those.

        Examples
        --------
        >>> ImageSet(np.zeros((5, 1, 2, 2), np.float32)).read([4, 0]).shape
        (2, 1, 2, 2)
        """
        pos = self._positions(index)
        if self._images is not None:
            return np.ascontiguousarray(self._images[pos])
        return self._source.read(pos, workers=workers)

    def batches(
        self, batch_size: int = 64, workers: Optional[int] = None, prefetch: int = 2, transform: Any = None
    ) -> Iterator[np.ndarray]:
        """Images in order, ``batch_size`` at a time, as float32 arrays (B, C, H, W).

        In memory: views of the array, no copy. File-backed: decoded by
        ``workers`` threads (default :func:`~medsynth_explore.data.sources.default_workers`)
        with at most ``prefetch`` batches ready ahead of the consumer, so
        memory stays near ``(prefetch + 2) * batch_size`` images whatever N is.

        ``transform(image) -> image`` is applied to each float32 (C, H, W)
        image: for a file-backed set in the thread that decoded it (an
        encoder's :meth:`~medsynth_explore.features.Encoder.decode_transform`
        resizes there, so the batches are at the network's size); in memory,
        in the caller's thread.

        Raises
        ------
        DataError
            A file that cannot be decoded (named in the message).
        """
        bs = int(batch_size)
        if bs < 1:
            raise DataError(f"batch_size must be at least 1, got {batch_size}.")
        if self._images is not None:
            shape = None if transform is None else transformed_shape(transform, self._images.shape[1:])
            for s in range(0, len(self._images), bs):
                b = self._images[s : s + bs]
                yield b if transform is None else apply_transform(transform, b, shape)
            return
        yield from self._source.batches(bs, workers=workers, prefetch=prefetch, transform=transform)

    def to_memory(self) -> "ImageSet":
        """An in-memory copy (for a file-backed set: every image decoded, within :func:`memory_limit`)."""
        if not self.file_backed:
            return self
        prov = {k: v for k, v in self.provenance.items() if k != "content_hash"}
        prov["file_backed_hash"] = self.content_hash
        return ImageSet(self.images, self.metadata.copy(), prov)

    def verify(self, on_error: str = "raise", workers: Optional[int] = None) -> "ImageSet":
        """Decode every image once; with ``on_error="skip"`` return the set without the ones that fail.

        Loading checks each file's header and end (truncation); a file that
        passes those and still fails to decode is found here. The skipped
        files are listed in ``provenance["skipped"]``. An in-memory set is
        returned as it is.
        """
        if on_error not in ("raise", "skip"):
            raise DataError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
        if not self.file_backed:
            return self
        src = self._source
        bad: list[tuple[int, str]] = []

        def check(p: int) -> None:
            try:
                src.read([p], workers=1)
            except DataError as exc:
                if on_error == "raise":
                    raise
                bad.append((p, str(exc)))

        from concurrent.futures import ThreadPoolExecutor

        from .sources import default_workers

        with ThreadPoolExecutor(workers or default_workers(), thread_name_prefix="medsynth-verify") as ex:
            for f in [ex.submit(check, p) for p in range(len(src))]:
                f.result()
        if not bad:
            return self
        keep = np.setdiff1d(np.arange(len(self)), [p for p, _ in bad])
        out = self.subset(keep)
        out.provenance["skipped"] = list(self.provenance.get("skipped", [])) + [
            {"file": src.name(p), "reason": why} for p, why in sorted(bad)
        ]
        return out

    # -- subsetting ------------------------------------------------------------------
    def _positions(self, index: Any) -> np.ndarray:
        n = len(self)
        if isinstance(index, pd.Series):
            index = index.to_numpy()
        if isinstance(index, slice):
            return np.arange(n)[index]
        idx = np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise DataError(f"boolean mask has shape {idx.shape}, expected ({n},).")
            return np.flatnonzero(idx)
        if idx.size == 0:
            return idx.astype(np.int64).reshape(-1)
        if np.issubdtype(idx.dtype, np.integer):
            pos = idx.reshape(-1).astype(np.int64)
            if pos.max() >= n or pos.min() < -n:
                raise DataError(f"index out of range for an ImageSet of {n} images.")
            return np.where(pos < 0, pos + n, pos)
        raise DataError(f"cannot index an ImageSet with {idx.dtype} values; use a boolean mask, integers or a slice.")

    def subset(self, index: Any) -> "ImageSet":
        """Rows selected by a boolean mask, integer positions or a slice.

        The provenance records the parent hash. A subset of a file-backed set
        is file-backed and decodes only its own rows.
        """
        pos = self._positions(index)
        prov = {k: v for k, v in self.provenance.items() if k != "content_hash"}
        prov["parent_hash"] = self.content_hash
        meta = self.metadata.iloc[pos].reset_index(drop=True)
        if self._source is None:
            return ImageSet(self._images[pos], meta, prov)
        out = ImageSet(metadata=meta, provenance=prov, source=self._source.take(pos))
        if self._images is not None:
            out._images = self._images[pos]
        return out

    def __getitem__(self, index: Any) -> "ImageSet":
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return self.subset(index)

    def query(self, expr: str) -> "ImageSet":
        """Rows whose metadata satisfy a :meth:`pandas.DataFrame.query` expression."""
        try:
            mask = self.metadata.eval(expr)
        except Exception as exc:  # pandas raises many types for a bad expression
            raise DataError(f"cannot evaluate query {expr!r} on columns {list(self.metadata.columns)}: {exc}") from exc
        if not (isinstance(mask, pd.Series) and mask.dtype == bool):
            raise DataError(f"query {expr!r} must give one True/False per row.")
        return self.subset(mask.to_numpy())

    def split(
        self,
        fractions: Mapping[str, float] | Sequence[float] = (0.7, 0.15, 0.15),
        seed: int = 0,
        group: str | None = "patient_id",
    ) -> dict[str, "ImageSet"]:
        """Split into disjoint parts, keeping all images of one patient together.

        Parameters
        ----------
        fractions : mapping name -> fraction, or a sequence
            A sequence of three is named train/val/test; fractions are normalised.
        seed : int
            Seed of the shuffle of patients.
        group : str or None
            Metadata column naming the patient. Images sharing a value never end
            up in different parts. Without that column each image is its own patient.

        Examples
        --------
        >>> s = ImageSet(np.zeros((10, 1, 4, 4), np.float32))
        >>> {k: len(v) for k, v in s.split((0.6, 0.2, 0.2)).items()}
        {'train': 6, 'val': 2, 'test': 2}
        """
        if not isinstance(fractions, Mapping):
            fractions = list(fractions)
            names = (
                ["train", "val", "test"][: len(fractions)] if len(fractions) <= 3 else [f"part{i}" for i in range(len(fractions))]
            )
            fractions = dict(zip(names, fractions))
        fr = np.array(list(fractions.values()), dtype=float)
        if (fr < 0).any() or fr.sum() <= 0:
            raise DataError(f"split fractions must be non-negative and not all zero, got {dict(fractions)}.")
        fr = fr / fr.sum()
        if group is not None and group in self.metadata.columns:
            keys = self.metadata[group].astype(str).to_numpy()
        else:
            keys = np.arange(len(self)).astype(str)
        uniq = np.unique(keys)
        rng = np.random.default_rng(seed)
        order = uniq[rng.permutation(len(uniq))]
        bounds = np.round(np.cumsum(fr) * len(order)).astype(int)
        starts = np.concatenate([[0], bounds[:-1]])
        out = {}
        for name, a, b in zip(fractions, starts, bounds):
            chosen = set(order[a:b])
            mask = np.fromiter((k in chosen for k in keys), bool, len(keys))
            part = self.subset(mask)
            part.provenance["split"] = name
            part.provenance["split_seed"] = seed
            out[name] = part
        return out

    @staticmethod
    def concat(sets: Iterable["ImageSet"], source: str | None = None) -> "ImageSet":
        """Join image sets of equal image shape; metadata columns are united.

        When any part is file-backed the result is file-backed (in-memory
        parts join it as arrays).
        """
        sets = list(sets)
        if not sets:
            raise DataError("concat needs at least one ImageSet.")
        shapes = {s.shape[1:] for s in sets}
        if len(shapes) > 1:
            raise DataError(f"cannot concatenate images of different shapes {sorted(shapes)}; resize them first.")
        meta = pd.concat([s.metadata for s in sets], ignore_index=True)
        prov = {"source": source or "concat", "parts": [s.provenance.get("content_hash") for s in sets]}
        if not any(s.file_backed for s in sets):
            return ImageSet(np.concatenate([s._images for s in sets]), meta, prov)
        from .sources import ArraySource, ConcatSource

        parts = [s._source if s.file_backed else ArraySource(s._images) for s in sets]
        return ImageSet(metadata=meta, provenance=prov, source=ConcatSource(parts))

    def copy(self) -> "ImageSet":
        """A deep copy (images, metadata and provenance; a file-backed set shares its read-only source)."""
        if self._source is None:
            return ImageSet(self._images.copy(), self.metadata.copy(), copy.deepcopy(self.provenance))
        return ImageSet(metadata=self.metadata.copy(), provenance=copy.deepcopy(self.provenance), source=self._source)

    def to_folder(self, path, *, bits: int = 16, overwrite: bool = False) -> Path:
        """Write PNG files, ``metadata.csv`` and ``provenance.json`` to ``path``.

        :func:`medsynth_explore.load_dataset` reads the folder back. With
        ``bits=16`` images quantised to 16 bits round-trip exactly. A
        file-backed set is written batch by batch.
        """
        from .folder import write_folder

        return write_folder(self, path, bits=bits, overwrite=overwrite)

    # -- display (medsynth_explore.data.display; reads only the images it shows) -------------
    def _repr_html_(self) -> str:
        """The notebook display: n, image size, columns and thumbnails of the first 16 images."""
        from .display import imageset_html

        return imageset_html(self)

    def show(
        self, n: int = 16, by: Sequence[str] | str | None = None, columns: Sequence[str] | str | None = None, width: int = 96
    ):
        """Thumbnails with captions, one group per value of ``by`` (e.g. ``by="sex"``, or ``by="findings"``).

        ``n`` images in all, or per group when ``by`` is given; ``columns``
        chooses the caption columns (default sex, age and findings). Returns a
        :class:`~medsynth_explore.data.display.Gallery` that displays itself
        in a notebook (see :func:`medsynth_explore.data.display.show`).
        """
        from .display import show

        return show(self, n=n, by=by, columns=columns, width=width)
