"""An invisible watermark that says "made by a generative model" and which model, in the pixels.

The mark survives what metadata does not: stripping, conversion to JPEG,
resizing and 8-bit conversion. It is embedded with the block embedder of
`invisible-watermark <https://github.com/ShieldMnt/invisible-watermark>`_
(the library Stable Diffusion's reference scripts use): the ``dwtDctSvd``
method, which quantises the largest singular value of the DCT of each 4x4
block of the Haar LL band (quantisation index modulation, step
:data:`STRENGTH` grey levels of an 8-bit image), and read back with the same
library's block decoder.

How the images are handled
--------------------------
The mark lives in the luminance, in 8-bit grey-level units, computed in
floating point from the image as exported:

* 16-bit grey (the generators' output): luminance = ``255 * x``; the marked
  luminance is rounded once, to 16 bits, when the PNG is written. An 8-bit
  copy (``round(x16 / 257)``) therefore carries the same mark, and the PSNR
  cost is measured on the 16-bit values (``benchmarks/bench_watermark.py``).
* 8-bit RGB: luminance ``0.299 R + 0.587 G + 0.114 B`` (the weights of the
  library's BGR -> YUV conversion); its change is added to all three
  channels, so the colour (U, V) stays as it was.

The library's own ``WatermarkEncoder.encode`` is not used: it rebuilds the
image with the horizontal and vertical detail bands swapped
(``pywt.idwt2((cA, (cV, cH, cD)))``), which costs about 26 dB PSNR whatever
the strength, and casts the result to ``uint8`` by truncation with
wrap-around; it also refuses images under 256 x 256. Here the Haar transform
and its inverse are done with PyWavelets in the right band order, and only
the library's per-block embedding and reading are called.

The payload
-----------
22 bits: a 6-bit header (format version 1 and the "AI-generated" flag) and
the first 16 bits (4 hex digits) of the generator's checkpoint SHA-256. They
are encoded with the second-order Reed-Muller code RM(2, 6) (64 bits, minimum
distance 16), scrambled and permuted with bits derived from a ``key``
(SHA-256; the default key is public, so anyone with this package can read the
mark), and repeated over the image's 4x4 LL blocks (8x8 pixels each; a
64 x 64 image holds each code bit once, a 256 x 256 image 16 times).

Reading correlates the blocks' votes with each of the 65,536 codewords that
carry the header (one per hash prefix) and accepts the best when its
normalised correlation is at least :data:`THRESHOLD` (at most 8 of the 64
bits wrong). For an unmarked image whose bits are random, the chance that
some codeword is that close is below ``65536 * P(Binomial(64, 1/2) <= 8)``,
about 2e-5 per size tried; ``benchmarks/bench_watermark.py`` measures the
false-positive rate on never-marked images. After a resize, reading tries the
image resampled back to the standard sizes (:data:`STANDARD_SIZES`) within a
factor 1.25 of its own, or to the ``sizes`` given.

Examples
--------
>>> import numpy as np
>>> x = np.random.default_rng(0).random((1, 64, 64), dtype=np.float32) * 0.5 + 0.25
>>> marked = embed(x, "ab12" + "0" * 60)
>>> r = read(marked)
>>> r.detected, r.model_sha256_prefix, read(x).detected
(True, 'ab12', False)
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import DataError

__all__ = [
    "WatermarkReading",
    "embed",
    "read",
    "can_embed",
    "min_size_message",
    "hash_prefix",
    "luminance",
    "DEFAULT_KEY",
    "STRENGTH",
    "THRESHOLD",
    "STANDARD_SIZES",
    "VERSION",
]

#: Format version carried in the header.
VERSION = 1
#: The default key: public, so that anyone with the package can read the mark.
DEFAULT_KEY = "medsynth-explore"
#: Quantisation step of the embedder, in 8-bit grey levels on the Haar LL band (the library's default for dwtDctSvd).
STRENGTH = 36.0
#: Block side on the LL band (8x8 pixels of the image).
BLOCK = 4
#: Code length: RM(2, 6).
CODE_BITS = 64
#: Hash-prefix bits carried (4 hex digits of the checkpoint SHA-256).
PREFIX_BITS = 16
#: Normalised correlation at which a mark is accepted (at most 8 of 64 bits wrong).
THRESHOLD = 0.75
#: Image sides that reading tries after a resize (the sides generators make).
STANDARD_SIZES = (32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
#: Largest resize factor that reading undoes.
MAX_RESIZE = 1.25
_HEADER = np.array([1, 0, 0, 1, 0, 0], np.uint8)  # version 1 (3 bits, low bit first), AI-generated flag 1, 2 reserved 0
_LUMA = np.array([0.299, 0.587, 0.114])  # the weights of OpenCV's BGR -> YUV conversion (R, G, B order here)


# --------------------------------------------------------------------------- the code
def _reed_muller_2_6() -> np.ndarray:
    """Generator matrix (22 x 64) of RM(2, 6): the monomials of degree <= 2 in 6 variables, on all 64 points."""
    points = (np.arange(CODE_BITS)[:, None] >> np.arange(6)) & 1
    rows = [np.ones(CODE_BITS, np.uint8)]
    rows += [points[:, i].astype(np.uint8) for i in range(6)]
    rows += [(points[:, i] & points[:, j]).astype(np.uint8) for i, j in itertools.combinations(range(6), 2)]
    return np.array(rows, np.uint8)


_G = _reed_muller_2_6()


def _key_bits(key: str) -> tuple[np.ndarray, np.ndarray]:
    """Scrambling bits and block permutation for ``key``, from SHA-256 alone (stable across numpy versions)."""
    if not isinstance(key, str) or not key:
        raise DataError(f"the watermark key must be a non-empty string, got {key!r}.")
    white = np.unpackbits(np.frombuffer(hashlib.sha256(f"medsynth-watermark-v1|white|{key}".encode()).digest()[:8], np.uint8))
    ranks = [hashlib.sha256(f"medsynth-watermark-v1|perm|{key}|{i}".encode()).digest() for i in range(CODE_BITS)]
    perm = np.array(sorted(range(CODE_BITS), key=lambda i: ranks[i]), np.int64)
    return white.astype(np.uint8), perm


def _codewords(prefixes: np.ndarray) -> np.ndarray:
    """Codewords (len, 64) in code order for the header and these 16-bit prefixes."""
    bits = ((np.asarray(prefixes, np.int64)[:, None] >> np.arange(PREFIX_BITS)) & 1).astype(np.uint8)
    info = np.concatenate([np.broadcast_to(_HEADER, (len(bits), len(_HEADER))), bits], axis=1)
    return (info.astype(np.int64) @ _G % 2).astype(np.uint8)


_TABLES: dict[str, tuple] = {}
_TABLES_LOCK = threading.Lock()


def _table(key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scrambling bits, permutation, +-1 codewords of every prefix in code order), cached per key."""
    with _TABLES_LOCK:
        if key not in _TABLES:
            white, perm = _key_bits(key)
            signs = 2.0 * _codewords(np.arange(1 << PREFIX_BITS)).astype(np.float32) - 1.0  # bit 1 -> +1, as the votes
            _TABLES[key] = (white, perm, np.ascontiguousarray(signs))
        return _TABLES[key]


