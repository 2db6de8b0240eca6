"""Shared pieces of the Explorer panels: base class, errors in words, images as PNG, styling.

Panels are thin views: they read and change a :class:`~medsynth_explore.session.Session`
and run long work on a :class:`~medsynth_explore.jobs.JobRunner`. Nothing here
computes results a test could not reach from Python.
"""

from __future__ import annotations

import html
import traceback
from typing import Any, Callable

import ipywidgets as W
import numpy as np

from ..errors import CancelledError, MedsynthError
from ..jobs import Job, JobRunner

__all__ = [
    "BasePanel",
    "ImageViewer",
    "png_bytes",
    "image_widget",
    "thumb_grid",
    "COLORS",
    "LAYOUT_WIDTH",
    "html_table",
    "metric_label",
]

#: One palette for every panel: real data, then generators in load order.
COLORS = {"real": "#4C78A8", "synthetic": "#F58518", "worst": "#E45756", "ok": "#54A24B", "muted": "#9D9D9D"}
SERIES = ("#F58518", "#54A24B", "#B279A2", "#72B7B2", "#EECA3B", "#FF9DA6")
LAYOUT_WIDTH = "100%"
CSS = """
<style>
.msx-panel { font-size: 13px; }
.msx-caption { color: #555; font-size: 12px; line-height: 1.3; }
.msx-error { color: #b00020; background: #fdecea; border-left: 4px solid #b00020; padding: 6px 10px; margin: 4px 0; }
.msx-table { border-collapse: collapse; font-size: 12px; }
.msx-table th, .msx-table td { padding: 3px 8px; border-bottom: 1px solid #ddd; text-align: right; }
.msx-table th:first-child, .msx-table td:first-child { text-align: left; }
.msx-metric { display: inline-block; min-width: 120px; margin: 4px 10px 4px 0; }
.msx-metric b { font-size: 20px; display: block; }
</style>
"""


def png_bytes(
    image: Any, scale: int = 1, vmin: float = 0.0, vmax: float = 1.0, cmap: str | None = None, max_side: int | None = None
) -> bytes:
    """PNG bytes of one image (C, H, W) or (H, W) in [vmin, vmax], optionally upscaled by ``scale``.

    ``cmap="diverging"`` maps [-1, 1] to blue-white-red (for difference images); ``max_side``
    shrinks a large image by area averaging so its longer side is at most that many pixels.
    The package's one display encoder, :func:`medsynth_explore.data.display.png_bytes`, does the work.

    Examples
    --------
    >>> png_bytes(np.zeros((1, 4, 4)))[:4]
    b'\\x89PNG'
    """
    from ..data.display import png_bytes as encode

    return encode(image, scale=scale, vmin=vmin, vmax=vmax, cmap=cmap, max_side=max_side)


def image_widget(image: Any, width: int = 128, **kw: Any) -> W.Image:
    """An ``ipywidgets.Image`` showing ``image`` at ``width`` pixels.

    The PNG is made small on the Python side: an image larger than ``width``
    is shrunk (area averaging) to ``width`` pixels before it is sent, so a
    grid of 512 or 1024 px images costs kilobytes, not megabytes. Pass
    ``max_side=None`` to send the native resolution.
    """
    kw.setdefault("max_side", int(width))
    a = np.asarray(image)
    h, w = a.shape[-2:] if a.ndim >= 2 else (width, width)
    height = int(round(width * h / w)) if w else width
    return W.Image(value=png_bytes(image, **kw), format="png", layout=W.Layout(width=f"{width}px", height=f"{height}px"))


