"""Content hashes of image arrays: one for a whole array, one per image (the in-memory feature-cache keys)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

__all__ = ["hash_array", "image_keys"]


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
    h.update(memoryview(a.reshape(-1).view(np.uint8)) if a.size else b"")  # the bytes, without a copy
    return h.hexdigest()


def image_keys(images: Any) -> np.ndarray:
    """One content hash per image (BLAKE2b-128 of its shape, dtype and float32 bytes).

    Keys the on-disk feature cache for in-memory images; two images share a
    key only if they are equal pixel for pixel at the same shape.
    (File-backed sets key their images by file identity instead:
    :meth:`ImageSet.image_hashes`.)

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
