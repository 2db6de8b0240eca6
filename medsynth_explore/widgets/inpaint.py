"""Inpaint / edit panel: paint a mask, say what to put there, see before / after / difference."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W
import numpy as np

from .canvas import MaskCanvas
from .common import BasePanel, html_table, image_widget

FINDINGS = ("cardiomegaly", "nodule", "effusion", "pneumothorax")


class InpaintPanel(BasePanel):
    """Add or remove a lesion in a chosen image without disturbing the rest.

    Pick a real or synthetic image, paint the region to regenerate (brush,
    erase, clear, undo), choose the conditions of the new content (findings
    on or off, a prompt for text models), and run. The result shows before,
    after and their difference, PSNR and SSIM *outside* the mask (the context
    that should be kept) and how the reference classifier's view changed.

    Attributes
    ----------
    last_result : InpaintResult or None
    """

    title = "Inpaint"
    lane = "inpaint"

    def __init__(self, session: Any, runner: Any = None, **kwargs: Any) -> None:
        super().__init__(session, runner, **kwargs)
        self.last_result = None
        self.source = W.ToggleButtons(
            options=["real", "synthetic"], value="real", description="Image", style={"button_width": "80px"}
        )
        self.index = W.BoundedIntText(
            value=0, min=0, max=max(len(session.reference) - 1, 0), description="Index", layout=W.Layout(width="170px")
        )
        self.canvas = MaskCanvas(brush=3, display_size=320)
        self.brush = W.IntSlider(value=3, min=1, max=12, description="Brush (px)")
        self.mode = W.ToggleButtons(options=["paint", "erase"], value="paint", style={"button_width": "64px"})
        self.clear_button = W.Button(description="Clear", icon="eraser", layout=W.Layout(width="90px"))
        self.undo_button = W.Button(description="Undo", icon="undo", layout=W.Layout(width="90px"))
        self.findings = {
            f: W.Dropdown(
                options=["keep as drawn", "add", "remove"],
                value="keep as drawn",
                description=f,
                layout=W.Layout(width="260px"),
                style={"description_width": "100px"},
            )
            for f in FINDINGS
        }
        self.prompt = W.Text(placeholder="optional prompt for text models", description="Prompt", layout=W.Layout(width="98%"))
        self.seed = W.IntText(value=0, description="Seed", layout=W.Layout(width="170px"))
        self.run_button = W.Button(description="Inpaint", button_style="primary", icon="magic")
        self.result_box = W.VBox()
        self.brush.observe(lambda ch: setattr(self.canvas, "brush", ch["new"]), names="value")
        self.mode.observe(lambda ch: setattr(self.canvas, "mode", ch["new"]), names="value")
        self.clear_button.on_click(self.guard(lambda _b: self.canvas.clear()))
        self.undo_button.on_click(self.guard(lambda _b: self.canvas.undo()))
        self.source.observe(self.guard(lambda _c: self.load_image()), names="value")
        self.index.observe(self.guard(lambda _c: self.load_image()), names="value")
        self.run_button.on_click(self.guard(lambda _b: self.inpaint()))
        self.load_image()
        left = W.VBox(
            [
                W.HBox([self.source, self.index]),
                self.canvas,
                W.HBox([self.brush, self.mode]),
                W.HBox([self.clear_button, self.undo_button]),
            ]
        )
        right = W.VBox(
            [
                W.HTML("<b>What to put in the masked region</b>"),
                *self.findings.values(),
                self.prompt,
                self.seed,
                W.HBox([self.run_button, self.job_bar()]),
            ]
        )
        self.children = [W.HBox([left, right], layout=W.Layout(grid_gap="16px")), self.error, self.result_box]

    def _set(self):
        data = self.session.reference if self.source.value == "real" else self.session.synthetic.get(self.session.active)
        if data is None or len(data) == 0:
            raise ValueError("no synthetic images yet: generate some in the Generate panel, or pick a real image.")
        return data

    def load_image(self) -> None:
        """Show the chosen image on the canvas (the mask starts empty)."""
        data = self._set()
        self.index.max = len(data) - 1
        self.canvas.set_image(data.images[min(int(self.index.value), len(data) - 1)])

    def image(self) -> np.ndarray:
        """The chosen image, (C, H, W)."""
        data = self._set()
        return data.images[min(int(self.index.value), len(data) - 1)]

    def conditions(self) -> dict:
        """Conditions for the new content: the image's own labels changed by the add/remove choices."""
        data = self._set()
        row = data.metadata.iloc[min(int(self.index.value), len(data) - 1)]
        schema = self.session.generator().conditions
        cond: dict = {}
        if "age" in schema and "age" in row and row["age"] == row["age"]:
            lo, hi = schema["age"].range
            cond["age"] = float(np.clip(row["age"], lo, hi))
        if "sex" in schema and "sex" in row and str(row["sex"]) in (schema["sex"].values or ()):
            cond["sex"] = str(row["sex"])
        if "findings" in schema:
            present = [f for f in schema["findings"].names if f in row and row[f] == 1]
            for f, dd in self.findings.items():
                if dd.value == "add" and f not in present:
                    present.append(f)
                elif dd.value == "remove" and f in present:
                    present.remove(f)
            cond["findings"] = present
        return cond

    def inpaint(self):
        """Run inpainting on the painted mask in the background."""
        image, mask, cond = self.image(), self.canvas.mask_array, self.conditions()
        name = self.session.active
        kw: dict = {"conditions": cond, "seed": int(self.seed.value)}
        if "text" in self.session.generator(name).capabilities and self.prompt.value.strip():
            kw["prompt"] = self.prompt.value.strip()
        if not mask.any():
            raise ValueError("the mask is empty: paint the region to regenerate on the image first.")

        def work(job):
            job.progress(0, 1)
            res = self.session.inpaint(image, mask, generator=name, **kw)
            job.progress(1, 1)
            return res

        return self.run_job(work, self.show, label=f"inpainting with {name}")

    def show(self, res) -> None:
        """Before / after / difference and the measured change."""
        self.last_result = res
        ims = W.HBox(
            [
                W.VBox([W.HTML("<b>before</b>"), image_widget(res.before, 200)]),
                W.VBox([W.HTML("<b>after</b>"), image_widget(res.after, 200)]),
                W.VBox([W.HTML("<b>after − before</b>"), image_widget(res.difference, 200, cmap="diverging")]),
            ]
        )
        facts = (
            f"<div class='msx-metric'>PSNR outside mask<b>{res.psnr_outside:.1f} dB</b></div>"
            f"<div class='msx-metric'>SSIM outside mask<b>{res.ssim_outside:.3f}</b></div>"
            f"<div class='msx-metric'>mask area<b>{100 * res.mask.mean():.1f}%</b></div>"
        )
        table = ""
        if res.probability_change is not None:
            import pandas as pd

            df = pd.DataFrame(
                {
                    "output": res.probs_before.index,
                    "before": res.probs_before.values,
                    "after": res.probs_after.values,
                    "change": res.probability_change.values,
                }
            )
            table = "<b>Reference classifier</b>" + html_table(df)
        elif self.session.classifier_error:
            table = f"<span class='msx-caption'>{html.escape(self.session.classifier_error)}</span>"
        self.result_box.children = [ims, W.HTML(facts + table)]
        self.status.value = "<span class='msx-caption'>done</span>"
