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
    """The copy rate of a privacy result against the held-out rate, with Fisher's exact test.

    Without copying, a synthetic image falls below the threshold (the
    ``quantile`` of held-out-to-train distances) about as often as a
    held-out image does. The threshold is estimated from the held-out
    images themselves, so the comparison is made against the *observed*
    held-out rate with a one-sided Fisher exact test on the 2 x 2 table
    (below / not below threshold, synthetic / held-out), which accounts for
    how few held-out images a low quantile rests on.

    Parameters
    ----------
    result : mapping
        The output of :meth:`Session.privacy` (synthetic_to_train,
        holdout_to_train, threshold, quantile).

    Returns
    -------
    dict
        ``n_close`` and ``n`` (synthetic images below the threshold, and in
        all), ``copy_rate``, ``holdout_close`` and ``n_holdout``,
        ``holdout_rate``, ``ratio`` (copy rate / held-out rate; NaN when no
        held-out image is below), ``p_value``, ``flag`` (ratio above 2 and
        p below 0.01), ``few_holdout`` (fewer than 5 held-out images below:
        the threshold is coarse), ``median_synthetic``, ``median_holdout``
        and ``text`` (one paragraph).

    Examples
    --------
    >>> res = {"synthetic_to_train": np.r_[np.zeros(30), np.ones(70)], "holdout_to_train": np.linspace(0.5, 2, 100),
    ...        "threshold": 0.6, "quantile": 0.05}
    >>> s = privacy_summary(res)
    >>> s["n_close"], s["holdout_close"], s["flag"]
    (30, 7, True)
    """
    from scipy.stats import fisher_exact

    syn = np.asarray(result["synthetic_to_train"], float)
    hold = np.asarray(result["holdout_to_train"], float)
    t, q = float(result["threshold"]), float(result["quantile"])
    n, h = int(syn.size), int(hold.size)
    if n == 0:
        raise DataError("the privacy result holds no synthetic distances; generate some images first.")
    if h == 0:
        raise DataError("the privacy result holds no held-out distances; give the session a held-out set.")
    k, m = int((syn < t).sum()), int((hold < t).sum())
    rate, hrate = k / n, m / h
    p = float(fisher_exact([[k, n - k], [m, h - m]], alternative="greater").pvalue)
    ratio = rate / hrate if m else float("nan")
    flag = bool(p < 0.01 and (m == 0 or ratio > 2))
    few = m < 5
    text = (
        f"{k} of {n} synthetic images ({100 * rate:.1f}%) lie closer to a training image than the "
        f"{100 * q:g}% quantile of held-out distances (distance < {t:.3g}); {m} of {h} held-out images "
        f"({100 * hrate:.1f}%) do. Fisher exact test (one-sided): p = {p:.2g}. "
        f"Median nearest-training distance: synthetic {np.median(syn):.3g}, held-out {np.median(hold):.3g}."
    )
    if few:
        text += (
            f" The threshold rests on only {m} held-out image(s): use a larger quantile or more held-out images "
            "for a steadier copy rate."
        )
    return {
        "n_close": k,
        "n": n,
        "copy_rate": rate,
        "holdout_close": m,
        "n_holdout": h,
        "holdout_rate": hrate,
        "ratio": ratio,
        "p_value": p,
        "flag": flag,
        "few_holdout": few,
        "median_synthetic": float(np.median(syn)),
        "median_holdout": float(np.median(hold)),
        "text": text,
    }


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
    membership : MembershipPanel
        The membership-inference attack (AUC, TPR at 1% FPR, ROC curve).
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
        self.quantile = W.Dropdown(
            options=[("0.5%", 0.005), ("1%", 0.01), ("2%", 0.02), ("5%", 0.05)],
            value=0.01,
            description="Threshold",
            tooltip="quantile of the held-out-to-train distances",
            layout=W.Layout(width="220px"),
        )
        self.n_pairs = W.IntSlider(value=6, min=1, max=8, description="Pairs shown")
        self.compute_button = W.Button(description="Compute", button_style="primary", icon="play")
        self.source = W.HTML()
        self.summary = W.HTML()
        self.pairs = W.GridBox(layout=W.Layout(grid_template_columns="repeat(4, 250px)", grid_gap="8px"))
        from .membership import MembershipPanel

        self.membership = MembershipPanel(session, self.runner)  # its own lane: runs beside the distance histograms
        self.figure = go.FigureWidget()
        self.figure.update_layout(
            height=360,
            template="plotly_white",
            barmode="overlay",
            margin=dict(l=60, r=20, t=30, b=100),
            xaxis_title="distance to the nearest training image (feature space)",
            yaxis_title="share of images",
            legend=dict(orientation="h", y=-0.3, x=0),
        )
        self.compute_button.on_click(self.guard(lambda _b: self.compute()))
        self.n_pairs.observe(self.guard(lambda _c: self.draw_pairs()), names="value")
        hint = W.HTML(
            "<div class='msx-caption'>Threshold: a synthetic image closer to a training image than this share of "
            "held-out real images counts as a possible copy.</div>",
            layout=W.Layout(width="420px"),
        )
        self.children = [
            W.HBox([self.quantile, self.n_pairs]),
            hint,
            W.HBox([self.compute_button, self.job_bar()]),
            self.error,
            self.source,
            self.summary,
            self.figure,
            W.HTML("<b>Closest pairs</b> <span class='msx-caption'>(left: synthetic, right: its nearest training image)</span>"),
            self.pairs,
            W.HTML("<hr><b>Membership inference</b>"),
            self.membership,
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
        self.source.value = (
            "<div class='msx-caption'>"
            + (
                f"Training set: the {len(train)} training images given to the session."
                if given
                else f"No training set was given: the reference is split in halves ({len(train)} as 'train'), so this measures "
                "how close samples come to real images, not copying of the generator's own training data. "
                "Pass train= and holdout= to Session to test for copying."
            )
            + f" Features: {html.escape(str(getattr(self.session.encoder, 'id', '?')))}.</div>"
        )
        color = COLORS["worst"] if summary["flag"] else COLORS["ok"]
        verdict = (
            "More synthetic images sit this close to training images than held-out real images do: inspect the closest pairs."
            if summary["flag"]
            else "No excess of near-copies over held-out real images at this threshold."
        )
        self.summary.value = (
            f"<div><span class='msx-metric'>Copy rate <b style='color:{color}'>{100 * summary['copy_rate']:.1f}%</b></span>"
            f"<span class='msx-metric'>Held-out rate (no copying) <b>{100 * summary['holdout_rate']:.1f}%</b></span>"
            f"<span class='msx-metric'>Fisher p (one-sided) <b>{summary['p_value']:.2g}</b></span></div>"
            f"<div style='color:{color}'>{html.escape(verdict)}</div>"
            f"<div class='msx-caption'>{html.escape(summary['text'])}</div>"
        )
        edges = np.histogram_bin_edges(np.concatenate([syn, hold]), bins=30)
        bins = dict(start=float(edges[0]), end=float(edges[-1]), size=float(max(edges[1] - edges[0], 1e-12)))
        with self.figure.batch_update():
            self.figure.data = []
            self.figure.layout.shapes = []
            self.figure.layout.annotations = []
            self.figure.add_histogram(  # plain lists: the notebook's plotly drops figures holding typed arrays
                x=hold.tolist(),
                name=f"held-out → train (n={hold.size})",
                histnorm="probability",
                xbins=bins,
                marker_color=COLORS["real"],
                opacity=0.6,
            )
            self.figure.add_histogram(
                x=syn.tolist(),
                name=f"synthetic ({html.escape(str(res['generator']))}) → train (n={syn.size})",
                histnorm="probability",
                xbins=bins,
                marker_color=COLORS["synthetic"],
                opacity=0.6,
            )
            t = float(res["threshold"])  # drawn by hand: add_vline fails inside batch_update of a FigureWidget
            self.figure.add_shape(
                type="line",
                x0=t,
                x1=t,
                xref="x",
                y0=0,
                y1=1,
                yref="paper",
                line=dict(color=COLORS["worst"], dash="dash", width=2),
            )
            self.figure.add_annotation(
                x=t,
                y=1,
                xref="x",
                yref="paper",
                xanchor="left",
                yanchor="bottom",
                showarrow=False,
                text=f"threshold ({100 * float(res['quantile']):g}% of held-out)",
                font=dict(color=COLORS["worst"]),
            )
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
            cap = (
                f"<div class='msx-caption'>synthetic #{j} ↔ train #{i}<br>distance <b>{d:.3g}</b>"
                + (f" <span style='color:{COLORS['worst']}'>(below threshold)</span>" if close else "")
                + "</div>"
            )
            cells.append(W.VBox([W.HBox([image_widget(syn_images[j], 112), image_widget(train_images[i], 112)]), W.HTML(cap)]))
        self.pairs.children = cells
