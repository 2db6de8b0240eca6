"""Membership inference section of the Privacy panel: can an attacker tell the training images apart?

:func:`session_membership` runs :func:`medsynth_explore.metrics.membership_inference`
on a session: its training images (members) against its held-out images
(non-members), with the active generator's samples for the distance attack
or the generator itself for the loss attack. :class:`MembershipPanel` shows
the AUC and the true-positive rate at 1% false-positive rate with their
intervals and the ROC curve.
"""

from __future__ import annotations

import html
from typing import Any, Callable

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from ..errors import DataError
from .common import COLORS, BasePanel, metric_label

__all__ = ["MembershipPanel", "session_membership", "roc_points"]


def session_membership(
    session: Any,
    attack: str = "distance",
    generator: str | None = None,
    max_images: int = 512,
    seed: int = 0,
    n_boot: int = 1000,
    callback: Callable[[int, int], Any] | None = None,
) -> dict:
    """Membership inference on a session's training (members) and held-out (non-members) images.

    The distance attack uses the session's features of both sets and of the
    generator's kept samples; the loss attack runs the generator on up to
    ``max_images`` images of each set. The result (see
    :func:`~medsynth_explore.metrics.membership_inference`) gains
    ``generator``, ``train_given`` (False when the session split its
    reference in halves, so "members" are not the generator's training
    images and an AUC near 0.5 is expected) and ``n_synthetic``.
    """
    from ..metrics import membership_inference

    name = generator or session.active
    if name is None:
        raise DataError("no generator is loaded; add one with session.add_generator(...).")
    train, hold = session.privacy_sets()
    if attack == "distance":
        syn = session.synthetic_features(name)
        if len(syn) == 0:
            raise DataError(f"no synthetic images of {name} yet; generate some first (Generate or Live metrics tab).")
        tf, hf = session.privacy_features()
        res = membership_inference(syn, tf, hf, attack="distance", n_boot=n_boot, seed=seed)
        res["n_synthetic"] = int(len(syn))
    else:
        rng = np.random.default_rng(seed)

        def pick(s):
            return s.subset(np.sort(rng.choice(len(s), min(max_images, len(s)), replace=False)))

        res = membership_inference(
            None,
            pick(train),
            pick(hold),
            attack="loss",
            generator=session.generators[name],
            n_boot=n_boot,
            seed=seed,
            callback=callback,
        )
        res["n_synthetic"] = 0
    res["generator"] = name
    res["train_given"] = getattr(session, "_train", None) is not None
    return res


