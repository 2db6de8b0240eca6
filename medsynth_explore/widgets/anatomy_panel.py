"""Anatomy panel: are the lungs and the heart of generated images where a chest has them?

A view over :func:`medsynth_explore.anatomy.anatomy_report` (the CTR per
requested condition and the rate of implausible anatomy, measured by the
anatomy segmenter) and
:func:`medsynth_explore.stress.inpainting_anatomy_check` (whether inpainting
keeps the structures outside its mask).
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..errors import CapabilityError, DataError
from .common import COLORS, SERIES, BasePanel, html_table, metric_label, thumb_grid

__all__ = ["AnatomyPanel", "anatomy_table_html"]


def anatomy_table_html(table: pd.DataFrame) -> str:
    """The per-condition table of :func:`~medsynth_explore.anatomy.ctr_by_condition` as HTML.

    Examples
    --------
    >>> t = pd.DataFrame({"condition": ["no finding"], "n": [8], "ctr_mean": [0.45], "ctr_low": [0.44],
    ...                   "ctr_high": [0.46], "ctr_median": [0.45], "ctr_above_half": [0.0], "implausible_rate": [0.125]})
    >>> "0.45 [0.44, 0.46]" in anatomy_table_html(t) and "12.5%" in anatomy_table_html(t)
    True
    """
    rows = pd.DataFrame(
        {
            "requested": table["condition"],
            "images": table["n"].astype(int),
            "mean CTR (95% CI)": [
                f"{m:.3g} [{lo:.3g}, {hi:.3g}]" for m, lo, hi in zip(table.ctr_mean, table.ctr_low, table.ctr_high)
            ],
            "CTR > 0.5": [f"{100 * v:.0f}%" for v in table["ctr_above_half"]],
            metric_label("implausible_rate", with_direction=False): [f"{100 * v:.1f}%" for v in table["implausible_rate"]],
        }
    )
    return html_table(rows)


class AnatomyPanel(BasePanel):
    """CTR per requested condition, implausible anatomy, and what inpainting keeps, for the session's generators.

    Attributes
    ----------
    generator : ipywidgets.Dropdown
    n_per_condition : ipywidgets.IntSlider
    measure_button : ipywidgets.Button
    report : dict or None
        The last :func:`~medsynth_explore.anatomy.anatomy_report` result.
    figure : plotly FigureWidget
        CTR of every sample per requested condition, with the 0.5 line.
    edit, inpaint_button : widgets of the inpainting check
    inpainting : dict or None
        The last :func:`~medsynth_explore.stress.inpainting_anatomy_check` result.
    """

    title = "Anatomy"
    lane = "anatomy"

    def __init__(self, session: Any, runner: Any = None, **kwargs: Any) -> None:
        super().__init__(session, runner, **kwargs)
        self.report: dict | None = None
        self.inpainting: dict | None = None
        self.generator = W.Dropdown(description="Generator", layout=W.Layout(width="360px"))
        self.n_per_condition = W.IntSlider(value=32, min=8, max=128, step=8, description="Per condition")
        self.measure_button = W.Button(description="Measure anatomy", button_style="primary", icon="play")
        self.measure_button.on_click(self.guard(lambda _b: self.measure()))
        self.summary = W.HTML()
        self.table = W.HTML()
        self.source = W.HTML()
        self.implausible = W.VBox()
        self.figure = go.FigureWidget()
        self.figure.update_layout(
            height=320,
            template="plotly_white",
            margin=dict(l=60, r=20, t=30, b=60),
            yaxis_title="cardiothoracic ratio (segmented)",
            showlegend=False,
        )
        self.edit = W.Dropdown(
            options=["add effusion", "add nodule", "add pneumothorax", "add cardiomegaly"],
            value="add effusion",
            description="Edit",
            layout=W.Layout(width="260px"),
        )
        self.n_inpaint = W.IntSlider(value=16, min=4, max=64, step=4, description="Images")
        self.inpaint_button = W.Button(description="Check inpainting", icon="paint-brush")
        self.inpaint_button.on_click(self.guard(lambda _b: self.check_inpainting()))
        self.inpaint_out = W.HTML()
        self._refresh()
        self.subscribe("generators", lambda **_: self._refresh())
        self.subscribe("active", lambda **_: self._refresh())
        self.children = [
            W.HBox([self.generator, self.n_per_condition]),
            W.HTML(
                "<div class='msx-caption'>Samples no finding and each finding alone, segments lungs and heart "
                "(the anatomy segmenter, trained on the simulator's masks) and measures the cardiothoracic ratio (CTR). "
                "Asked for cardiomegaly, a generator should move the CTR past 0.5; asked for no finding, it should "
                "not.</div>",
                layout=W.Layout(width="640px"),
            ),
            W.HBox([self.measure_button, self.job_bar()]),
            self.error,
            self.summary,
            self.table,
            self.figure,
            self.source,
            W.HTML("<b>Implausible samples</b>"),
            self.implausible,
            W.HTML(
                "<hr><b>Does inpainting keep the anatomy?</b> <span class='msx-caption'>(reference images, "
                "the region of the edit regenerated by the generator above)</span>"
            ),
            W.HBox([self.edit, self.n_inpaint, self.inpaint_button]),
            self.inpaint_out,
        ]

    def _refresh(self) -> None:
        names = list(self.session.generators)
        keep = self.generator.value if self.generator.value in names else None
        self.generator.options = names
        if names:
            self.generator.value = keep or (self.session.active if self.session.active in names else names[0])

    # ------------------------------------------------------------------ anatomy of samples
    def measure(self):
        """Sample, segment and measure in the background, then draw."""
        from ..anatomy import anatomy_report

        name = self.generator.value
        if name is None:
            raise DataError("no generator is loaded; add one with session.add_generator(...).")
        gen, n = self.session.generators[name], int(self.n_per_condition.value)

        def work(job):
            return anatomy_report(gen, n=n, seed=self.session.seed, callback=job.progress)

        def done(report):
            self.report = report
            self.draw()

        return self.run_job(work, done, label=f"anatomy of {5 * n} samples of {name}")

    def draw(self) -> None:
        r = self.report
        if r is None:
            return
        bad = r["implausible_rate"] > 0.05
        color = COLORS["worst"] if bad else COLORS["ok"]
        shift = r["cardiomegaly_ctr_shift"]
        self.summary.value = (
            f"<div><span class='msx-metric'>{html.escape(metric_label('implausible_rate', with_direction=False))} "
            f"<b style='color:{color}'>{100 * r['implausible_rate']:.1f}%</b>"
            f"<span class='msx-caption'>95% CI {100 * r['implausible_low']:.1f}–{100 * r['implausible_high']:.1f}%</span></span>"
            f"<span class='msx-metric'>CTR shift, cardiomegaly vs no finding <b>{shift:+.3f}</b></span></div>"
        )
        self.table.value = anatomy_table_html(r["by_condition"])
        p = r["provenance"]
        reasons = ", ".join(f"{k}: {v}" for k, v in r["reasons"].items()) or "none"
        self.source.value = (
            "<div class='msx-caption'>"
            + html.escape(
                f"{p['generator']} (sha256 {str(p['checkpoint_sha256'])[:12]}), {p['n_per_condition']} samples per condition, "
                f"seed {p['seed']}; segmenter {p.get('segmenter')} (sha256 {str(p.get('segmenter_sha256'))[:12]}). "
                f"Failed rules: {reasons}."
            )
            + "</div>"
        )
        m = r["measurements"]
        with self.figure.batch_update():
            self.figure.data = []
            self.figure.layout.shapes = []
            for i, (label, part) in enumerate(m.groupby("condition", sort=False)):
                self.figure.add_box(
                    y=part["ctr"].tolist(), name=label, boxpoints="all", jitter=0.4, marker_color=SERIES[i % len(SERIES)]
                )
            self.figure.add_shape(
                type="line", x0=0, x1=1, xref="paper", y0=0.5, y1=0.5, line=dict(color=COLORS["worst"], dash="dash")
            )
        self.draw_implausible()

    def draw_implausible(self, k: int = 8) -> None:
        r = self.report
        m = r["measurements"]
        images = np.concatenate([s.images for s in r["samples"].values()])
        idx = np.flatnonzero(~m["plausible"].to_numpy(bool))[:k]
        if not len(idx):
            self.implausible.children = [W.HTML("<div class='msx-caption'>none</div>")]
            return
        caps = [html.escape(f"{m['condition'].iloc[i]}: {m['implausible_reasons'].iloc[i]}") for i in idx]
        self.implausible.children = [thumb_grid(images[idx], caps, width=96)]

    # ------------------------------------------------------------------ inpainting
    def check_inpainting(self):
        """Inpaint reference images with the chosen edit and compare their structures before and after."""
        from ..stress import inpainting_anatomy_check

        name = self.generator.value
        gen = self.session.generators[name]
        if "inpaint" not in gen.capabilities:
            raise CapabilityError(f"{name} cannot inpaint; choose an inpainting generator above.")
        n, edit = int(self.n_inpaint.value), self.edit.value
        ref = self.session.reference
        finding = edit.split(" ", 1)[1]
        if finding in ref.metadata.columns:  # add the finding to images without it
            ref = ref.subset(ref.metadata[finding].to_numpy() == 0)
        images = ref.subset(np.arange(min(n, len(ref))))

        def work(job):
            job.progress(0, 1)
            return inpainting_anatomy_check(gen, images, edit, seed=self.session.seed)

        def done(result):
            self.inpainting = result
            self.draw_inpainting()

        return self.run_job(work, done, label=f"{edit} in {len(images)} reference images with {name}")

    def draw_inpainting(self) -> None:
        r = self.inpainting
        s = r["summary"]
        rows = pd.DataFrame(
            {
                "structure": s["structure"].str.replace("_", " "),
                "Dice outside the mask (95% CI)": [
                    f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in zip(s.dice_outside, s.dice_outside_low, s.dice_outside_high)
                ],
                "Dice inside the mask": [f"{m:.3f}" for m in s["dice_inside"]],
            }
        )
        p = r["provenance"]
        self.inpaint_out.value = html_table(rows) + (
            "<div class='msx-caption'>"
            + html.escape(
                f"{p['edit']} by {p['generator']} in {p['n']} images (regions from {p['regions']}), seed {p['seed']}. "
                "Dice 1 outside the mask: the structures there are segmented exactly as before."
            )
            + "</div>"
        )
