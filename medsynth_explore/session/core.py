"""The :class:`Session`: reference data, generators, their sample stores, the judges, and an event bus.

Every Explorer panel is a view over one session; everything a panel shows is
computed by the session (or by :mod:`~medsynth_explore.session.analyses` on
it), in plain Python, so it can be tested and scripted without widgets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from ..data import ImageSet, load_dataset
from ..errors import DataError, MedsynthError
from . import analyses
from .embedding import Embedding
from .events import EVENTS, EventBus, Subscription
from .store import SampleStore

__all__ = ["Session", "DEFAULT_METRICS", "LIVE_METRICS"]

#: Metrics :meth:`Session.metrics` computes when none are named.
DEFAULT_METRICS = ("fid", "kid", "precision", "recall", "density", "coverage")
#: Metrics kept as streaming states for the live panel (each must have a streaming accumulator in the registry).
LIVE_METRICS = ("fid", "kid", "prdc")


class _StoreImages(Mapping):
    """Read-only view ``generator name -> ImageSet`` of a session's kept synthetic images."""

    def __init__(self, stores: dict[str, SampleStore], empty: Callable[[], ImageSet]) -> None:
        self._stores, self._empty = stores, empty

    def __getitem__(self, name: str) -> ImageSet:
        store = self._stores[name]
        return store.images if store.images is not None else self._empty()

    def __iter__(self) -> Iterator[str]:
        return iter(self._stores)

    def __len__(self) -> int:
        return len(self._stores)


class _StoreCoords(Mapping):
    """Read-only view ``generator name -> (N, 2) map coordinates`` of the stores that have points in the map."""

    def __init__(self, stores: dict[str, SampleStore]) -> None:
        self._stores = stores

    def _mapped(self) -> dict[str, np.ndarray]:
        return {k: s.coords for k, s in self._stores.items() if s.coords is not None and len(s.coords)}

    def __getitem__(self, name: str) -> np.ndarray:
        return self._mapped()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapped())

    def __len__(self) -> int:
        return len(self._mapped())