def roc_points(member_scores: Any, non_member_scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates of every threshold (for drawing the ROC curve).

    Examples
    --------
    >>> fpr, tpr = roc_points([2, 1], [0, 1])
    >>> fpr.tolist(), tpr.tolist()
    ([0.0, 0.0, 0.5, 1.0], [0.0, 0.5, 1.0, 1.0])
    """
    m, n = np.sort(np.asarray(member_scores, float)), np.sort(np.asarray(non_member_scores, float))
    thr = np.unique(np.concatenate([m, n]))[::-1]
    tpr = (len(m) - np.searchsorted(m, thr, side="left")) / len(m)
    fpr = (len(n) - np.searchsorted(n, thr, side="left")) / len(n)
    return np.r_[0.0, fpr], np.r_[0.0, tpr]


class MembershipPanel(BasePanel):
    """Membership-inference attack on the active generator (shown inside the Privacy panel).

    Attributes
    ----------
    attack : ipywidgets.Dropdown
        ``"distance"`` (any generator) or ``"loss"`` (diffusion models and VAEs).
    run_button : ipywidgets.Button
    result : dict or None
        The last :func:`session_membership` result.
    figure : plotly FigureWidget
        The attack's ROC curve beside chance.
    """

    title = "Membership inference"
    lane = "membership"

    def __init__(self, session: Any, runner: Any = None, **kwargs: Any) -> None:
        super().__init__(session, runner, **kwargs)
        self.result: dict | None = None
        self.attack = W.Dropdown(
            options=[("distance to the nearest sample", "distance"), ("the model's own loss", "loss")],
            value="distance",
            description="Attack",
            layout=W.Layout(width="340px"),
        )
        self.max_images = W.IntSlider(value=256, min=32, max=1024, step=32, description="Images (loss)")
        self.run_button = W.Button(description="Run attack", icon="user-secret")
        self.run_button.on_click(self.guard(lambda _b: self.run()))
        self.summary = W.HTML()
        self.figure = go.FigureWidget()
        self.figure.update_layout(
            height=320,
            width=420,
            template="plotly_white",
            margin=dict(l=60, r=20, t=30, b=50),
            xaxis_title="false-positive rate",
            yaxis_title="true-positive rate",
            showlegend=False,
        )
        self.children = [
            W.HTML(
                "<div class='msx-caption'>Members are the training images, non-members the held-out ones. "
                "Distance: a member's score is how close the nearest synthetic sample comes. Loss: how well the "
                "model denoises (diffusion) or reconstructs (VAE) it. AUC 0.5 and 1% at 1% FPR: nothing leaks.</div>",
                layout=W.Layout(width="640px"),
            ),
            W.HBox([self.attack, self.max_images, self.run_button]),
            self.job_bar(),
            self.error,
            self.summary,
            self.figure,
        ]

    def run(self):
        """Run the attack in the background and draw it."""
        attack, n, name = self.attack.value, int(self.max_images.value), self.session.active

        def work(job):
            return session_membership(self.session, attack, name, max_images=n, seed=self.session.seed, callback=job.progress)

        def done(result):
            self.result = result
            self.draw()

        return self.run_job(work, done, label=f"{attack} attack on {name}")

    def draw(self) -> None:
        r = self.result
        if r is None:
            return
        key = "mia_auc" if r["attack"] == "distance" else "mia_loss_auc"
        tpr_key = "mia_tpr_at_1pct_fpr" if r["attack"] == "distance" else "mia_loss_tpr_at_1pct_fpr"
        leak = r["auc_low"] > 0.5 or r["tpr_at_1pct_fpr_low"] > 0.01
        color = COLORS["worst"] if leak else COLORS["ok"]
        note = (
            ""
            if r["train_given"]
            else " The session was given no training set: its reference is split in halves, so the 'members' are not "
            "the generator's training images and an AUC near 0.5 is expected. Pass train= and holdout= to Session."
        )
        self.summary.value = (
            f"<div><span class='msx-metric'>{html.escape(metric_label(key, with_direction=False))} "
            f"<b style='color:{color}'>{r['auc']:.3f}</b>"
            f"<span class='msx-caption'>95% CI {r['auc_low']:.3f}–{r['auc_high']:.3f}</span></span>"
            f"<span class='msx-metric'>{html.escape(metric_label(tpr_key, with_direction=False))} "
            f"<b style='color:{color}'>{100 * r['tpr_at_1pct_fpr']:.1f}%</b>"
            f"<span class='msx-caption'>95% CI {100 * r['tpr_at_1pct_fpr_low']:.1f}–"
            f"{100 * r['tpr_at_1pct_fpr_high']:.1f}%</span></span></div>"
            "<div class='msx-caption'>"
            + html.escape(
                f"{r['generator']}: {r['attack']} attack, {r['n_members']} members vs {r['n_non_members']} non-members"
                + (f", {r['n_synthetic']} synthetic samples" if r["n_synthetic"] else "")
                + f", {r['n_boot']} bootstrap resamples.{note}"
            )
            + "</div>"
        )
        fpr, tpr = roc_points(r["member_scores"], r["non_member_scores"])
        with self.figure.batch_update():
            self.figure.data = []
            self.figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color=COLORS["muted"], dash="dash"))
            # plain lists: the notebook's plotly drops figures holding typed (numpy) arrays
            self.figure.add_scatter(
                x=np.asarray(fpr).tolist(), y=np.asarray(tpr).tolist(), mode="lines", line=dict(color=color, width=2)
            )
