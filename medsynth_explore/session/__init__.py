"""The state one exploration holds; every Explorer panel is a view over a :class:`Session`.

A session holds the reference (real) images, one or more generators, a
:class:`SampleStore` per generator (its kept images, their features, their
map coordinates and streaming metric states, evicted together), the models
that judge them (feature encoder, reference classifier, domain CLIP) and an
:class:`EventBus` that tells panels what changed. What the panels show is
computed in :mod:`~medsynth_explore.session.analyses` (fairness, privacy,
trilemma, inpainting) and :mod:`~medsynth_explore.session.embedding` (the
map), in plain Python, so that it can be tested and scripted without widgets:

>>> from medsynth_explore.session import Session
>>> s = Session(reference="phantomcxr", generators=["phantomcxr-physics"], n_reference=200)  # doctest: +SKIP
>>> s.generate(16, conditions={"findings": ["effusion"]}, seed=0)  # doctest: +SKIP
>>> s.metrics()  # doctest: +SKIP
"""

from .analyses import InpaintResult, describe_samples
from .core import DEFAULT_METRICS, LIVE_METRICS, Session
from .embedding import Embedding, enable_umap_cache, warm_up_umap
from .events import EVENTS, EventBus, Subscription
from .store import Appended, SampleStore

__all__ = [
    "Session",
    "SampleStore",
    "Appended",
    "EventBus",
    "Subscription",
    "EVENTS",
    "InpaintResult",
    "Embedding",
    "describe_samples",
    "warm_up_umap",
    "enable_umap_cache",
    "DEFAULT_METRICS",
    "LIVE_METRICS",
]
