"""The Explorer: JupyterLab panels over one :class:`~medsynth_explore.session.Session`.

``medsynth_explore.explore(generator=..., reference=...)`` shows them all in
one app; each panel class can also be used alone, e.g. ``GeneratePanel(session)``.
"""

from __future__ import annotations

import importlib
from typing import Any

# panel class -> module, imported on first access so that one broken panel
# never stops the others from loading
_PANELS = {
    "BasePanel": "common",
    "Explorer": "app",
    "explore": "app",
    "GeneratePanel": "generate",
    "InpaintPanel": "inpaint",
    "MaskCanvas": "canvas",
    "EmbeddingPanel": "embeddings",
    "MetricsPanel": "metrics_panel",
    "FairnessPanel": "fairness",
    "TrilemmaPanel": "trilemma",
    "PrivacyPanel": "privacy",
    "MembershipPanel": "membership",
    "AnatomyPanel": "anatomy_panel",
    "StressPanel": "stress_panel",
    "CardPanel": "card",
    "TuringPanel": "turing",
    "ExportPanel": "export_panel",
}

__all__ = sorted(_PANELS)


def __getattr__(name: str) -> Any:
    module = _PANELS.get(name)
    if module is None:
        raise AttributeError(f"module 'medsynth_explore.widgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
