"""Embeddings panel: UMAP of real vs synthetic features; select points to see images and metrics."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from .common import COLORS, SERIES, BasePanel, html_table, thumb_grid


class EmbeddingPanel(BasePanel):
    """UMAP map of reference and synthetic features (plotly ``scattergl``).

    The map is fitted once on the reference features; synthetic samples are
    placed into it with UMAP's ``transform`` as they arrive, so the picture
    stays put. Colour by source or by any metadata column both sides share.
    Lasso or box-select points to see their images and the metrics on the
    selection; click a synthetic point to see its nearest reference images.

    Attributes
    ----------
    figure : plotly.graph_objects.FigureWidget
    selection : dict
        ``{"real": indices, "<generator>": indices}`` of the selected points.
    """

    title = "Embeddings"
    lane = "embeddings"

    def __init__(self, session: Any, runner: Any = None, warm_up: bool = True, **kwargs: Any) -> None:
        super().__init__(session, runner, **kwargs)
        self.selection: dict[str, np.ndarray] = {}
        self._traces: list[tuple[str, np.ndarray]] = []  # per trace: (source name, row indices)
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
        self.detail = W.VBox()
        self.fit_button.on_click(self.guard(lambda _b: self.compute()))
        self.color_by.observe(self.guard(lambda _c: self.redraw()), names="value")
        self.subscribe("samples", lambda **_: self._on_samples())
        if warm_up:
            from ..session import warm_up_umap

            warm_up_umap()  # compile UMAP's kernels in the background while the user looks around
        self.children = [W.HBox([self.fit_button, self.color_by, self.job_bar()]), self.error, self.figure, self.detail]

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
        ref = set(self.session.reference.metadata.columns)
        cols = set()
        for data in self.session.synthetic.values():
            cols |= ref & set(data.metadata.columns)
        good = [c for c in ("sex", "site", "cardiomegaly", "nodule", "effusion", "pneumothorax", "chest_tube") if c in cols]
        return ["source", *good]

    def redraw(self) -> None:
        """Draw the current map: one trace per source (and category when colouring by a column)."""
        if not self.session.has_map:
            return
        emb = self.session.embedding()
        opts = self._columns()
        if list(self.color_by.options) != opts:
            value = self.color_by.value if self.color_by.value in opts else "source"
            with self.color_by.hold_trait_notifications():
                self.color_by.options, self.color_by.value = opts, value
        by = self.color_by.value
        traces, self._traces = [], []
        sources = [("real", emb.reference, self.session.reference.metadata)]
        for name, xy in emb.synthetic.items():  # the stores keep coordinates row for row with their images
            sources.append((name, xy, self.session.synthetic[name].metadata))
        for s, (name, xy, meta) in enumerate(sources):
            marker_symbol = "circle" if name == "real" else "x"
            if by == "source":
                groups = [(name, np.arange(len(xy)))]
            else:
                values = meta[by].astype(str).to_numpy()
                groups = [(f"{name}: {by}={v}", np.flatnonzero(values == v)) for v in sorted(set(values))]
            for g, (label, idx) in enumerate(groups):
                if by == "source":
                    color = COLORS["real"] if name == "real" else SERIES[(s - 1) % len(SERIES)]
                else:
                    color = SERIES[g % len(SERIES)] if name != "real" else ["#4C78A8", "#9ECAE9", "#1F3B5C", "#6B9AC4"][g % 4]
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

    def select(self, selection: dict[str, np.ndarray]) -> None:
        """Show images and metrics of a selection (``{"real": idx, generator: idx}``), as a lasso does."""
        self.selection = {k: np.asarray(v, int) for k, v in selection.items() if len(v)}
        if not self.selection:
            self.detail.children = []
            return
        thumbs, caps = [], []
        for name, idx in self.selection.items():
            data = self.session.reference if name == "real" else self.session.synthetic[name]
            for i in idx[:16]:
                thumbs.append(data.images[i])
                caps.append(f"{html.escape(name)} #{i}")
        parts = [
            W.HTML("<b>Selection</b>: " + ", ".join(f"{len(v)} {html.escape(k)}" for k, v in self.selection.items())),
            thumb_grid(np.stack(thumbs), caps, width=80, columns=8),
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
            import pandas as pd

            parts.append(
                W.HTML(
                    f"<b>Metrics of the selected {html.escape(name)} samples</b> against "
                    f"{'the selected' if real_mask is not None else 'all'} real images" + html_table(pd.DataFrame([m]))
                )
            )
        self.detail.children = parts

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
        ims = [self.session.synthetic[generator].images[index]] + [self.session.reference.images[i] for i in nn_idx[0]]
        caps = [f"{html.escape(generator)} #{index}"] + [f"real #{i}<br>distance {d:.3g}" for i, d in zip(nn_idx[0], nn_d[0])]
        self.detail.children = [W.HTML("<b>Nearest reference images</b>"), thumb_grid(np.stack(ims), caps, width=110, columns=4)]
