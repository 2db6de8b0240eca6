"""Inpaint / edit panel: paint a mask at the image's own resolution, say what to put there, see before / after / difference."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W
import numpy as np
import pandas as pd

from .canvas import MaskCanvas
from .common import BasePanel, ImageViewer, html_table, image_widget

#: Findings offered when the active generator has no findings condition (PhantomCXR's).
FINDINGS = ("cardiomegaly", "nodule", "effusion", "pneumothorax")
_CHOICES = ["keep as drawn", "add", "remove"]


def _resized(image: np.ndarray, shape: tuple) -> np.ndarray:
    """``image`` (C, H, W) resized to ``shape`` (C, H, W): antialiased bilinear, channels averaged or repeated."""
    import torch
    import torch.nn.functional as F

    c, h, w = shape
    x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None]
    if x.shape[1] != c:
        x = x.mean(1, keepdim=True).expand(-1, c, -1, -1)
    if tuple(x.shape[-2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return x[0].clamp(0, 1).numpy().astype(np.float32)


class InpaintPanel(BasePanel):
    """Add or remove a lesion in a chosen image without disturbing the rest.

    Pick a real or synthetic image, paint the region to regenerate (brush,
    erase, clear, undo; zoom in for detail), choose the conditions of the new
    content (the active model's findings on or off, a prompt for text models),
    and run. The result shows before, after and their difference, PSNR and
    SSIM *outside* the mask (the context that should be kept) and how the
    reference classifier's view changed.

    Native resolution: the canvas holds the image at its own resolution and
    the mask is painted pixel for pixel; a real image of another size than the
    model's is resized to the model's resolution first (the panel says so).
    Inpainting, PSNR / SSIM and the difference are computed at that size;
    "full size" opens before, after or difference at their own resolution.
    Models that sample in steps report each denoising step and cancel between steps.

    Attributes
    ----------
    last_result : InpaintResult or None
    viewer : ImageViewer
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
        self.zoom = W.FloatLogSlider(value=1.0, base=2, min=-2, max=3, step=0.25, description="Zoom", readout_format=".2f")
        self.mode = W.ToggleButtons(options=["paint", "erase"], value="paint", style={"button_width": "64px"})
        self.clear_button = W.Button(description="Clear", icon="eraser", layout=W.Layout(width="90px"))
        self.undo_button = W.Button(description="Undo", icon="undo", layout=W.Layout(width="90px"))
        self.findings: dict = {}
        self.findings_box = W.VBox()
        self.resize_note = W.HTML("")
        self.prompt = W.Text(placeholder="optional prompt for text models", description="Prompt", layout=W.Layout(width="98%"))
        self.seed = W.IntText(value=0, description="Seed", layout=W.Layout(width="170px"))
        self.run_button = W.Button(description="Inpaint", button_style="primary", icon="magic")
        self.result_box = W.VBox()
        self.viewer = ImageViewer()
        self.brush.observe(lambda ch: setattr(self.canvas, "brush", ch["new"]), names="value")
        self.zoom.observe(lambda ch: setattr(self.canvas, "zoom", ch["new"]), names="value")
        self.mode.observe(lambda ch: setattr(self.canvas, "mode", ch["new"]), names="value")
        self.clear_button.on_click(self.guard(lambda _b: self.canvas.clear()))
        self.undo_button.on_click(self.guard(lambda _b: self.canvas.undo()))
        self.source.observe(self.guard(lambda _c: self.load_image()), names="value")
        self.index.observe(self.guard(lambda _c: self.load_image()), names="value")
        self.run_button.on_click(self.guard(lambda _b: self.inpaint()))
        self.subscribe("active", lambda **_: self.guard(self._on_generator)())
        self._build_findings()
        self.load_image()
        left = W.VBox(
            [
                W.HBox([self.source, self.index]),
                self.canvas,
                self.resize_note,
                W.HBox([self.brush, self.mode]),
                W.HBox([self.zoom, self.clear_button, self.undo_button]),
            ]
        )
        right = W.VBox(
            [
                W.HTML("<b>What to put in the masked region</b>"),
                self.findings_box,
                self.prompt,
                self.seed,
                W.HBox([self.run_button, self.job_bar()]),
            ]
        )
        self.children = [W.HBox([left, right], layout=W.Layout(grid_gap="16px")), self.error, self.result_box]

    # ------------------------------------------------------------------ controls
    def _finding_names(self) -> tuple:
        schema = self.session.generator().conditions
        return tuple(schema.finding_names) if "findings" in schema else FINDINGS

    def _build_findings(self) -> None:
        """One add / remove / keep choice per finding of the active model (14 for a CheXpert model)."""
        self.findings = {
            f: W.Dropdown(
                options=_CHOICES,
                value="keep as drawn",
                description=f,
                layout=W.Layout(width="300px"),
                style={"description_width": "150px"},
            )
            for f in self._finding_names()
        }
        self.findings_box.children = list(self.findings.values())

    def _on_generator(self) -> None:
        self._build_findings()
        self.load_image()

    def _set(self):
        data = self.session.reference if self.source.value == "real" else self.session.synthetic.get(self.session.active)
        if data is None or len(data) == 0:
            raise ValueError("no synthetic images yet: generate some in the Generate panel, or pick a real image.")
        return data

    def load_image(self) -> None:
        """Show the chosen image on the canvas at the model's resolution (the mask starts empty)."""
        data = self._set()
        self.index.max = len(data) - 1
        image = self.image()
        self.canvas.set_image(image)
        h, w = image.shape[-2:]
        self.brush.max = max(12, w // 8)
        self.brush.value = min(self.brush.max, max(1, round(3 * w / 64)))
        self.canvas.brush = self.brush.value
        own = data.images.shape[-2:]
        self.resize_note.value = (
            f"<span class='msx-caption'>{w}×{h} px"
            + (f" (resized from {own[1]}×{own[0]} to the model's resolution)" if tuple(own) != (h, w) else "")
            + "</span>"
        )

    def image(self) -> np.ndarray:
        """The chosen image, (C, H, W), at the active model's resolution."""
        data = self._set()
        img = data.images[min(int(self.index.value), len(data) - 1)]
        shape = tuple(self.session.generator().image_shape)
        return img if img.shape == shape else _resized(img, shape)

    def conditions(self) -> dict:
        """Conditions for the new content: the image's own labels changed by the add/remove choices."""
        data = self._set()
        row = data.metadata.iloc[min(int(self.index.value), len(data) - 1)]
        schema = self.session.generator().conditions
        cond: dict = {}
        if "age" in schema and "age" in row and pd.notna(row["age"]):
            lo, hi = schema["age"].range
            cond["age"] = float(np.clip(row["age"], lo, hi))
        if "sex" in schema and "sex" in row and str(row["sex"]) in (schema["sex"].values or ()):
            cond["sex"] = str(row["sex"])
        if "findings" in schema:
            present = [f for f in schema["findings"].names if f in row and _is_one(row[f])]
            for f, dd in self.findings.items():
                if dd.value == "add" and f not in present:
                    present.append(f)
                elif dd.value == "remove" and f in present:
                    present.remove(f)
            cond["findings"] = present
        return cond

    # ------------------------------------------------------------------ work
    def inpaint(self):
        """Run inpainting on the painted mask in the background."""
        image, mask, cond = self.image(), self.canvas.mask_array, self.conditions()
        name = self.session.active
        gen = self.session.generator(name)
        kw: dict = {"conditions": cond, "seed": int(self.seed.value)}
        if "text" in gen.capabilities and self.prompt.value.strip():
            kw["prompt"] = self.prompt.value.strip()
        if not mask.any():
            raise ValueError("the mask is empty: paint the region to regenerate on the image first.")

        def work(job):
            job.progress(0, 1000)
            if "steps" in gen.capabilities:  # progress and Cancel at every denoising step
                kw["step_callback"] = lambda info: job.progress(int(round(1000 * info.fraction)), 1000)
                kw["callback"] = lambda d, t: not job.cancelled
            res = self.session.inpaint(image, mask, generator=name, **kw)
            job.progress(1000, 1000)
            return res

        return self.run_job(work, self.show, label=f"inpainting with {name}")

    def show(self, res) -> None:
        """Before / after / difference and the measured change."""
        self.last_result = res
        self.viewer.hide()
        views = (("before", res.before, None), ("after", res.after, None), ("after − before", res.difference, "diverging"))
        cells = []
        for title, image, cmap in views:
            h, w = image.shape[-2:]
            button = W.Button(description=f"full size {w}×{h}", icon="expand", layout=W.Layout(width="200px", height="24px"))
            button.add_class("msx-fullsize")
            button.on_click(lambda _b, t=title, im=image, c=cmap: self.viewer.show(im, t, cmap=c))
            shown = image_widget(image, 200, cmap=cmap)
            shown.layout.border = "1px solid #ddd"
            cells.append(W.VBox([W.HTML(f"<b>{title}</b>"), shown, button]))
        ims = W.HBox(cells)
        facts = (
            f"<div class='msx-metric'>PSNR outside mask<b>{res.psnr_outside:.1f} dB</b></div>"
            f"<div class='msx-metric'>SSIM outside mask<b>{res.ssim_outside:.3f}</b></div>"
            f"<div class='msx-metric'>mask area<b>{100 * res.mask.mean():.1f}%</b></div>"
            f"<div class='msx-metric'>computed at<b>{res.mask.shape[1]}×{res.mask.shape[0]} px</b></div>"
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
        # the full-size view opens under the images
        self.result_box.children = [W.VBox([ims, self.viewer]), W.HTML(facts + table)]
        self.status.value = "<span class='msx-caption'>done</span>"


def _is_one(value) -> bool:
    try:
        return bool(value == 1)
    except TypeError:
        return False
