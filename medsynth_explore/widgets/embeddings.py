"""Embeddings panel: UMAP of real vs synthetic features; select points to see images and metrics.

Two views of the same map, chosen by size:

* up to :data:`PLOTLY_MAX_POINTS` points, a plotly ``scattergl`` FigureWidget
  (one trace per source and colour; lasso, box select and click);
* above it, :class:`~medsynth_explore.widgets.scatter.MapScatter`, a WebGL
  scatter (regl-scatterplot) that receives the coordinates as one binary
  buffer and sends the lasso or click selection back as indices. plotly's
  FigureWidget serialises every coordinate as JSON and slows down with lasso
  at 10^5 points; the WebGL view draws, lassos and selects 100,000 points
  interactively (``benchmarks/bench_browser_map.py`` times both).

``backend="plotly"`` or ``"webgl"`` forces one. Both feed the same
:meth:`EmbeddingPanel.select` and :meth:`EmbeddingPanel.show_neighbours`.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .common import COLORS, SERIES, BasePanel, html_table, thumb_grid

__all__ = ["EmbeddingPanel", "PLOTLY_MAX_POINTS", "BACKENDS"]

#: Maps with more points than this are drawn by the WebGL scatter under ``backend="auto"``.
PLOTLY_MAX_POINTS = 20_000
#: Ways of drawing the map.
BACKENDS = ("auto", "plotly", "webgl")
#: Columns offered first for colouring, when both sides have them (``age_group`` is binned from ``age``).
PREFERRED_COLUMNS = ("sex", "age_group", "site", "cardiomegaly", "nodule", "effusion", "pneumothorax", "chest_tube")
#: Most categories a column may have to be offered for colouring.
MAX_CATEGORIES = 12
_REAL_SHADES = ("#4C78A8", "#9ECAE9", "#1F3B5C", "#6B9AC4")
_NOT_CATEGORIES = {"filename", "path", "report", "prompt", "seed", "index", "id", "image_id", "patient_id", "study_id"}


def _column(meta: pd.DataFrame, col: str, n: int) -> np.ndarray:
    """Values of ``col`` as strings (``age_group`` binned from ``age``); "n/a" where missing."""
    if col == "age_group":
        from ..metrics.subgroups import age_group

        values = age_group(meta["age"]) if "age" in meta.columns else pd.Series(["n/a"] * n)
    elif col in meta.columns:
        values = meta[col]
    else:
        return np.full(n, "n/a", dtype=object)
    return values.astype(object).where(values.notna(), "n/a").astype(str).to_numpy()


class EmbeddingPanel(BasePanel):
    """UMAP map of reference and synthetic features.

    The map is fitted once on the reference features; synthetic samples are
    placed into it with UMAP's ``transform`` as they arrive, so the picture
    stays put. Colour by source or by any metadata column both sides share
    (findings, sex, age group, site). Lasso or box-select points to see their
    images and the metrics on the selection; click a synthetic point to see
    its nearest reference images.

    Parameters
    ----------
    session : Session
    runner : JobRunner, optional
    warm_up : bool
        Compile UMAP's kernels in a background thread at once.
    backend : {"auto", "plotly", "webgl"}
        How the map is drawn (see the module docstring).

    Attributes
    ----------
    figure : plotly.graph_objects.FigureWidget
        The plotly view (drawn while the map is small, or with ``backend="plotly"``).
    scatter : MapScatter
        The WebGL view (drawn for large maps, or with ``backend="webgl"``).
    selection : dict
        ``{"real": indices, "<generator>": indices}`` of the selected points.
    """

    title = "Embeddings"
    lane = "embeddings"

    def __init__(self, session: Any, runner: Any = None, warm_up: bool = True, backend: str = "auto", **kwargs: Any) -> None:
        super().__init__(session, runner, **kwargs)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
        from .scatter import MapScatter

        self.backend = backend
        self.selection: dict[str, np.ndarray] = {}
        self._traces: list[tuple[str, np.ndarray]] = []  # plotly, per trace: (source name, row indices)
        self._blocks: list[tuple[str, int, int]] = []  # WebGL, per source: (name, first point, count)
        self.color_by = W.Dropdown(options=["source"], value="source", description="Colour by")
        self.fit_button = W.Button(description="Compute map", button_style="primary", icon="map")
        self.figure = go.FigureWidget(
            layout=go.Layout(
                height=460,
                margin=dict(l=10, r=10, t=30, b=10),
                dragmode="lasso",
                legend=dict(orientation="h", y=-0.05),
                xaxis=dict(title="UMAP 1", showticklabels=False),
                yaxis=dict(title="UMAP 2", showticklabels=False),
                title=dict(text="Compute the map to see real vs synthetic features", font=dict(size=13)),
                template="plotly_white",
            )
        )
        self.scatter = MapScatter()
        self.scatter.observe(self.guard(lambda _c: self._on_scatter_selection()), names="selection_id")
        self.heading = W.HTML()
        self.legend = W.HTML()
        self.map_box = W.VBox([self.figure])
        self.detail = W.VBox()
        self.fit_button.on_click(self.guard(lambda _b: self.compute()))
        self.color_by.observe(self.guard(lambda _c: self.redraw()), names="value")
        self.subscribe("samples", lambda **_: self._on_samples())
        if warm_up:
            from ..session import warm_up_umap

            warm_up_umap()  # compile UMAP's kernels in the background while the user looks around
        self.children = [
            W.HBox([self.fit_button, self.color_by, self.job_bar()]),
            self.error,
            self.heading,
            self.map_box,
            self.legend,
            self.detail,
        ]

    # ------------------------------------------------------------------ computing
    def compute(self):
        """Fit the map (background) and draw it."""

        def work(job):
            job.progress(0, 2)
            self.session.reference_features()
            job.progress(1, 2)
            emb = self.session.embedding()
            job.progress(2, 2)
            return emb

        return self.run_job(work, lambda _emb: self.redraw(), label="fitting UMAP on the reference features")

    def _on_samples(self) -> None:
        if self.session.has_map:
            try:
                self.redraw()
            except Exception as exc:  # shown in the panel
                self.show_error(exc)

    def _columns(self) -> list[str]:
        """Metadata columns both sides have, with few enough categories to colour by."""
        ref = self.session.reference.metadata
        metas = [self.session.synthetic[name].metadata for name in self.session.embedding().synthetic]
        shared = set(ref.columns) | ({"age_group"} if "age" in ref.columns else set())
        for meta in metas:
            shared &= set(meta.columns) | ({"age_group"} if "age" in meta.columns else set())
        if not metas:
            return ["source"]
        good = [c for c in PREFERRED_COLUMNS if c in shared]
        for c in sorted(shared - set(good) - _NOT_CATEGORIES - {"age"}):
            if ref[c].nunique(dropna=False) <= MAX_CATEGORIES and all(
                m[c].nunique(dropna=False) <= MAX_CATEGORIES for m in metas
            ):
                good.append(c)
        return ["source", *good]

    def _sources(self, emb) -> list[tuple[str, np.ndarray, pd.DataFrame]]:
        sources = [("real", emb.reference, self.session.reference.metadata)]
        for name, xy in emb.synthetic.items():  # the stores keep coordinates row for row with their images
            sources.append((name, xy, self.session.synthetic[name].metadata))
        return sources

    @property
    def backend_used(self) -> str:
        """``"plotly"`` or ``"webgl"``: the view the current map is drawn with."""
        if self.backend != "auto":
            return self.backend
        if not self.session.has_map:
            return "plotly"
        emb = self.session.embedding()
        n = len(emb.reference) + sum(len(v) for v in emb.synthetic.values())
        return "plotly" if n <= PLOTLY_MAX_POINTS else "webgl"

    def redraw(self) -> None:
        """Draw the current map with the view its size calls for."""
        if not self.session.has_map:
            return
        emb = self.session.embedding()
        opts = self._columns()
        if list(self.color_by.options) != opts:
            value = self.color_by.value if self.color_by.value in opts else "source"
            with self.color_by.hold_trait_notifications():
                self.color_by.options, self.color_by.value = opts, value
        sources = self._sources(emb)
        n_syn = sum(len(xy) for name, xy, _ in sources[1:])
        self.heading.value = (
            f"<b>UMAP of {len(emb.reference):,} real and {n_syn:,} synthetic features</b> "
            f"({html.escape(self.session.encoder.id)}; {'plotly' if self.backend_used == 'plotly' else 'WebGL'} view)"
        )
        if self.backend_used == "plotly":
            self._draw_plotly(sources, emb)
            if self.map_box.children != (self.figure,):
                self.map_box.children = [self.figure]
        else:
            self._draw_webgl(sources)
            if self.map_box.children != (self.scatter,):
                self.map_box.children = [self.scatter]

    def _draw_plotly(self, sources, emb) -> None:
        by = self.color_by.value
        traces, self._traces = [], []
        for s, (name, xy, meta) in enumerate(sources):
            marker_symbol = "circle" if name == "real" else "x"
            if by == "source":
                groups = [(name, np.arange(len(xy)))]
            else:
                values = _column(meta, by, len(xy))
                groups = [(f"{name}: {by}={v}", np.flatnonzero(values == v)) for v in sorted(set(values))]
            for g, (label, idx) in enumerate(groups):
                if by == "source":
                    color = COLORS["real"] if name == "real" else SERIES[(s - 1) % len(SERIES)]
                else:
                    color = SERIES[g % len(SERIES)] if name != "real" else _REAL_SHADES[g % len(_REAL_SHADES)]
                traces.append(
                    go.Scattergl(
                        x=xy[idx, 0].astype(np.float32),
                        y=xy[idx, 1].astype(np.float32),
                        mode="markers",
                        name=f"{label} ({len(idx)})",
                        marker=dict(
                            size=5 if name == "real" else 7,
                            color=color,
                            symbol=marker_symbol,
                            opacity=0.55 if name == "real" else 0.9,
                        ),
                    )
                )
                self._traces.append((name, idx))
        with self.figure.batch_update():
            self.figure.data = []
            for t in traces:
                self.figure.add_trace(t)
            self.figure.layout.title.text = (
                f"UMAP of {len(emb.reference)} real and "
                f"{sum(len(v) for v in emb.synthetic.values())} synthetic features "
                f"({html.escape(self.session.encoder.id)})"
            )
        for trace in self.figure.data:
            trace.on_selection(self._on_select)
            trace.on_click(self._on_click)
        self.legend.value = ""

    def _draw_webgl(self, sources) -> None:
        by = self.color_by.value
        xy = np.concatenate([s[1] for s in sources]) if sources else np.zeros((0, 2))
        side = np.concatenate([np.full(len(s[1]), 0 if s[0] == "real" else 1, np.float32) for s in sources])
        self._blocks, start = [], 0
        for name, pts, _ in sources:
            self._blocks.append((name, start, len(pts)))
            start += len(pts)
        if by == "source":
            labels = [name for name, _, _ in sources]
            category = np.concatenate([np.full(len(s[1]), i, np.float32) for i, s in enumerate(sources)])
            palette = [COLORS["real"]] + [SERIES[i % len(SERIES)] for i in range(len(sources) - 1)]
        else:
            values = np.concatenate([_column(meta, by, len(pts)) for _, pts, meta in sources])
            labels, inverse = np.unique(values, return_inverse=True)
            labels = [str(v) for v in labels]
            category = inverse.astype(np.float32)
            palette = [(_REAL_SHADES[0], *SERIES)[i % (len(SERIES) + 1)] for i in range(len(labels))]
        self.scatter.set_points(xy, category, side, palette)
        counts = np.bincount(category.astype(np.int64), minlength=len(labels)) if len(category) else np.zeros(len(labels), int)
        swatches = "".join(
            f'<span style="margin-right:12px"><span style="display:inline-block;width:10px;height:10px;'
            f'border-radius:5px;background:{c}"></span> {html.escape(str(lab))} ({int(n):,})</span>'
            for lab, c, n in zip(labels, palette, counts)
        )
        what = "" if by == "source" else f"{html.escape(by)}: "
        self.legend.value = (
            f'<div style="font-size:12px">{what}{swatches}<br><span style="color:#666">small points: real, '
            "large points: synthetic; drag to lasso, click a point, Pan / zoom to move</span></div>"
        )

    # ------------------------------------------------------------------ interaction
    def _on_select(self, trace, points, selector) -> None:
        try:
            self._collect_selection()
        except Exception as exc:
            self.show_error(exc)

    def _collect_selection(self) -> None:
        sel: dict[str, list] = {}
        for trace, (name, idx) in zip(self.figure.data, self._traces):
            chosen = trace.selectedpoints
            if chosen:
                sel.setdefault(name, []).extend(idx[list(chosen)].tolist())
        self.select({k: np.asarray(v, int) for k, v in sel.items()})

    def _split(self, points: np.ndarray) -> dict[str, np.ndarray]:
        """WebGL point indices -> ``{source: rows}``."""
        out = {}
        for name, start, n in self._blocks:
            rows = points[(points >= start) & (points < start + n)] - start
            if len(rows):
                out[name] = np.sort(rows)
        return out

    def _on_scatter_selection(self) -> None:
        sel = self._split(self.scatter.selected)
        if sum(len(v) for v in sel.values()) == 1:  # a click on one point
            ((name, rows),) = sel.items()
            if name != "real":
                self.selection = {name: rows}
                self.show_neighbours(name, int(rows[0]))
                return
        self.select(sel)

    def select(self, selection: dict[str, np.ndarray]) -> None:
        """Show images and metrics of a selection (``{"real": idx, generator: idx}``), as a lasso does."""
        self.selection = {k: np.asarray(v, int) for k, v in selection.items() if len(v)}
        if not self.selection:
            self.detail.children = []
            return
        thumbs, caps = [], []
        for name, idx in self.selection.items():
            data = self.session.reference if name == "real" else self.session.synthetic[name]
            shown = idx[:16]
            thumbs.append(data.read(shown))
            caps += [f"{html.escape(name)} #{i}" for i in shown]
        parts = [
            W.HTML("<b>Selection</b>: " + ", ".join(f"{len(v):,} {html.escape(k)}" for k, v in self.selection.items())),
            thumb_grid([im for t in thumbs for im in t], caps, width=80, columns=8),  # real and synthetic may differ in size
        ]
        real_idx = self.selection.get("real")
        for name, idx in self.selection.items():
            if name == "real" or len(idx) < 3:
                continue
            syn_mask = np.zeros(len(self.session.synthetic[name]), bool)
            syn_mask[idx] = True
            real_mask = None
            if real_idx is not None and len(real_idx) >= 3:
                real_mask = np.zeros(len(self.session.reference), bool)
                real_mask[real_idx] = True
            m = self.session.metrics(
                name, ("fid", "precision", "recall", "coverage"), real_mask=real_mask, synthetic_mask=syn_mask
            )
            parts.append(
                W.HTML(
                    f"<b>Metrics of the selected {html.escape(name)} samples</b> against "
                    f"{'the selected' if real_mask is not None else 'all'} real images" + html_table(pd.DataFrame([m]))
                )
            )
        self.detail.children = parts
        if self.backend_used == "webgl" and self._blocks:
            offsets = {name: start for name, start, _ in self._blocks}
            points = [offsets[k] + v for k, v in self.selection.items() if k in offsets]
            chosen = np.concatenate(points) if points else np.zeros(0, int)
            if not np.array_equal(np.sort(chosen), np.sort(self.scatter.selected)):
                self.scatter.select(chosen)

    def _on_click(self, trace, points, selector) -> None:
        try:
            if not points.point_inds:
                return
            k = self.figure.data.index(trace)
            name, idx = self._traces[k]
            if name == "real":
                return
            self.show_neighbours(name, int(idx[points.point_inds[0]]))
        except Exception as exc:
            self.show_error(exc)

    def show_neighbours(self, generator: str, index: int, k: int = 3) -> None:
        """A synthetic image beside its k nearest reference images, with feature distances."""
        feats = self.session.synthetic_features(generator)[index]
        nn_idx, nn_d = self.session.nearest_reference(feats, k=k)
        ims = [*self.session.synthetic[generator].read([index]), *self.session.reference.read(nn_idx[0])]
        caps = [f"{html.escape(generator)} #{index}"] + [f"real #{i}<br>distance {d:.3g}" for i, d in zip(nn_idx[0], nn_d[0])]
        self.detail.children = [W.HTML("<b>Nearest reference images</b>"), thumb_grid(ims, caps, width=110, columns=4)]
