"""Decoding image files safely, in one place: pixel limit, decompression bombs, truncation, size policy.

Every loader that reads PNG, JPEG, TIFF or BMP files goes through
:func:`probe_image` (at load time: header only, plus a look at the file's
last bytes) and :func:`decode_image` (when pixels are needed). Both raise
:class:`~medsynth_explore.errors.DataError` naming the file for anything a
file can do wrong: not an image, truncated, more pixels than
:data:`PIXEL_LIMIT` (a decompression bomb: PIL's own
``DecompressionBombWarning`` / ``DecompressionBombError`` are turned into a
``DataError`` too), or a decoder failure of any kind.

Size policy (``size=`` on every loader, :func:`fit_size`):

* ``size=None`` keeps each image's own size (then all must share one);
* ``size=S`` or ``size=(H, W)`` makes every image H x W, and ``aspect`` says
  how an image of another aspect ratio gets there:

  - ``"crop"`` (default): scale so the image covers H x W, then cut the
    centre (the torchvision ``Resize`` + ``CenterCrop`` recipe; done in one
    step with PIL's ``resize(box=...)``, so no pixel is interpolated twice);
  - ``"pad"``: scale so the whole image fits, then pad the rest with black
    (0), centred; nothing of the image is lost;
  - ``"stretch"``: scale each axis on its own (distorts anatomy).

  Resampling is PIL's bilinear filter, which widens its support when
  shrinking (antialiased). 8-bit images are resized in 8 bits, as PIL does;
  16-bit and float images in 32-bit float. The original width and height
  go into the metadata (``original_width``, ``original_height``).

Intensities: 8-bit values are divided by 255, 16-bit by 65535, 32-bit
integer images are clipped to [0, 65535] and divided by 65535, float images
are scaled by their own minimum and maximum.

Greyscale 8-bit JPEGs (every chest radiograph of CheXpert and MIMIC-CXR-JPG)
are decoded by libjpeg-turbo through ``simplejpeg`` rather than through
PIL: the same library and the same exact (islow) inverse DCT, so the same
pixels, but one read of the file and one decoder call that releases the
interpreter lock once, where PIL parses the headers in Python and releases
it at every read and decoder step. Any other JPEG, a file that decoder
reports as damaged, or a machine without ``simplejpeg`` takes PIL's path.

Examples
--------
>>> fit_size((300, 200), (100, 100), "crop")  # (width, height) in, box and output size out
((50.0, 0.0, 250.0, 200.0), (100, 100), (0, 0))
>>> fit_size((300, 200), (100, 100), "pad")
((0.0, 0.0, 300.0, 200.0), (100, 67), (0, 16))
>>> fit_size((47, 61), (16, 24), "crop")[0][::2]  # the whole width, never a rounding error outside it
(0.0, 47.0)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np

from ..errors import DataError

__all__ = [
    "PIXEL_LIMIT",
    "ASPECTS",
    "DecodeSettings",
    "ImageInfo",
    "check_size",
    "fit_size",
    "probe_image",
    "decode_image",
    "resize_array",
    "pil_to_array",
    "quiet_bomb_warnings",
]

#: Most pixels (width x height) an image file may declare; larger ones raise ``DataError`` as possible
#: decompression bombs. PIL's own default (``PIL.Image.MAX_IMAGE_PIXELS``, about 89.5 million) is the same.
PIXEL_LIMIT = 89_478_485

#: Aspect-ratio policies of ``size=`` (see the module docstring).
ASPECTS = ("crop", "pad", "stretch")

_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "La"}
_TAIL_BYTES = 1024


def check_size(size: Any) -> Optional[tuple[int, int]]:
    """``size=`` as ``(height, width)`` or None.

    Examples
    --------
    >>> check_size(64), check_size((32, 48)), check_size(None)
    ((64, 64), (32, 48), None)
    """
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    try:
        h, w = (int(v) for v in size)
        if any(isinstance(v, bool) or float(v) != int(v) for v in size):
            raise TypeError
    except (TypeError, ValueError):
        raise DataError(f"size must be an integer or a pair (height, width) of integers, got {size!r}.") from None
    if not (1 <= h <= 16384 and 1 <= w <= 16384):
        raise DataError(f"size must be between 1 and 16384 pixels on each side, got {size!r}.")
    return (h, w)


@dataclass(frozen=True)
class DecodeSettings:
    """How files become arrays; part of the feature-cache key of every file-backed image.

    Attributes
    ----------
    size : (height, width) or None
    aspect : {"crop", "pad", "stretch"}
    channels : {1, 3}
    pixel_limit : int
    kind : str
        ``"image"`` (PIL) or ``"dicom"``.
    voi : str or tuple
        DICOM only: ``"auto"``, ``"none"`` or ``(center, width)``.
    """

    size: Optional[tuple[int, int]] = None
    aspect: str = "crop"
    channels: int = 1
    pixel_limit: int = PIXEL_LIMIT
    kind: str = "image"
    voi: Any = "auto"

    def __post_init__(self) -> None:
        if self.aspect not in ASPECTS:
            raise DataError(f"aspect must be one of {list(ASPECTS)}, got {self.aspect!r}.")
        if self.channels not in (1, 3):
            raise DataError(f"channels must be 1 or 3, got {self.channels!r}.")
        if not isinstance(self.pixel_limit, (int, np.integer)) or self.pixel_limit < 1:
            raise DataError(f"pixel_limit must be a positive integer, got {self.pixel_limit!r}.")

    def digest(self) -> str:
        """Short SHA-256 of the settings (and of this module's decoding rules version).

        Examples
        --------
        >>> DecodeSettings(size=(64, 64)).digest() != DecodeSettings(size=(32, 32)).digest()
        True
        """
        d = asdict(self)
        d["rules"] = 1
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ImageInfo:
    """What the header of an image file says."""

    width: int
    height: int
    mode: str
    format: str

    @property
    def grey(self) -> bool:
        """Whether the mode is a grey one (no colour channels)."""
        return self.mode in _GREY_MODES


@contextlib.contextmanager
def quiet_bomb_warnings():
    """Silence PIL's ``DecompressionBombWarning`` while files are probed; :data:`PIXEL_LIMIT` decides instead.

    Enter it in the thread that starts the work (``warnings.catch_warnings``
    is process-wide and must not be entered from worker threads); a probe
    over the limit raises :class:`~medsynth_explore.errors.DataError`.
    """
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _pixel_error(path: Any, w: int, h: int, limit: int) -> DataError:
    return DataError(
        f"image {str(path)!r} declares {w}x{h} = {w * h:,} pixels, above the limit of {limit:,} "
        "(a corrupt file or a decompression bomb). If the image is real, pass a larger pixel_limit= to the loader."
    )


#: What the last bytes of a complete file hold, by format (a cheap truncation check).
_END_MARKERS = {"PNG": b"IEND", "JPEG": b"\xff\xd9"}


def _tail_ok(path: Any, fmt: str) -> bool:
    """Whether a PNG ends with its IEND chunk and a JPEG with its EOI marker (a cheap truncation check)."""
    marker = _END_MARKERS.get(fmt)
    if marker is None:
        return True
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - _TAIL_BYTES))
        return marker in fh.read()


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_PNG_MODES = {(0, 1): "1", (0, 2): "L", (0, 4): "L", (0, 8): "L", (0, 16): "I;16", (2, 8): "RGB", (2, 16): "RGB"}
_PNG_MODES.update({(3, b): "P" for b in (1, 2, 4, 8)})
_PNG_MODES.update({(4, 8): "LA", (4, 16): "LA", (6, 8): "RGBA", (6, 16): "RGBA"})
#: JPEG start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic coding).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_HEAD_BYTES = 65536


def _jpeg_frame(head: bytes) -> Optional[tuple[int, int, int, int, int]]:
    """``(precision, height, width, components, marker)`` of a JPEG's first frame header, or None when not in ``head``."""
    i = 2
    while i + 4 <= len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        seg = int.from_bytes(head[i + 2 : i + 4], "big")
        if marker in _JPEG_SOF:
            if seg < 8 or i + 10 > len(head):
                return None
            b = head[i + 4 : i + 10]
            return b[0], int.from_bytes(b[1:3], "big"), int.from_bytes(b[3:5], "big"), b[5], marker
        if marker == 0xDA or seg < 2:  # scan data before any frame header: let PIL decide
            return None
        i += 2 + seg
    return None


def _quick_probe(path: Any) -> Optional[tuple[ImageInfo, bool]]:
    """Header and end marker of a plain PNG or 8-bit JPEG read directly, or None to let PIL look.

    One open, two reads (the first 64 KiB and the last 1 KiB), no PIL: half
    the time of :func:`PIL.Image.open` plus the end check (34 against 67 us
    a 512 px JPEG here), which counts at 10^5 files. Anything
    unusual (other formats, 12-bit or CMYK JPEGs, a frame header past the
    first 64 KiB, a malformed chunk) returns None and takes PIL's path.
    Returns the header and whether the end marker is there.
    """
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
        if len(head) < _HEAD_BYTES:
            tail = head[-_TAIL_BYTES:]
        else:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - _TAIL_BYTES))
            tail = fh.read()
    if head.startswith(_PNG_SIGNATURE):
        if len(head) < 33 or head[12:16] != b"IHDR" or int.from_bytes(head[8:12], "big") != 13:
            return None
        w, h = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        mode = _PNG_MODES.get((head[25], head[24]))
        if mode is None or head[26] or head[27] or head[28] > 1:  # unknown type, compression, filter or interlace
            return None
        return ImageInfo(w, h, mode, "PNG"), _END_MARKERS["PNG"] in tail
    if head.startswith(_JPEG_SIGNATURE):
        frame = _jpeg_frame(head)
        if frame is None or frame[0] != 8 or frame[3] not in (1, 3):
            return None
        return ImageInfo(frame[2], frame[1], "L" if frame[3] == 1 else "RGB", "JPEG"), _END_MARKERS["JPEG"] in tail
    return None


