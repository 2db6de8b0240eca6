"""Live metrics panel: FID, KID, precision, recall, coverage, CLIPScore as samples stream in."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..metrics.registry import output
from ..session import describe_samples
from .common import SERIES, BasePanel

#: Values the panel shows, in order; labels, hints and spreads come from the metric registry.
SHOWN = ("fid", "kid", "precision", "recall", "coverage", "clip_score")


class MetricsPanel(BasePanel):
    """Distribution metrics of the active generator, updated after every batch.

    Run draws ``total`` images in batches; after each batch the numbers and
    the curves against N are refreshed (features of earlier batches are
    kept, so each refresh costs one metric computation, not a re-encode).

    Attributes
    ----------
    history : DataFrame
        One row per refresh: generator, n and every metric.
    """

    title = "Live metrics"
    lane = "metrics"

    def __init__(self, session: Any, runner: Any = None, **kwargs: Any) -> None:
        super().__init__(session, runner, **kwargs)
        self.history = pd.DataFrame(columns=["generator", "n"] + list(SHOWN))
        self.total = W.IntSlider(value=256, min=32, max=2048, step=32, description="Samples")
        self.batch = W.IntSlider(value=32, min=8, max=256, step=8, description="Batch")
        self.run_button = W.Button(description="Run", button_style="primary", icon="play")
        self.refresh_button = W.Button(description="Recompute", icon="refresh")
        self.numbers = W.HTML()
        self.figure = go.FigureWidget(
            make_subplots(rows=1, cols=3, subplot_titles=("FID", "KID", "precision / recall / coverage"))
        )
        self.figure.update_layout(
            height=300, margin=dict(l=40, r=10, t=40, b=40), template="plotly_white", legend=dict(orientation="h", y=-0.25)
        )
        for c in (1, 2, 3):
            self.figure.update_xaxes(title_text="synthetic images (N)", type="log", row=1, col=c)
        self.run_button.on_click(self.guard(lambda _b: self.run()))
        self.refresh_button.on_click(self.guard(lambda _b: self.refresh()))
        self.children = [
            W.HBox([self.total, self.batch]),
            W.HBox([self.run_button, self.refresh_button, self.job_bar()]),
            self.error,
            self.numbers,
            self.figure,
        ]

    def refresh(self, clip_scores: np.ndarray | None = None) -> dict:
        """Recompute the metrics on the samples kept so far and redraw."""
        name = self.session.active
        m = self.session.live_metrics(name)
        if clip_scores is not None and len(clip_scores) and np.isfinite(clip_scores).any():
            m["clip_score"] = float(np.nanmean(clip_scores))
        row = {"generator": name, "n": len(self.session.synthetic[name]), **m}
        self.history = pd.concat([self.history.dropna(axis=1, how="all"), pd.DataFrame([row])], ignore_index=True)
        self.draw()
        return m

    def draw(self) -> None:
        """Numbers of the latest refresh and curves of every refresh."""
        if self.history.empty:
            return
        last = self.history.iloc[-1]
        cells = []
        for key in SHOWN:
            if key not in last or pd.isna(last.get(key)):
                continue
            o = output(key)
            val = f"{last[key]:.4f}" if o.spread else f"{last[key]:.3g}"
            if o.spread and o.spread in last and pd.notna(last[o.spread]):
                val += f" ± {last[o.spread]:.4f}"
            cells.append(f"<div class='msx-metric'>{o.label} <span class='msx-caption'>({o.hint})</span><b>{val}</b></div>")
        self.numbers.value = (
            f"<div><span class='msx-caption'>{html.escape(str(last['generator']))}, N = {int(last['n'])} synthetic vs "
            f"{len(self.session.reference)} real, encoder {html.escape(self.session.encoder.id)}</span><br>"
            + "".join(cells)
            + "</div>"
        )
        with self.figure.batch_update():
            self.figure.data = []
            for g, (name, h) in enumerate(self.history.groupby("generator", sort=False)):
                color = SERIES[g % len(SERIES)]
                n = h["n"].to_numpy(float)
                self.figure.add_trace(
                    go.Scatter(x=n, y=h["fid"], name=f"{name} FID", mode="lines+markers", line=dict(color=color)), row=1, col=1
                )
                if "kid_std" in h:
                    err = dict(type="data", array=h["kid_std"].to_numpy(float), visible=True)
                else:
                    err = None
                self.figure.add_trace(
                    go.Scatter(
                        x=n,
                        y=h["kid"],
                        error_y=err,
                        name=f"{name} KID",
                        mode="lines+markers",
                        line=dict(color=color),
                        showlegend=False,
                    ),
                    row=1,
                    col=2,
                )
                for dash, key in (("solid", "precision"), ("dash", "recall"), ("dot", "coverage")):
                    self.figure.add_trace(
                        go.Scatter(x=n, y=h[key], name=f"{name} {key}", mode="lines+markers", line=dict(color=color, dash=dash)),
                        row=1,
                        col=3,
                    )

    def run(self):
        """Draw ``total`` samples in batches, refreshing the metrics after each batch."""
        name, total, batch = self.session.active, int(self.total.value), int(self.batch.value)
        gen = self.session.generator(name)
        start_seed = len(self.session.synthetic[name]) + 1

        def work(job):
            done, clip = 0, []
            while done < total:
                if not job.progress(done, total):
                    break
                k = min(batch, total - done)
                out = gen.sample(k, seed=start_seed + done)
                self.session.add_samples(out, name)
                if self.session.domain_clip is not None:
                    clip.extend(describe_samples(self.session, out)["clip_score"].tolist())
                done += k
                if len(self.session.synthetic[name]) >= 2:
                    self.refresh(np.asarray(clip, float) if clip else None)
            job.progress(done, total)
            return done

        return self.run_job(
            work,
            lambda n: setattr(self.status, "value", f"<span class='msx-caption'>{n} samples drawn</span>"),
            label=f"drawing {total} samples from {name}",
        )