def thumb_grid(
    images: np.ndarray,
    captions: list[str] | None = None,
    width: int = 112,
    columns: int = 8,
    on_click: Callable[[int], Any] | None = None,
) -> W.GridBox:
    """A grid of thumbnails with an optional caption (HTML allowed) under each.

    Thumbnails are shrunk to ``width`` pixels in Python (see :func:`image_widget`).
    With ``on_click``, each cell gets a "full size" button below its caption
    that calls ``on_click(i)`` (e.g. to open an :class:`ImageViewer` at native resolution).
    """
    cells = []
    for i, im in enumerate(images):
        cap = W.HTML(f"<div class='msx-caption'>{captions[i]}</div>") if captions else None
        parts = [image_widget(im, width)] + ([cap] if cap else [])
        if on_click is not None:
            h, w = np.shape(im)[-2:]
            button = W.Button(
                description="full size",
                icon="expand",
                tooltip=f"show this image at its own resolution, {w}×{h} px",
                layout=W.Layout(width=f"{width}px", height="24px"),
            )
            button.add_class("msx-fullsize")
            button.on_click(lambda _b, i=i: on_click(i))
            parts.append(button)
        cells.append(W.VBox(parts, layout=W.Layout(width=f"{width + 8}px")))
    return W.GridBox(
        cells,
        layout=W.Layout(
            grid_template_columns=f"repeat(auto-fill, minmax({width + 12}px, 1fr))",
            grid_gap="6px",
            max_width=f"{columns * (width + 18)}px",
        ),
    )


class ImageViewer(W.VBox):
    """One image at its own resolution, with zoom: the full-size view behind the panels' thumbnails.

    The PNG holds every pixel of the image (no shrinking); the zoom slider sets
    how many screen pixels show one image pixel, and the box scrolls when the
    image is larger than the panel.

    Examples
    --------
    >>> v = ImageViewer()
    >>> v.show(np.zeros((1, 512, 512), np.float32), "sample 0")
    >>> v.shape, v.layout.display
    ((512, 512), 'flex')
    """

    def __init__(self, max_height: int = 560, **kwargs: Any) -> None:
        super().__init__(layout=W.Layout(display="none", border="1px solid #ddd", padding="4px"), **kwargs)
        self.title = W.HTML("")
        self.zoom = W.FloatLogSlider(value=1.0, base=2, min=-3, max=2, step=0.25, description="Zoom", readout_format=".2f")
        self.close_button = W.Button(description="Close", icon="times", layout=W.Layout(width="80px"))
        self.image = W.Image(format="png")
        self.frame = W.Box([self.image], layout=W.Layout(overflow="auto", max_height=f"{max_height}px", max_width="100%"))
        self.shape: tuple | None = None
        self.zoom.observe(lambda _c: self._size(), names="value")
        self.close_button.on_click(lambda _b: self.hide())
        self.children = [W.HBox([self.title, self.zoom, self.close_button], layout=W.Layout(align_items="center")), self.frame]

    def show(self, image: Any, caption: str = "", cmap: str | None = None, zoom: float | None = None) -> None:
        """Show ``image`` (C, H, W) or (H, W) at native resolution (zoom 1 = one screen pixel per image pixel)."""
        a = np.asarray(image)
        self.shape = tuple(int(v) for v in a.shape[-2:])
        self.image.value = png_bytes(a, cmap=cmap)
        h, w = self.shape
        self.title.value = f"<b>{caption}</b> <span class='msx-caption'>{w}×{h} px</span>" if caption else f"{w}×{h} px"
        if zoom is not None:
            self.zoom.value = zoom
        self._size()
        self.layout.display = "flex"

    def hide(self) -> None:
        self.layout.display = "none"

    def _size(self) -> None:
        if self.shape is None:
            return
        h, w = self.shape
        z = float(self.zoom.value)
        self.image.layout.width = f"{max(1, round(w * z))}px"
        self.image.layout.height = f"{max(1, round(h * z))}px"
        self.image.layout.max_width = "none"


def metric_label(name: str, with_direction: bool = True) -> str:
    """A metric value's display name from the registry, e.g. ``"FID (lower is better)"``.

    Examples
    --------
    >>> metric_label("coverage"), metric_label("ct")
    ('Coverage (higher is better)', 'C_T (closest to 0 is best)')
    """
    from ..metrics.registry import output

    out = output(name)
    label = out.label or name
    return f"{label} ({out.direction})" if with_direction else label