def hash_prefix(model_sha256: Any) -> str:
    """The 4 hex digits of a checkpoint SHA-256 that the mark carries.

    A model id that is not a hex digest (the simulator's is its version
    string) is hashed with SHA-256 first.

    Examples
    --------
    >>> hash_prefix("AB12" + "0" * 60), hash_prefix("phantomcxr-1.1.0") == hash_prefix("phantomcxr-1.1.0")
    ('ab12', True)
    """
    text = str(model_sha256 or "").strip().lower()
    if not text:
        raise DataError("the watermark carries the model's SHA-256 prefix; no model hash was given.")
    if len(text) < 4 or any(c not in "0123456789abcdef" for c in text):
        text = hashlib.sha256(text.encode()).hexdigest()
    return text[:4]


def _library_bits(prefix: str, key: str) -> list[int]:
    """The 64 bits handed to the library's embedder, in its block order."""
    white, perm, _ = _table(key)
    code = _codewords(np.array([int(prefix, 16)]))[0]
    return [int(b) for b in code[perm] ^ white]


# --------------------------------------------------------------------------- images
def _as_chw(image: Any, what: str = "image") -> np.ndarray:
    x = np.asarray(image)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise DataError(f"{what} must be (H, W) or (C, H, W) with C = 1 or 3, got shape {np.shape(image)}.")
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{what} must hold floats in [0, 1] (the package's convention), got dtype {x.dtype}.")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise DataError(f"{what} holds NaN or infinite values.")
    if x.min() < 0.0 or x.max() > 1.0:
        raise DataError(f"{what} must hold values in [0, 1], got [{x.min():.3g}, {x.max():.3g}].")
    return x


def luminance(image: Any) -> np.ndarray:
    """Luminance in 8-bit grey-level units (float64, (H, W)) of a (C, H, W) or (H, W) image in [0, 1].

    Examples
    --------
    >>> round(float(luminance(np.ones((3, 2, 2)))[0, 0]), 6)
    255.0
    """
    x = _as_chw(image)
    return 255.0 * (x[0] if x.shape[0] == 1 else np.tensordot(_LUMA, x, axes=1))


def _blocks(h: int, w: int) -> int:
    return (h // (2 * BLOCK)) * (w // (2 * BLOCK))


def can_embed(shape: Sequence[int]) -> bool:
    """Whether an image of this shape (..., H, W) has room for the whole code (64 blocks of 8x8 pixels).

    Examples
    --------
    >>> can_embed((1, 64, 64)), can_embed((1, 32, 32))
    (True, False)
    """
    h, w = int(shape[-2]), int(shape[-1])
    return _blocks(h, w) >= CODE_BITS


def min_size_message(shape: Sequence[int]) -> str:
    """Why an image of this shape cannot carry the mark, in words."""
    h, w = int(shape[-2]), int(shape[-1])
    return (
        f"images of {h} x {w} pixels are too small for the watermark: it needs {CODE_BITS} blocks of 8 x 8 pixels "
        f"(e.g. 64 x 64), these have {_blocks(h, w)}."
    )


def _embedder(bits: list[int]) -> Any:
    try:
        from imwatermark.dwtDctSvd import EmbedDwtDctSvd
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise DataError(
            "the watermark needs invisible-watermark: pip install invisible-watermark (a dependency of medsynth-explore)."
        ) from exc
    return EmbedDwtDctSvd(watermarks=bits, wmLen=CODE_BITS, scales=[STRENGTH, 0, 0], block=BLOCK)


def _mark_luminance(y: np.ndarray, bits: list[int]) -> np.ndarray:
    import pywt

    h, w = y.shape
    hh, ww = h // 4 * 4, w // 4 * 4
    ll, details = pywt.dwt2(y[:hh, :ww], "haar")
    _embedder(bits).encode_frame(ll, STRENGTH)  # in place, block by block
    out = y.copy()
    out[:hh, :ww] = pywt.idwt2((ll, details), "haar")
    return out


def embed(images: Any, model_sha256: str, key: str = DEFAULT_KEY) -> np.ndarray:
    """Embed the mark (AI-generated flag + model-hash prefix) in one image or a batch.

    Parameters
    ----------
    images : array
        float values in [0, 1]: one image (H, W) or (C, H, W), or a batch
        (N, C, H, W); C is 1 (grey) or 3 (RGB). At least 64 blocks of 8 x 8
        pixels (:func:`can_embed`), e.g. 64 x 64.
    model_sha256 : str
        The generator's checkpoint SHA-256 (its first 4 hex digits are carried).
    key : str
        Scrambles the code; reading needs the same key.

    Returns
    -------
    numpy.ndarray
        float32, same shape, values in [0, 1]; deterministic.

    Raises
    ------
    DataError
        Bad shape, dtype, values outside [0, 1], NaN, an image too small, or a
        bad hash.

    Examples
    --------
    >>> x = np.full((2, 1, 64, 64), 0.5, np.float32)
    >>> y = embed(x, "0" * 64)
    >>> y.shape, y.dtype, bool(np.abs(y - x).max() < 0.2)
    ((2, 1, 64, 64), dtype('float32'), True)
    """
    arr = np.asarray(images)
    if arr.ndim == 4:
        return np.stack([embed(im, model_sha256, key) for im in arr]) if len(arr) else arr.astype(np.float32)
    x = _as_chw(arr)
    if not can_embed(x.shape):
        raise DataError(min_size_message(x.shape) + " Export them with watermark=False.")
    bits = _library_bits(hash_prefix(model_sha256), key)
    y = luminance(x)
    delta = (_mark_luminance(y, bits) - y) / 255.0
    out = np.clip(x + delta[None], 0.0, 1.0)
    return out.astype(np.float32).reshape(arr.shape)


# --------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class WatermarkReading:
    """What :func:`read` found.

    Attributes
    ----------
    detected : bool
        The best codeword correlates at least :data:`THRESHOLD`.
    score : float
        Its normalised correlation, -1 .. 1 (1: every bit as embedded; about
        0 to 0.7 for unmarked images).
    model_sha256_prefix : str or None
        The 4 hex digits carried, when detected.
    size : tuple of int
        (H, W) the image was resampled to where the mark was read.
    """

    detected: bool
    score: float
    model_sha256_prefix: str | None
    size: tuple
    version: int | None = None
    ai_generated: bool | None = None

    def payload(self) -> dict | None:
        """The payload as a plain dict, or None when nothing was detected."""
        if not self.detected:
            return None
        return {"version": self.version, "ai_generated": self.ai_generated, "model_sha256_prefix": self.model_sha256_prefix}

    def as_dict(self) -> dict:
        return {**asdict(self), "size": list(self.size)}


def _votes(y: np.ndarray) -> np.ndarray:
    """Per code bit: mean block vote in library order, mapped to -1 .. 1 (0 when a bit has no block)."""
    import pywt

    h, w = y.shape
    ll, _ = pywt.dwt2(y[: h // 4 * 4, : w // 4 * 4], "haar")
    scores = _embedder([]).decode_frame(ll, STRENGTH, [[] for _ in range(CODE_BITS)])
    return np.array([2.0 * np.mean(s) - 1.0 if len(s) else 0.0 for s in scores], np.float32)


def _score(y: np.ndarray, key: str) -> tuple[float, int]:
    white, perm, signs = _table(key)
    lib = _votes(y)
    code = np.empty(CODE_BITS, np.float32)
    code[perm] = lib * (1.0 - 2.0 * white)  # undo the scrambling: code bit perm[j] sits in library slot j
    corr = signs @ code / CODE_BITS
    best = int(np.argmax(corr))
    return float(corr[best]), best


def _resample(y: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(y.astype(np.float32), mode="F").resize((w, h), Image.BICUBIC), np.float64)


def _candidate_sizes(h: int, w: int, sizes: Sequence[int] | None) -> list[tuple[int, int]]:
    out = [(h, w)]
    long_side = max(h, w)
    pool = STANDARD_SIZES if sizes is None else [int(s) for s in sizes]
    for s in sorted(pool, key=lambda s: abs(np.log(s / long_side))):
        f = s / long_side
        if sizes is None and not (1 / MAX_RESIZE <= f <= MAX_RESIZE):
            continue
        cand = (max(1, round(h * f)), max(1, round(w * f)))
        if cand not in out:
            out.append(cand)
    return out[: 3 if sizes is None else len(out)]


def read(image: Any, key: str = DEFAULT_KEY, sizes: Sequence[int] | None = None) -> WatermarkReading:
    """Look for the mark in one image.

    Parameters
    ----------
    image : array
        float values in [0, 1], (H, W) or (C, H, W) with C = 1 or 3 (read
        files with :func:`medsynth_explore.provenance.detect`).
    key : str
        The key it was embedded with.
    sizes : list of int, optional
        Longer sides to resample to before reading, besides the image's own
        (default: the :data:`STANDARD_SIZES` within a factor 1.25).

    Returns
    -------
    WatermarkReading

    Examples
    --------
    >>> read(np.zeros((64, 64))).detected
    False
    """
    y = luminance(image)
    h, w = y.shape
    best = WatermarkReading(False, -1.0, None, (h, w))
    for ch, cw in _candidate_sizes(h, w, sizes):
        if not can_embed((ch, cw)):
            continue
        yy = y if (ch, cw) == (h, w) else _resample(y, ch, cw)
        score, prefix = _score(yy, key)
        if score > best.score:
            best = WatermarkReading(False, score, None, (ch, cw))
        if score >= THRESHOLD:
            return WatermarkReading(True, score, f"{prefix:04x}", (ch, cw), VERSION, True)
    return best
