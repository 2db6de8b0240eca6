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
