"""Privacy panel: how close do synthetic images come to training images?

Shows the nearest-neighbour distances synthetic-to-train against
held-out-to-train (a held-out real image is what "not copied" looks like),
the closest synthetic/training pairs side by side, and the copy rate: the
share of synthetic images closer to a training image than a low quantile of
the held-out distances. The distances come from
:meth:`~medsynth_explore.session.Session.privacy`.
"""

from __future__ import annotations

import html
from typing import Any, Mapping

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from ..errors import DataError
from .common import COLORS, BasePanel, image_widget

__all__ = ["PrivacyPanel", "privacy_summary"]


def privacy_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """The copy rate of a privacy result against what no copying would give, with a binomial test.

    Without copying, a synthetic image falls below the threshold (the
    ``quantile`` of held-out-to-train distances) about as often as a
    held-out image does, i.e. with probability ``quantile``. The one-sided
    binomial p-value says how surprising the observed count is under that
    assumption (the threshold is itself estimated, so treat p as a guide).

    Parameters
    ----------
    result : mapping
        The output of :meth:`Session.privacy` (synthetic_to_train,
        holdout_to_train, threshold, quantile, copy_rate).

    Returns
    -------
    dict
        ``n_close``, ``n``, ``copy_rate``, ``expected``, ``ratio`` (copy rate /
        expected), ``p_value``, ``median_synthetic``, ``median_holdout``,
        ``text`` (one paragraph).

    Examples
    --------
    >>> res = {"synthetic_to_train": np.array([0.1, 2.0, 3.0, 4.0]), "holdout_to_train": np.array([1.0, 2.0, 3.0]),
    ...        "threshold": 1.0, "quantile": 0.01, "copy_rate": 0.25}
    >>> s = privacy_summary(res)
    >>> s["n_close"], s["expected"], round(s["ratio"])
    (1, 0.01, 25)
    """
    from scipy.stats import binomtest

    syn = np.asarray(result["synthetic_to_train"], float)
    hold = np.asarray(result["holdout_to_train"], float)
    q = float(result["quantile"])
    n = int(syn.size)
    if n == 0:
        raise DataError("the privacy result holds no synthetic distances; generate some images first.")
    k = int((syn < float(result["threshold"])).sum())
    rate = k / n
    p = float(binomtest(k, n, q, alternative="greater").pvalue) if 0 < q < 1 else float("nan")
    ratio = rate / q if q > 0 else float("nan")
    text = (f"{k} of {n} synthetic images ({100 * rate:.1f}%) lie closer to a training image than the closest "
            f"{100 * q:g}% of held-out images (distance < {float(result['threshold']):.3g}); without copying about "
            f"{100 * q:g}% would. Copy rate / expected = {ratio:.2f}, one-sided binomial p = {p:.2g}. "
            f"Median nearest-training distance: synthetic {np.median(syn):.3g}, held-out {np.median(hold):.3g}.")
    return {"n_close": k, "n": n, "copy_rate": rate, "expected": q, "ratio": ratio, "p_value": p,
            "median_synthetic": float(np.median(syn)), "median_holdout": float(np.median(hold)), "text": text}


