"""medsynth-explore: see and measure what a medical image generator really makes.

The top-level names are imported lazily so that ``import medsynth_explore``
stays fast and light (no torch until a model is used).

Examples
--------
>>> import medsynth_explore as mse
>>> ds = mse.load_dataset("phantomcxr", n=8, size=32)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import (
    CancelledError,
    CapabilityError,
    CheckpointError,
    ConditionError,
    DataError,
    FeatureError,
    MedsynthError,
    MetricError,
    OfflineError,
)

__version__ = "0.1.0"

# public name -> "module:attribute", resolved on first access
_LAZY = {
    "ImageSet": "medsynth_explore.data:ImageSet",
    "load_dataset": "medsynth_explore.data:load_dataset",
    "simulate": "medsynth_explore.phantom:simulate",
    "load_generator": "medsynth_explore.generators:load_generator",
    "list_generators": "medsynth_explore.generators:list_generators",
    "evaluate": "medsynth_explore.evaluate:evaluate",
    "get_encoder": "medsynth_explore.features:get_encoder",
    "explore": "medsynth_explore.widgets:explore",
    "export": "medsynth_explore.export:export",
}

__all__ = sorted(
    [
        "__version__",
        "MedsynthError",
        "DataError",
        "CheckpointError",
        "ConditionError",
        "CapabilityError",
        "FeatureError",
        "MetricError",
        "OfflineError",
        "CancelledError",
        *_LAZY,
    ]
)


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'medsynth_explore' has no attribute {name!r}")
    module, attr = target.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