def probe_image(path: Any, pixel_limit: int = PIXEL_LIMIT) -> ImageInfo:
    """Read an image file's header (not its pixels) and check that it can be decoded safely.

    Parameters
    ----------
    path : path-like
    pixel_limit : int
        Most pixels the image may declare (:data:`PIXEL_LIMIT`).

    Returns
    -------
    ImageInfo

    Raises
    ------
    DataError
        Not an image PIL can read, more pixels than ``pixel_limit`` (or PIL's
        own decompression-bomb limits), or a PNG / JPEG whose end is missing
        (truncated).

    Examples
    --------
    >>> import tempfile, os
    >>> from PIL import Image
    >>> p = os.path.join(tempfile.mkdtemp(), "a.png")
    >>> Image.new("L", (6, 4)).save(p)
    >>> probe_image(p)
    ImageInfo(width=6, height=4, mode='L', format='PNG')
    >>> _ = open(p, "r+b").truncate(30)
    >>> probe_image(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    medsynth_explore.errors.DataError: cannot read image ... (unreadable or truncated): ...
    """
    from PIL import Image

    try:
        quick = _quick_probe(path)
    except OSError as exc:
        raise DataError(f"cannot read image {str(path)!r}: {exc}") from exc
    if quick is not None:
        info, ended = quick
    else:
        try:
            with Image.open(path) as im:
                w, h = im.size
                info = ImageInfo(int(w), int(h), str(im.mode), str(im.format or "?"))
        except Image.DecompressionBombError as exc:
            raise DataError(f"image {str(path)!r} is a possible decompression bomb, refused: {exc}") from exc
        except Exception as exc:  # any failure to parse a user's file is a data problem
            raise DataError(f"cannot read image {str(path)!r} (unreadable or truncated): {type(exc).__name__}: {exc}") from exc
        ended = None  # the end is read below, once the header has passed
    w, h = info.width, info.height
    if w < 1 or h < 1:
        raise DataError(f"cannot read image {str(path)!r} (unreadable or truncated): it declares {w}x{h} pixels.")
    if w * h > pixel_limit:
        raise _pixel_error(path, w, h, pixel_limit)
    if ended is None:
        try:
            ended = _tail_ok(path, info.format)
        except OSError as exc:
            raise DataError(f"cannot read image {str(path)!r} (unreadable or truncated): {exc}") from exc
    if not ended:
        why = f"its {info.format} end marker is missing"
        raise DataError(f"cannot read image {str(path)!r} (unreadable or truncated): {why}.")
    return info


