"""Where the pixels of a file-backed :class:`~medsynth_explore.data.ImageSet` come from, read in batches.

A source knows how many images it holds, their shape ``(C, H, W)`` after
decoding, one identity key per image, and how to decode any of them. It
never keeps decoded pixels: :meth:`ImageSource.batches` decodes on demand
in a pool of worker threads (PIL and pydicom's codecs release the GIL while
they decode) and keeps at most ``prefetch`` batches ahead of the consumer,
so memory stays bounded whatever the number of images and the decoding of
batch *k+1* overlaps the work the consumer does on batch *k* (an encoder's
forward pass).

Sources: :class:`FileSource` (image or DICOM files, one per image),
:class:`NpzSource` (rows of an array inside an ``.npz`` file, read without
loading the whole array), :class:`ArraySource` (an in-memory array, so that
in-memory and file-backed sets concatenate) and :class:`ConcatSource`.

Identity keys (the feature cache's keys, :meth:`ImageSource.keys`): for a
file, BLAKE2b-128 of its resolved path, byte size, modification time and the
decoding settings (:meth:`~medsynth_explore.data.decode.DecodeSettings.digest`);
for an array row, its content hash (:func:`~medsynth_explore.data.image_keys`).
Editing or replacing a file changes its key, so stale features are never
reused; reading the keys costs one ``stat`` per file at load time, not a
decode.

Examples
--------
>>> import numpy as np
>>> src = ArraySource(np.zeros((5, 1, 4, 4), np.float32))
>>> [b.shape[0] for b in src.batches(2)]
[2, 2, 1]
"""

from __future__ import annotations

import hashlib
import os
import threading
import zipfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from ..errors import DataError

#: a per-image function run in the decoding threads: float32 (C, H, W) in, float32 (c, h, w) out
Transform = Callable[[np.ndarray], np.ndarray]

__all__ = [
    "ImageSource",
    "FileSource",
    "NpzSource",
    "ArraySource",
    "ConcatSource",
    "default_workers",
    "file_keys",
]


