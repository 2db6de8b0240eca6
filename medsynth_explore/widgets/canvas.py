"""A mask-painting canvas (an anywidget) at the image's own resolution: brush, erase, clear, undo, zoom; mask 1 = regenerate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets

from ..errors import DataError
from .common import png_bytes

__all__ = ["MaskCanvas"]


def _to_bytes(value: Any, _widget: Any = None) -> bytes:
    return b"" if value is None else bytes(value)


class MaskCanvas(anywidget.AnyWidget):
    """Paint a mask over an image in the browser; read it as a numpy array in Python.

    The image is sent as a PNG at its own resolution and the browser canvas
    holds one pixel per image pixel, so a 512 or 1024 px image is painted
    pixel for pixel; on screen it is ``display_size`` CSS pixels wide times
    ``zoom`` (the view scrolls when zoomed in). The mask travels as raw bytes
    (one byte per image pixel), not JSON. Every finished stroke from the
    browser (and every :meth:`clear` or :meth:`set_mask`) pushes the previous
    mask on an undo stack.

    Parameters
    ----------
    image : array (C, H, W) or (H, W) in [0, 1]
    brush : int
        Brush radius in image pixels.
    display_size : int
        Width of the canvas on screen at zoom 1, in CSS pixels.
    zoom : float
        Magnification of the on-screen view (0.25 to 8).

    Examples
    --------
    >>> c = MaskCanvas(np.zeros((1, 8, 8)))
    >>> c.set_mask(np.eye(8, dtype=bool)); int(c.mask_array.sum())
    8
    >>> c.undo(); int(c.mask_array.sum())
    0
    """

    _esm = Path(__file__).with_name("canvas.js")
    # the browser sends binary state as a memoryview: turn it back into bytes
    image = traitlets.Bytes(b"").tag(sync=True, from_json=_to_bytes)
    mask = traitlets.Bytes(b"").tag(sync=True, from_json=_to_bytes)
    height = traitlets.Int(64).tag(sync=True)
    width = traitlets.Int(64).tag(sync=True)
    brush = traitlets.Int(3).tag(sync=True)
    mode = traitlets.Unicode("paint").tag(sync=True)
    display_size = traitlets.Int(320).tag(sync=True)
    zoom = traitlets.Float(1.0).tag(sync=True)
    strokes = traitlets.Int(0).tag(sync=True)

    @traitlets.validate("zoom")
    def _valid_zoom(self, proposal: dict) -> float:
        z = float(proposal["value"])
        if not np.isfinite(z) or not 0.25 <= z <= 8:
            raise DataError(f"zoom must be between 0.25 and 8, got {z}.")
        return z

    def __init__(self, image: Any = None, brush: int = 3, display_size: int = 320, zoom: float = 1.0, **kwargs: Any) -> None:
        super().__init__(brush=brush, display_size=display_size, zoom=zoom, **kwargs)
        self._history: list[bytes] = []
        self._restoring = False
        self.observe(self._remember, names="mask")
        if image is not None:
            self.set_image(image)

    # ------------------------------------------------------------------ state
    def _remember(self, change: dict) -> None:
        if not self._restoring and change["old"] and len(change["old"]) == self.height * self.width:
            self._history.append(change["old"])

    def set_image(self, image: Any) -> None:
        """Show a new image and start with an empty mask (history cleared)."""
        a = np.asarray(image, np.float32)
        if a.ndim == 3:
            a = a[0]
        if a.ndim != 2:
            raise DataError(f"the canvas shows one image (C, H, W) or (H, W); got shape {np.shape(image)}.")
        self._restoring = True
        try:
            self.height, self.width = a.shape
            self.image = png_bytes(a, max_side=None)  # every pixel: the mask is painted at this resolution
            self.mask = bytes(a.size)
        finally:
            self._restoring = False
        self._history.clear()

    @property
    def mask_array(self) -> np.ndarray:
        """The mask as a bool array (H, W); True = regenerate."""
        if len(self.mask) != self.height * self.width:
            return np.zeros((self.height, self.width), bool)
        return np.frombuffer(self.mask, np.uint8).reshape(self.height, self.width).astype(bool)

    def set_mask(self, mask: Any) -> None:
        """Replace the mask (e.g. a ground-truth lesion mask); undoable."""
        m = np.asarray(mask)
        if m.shape != (self.height, self.width):
            raise DataError(f"mask has shape {m.shape}; the image is {self.height}x{self.width}.")
        self.mask = m.astype(bool).astype(np.uint8).tobytes()

    def clear(self) -> None:
        """Erase the whole mask; undoable."""
        self.mask = bytes(self.height * self.width)

    def undo(self) -> None:
        """Go back one stroke (or one clear / set_mask)."""
        if not self._history:
            return
        self._restoring = True
        try:
            self.mask = self._history.pop()
        finally:
            self._restoring = False

    def paint_disc(self, cy: float, cx: float, radius: float | None = None, erase: bool = False) -> None:
        """Paint (or erase) a disc as a browser stroke would; for scripts and tests."""
        r = self.brush if radius is None else radius
        yy, xx = np.mgrid[: self.height, : self.width]
        disc = (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 <= r * r
        m = self.mask_array.copy()
        m[disc] = not erase
        self.mask = m.astype(np.uint8).tobytes()
