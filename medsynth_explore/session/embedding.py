"""The UMAP map of real vs synthetic features, and numba's disk cache for UMAP's kernels.

The map is fitted once on the reference features; synthetic points are
placed into it with ``transform``, so the picture stays put as samples
stream in.
"""

from __future__ import annotations

import threading
from typing import Mapping

import numpy as np

from ..errors import MedsynthError

__all__ = ["Embedding", "enable_umap_cache", "warm_up_umap"]

_WARM = {"thread": None}
_CACHE_LOCK = threading.Lock()


def enable_umap_cache() -> int:
    """Keep the machine code numba compiles for UMAP on disk, so later processes load it.

    pynndescent marks most of its kernels ``cache=True``; umap-learn marks
    almost none, so every new kernel would otherwise spend about 15 s
    compiling the same code before its first map. This turns on numba's own
    on-disk cache (``Dispatcher.enable_caching``: ``__pycache__`` beside the
    source, or ``NUMBA_CACHE_DIR``) for the module-level kernels of the umap
    and pynndescent modules already imported. Numba keys each entry on the
    source file's timestamp and the CPU, so an upgrade or another machine
    recompiles. Idempotent; returns how many kernels were switched on.
    """
    import sys

    import umap  # noqa: F401  (imports the modules whose kernels are scanned)
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    n = 0
    with _CACHE_LOCK:
        for name, mod in list(sys.modules.items()):
            if mod is None or not (name.startswith("umap.") or name.startswith("pynndescent.")):
                continue
            for obj in list(vars(mod).values()):
                if (
                    isinstance(obj, CPUDispatcher)
                    and obj.__module__ == name
                    and isinstance(getattr(obj, "_cache", None), NullCache)
                ):
                    obj.enable_caching()
                    n += 1
    return n


def warm_up_umap(background: bool = True):
    """Compile (or load from numba's disk cache) UMAP's kernels before the first map.

    The first process on an installation compiles for about 15 s and writes
    the cache (:func:`enable_umap_cache`); later processes load it in a
    second or two. The Explorer calls this in a background thread when it
    opens. Returns the thread (or None when run in the foreground).
    """

    def work() -> None:
        import warnings

        import umap

        enable_umap_cache()

        x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            umap.UMAP(n_neighbors=5, n_epochs=10, random_state=0).fit(x[:48]).transform(x[48:])

    if not background:
        work()
        return None
    if _WARM["thread"] is None:
        _WARM["thread"] = threading.Thread(target=work, name="umap-warm-up", daemon=True)
        _WARM["thread"].start()
    return _WARM["thread"]


class Embedding:
    """A UMAP map fitted on reference features; synthetic points are placed with ``transform``.

    Fitting once and placing new samples into the same map keeps the picture
    stable as samples stream in (refitting would move every point). 200
    optimisation epochs (UMAP's default is 500 below 10,000 points) keep a
    2,000-point map to a few seconds with the same layout quality at this size.
    """

    def __init__(
        self,
        reference_features: np.ndarray,
        seed: int = 0,
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        n_epochs: int = 200,
        synthetic: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        import warnings

        import umap

        enable_umap_cache()
        self.model = umap.UMAP(
            n_neighbors=min(n_neighbors, len(reference_features) - 1),
            min_dist=min_dist,
            random_state=seed,
            n_components=2,
            transform_seed=seed,
            n_epochs=n_epochs,
        )
        with warnings.catch_warnings():  # a seeded UMAP runs single-threaded, which umap announces on every fit
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            self.reference = self.model.fit_transform(np.asarray(reference_features, np.float32)).astype(np.float32)
        #: Coordinates of the synthetic points by source. A session passes a live view of its sample
        #: stores (which keep the coordinates row for row with their images); standalone, ``place`` fills a dict.
        self.synthetic: Mapping[str, np.ndarray] = {} if synthetic is None else synthetic

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Coordinates of new points in this map (no refit, nothing stored)."""
        return self.model.transform(np.asarray(features, np.float32)).astype(np.float32)

    def place(self, name: str, features: np.ndarray) -> np.ndarray:
        """Place new synthetic points into the map and keep them under ``name``; returns their coordinates."""
        if not isinstance(self.synthetic, dict):
            raise MedsynthError(
                "this map belongs to a session, whose sample stores keep the coordinates: use session.add_samples()."
            )
        xy = self.transform(features)
        old = self.synthetic.get(name)
        self.synthetic[name] = xy if old is None else np.concatenate([old, xy])
        return xy

    def clear(self, name: str) -> None:
        """Forget the synthetic points of ``name`` (standalone maps; a session clears its stores)."""
        if isinstance(self.synthetic, dict):
            self.synthetic.pop(name, None)