class PrivacyPanel(BasePanel):
    """Nearest-neighbour distance histograms, the closest pairs and the copy rate of the active generator.

    Parameters
    ----------
    session : Session
        Its ``train`` / ``holdout`` sets are used; without them the reference
        is split in halves, which measures closeness to real images rather
        than copying of the generator's own training data (the panel says so).
    runner : JobRunner, optional

    Attributes
    ----------
    quantile : ipywidgets.Dropdown
        Held-out quantile that sets the copy threshold.
    n_pairs : ipywidgets.IntSlider
        Closest pairs shown (up to 8).
    compute_button : ipywidgets.Button
    figure : plotly FigureWidget
        Overlaid histograms and the threshold.
    summary : ipywidgets.HTML
    pairs : ipywidgets.GridBox
        Synthetic image | nearest training image, with the distance.
    result : dict or None
        The last :meth:`Session.privacy` result, with ``generator`` and
        ``synthetic`` (the samples its indices refer to) added.

    Examples
    --------
    >>> panel = PrivacyPanel(session, runner=JobRunner(synchronous=True))  # doctest: +SKIP
    >>> panel.compute_button.click(); panel.result["copy_rate"]  # doctest: +SKIP
    """

    title = "Privacy"
    lane = "privacy"

    def __init__(self, session: Any, runner: Any = None, **kwargs: Any) -> None:
        super().__init__(session, runner, **kwargs)
        self.result: dict | None = None
        self.quantile = W.Dropdown(options=[("0.5%", 0.005), ("1%", 0.01), ("2%", 0.02), ("5%", 0.05)], value=0.01,
                                   description="Threshold", tooltip="quantile of the held-out-to-train distances",
                                   layout=W.Layout(width="220px"))
        self.n_pairs = W.IntSlider(value=6, min=1, max=8, description="Pairs shown")
        self.compute_button = W.Button(description="Compute", button_style="primary", icon="play")
        self.source = W.HTML()
        self.summary = W.HTML()
        self.pairs = W.GridBox(layout=W.Layout(grid_template_columns="repeat(4, 250px)", grid_gap="8px"))
        self.figure = go.FigureWidget()
        self.figure.update_layout(height=320, template="plotly_white", barmode="overlay", margin=dict(l=60, r=20, t=40, b=50),
                                  xaxis_title="distance to the nearest training image (feature space)",
                                  yaxis_title="share of images", legend=dict(orientation="h", y=1.12, x=0))
        self.compute_button.on_click(self.guard(lambda _b: self.compute()))
        self.n_pairs.observe(self.guard(lambda _c: self.draw_pairs()), names="value")
        hint = W.HTML("<div class='msx-caption'>Threshold: a synthetic image closer to a training image than this share of "
                      "held-out real images counts as a possible copy.</div>", layout=W.Layout(width="420px"))
        self.children = [
            W.HBox([self.quantile, self.n_pairs]), hint,
            W.HBox([self.compute_button, self.job_bar()]),
            self.error, self.source, self.summary, self.figure,
            W.HTML("<b>Closest pairs</b> <span class='msx-caption'>(left: synthetic, right: its nearest training image)</span>"),
            self.pairs,
        ]

    def compute(self):
        """Compute the distances of the active generator's samples in the background and draw them."""
        name = self.session.active
        if name is None:
            raise DataError("no generator is loaded; add one with session.add_generator(...).")
        if len(self.session.synthetic.get(name, ())) == 0:
            raise DataError(f"no synthetic images of {name} yet; generate some first (Generate or Live metrics tab).")
        q = float(self.quantile.value)

        def work(job):
            job.progress(0, 1)
            kept = self.session.synthetic[name]  # the images the distances index, whatever is drawn later
            res = self.session.privacy(name, quantile=q)
            job.progress(1, 1)
            return dict(res, synthetic=kept)

        def done(res):
            self.result = dict(res, generator=name)
            self.draw()

        return self.run_job(work, done, label=f"nearest training images of {len(self.session.synthetic[name])} samples")

    def draw(self) -> None:
        """Histograms, summary and pairs of :attr:`result`."""
        res = self.result
        if res is None:
            return
        syn, hold = np.asarray(res["synthetic_to_train"], float), np.asarray(res["holdout_to_train"], float)
        summary = privacy_summary(res)
        given = getattr(self.session, "_train", None) is not None
        train = res["train"]
        self.source.value = ("<div class='msx-caption'>" + (
            f"Training set: the {len(train)} training images given to the session."
            if given else
            f"No training set was given: the reference is split in halves ({len(train)} as 'train'), so this measures "
            "how close samples come to real images, not copying of the generator's own training data. "
            "Pass train= and holdout= to Session to test for copying.") +
            f" Features: {html.escape(str(getattr(self.session.encoder, 'id', '?')))}.</div>")
        flag = summary["ratio"] > 2 and summary["p_value"] < 0.01
        color = COLORS["worst"] if flag else COLORS["ok"]
        self.summary.value = (f"<div><span class='msx-metric'>Copy rate <b style='color:{color}'>{100 * summary['copy_rate']:.1f}%</b></span>"
                              f"<span class='msx-metric'>Expected without copying <b>{100 * summary['expected']:g}%</b></span>"
                              f"<span class='msx-metric'>Binomial p <b>{summary['p_value']:.2g}</b></span></div>"
                              f"<div class='msx-caption'>{html.escape(summary['text'])}</div>")
        edges = np.histogram_bin_edges(np.concatenate([syn, hold]), bins=30)
        bins = dict(start=float(edges[0]), end=float(edges[-1]), size=float(max(edges[1] - edges[0], 1e-12)))
        with self.figure.batch_update():
            self.figure.data = []
            self.figure.layout.shapes = []
            self.figure.layout.annotations = []
            self.figure.add_histogram(x=hold, name=f"held-out → train (n={hold.size})", histnorm="probability", xbins=bins,
                                      marker_color=COLORS["real"], opacity=0.6)
            self.figure.add_histogram(x=syn, name=f"synthetic ({html.escape(str(res['generator']))}) → train (n={syn.size})",
                                      histnorm="probability", xbins=bins, marker_color=COLORS["synthetic"], opacity=0.6)
            t = float(res["threshold"])  # drawn by hand: add_vline fails inside batch_update of a FigureWidget
            self.figure.add_shape(type="line", x0=t, x1=t, xref="x", y0=0, y1=1, yref="paper",
                                  line=dict(color=COLORS["worst"], dash="dash", width=2))
            self.figure.add_annotation(x=t, y=1, xref="x", yref="paper", xanchor="left", yanchor="bottom", showarrow=False,
                                       text=f"threshold ({100 * float(res['quantile']):g}% of held-out)",
                                       font=dict(color=COLORS["worst"]))
        self.draw_pairs()

    def draw_pairs(self) -> None:
        """Thumbnails of the closest synthetic / training pairs with their distances."""
        res = self.result
        if res is None:
            return
        syn_images = res["synthetic"].images
        train_images = res["train"].images
        cells = []
        for j, i, d in res["closest"][: int(self.n_pairs.value)]:
            close = d < float(res["threshold"])
            cap = (f"<div class='msx-caption'>synthetic #{j} ↔ train #{i}<br>distance <b>{d:.3g}</b>"
                   + (f" <span style='color:{COLORS['worst']}'>(below threshold)</span>" if close else "") + "</div>")
            cells.append(W.VBox([W.HBox([image_widget(syn_images[j], 112), image_widget(train_images[i], 112)]), W.HTML(cap)]))
        self.pairs.children = cells
