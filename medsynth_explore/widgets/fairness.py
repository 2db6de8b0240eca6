"""Fairness panel: one metric per subgroup (sex, age bins, site, findings and their intersections).

The numbers come from :meth:`~medsynth_explore.session.Session.fairness`
(bootstrap intervals, worst and best group, gap); this module only chooses
the grouping columns it offers and draws the result.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..errors import DataError
from ..metrics.registry import higher_is_better
from .common import COLORS, BasePanel, html_table, metric_label

__all__ = ["FairnessPanel", "fairness_columns", "shared_columns", "gap_summary", "METRICS"]

#: Metrics the panel offers; their labels and directions come from the metric registry.
METRICS = ("coverage", "recall", "precision", "density", "fid", "kid")

# columns that identify images or record how they were made: never subgroups
_NOT_GROUPS = {
    "patient_id",
    "report",
    "prompt",
    "seed",
    "image_seed",
    "anatomy_seed",
    "generator",
    "checkpoint_sha256",
    "sampler",
    "steps",
    "guidance",
    "index",
    "path",
    "file",
    "sha256",
}


def fairness_columns(real_meta: pd.DataFrame, synthetic_meta: pd.DataFrame | None = None, max_levels: int = 12) -> list[str]:
    """Metadata columns a fairness breakdown can group by.

    A column qualifies when both sides have it (only the real side when
    ``synthetic_meta`` is None or has no columns yet) and it has between 2
    and ``max_levels`` distinct values on the real side. ``age`` always
    qualifies (the session bins it into age groups); identifiers, report
    text and sampler settings never do.

    Parameters
    ----------
    real_meta, synthetic_meta : DataFrame
        Metadata of the reference and of the synthetic images.
    max_levels : int
        Most distinct values a grouping column may have.

    Returns
    -------
    list of str
        In the order of the real metadata's columns.

    Examples
    --------
    >>> real = pd.DataFrame({"age": [30, 50, 70], "sex": list("FMF"), "patient_id": ["a", "b", "c"], "site": list("AAA")})
    >>> syn = pd.DataFrame({"age": [40, 60], "sex": list("MF")})
    >>> fairness_columns(real, syn)
    ['age', 'sex']
    >>> fairness_columns(real)
    ['age', 'sex']
    """
    both = synthetic_meta is not None and len(synthetic_meta.columns) > 0
    out = []
    for col in real_meta.columns:
        if col in _NOT_GROUPS or (both and col not in synthetic_meta.columns):
            continue
        if col in ("age", "age_group"):
            out.append(col)
            continue
        levels = real_meta[col].dropna().nunique()
        if 2 <= levels <= max_levels:
            out.append(col)
    return out


def shared_columns(real_meta: pd.DataFrame, synthetic_meta: pd.DataFrame | None = None, max_levels: int = 12) -> list[str]:
    """:func:`fairness_columns` of both sides harmonised (:func:`medsynth_explore.data.harmonise`).

    Real and synthetic sets name findings and subgroups differently (a
    CheXpert reference's ``pleural_effusion`` and ``sex``, a PhantomCXR
    generator's ``effusion``); harmonised, they share the vocabulary's
    columns. A column harmonise derived from a raw column that is offered
    itself on both sides (PhantomCXR's ``effusion`` -> ``pleural_effusion``)
    is left out, so one finding is offered once.

    Examples
    --------
    >>> real = pd.DataFrame({"age": [30, 50, 70, 40], "Sex": ["Male", "Female"] * 2, "Pleural Effusion": [1.0, 0.0, -1.0, 1.0]})
    >>> syn = pd.DataFrame({"age": [40, 60], "sex": ["M", "F"], "effusion": [1, 0]})
    >>> shared_columns(real, syn)
    ['age', 'sex', 'pleural_effusion']
    >>> shared_columns(syn, syn)
    ['age', 'sex', 'effusion']
    """
    from ..data.labels import harmonise, vocabulary_twins

    real_h = harmonise(real_meta)
    syn_h = harmonise(synthetic_meta) if synthetic_meta is not None and len(synthetic_meta.columns) else synthetic_meta
    cols = fairness_columns(real_h, syn_h, max_levels)
    twins = vocabulary_twins(real_h)
    if syn_h is not None and len(syn_h.columns):
        syn_twins = vocabulary_twins(syn_h)
        twins = {k: v for k, v in twins.items() if syn_twins.get(k) == v}
    return [c for c in cols if not (c in twins and any(part in cols for part in twins[c].split("+")))]


def gap_summary(table: pd.DataFrame) -> dict[str, Any]:
    """Worst and best group, difference and ratio of one fairness table, in words and numbers.

    Parameters
    ----------
    table : DataFrame
        The result of :meth:`Session.fairness` (columns group, metric, value;
        ``attrs`` difference, ratio, worst, best).

    Returns
    -------
    dict
        ``worst``, ``best``, ``difference`` (max - min), ``ratio`` (min / max),
        ``lower_is_better`` and ``text`` (one sentence).

    Examples
    --------
    >>> t = pd.DataFrame({"group": ["F", "M"], "metric": "coverage", "value": [0.8, 0.6]})
    >>> t.attrs.update(difference=0.2, ratio=0.75, worst="M", best="F")
    >>> gap_summary(t)["text"]
    'Worst group: M (coverage 0.6); best: F (0.8). Gap: difference 0.2, ratio min/max 0.75.'
    """
    metric = str(table["metric"].iloc[0])
    values = table.set_index("group")["value"]
    worst, best = table.attrs["worst"], table.attrs["best"]
    diff, ratio = float(table.attrs["difference"]), float(table.attrs["ratio"])
    lower = higher_is_better(metric) is False
    text = (
        f"Worst group: {worst} ({metric} {values[worst]:.3g}); best: {best} ({values[best]:.3g}). "
        f"Gap: difference {diff:.3g}, ratio min/max {ratio:.3g}."
    )
    return {"worst": worst, "best": best, "difference": diff, "ratio": ratio, "lower_is_better": lower, "text": text}


class FairnessPanel(BasePanel):
    """Every metric by subgroup, with bootstrap intervals, the worst group and the gap.

    Choose grouping columns (several give intersections, e.g. ``sex & age``)
    and a metric, then Compute: the work runs in the background through
    :meth:`Session.fairness`; the chart shows one bar per subgroup with its
    95% bootstrap interval, the worst group in a distinct colour, and the
    metric over all images as a dashed line.

    Parameters
    ----------
    session : Session
    runner : JobRunner, optional

    Attributes
    ----------
    by : ipywidgets.SelectMultiple
        Grouping columns.
    metric : ipywidgets.Dropdown
    n_boot : ipywidgets.IntSlider
        Bootstrap resamples per group.
    min_group : ipywidgets.IntSlider
        Smallest group size (on each side) that gets a bar.
    compute_button : ipywidgets.Button
    figure : plotly FigureWidget
    summary : ipywidgets.HTML
        Worst / best group and the gap, in words.
    table : ipywidgets.HTML
    result : DataFrame or None
        The last table from :meth:`Session.fairness`.
    overall : float or None
        The metric over all images of the last computation.

    Examples
    --------
    >>> panel = FairnessPanel(session, runner=JobRunner(synchronous=True))  # doctest: +SKIP
    >>> panel.by.value = ("sex",); panel.compute_button.click()  # doctest: +SKIP
    >>> panel.result  # doctest: +SKIP
    """

    title = "Fairness"
    lane = "fairness"

    def __init__(self, session: Any, runner: Any = None, **kwargs: Any) -> None:
        super().__init__(session, runner, **kwargs)
        self.result: pd.DataFrame | None = None
        self.overall: float | None = None
        self.by = W.SelectMultiple(options=[], rows=6, description="Group by", layout=W.Layout(width="320px"))
        self.metric = W.Dropdown(
            options=[(metric_label(key), key) for key in METRICS],
            value="coverage",
            description="Metric",
            layout=W.Layout(width="320px"),
        )
        self.n_boot = W.IntSlider(
            value=100,
            min=10,
            max=500,
            step=10,
            description="Bootstrap",
            tooltip="bootstrap resamples per group (for the 95% interval)",
        )
        self.min_group = W.IntSlider(
            value=8,
            min=2,
            max=100,
            description="Min. group",
            tooltip="smallest number of images on each side for a group to be shown",
        )
        self.compute_button = W.Button(description="Compute", button_style="primary", icon="play")
        self.summary = W.HTML()
        self.table = W.HTML()
        self.figure = go.FigureWidget()
        self.figure.update_layout(
            height=400,
            template="plotly_white",
            margin=dict(l=60, r=20, t=50, b=110),
            barmode="overlay",
            legend=dict(orientation="h", y=-0.3, x=0),
            xaxis_title="subgroup",
            yaxis_title="metric",
        )
        self.compute_button.on_click(self.guard(lambda _b: self.compute()))
        self.subscribe("samples", self._on_session_change)
        self.subscribe("active", self._on_session_change)
        self.refresh_options()
        hint = W.HTML(
            "<div class='msx-caption'>Choose one column, or several for intersections (Ctrl/Cmd-click). "
            "Age is grouped in bins. Bars: the metric per subgroup; whiskers: its 95% bootstrap interval; "
            "red: the worst group; dashed: all images.</div>",
            layout=W.Layout(width="360px"),
        )
        self.children = [
            W.HBox([W.VBox([self.by, hint]), W.VBox([self.metric, self.n_boot, self.min_group])]),
            W.HBox([self.compute_button, self.job_bar()]),
            self.error,
            self.summary,
            self.figure,
            self.table,
        ]

    # ------------------------------------------------------------------ options
    def _on_session_change(self, **_: Any) -> None:
        try:
            self.refresh_options()
        except Exception as exc:  # never break the code that emitted the event
            self.show_error(exc)

    def refresh_options(self) -> list[str]:
        """Offer the grouping columns both sides have now (the reference's alone before any samples)."""
        name = self.session.active
        syn = self.session.synthetic.get(name) if name is not None else None
        syn_meta = syn.metadata if syn is not None and len(syn) else None
        cols = shared_columns(self.session.reference.metadata, syn_meta)
        keep = tuple(v for v in self.by.value if v in cols)
        if not keep and "sex" in cols:
            keep = ("sex",)
        self.by.options = [("age (bins)" if c == "age" else c, c) for c in cols]
        self.by.value = keep
        return cols

    # ------------------------------------------------------------------ work
    def compute(self):
        """Compute the chosen metric per subgroup in the background and draw it."""
        name = self.session.active
        if name is None:
            raise DataError("no generator is loaded; add one with session.add_generator(...).")
        if len(self.session.synthetic.get(name, ())) == 0:
            raise DataError(f"no synthetic images of {name} yet; generate some first (Generate or Live metrics tab).")
        by = list(self.by.value)
        if not by:
            raise DataError("choose at least one column to group by.")
        metric, n_boot, min_group = self.metric.value, int(self.n_boot.value), int(self.min_group.value)

        def work(job):
            job.progress(0, 2)
            table = self.session.fairness(by=by, generator=name, metric=metric, n_boot=n_boot, min_group=min_group)
            job.progress(1, 2)
            overall = self.session.metrics(name, [metric])[metric]
            job.progress(2, 2)
            return table, overall

        def done(res):
            self.result, self.overall = res
            self.draw()
            self.status.value = (
                f"<span class='msx-caption'>{html.escape(name)}: {len(self.result)} subgroups of "
                f"{html.escape(' & '.join(by))}, {n_boot} bootstrap resamples</span>"
            )

        return self.run_job(work, done, label=f"{metric} by {' & '.join(by)}")

    def draw(self) -> None:
        """Draw :attr:`result`: bars with intervals, worst group highlighted, gap in words, table."""
        t = self.result
        if t is None or t.empty:
            return
        metric = str(t["metric"].iloc[0])
        label = metric_label(metric, with_direction=False)
        gap = gap_summary(t)
        groups = t["group"].astype(str).tolist()
        worst_mask = t["worst"].to_numpy(bool)
        with self.figure.batch_update():
            self.figure.data = []
            self.figure.layout.annotations = []
            self.figure.layout.shapes = []
            for mask, name, color in (
                (~worst_mask, "subgroup", COLORS["synthetic"]),
                (worst_mask, "worst subgroup", COLORS["worst"]),
            ):
                if not mask.any():
                    continue
                sub = t[mask]
                self.figure.add_bar(
                    x=sub["group"].astype(str),
                    y=sub["value"],
                    name=name,
                    marker_color=color,
                    customdata=np.stack([sub["ci_low"], sub["ci_high"], sub["n_real"], sub["n_synthetic"]], -1),
                    hovertemplate="%{x}<br>" + label + " %{y:.3g} [%{customdata[0]:.3g}, %{customdata[1]:.3g}]"
                    "<br>%{customdata[2]} real, %{customdata[3]} synthetic<extra></extra>",
                )
            # the interval is drawn as it is, centred on its own midpoint: a bootstrap interval of a
            # k-NN metric need not contain the point estimate, and bars anchored on the value would hide that
            mid, half = (t["ci_low"] + t["ci_high"]) / 2, (t["ci_high"] - t["ci_low"]) / 2
            self.figure.add_scatter(
                x=groups,
                y=mid,
                mode="markers",
                name="95% bootstrap interval",
                marker=dict(size=1, color="#333"),
                error_y=dict(type="data", array=half, color="#333", thickness=1.5, width=8),
                customdata=np.stack([t["ci_low"], t["ci_high"]], -1),
                hovertemplate="%{x}: 95% interval [%{customdata[0]:.3g}, %{customdata[1]:.3g}]<extra></extra>",
            )
            if self.overall is not None and np.isfinite(self.overall):
                self.figure.add_scatter(
                    x=[groups[0], groups[-1]],
                    y=[self.overall, self.overall],
                    mode="lines",
                    name="all images",
                    line=dict(color=COLORS["muted"], dash="dash"),
                    hoverinfo="skip",
                )
            w = t[worst_mask].iloc[0]
            self.figure.add_annotation(
                x=str(w["group"]),
                y=float(max(w["ci_high"], w["value"])),
                text=f"worst: {w['group']}",
                showarrow=True,
                arrowhead=2,
                ay=-30,
                font=dict(color=COLORS["worst"]),
            )
            self.figure.update_layout(
                xaxis=dict(title="subgroup", type="category", categoryorder="array", categoryarray=groups),
                yaxis_title=metric_label(metric),
                title=dict(text=f"{label} by subgroup, 95% bootstrap intervals", x=0, font=dict(size=14)),
            )
        self.summary.value = f"<div style='margin:6px 0'><b>{html.escape(gap['text'])}</b></div>"
        shown = t[["group", "value", "ci_low", "ci_high", "n_real", "n_synthetic"]].rename(
            columns={"value": label, "ci_low": "95% low", "ci_high": "95% high", "n_real": "real", "n_synthetic": "synthetic"}
        )
        self.table.value = html_table(shown)