def fit_size(src_wh: tuple[int, int], out_hw: tuple[int, int], aspect: str):
    """The source box, the scaled size and the paste offset of one resize under an aspect policy.

    Parameters
    ----------
    src_wh : (width, height) of the source
    out_hw : (height, width) wanted
    aspect : {"crop", "pad", "stretch"}

    Returns
    -------
    box : (x0, y0, x1, y1) in source pixels, the region that is scaled
    scaled : (width, height) the box is resized to
    offset : (x, y) where the scaled image goes in the H x W output (pad only; else (0, 0))
    """
    w, h = (float(v) for v in src_wh)
    oh, ow = out_hw
    if aspect == "stretch":
        return (0.0, 0.0, w, h), (ow, oh), (0, 0)
    if aspect == "crop":
        scale = max(ow / w, oh / h)
        bw, bh = ow / scale, oh / scale
        # the covering axis spans the whole image; clamped, as rounding can leave it a hair outside
        # (47 x 61 to 24 x 16 gave x0 = -3.6e-15, which PIL refuses)
        x0, y0 = max(0.0, (w - bw) / 2.0), max(0.0, (h - bh) / 2.0)
        return (x0, y0, min(w, x0 + bw), min(h, y0 + bh)), (ow, oh), (0, 0)
    if aspect == "pad":
        scale = min(ow / w, oh / h)
        sw, sh = max(1, min(ow, int(round(w * scale)))), max(1, min(oh, int(round(h * scale))))
        return (0.0, 0.0, w, h), (sw, sh), ((ow - sw) // 2, (oh - sh) // 2)
    raise DataError(f"aspect must be one of {list(ASPECTS)}, got {aspect!r}.")


def _resize_pil(im, out_hw: tuple[int, int], aspect: str):
    """Resize a PIL image (mode L, RGB or F) to (height, width) under ``aspect``."""
    from PIL import Image

    if im.size == (out_hw[1], out_hw[0]):
        return im
    box, scaled, offset = fit_size(im.size, out_hw, aspect)
    r = im.resize(scaled, resample=Image.BILINEAR, box=box)
    if scaled == (out_hw[1], out_hw[0]):
        return r
    canvas = Image.new(r.mode, (out_hw[1], out_hw[0]), 0)
    canvas.paste(r, offset)
    return canvas


def resize_array(a: np.ndarray, out_hw: tuple[int, int], aspect: str) -> np.ndarray:
    """Resize a float32 image (C, H, W) in [0, 1] to ``out_hw`` under an aspect policy (32-bit float, bilinear).

    Examples
    --------
    >>> resize_array(np.ones((1, 10, 20), np.float32), (8, 8), "pad")[0, :, 0].tolist()
    [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    """
    from PIL import Image

    if a.shape[1:] == tuple(out_hw):
        return a
    out = [np.asarray(_resize_pil(Image.fromarray(np.ascontiguousarray(c, np.float32), mode="F"), out_hw, aspect)) for c in a]
    return np.clip(np.stack(out), 0.0, 1.0).astype(np.float32, copy=False)


def pil_to_array(im) -> np.ndarray:
    """PIL image -> float32 array in [0, 1], (H, W) grey or (H, W, 3) colour (the intensity rules above).

    Examples
    --------
    >>> from PIL import Image
    >>> pil_to_array(Image.new("L", (2, 1), 255)).tolist()
    [[1.0, 1.0]]
    """
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im, dtype=np.uint16).astype(np.float32) / 65535.0
    if mode == "I":
        a = np.asarray(im, dtype=np.int64)
        return (a.clip(0, 65535) / 65535.0).astype(np.float32)
    if mode == "F":
        a = np.asarray(im, dtype=np.float32)
        finite = a[np.isfinite(a)]
        if finite.size == 0:
            return np.zeros_like(a)
        lo, hi = float(finite.min()), float(finite.max())
        a = np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo)
        return ((a - lo) / (hi - lo)).astype(np.float32) if hi > lo else np.zeros_like(a)
    if mode == "L":
        return _unit8(np.asarray(im, dtype=np.uint8))
    if mode in ("1", "LA", "La"):
        return _unit8(np.asarray(im.convert("L"), dtype=np.uint8))
    return _unit8(np.asarray(im.convert("RGB"), dtype=np.uint8))


