"""``ImageSet``: images, one metadata row per image, and where they came from."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import DataError

__all__ = ["ImageSet", "as_image_array", "hash_array", "image_keys"]


def hash_array(array: np.ndarray) -> str:
    """SHA-256 hex digest of an array's shape, dtype and bytes.

    Examples
    --------
    >>> a = np.zeros((1, 1, 2, 2), np.float32)
    >>> hash_array(a) == hash_array(a.copy()), hash_array(a) == hash_array(a + 0.5)
    (True, False)
    """
    a = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def image_keys(images: Any) -> np.ndarray:
    """One content hash per image (BLAKE2b-128 of its shape, dtype and float32 bytes).

    Keys the on-disk feature cache; two images share a key only if they are
    equal pixel for pixel at the same shape.

    Examples
    --------
    >>> k = image_keys(np.zeros((2, 1, 4, 4), np.float32))
    >>> k.shape, k[0] == k[1]
    ((2,), True)
    """
    arr = np.ascontiguousarray(images, dtype=np.float32)
    head = f"{arr.shape[1:]}float32".encode()
    out = []
    for im in arr:
        h = hashlib.blake2b(head, digest_size=16)
        h.update(im.tobytes())
        out.append(h.hexdigest())
    return np.asarray(out, dtype="U32")


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


@dataclass
class ImageSet:
    """A set of images with one metadata row per image and provenance.

    Parameters
    ----------
    images : array-like, shape (N, C, H, W)
        float32 values in [0, 1]. Checked and converted on construction.
    metadata : pandas.DataFrame, optional
        One row per image. An empty frame with N rows is made when omitted.
    provenance : dict, optional
        Where the images came from: ``source``, ``version``, ``seed`` and any
        other keys. ``content_hash`` is filled in when missing.

    Examples
    --------
    >>> s = ImageSet(np.zeros((4, 1, 8, 8), np.float32),
    ...              pd.DataFrame({"sex": ["F", "M", "F", "M"]}))
    >>> len(s), len(s.query("sex == 'F'"))
    (4, 2)
    """

    images: np.ndarray
    metadata: pd.DataFrame = None  # type: ignore[assignment]
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.images = as_image_array(self.images)
        n = len(self.images)
        if self.metadata is None:
            self.metadata = pd.DataFrame(index=pd.RangeIndex(n))
        if not isinstance(self.metadata, pd.DataFrame):
            raise DataError(f"metadata must be a pandas DataFrame, got {type(self.metadata).__name__}.")
        if len(self.metadata) != n:
            raise DataError(f"metadata has {len(self.metadata)} rows but there are {n} images; give one row per image.")
        self.metadata = self.metadata.reset_index(drop=True)
        self.provenance = dict(self.provenance or {})
        self.provenance.setdefault("content_hash", hash_array(self.images))

    # -- basic container protocol ------------------------------------------------
    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        cols = ", ".join(map(str, self.metadata.columns[:8]))
        more = ", ..." if self.metadata.shape[1] > 8 else ""
        src = self.provenance.get("source", "?")
        return f"ImageSet(n={n}, channels={c}, size={h}x{w}, source={src!r}, columns=[{cols}{more}])"

    @property
    def shape(self) -> tuple:
        """Shape (N, C, H, W) of :attr:`images`."""
        return tuple(self.images.shape)

    @property
    def content_hash(self) -> str:
        """SHA-256 of the image array (see :func:`hash_array`)."""
        return self.provenance["content_hash"]

    def image_hashes(self) -> list[str]:
        """Per-image content hashes (:func:`image_keys`), the keys of the feature cache."""
        return image_keys(self.images).tolist()

    # -- subsetting ------------------------------------------------------------------
    def subset(self, index: Any) -> "ImageSet":
        """Rows selected by a boolean mask, integer positions or a slice.

        The provenance records the parent hash and the number of rows kept.
        """
        if isinstance(index, pd.Series):
            index = index.to_numpy()
        if isinstance(index, slice):
            pos = np.arange(len(self))[index]
        else:
            idx = np.asarray(index)
            if idx.dtype == bool:
                if idx.shape != (len(self),):
                    raise DataError(f"boolean mask has shape {idx.shape}, expected ({len(self)},).")
                pos = np.flatnonzero(idx)
            elif idx.size == 0:
                pos = idx.astype(int)
            elif np.issubdtype(idx.dtype, np.integer):
                pos = idx.reshape(-1)
                if pos.size and (pos.max() >= len(self) or pos.min() < -len(self)):
                    raise DataError(f"index out of range for an ImageSet of {len(self)} images.")
            else:
                raise DataError(f"cannot index an ImageSet with {idx.dtype} values; use a boolean mask, integers or a slice.")
        prov = {k: v for k, v in self.provenance.items() if k != "content_hash"}
        prov["parent_hash"] = self.content_hash
        return ImageSet(self.images[pos], self.metadata.iloc[pos].reset_index(drop=True), prov)

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
        """Join image sets of equal image shape; metadata columns are united."""
        sets = list(sets)
        if not sets:
            raise DataError("concat needs at least one ImageSet.")
        shapes = {s.images.shape[1:] for s in sets}
        if len(shapes) > 1:
            raise DataError(f"cannot concatenate images of different shapes {sorted(shapes)}; resize them first.")
        images = np.concatenate([s.images for s in sets])
        meta = pd.concat([s.metadata for s in sets], ignore_index=True)
        prov = {"source": source or "concat", "parts": [s.provenance.get("content_hash") for s in sets]}
        return ImageSet(images, meta, prov)

    def copy(self) -> "ImageSet":
        """A deep copy (images, metadata and provenance)."""
        return ImageSet(self.images.copy(), self.metadata.copy(), copy.deepcopy(self.provenance))

    def to_folder(self, path, *, bits: int = 16, overwrite: bool = False) -> Path:
        """Write PNG files, ``metadata.csv`` and ``provenance.json`` to ``path``.

        :func:`medsynth_explore.load_dataset` reads the folder back. With
        ``bits=16`` images quantised to 16 bits round-trip exactly.
        """
        from .folder import write_folder

        return write_folder(self, path, bits=bits, overwrite=overwrite)
