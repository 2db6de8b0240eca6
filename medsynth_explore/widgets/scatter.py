"""A WebGL scatter for maps of many points: regl-scatterplot in an anywidget view, arrays sent as binary.

:class:`MapScatter` holds the synced state only (points, colour categories,
sides, colour / size / opacity maps, the selection, the mouse mode); the
Embeddings panel builds it from a session's map. Coordinates travel as one
float32 buffer (x, y in [-1, 1]: 800 KB for 100,000 points, no JSON
lists), the selection comes back as an int32 buffer of point indices, set
by a lasso (drag in lasso mode) or a click on a point. The JavaScript
(``scatter.js``, built from ``js/scatter`` with esbuild) ships in the
package; nothing is fetched from the network.

Why not jupyter-scatter: it fits (anywidget, binary arrays, regl-scatterplot,
its bundle in the wheel) but importing it takes about 4 s and 230 MB here
(it imports matplotlib and a Rust spatial index), a cost the Explorer would
pay on every start for a panel that needs points, colours and a selection.

>>> import numpy as np
>>> w = MapScatter()
>>> w.set_points(np.array([[0.0, 0.0], [2.0, 4.0]]), category=[0, 1], side=[0, 1], palette=["#4C78A8", "#F58518"])
>>> np.frombuffer(w.points, np.float32).tolist()
[-0.5, -1.0, 0.5, 1.0]
>>> w.select([1]); w.selected.tolist()
[1]
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import anywidget
import numpy as np
import traitlets
from ipywidgets.widgets.trait_types import bytes_serialization

from ..errors import DataError

__all__ = ["MapScatter"]

_CSS = """
.msx-scatter { width: 100%; }
.msx-scatter-bar { display: flex; gap: 4px; align-items: center; margin-bottom: 4px; font-size: 12px; }
.msx-scatter-button { border: 1px solid #bbb; background: #f7f7f7; border-radius: 3px; padding: 2px 8px; cursor: pointer; }
.msx-scatter-button.msx-active { background: #dbe7f5; border-color: #4C78A8; }
.msx-scatter-status { margin-left: auto; color: #666; }
.msx-scatter-frame { position: relative; width: 100%; border: 1px solid #e3e3e3; }
.msx-scatter-frame canvas { position: absolute; inset: 0; }
"""


class MapScatter(anywidget.AnyWidget):
    """WebGL scatter plot with lasso and click selection synced back to Python.

    Attributes
    ----------
    points : bytes
        float32 (x0, y0, x1, y1, ...) in [-1, 1] (set with :meth:`set_points`).
    category : bytes
        float32 colour category per point (an index into ``palette``).
    side : bytes
        float32 0 / 1 per point, an index into ``sizes`` and ``opacities`` (real / synthetic).
    selection : bytes
        int32 indices of the selected points; the browser sets it on lasso and click.
    selection_id : int
        Counts selections made in the browser (each one, even if equal to the last).
    mode : str
        ``"lasso"`` (drag draws a lasso) or ``"panZoom"``.
    """

    _esm = Path(__file__).with_name("scatter.js")
    _css = _CSS

    points = traitlets.Bytes(b"").tag(sync=True, **bytes_serialization)
    category = traitlets.Bytes(b"").tag(sync=True, **bytes_serialization)
    side = traitlets.Bytes(b"").tag(sync=True, **bytes_serialization)
    selection = traitlets.Bytes(b"").tag(sync=True, **bytes_serialization)
    selection_id = traitlets.Int(0).tag(sync=True)
    palette = traitlets.List(traitlets.Unicode(), default_value=["#4C78A8"]).tag(sync=True)
    sizes = traitlets.List(traitlets.Float(), default_value=[3.0, 6.0]).tag(sync=True)
    opacities = traitlets.List(traitlets.Float(), default_value=[0.55, 0.95]).tag(sync=True)
    mode = traitlets.Unicode("lasso").tag(sync=True)
    height = traitlets.Int(460).tag(sync=True)

    @traitlets.validate("mode")
    def _valid_mode(self, proposal):
        if proposal["value"] not in ("lasso", "panZoom"):
            raise traitlets.TraitError(f"mode must be 'lasso' or 'panZoom', got {proposal['value']!r}.")
        return proposal["value"]

    @property
    def n_points(self) -> int:
        """Points drawn."""
        return len(self.points) // 8

    def set_points(
        self,
        xy: np.ndarray,
        category: Sequence[int] | None = None,
        side: Sequence[int] | None = None,
        palette: Sequence[str] | None = None,
    ) -> None:
        """Draw ``xy`` (N, 2), scaled into [-1, 1] keeping the aspect ratio, with a colour category and side per point.

        The selection is cleared (its indices would refer to other points).
        """
        xy = np.asarray(xy, np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise DataError(f"map coordinates must have shape (N, 2), got {xy.shape}.")
        if not np.isfinite(xy).all():
            raise DataError("map coordinates contain NaN or infinite values.")
        n = len(xy)
        cat = np.zeros(n, np.float32) if category is None else np.asarray(category, np.float32)
        sd = np.zeros(n, np.float32) if side is None else np.asarray(side, np.float32)
        if cat.shape != (n,) or sd.shape != (n,):
            raise DataError(f"give one category and one side per point ({n}); got {cat.shape} and {sd.shape}.")
        pal = list(palette) if palette is not None else list(self.palette)
        if n and (cat.min() < 0 or cat.max() >= len(pal)):
            raise DataError(f"categories must index the palette of {len(pal)} colours.")
        if n:
            lo, hi = xy.min(0), xy.max(0)
            centre, half = (lo + hi) / 2.0, max(float((hi - lo).max()) / 2.0, 1e-12)
            scaled = ((xy - centre) / half).astype(np.float32)
        else:
            scaled = np.zeros((0, 2), np.float32)
        with self.hold_sync():
            self.selection = b""
            self.palette = pal
            self.category = cat.tobytes()
            self.side = sd.tobytes()
            self.points = np.ascontiguousarray(scaled).tobytes()

    @property
    def selected(self) -> np.ndarray:
        """Indices of the selected points (int64)."""
        return np.frombuffer(self.selection, np.int32).astype(np.int64) if self.selection else np.zeros(0, np.int64)

    def select(self, indices: Sequence[int]) -> None:
        """Select points from Python (highlighted in the browser; no ``selection_id`` change)."""
        idx = np.asarray(indices, np.int64).ravel()
        if len(idx) and (idx.min() < 0 or idx.max() >= self.n_points):
            raise DataError(f"point indices must lie in [0, {self.n_points}).")
        self.selection = idx.astype(np.int32).tobytes()