def _unit8(a: np.ndarray) -> np.ndarray:
    """8-bit values -> float32 in [0, 1] (divided by 255)."""
    return a.astype(np.float32) / 255.0


def _to_chw(a: np.ndarray, channels: int) -> np.ndarray:
    """(H, W) grey or (H, W, 3) colour -> (C, H, W); grey is repeated when 3 channels are asked for."""
    if a.ndim == 2:
        return np.repeat(a[None], channels, axis=0) if channels == 3 else a[None]
    return np.ascontiguousarray(a.transpose(2, 0, 1))


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _grey_or_luma(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W): the channel itself when R = G = B, else the ITU-R 601 luma."""
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., 0]
    return rgb[..., :3] @ _LUMA


#: File names the greyscale-JPEG route reads whole first (anything else goes to PIL unread).
_JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
#: Huffman-coded 8-bit frames (baseline, extended, progressive): what that route takes.
_TURBO_SOF = {0xC0, 0xC1, 0xC2}


def _simplejpeg():
    try:
        import simplejpeg
    except ImportError:  # pragma: no cover - a platform without its wheels: PIL decodes, to the same pixels
        return None
    return simplejpeg


#: Larger files take PIL's path, which reads a JPEG only as far as its end marker (a huge file is read whole
#: by nobody); a greyscale JPEG at the default pixel limit is well below this even at quality 100.
_WHOLE_READ_LIMIT = 256 * 2**20


def _read_whole(path: Any, limit: Optional[int] = None) -> Optional[bytes]:
    """A file's bytes in one read where the system allows (4 system calls against 9 through ``open().read()``).

    None when the file holds more than ``limit`` bytes.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if limit is not None and size > limit:
            return None
        parts = [os.read(fd, max(size, 1))]
        got = len(parts[0])
        while parts[-1] and got < size:  # a short read; rare on local files
            parts.append(os.read(fd, size))
            got += len(parts[-1])
        return parts[0] if len(parts) == 1 else b"".join(parts)
    finally:
        os.close(fd)


