"""Turing test panel: a reader tells real from synthetic images, one at a time.

The study itself (seeded draw and order, answer files per reader, scores
with Wilson intervals) is :class:`~medsynth_explore.turing.TuringStudy`; this
panel shows the images, takes the answers and draws the results. Results per
subgroup use :func:`turing_report`, which bins age like the fairness panel.
"""

from __future__ import annotations

import html
from typing import Any, Sequence

import ipywidgets as W
import numpy as np
import pandas as pd

from ..errors import DataError
from ..turing import TuringStudy, score_answers
from .common import COLORS, BasePanel, html_table, png_bytes

__all__ = ["TuringPanel", "turing_report", "subgroup_table"]

_GROUP_COLUMNS = ("sex", "age_group", "site", "cardiomegaly", "nodule", "effusion", "pneumothorax")


def turing_report(answers: pd.DataFrame, columns: Sequence[str] = _GROUP_COLUMNS, max_levels: int = 8) -> pd.DataFrame:
    """Scores of a reader's answers, overall and per subgroup, with age in bins.

    Parameters
    ----------
    answers : DataFrame
        Answer records (``TuringStudy.answers`` or :func:`~medsynth_explore.turing.load_answers`):
        ``truth``, ``answer`` and metadata columns.
    columns : list of str
        Candidate subgroup columns (``age_group`` is made from ``age``);
        those present with 2 to ``max_levels`` distinct values are used.
    max_levels : int

    Returns
    -------
    DataFrame
        As :func:`~medsynth_explore.turing.score_answers`: group, measure,
        value, ci_low, ci_high, n.

    Examples
    --------
    >>> a = pd.DataFrame({"truth": ["real", "synthetic"] * 4, "answer": ["real"] * 8, "sex": list("FFMMFFMM"),
    ...                   "age": [30, 30, 30, 30, 70, 70, 70, 70]})
    >>> r = turing_report(a)
    >>> sorted(set(r.group))
    ['age_group=18-39', 'age_group=60-79', 'overall', 'sex=F', 'sex=M']
    >>> float(r.set_index(["group", "measure"]).loc[("overall", "specificity"), "value"])
    1.0
    """
    from ..metrics.subgroups import age_group

    df = pd.DataFrame(answers)
    if "age" in df.columns and "age_group" not in df.columns:
        df["age_group"] = age_group(df["age"]).astype(str).to_numpy()
    by = [c for c in columns if c in df.columns and 2 <= df[c].nunique(dropna=False) <= max_levels]
    return score_answers(df, by=by)