def html_table(df, float_format: str = "{:.3g}") -> str:
    """A compact HTML table of a DataFrame in the panels' style."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for _, r in df.iterrows():
        cells = []
        for v in r.tolist():
            if isinstance(v, (float, np.floating)):
                cells.append(f"<td>{float_format.format(v)}</td>")
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='msx-table'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


class BasePanel(W.VBox):
    """Base class of every Explorer panel: a VBox over a session.

    Parameters
    ----------
    session : Session
    runner : JobRunner, optional
        Where long work runs; a panel made by the app shares the app's runner.
        Pass ``JobRunner(synchronous=True)`` in tests and scripts.

    Attributes
    ----------
    error : ipywidgets.HTML
        Shows what went wrong, in words; empty when all is well.
    progress : ipywidgets.FloatProgress
        Progress of the panel's current job (hidden when idle).
    status : ipywidgets.HTML
        One line of what the panel is doing or did.
    last_error : str or None
        The text last shown in :attr:`error` (for tests).
    """

    title = "Panel"
    lane = "panel"

    def __init__(self, session: Any, runner: JobRunner | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.runner = runner or JobRunner()
        self.error = W.HTML("")
        self.status = W.HTML("", layout=W.Layout(min_height="18px"))
        self.progress = W.FloatProgress(value=0, min=0, max=1, layout=W.Layout(width="240px", visibility="hidden"))
        self.cancel_button = W.Button(description="Cancel", icon="stop", layout=W.Layout(width="90px", visibility="hidden"))
        self.cancel_button.on_click(lambda _b: self.runner.cancel(self.lane))
        self.last_error: str | None = None
        self._subscriptions: list = []
        self.add_class("msx-panel")

    # ------------------------------------------------------------------ session events
    def subscribe(self, event: str, fn: Callable[..., Any]) -> Any:
        """Listen to a session event for as long as this panel is open (:meth:`close` ends it)."""
        sub = self.session.on(event, fn)
        self._subscriptions.append(sub)
        return sub

    def close(self) -> None:
        """Stop listening to the session, then close the widget."""
        for sub in self._subscriptions:
            sub.remove()
        self._subscriptions.clear()
        super().close()

    # ------------------------------------------------------------------ errors
    def show_error(self, exc: BaseException | str | None) -> None:
        """Show an error in words inside the panel (None clears it)."""
        if exc is None:
            self.last_error = None
            self.error.value = ""
            return
        if isinstance(exc, MedsynthError) or isinstance(exc, str):
            text = str(exc)
        else:  # an unexpected failure: say what it was, keep the details at hand
            text = f"{type(exc).__name__}: {exc}"
            details = html.escape("".join(traceback.format_exception(exc))[-3000:])
            text_html = f"<details><summary>{html.escape(text)}</summary><pre>{details}</pre></details>"
            self.last_error = text
            self.error.value = f"<div class='msx-error'>{text_html}</div>"
            return
        self.last_error = text
        self.error.value = f"<div class='msx-error'>{html.escape(text)}</div>"

    def guard(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a widget callback so that any error shows in the panel instead of escaping."""

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            try:
                self.show_error(None)
                return fn(*args, **kwargs)
            except Exception as exc:  # shown to the user in words
                self.show_error(exc)
                return None

        return wrapped

    # ------------------------------------------------------------------ jobs
    def run_job(self, work: Callable[[Job], Any], done: Callable[[Any], None], label: str = "working") -> Job:
        """Run ``work(job)`` in the background with progress, Cancel and errors shown in the panel.

        ``done(result)`` runs when the work succeeds. A newer call supersedes
        the one still running in this panel.
        """
        self.show_error(None)
        self.status.value = f"<span class='msx-caption'>{html.escape(label)}…</span>"
        self.progress.value = 0
        self.progress.layout.visibility = "visible"
        self.cancel_button.layout.visibility = "visible"

        def on_progress(job: Job) -> None:
            self.progress.value = job.fraction

        def on_done(job: Job, result: Any, error: BaseException | None) -> None:
            if self.runner.current(self.lane) not in (None, job):
                return  # superseded: the newer job owns the display
            self.progress.layout.visibility = "hidden"
            self.cancel_button.layout.visibility = "hidden"
            if isinstance(error, CancelledError):
                self.status.value = "<span class='msx-caption'>cancelled</span>"
                return
            if error is not None:
                self.status.value = ""
                self.show_error(error)
                return
            self.status.value = "<span class='msx-caption'>done</span>"
            try:
                done(result)
            except Exception as exc:  # rendering failed: say so in the panel
                self.show_error(exc)

        return self.runner.submit(self.lane, work, on_progress=on_progress, on_done=on_done)

    def job_bar(self) -> W.HBox:
        """Progress bar, Cancel button and status line, to place in a panel's layout."""
        return W.HBox([self.progress, self.cancel_button, self.status], layout=W.Layout(align_items="center"))
