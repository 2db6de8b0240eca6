"""Shard-wise generation, feature extraction and streaming metrics, locally or on Dask.

Work is cut into shards of a fixed size (the shard plan, seeds and runner
live in :mod:`medsynth_explore.shards` and are re-exported here). Shard
``k`` of a sampling run is seeded with :func:`shard_seed` ``(seed, k)``, so
the images do not depend on how many workers run, or in which order the
shards finish. Each shard is one task: run in this process when no Dask
client is given, or on the workers of a ``dask.distributed`` cluster
(``client=`` a :class:`distributed.Client` or a scheduler address such as
``"tcp://10.0.0.5:8786"``).

Results come back in shard order. Streaming metric states are computed per
shard on the workers and merged here by addition, in shard order, so the
local and the distributed paths give bit-identical states.

Examples
--------
>>> import numpy as np
>>> feats = distributed_features(np.zeros((5, 1, 8, 8), np.float32), "pixels",
...                              shard_size=2, encoder_kwargs={"size": 4})
>>> feats.shape
(5, 16)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .errors import DataError
from .shards import (  # noqa: F401 - the shared shard pieces, re-exported where they were first public
    DEFAULT_SHARD_SIZE,
    ClientScope,
    ProgressCallback,
    check_int,
    conditions_table,
    get_client,
    plan_shards,
    read_manifest,
    read_shard,
    remote_ref,
    resolve_encoder,
    resolve_generator,
    run_shards,
    sample_shard,
    shard_conditions,
    shard_seed,
)

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "Sampling",
    "shard_seed",
    "plan_shards",
    "get_client",
    "run_shards",
    "distributed_features",
    "distributed_metric_state",
    "merge_states",
    "distributed_neighbours",
    "distributed_embedding",
    "distributed_place",
]

# Former private names, kept for code that imported them from here.
_check_int, _ClientScope, _remote_ref, _encoder = check_int, ClientScope, remote_ref, resolve_encoder


# --------------------------------------------------------------------------- sampling shards
@dataclass(frozen=True)
class Sampling:
    """Images to be made by a generator on the workers, shard by shard.

    Pass it wherever a data source is accepted (:func:`distributed_features`,
    :func:`distributed_metric_state`): each shard is sampled where it is
    encoded, and only features or metric states travel back. Shard ``k`` is
    sampled with seed :func:`shard_seed` ``(seed, k)``, exactly as
    :func:`medsynth_explore.export.export` does, so the same settings give
    the same images as an export (before its 16-bit PNG quantisation).

    Parameters
    ----------
    generator : str, path or Generator
        Name or checkpoint path (loaded once per worker), or a generator object.
    n : int
        Number of images.
    conditions : dict, DataFrame or list of dict, optional
        One set of conditions for all images, or one row per image.
    prompt : str, optional
    seed : int
    steps, guidance : optional
        Sampler settings passed to ``generator.sample``.

    Examples
    --------
    >>> Sampling("phantomcxr-physics", n=10, seed=3).n
    10
    """

    generator: Any
    n: int
    conditions: Any = None
    prompt: str | None = None
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None


# --------------------------------------------------------------------------- sources -> shard specs
def _source_specs(source: Any, shard_size: int, client: Any) -> tuple[list[tuple], list[int]]:
    """Cut a data source into shard specs ``(kind, ...)`` a worker can turn into images, and their sizes."""
    from .data import ImageSet, as_image_array

    if isinstance(source, Sampling):
        n = check_int(source.n, "n", 1)
        table = conditions_table(source.conditions, n)
        gen_ref = source.generator if isinstance(source.generator, (str, Path)) else remote_ref(source.generator, client)
        if isinstance(gen_ref, Path):
            gen_ref = str(gen_ref)
        plan = plan_shards(n, shard_size)
        specs = [
            (
                "sample",
                gen_ref,
                count,
                shard_seed(source.seed, k),
                shard_conditions(table, start, count),
                source.prompt,
                source.steps,
                source.guidance,
            )
            for k, (start, count) in enumerate(plan)
        ]
        return specs, [c for _, c in plan]
    if isinstance(source, (str, Path)):
        folder = Path(source).expanduser().resolve()
        if (folder / "manifest.json").is_file():
            manifest = read_manifest(folder)
            shards = manifest["shards"]
            return [("export", str(folder), int(s["index"])) for s in shards], [int(s["count"]) for s in shards]
        from .data import load_dataset

        source = load_dataset(source)
    if (
        isinstance(source, (list, tuple))
        and source
        and all(isinstance(s, (ImageSet, np.ndarray)) or hasattr(s, "shape") for s in source)
    ):
        parts = [s.images if isinstance(s, ImageSet) else as_image_array(s) for s in source]
    else:
        arr = source.images if isinstance(source, ImageSet) else as_image_array(source)
        if len(arr) == 0:
            raise DataError("got an empty image set; nothing to encode.")
        parts = [arr[s : s + c] for s, c in plan_shards(len(arr), shard_size)]
    sizes = [len(p) for p in parts]
    if client is not None:
        parts = client.scatter(parts, hash=False)
    return [("array", p) for p in parts], sizes


def _shard_images(spec: tuple) -> np.ndarray:
    kind = spec[0]
    if kind == "array":
        return spec[1]
    if kind == "export":
        return read_shard(spec[1], spec[2]).images
    if kind == "sample":
        _, gen_ref, count, seed, cond, prompt, steps, guidance = spec
        return sample_shard(gen_ref, count, seed, cond, prompt, steps, guidance).images
    raise DataError(f"unknown shard kind {kind!r}.")  # pragma: no cover - internal


def _resolve_metric(metric: Any) -> Callable[[], Any]:
    """A factory of fresh accumulators for a registered metric name, a class/factory or an accumulator instance."""
    if isinstance(metric, str):
        from .errors import MetricError
        from .metrics.registry import streaming_class

        try:
            return streaming_class(metric)
        except MetricError as exc:
            raise DataError(f"{exc} Give a registered metric name (e.g. 'fid', 'kid', 'prdc') or an accumulator class.") from exc
    if hasattr(metric, "update") and not isinstance(metric, type):
        template = copy.deepcopy(metric)
        if hasattr(template, "reset"):
            template.reset()
        return lambda: copy.deepcopy(template)
    if callable(metric):
        return metric
    raise DataError(f"metric must be a name, a streaming accumulator class or instance; got {type(metric).__name__}.")


def merge_states(states: Iterable[Any]) -> Any:
    """Merge streaming metric states by addition, left to right.

    Uses ``a + b`` when the accumulator defines it, else ``a.merge(b)`` (in
    place or returning the merged state). The inputs are not modified.

    Examples
    --------
    >>> merge_states([1, 2, 3])
    6
    """
    states = list(states)
    if not states:
        raise DataError("no states to merge.")
    total = copy.deepcopy(states[0])
    for s in states[1:]:
        if hasattr(type(total), "__add__"):
            total = total + s
        elif hasattr(total, "merge"):
            merged = total.merge(s)
            total = total if merged is None else merged
        else:
            raise DataError(f"{type(total).__name__} states cannot be merged: they define neither + nor merge().")
    return total


def _encode_task(
    spec: tuple,
    enc_ref: Any,
    enc_kwargs: Mapping | None,
    batch_size: Any,
    factories: Mapping | None,
    real: Any,
    want_features: bool,
):
    images = _shard_images(spec)
    enc = resolve_encoder(enc_ref, enc_kwargs)
    feats = np.asarray(enc.encode(images, batch_size=batch_size), dtype=np.float32)
    states = None
    if factories:
        states = {}
        for name, factory in factories.items():
            acc = factory()
            acc.update(feats, real=real)
            states[name] = acc
    return feats if want_features else None, states


# --------------------------------------------------------------------------- public
def distributed_features(
    data: Any,
    encoder: Any = "pixels",
    client: Any = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    encoder_kwargs: Mapping | None = None,
    batch_size: int | None = None,
    callback: ProgressCallback | None = None,
) -> np.ndarray:
    """Features of every image of ``data``, one shard per task.

    Parameters
    ----------
    data : ImageSet, array (N, C, H, W), list of those (one per shard), folder or Sampling
        A folder written by :func:`medsynth_explore.export.export` is read
        shard by shard on the workers (so it must be on a file system they
        see); other folders are loaded here with
        :func:`~medsynth_explore.data.load_dataset` and shipped in shards.
        A :class:`Sampling` is generated on the workers.
    encoder : str or Encoder
        A name for :func:`~medsynth_explore.features.get_encoder` (built once
        per worker) or an encoder object (sent to each worker once).
    client : None, distributed.Client or str
        Run locally, on this client, or on the scheduler at this address.
    shard_size : int
        Images per task (ignored for lists, export folders: their shards are kept).
    encoder_kwargs : dict, optional
        Passed to ``get_encoder`` with a name.
    batch_size : int, optional
        Images per forward pass inside a task.
    callback : callable, optional
        ``callback(done_images, total_images)``; return ``False`` to cancel.

    Returns
    -------
    numpy.ndarray, float32, shape (N, D)
        Rows in the order of the images. Local and distributed runs agree
        exactly when the encoder is deterministic for a fixed batch.

    Examples
    --------
    >>> x = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)
    >>> f = distributed_features(x, "pixels", shard_size=4, encoder_kwargs={"size": 8})
    >>> bool(np.array_equal(f, x.reshape(6, -1)))
    True
    """
    shard_size = check_int(shard_size, "shard_size", 1)
    with ClientScope(client) as cl:
        specs, weights = _source_specs(data, shard_size, cl)
        enc_ref = remote_ref(encoder, cl) if not isinstance(encoder, str) else encoder
        results = run_shards(
            _encode_task,
            [(s, enc_ref, encoder_kwargs, batch_size, None, None, True) for s in specs],
            client=cl,
            callback=callback,
            weights=weights,
            name="medsynth-features",
        )
    return np.concatenate([f for f, _ in results])


def distributed_metric_state(
    metrics: Any,
    real: Any = None,
    fake: Any = None,
    encoder: Any = "pixels",
    client: Any = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    encoder_kwargs: Mapping | None = None,
    batch_size: int | None = None,
    return_features: bool = False,
    callback: ProgressCallback | None = None,
):
    """Streaming metric states over real and synthetic images, computed per shard and merged.

    Every shard is encoded where it lives (or is sampled, for a
    :class:`Sampling`); a fresh accumulator per metric is updated with its
    features (``update(features, real=True/False)``); the partial states come
    back and are merged by addition in shard order, real shards first. Call
    ``.compute()`` on the result.

    Parameters
    ----------
    metrics : accumulator class, instance, name, or dict name -> any of these
        E.g. ``medsynth_explore.metrics.StreamingFID``; a name is looked up
        in the metric registry (:func:`medsynth_explore.metrics.list_metrics`). An instance serves as a template
        (copied and reset).
    real, fake : data source, optional
        Anything :func:`distributed_features` accepts; at least one.
    encoder, client, shard_size, encoder_kwargs, batch_size, callback
        As in :func:`distributed_features`.
    return_features : bool
        Also return ``{"real": array, "fake": array}`` of the features.

    Returns
    -------
    state or dict of states (as ``metrics`` was given), and the features when asked.

    Examples
    --------
    >>> class Count:  # the smallest additive streaming state
    ...     def __init__(self): self.n = {True: 0, False: 0}
    ...     def update(self, f, real): self.n[real] += len(f)
    ...     def __add__(self, o):
    ...         c = Count(); c.n = {k: self.n[k] + o.n[k] for k in self.n}; return c
    >>> x = np.zeros((5, 1, 8, 8), np.float32)
    >>> distributed_metric_state(Count, real=x, fake=x[:2], shard_size=2).n
    {True: 5, False: 2}
    """
    if real is None and fake is None:
        raise DataError("give real and/or fake images to compute metric states on.")
    single = not isinstance(metrics, Mapping)
    factories = {"_": _resolve_metric(metrics)} if single else {k: _resolve_metric(v) for k, v in metrics.items()}
    shard_size = check_int(shard_size, "shard_size", 1)
    with ClientScope(client) as cl:
        tasks, weights, sides = [], [], []
        enc_ref = remote_ref(encoder, cl) if not isinstance(encoder, str) else encoder
        for side, source in (("real", real), ("fake", fake)):
            if source is None:
                continue
            specs, sizes = _source_specs(source, shard_size, cl)
            weights += sizes
            sides += [side] * len(specs)
            tasks += [(s, enc_ref, encoder_kwargs, batch_size, factories, side == "real", return_features) for s in specs]
        results = run_shards(_encode_task, tasks, client=cl, callback=callback, weights=weights, name="medsynth-metrics")
    merged = {name: merge_states([st[name] for _, st in results]) for name in factories}
    state = merged["_"] if single else merged
    if not return_features:
        return state
    feats = {
        side: np.concatenate([f for (f, _), s in zip(results, sides) if s == side]) for side in ("real", "fake") if side in sides
    }
    return state, feats


# --------------------------------------------------------------------------- the map at scale
def _feature_shards(x: Any, shard_size: int) -> list[np.ndarray]:
    """Row blocks of a feature array, or the blocks of a list given as such (float32)."""
    from .metrics._validate import check_features

    if isinstance(x, (list, tuple)):
        parts = [check_features(p, "feature shard", dtype=np.float32) for p in x]
        if not parts or len({p.shape[1] for p in parts}) != 1:
            raise DataError("give feature shards of one dimension (a non-empty list of (n, D) arrays).")
        return parts
    arr = np.asarray(x)
    if arr.ndim != 2 or not len(arr):
        raise DataError(f"features must have shape (N, D) with N > 0, got {arr.shape}.")
    return [check_features(arr[s : s + c], "features", dtype=np.float32) for s, c in plan_shards(len(arr), shard_size)]


def _neighbour_block(query: np.ndarray, data: np.ndarray, k: int, offset: int, self_offset: int | None):
    """Task: the k nearest rows of ``data`` (a shard starting at row ``offset``) for each query row, exact."""
    from .metrics.knn import _exact

    q = np.asarray(query, np.float32)
    d = np.asarray(data, np.float32)
    kk = min(k, len(d) - (1 if self_offset is not None else 0))
    if kk < 1:
        return np.zeros((len(q), 0)), np.zeros((len(q), 0), np.int64)
    rows = None if self_offset is None else np.arange(len(q)) + self_offset
    dist, idx = _exact(q, d, kk, rows)
    return dist, idx + offset


def distributed_neighbours(
    query: Any,
    data: Any,
    k: int,
    client: Any = None,
    shard_size: int = 10_000,
    exclude_self: bool = False,
    callback: ProgressCallback | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest ``data`` rows of every ``query`` row, one task per (query shard, data shard) pair.

    Each task computes the exact k nearest rows of one query shard within
    one data shard (blocked float32 brute force); the driver keeps only the
    k best per query row over the data shards, so it never holds more than
    the query shard's ``k * n_data_shards`` candidates. Shards are sent to
    the workers once. With ``exclude_self`` (query and data the same set,
    cut the same way) a row is not its own neighbour.

    Returns
    -------
    (indices, distances) : int64 and float64 arrays (n_query, k), nearest first.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    >>> idx, d = distributed_neighbours(x, x, 2, shard_size=20, exclude_self=True)
    >>> from medsynth_explore.metrics.knn import self_knn
    >>> bool((idx == self_knn(x, 2).indices).all())
    True
    """
    q_parts = _feature_shards(query, shard_size)
    d_parts = q_parts if exclude_self and query is data else _feature_shards(data, shard_size)
    if q_parts[0].shape[1] != d_parts[0].shape[1]:
        raise DataError(f"query features have {q_parts[0].shape[1]} dimensions but data features {d_parts[0].shape[1]}.")
    n_data = sum(len(p) for p in d_parts)
    k = check_int(k, "k", 1)
    if k > n_data - (1 if exclude_self else 0):
        raise DataError(f"asked for {k} neighbours among {n_data} rows.")
    if exclude_self and [len(p) for p in q_parts] != [len(p) for p in d_parts]:
        raise DataError("exclude_self needs the query and the data to be the same set, cut into the same shards.")
    q_off = np.cumsum([0] + [len(p) for p in q_parts])
    d_off = np.cumsum([0] + [len(p) for p in d_parts])
    with ClientScope(client) as cl:
        qs = cl.scatter(q_parts, hash=False) if cl is not None else q_parts
        ds = qs if d_parts is q_parts else (cl.scatter(d_parts, hash=False) if cl is not None else d_parts)
        tasks = [
            (qs[i], ds[j], k, int(d_off[j]), 0 if (exclude_self and i == j) else None)
            for i in range(len(q_parts))
            for j in range(len(d_parts))
        ]
        results = run_shards(
            _neighbour_block,
            tasks,
            client=cl,
            callback=callback,
            weights=[len(q_parts[i]) for i in range(len(q_parts)) for _ in d_parts],
            name="medsynth-neighbours",
        )
    idx = np.empty((int(q_off[-1]), k), np.int64)
    dist = np.empty((int(q_off[-1]), k))
    nd = len(d_parts)
    for i in range(len(q_parts)):
        blocks = results[i * nd : (i + 1) * nd]
        dd = np.concatenate([b[0] for b in blocks], axis=1)
        ii = np.concatenate([b[1] for b in blocks], axis=1)
        order = np.argsort(dd, axis=1, kind="stable")[:, :k]
        dist[q_off[i] : q_off[i + 1]] = np.take_along_axis(dd, order, 1)
        idx[q_off[i] : q_off[i + 1]] = np.take_along_axis(ii, order, 1)
    return idx, dist