def subgroup_table(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per group, one column per measure, cells ``"0.62 [0.41, 0.80], n=13"``.

    Examples
    --------
    >>> s = pd.DataFrame({"group": ["overall"] * 3, "measure": ["accuracy", "sensitivity", "specificity"],
    ...                   "value": [0.5, 0.25, 0.75], "ci_low": [0.2, 0.05, 0.3], "ci_high": [0.8, 0.7, 0.95], "n": [8, 4, 4]})
    >>> subgroup_table(s).iloc[0].tolist()
    ['overall', '0.50 [0.20, 0.80], n=8', '0.25 [0.05, 0.70], n=4', '0.75 [0.30, 0.95], n=4']
    """

    def cell(r) -> str:
        if r["n"] == 0 or not np.isfinite(r["value"]):
            return "n=0"
        return f"{r['value']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}], n={int(r['n'])}"

    s = scores.assign(cell=scores.apply(cell, axis=1))
    order = list(dict.fromkeys(s["group"]))
    wide = s.pivot(index="group", columns="measure", values="cell").reindex(order)
    wide = wide[[m for m in ("accuracy", "sensitivity", "specificity") if m in wide.columns]]
    return wide.reset_index()


class TuringPanel(BasePanel):
    """A visual Turing test over the reference and the active generator's samples.

    Start draws samples from the active generator in the background if it
    has fewer than the study needs, then builds a :class:`TuringStudy`
    (seeded: every reader with the same seed sees the same sequence). The
    reader answers "Real" or "Synthetic" (optionally with a confidence);
    answers are written as they are given to ``<folder>/<reader>.jsonl``
    (kept in memory when the folder is empty), and a reader who comes back
    with the same name, folder and seed resumes where they stopped, provided
    the session still holds the same samples. At the end the panel shows
    accuracy, sensitivity (synthetic called synthetic) and specificity (real
    called real) with Wilson 95% intervals, overall and per subgroup.

    Parameters
    ----------
    session : Session
    runner : JobRunner, optional

    Attributes
    ----------
    reader, out_dir : ipywidgets.Text
    n : ipywidgets.IntSlider
        Images per source (real and synthetic).
    seed : ipywidgets.IntText
    ask_confidence : ipywidgets.Checkbox
    confidence : ipywidgets.FloatSlider
    start_button, real_button, synthetic_button : ipywidgets.Button
    image : ipywidgets.Image
    position : ipywidgets.HTML
        "Image k of n".
    results : ipywidgets.HTML
    study : TuringStudy or None
    scores : DataFrame or None
        :func:`turing_report` of the finished study.

    Examples
    --------
    >>> panel = TuringPanel(session, runner=JobRunner(synchronous=True))  # doctest: +SKIP
    >>> panel.reader.value = "ana"; panel.start_button.click()  # doctest: +SKIP
    >>> panel.real_button.click()  # doctest: +SKIP
    """

    title = "Turing test"
    lane = "turing"
    display_px = 384

    def __init__(self, session: Any, runner: Any = None, **kwargs: Any) -> None:
        super().__init__(session, runner, **kwargs)
        self.study: TuringStudy | None = None
        self.scores: pd.DataFrame | None = None
        self.reader = W.Text(value="reader", description="Reader", placeholder="your name (file name of your answers)")
        self.out_dir = W.Text(value="turing_answers", description="Save to", placeholder="folder; empty keeps answers in memory")
        self.n = W.IntSlider(value=10, min=1, max=200, description="Per source", tooltip="images of each kind (real, synthetic)")
        self.seed = W.IntText(value=0, description="Seed", layout=W.Layout(width="160px"))
        self.ask_confidence = W.Checkbox(value=False, description="Ask for confidence", indent=False)
        self.confidence = W.FloatSlider(
            value=0.75,
            min=0.5,
            max=1.0,
            step=0.05,
            description="Confidence",
            readout_format=".2f",
            tooltip="0.5 = guessing, 1 = certain",
            layout=W.Layout(display="none"),
        )
        self.start_button = W.Button(description="Start", button_style="primary", icon="play")
        self.real_button = W.Button(description="Real", icon="user", disabled=True, layout=W.Layout(width="140px", height="40px"))
        self.synthetic_button = W.Button(
            description="Synthetic", icon="cogs", disabled=True, layout=W.Layout(width="140px", height="40px")
        )
        self.image = W.Image(
            format="png", layout=W.Layout(width=f"{self.display_px}px", height=f"{self.display_px}px", border="1px solid #ddd")
        )
        self.position = W.HTML()
        self.results = W.HTML()
        self.ask_confidence.observe(
            lambda ch: setattr(self.confidence.layout, "display", "" if ch["new"] else "none"), names="value"
        )
        self.start_button.on_click(self.guard(lambda _b: self.start()))
        self.real_button.on_click(self.guard(lambda _b: self.answer("real")))
        self.synthetic_button.on_click(self.guard(lambda _b: self.answer("synthetic")))
        setup = W.VBox(
            [
                W.HBox([self.reader, self.out_dir]),
                W.HBox([self.n, self.seed, self.ask_confidence]),
                W.HBox([self.start_button, self.job_bar()]),
            ]
        )
        reading = W.HBox(
            [
                self.image,
                W.VBox(
                    [
                        self.position,
                        W.HBox([self.real_button, self.synthetic_button]),
                        self.confidence,
                        W.HTML("<div class='msx-caption'>Is this image a real radiograph or a synthetic one?</div>"),
                    ],
                    layout=W.Layout(margin="0 0 0 16px"),
                ),
            ]
        )
        self.children = [setup, self.error, reading, self.results]

    # ------------------------------------------------------------------ study
    def start(self):
        """Build the study (drawing samples first, in the background, if the generator has too few)."""
        name = self.session.active
        if name is None:
            raise DataError("no generator is loaded; add one with session.add_generator(...).")
        reader = self.reader.value.strip()
        if not reader:
            raise DataError("enter a reader name first: answers are saved under it.")
        n, seed = int(self.n.value), int(self.seed.value)
        out_dir = self.out_dir.value.strip() or None
        need = n - len(self.session.synthetic.get(name, ()))
        self.study, self.scores = None, None
        self.results.value = ""
        self._set_buttons(False)

        def work(job):
            if need > 0:  # distinct seed stream from what the Generate panel draws by default
                self.session.generate(need, generator=name, seed=1_000_000 + seed, callback=job.progress)
            return TuringStudy(
                self.session.reference, self.session.synthetic[name], n=n, seed=seed, reader=reader, out_dir=out_dir
            )

        def done(study):
            self.study = study
            where = f"answers saved to {html.escape(str(study.path))}" if study.path else "answers kept in memory (no folder)"
            resumed = f"; resuming after {study.position} earlier answers" if study.position else ""
            self.status.value = (
                f"<span class='msx-caption'>{len(study)} images ({html.escape(name)} vs reference); {where}{resumed}</span>"
            )
            self.show_current()

        label = f"drawing {need} samples from {name}" if need > 0 else "preparing the study"
        return self.run_job(work, done, label=label)

    def answer(self, label: str) -> dict:
        """Record ``label`` ("real" or "synthetic") for the current image and show the next one."""
        if self.study is None:
            raise DataError("press Start first.")
        conf = float(self.confidence.value) if self.ask_confidence.value else None
        record = self.study.answer(label, confidence=conf)
        self.show_current()
        return record

    def show_current(self) -> None:
        """Show the current image and the position, or the results when the study is finished."""
        study = self.study
        if study is None:
            return
        if study.finished:
            self._set_buttons(False)
            self.image.value = b""
            self.position.value = f"<b>Done: {len(study)} of {len(study)}</b>"
            self.show_results()
            return
        img = study.current_image()
        scale = max(1, self.display_px // max(img.shape[-1], 1))
        self.image.value = png_bytes(img, scale=scale)
        self.position.value = f"<b>Image {study.position + 1} of {len(study)}</b>"
        self._set_buttons(True)

    def show_results(self) -> pd.DataFrame:
        """Accuracy, sensitivity and specificity with 95% intervals, overall and per subgroup."""
        if self.study is None or not self.study.answers:
            raise DataError("no answers yet.")
        scores = turing_report(pd.DataFrame(self.study.answers))
        self.scores = scores
        overall = scores[scores.group == "overall"].set_index("measure")
        hints = {"accuracy": "0.5 = cannot tell", "sensitivity": "synthetic called synthetic", "specificity": "real called real"}
        boxes = []
        for m in ("accuracy", "sensitivity", "specificity"):
            r = overall.loc[m]
            val = "–" if r["n"] == 0 else f"{r['value']:.2f}"
            ci = "" if r["n"] == 0 else f"95% CI {r['ci_low']:.2f}–{r['ci_high']:.2f}, n={int(r['n'])}"
            boxes.append(
                f"<div class='msx-metric'>{m.capitalize()} <span class='msx-caption'>({hints[m]})</span>"
                f"<b>{val}</b><span class='msx-caption'>{ci}</span></div>"
            )
        lo, hi = overall.loc["accuracy", ["ci_low", "ci_high"]]
        if lo > 0.5:
            verdict = f"<span style='color:{COLORS['ok']}'>This reader tells real from synthetic better than chance.</span>"
        elif hi < 0.5:
            verdict = (
                f"<span style='color:{COLORS['worst']}'>Below chance: this reader systematically swaps real and synthetic.</span>"
            )
        else:
            verdict = "The interval includes 0.5: no evidence that this reader tells them apart."
        saved = (
            f"Answers of {html.escape(self.study.reader)} are in {html.escape(str(self.study.path))}; pool several readers with "
            "<code>load_answers(folder)</code> and <code>score_answers</code>."
            if self.study.path
            else ""
        )
        self.results.value = (
            "<h4>Results</h4>"
            + "".join(boxes)
            + f"<div>{verdict}</div>"
            + "<h4>Per subgroup</h4>"
            + html_table(subgroup_table(scores))
            + f"<div class='msx-caption'>{saved}</div>"
        )
        return scores

    def _set_buttons(self, enabled: bool) -> None:
        self.real_button.disabled = not enabled
        self.synthetic_button.disabled = not enabled
