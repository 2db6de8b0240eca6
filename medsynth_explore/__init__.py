"""medsynth-explore: see and measure what a medical image generator really makes.

The top-level names and the subpackages (``mse.phantom``, ``mse.metrics``,
``mse.data``, ...) are imported lazily, on first access, so that
``import medsynth_explore`` stays fast and light (no torch, numpy or pandas
until they are used). ``mse.export`` and ``mse.evaluate`` are modules that
can be called like their main function: ``mse.export(gen, n, out)`` and
``mse.export.verify(out)`` both work, in any import order.

Examples
--------
>>> import medsynth_explore as mse
>>> ds = mse.load_dataset("phantomcxr", n=8, size=32)  # doctest: +SKIP
>>> mse.phantom.simulate(2, size=32).shape
(2, 1, 32, 32)
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

# public name -> "module:attribute" (or "module" for a callable module), resolved on first access
_LAZY = {
    "ImageSet": "medsynth_explore.data:ImageSet",
    "load_dataset": "medsynth_explore.data:load_dataset",
    "list_datasets": "medsynth_explore.data:list_datasets",
    "simulate": "medsynth_explore.phantom:simulate",
    "load_generator": "medsynth_explore.generators:load_generator",
    "list_generators": "medsynth_explore.generators:list_generators",
    "evaluate": "medsynth_explore.evaluate",  # callable: mse.evaluate(...) runs evaluate.evaluate
    "get_encoder": "medsynth_explore.features:get_encoder",
    "explore": "medsynth_explore.widgets:explore",
    "Embedding": "medsynth_explore.session:Embedding",  # the UMAP map: fitted on reference features, .place(name, features)
    "export": "medsynth_explore.export",  # callable: mse.export(...) runs export.export
    "stress_test": "medsynth_explore.stress:stress_test",
}

# subpackages and modules reachable as attributes (mse.phantom.simulate(...)), imported on first access
_SUBMODULES = (
    "anatomy",
    "checkpoint",
    "data",
    "errors",
    "evaluate",
    "export",
    "features",
    "generators",
    "jobs",
    "metrics",
    "phantom",
    "provenance",
    "scale",
    "session",
    "shards",
    "stress",
    "turing",
    "widgets",
)

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
    target = _LAZY.get(name) or (f"{__name__}.{name}" if name in _SUBMODULES else None)
    if target is None:
        raise AttributeError(f"module 'medsynth_explore' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = importlib.import_module(module)
    if attr:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *_SUBMODULES})