def _decode_grey_jpeg(path: Any, settings: DecodeSettings) -> Optional[np.ndarray]:
    """An 8-bit greyscale JPEG decoded by libjpeg-turbo (simplejpeg), or None to take PIL's path.

    None for other names, other JPEGs (colour, 12-bit, lossless,
    arithmetic-coded, a frame header past the first 64 KiB) and for a file
    the decoder reports as damaged, so that PIL decides what it holds and
    says so in its own words. The declared size is checked against the
    pixel limit before a pixel is decoded.
    """
    if not str(path).lower().endswith(_JPEG_SUFFIXES):
        return None
    sj = _simplejpeg()
    if sj is None:
        return None
    data = _read_whole(path, _WHOLE_READ_LIMIT)
    if data is None or not data.startswith(_JPEG_SIGNATURE):
        return None
    frame = _jpeg_frame(data[:_HEAD_BYTES])
    if frame is None or frame[0] != 8 or frame[3] != 1 or frame[4] not in _TURBO_SOF:
        return None
    h, w = frame[1], frame[2]
    if w * h > settings.pixel_limit:
        raise _pixel_error(path, w, h, settings.pixel_limit)
    if w < 1 or h < 1:
        return None
    try:
        grey = sj.decode_jpeg(data, colorspace="GRAY", fastdct=False, fastupsample=False, strict=True)
    except ValueError:  # damaged data, even a recoverable warning: PIL's path decides and words the error
        return None
    grey = grey.reshape(grey.shape[0], grey.shape[1])
    if settings.size is not None:
        from PIL import Image

        return _array_from_pil(Image.fromarray(grey), settings)
    return _to_chw(_unit8(grey), settings.channels)