def distributed_embedding(
    reference_features: Any,
    client: Any = None,
    shard_size: int = 10_000,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    n_epochs: int = 200,
    callback: ProgressCallback | None = None,
):
    """A UMAP map of the reference whose neighbour graph is computed on the workers.

    What is distributed: the neighbour graph, the N^2 part of a fit (one
    task per pair of feature shards, :func:`distributed_neighbours`). What is
    not: umap-learn's fuzzy graph and layout optimisation, which run here in
    one process on the graph (N x n_neighbors) and the coordinates (N x 2)
    -- single-threaded, since a seeded layout must be; the features array
    is read here only by umap-learn's fit (pass a memory-mapped ``.npy`` for
    a reference larger than memory). Place new points with
    :func:`distributed_place` or the returned map's ``transform``.

    Returns
    -------
    Embedding
        Built with :meth:`~medsynth_explore.session.Embedding.from_layout`;
        ``session.use_map(emb)`` puts it in a session.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(80, 4)).astype(np.float32)
    >>> emb = distributed_embedding(x, shard_size=40, n_neighbors=5, n_epochs=10)  # doctest: +SKIP
    >>> emb.reference.shape  # doctest: +SKIP
    (80, 2)
    """
    import warnings

    from .session.embedding import Embedding, _umap_modules

    shards = _feature_shards(reference_features, shard_size)
    n = sum(len(p) for p in shards)
    if n < 3:
        raise DataError(f"a map needs at least 3 reference points, got {n}.")
    k = int(min(n_neighbors, n - 1))
    idx, dist = distributed_neighbours(shards, shards, k - 1, client=client, exclude_self=True, callback=callback)
    graph_i = np.concatenate([np.arange(n)[:, None], idx], axis=1).astype(np.int32)
    graph_d = np.concatenate([np.zeros((n, 1)), dist], axis=1).astype(np.float32)
    x = reference_features if isinstance(reference_features, np.ndarray) else np.concatenate(shards)
    umap_, _ = _umap_modules()
    model = umap_.UMAP(
        n_neighbors=k,
        min_dist=min_dist,
        random_state=seed,
        transform_seed=seed,
        n_epochs=n_epochs,
        precomputed_knn=(graph_i, graph_d, None),
        force_approximation_algorithm=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        coords = model.fit_transform(np.asarray(x, np.float32))
    return Embedding.from_layout(x, coords, model._a, model._b, seed=seed, n_neighbors=k, min_dist=min_dist, n_epochs=n_epochs)


def distributed_place(
    embedding: Any, features: Any, client: Any = None, shard_size: int = 10_000, callback: ProgressCallback | None = None
) -> np.ndarray:
    """Coordinates of new points in ``embedding``, their reference neighbours found on the workers.

    The neighbour search (new points x reference, one task per pair of
    shards) is distributed; the short layout step that moves only the new
    points runs here (:meth:`~medsynth_explore.session.Embedding.place_neighbours`).
    Gives the coordinates ``embedding.transform(features)`` gives, up to the
    float32 rounding of the neighbour distances (computed in other blocks),
    which the few layout epochs can amplify for a point here and there.

    Examples
    --------
    >>> from medsynth_explore.session import Embedding
    >>> x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    >>> emb = Embedding.from_layout(x, x[:, :2], a=1.58, b=0.9, n_neighbors=5)
    >>> bool(np.allclose(distributed_place(emb, x[:4], shard_size=16), emb.transform(x[:4])))
    True
    """
    ref_shards = _feature_shards(embedding.features, shard_size)
    idx, dist = distributed_neighbours(features, ref_shards, embedding.n_neighbors, client=client, callback=callback)
    return embedding.place_neighbours(idx, dist)
