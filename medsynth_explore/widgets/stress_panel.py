"""Stress test panel: how a classifier's output moves when a generator edits one thing in its input images.

A view over :func:`medsynth_explore.stress_test`: pick a classifier, the
images, an inpainting generator and the edits; the panel shows, per edit,
the mean change of the classifier's score with its bootstrap interval
(beside the change a null edit, the same region regenerated unchanged,
causes) and a few before / after pairs. The embedded demonstration trains two
pneumothorax classifiers on PhantomCXR (one where chest tubes mark
pneumothorax, one where they do not) with
:func:`medsynth_explore.stress.shortcut_demo`.
"""

from __future__ import annotations

import html
from typing import Any, Mapping

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from ..errors import DataError
from .common import COLORS, BasePanel, html_table, image_widget

__all__ = ["StressPanel", "stress_table_html", "EDIT_CHOICES", "DEMO"]

#: Edits offered, in the order shown.
EDIT_CHOICES = (
    "remove chest tube",
    "remove pneumothorax",
    "add pneumothorax",
    "add effusion",
    "remove effusion",
    "add nodule",
    "remove nodule",
    "add cardiomegaly",
    "remove cardiomegaly",
)
#: Prefix of the choices the embedded demonstration provides.
DEMO = "demo: "
_DEMO_IMAGES = "demo: pneumothorax patients with a chest tube"
_REFERENCE = "the session's reference images"


def stress_table_html(table) -> str:
    """The per-edit table of a stress test: scores before / after, effect with interval, null shift, flips.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"edit": ["remove chest tube"], "n": [10], "before": [0.5], "after": [0.4], "effect": [-0.1],
    ...                   "effect_low": [-0.15], "effect_high": [-0.05], "null_shift": [0.0], "flipped": [0.2]})
    >>> "-0.1 [-0.15, -0.05]" in stress_table_html(t)
    True
    """
    import pandas as pd

    rows = []
    for _, r in table.iterrows():
        if not r.get("n"):
            rows.append({"edit": r["edit"], "pairs": 0, "before": "", "after": "", "effect (95% CI)": "no image to edit"})
            continue
        rows.append(
            {
                "edit": r["edit"],
                "pairs": int(r["n"]),
                "score before": f"{r['before']:.3g}",
                "score after": f"{r['after']:.3g}",
                "effect (95% CI)": f"{r['effect']:.3g} [{r['effect_low']:.3g}, {r['effect_high']:.3g}]",
                "null edit shift": f"{r['null_shift']:.3g}",
                "flipped": f"{100 * r['flipped']:.0f}%",
            }
        )
    return html_table(pd.DataFrame(rows))