def default_workers() -> int:
    """Decoding threads used when a caller gives none: ``$MEDSYNTH_IO_WORKERS`` or min(8, CPU count).

    Examples
    --------
    >>> default_workers() >= 1
    True
    """
    env = os.environ.get("MEDSYNTH_IO_WORKERS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise DataError(f"MEDSYNTH_IO_WORKERS must be a whole number of threads, got {env!r}.") from None
    return max(1, min(8, os.cpu_count() or 1))


def file_keys(paths: Sequence[str], stats: Sequence[tuple[int, int]], settings_digest: str) -> np.ndarray:
    """Identity keys of files: BLAKE2b-128 of (resolved path, size, mtime_ns, settings digest), as 32 hex characters.

    Examples
    --------
    >>> k = file_keys(["/a.png", "/a.png"], [(10, 1), (10, 2)], "s")
    >>> k.dtype, bool(k[0] != k[1])
    (dtype('<U32'), True)
    """
    out = np.empty(len(paths), dtype="U32")
    for i, (p, (size, mtime)) in enumerate(zip(paths, stats)):
        h = hashlib.blake2b(digest_size=16)
        h.update(f"file\0{p}\0{size}\0{mtime}\0{settings_digest}".encode("utf-8", "surrogateescape"))
        out[i] = h.hexdigest()
    return out


class ImageSource:
    """Base class: ``len``, ``item_shape``, ``keys()``, ``read(positions)``, ``take(positions)``, ``batches()``.

    Subclasses implement :meth:`_decode_one` (one image, float32 (C, H, W))
    or override :meth:`read`, plus :meth:`take`, :meth:`keys` and
    :meth:`describe`.
    """

    item_shape: tuple[int, int, int] = (1, 1, 1)
    #: decoding runs in several threads (False: the source reads sequentially, e.g. one zip member, in one thread)
    parallel: bool = True
    #: :meth:`batches` reads ahead in background threads (False: nothing to overlap, e.g. an in-memory array)
    background: bool = True

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        """Bytes the decoded float32 images would take in memory."""
        c, h, w = self.item_shape
        return int(len(self)) * int(c) * int(h) * int(w) * 4

    def keys(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def take(self, positions: np.ndarray) -> "ImageSource":  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        """JSON-ready description for provenance."""
        return {"kind": type(self).__name__, "n": len(self), "item_shape": list(self.item_shape)}

    def _decode_one(self, position: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fill(self, out: np.ndarray, rows: Sequence[int], positions: Sequence[int], transform: Optional[Transform] = None):
        for r, p in zip(rows, positions):
            a = self._decode_one(int(p))
            if a.shape != self.item_shape:
                raise DataError(
                    f"{self.name(int(p))} decoded to shape {a.shape}, expected {self.item_shape}; "
                    "the file changed since the set was loaded, or load with size= to resize every image."
                )
            out[r] = a if transform is None else transform(a)

    def name(self, position: int) -> str:
        """A human-readable name of one image (its file), for messages."""
        return f"image {position}"

    def read(self, positions: Any, workers: Optional[int] = None) -> np.ndarray:
        """Decode the images at ``positions`` into one float32 array (k, C, H, W)."""
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        out = np.empty((len(pos), *self.item_shape), np.float32)
        if not len(pos):
            return out
        workers = default_workers() if workers is None else max(1, int(workers))
        if workers == 1 or len(pos) < 2 or not self.parallel:
            self._fill(out, range(len(pos)), pos)
            return out
        chunks = np.array_split(np.arange(len(pos)), min(len(pos), workers * 2))
        with ThreadPoolExecutor(workers, thread_name_prefix="medsynth-decode") as ex:
            futures = [ex.submit(self._fill, out, c, pos[c]) for c in chunks if len(c)]
            for f in futures:
                f.result()
        return out

    def batches(
        self,
        batch_size: int = 64,
        workers: Optional[int] = None,
        prefetch: int = 2,
        positions: Any = None,
        transform: Optional[Transform] = None,
    ) -> Iterator[np.ndarray]:
        """Decoded batches in order, at most ``prefetch`` batches decoded ahead of the consumer.

        Parameters
        ----------
        batch_size : int
        workers : int, optional
            Decoding threads (default :func:`default_workers`). One worker
            is still a background thread: the next batch decodes while the
            consumer works on this one.
        prefetch : int
            Batches decoded ahead (memory: about ``(prefetch + 1) * batch_size`` images);
            0 decodes each batch in the caller's thread when it is asked for.
        positions : array of int, optional
            Read only these images, in this order.
        transform : callable, optional
            ``transform(image) -> image`` on each decoded float32 (C, H, W)
            image, in the decoding thread that decoded it, while the image is
            still in that core's cache (an encoder's resize,
            :meth:`~medsynth_explore.features.Encoder.decode_transform`). It
            must give every image the same shape; the batches hold its output.

        Yields
        ------
        numpy.ndarray
            float32 (B, C, H, W); the last batch may be shorter.
        """
        bs = int(batch_size)
        if bs < 1:
            raise DataError(f"batch_size must be at least 1, got {batch_size}.")
        pos = np.arange(len(self)) if positions is None else np.asarray(positions, dtype=np.int64).reshape(-1)
        starts = list(range(0, len(pos), bs))
        if not starts:
            return
        workers = default_workers() if workers is None else max(1, int(workers))
        shape = self.item_shape if transform is None else transformed_shape(transform, self.item_shape)

        def read(p):  # one whole batch in one thread (a source that reads sequentially)
            b = self.read(p, workers=1)
            return b if transform is None else apply_transform(transform, b, shape)

        if not self.background or int(prefetch) < 1:  # in the caller's thread, one batch at a time
            for s in starts:
                yield read(pos[s : s + bs])
            return
        # even one worker decodes in a background thread, so that decoding overlaps the consumer's work;
        # a source that reads sequentially (parallel = False) gets exactly one such thread
        workers = workers if self.parallel else 1
        ex = ThreadPoolExecutor(workers, thread_name_prefix="medsynth-decode")
        pending: deque = deque()
        failed = threading.Event()

        def guarded(task, *args):
            if failed.is_set():  # a batch already failed: do no more work (and never hand this one over)
                raise _Skipped
            try:
                return task(*args)
            except BaseException:
                failed.set()
                raise

        def schedule(s):
            p = pos[s : s + bs]
            if not self.parallel:
                pending.append((None, [ex.submit(guarded, read, p)]))
                return
            out = np.empty((len(p), *shape), np.float32)
            per = max(1, -(-len(p) // workers))
            futures = [
                ex.submit(guarded, self._fill, out, range(a, min(a + per, len(p))), p[a : a + per], transform)
                for a in range(0, len(p), per)
            ]
            pending.append((out, futures))

        try:
            nxt = 0
            while nxt < len(starts) and len(pending) <= max(0, int(prefetch)):
                schedule(starts[nxt])
                nxt += 1
            while pending:
                out, futures = pending.popleft()
                try:
                    for f in futures:
                        got = f.result()
                except _Skipped:  # a later batch failed first: raise its error, not this batch's half-filled pixels
                    raise _first_error(pending) from None
                if out is None:
                    out = got
                if nxt < len(starts):
                    schedule(starts[nxt])
                    nxt += 1
                yield out
        finally:
            failed.set()
            ex.shutdown(wait=True, cancel_futures=True)


def transformed_shape(transform: Transform, item_shape: tuple) -> tuple:
    """The shape ``transform`` gives an image of ``item_shape`` (tried on zeros once)."""
    out = np.asarray(transform(np.zeros(item_shape, np.float32)))
    if out.ndim != 3:
        raise DataError(f"a batch transform must return one (C, H, W) image; it returned shape {out.shape}.")
    return tuple(int(v) for v in out.shape)


def apply_transform(transform: Transform, batch: np.ndarray, shape: tuple) -> np.ndarray:
    """``transform`` applied to each image of ``batch`` (k, C, H, W)."""
    out = np.empty((len(batch), *shape), np.float32)
    for i, a in enumerate(batch):
        out[i] = transform(a)
    return out


class _Skipped(Exception):
    """A decoding task not run because another batch had already failed."""


def _first_error(pending: deque) -> BaseException:
    for _, futures in pending:
        for f in futures:
            exc = f.exception()
            if exc is not None and not isinstance(exc, _Skipped):
                return exc
    return DataError("decoding stopped after an error in another batch.")


class FileSource(ImageSource):
    """One image per file, decoded by ``decoder(path) -> float32 (C, H, W)``.

    Parameters
    ----------
    paths : sequence of str
        Resolved absolute paths.
    decoder : callable
        ``decoder(path)`` returns the decoded image; it raises ``DataError``.
    item_shape : (C, H, W)
    keys : array of str
        One identity key per file (:func:`file_keys`).
    settings : dict
        The decoding settings, for provenance.
    root : str
        The data root, for provenance and messages.
    """

    def __init__(
        self,
        paths: Sequence[str],
        decoder: Callable[[str], np.ndarray],
        item_shape: tuple[int, int, int],
        keys: np.ndarray,
        settings: Optional[dict] = None,
        root: str = "",
    ) -> None:
        self.paths = np.asarray(paths, dtype=object)
        self.decoder = decoder
        self.item_shape = tuple(int(v) for v in item_shape)
        self._keys = np.asarray(keys, dtype="U32")
        if len(self._keys) != len(self.paths):
            raise DataError(f"FileSource needs one key per file: {len(self._keys)} keys for {len(self.paths)} files.")
        self.settings = dict(settings or {})
        self.root = str(root)

    def __len__(self) -> int:
        return len(self.paths)

    def keys(self) -> np.ndarray:
        return self._keys

    def take(self, positions: np.ndarray) -> "FileSource":
        p = np.asarray(positions, dtype=np.int64)
        return FileSource(self.paths[p], self.decoder, self.item_shape, self._keys[p], self.settings, self.root)

    def name(self, position: int) -> str:
        return f"file {self.paths[position]!r}"

    def _decode_one(self, position: int) -> np.ndarray:
        return self.decoder(self.paths[position])

    def describe(self) -> dict:
        return {**super().describe(), "root": self.root, "settings": self.settings}


class ArraySource(ImageSource):
    """An in-memory float32 array (N, C, H, W) seen as a source (for concatenating with file-backed sets)."""

    parallel = False
    background = False

    def __init__(self, array: np.ndarray, keys: Optional[np.ndarray] = None) -> None:
        self.array = array
        self.item_shape = tuple(int(v) for v in array.shape[1:])
        self._keys = keys

    def __len__(self) -> int:
        return len(self.array)

    def keys(self) -> np.ndarray:
        if self._keys is None:
            from .hashing import image_keys

            self._keys = image_keys(self.array)
        return self._keys

    def take(self, positions: np.ndarray) -> "ArraySource":
        p = np.asarray(positions, dtype=np.int64)
        return ArraySource(self.array[p], None if self._keys is None else self._keys[p])

    def read(self, positions: Any, workers: Optional[int] = None) -> np.ndarray:
        return np.ascontiguousarray(self.array[np.asarray(positions, dtype=np.int64).reshape(-1)])


class NpzSource(ImageSource):
    """Rows of one array inside an ``.npz`` file, read as needed without loading the whole array.

    The member's ``.npy`` header gives shape and dtype; rows are read by
    seeking inside the member (stored or deflated; a deflated member is
    decompressed up to the row, so reading in order is fastest, which is how
    :meth:`batches` reads). Rows are (H, W) or (H, W, C) with C in 1 or 3,
    8-bit (divided by 255), 16-bit (by 65535) or float in [0, 1].

    Parameters
    ----------
    path : str
    member : str
        Array name, e.g. ``"train_images"``.
    rows : array of int
        Which rows, in order.
    transform : callable, optional
        ``transform(float32 (C, H, W)) -> float32 (C', H', W')`` (resizing).
    item_shape : (C, H, W)
        Shape after ``transform``.
    keys : array of str
    """

    parallel = False

    def __init__(self, path, member, rows, item_shape, keys, transform=None, layout=None, settings=None) -> None:
        self.path, self.member = str(path), str(member)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.item_shape = tuple(int(v) for v in item_shape)
        self._keys = np.asarray(keys, dtype="U32")
        self.transform = transform
        self.layout = layout if layout is not None else npz_member_layout(path, member)
        self.settings = dict(settings or {})
        self._local = threading.local()

    def __len__(self) -> int:
        return len(self.rows)

    def keys(self) -> np.ndarray:
        return self._keys

    def take(self, positions: np.ndarray) -> "NpzSource":
        p = np.asarray(positions, dtype=np.int64)
        return NpzSource(
            self.path, self.member, self.rows[p], self.item_shape, self._keys[p], self.transform, self.layout, self.settings
        )

    def name(self, position: int) -> str:
        return f"row {int(self.rows[position])} of {self.member!r} in {self.path!r}"

    def describe(self) -> dict:
        return {**super().describe(), "path": self.path, "member": self.member, "settings": self.settings}

    def _row_to_image(self, raw: np.ndarray) -> np.ndarray:
        if raw.dtype == np.uint8:
            a = raw.astype(np.float32) / 255.0
        elif raw.dtype == np.uint16:
            a = raw.astype(np.float32) / 65535.0
        else:
            a = raw.astype(np.float32)
            if a.size and (not np.isfinite(a).all() or a.min() < 0 or a.max() > 1):
                raise DataError(f"{self.member!r} in {self.path!r} holds values outside [0, 1] (or NaN); rescale them.")
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        return self.transform(a) if self.transform is not None else np.ascontiguousarray(a)

    def read(self, positions: Any, workers: Optional[int] = None) -> np.ndarray:
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        out = np.empty((len(pos), *self.item_shape), np.float32)
        if not len(pos):
            return out
        offset, dtype, row_shape, row_bytes = self.layout
        rows = self.rows[pos]
        try:
            with zipfile.ZipFile(self.path) as z, z.open(self.member + ".npy") as fh:
                # contiguous runs of rows are read in one go
                i = 0
                while i < len(rows):
                    j = i + 1
                    while j < len(rows) and rows[j] == rows[j - 1] + 1:
                        j += 1
                    fh.seek(offset + int(rows[i]) * row_bytes)
                    buf = fh.read(row_bytes * (j - i))
                    if len(buf) != row_bytes * (j - i):
                        raise DataError(f"{self.path!r} is truncated: {self.member!r} ends before row {int(rows[j - 1])}.")
                    block = np.frombuffer(buf, dtype=dtype).reshape((j - i, *row_shape))
                    for k in range(j - i):
                        out[i + k] = self._row_to_image(block[k])
                    i = j
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"cannot read {self.member!r} from {str(self.path)!r} (corrupt or truncated): {exc}") from exc
        return out


def npz_member_layout(path: Any, member: str) -> tuple[int, np.dtype, tuple, int]:
    """(data offset, dtype, row shape, bytes per row) of array ``member`` inside an ``.npz`` file.

    Raises
    ------
    DataError
        No such member, an object array (which would need pickle: refused), a
        Fortran-ordered array, or an unreadable header.
    """
    from numpy.lib import format as npf

    try:
        with zipfile.ZipFile(path) as z, z.open(member + ".npy") as fh:
            version = npf.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = npf.read_array_header_1_0(fh)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = npf.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            offset = fh.tell()
    except KeyError:
        raise DataError(f"{str(path)!r} has no array {member!r}.") from None
    except Exception as exc:
        raise DataError(f"cannot read {member!r} from {str(path)!r} (corrupt, truncated or not numpy): {exc}") from exc
    if dtype.hasobject:
        raise DataError(f"{member!r} in {str(path)!r} is an object array, which would need pickle to read; refused.")
    if fortran and len(shape) > 1:
        raise DataError(f"{member!r} in {str(path)!r} is stored in Fortran order; save it C-ordered (np.ascontiguousarray).")
    row_shape = tuple(int(v) for v in shape[1:])
    return offset, dtype, row_shape, int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize


class ConcatSource(ImageSource):
    """Sources one after another (e.g. two folders, or a folder and an in-memory set)."""

    def __init__(self, parts: Sequence[ImageSource]) -> None:
        parts = [p for p in parts if len(p)] or list(parts[:1])
        shapes = {tuple(p.item_shape) for p in parts}
        if len(shapes) > 1:
            raise DataError(f"cannot concatenate images of different shapes {sorted(shapes)}; load them with one size=.")
        self.parts = list(parts)
        self.item_shape = tuple(parts[0].item_shape) if parts else (1, 1, 1)
        self._offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def keys(self) -> np.ndarray:
        return np.concatenate([p.keys() for p in self.parts]) if self.parts else np.empty(0, "U32")

    def _locate(self, pos: np.ndarray) -> np.ndarray:
        return np.searchsorted(self._offsets, pos, side="right") - 1

    def take(self, positions: np.ndarray) -> ImageSource:
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        part = self._locate(pos)
        pieces, run_start = [], 0
        for i in range(1, len(pos) + 1):  # consecutive positions in one part stay one piece, order kept
            if i == len(pos) or part[i] != part[run_start]:
                k = int(part[run_start])
                pieces.append(self.parts[k].take(pos[run_start:i] - self._offsets[k]))
                run_start = i
        if len(pieces) == 1:
            return pieces[0]
        return ConcatSource(pieces or [self.parts[0].take(np.empty(0, np.int64))])

    def _part_of(self, position: int) -> tuple[ImageSource, int]:
        """The part holding ``position`` and the position within it."""
        k = int(self._locate(np.array([position]))[0])
        return self.parts[k], position - int(self._offsets[k])

    def name(self, position: int) -> str:
        part, local = self._part_of(position)
        return part.name(local)

    def _decode_one(self, position: int) -> np.ndarray:  # batches(positions=...) decodes image by image
        part, local = self._part_of(position)
        return part.read([local], workers=1)[0]

    def read(self, positions: Any, workers: Optional[int] = None) -> np.ndarray:
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        out = np.empty((len(pos), *self.item_shape), np.float32)
        part = self._locate(pos)
        for k in np.unique(part):
            sel = np.flatnonzero(part == k)
            out[sel] = self.parts[int(k)].read(pos[sel] - self._offsets[int(k)], workers=workers)
        return out

    def batches(self, batch_size=64, workers=None, prefetch=2, positions=None, transform=None) -> Iterator[np.ndarray]:
        if positions is not None:
            yield from ImageSource.batches(self, batch_size, workers, prefetch, positions, transform)
            return
        # each part streams in its own way; batches are re-cut to batch_size across part boundaries
        carry: list[np.ndarray] = []
        have = 0
        for p in self.parts:
            for b in p.batches(batch_size, workers, prefetch, transform=transform):
                carry.append(b)
                have += len(b)
                while have >= batch_size:
                    joined = np.concatenate(carry) if len(carry) > 1 else carry[0]
                    yield joined[:batch_size]
                    rest = joined[batch_size:]
                    carry, have = ([rest] if len(rest) else []), len(rest)
        if have:
            yield np.concatenate(carry) if len(carry) > 1 else carry[0]

    def describe(self) -> dict:
        return {**super().describe(), "parts": [p.describe() for p in self.parts]}
