"""The state one exploration holds; every Explorer panel is a view over a :class:`Session`.

A session holds the reference (real) images, one or more generators, the
synthetic images drawn so far, their features under one encoder, and what is
derived from them (metrics, a UMAP map, privacy distances). Everything a panel
shows is computed here, in plain Python, so that it can be tested and
scripted without widgets:

>>> from medsynth_explore.session import Session
>>> s = Session(reference="phantomcxr", generators=["phantomcxr-physics"], n_reference=200)  # doctest: +SKIP
>>> s.generate(16, conditions={"findings": ["effusion"]}, seed=0)  # doctest: +SKIP
>>> s.metrics()  # doctest: +SKIP

Panels subscribe with :meth:`Session.on` and are told when samples,
features or the active generator change.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .data import ImageSet, load_dataset
from .errors import DataError, MedsynthError

__all__ = ["Session", "InpaintResult", "Embedding", "describe_samples", "warm_up_umap", "enable_umap_cache"]

DEFAULT_METRICS = ("fid", "kid", "precision", "recall", "density", "coverage")


@dataclass
class InpaintResult:
    """Before, after and what changed, for one inpainting run."""

    before: np.ndarray  # (C, H, W)
    after: np.ndarray  # (C, H, W)
    mask: np.ndarray  # (H, W) bool, True = regenerated
    psnr_outside: float
    ssim_outside: float
    probs_before: pd.Series | None = None
    probs_after: pd.Series | None = None
    result: ImageSet | None = field(default=None, repr=False)

    @property
    def difference(self) -> np.ndarray:
        """after - before, (C, H, W), in [-1, 1]."""
        return self.after - self.before

    @property
    def probability_change(self) -> pd.Series | None:
        """Reference classifier output after minus before (None without a classifier)."""
        if self.probs_before is None or self.probs_after is None:
            return None
        return self.probs_after - self.probs_before


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
    max_samples : int
        Synthetic images kept per generator; older ones are dropped first, so
        memory stays bounded however long the session runs.
    seed : int
        Seed of everything the session draws on its own (splits, UMAP, subsets).
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
    ) -> None:
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
        self._encoder_spec = encoder
        self._encoder = None
        self._classifier = None
        self._classifier_error: str | None = None
        self._clip = None
        self._clip_error: str | None = None
        self.generators: dict[str, Any] = {}
        self.synthetic: dict[str, ImageSet] = {}
        self._syn_features: dict[str, np.ndarray] = {}
        self._ref_features: np.ndarray | None = None
        self._streams: dict[str, dict] = {}  # generator -> streaming metric states (live panel)
        self._privacy_features: tuple[np.ndarray, np.ndarray] | None = None  # (train, holdout) features
        self._observers: dict[str, list[Callable]] = defaultdict(list)
        self._embedding = None
        self._train, self._holdout = train, holdout
        self.active: str | None = None
        for g in generators:
            self.add_generator(g)

    # ------------------------------------------------------------------ observers
    def on(self, event: str, fn: Callable[..., None]) -> None:
        """Call ``fn(**payload)`` on ``event``: "samples", "active", "generators", "features"."""
        self._observers[event].append(fn)

    def _emit(self, event: str, **payload: Any) -> None:
        for fn in list(self._observers[event]):
            fn(**payload)

    # ------------------------------------------------------------------ generators
    def add_generator(self, source: Any, name: str | None = None, **kwargs: Any) -> str:
        """Load a generator (name, path or object) into the session; returns its session name."""
        from .generators import Generator, load_generator

        gen = source if isinstance(source, Generator) else load_generator(source, **kwargs)
        name = name or getattr(gen, "name", None) or str(source)
        self.generators[name] = gen
        self.synthetic.setdefault(name, ImageSet(np.zeros((0,) + self.reference.images.shape[1:], np.float32)))
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
            from .features import get_encoder

            self._encoder = get_encoder(self._encoder_spec)
        return self._encoder

    @property
    def classifier(self):
        """The reference classifier, or None when its checkpoint is missing (see :attr:`classifier_error`)."""
        if self._classifier is None and self._classifier_error is None:
            from .features.reference_classifier import ReferenceClassifier

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
                from .features.domain_clip import load_domain_clip

                self._clip = load_domain_clip()
            except (MedsynthError, ImportError) as exc:
                self._clip_error = str(exc)
        return self._clip

    @property
    def classifier_error(self) -> str | None:
        """Why :attr:`classifier` is None, if it is."""
        _ = self.classifier
        return self._classifier_error

    # ------------------------------------------------------------------ sampling
    def generate(self, n: int, generator: str | None = None, keep: bool = True, **kwargs: Any) -> ImageSet:
        """Draw ``n`` images from a generator; keyword arguments go to ``Generator.sample``.

        With ``keep`` the images join the session's synthetic set (and its
        features are computed for the metrics and the map).
        """
        name = generator or self.active
        gen = self.generator(name)
        out = gen.sample(n, **kwargs)
        if keep:
            self.add_samples(out, name)
        return out

    def add_samples(self, samples: ImageSet, generator: str | None = None) -> None:
        """Add synthetic images (from anywhere) to the session under ``generator``."""
        name = generator or self.active
        if name not in self.synthetic:
            self.synthetic[name] = ImageSet(np.zeros((0,) + samples.images.shape[1:], np.float32))
        feats = self.encoder.encode(samples.images)
        merged = ImageSet.concat([self.synthetic[name], samples], source=f"session:{name}") if len(self.synthetic[name]) else samples
        old = self._syn_features.get(name)
        feats = feats if old is None or len(old) == 0 else np.concatenate([old, feats])
        if len(merged) > self.max_samples:
            drop = len(merged) - self.max_samples
            merged = merged.subset(slice(drop, None))
            feats = feats[drop:]
        self.synthetic[name] = merged
        self._syn_features[name] = feats
        streams = self._streams.get(name)
        if streams is not None:
            if len(merged) < streams["n"] + len(samples):  # old samples were dropped: states must forget them too
                del self._streams[name]
            else:
                new_feats = feats[-len(samples):]
                for state in streams["states"].values():
                    state.update(new_feats, real=False)
                streams["n"] += len(samples)
        if self._embedding is not None:
            self._embedding.place(name, feats[-len(samples):] if len(samples) <= len(feats) else feats)
        self._emit("samples", generator=name, n_new=len(samples))

    def clear_samples(self, generator: str | None = None) -> None:
        """Forget the synthetic images (of one generator, or all)."""
        names = [generator] if generator else list(self.synthetic)
        for name in names:
            self.synthetic[name] = self.synthetic[name].subset([]) if len(self.synthetic[name]) else self.synthetic[name]
            self._syn_features.pop(name, None)
            self._streams.pop(name, None)
            if self._embedding is not None:
                self._embedding.clear(name)
        self._emit("samples", generator=generator, n_new=0)

    # ------------------------------------------------------------------ features
    def reference_features(self) -> np.ndarray:
        """Features of the reference set (computed once)."""
        if self._ref_features is None:
            self._ref_features = self.encoder.encode(self.reference.images)
        return self._ref_features

    def synthetic_features(self, generator: str | None = None) -> np.ndarray:
        """Features of the synthetic images kept for ``generator``."""
        name = generator or self.active
        feats = self._syn_features.get(name)
        if feats is None:
            return np.zeros((0, self.reference_features().shape[1]), np.float32)
        return feats

    # ------------------------------------------------------------------ metrics
    def metrics(self, generator: str | None = None, names: Sequence[str] = DEFAULT_METRICS, real_mask=None, synthetic_mask=None,
                k: int = 5) -> dict[str, float]:
        """Distribution metrics of the kept synthetic images against the reference.

        ``real_mask`` / ``synthetic_mask`` (boolean arrays) restrict either side,
        e.g. to a lasso selection or a subgroup.
        """
        from . import metrics as M

        real = self.reference_features()
        syn = self.synthetic_features(generator)
        if real_mask is not None:
            real = real[np.asarray(real_mask, bool)]
        if synthetic_mask is not None:
            syn = syn[np.asarray(synthetic_mask, bool)]
        if len(syn) < 2 or len(real) < 2:
            raise DataError(f"metrics need at least 2 images on each side; have {len(real)} real and {len(syn)} synthetic. Generate more.")
        out: dict[str, float] = {}
        if "fid" in names:
            out["fid"] = float(M.fid(real, syn))
        if "kid" in names:
            mean, std = M.kid(real, syn, seed=self.seed)
            out["kid"], out["kid_std"] = float(mean), float(std)
        prdc_names = [n for n in ("precision", "recall", "density", "coverage") if n in names]
        if prdc_names:
            kk = min(k, len(syn) - 1, len(real) - 1)
            res = M.prdc(real, syn, k=kk)
            out.update({n: float(res[n]) for n in prdc_names})
        return out

    def live_metrics(self, generator: str | None = None, k: int = 5) -> dict[str, float]:
        """FID, KID, precision, recall, density and coverage from streaming states.

        The states (:class:`~medsynth_explore.metrics.StreamingFID`,
        ``StreamingKID``, ``StreamingPRDC``) hold sufficient statistics and
        are updated as samples arrive, so a refresh costs milliseconds rather
        than a recomputation from all features. FID and PRDC equal the batch
        values; KID is the streaming block estimate (mean and spread over 10
        disjoint blocks), comparable across refreshes but not identical to
        :func:`~medsynth_explore.metrics.kid` with random subsets.
        """
        from .metrics import StreamingFID, StreamingKID, StreamingPRDC

        name = generator or self.active
        syn = self.synthetic_features(name)
        if len(syn) <= k:
            raise DataError(f"live metrics need more than {k} synthetic images; have {len(syn)}. Generate more.")
        streams = self._streams.get(name)
        if streams is None:
            real = self.reference_features()
            states = {"fid": StreamingFID(), "kid": StreamingKID(), "prdc": StreamingPRDC(k=k)}
            for state in states.values():
                state.update(real, real=True)
                state.update(syn, real=False)
            streams = self._streams[name] = {"n": len(syn), "states": states}
        st = streams["states"]
        kid_mean, kid_std = st["kid"].compute()
        return {"fid": float(st["fid"].compute()), "kid": float(kid_mean), "kid_std": float(kid_std), **st["prdc"].compute()}

    def fairness(self, by: Sequence[str] = ("sex",), generator: str | None = None, metric: str = "coverage",
                 n_boot: int = 100, min_group: int = 8) -> pd.DataFrame:
        """One metric per subgroup, with bootstrap intervals, the worst group and the gap.

        Subgroups come from the metadata of both sides (requested conditions
        on the synthetic side, ground truth on the real side); ``age`` is
        binned (``age_group``). Computed by
        :func:`medsynth_explore.metrics.by_group`; nearest-neighbour metrics
        resample distinct rows only, so a duplicated row is never its own
        neighbour. The table's ``attrs`` hold ``difference``, ``ratio``,
        ``worst``, ``best`` and ``overall``.
        """
        from .metrics.subgroups import by_group

        name = generator or self.active
        syn_set = self.synthetic[name]
        if len(syn_set) == 0:
            raise DataError("no synthetic images yet; generate some first.")
        by = ["age_group" if c == "age" else c for c in by]
        for c in by:
            col = "age" if c == "age_group" else c
            if col not in self.reference.metadata.columns or col not in syn_set.metadata.columns:
                raise DataError(f"cannot group by {c!r}: it must be a column of both the reference and the synthetic metadata.")
        nn_metric = metric in ("precision", "recall", "density", "coverage")
        result = by_group(lambda r, s: _single_metric(metric, r, s, self.seed), metric, self.reference_features(),
                          self.reference.metadata, self.synthetic_features(name), syn_set.metadata, by, n_boot=n_boot,
                          seed=self.seed, higher_is_better=metric not in ("fid", "kid"), min_n=min_group,
                          dedupe_bootstrap=nn_metric)
        table = result.by_group.rename(columns={"n": "n_synthetic"}).reset_index(names="group")
        table = table[np.isfinite(table["value"].astype(float))].reset_index(drop=True)
        if table.empty:
            raise DataError(f"no subgroup of {list(by)} has at least {min_group} images on both sides; generate more.")
        table.insert(1, "metric", metric)
        worst = result.worst()
        table["worst"] = table["group"] == worst
        values = table.set_index("group")["value"].astype(float)
        best = values.idxmax() if result.higher_is_better else values.idxmin()
        table.attrs.update(difference=result.difference(), ratio=result.ratio(), worst=worst, best=str(best),
                           overall=float(result.overall))
        return table

    # ------------------------------------------------------------------ inpainting
    def inpaint(self, image: np.ndarray, mask: np.ndarray, generator: str | None = None, **kwargs: Any) -> InpaintResult:
        """Regenerate the region where ``mask`` is 1 and report what changed.

        PSNR and SSIM are measured outside the mask (the context that must be
        kept); the reference classifier's outputs before and after show what
        changed inside.
        """
        from . import metrics as M

        image = np.asarray(image, np.float32)
        if image.ndim == 2:
            image = image[None]
        mask = np.asarray(mask)
        if mask.shape != image.shape[-2:]:
            raise DataError(f"mask has shape {mask.shape} but the image is {image.shape[-2:]}; draw the mask on this image.")
        if not mask.any():
            raise DataError("the mask is empty: paint the region to regenerate first.")
        if mask.all():
            raise DataError("the mask covers the whole image: leave some context to keep (or use Generate).")
        out = self.generator(generator).inpaint(image[None], mask.astype(np.float32)[None, None], **kwargs)
        after = out.images[0]
        psnr_out = float(M.psnr(image[0], after[0], mask=mask.astype(bool)))
        ssim_out = float(M.ssim(image[0], after[0], mask=mask.astype(bool)))
        before_p = after_p = None
        if self.classifier is not None:
            pred = self.classifier.predict(np.stack([image, after]))
            before_p, after_p = pred.iloc[0], pred.iloc[1]
        return InpaintResult(image, after, mask.astype(bool), psnr_out, ssim_out, before_p, after_p, out)

    # ------------------------------------------------------------------ embedding
    def embedding(self, **umap_kwargs: Any):
        """The UMAP map of real and synthetic features (fitted on first use, see :class:`Embedding`)."""
        if self._embedding is None:
            self._embedding = Embedding(self.reference_features(), seed=self.seed, **umap_kwargs)
            for name, feats in self._syn_features.items():
                if len(feats):
                    self._embedding.place(name, feats)
        return self._embedding

    def nearest_reference(self, features: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """Indices and Euclidean distances of the k nearest reference images."""
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=min(k, len(self.reference))).fit(self.reference_features())
        d, i = nn.kneighbors(np.atleast_2d(features))
        return i, d

    # ------------------------------------------------------------------ privacy
    def privacy_sets(self) -> tuple[ImageSet, ImageSet]:
        """(train, holdout) used by :meth:`privacy`."""
        if self._train is not None and self._holdout is not None:
            return self._train, self._holdout
        parts = self.reference.split({"train": 0.5, "holdout": 0.5}, seed=self.seed)
        return parts["train"], parts["holdout"]

    def privacy(self, generator: str | None = None, quantile: float = 0.01) -> dict[str, Any]:
        """Nearest-neighbour distances synthetic-to-train vs held-out-to-train, copy rate, closest pairs.

        Computed by :func:`medsynth_explore.metrics.copy_rate`: the threshold is
        the ``quantile`` of held-out-to-train distances, and a synthetic image
        nearer than that to a training image counts as a probable copy.
        """
        from .metrics import copy_rate
        from .metrics.privacy import nn_distances

        syn = self.synthetic_features(generator)
        if len(syn) == 0:
            raise DataError("no synthetic images yet; generate some first.")
        train, holdout = self.privacy_sets()
        if self._privacy_features is None:  # the sets never change: encode them once per session
            self._privacy_features = (self.encoder.encode(train.images), self.encoder.encode(holdout.images))
        tf, hf = self._privacy_features
        res = copy_rate(tf, syn, hf, q=quantile)
        d_syn, i_syn = nn_distances(syn, tf)
        order = np.argsort(d_syn)
        return {
            "synthetic_to_train": res["synthetic_to_train"],
            "holdout_to_train": res["heldout_to_train"],
            "threshold": res["threshold"],
            "quantile": quantile,
            "copy_rate": res["copy_rate"],
            "closest": [(int(j), int(i_syn[j]), float(d_syn[j])) for j in order[:8]],
            "train": train,
        }

    # ------------------------------------------------------------------ trilemma
    def trilemma(self, n: int = 64, seed: int = 0, names: Sequence[str] | None = None, callback=None) -> pd.DataFrame:
        """Speed, quality and coverage of every loaded generator, measured now on this machine.

        Each generator draws ``n`` fresh images (seeded); speed is images per
        second of that draw, quality is FID and precision, diversity is
        recall and coverage against the reference.
        """
        from . import metrics as M

        rows = []
        real = self.reference_features()
        names = list(names or self.generators)
        for j, name in enumerate(names):
            gen = self.generators[name]
            t0 = time.perf_counter()
            out = gen.sample(n, seed=seed)
            seconds = time.perf_counter() - t0
            feats = self.encoder.encode(out.images)
            res = M.prdc(real, feats, k=min(5, n - 1))
            rows.append({"generator": name, "family": gen.card.get("family"), "images_per_s": n / seconds,
                         "fid": float(M.fid(real, feats)), "precision": res["precision"], "recall": res["recall"],
                         "coverage": res["coverage"], "n": n})
            if callback is not None and callback(j + 1, len(names)) is False:
                break
        return pd.DataFrame(rows)


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
                if (isinstance(obj, CPUDispatcher) and obj.__module__ == name
                        and isinstance(getattr(obj, "_cache", None), NullCache)):
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

    def __init__(self, reference_features: np.ndarray, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1,
                 n_epochs: int = 200) -> None:
        import warnings

        import umap

        enable_umap_cache()
        self.model = umap.UMAP(n_neighbors=min(n_neighbors, len(reference_features) - 1), min_dist=min_dist,
                               random_state=seed, n_components=2, transform_seed=seed, n_epochs=n_epochs)
        with warnings.catch_warnings():  # a seeded UMAP runs single-threaded, which umap announces on every fit
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            self.reference = self.model.fit_transform(np.asarray(reference_features, np.float32)).astype(np.float32)
        self.synthetic: dict[str, np.ndarray] = {}

    def place(self, name: str, features: np.ndarray) -> np.ndarray:
        """Place new synthetic points into the map (no refit); returns their coordinates."""
        xy = self.model.transform(np.asarray(features, np.float32)).astype(np.float32)
        old = self.synthetic.get(name)
        self.synthetic[name] = xy if old is None else np.concatenate([old, xy])
        return xy

    def clear(self, name: str) -> None:
        """Forget the synthetic points of ``name``."""
        self.synthetic.pop(name, None)


def _single_metric(metric: str, real: np.ndarray, syn: np.ndarray, seed: int) -> float:
    from . import metrics as M

    if metric == "fid":
        return float(M.fid(real, syn))
    if metric == "kid":
        return float(M.kid(real, syn, seed=seed)[0])
    return float(M.prdc(real, syn, k=min(5, len(syn) - 1, len(real) - 1))[metric])


def describe_samples(session: Session, samples: ImageSet) -> pd.DataFrame:
    """Per-image view of generated images: requested conditions, what the reference classifier sees, CLIPScore.

    CLIPScore (``100 * max(cos, 0)`` with the domain CLIP) is computed against
    the prompt when one was given, else against the report text in the
    metadata; it is absent (NaN) when the domain CLIP is not installed.
    """
    meta = samples.metadata
    keep = [c for c in ("age", "sex", "cardiomegaly", "nodule", "effusion", "pneumothorax", "prompt", "report", "seed") if c in meta.columns]
    out = meta[keep].copy()
    clf = session.classifier
    if clf is not None:
        seen = clf.predict(samples.images).rename(columns={"age": "age_seen"})
        out = pd.concat([out.reset_index(drop=True), seen.reset_index(drop=True)], axis=1)
    texts = None
    if "prompt" in meta.columns and meta["prompt"].notna().all() and (meta["prompt"].astype(str).str.len() > 0).all():
        texts = meta["prompt"].astype(str).tolist()
    elif "report" in meta.columns:
        texts = meta["report"].astype(str).tolist()
    clip = session.domain_clip
    out["clip_score"] = np.nan
    if texts is not None and clip is not None:
        from .metrics import clip_score

        out["clip_score"] = clip_score(clip.encode_image(samples.images), clip.encode_text(texts, truncate=True), convention="100max")
    return out
