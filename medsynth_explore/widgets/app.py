"""The Explorer app: every panel in tabs over one shared session."""

from __future__ import annotations

import html
import importlib
from typing import Any, Iterable, Sequence

import ipywidgets as W

from ..jobs import JobRunner
from ..session import Session
from .common import CSS

__all__ = ["Explorer", "explore", "PANEL_ORDER"]

#: (tab title, module, class) in display order.
PANEL_ORDER = (
    ("Generate", "generate", "GeneratePanel"),
    ("Inpaint", "inpaint", "InpaintPanel"),
    ("Embeddings", "embeddings", "EmbeddingPanel"),
    ("Live metrics", "metrics_panel", "MetricsPanel"),
    ("Fairness", "fairness", "FairnessPanel"),
    ("Trilemma", "trilemma", "TrilemmaPanel"),
    ("Privacy", "privacy", "PrivacyPanel"),
    ("Anatomy", "anatomy_panel", "AnatomyPanel"),
    ("Stress test", "stress_panel", "StressPanel"),
    ("Model card", "card", "CardPanel"),
    ("Turing test", "turing", "TuringPanel"),
    ("Export", "export_panel", "ExportPanel"),
)


class Explorer(W.VBox):
    """All panels over one :class:`~medsynth_explore.session.Session`, in tabs.

    A panel that fails to build shows its error in its tab; the others work.

    Attributes
    ----------
    session : Session
    panels : dict title -> panel widget
    tabs : ipywidgets.Tab
    """

    def __init__(self, session: Session, runner: JobRunner | None = None, panels: Sequence[str] | None = None) -> None:
        super().__init__()
        self.session = session
        self.runner = runner or JobRunner()
        self.panels: dict[str, W.Widget] = {}
        children, titles = [], []
        for title, module, cls in PANEL_ORDER:
            if panels is not None and title not in panels and cls not in panels:
                continue
            try:
                panel_cls = getattr(importlib.import_module(f"{__package__}.{module}"), cls)
                panel = panel_cls(session, runner=self.runner)
            except Exception as exc:  # one broken panel must not take the app down
                panel = W.HTML(
                    f"<div class='msx-error'>{html.escape(title)} is unavailable: "
                    f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</div>"
                )
            self.panels[title] = panel
            children.append(panel)
            titles.append(title)
        self.tabs = W.Tab(children=children, titles=titles)
        gens = ", ".join(html.escape(g) for g in session.generators)
        header = W.HTML(
            CSS + f"<div class='msx-panel'><b>medsynth-explore</b> · reference: {len(session.reference)} images "
            f"({html.escape(str(session.reference.provenance.get('source', '?')))}) · generators: {gens}</div>"
        )
        self.children = [header, self.tabs]


def explore(
    generator: str | Iterable[Any] = "phantomcxr-diffusion",
    reference: Any = "phantomcxr",
    encoder: Any = None,
    n_reference: int = 1000,
    seed: int = 0,
    panels: Sequence[str] | None = None,
    **session_kwargs: Any,
) -> Explorer:
    """Open the Explorer on one or more generators and a reference set.

    Parameters
    ----------
    generator : str, Generator or list of them
        Built-in names (``"phantomcxr-diffusion"``, ``"phantomcxr-vae"``,
        ``"phantomcxr-gan"``, ``"phantomcxr-physics"``), checkpoint paths or
        generator objects.
    reference : str, path or ImageSet
        Real images: ``"phantomcxr"`` or anything ``load_dataset`` reads.
    encoder : str or Encoder, optional
        Feature encoder (default: the package default).
    panels : list of str, optional
        Only these panels (tab titles or class names).

    Returns
    -------
    Explorer
        The app widget; ``.session`` holds everything it shows.

    Examples
    --------
    >>> import medsynth_explore as mse
    >>> app = mse.explore(generator="phantomcxr-physics", n_reference=200)  # doctest: +SKIP
    """
    gens = [generator] if isinstance(generator, str) or not isinstance(generator, Iterable) else list(generator)
    session = Session(reference=reference, generators=gens, encoder=encoder, n_reference=n_reference, seed=seed, **session_kwargs)
    return Explorer(session, panels=panels)