class Session:
    """Reference data, generators, samples, features and derived results of one exploration.

    Parameters
    ----------
    reference : ImageSet, str or path, default "phantomcxr"
        The real images, or anything :func:`~medsynth_explore.load_dataset` reads.
    generators : iterable of str, Generator
        Generators to load (built-in names, checkpoint paths or objects).
    encoder : str or Encoder, optional
        Feature encoder for metrics and the map (default: the package default).
    n_reference : int
        Images of the built-in reference to simulate (ignored for a given set).
    train, holdout : ImageSet, optional
        The generator's training images and images it never saw, for the
        privacy checks. Default: the reference is split in two halves, which
        measures how close samples come to *real* images; pass the real
        training set to measure copying.
    cache : FeatureCache, path, None or False
        On-disk feature cache for the reference and privacy sets. None (the
        default): the package's cache for file-backed sets (a real reference
        of many files is encoded once, then read back), none for in-memory
        sets; a cache or a path: always; False: never.
    max_samples : int
        Synthetic images kept per generator; older ones are dropped first, so
        memory stays bounded however long the session runs.
    seed : int
        Seed of everything the session draws on its own (splits, UMAP, subsets).

    Examples
    --------
    >>> from medsynth_explore.session import Session
    >>> s = Session(reference="phantomcxr", generators=["phantomcxr-physics"], n_reference=200)  # doctest: +SKIP
    >>> s.generate(16, conditions={"findings": ["effusion"]}, seed=0)  # doctest: +SKIP
    >>> s.metrics()  # doctest: +SKIP

    Panels subscribe with :meth:`on` and are told when samples, features or
    the active generator change; the returned subscription's ``remove()``
    stops it.
    """

    def __init__(
        self,
        reference: Any = "phantomcxr",
        generators: Iterable[Any] = ("phantomcxr-physics",),
        encoder: Any = None,
        n_reference: int = 1000,
        size: int = 64,
        train: ImageSet | None = None,
        holdout: ImageSet | None = None,
        max_samples: int = 2048,
        seed: int = 0,
        cache: Any = None,
    ) -> None:
        self._cache = cache
        if isinstance(reference, ImageSet):
            self.reference = reference
        elif isinstance(reference, str) and reference.lower() == "phantomcxr":
            self.reference = load_dataset("phantomcxr", n=n_reference, size=size, seed=10_000 + seed)
        else:
            self.reference = load_dataset(reference)
        if len(self.reference) < 10:
            raise DataError(f"the reference set needs at least 10 images, got {len(self.reference)}.")
        self.seed = int(seed)
        self.max_samples = int(max_samples)
        self.events = EventBus(EVENTS)
        self._encoder_spec = encoder
        self._encoder = None
        self._classifier = None
        self._classifier_error: str | None = None
        self._clip = None
        self._clip_error: str | None = None
        self.generators: dict[str, Any] = {}
        self._stores: dict[str, SampleStore] = {}
        self._ref_features: np.ndarray | None = None
        self._privacy_features: tuple[np.ndarray, np.ndarray] | None = None  # (train, holdout) features
        self._embedding: Embedding | None = None
        self._train, self._holdout = train, holdout
        self.active: str | None = None
        for g in generators:
            self.add_generator(g)

    # ------------------------------------------------------------------ events
    def on(self, event: str, fn: Callable[..., None]) -> Subscription:
        """Call ``fn(**payload)`` on ``event`` ("samples", "active", "generators", "features"); returns the subscription."""
        return self.events.on(event, fn)

    def _emit(self, event: str, **payload: Any) -> None:
        self.events.emit(event, **payload)

    # ------------------------------------------------------------------ generators
    def add_generator(self, source: Any, name: str | None = None, **kwargs: Any) -> str:
        """Load a generator (name, path or object) into the session; returns its session name."""
        from ..generators import Generator, load_generator

        gen = source if isinstance(source, Generator) else load_generator(source, **kwargs)
        name = name or getattr(gen, "name", None) or str(source)
        self.generators[name] = gen
        self._store_for(name)
        if self.active is None:
            self.active = name
        self._emit("generators", names=list(self.generators))
        return name

    def set_active(self, name: str) -> None:
        """Make ``name`` the generator the panels act on."""
        if name not in self.generators:
            raise MedsynthError(f"no generator {name!r} in this session; loaded: {list(self.generators)}.")
        self.active = name
        self._emit("active", name=name)

    def generator(self, name: str | None = None):
        """The generator called ``name`` (default: the active one)."""
        name = name or self.active
        if name not in self.generators:
            raise MedsynthError(f"no generator {name!r} in this session; add one with add_generator().")
        return self.generators[name]

    # ------------------------------------------------------------------ models used to judge
    @property
    def encoder(self):
        """The feature encoder (built on first use)."""
        if self._encoder is None:
            from ..features import get_encoder

            self._encoder = get_encoder(self._encoder_spec)
        return self._encoder

    @property
    def classifier(self):
        """The reference classifier, or None when its checkpoint is missing (see :attr:`classifier_error`)."""
        if self._classifier is None and self._classifier_error is None:
            from ..features.reference_classifier import ReferenceClassifier

            try:
                self._classifier = ReferenceClassifier()
            except MedsynthError as exc:
                self._classifier_error = str(exc)
        return self._classifier

    @property
    def domain_clip(self):
        """The domain CLIP (text and image towers) when its checkpoint is installed, else None."""
        if self._clip is None and self._clip_error is None:
            try:
                from ..features.domain_clip import load_domain_clip

                self._clip = load_domain_clip()
            except (MedsynthError, ImportError) as exc:
                self._clip_error = str(exc)
        return self._clip

    @property
    def classifier_error(self) -> str | None:
        """Why :attr:`classifier` is None, if it is."""
        _ = self.classifier
        return self._classifier_error

    # ------------------------------------------------------------------ samples
    def _store_for(self, name: str) -> SampleStore:
        if name not in self._stores:
            self._stores[name] = SampleStore(name, self.max_samples)
        return self._stores[name]

    def store(self, name: str | None = None) -> SampleStore:
        """The :class:`SampleStore` of generator ``name`` (default: the active one)."""
        name = name or self.active
        if name not in self._stores:
            raise MedsynthError(f"no samples of {name!r} in this session; loaded generators: {list(self.generators)}.")
        return self._stores[name]

    @property
    def synthetic(self) -> Mapping:
        """Kept synthetic images by generator name (a read-only mapping of ImageSets)."""
        return _StoreImages(self._stores, self._empty_set)

    def _empty_set(self) -> ImageSet:
        return ImageSet(np.zeros((0,) + tuple(self.reference.shape[1:]), np.float32))

    def generate(self, n: int, generator: str | None = None, keep: bool = True, **kwargs: Any) -> ImageSet:
        """Draw ``n`` images from a generator; keyword arguments go to ``Generator.sample``.

        With ``keep`` the images join the session's synthetic set (and its
        features are computed for the metrics and the map).
        """
        name = generator or self.active
        out = self.generator(name).sample(n, **kwargs)
        if keep:
            self.add_samples(out, name)
        return out

    def add_samples(self, samples: ImageSet, generator: str | None = None) -> None:
        """Add synthetic images (from anywhere) to the session under ``generator``.

        Their features are computed, they are placed in the map if there is
        one, the oldest images beyond ``max_samples`` are evicted, and a
        "samples" event announces ``generator``, ``n_new`` and ``evicted``.
        """
        name = generator or self.active
        store = self._store_for(name)
        feats = self.encoder.encode(samples)
        coords = None
        if self._embedding is not None:
            if store.coords is None:  # a generator added after the map was fitted
                store.set_coords(self._place(store.features if len(store) else None))
            coords = self._place(feats if len(samples) else None)
        done = store.append(samples, feats, coords)
        self._emit("samples", generator=name, n_new=len(samples), evicted=done.evicted)

    def clear_samples(self, generator: str | None = None) -> None:
        """Forget the synthetic images (of one generator, or all)."""
        for name in [generator] if generator else list(self._stores):
            self.store(name).clear()
        self._emit("samples", generator=generator, n_new=0, evicted=0)

    # ------------------------------------------------------------------ features
    def _encode_set(self, data: ImageSet) -> np.ndarray:
        """Features of a reference-side set, streamed in batches, through the feature cache when it applies."""
        cache = self._cache
        if cache is None and data.file_backed:
            cache = True
        if cache is None or cache is False:
            return self.encoder.encode(data)
        from ..features.cache import FeatureCache, encode_cached

        fc = cache if isinstance(cache, FeatureCache) else FeatureCache(None if cache is True else cache)
        return encode_cached(self.encoder, data, cache=fc)

    def reference_features(self) -> np.ndarray:
        """Features of the reference set (computed once; a file-backed reference streams from disk)."""
        if self._ref_features is None:
            self._ref_features = self._encode_set(self.reference)
        return self._ref_features

    def synthetic_features(self, generator: str | None = None) -> np.ndarray:
        """Features of the synthetic images kept for ``generator``."""
        name = generator or self.active
        store = self._stores.get(name)
        if store is None or store.features is None:
            return np.zeros((0, self.reference_features().shape[1]), np.float32)
        return store.features

    def privacy_sets(self) -> tuple[ImageSet, ImageSet]:
        """(train, holdout) used by :meth:`privacy`."""
        if self._train is not None and self._holdout is not None:
            return self._train, self._holdout
        parts = self.reference.split({"train": 0.5, "holdout": 0.5}, seed=self.seed)
        return parts["train"], parts["holdout"]

    def privacy_features(self) -> tuple[np.ndarray, np.ndarray]:
        """Features of the (train, holdout) sets, encoded once per session (the sets never change)."""
        if self._privacy_features is None:
            train, holdout = self.privacy_sets()
            self._privacy_features = (self._encode_set(train), self._encode_set(holdout))
        return self._privacy_features

    # ------------------------------------------------------------------ metrics
    def metrics(
        self,
        generator: str | None = None,
        names: Sequence[str] = DEFAULT_METRICS,
        real_mask=None,
        synthetic_mask=None,
        k: int = 5,
        knn_route: str = "auto",
    ) -> dict[str, float]:
        """Distribution metrics of the kept synthetic images against the reference.

        ``names`` are metric values or metrics of the registry
        (:func:`medsynth_explore.metrics.list_metrics`); a value with a
        spread (KID) comes with it (``kid_std``). ``real_mask`` /
        ``synthetic_mask`` (boolean arrays) restrict either side, e.g. to a
        lasso selection or a subgroup. ``knn_route`` picks the neighbour
        search of the k-NN metrics (``"auto"``: exact up to the size where
        the approximate route is faster, see
        :func:`medsynth_explore.metrics.knn.choose_route`; ``"exact"``;
        ``"approximate"``).
        """
        from ..metrics.registry import compute_metrics, with_spreads

        real = self.reference_features()
        syn = self.synthetic_features(generator)
        if real_mask is not None:
            real = real[np.asarray(real_mask, bool)]
        if synthetic_mask is not None:
            syn = syn[np.asarray(synthetic_mask, bool)]
        if len(syn) < 2 or len(real) < 2:
            raise DataError(
                f"metrics need at least 2 images on each side; have {len(real)} real and {len(syn)} synthetic. Generate more."
            )
        return compute_metrics(
            with_spreads(names),
            real,
            syn,
            seed=self.seed,
            k=analyses._adaptive_k(k, len(syn), len(real)),
            knn_route=knn_route,
        )

    def live_metrics(self, generator: str | None = None, k: int = 5) -> dict[str, float]:
        """FID, KID, precision, recall, density and coverage from streaming states.

        The states (one per metric of :data:`LIVE_METRICS`, from the
        registry: :class:`~medsynth_explore.metrics.StreamingFID`,
        ``StreamingKID``, ``StreamingPRDC``) hold sufficient statistics and
        are updated as samples arrive, so a refresh costs milliseconds rather
        than a recomputation from all features. FID and PRDC equal the batch
        values; KID is the streaming block estimate (mean and spread over 10
        disjoint blocks), comparable across refreshes but not identical to
        :func:`~medsynth_explore.metrics.kid` with random subsets.
        """
        from ..metrics.registry import get_metric, streaming_state

        name = generator or self.active
        syn = self.synthetic_features(name)
        if len(syn) <= k:
            raise DataError(f"live metrics need more than {k} synthetic images; have {len(syn)}. Generate more.")
        settings = {m: ({"k": k} if "k" in get_metric(m).streaming.settings else {}) for m in LIVE_METRICS}
        factories = {m: (lambda m=m: streaming_state(m, **settings[m])) for m in LIVE_METRICS}
        states = self.store(name).states(self.reference_features(), factories, key=k)
        out: dict[str, float] = {}
        for state in states.values():
            out.update({key: float(v) for key, v in state.values().items()})
        return out

    def fairness(
        self,
        by: Sequence[str] | str = ("sex",),
        generator: str | None = None,
        metric: str = "coverage",
        n_boot: int = 100,
        min_group: int = 8,
    ) -> pd.DataFrame:
        """One metric per subgroup, with bootstrap intervals, the worst group and the gap.

        Subgroups come from the metadata of both sides (requested conditions
        on the synthetic side, ground truth on the real side); ``age`` is
        binned (``age_group``); ``by`` is a column name or a list of them
        (several give intersections). Computed by
        :func:`medsynth_explore.metrics.by_group`; nearest-neighbour metrics
        resample distinct rows only, so a duplicated row is never its own
        neighbour. The table's ``attrs`` hold ``difference``, ``ratio``,
        ``worst``, ``best`` and ``overall``.
        """
        return analyses.fairness(self, by, generator, metric, n_boot, min_group)

    # ------------------------------------------------------------------ inpainting, map, privacy, trilemma
    def inpaint(self, image: np.ndarray, mask: np.ndarray, generator: str | None = None, **kwargs: Any) -> analyses.InpaintResult:
        """Regenerate the region where ``mask`` is 1 and report what changed.

        PSNR and SSIM are measured outside the mask (the context that must be
        kept); the reference classifier's outputs before and after show what
        changed inside.
        """
        return analyses.inpaint(self, image, mask, generator, **kwargs)

    @property
    def has_map(self) -> bool:
        """Whether the UMAP map has been fitted (by :meth:`embedding`)."""
        return self._embedding is not None

    def embedding(self, **umap_kwargs: Any) -> Embedding:
        """The UMAP map of real and synthetic features (fitted on first use, see :class:`Embedding`).

        Its ``synthetic`` mapping is a live view of the sample stores'
        coordinates, which are evicted together with their images. The fitted
        map is kept in the on-disk map cache (keyed by the reference
        features' hash and the settings), so a new session on the same
        reference loads it instead of refitting; ``cache=False`` among
        ``umap_kwargs`` turns that off.
        """
        if self._embedding is None:
            self.use_map(Embedding(self.reference_features(), seed=self.seed, **umap_kwargs))
        return self._embedding

    def use_map(self, embedding: Embedding) -> Embedding:
        """Use a map made elsewhere (e.g. :meth:`Embedding.from_layout` of a layout fitted on a cluster).

        It must be fitted on this session's reference features, row for row;
        the kept synthetic samples are placed into it.
        """
        if not isinstance(embedding, Embedding):
            raise MedsynthError(f"use_map takes an Embedding, got {type(embedding).__name__}.")
        ref = self.reference_features()
        if embedding.features.shape != ref.shape or not np.array_equal(embedding.features, np.asarray(ref, np.float32)):
            raise DataError(
                f"the map was fitted on {embedding.features.shape[0]} features of {embedding.features.shape[1]} dimensions "
                "that are not this session's reference features; fit it on session.reference_features()."
            )
        embedding.synthetic = _StoreCoords(self._stores)
        self._embedding = embedding
        for store in self._stores.values():
            store.set_coords(self._place(store.features if len(store) else None))
        return embedding

    def _place(self, features: np.ndarray | None) -> np.ndarray:
        """Coordinates of features in the fitted map ((0, 2) for none)."""
        return np.zeros((0, 2), np.float32) if features is None else self._embedding.transform(features)

    def nearest_reference(self, features: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """Indices and Euclidean distances of the k nearest reference images."""
        return analyses.nearest_reference(self, features, k)

    def privacy(self, generator: str | None = None, quantile: float = 0.01) -> dict[str, Any]:
        """Nearest-neighbour distances synthetic-to-train vs held-out-to-train, copy rate, closest pairs.

        Computed by :func:`medsynth_explore.metrics.copy_rate`: the threshold is
        the ``quantile`` of held-out-to-train distances, and a synthetic image
        nearer than that to a training image counts as a probable copy.
        """
        return analyses.privacy(self, generator, quantile)

    def trilemma(self, n: int = 64, seed: int = 0, names: Sequence[str] | None = None, callback=None) -> pd.DataFrame:
        """Speed, quality and coverage of every loaded generator, measured now on this machine.

        Each generator draws ``n`` fresh images (seeded); speed is images per
        second of that draw, quality is FID and precision, diversity is
        recall and coverage against the reference.
        """
        return analyses.trilemma(self, n, seed, names, callback)