def decode_image(path: Any, settings: DecodeSettings) -> np.ndarray:
    """Decode one image file into a float32 array (C, H, W) in [0, 1] under ``settings``.

    Raises
    ------
    DataError
        For any failure: unreadable, truncated, over the pixel limit, a
        decoder error. The message names the file.

    Examples
    --------
    >>> import tempfile, os
    >>> from PIL import Image
    >>> p = os.path.join(tempfile.mkdtemp(), "a.png")
    >>> Image.new("L", (40, 20), 255).save(p)
    >>> decode_image(p, DecodeSettings(size=(8, 8), aspect="pad"))[0, :, 0].tolist()
    [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    """
    from PIL import Image

    try:
        fast = _decode_grey_jpeg(path, settings)
        if fast is not None:
            return fast
        with Image.open(path) as im:
            w, h = im.size
            if w * h > settings.pixel_limit:
                raise _pixel_error(path, w, h, settings.pixel_limit)
            im.load()
            return _array_from_pil(im, settings)
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise DataError(f"image {str(path)!r} is a possible decompression bomb, refused: {exc}") from exc
    except Exception as exc:  # any decoder failure on a user's file is a data problem
        raise DataError(f"cannot read image {str(path)!r} (unreadable or truncated): {type(exc).__name__}: {exc}") from exc


def _array_from_pil(im, settings: DecodeSettings) -> np.ndarray:
    from PIL import Image

    size, c = settings.size, settings.channels
    mode = im.mode
    if mode in ("1", "LA", "La"):
        im, mode = im.convert("L"), "L"
    elif mode not in _GREY_MODES:
        if mode != "RGB":
            im = im.convert("RGB")
        mode = "RGB"
    if mode == "RGB" and c == 1:
        rgb = np.asarray(im, dtype=np.uint8)
        grey = _grey_or_luma(rgb)
        if grey.dtype == np.uint8:
            im, mode = Image.fromarray(np.ascontiguousarray(grey), mode="L"), "L"
        else:  # colour: luma in float, resized in float
            a = (grey / np.float32(255.0)).astype(np.float32)
            out = a[None]
            return resize_array(out, size, settings.aspect) if size is not None else out
    if mode in ("L", "RGB"):
        if size is not None:
            im = _resize_pil(im, size, settings.aspect)
        a = pil_to_array(im)
    else:  # 16-bit, 32-bit integer and float images: to [0, 1] first, resized in float
        a = pil_to_array(im)
        if size is not None:
            a = resize_array(a[None], size, settings.aspect)[0]
    return _to_chw(a, c)
