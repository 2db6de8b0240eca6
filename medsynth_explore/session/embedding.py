"""The UMAP map of real vs synthetic features: fitted once, cached on disk, new points placed into it.

:class:`Embedding` fits umap-learn on the reference features once; synthetic
points are then placed into that map (UMAP's ``transform``: neighbours in
the reference, fuzzy memberships, a short optimisation with the reference
held fixed), so the picture stays put as samples stream in.

At scale (10^5 reference points and more):

* The neighbour graph comes from :mod:`medsynth_explore.metrics.knn`
  (exact below a size, faiss-based approximate above, with exact distances)
  and is handed to umap-learn as ``precomputed_knn``. It is cached per
  feature hash, so PRDC's radii of the same reference reuse it.
* Placing new points asks the same module for their neighbours among the
  reference (exact, float32 BLAS: 64 points among 100,000 at 768 dimensions
  take milliseconds), then runs umap-learn's own kernels. No search index
  is compiled at the first placement, and the kernels are the ones
  :func:`warm_up_umap` compiles at set-up.
* The fitted map (coordinates and the curve parameters ``a``, ``b``) is
  written to a safetensors file keyed by the features' content hash, the
  settings and the versions of umap-learn and numpy; reopening the Explorer
  on the same reference loads it instead of refitting. Nothing is pickled.

>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(60, 5)).astype(np.float32)
>>> emb = Embedding(x, n_epochs=20, cache=False)  # doctest: +SKIP
>>> emb.reference.shape, emb.place("gen", x[:4] + 0.01).shape  # doctest: +SKIP
((60, 2), (4, 2))
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import DataError, MedsynthError

__all__ = ["Embedding", "enable_umap_cache", "warm_up_umap", "default_map_cache_dir", "SMALL_MAP"]

#: Below this many reference points umap-learn computes all pairwise distances itself (its small-data path).
SMALL_MAP = 4096
#: Version of the on-disk map format (part of the cache key).
MAP_FORMAT = 1

_WARM = {"thread": None}
_CACHE_LOCK = threading.Lock()
_IMPORT_LOCK = threading.Lock()


def _umap_modules():
    """``(umap.umap_, umap.layouts)``, imported under one lock.

    The warm-up thread and the kernel's main thread may import umap at the
    same moment; Python then hands one of them a partially initialised
    module (``KeyError: 'umap'``). One lock around the first import avoids it.
    """
    with _IMPORT_LOCK:
        import umap
        import umap.layouts
        import umap.umap_

    return umap.umap_, umap.layouts


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

    _umap_modules()  # imports the modules whose kernels are scanned
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
    """Compile (or load from numba's disk cache) every UMAP kernel a map needs, small or large.

    Fits and places two tiny maps: one below :data:`SMALL_MAP` points
    (umap-learn's all-pairs path) and one above it (the path with a
    precomputed neighbour graph that large references take), each followed
    by a placement. The first process on an installation compiles (about 30
    s) and writes numba's cache (:func:`enable_umap_cache`); later processes
    load it in a second or two. ``make install`` and Binder's ``postBuild``
    run it once; the Explorer calls it in a background thread when it opens.
    Returns the thread (or None when run in the foreground).

    umap and its dependencies (scipy, scikit-learn, numba, pynndescent) are
    imported in the caller's thread before any thread starts: an import
    running in a background thread while the caller imports scipy for
    itself hands one of them a half-initialised module (``KeyError:
    'scipy'``). Only the compiling runs in the background.
    """
    enable_umap_cache()  # imports umap here, in the caller's thread

    def work() -> None:
        rng = np.random.default_rng(0)
        for n in (64, SMALL_MAP + 104):
            x = rng.normal(size=(n, 8)).astype(np.float32)
            emb = Embedding(x[:-16], n_neighbors=5 if n < SMALL_MAP else 15, n_epochs=10, cache=False)
            emb.transform(x[-16:])

    if not background:
        work()
        return None
    if _WARM["thread"] is None:
        _WARM["thread"] = threading.Thread(target=work, name="umap-warm-up", daemon=True)
        _WARM["thread"].start()
    return _WARM["thread"]


def default_map_cache_dir() -> Path:
    """``$MEDSYNTH_CACHE_DIR/umap`` or ``~/.cache/medsynth_explore/umap``."""
    root = os.environ.get("MEDSYNTH_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "medsynth_explore"
    return base / "umap"


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:  # pragma: no cover - installed with the package
        return "none"


class Embedding:
    """A UMAP map fitted on reference features; synthetic points are placed with :meth:`transform`.

    Fitting once and placing new samples into the same map keeps the picture
    stable as samples stream in (refitting would move every point). 200
    optimisation epochs (UMAP's default is 500 below 10,000 points) keep a
    2,000-point map to a few seconds with the same layout quality at this size.

    Parameters
    ----------
    reference_features : array (N, D)
        Features of the real images (at least 3 rows, finite).
    seed : int
        Seed of the layout and of every placement (same seed, same map).
    n_neighbors, min_dist, n_epochs : UMAP settings.
    synthetic : mapping, optional
        Where the coordinates of placed points live (a session passes a live
        view of its sample stores); default a dict that :meth:`place` fills.
    cache : None, False or path
        Directory of fitted maps (None: :func:`default_map_cache_dir`; False: no disk cache).
    knn_route : {"auto", "exact", "approximate"}
        Neighbour search for the graph of large maps (:mod:`medsynth_explore.metrics.knn`).

    Attributes
    ----------
    reference : ndarray (N, 2), float32
        Map coordinates of the reference points, row for row.
    synthetic : mapping name -> ndarray (n, 2)
    from_cache : bool
        Whether the map was loaded from the disk cache instead of fitted.
    fit_seconds : float
        Time to fit (or load) the map.
    route : str
        The neighbour route of the graph (``"umap"``: umap-learn's own all-pairs path for small maps).

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(60, 5)).astype(np.float32)
    >>> emb = Embedding(x, n_epochs=20, cache=False)  # doctest: +SKIP
    >>> emb.place("gen", x[:4] + 0.01).shape  # doctest: +SKIP
    (4, 2)
    """

    def __init__(
        self,
        reference_features: Any,
        seed: int = 0,
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        n_epochs: int = 200,
        synthetic: Mapping[str, np.ndarray] | None = None,
        cache: Any = None,
        knn_route: str = "auto",
    ) -> None:
        self._configure(reference_features, seed, n_neighbors, min_dist, n_epochs, synthetic, cache, knn_route)
        # umap is imported here, in the caller's thread, even for a map loaded from the cache: its first placement
        # needs it, and importing it in a background thread raced with the caller's own imports of scipy
        # (KeyError: 'scipy' from importlib, seen when a map was loaded and placed at once)
        _umap_modules()
        t0 = time.perf_counter()
        loaded = self._load() if self.cache_dir is not None else None
        self.from_cache = loaded is not None
        if loaded is None:
            self.reference, self._a, self._b = self._fit()
            if self.cache_dir is not None:
                self._save()
        else:
            self.reference, self._a, self._b = loaded
        self.fit_seconds = time.perf_counter() - t0

    def _configure(self, reference_features, seed, n_neighbors, min_dist, n_epochs, synthetic, cache, knn_route) -> None:
        from ..metrics._validate import check_features
        from ..metrics.knn import choose_route

        x = np.ascontiguousarray(check_features(reference_features, "reference features", min_n=3, dtype=np.float32))
        for name, value, low in (("n_neighbors", n_neighbors, 2), ("n_epochs", n_epochs, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise DataError(f"{name} must be an integer of at least {low}, got {value!r}.")
        self.features = x
        self._features_sq = np.einsum("ij,ij->i", x, x)  # the reference's squared norms, for every placement
        self.seed = int(seed)
        self.n_neighbors = int(min(n_neighbors, len(x) - 1))
        self.min_dist = float(min_dist)
        self.n_epochs = int(n_epochs)
        self.knn_route = knn_route
        self.route = "umap" if len(x) < SMALL_MAP else choose_route(len(x), len(x), x.shape[1], knn_route)
        self.cache_dir = None if cache is False else (default_map_cache_dir() if cache is None else Path(cache).expanduser())
        #: Coordinates of the synthetic points by source. A session passes a live view of its sample
        #: stores (which keep the coordinates row for row with their images); standalone, ``place`` fills a dict.
        self.synthetic: Mapping[str, np.ndarray] = {} if synthetic is None else synthetic

    @classmethod
    def from_layout(
        cls,
        reference_features: Any,
        coordinates: Any,
        a: float,
        b: float,
        seed: int = 0,
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        n_epochs: int = 200,
        synthetic: Mapping[str, np.ndarray] | None = None,
        knn_route: str = "auto",
    ) -> "Embedding":
        """A map from a layout computed elsewhere (e.g. on a cluster, :mod:`medsynth_explore.scale`).

        ``coordinates`` (N, 2) are the reference points' places, row for row
        with ``reference_features``; ``a`` and ``b`` are UMAP's curve
        parameters of the layout (``umap.umap_.find_ab_params(1.0, min_dist)``).
        New points are placed exactly as in a map fitted here.

        Examples
        --------
        >>> x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
        >>> emb = Embedding.from_layout(x, x[:, :2], a=1.58, b=0.9, n_neighbors=5)
        >>> emb.reference.shape, emb.from_cache
        ((40, 2), False)
        """
        self = cls.__new__(cls)
        self._configure(reference_features, seed, n_neighbors, min_dist, n_epochs, synthetic, False, knn_route)
        xy = np.asarray(coordinates, np.float32)
        if xy.shape != (len(self.features), 2) or not np.isfinite(xy).all():
            raise DataError(f"coordinates must be finite, of shape ({len(self.features)}, 2); got {xy.shape}.")
        if not (np.isfinite(a) and np.isfinite(b) and a > 0 and b > 0):
            raise DataError(f"a and b must be positive numbers, got {a!r} and {b!r}.")
        self.reference, self._a, self._b = np.ascontiguousarray(xy), float(a), float(b)
        self.route, self.from_cache, self.fit_seconds = "given", False, 0.0
        return self

    # ------------------------------------------------------------------ fitting and the disk cache
    def _umap(self, **extra: Any):
        umap_, _ = _umap_modules()
        enable_umap_cache()
        return umap_.UMAP(
            n_neighbors=self.n_neighbors,
            min_dist=self.min_dist,
            random_state=self.seed,
            n_components=2,
            transform_seed=self.seed,
            n_epochs=self.n_epochs,
            low_memory=True,
            **extra,
        )

    def _fit(self) -> tuple[np.ndarray, float, float]:
        extra: dict = {}
        if self.route != "umap":
            from ..metrics.knn import self_knn

            graph = self_knn(self.features, self.n_neighbors - 1, self.route, self.seed, what="umap graph")
            n = len(self.features)
            idx = np.concatenate([np.arange(n)[:, None], graph.indices], axis=1).astype(np.int32)
            dist = np.concatenate([np.zeros((n, 1)), graph.distances], axis=1).astype(np.float32)
            extra["precomputed_knn"] = (idx, dist, None)
        model = self._umap(**extra)
        with warnings.catch_warnings():  # a seeded UMAP runs single-threaded, and a graph without search index
            warnings.simplefilter("ignore", UserWarning)  # cannot transform: both announced on every fit
            coords = model.fit_transform(self.features).astype(np.float32)
        return np.ascontiguousarray(coords), float(model._a), float(model._b)

    def cache_key(self) -> str:
        """What the disk cache files this map under: the features' hash, the settings, the versions."""
        from ..metrics.knn import features_hash

        parts = {
            "format": MAP_FORMAT,
            "features": features_hash(self.features),
            "n_neighbors": self.n_neighbors,
            "min_dist": self.min_dist,
            "n_epochs": self.n_epochs,
            "seed": self.seed,
            "route": self.route,
            "umap-learn": _version("umap-learn"),
            "numpy": np.__version__,
        }
        if self.route == "approximate":
            parts["faiss-cpu"] = _version("faiss-cpu")
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]

    def _path(self) -> Path:
        return self.cache_dir / f"map-{self.cache_key()}.safetensors"

    def _load(self):
        """The cached map, or None (missing, unreadable or not matching: then it is refitted and rewritten)."""
        path = self._path()
        if not path.is_file():
            return None
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="np") as f:
                meta = f.metadata() or {}
                coords = f.get_tensor("reference")
            a, b = float(meta["a"]), float(meta["b"])
            ok = (
                meta.get("key") == self.cache_key()
                and coords.shape == (len(self.features), 2)
                and coords.dtype == np.float32
                and np.isfinite(coords).all()
                and np.isfinite([a, b]).all()
            )
        except Exception as exc:  # a damaged cache file is refitted, never trusted
            warnings.warn(f"ignoring the unreadable cached map {path} ({exc}); fitting again.", RuntimeWarning, stacklevel=3)
            return None
        if not ok:
            warnings.warn(f"ignoring the cached map {path}: it does not match these features; fitting again.", RuntimeWarning)
            return None
        return np.ascontiguousarray(coords), a, b

    def _save(self) -> None:
        from safetensors.numpy import save_file

        path = self._path()
        meta = {"key": self.cache_key(), "a": repr(self._a), "b": repr(self._b), "n": str(len(self.features))}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            os.close(fd)
            save_file({"reference": self.reference}, tmp, metadata=meta)
            os.replace(tmp, path)
        except OSError as exc:  # a read-only cache directory costs a refit next time, nothing else
            warnings.warn(f"could not write the map cache {path}: {exc}", RuntimeWarning, stacklevel=3)

    # ------------------------------------------------------------------ placing points
    def neighbours(self, features: Any) -> tuple[np.ndarray, np.ndarray]:
        """(indices, distances) of the ``n_neighbors`` nearest reference points of each row of ``features``."""
        from ..metrics._validate import check_features
        from ..metrics.knn import knn

        q = check_features(features, "features to place", dtype=np.float32)
        if q.shape[1] != self.features.shape[1]:
            raise DataError(
                f"features to place have {q.shape[1]} dimensions but the map was fitted on {self.features.shape[1]}; "
                "use the encoder the map was fitted with."
            )
        route = "exact" if len(q) <= SMALL_MAP else self.knn_route
        res = knn(
            q, self.features, self.n_neighbors, route=route, seed=self.seed, what="umap placement", data_sq=self._features_sq
        )
        return res.indices, res.distances

    def transform(self, features: Any) -> np.ndarray:
        """Coordinates of new points in this map (no refit, nothing stored)."""
        idx, dist = self.neighbours(features)
        return self.place_neighbours(idx, dist)

    def place_neighbours(self, indices: np.ndarray, distances: np.ndarray) -> np.ndarray:
        """Coordinates of new points from their reference neighbours (UMAP's transform after its k-NN query).

        Fuzzy memberships of each new point to its neighbours
        (``smooth_knn_dist``, ``compute_membership_strengths``), a start at
        the membership-weighted mean of the neighbours' coordinates, then
        ``n_epochs // 3`` epochs of UMAP's layout optimisation that move only
        the new points. Neighbours can come from anywhere (e.g. Dask workers,
        :mod:`medsynth_explore.scale`).
        """
        import scipy.sparse
        from sklearn.utils import check_random_state

        umap_, layouts = _umap_modules()
        enable_umap_cache()
        idx = np.ascontiguousarray(indices, np.int32)
        dist = np.ascontiguousarray(distances, np.float32)
        if idx.ndim != 2 or idx.shape != dist.shape or idx.shape[1] != self.n_neighbors:
            raise DataError(
                f"give ({self.n_neighbors}) neighbour indices and distances per point; got {idx.shape}, {dist.shape}."
            )
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self.reference)):
            raise DataError("neighbour indices must be rows of the reference the map was fitted on.")
        if not len(idx):
            return np.zeros((0, 2), np.float32)
        n_ref = len(self.reference)
        sigmas, rhos = umap_.smooth_knn_dist(dist, float(self.n_neighbors), local_connectivity=0.0)
        rows, cols, vals, _ = umap_.compute_membership_strengths(idx, dist, sigmas, rhos, bipartite=True)
        graph = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(len(idx), n_ref))
        csr = graph.tocsr()
        csr.eliminate_zeros()
        start = umap_.init_graph_transform(csr, self.reference)
        n_epochs = max(1, self.n_epochs // 3)
        graph.data[graph.data < graph.data.max() / float(n_epochs)] = 0.0
        graph.eliminate_zeros()
        epochs_per_sample = umap_.make_epochs_per_sample(graph.data, n_epochs)
        rng_state = check_random_state(self.seed).randint(np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max - 1, 3)
        xy = layouts.optimize_layout_euclidean(
            np.ascontiguousarray(start, np.float32),
            self.reference.copy(),
            graph.row,
            graph.col,
            n_epochs,
            n_ref,
            epochs_per_sample,
            self._a,
            self._b,
            rng_state.astype(np.int64),
            1.0,  # repulsion strength (UMAP's default)
            0.25,  # initial learning rate of a transform: UMAP's default 1.0 / 4
            5.0,  # negative samples per positive one
            False,  # single-threaded: the same seed gives the same places
        )
        return np.asarray(xy, np.float32)

    def place(self, name: str, features: Any) -> np.ndarray:
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

    def __repr__(self) -> str:
        n_syn = sum(len(v) for v in self.synthetic.values())
        how = "loaded from cache" if self.from_cache else f"fitted in {self.fit_seconds:.1f} s"
        return f"Embedding({len(self.reference)} reference points, {n_syn} placed, route={self.route}, {how})"
