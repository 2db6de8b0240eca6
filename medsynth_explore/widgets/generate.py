"""Generate panel: condition controls built from the model's schema, a grid of results, each viewable at full size."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W
import numpy as np
import pandas as pd

from ..session import describe_samples
from .common import BasePanel, ImageViewer, png_bytes, thumb_grid

ANY = "any"


class GeneratePanel(BasePanel):
    """Steer a generator with its conditions and see what it makes.

    Controls are built from the active generator's condition schema: a slider
    per continuous condition (with an "any" box: unset conditions are drawn
    from the training distribution), toggle buttons per categorical one, a
    checkbox per finding, a prompt box for text models, and seed, number of
    images, steps, guidance and per-condition guidance (the diffusion model's
    age) where the model has them, starting at the card's sampler defaults. Each result shows its
    requested conditions, what the reference classifier sees and CLIPScore.

    Native resolution: thumbnails are shrunk in Python before they are sent;
    "full size" under a thumbnail opens it at its own resolution (with zoom)
    in :attr:`viewer`. Models that sample in steps (diffusers pipelines, MONAI
    bundles) report every denoising step: the progress bar moves within a
    batch, :attr:`preview` shows the batch's current state when the model has
    one, and Cancel stops between two steps.

    Attributes
    ----------
    last_samples : ImageSet or None
    last_table : DataFrame or None
        :func:`~medsynth_explore.session.describe_samples` of the last result.
    viewer : ImageViewer
        The full-size view.
    steps_seen : int
        Denoising steps reported during the last run (0 for models without steps).
    """

    title = "Generate"
    lane = "generate"

    def __init__(self, session: Any, runner: Any = None, n: int = 8, **kwargs: Any) -> None:
        super().__init__(session, runner, **kwargs)
        self.last_samples = None
        self.last_table = None
        self.generator_select = W.Dropdown(description="Generator", options=list(session.generators), value=session.active)
        self.n = W.IntSlider(value=n, min=1, max=32, description="Images")
        self.seed = W.IntText(value=0, description="Seed", layout=W.Layout(width="180px"))
        self.steps = W.IntSlider(value=20, min=2, max=100, description="Steps")
        self.guidance = W.FloatSlider(value=2.0, min=0.0, max=10.0, step=0.25, description="Guidance")
        self.prompt = W.Textarea(
            placeholder="free text, e.g. 'Small left pleural effusion.'",
            description="Prompt",
            layout=W.Layout(width="98%", height="48px"),
        )
        self.generate_button = W.Button(description="Generate", button_style="primary", icon="play")
        self.generate_button.on_click(self.guard(lambda _b: self.generate()))
        self.grid = W.VBox()
        self.viewer = ImageViewer()
        self.preview = W.Image(format="png", layout=W.Layout(width="96px", height="96px", display="none"))
        self.preview_label = W.HTML("")
        self.steps_seen = 0
        self.size_note = W.HTML("")
        self.condition_box = W.VBox()
        self.controls: dict[str, Any] = {}
        self.condition_guidance: dict[str, Any] = {}
        self.generator_select.observe(self.guard(self._on_generator), names="value")
        self.subscribe("generators", lambda names: setattr(self.generator_select, "options", names))
        self._build_controls()
        self.children = [
            W.HBox([self.generator_select, self.seed, self.n]),
            self.condition_box,
            W.HBox([self.generate_button, self.job_bar(), self.preview, self.preview_label]),
            self.error,
            self.size_note,
            self.viewer,  # above the grid, so that what "full size" opens is in view
            self.grid,
        ]

    # ------------------------------------------------------------------ controls
    def _on_generator(self, change: dict) -> None:
        self.session.set_active(change["new"])
        self._build_controls()

    def _build_controls(self) -> None:
        gen = self.session.generator()
        schema, caps = gen.conditions, gen.capabilities
        rows, self.controls = [], {}
        for c in schema:
            if c.kind == "continuous":
                lo, hi = c.range
                slider = W.FloatSlider(
                    value=round((lo + hi) / 2),
                    min=lo,
                    max=hi,
                    step=1.0,
                    description=c.name.capitalize(),
                    readout_format=".0f",
                    disabled=True,
                )
                free = W.Checkbox(value=True, description=ANY, indent=False, layout=W.Layout(width="70px"))
                free.observe(lambda ch, s=slider: setattr(s, "disabled", ch["new"]), names="value")
                self.controls[c.name] = (slider, free)
                rows.append(W.HBox([slider, free]))
            elif c.kind == "categorical":
                tb = W.ToggleButtons(
                    options=[ANY, *c.values], value=ANY, description=c.name.capitalize(), style={"button_width": "60px"}
                )
                self.controls[c.name] = tb
                rows.append(tb)
            elif c.kind == "findings":
                boxes = {f: W.Checkbox(value=False, description=f, indent=False, layout=W.Layout(width="130px")) for f in c.names}
                free = W.Checkbox(value=False, description="draw from data", indent=False, layout=W.Layout(width="130px"))
                for b in boxes.values():
                    free.observe(lambda ch, b=b: setattr(b, "disabled", ch["new"]), names="value")
                self.controls[c.name] = (boxes, free)
                wrap = W.Layout(flex_flow="row wrap")  # 14 CheXpert findings wrap instead of running off the panel
                rows.append(W.HBox([W.Label("Findings", layout=W.Layout(width="90px")), *boxes.values(), free], layout=wrap))
            elif c.kind == "text":
                self.controls[c.name] = self.prompt
        if "text" in caps and self.prompt not in rows:
            rows.append(self.prompt)
        extra = []
        sampler = gen.card.get("sampler_defaults") or {}
        if "steps" in caps:
            self.steps.value = int(sampler.get("steps", self.steps.value))
            extra.append(self.steps)
        if "guidance" in caps:
            self.guidance.value = float(sampler.get("guidance", self.guidance.value))
            extra.append(self.guidance)
        # models that can guide single conditions (the diffusion model) get one slider per condition
        current = getattr(gen, "condition_guidance", None) or {}
        self.condition_guidance = {
            k: W.FloatSlider(
                value=float(current.get(k, 0.0)),
                min=0.0,
                max=10.0,
                step=0.5,
                description=f"Guide {k}",
                style={"description_width": "initial"},
                layout=W.Layout(width="270px"),
                tooltip=f"extra guidance for {k} alone (one more network pass a step; 0 = off)",
            )
            for k in getattr(gen, "guidable_conditions", [])
        }
        if extra:
            rows.append(W.HBox(extra))
        if self.condition_guidance:
            rows.append(W.HBox(list(self.condition_guidance.values())))
        self.condition_box.children = rows
        _c, h, w = gen.image_shape
        self.size_note.value = (
            f"<span class='msx-caption'>{html.escape(gen.name)} makes {w}×{h} px images; thumbnails are shrunk, "
            "“full size” shows every pixel.</span>"
        )

    def conditions(self) -> dict:
        """The conditions the controls ask for (unset ones left out)."""
        out: dict = {}
        for name, ctl in self.controls.items():
            if isinstance(ctl, tuple) and isinstance(ctl[0], dict):  # findings
                boxes, free = ctl
                if not free.value:
                    out[name] = [f for f, b in boxes.items() if b.value]
            elif isinstance(ctl, tuple):  # continuous
                slider, free = ctl
                if not free.value:
                    out[name] = float(slider.value)
            elif isinstance(ctl, W.ToggleButtons):
                if ctl.value != ANY:
                    out[name] = ctl.value
        return out

    def request(self) -> dict:
        """Keyword arguments of the next ``Generator.sample`` call."""
        gen = self.session.generator()
        kw: dict = {"conditions": self.conditions() or None, "seed": int(self.seed.value)}
        if "text" in gen.capabilities and self.prompt.value.strip():
            kw["prompt"] = self.prompt.value.strip()
        if "steps" in gen.capabilities:
            kw["steps"] = int(self.steps.value)
        if "guidance" in gen.capabilities:
            kw["guidance"] = float(self.guidance.value)
        return kw

    def condition_guidance_request(self) -> dict | None:
        """Per-condition guidance the sliders ask for (None when the model has none)."""
        if not self.condition_guidance:
            return None
        return {k: float(s.value) for k, s in self.condition_guidance.items()}

    # ------------------------------------------------------------------ work
    def generate(self):
        """Draw images with the current controls in the background; a newer click supersedes."""
        kw, n, name = self.request(), int(self.n.value), self.session.active
        gen = self.session.generator(name)
        gen.conditions.validate(kw["conditions"] or {})  # errors show before any work starts
        per_condition = self.condition_guidance_request()

        stepwise = "steps" in gen.capabilities
        self.steps_seen = 0
        job_ref: list = [None]

        def on_step(info):
            self.steps_seen += 1
            if info.preview is not None:
                self.preview.value = png_bytes(info.preview[0], max_side=96)
                self.preview.layout.display = "block"
                self.preview_label.value = (
                    f"<span class='msx-caption'>step {info.step}/{info.steps}, "
                    f"images {info.start + 1}-{info.stop} of {info.total}</span>"
                )
            return job_ref[0].progress(int(round(1000 * info.fraction)), 1000)

        def work(job):
            job_ref[0] = job
            if per_condition is not None:
                gen.condition_guidance = per_condition
            if stepwise:  # the fine progress comes from each denoising step; the callback only checks for Cancel
                samples = gen.sample(n, callback=lambda d, t: not job.cancelled, step_callback=on_step, **kw)
            else:
                samples = gen.sample(n, callback=job.progress, **kw)
            job.progress(n, n)
            table = describe_samples(self.session, samples)
            return samples, table

        def done(result):
            samples, table = result
            self.preview.layout.display = "none"
            self.preview_label.value = ""
            self.session.add_samples(samples, name)
            self.show(samples, table)
            self.status.value = f"<span class='msx-caption'>{len(samples)} images from {html.escape(name)}</span>"

        return self.run_job(work, done, label=f"sampling {n} from {name}")

    def show(self, samples, table) -> None:
        """Put samples and their description in the grid (each with a "full size" button)."""
        self.last_samples, self.last_table = samples, table
        schema = self.session.generator().conditions
        names = schema.finding_names or None
        asked = [c for c in ("age", "sex", *schema.finding_names) if c in samples.metadata.columns]
        meta = samples.metadata[asked].reset_index(drop=True)
        rows = [{**table.iloc[i].to_dict(), **meta.iloc[i].to_dict()} for i in range(len(table))]
        captions = [_caption(r, names) for r in rows]
        self.viewer.hide()
        self.grid.children = [thumb_grid(samples.images, captions, width=112, columns=8, on_click=self.show_full)]

    def show_full(self, i: int) -> None:
        """Open image ``i`` of the last result at its own resolution."""
        if self.last_samples is None or not 0 <= i < len(self.last_samples):
            return
        meta = self.last_samples.metadata.iloc[i]
        prompt = str(meta.get("prompt", "") or "")
        text = f"image {i}" + (f": {html.escape(prompt)}" if prompt else "")
        self.viewer.show(self.last_samples.images[i], text)


def _is_one(value) -> bool:
    """Whether a finding flag is 1 (NA, for conditions an external model leaves unknown, is not)."""
    try:
        return bool(value == 1)
    except TypeError:
        return False


def _caption(row, finding_names=None) -> str:
    asked = []
    if "age" in row and pd.notna(row["age"]):
        asked.append(f"{float(row['age']):.0f}y")
    if "sex" in row and isinstance(row["sex"], str):
        asked.append(row["sex"])
    names = finding_names or ("cardiomegaly", "nodule", "effusion", "pneumothorax")
    findings = [f for f in names if f in row and _is_one(row[f])]
    lines = [f"<b>asked</b> {' '.join(asked)} {', '.join(findings) or 'no finding'}"]
    seen = [
        f"{f[2:]} {row[f]:.2f}"
        for f in ("p_cardiomegaly", "p_nodule", "p_effusion", "p_pneumothorax")
        if f in row and row[f] >= 0.5
    ]
    if "p_female" in row:
        sex = "F" if row["p_female"] >= 0.5 else "M"
        lines.append(f"<b>seen</b> {row['age_seen']:.0f}y {sex} {', '.join(seen) or 'no finding'}")
    if "clip_score" in row and np.isfinite(row["clip_score"]):
        lines.append(f"CLIPScore {row['clip_score']:.1f}")
    return "<br>".join(lines)
