"""Trilemma panel: the loaded generators side by side on speed, quality and coverage, measured live.

The measurement is :meth:`~medsynth_explore.session.Session.trilemma` (each
generator draws the same number of fresh, seeded images on this machine);
this module draws the table and the scatter.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..errors import DataError
from .common import SERIES, BasePanel

__all__ = ["TrilemmaPanel", "trilemma_table_html", "AXES"]


def _axes() -> dict:
    """Columns of :meth:`Session.trilemma` the panel shows: key -> (label, True when higher is better).

    Speed is the trilemma's own measurement; the rest are metrics, whose
    labels, hints and directions come from the metric registry.
    """
    from ..metrics.registry import output
    from ..session.analyses import TRILEMMA_METRICS

    axes = {"images_per_s": ("Speed (images/s)", True)}
    for key in TRILEMMA_METRICS:
        o = output(key)
        axes[key] = (f"{o.label} ({o.hint or o.direction})", bool(o.higher_is_better))
    return axes


#: Columns of :meth:`Session.trilemma` the panel shows: key -> (label, True when higher is better).
AXES = _axes()


def trilemma_table_html(table: pd.DataFrame) -> str:
    """An HTML table of a trilemma result with the best value of each column in bold.

    Parameters
    ----------
    table : DataFrame
        The result of :meth:`Session.trilemma` (columns generator, family,
        images_per_s, fid, precision, recall, coverage, n).

    Returns
    -------
    str

    Examples
    --------
    >>> t = pd.DataFrame({"generator": ["a", "b"], "family": ["vae", "gan"], "images_per_s": [100.0, 10.0],
    ...                   "fid": [5.0, 3.0], "precision": [0.5, 0.7], "recall": [0.4, 0.2], "coverage": [0.3, 0.6], "n": 64})
    >>> out = trilemma_table_html(t)
    >>> "<b>100</b>" in out and "<b>3</b>" in out and "<b>0.7</b>" in out
    True
    """
    shown = [c for c in AXES if c in table.columns]
    best = {}
    for c in shown:
        col = table[c].astype(float)
        if col.notna().any() and len(table) > 1:
            best[c] = col.idxmax() if AXES[c][1] else col.idxmin()
    head = ["generator", "family"] + [AXES[c][0] for c in shown] + ["images drawn"]
    rows = []
    for i, r in table.iterrows():
        cells = [f"<td>{html.escape(str(r['generator']))}</td>", f"<td>{html.escape(str(r.get('family', '')))}</td>"]
        for c in shown:
            text = f"{float(r[c]):.3g}"
            cells.append(f"<td>{'<b>' + text + '</b>' if best.get(c) == i else text}</td>")
        cells.append(f"<td>{int(r['n']) if 'n' in r and pd.notna(r['n']) else ''}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head_html = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table class='msx-table'><thead><tr>{head_html}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


class TrilemmaPanel(BasePanel):
    """Speed, quality and diversity of every loaded generator, measured now on this machine.

    Run makes each generator draw ``n`` fresh images (same seed for all) and
    measures images per second, FID and precision (quality) and recall and
    coverage (diversity) against the reference. The table puts the best of
    each column in bold; the scatter places each generator by speed (log
    scale) against the chosen quality or diversity measure.

    Parameters
    ----------
    session : Session
    runner : JobRunner, optional

    Attributes
    ----------
    n : ipywidgets.IntSlider
        Images per generator.
    seed : ipywidgets.IntText
    y_axis : ipywidgets.ToggleButtons
        Measure on the scatter's vertical axis.
    run_button : ipywidgets.Button
    table : ipywidgets.HTML
    figure : plotly FigureWidget
    result : DataFrame or None
        The last measurement.

    Examples
    --------
    >>> panel = TrilemmaPanel(session, runner=JobRunner(synchronous=True))  # doctest: +SKIP
    >>> panel.run_button.click(); panel.result  # doctest: +SKIP
    """

    title = "Trilemma"
    lane = "trilemma"

    def __init__(self, session: Any, runner: Any = None, **kwargs: Any) -> None:
        super().__init__(session, runner, **kwargs)
        self.result: pd.DataFrame | None = None
        self.n = W.IntSlider(value=64, min=16, max=1024, step=16, description="Images", tooltip="images drawn per generator")
        self.seed = W.IntText(value=0, description="Seed", layout=W.Layout(width="160px"))
        self.y_axis = W.ToggleButtons(
            options=[(AXES[k][0].split(" (")[0], k) for k in AXES if k != "images_per_s"],
            value="fid",
            description="Vertical axis",
            style={"button_width": "80px"},
        )
        self.run_button = W.Button(description="Run", button_style="primary", icon="play")
        self.note = W.HTML()
        self.table = W.HTML()
        self.figure = go.FigureWidget()
        self.figure.update_layout(
            height=380,
            template="plotly_white",
            margin=dict(l=60, r=20, t=40, b=50),
            xaxis=dict(type="log", title="speed (images/s, log scale)"),
            legend=dict(orientation="h", y=1.1, x=0),
        )
        self.run_button.on_click(self.guard(lambda _b: self.run()))
        self.y_axis.observe(self.guard(lambda _c: self.draw()), names="value")
        self.children = [
            W.HBox([self.n, self.seed]),
            self.y_axis,
            W.HBox([self.run_button, self.job_bar()]),
            self.error,
            self.note,
            self.table,
            self.figure,
        ]

    def run(self):
        """Measure every loaded generator in the background (progress: one step per generator)."""
        if not self.session.generators:
            raise DataError("no generator is loaded; add one with session.add_generator(...).")
        n, seed = int(self.n.value), int(self.seed.value)
        if n < 2:
            raise DataError(f"draw at least 2 images per generator, got {n}.")
        names = list(self.session.generators)

        def work(job):
            job.progress(0, len(names))
            return self.session.trilemma(n=n, seed=seed, names=names, callback=job.progress)

        def done(table):
            self.result = table
            self.draw()
            self.status.value = f"<span class='msx-caption'>{len(table)} generator(s), {n} images each, seed {seed}</span>"

        return self.run_job(work, done, label=f"drawing {n} images from each of {len(names)} generator(s)")

    def draw(self) -> None:
        """Table and scatter of :attr:`result`."""
        t = self.result
        if t is None or t.empty:
            return
        from ..checkpoint import machine_description

        y = self.y_axis.value
        label = AXES[y][0]
        enc = getattr(self.session.encoder, "id", type(self.session.encoder).__name__)
        self.note.value = (
            f"<div class='msx-caption'>Measured now on {html.escape(machine_description())}; "
            f"features: {html.escape(str(enc))}; {int(t['n'].iloc[0])} images per generator "
            f"against {len(self.session.reference)} reference images. Best of each column in bold. "
            "Speed includes the generator's own batching, not feature extraction.</div>"
        )
        self.table.value = trilemma_table_html(t)
        with self.figure.batch_update():
            self.figure.data = []
            for i, r in t.reset_index(drop=True).iterrows():
                self.figure.add_scatter(
                    x=[float(r["images_per_s"])],
                    y=[float(r[y])],
                    mode="markers+text",
                    name=str(r["generator"]),
                    text=[str(r["generator"])],
                    textposition="top center",
                    marker=dict(size=14, color=SERIES[i % len(SERIES)], line=dict(width=1, color="#333")),
                    hovertemplate=(
                        f"{html.escape(str(r['generator']))} ({html.escape(str(r.get('family', '')))})<br>"
                        "%{x:.3g} images/s<br>" + label + " %{y:.3g}<extra></extra>"
                    ),
                )
            span = t[y].astype(float)
            pad = 0.15 * (span.max() - span.min()) if len(t) > 1 and span.max() > span.min() else 0.1 * max(abs(span.max()), 1e-3)
            self.figure.update_layout(
                yaxis=dict(title=label, range=[float(span.min() - pad), float(span.max() + pad)]),
                title=dict(text=f"Speed vs {label.split(' (')[0]}", x=0, font=dict(size=14)),
            )
            if not np.isfinite(t["images_per_s"].astype(float)).all():
                self.show_error("a generator finished too fast to time; draw more images per generator.")
