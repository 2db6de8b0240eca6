"""On-disk feature cache keyed by per-image key and encoder id.

The per-image key is the content hash of an in-memory image
(:func:`~medsynth_explore.data.image_keys`) and, for a file-backed
:class:`~medsynth_explore.data.ImageSet`, the file's identity (resolved
path, size, modification time) with the decoding settings
(:meth:`~medsynth_explore.data.ImageSet.image_hashes`): finding the features
of a reference of 50,000 files already encoded reads no pixel at all, and
the images still missing are streamed through the encoder as a file-backed
subset.

Layout: ``<root>/<encoder-id-slug>/shard-<digest>.npz``, each shard holding
``keys`` (per-image hashes) and ``features`` (float32). Files are written to a
temporary name and renamed into place, so a crash never leaves a half-written
shard, and read with ``allow_pickle=False``. Reopening a notebook finds the
features of images it has already encoded and encodes only the new ones.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..data.imageset import image_keys
from ..errors import FeatureError
from .base import Encoder, ProgressCallback, to_image_array

__all__ = ["FeatureCache", "encode_cached", "default_cache_dir", "image_keys"]


def default_cache_dir() -> Path:
    """``$MEDSYNTH_CACHE_DIR/features`` or ``~/.cache/medsynth_explore/features``.

    Examples
    --------
    >>> default_cache_dir().name
    'features'
    """
    root = os.environ.get("MEDSYNTH_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "medsynth_explore"
    return base / "features"


def _slug(encoder_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder_id)[:80]
    return f"{safe}-{hashlib.sha256(encoder_id.encode()).hexdigest()[:10]}"


class FeatureCache:
    """Features by (encoder id, image hash), stored as ``.npz`` shards.

    Parameters
    ----------
    directory : path, optional
        Root folder (default :func:`default_cache_dir`).

    Examples
    --------
    >>> import tempfile
    >>> c = FeatureCache(tempfile.mkdtemp())
    >>> c.put("enc", np.array(["a", "b"]), np.ones((2, 3), np.float32))
    >>> feats, found = c.get("enc", np.array(["b", "z"]))
    >>> found.tolist(), feats[0].tolist()
    ([True, False], [1.0, 1.0, 1.0])
    """

    def __init__(self, directory: Optional[str | os.PathLike] = None):
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir()
        self._index: dict = {}  # encoder id -> (shard names, {key: (shard, row)})

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.directory)!r})"

    def _dir(self, encoder_id: str) -> Path:
        return self.directory / _slug(encoder_id)

    def _load(self, encoder_id: str) -> dict:
        d = self._dir(encoder_id)
        shards = sorted(d.glob("shard-*.npz")) if d.is_dir() else []
        names = tuple(p.name for p in shards)
        cached = self._index.get(encoder_id)
        if cached is not None and cached[0] == names:
            return cached[1]
        table: dict = {}
        for p in shards:
            try:
                with np.load(p, allow_pickle=False) as z:
                    keys, feats = z["keys"], z["features"]
            except Exception as exc:  # a damaged shard is skipped (and its images recomputed)
                warnings.warn(f"ignoring unreadable feature cache file {p}: {exc}", RuntimeWarning, stacklevel=3)
                continue
            for i, k in enumerate(keys.tolist()):
                table[k] = (feats, i)
        self._index[encoder_id] = (names, table)
        return table

    def get(self, encoder_id: str, keys: np.ndarray) -> tuple[Optional[np.ndarray], np.ndarray]:
        """Cached features for ``keys`` (rows of missing keys are zero) and a found mask."""
        table = self._load(encoder_id)
        found = np.array([k in table for k in keys.tolist()], bool)
        if not found.any():
            return None, found
        dim = next(iter(table.values()))[0].shape[1]
        out = np.zeros((len(keys), dim), np.float32)
        for j, k in enumerate(keys.tolist()):
            if found[j]:
                arr, i = table[k]
                out[j] = arr[i]
        return out, found

    def put(self, encoder_id: str, keys: np.ndarray, features: np.ndarray) -> None:
        """Store features for keys (write to a temporary file, then rename)."""
        keys = np.asarray(keys, dtype="U32")
        features = np.ascontiguousarray(features, dtype=np.float32)
        if features.ndim != 2 or len(features) != len(keys):
            raise FeatureError(f"cache put needs one feature row per key: {features.shape} vs {len(keys)} keys.")
        if not len(keys):
            return
        d = self._dir(encoder_id)
        d.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256("".join(keys.tolist()).encode()).hexdigest()[:16]
        final = d / f"shard-{digest}.npz"
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, keys=keys, features=features)
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        info = d / "encoder_id.txt"
        if not info.exists():
            info.write_text(encoder_id + "\n")

    def clear(self, encoder_id: Optional[str] = None) -> int:
        """Delete cached shards (of one encoder or all); returns the number of files removed."""
        dirs = (
            [self._dir(encoder_id)]
            if encoder_id
            else ([p for p in self.directory.iterdir() if p.is_dir()] if self.directory.is_dir() else [])
        )
        n = 0
        for d in dirs:
            for p in d.glob("shard-*.npz"):
                p.unlink()
                n += 1
        self._index.clear()
        return n


def encode_cached(
    encoder: Encoder,
    images: Any,
    cache: Optional[FeatureCache | str | os.PathLike] = None,
    batch_size: Optional[int] = None,
    callback: Optional[ProgressCallback] = None,
) -> np.ndarray:
    """``encoder.encode(images)`` that reuses features cached on disk.

    Only images whose (key, encoder id) pair is not in the cache are
    encoded; their features are then added to it. Keys of an ImageSet come
    from :meth:`~medsynth_explore.data.ImageSet.image_hashes` (file identity
    for a file-backed set, so nothing is decoded when all are cached).

    Parameters
    ----------
    encoder : Encoder
    images : ImageSet or array (N, C, H, W) in [0, 1]
    cache : FeatureCache or path, optional
        Default: ``FeatureCache()`` at :func:`default_cache_dir`.
    batch_size, callback : as in :meth:`Encoder.encode`

    Examples
    --------
    >>> import tempfile
    >>> from medsynth_explore.features import PixelEncoder
    >>> c = FeatureCache(tempfile.mkdtemp())
    >>> x = np.random.default_rng(0).random((3, 1, 16, 16)).astype(np.float32)
    >>> a = encode_cached(PixelEncoder(size=4), x, cache=c)
    >>> b = encode_cached(PixelEncoder(size=4), x, cache=c)  # read back, not recomputed
    >>> bool((a == b).all())
    True
    """
    if not isinstance(cache, FeatureCache):
        cache = FeatureCache(cache)
    if hasattr(images, "image_hashes") and hasattr(images, "subset"):  # an ImageSet: keys without decoding
        data = images
        keys = np.asarray(images.image_hashes(), dtype="U32")
    else:
        data = to_image_array(images)
        keys = image_keys(data)
    feats, found = cache.get(encoder.id, keys)
    if feats is not None and feats.shape[1] != encoder.dim:
        warnings.warn(
            f"cached features for {encoder.id} have {feats.shape[1]} dims, expected {encoder.dim}; recomputing.",
            RuntimeWarning,
            stacklevel=2,
        )
        feats, found = None, np.zeros(len(keys), bool)
    if feats is None:
        feats = np.zeros((len(keys), encoder.dim), np.float32)
    missing = np.flatnonzero(~found)
    if len(missing):
        # identical images within the batch are encoded once
        uniq, first, inverse = np.unique(keys[missing], return_index=True, return_inverse=True)
        todo = data.subset(missing[first]) if data is images and hasattr(data, "subset") else data[missing[first]]
        new = encoder.encode(todo, batch_size=batch_size, callback=callback)
        feats[missing] = new[inverse]
        cache.put(encoder.id, uniq, new)
    elif callback is not None:
        callback(len(keys), len(keys))
    return feats