class StressPanel(BasePanel):
    """Counterfactual stress test of a classifier (see the module notes).

    Parameters
    ----------
    session : Session
    runner : JobRunner, optional
    classifiers : mapping name -> classifier, optional
        Your own classifiers (anything :func:`~medsynth_explore.stress.as_scorer`
        takes: a callable, a torch module, a TorchScript path loaded with
        ``allow_pickle``), offered beside the demonstration ones and the
        session's reference classifier.

    Attributes
    ----------
    classifier, images, generator, edits, n_images : widgets
    run_button : ipywidgets.Button
    result : StressResult or None
        The last result (its ``table``, ``pairs`` and ``provenance``).
    figure : plotly FigureWidget
        Effect per edit with its interval, beside the null-edit shift.
    """

    title = "Stress test"
    lane = "stress"

    def __init__(self, session: Any, runner: Any = None, classifiers: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(session, runner, **kwargs)
        self.result = None
        self._own = dict(classifiers or {})
        self._demo = None
        self._loaded: dict[str, Any] = {}
        names = [*self._own, f"{DEMO}trained with the tube shortcut", f"{DEMO}trained without it"]
        if getattr(session, "classifier", None) is not None:
            names.append("reference classifier: p_pneumothorax")
        self.classifier = W.Dropdown(options=names, value=names[0], description="Classifier", layout=W.Layout(width="420px"))
        self.images = W.Dropdown(
            options=[_DEMO_IMAGES, _REFERENCE], value=_DEMO_IMAGES, description="Images", layout=W.Layout(width="420px")
        )
        self.generator = W.Dropdown(description="Inpainter", layout=W.Layout(width="420px"))
        self.edits = W.SelectMultiple(
            options=EDIT_CHOICES, value=EDIT_CHOICES[:2], description="Edits", rows=5, layout=W.Layout(width="420px")
        )
        self.n_images = W.IntSlider(value=32, min=4, max=96, step=4, description="Images")
        self.run_button = W.Button(description="Run stress test", button_style="primary", icon="play")
        self.run_button.on_click(self.guard(lambda _b: self.run()))
        self.summary = W.HTML()
        self.table = W.HTML()
        self.source = W.HTML()
        self.examples = W.VBox()
        self.figure = go.FigureWidget()
        self.figure.update_layout(
            height=320,
            template="plotly_white",
            margin=dict(l=60, r=20, t=30, b=60),
            yaxis_title="change of the classifier's score",
            barmode="group",
            legend=dict(orientation="h", y=-0.25, x=0),
        )
        self._refresh_generators()
        self.subscribe("generators", lambda **_: self._refresh_generators())
        hint = W.HTML(
            "<div class='msx-caption'>Each edit regenerates one region of every image under changed conditions (a "
            "finding added or removed, a chest tube removed) and keeps the rest exactly. <b>Effect</b>: the edited "
            "image's score minus the score after a null edit (the same region regenerated unchanged), per image.</div>",
            layout=W.Layout(width="640px"),
        )
        self.children = [
            self.classifier,
            self.images,
            self.generator,
            self.edits,
            self.n_images,
            hint,
            W.HBox([self.run_button, self.job_bar()]),
            self.error,
            self.summary,
            self.table,
            self.figure,
            self.source,
            W.HTML("<b>Examples</b> <span class='msx-caption'>(before | after the edit | null edit | region)</span>"),
            self.examples,
        ]

    # ------------------------------------------------------------------ choices
    def _refresh_generators(self) -> None:
        """Inpainting generators of the session, and the physics simulator (exact counterfactuals) always."""
        gens = self.session.generators
        names = [n for n, g in gens.items() if "inpaint" in g.capabilities]
        physics = [n for n in names if gens[n].family == "physics"]
        if not physics:
            names.append("phantomcxr-physics")
            physics = ["phantomcxr-physics"]
        keep = self.generator.value if self.generator.value in names else None
        self.generator.options = names
        self.generator.value = keep or physics[0]

    def _generator(self, name: str):
        if name in self.session.generators:
            return self.session.generators[name]
        if name not in self._loaded:
            from ..generators import load_generator

            self._loaded[name] = load_generator(name)
        return self._loaded[name]

    def demo(self):
        """The demonstration classifiers and images (trained on first use, then kept)."""
        if self._demo is None:
            from ..stress import shortcut_demo

            self._demo = shortcut_demo()
        return self._demo

    def _classifier(self, name: str) -> tuple[Any, Any]:
        if name in self._own:
            return self._own[name], None
        if name.startswith(DEMO):
            return self.demo().classifiers[name[len(DEMO) :]], None
        if name.startswith("reference classifier"):
            return self.session.classifier, "p_pneumothorax"
        raise DataError(f"unknown classifier {name!r}.")

    def _images(self, n: int):
        if self.images.value == _DEMO_IMAGES:
            demo = self.demo().images
            return demo.subset(np.arange(min(n, len(demo))))
        ref = self.session.reference
        return ref.subset(np.arange(min(n, len(ref))))

    # ------------------------------------------------------------------ running
    def run(self):
        """Run the stress test in the background and draw it."""
        from ..stress import stress_test

        edits = list(self.edits.value)
        if not edits:
            raise DataError("choose at least one edit.")
        name, n, gen_name = self.classifier.value, int(self.n_images.value), self.generator.value

        def work(job):
            classifier, target = self._classifier(name)
            images = self._images(n)
            return stress_test(
                classifier, self._generator(gen_name), images, edits=edits, target=target, callback=job.progress, n_boot=1000
            )

        def done(result):
            self.result = result
            self.result.provenance["classifier"] = name
            self.draw()

        return self.run_job(work, done, label=f"{len(edits)} edit(s) of {n} images with {gen_name}")

    def draw(self) -> None:
        """Table, chart, provenance and examples of :attr:`result`."""
        r = self.result
        if r is None:
            return
        t = r.table
        done = t[t["n"].fillna(0) > 0]
        self.table.value = stress_table_html(t)
        lines = []
        for _, row in done.iterrows():
            moves = row["effect_low"] > 0 or row["effect_high"] < 0
            color = COLORS["worst"] if moves else COLORS["ok"]
            verdict = "moves the score" if moves else "does not move the score (interval holds 0)"
            lines.append(
                f"<div><b>{html.escape(row['edit'])}</b>: <span style='color:{color}'>{verdict}</span>, "
                f"effect {row['effect']:+.3f} [{row['effect_low']:+.3f}, {row['effect_high']:+.3f}]</div>"
            )
        self.summary.value = "".join(lines)
        p = r.provenance
        self.source.value = (
            "<div class='msx-caption'>"
            + html.escape(
                f"Classifier: {p.get('classifier', '?')}. Inpainter: {p['generator']} ({p['family']}, sha256 "
                f"{str(p['checkpoint_sha256'])[:12]}), seed {p['seed']}; regions from {p['regions']}; "
                f"{p['n_boot']} bootstrap resamples, {100 * p['level']:.0f}% intervals; images {p['images_content_hash'][:12]}."
            )
            + "</div>"
        )
        with self.figure.batch_update():
            self.figure.data = []
            x = done["edit"].tolist()
            self.figure.add_bar(
                x=x,
                y=done["effect"].tolist(),  # plain lists: the notebook's plotly drops figures holding typed arrays
                name="effect (edited - null edit)",
                marker_color=COLORS["synthetic"],
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=(done["effect_high"] - done["effect"]).tolist(),
                    arrayminus=(done["effect"] - done["effect_low"]).tolist(),
                ),
            )
            self.figure.add_bar(x=x, y=done["null_shift"].tolist(), name="null edit shift", marker_color=COLORS["muted"])
        self.draw_examples()

    def draw_examples(self, per_edit: int = 4) -> None:
        """Before / after / null / region thumbnails of the first pairs of every edit."""
        r = self.result
        rows = []
        for label, ex in r.examples.items():
            sub = r.pairs[r.pairs["edit"] == label]
            cells = []
            for i in range(min(per_edit, len(ex["before"]))):
                s0, s1 = float(sub["before"].iloc[i]), float(sub["after"].iloc[i])
                cap = W.HTML(f"<div class='msx-caption'>score {s0:.2f} → {s1:.2f}</div>")
                thumbs = [image_widget(ex[k][i], 72) for k in ("before", "after", "null")]
                thumbs.append(image_widget(ex["region"][i].astype(np.float32)[None], 72))
                cells.append(W.VBox([W.HBox(thumbs), cap]))
            rows.append(W.VBox([W.HTML(f"<b>{html.escape(label)}</b>"), W.HBox(cells, layout=W.Layout(flex_flow="row wrap"))]))
        self.examples.children = rows
