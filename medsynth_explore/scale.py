"""Shard-wise generation, feature extraction and streaming metrics, locally or on Dask.

Work is cut into shards of a fixed size. Shard ``k`` of a sampling run is
seeded with :func:`shard_seed` ``(seed, k)``, so the images do not depend on
how many workers run, or in which order the shards finish. Each shard is one
task: run in this process when no Dask client is given, or on the workers of
a ``dask.distributed`` cluster (``client=`` a :class:`distributed.Client` or
a scheduler address such as ``"tcp://10.0.0.5:8786"``).

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
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import CancelledError, DataError, MedsynthError

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

#: Images per shard (one task) unless told otherwise.
DEFAULT_SHARD_SIZE = 256

ProgressCallback = Callable[[int, int], Any]


# --------------------------------------------------------------------------- seeds and plans
def shard_seed(seed: int, index: int) -> int:
    """The seed of shard ``index`` of a run seeded with ``seed``.

    Derived with :class:`numpy.random.SeedSequence` from the pair, so shards
    get independent streams and the value never depends on worker count or
    order. The result fits in 32 bits (usable by numpy and torch).

    Parameters
    ----------
    seed : int
        Non-negative seed of the whole run.
    index : int
        Shard number, from 0.

    Returns
    -------
    int

    Examples
    --------
    >>> shard_seed(0, 1) == shard_seed(0, 1), shard_seed(0, 1) == shard_seed(0, 2)
    (True, False)
    """
    seed, index = _check_int(seed, "seed", 0), _check_int(index, "shard index", 0)
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint32)[0])


def plan_shards(n: int, shard_size: int = DEFAULT_SHARD_SIZE) -> list[tuple[int, int]]:
    """``(start, count)`` of each shard when ``n`` items are cut into shards.

    Examples
    --------
    >>> plan_shards(5, 2)
    [(0, 2), (2, 2), (4, 1)]
    """
    n = _check_int(n, "n", 1)
    shard_size = _check_int(shard_size, "shard_size", 1)
    return [(s, min(shard_size, n - s)) for s in range(0, n, shard_size)]


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataError(f"{name} must be an integer, got {value!r}.")
    if value < minimum:
        raise DataError(f"{name} must be at least {minimum}, got {value}.")
    return int(value)


# --------------------------------------------------------------------------- clients
def get_client(client: Any = None) -> Any:
    """A :class:`distributed.Client` for ``client``, or ``None`` to run locally.

    Parameters
    ----------
    client : None, distributed.Client or str
        ``None`` runs in this process; a client is returned as is; a string is
        a scheduler address and a new client is connected to it (close it
        yourself with ``client.close()``).

    Raises
    ------
    MedsynthError
        When dask.distributed is not installed or the scheduler cannot be reached.

    Examples
    --------
    >>> get_client(None) is None
    True
    """
    if client is None:
        return None
    if isinstance(client, (str, Path)):
        try:
            from distributed import Client
        except ImportError as exc:
            raise MedsynthError(
                "running on a Dask cluster needs dask.distributed: pip install 'medsynth-explore[dask]'."
            ) from exc
        try:
            return Client(str(client), timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise MedsynthError(
                f"cannot connect to the Dask scheduler at {str(client)!r}: {exc}. "
                "Check the address (e.g. tcp://host:8786) and that the scheduler runs."
            ) from exc
    if not hasattr(client, "submit"):
        raise MedsynthError(
            f"client must be None, a distributed.Client or a scheduler address string; got {type(client).__name__}."
        )
    return client


class _ClientScope:
    """Resolve ``client`` and close it afterwards only when it was made here."""

    def __init__(self, client: Any):
        self.given = client

    def __enter__(self):
        self.client = get_client(self.given)
        self.owned = self.client is not None and self.client is not self.given
        return self.client

    def __exit__(self, *exc):
        if self.owned:
            self.client.close()
        return False


def run_shards(
    func: Callable[..., Any],
    arguments: Sequence[tuple],
    client: Any = None,
    callback: ProgressCallback | None = None,
    weights: Sequence[int] | None = None,
    name: str = "medsynth-shard",
) -> list:
    """Call ``func(*args)`` for every tuple in ``arguments``; results in the same order.

    Without a client the calls run here, one after the other. With one, each
    call is a Dask task; a task lost with a dying worker is run again on
    another worker by the scheduler, while an exception raised by ``func``
    stops the run and is raised here.

    Parameters
    ----------
    func : callable
        Must be importable (or picklable) on the workers.
    arguments : sequence of tuple
    client : None, distributed.Client or str
        See :func:`get_client`.
    callback : callable, optional
        ``callback(done, total)`` after each finished call, in completion
        order; ``done`` and ``total`` are sums of ``weights`` (default 1 per
        call). Return ``False`` to cancel the calls not yet finished.
    weights : sequence of int, optional
        Work units of each call (e.g. images per shard) for the callback.
    name : str
        Prefix of the Dask task keys (shown on the dashboard).

    Returns
    -------
    list

    Raises
    ------
    CancelledError
        When the callback returns ``False``; finished calls have run to the end.
    MedsynthError
        When a task failed on several workers in turn (workers dying).

    Examples
    --------
    >>> run_shards(pow, [(2, 3), (3, 2)])
    [8, 9]
    """
    arguments = [tuple(a) for a in arguments]
    weights = [1] * len(arguments) if weights is None else [int(w) for w in weights]
    if len(weights) != len(arguments):
        raise DataError(f"weights has {len(weights)} entries for {len(arguments)} calls.")
    total, done = sum(weights), 0
    if not arguments:
        return []
    with _ClientScope(client) as cl:
        if cl is None:
            results = []
            for args, w in zip(arguments, weights):
                results.append(func(*args))
                done += w
                if callback is not None and callback(done, total) is False:
                    raise CancelledError(f"cancelled after {len(results)} of {len(arguments)} shards.")
            return results
        return _run_on_dask(cl, func, arguments, weights, callback, name)


def _run_on_dask(client, func, arguments, weights, callback, name) -> list:
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    import uuid

    token = uuid.uuid4().hex[:10]
    futures = [
        client.submit(func, *args, key=f"{name}-{token}-{k:06d}", pure=False, retries=0)
        for k, args in enumerate(arguments)
    ]
    position = {f.key: k for k, f in enumerate(futures)}
    live = dict(zip(position, futures))
    del futures
    results: list = [None] * len(live)
    total, done, finished = sum(weights), 0, 0
    try:
        for fut in as_completed(list(live.values())):
            k = position[fut.key]
            try:
                results[k] = fut.result()
            except KilledWorker as exc:
                raise MedsynthError(
                    f"shard {k} was lost with its worker several times in a row ({exc}); "
                    "the workers may be running out of memory. Finished shards are kept: fix the cause and run again."
                ) from exc
            # Forget the result on the cluster at once: a result still referenced when
            # its worker dies would be computed again by the scheduler.
            live.pop(fut.key).release()
            del fut
            finished += 1
            done += weights[k]
            if callback is not None and callback(done, total) is False:
                raise CancelledError(f"cancelled after {finished} of {len(results)} shards.")
    finally:
        if live:
            client.cancel(list(live.values()))
    return results


# --------------------------------------------------------------------------- per-process caches
_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def _cached(kind: str, ref: Any, kwargs: Mapping | None, build: Callable[[], Any]) -> Any:
    if not isinstance(ref, str):
        return ref  # an object, shipped with the task or scattered
    key = (kind, ref, json.dumps(dict(kwargs or {}), sort_keys=True, default=str))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


def _generator(ref: Any) -> Any:
    def build():
        from .generators import load_generator

        return load_generator(ref)

    return _cached("generator", ref, None, build)


def _encoder(ref: Any, kwargs: Mapping | None) -> Any:
    def build():
        from .features import get_encoder

        return get_encoder(ref, **dict(kwargs or {}))

    return _cached("encoder", ref, kwargs, build)


def resolve_generator(generator: Any) -> Any:
    """A generator object for a name, a path or a generator (returned as is).

    Examples
    --------
    >>> class G:
    ...     name, sha256, card = "g", "0" * 64, {}
    ...     def sample(self, n, **kw): ...
    >>> resolve_generator(G()).name
    'g'
    """
    if isinstance(generator, Path):
        generator = str(generator)
    if isinstance(generator, str):
        try:
            return _generator(generator)
        except ImportError as exc:
            raise MedsynthError(f"cannot load generator {generator!r}: medsynth_explore.generators is not available ({exc}).") from exc
    if not callable(getattr(generator, "sample", None)):
        raise DataError(
            f"generator must be a name, a checkpoint path or a Generator with a .sample() method; got {type(generator).__name__}."
        )
    return generator


def _remote_ref(obj: Any, client: Any) -> Any:
    """What to pass to tasks for ``obj``: a name as is, an object scattered once to every worker."""
    if obj is None or isinstance(obj, str) or client is None:
        return obj
    return client.scatter(obj, broadcast=True, hash=False)


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


def conditions_table(conditions: Any, n: int) -> Any:
    """Normalise ``conditions``: ``None``, one dict for all, or a DataFrame of ``n`` rows.

    Examples
    --------
    >>> conditions_table([{"age": 40}, {"age": 50}], 2).shape
    (2, 1)
    """
    if conditions is None or isinstance(conditions, Mapping):
        return None if conditions is None else dict(conditions)
    if isinstance(conditions, (list, tuple)):
        if not all(isinstance(c, Mapping) for c in conditions):
            raise DataError("conditions given as a list must hold one dict per image.")
        conditions = pd.DataFrame(list(conditions))
    if not isinstance(conditions, pd.DataFrame):
        raise DataError(
            f"conditions must be a dict (same for every image), a DataFrame or a list of dicts (one per image); got {type(conditions).__name__}."
        )
    if len(conditions) != n:
        raise DataError(f"conditions has {len(conditions)} rows but n={n}; give one row per image or a single dict.")
    return conditions.reset_index(drop=True)


def shard_conditions(table: Any, start: int, count: int) -> Any:
    """The conditions of images ``start .. start+count`` (a dict is shared by all)."""
    if isinstance(table, pd.DataFrame):
        return table.iloc[start : start + count].reset_index(drop=True)
    return table


def sample_shard(generator: Any, count: int, seed: int, conditions: Any = None, prompt: Any = None,
                 steps: Any = None, guidance: Any = None, callback: ProgressCallback | None = None) -> Any:
    """Sample one shard of ``count`` images and check what came back.

    Examples
    --------
    >>> from medsynth_explore.data import ImageSet
    >>> class G:
    ...     name, sha256, card = "g", "0" * 64, {}
    ...     def sample(self, n, seed=None, **kw):
    ...         return ImageSet(np.random.default_rng(seed).random((n, 1, 4, 4), np.float32))
    >>> len(sample_shard(G(), 3, seed=1))
    3
    """
    gen = resolve_generator(generator)
    out = gen.sample(count, conditions=conditions, prompt=prompt, seed=seed, steps=steps, guidance=guidance, callback=callback)
    if not hasattr(out, "images") or not hasattr(out, "metadata"):
        raise MedsynthError(f"generator {getattr(gen, 'name', gen)!r} returned {type(out).__name__}, not an ImageSet.")
    if len(out) != count:
        raise MedsynthError(f"generator {getattr(gen, 'name', gen)!r} returned {len(out)} images when {count} were asked for.")
    return out


# --------------------------------------------------------------------------- sources -> shard specs
def _source_specs(source: Any, shard_size: int, client: Any) -> tuple[list[tuple], list[int]]:
    """Cut a data source into shard specs ``(kind, ...)`` a worker can turn into images, and their sizes."""
    from .data import ImageSet, as_image_array

    if isinstance(source, Sampling):
        n = _check_int(source.n, "n", 1)
        table = conditions_table(source.conditions, n)
        gen_ref = source.generator if isinstance(source.generator, (str, Path)) else _remote_ref(source.generator, client)
        if isinstance(gen_ref, Path):
            gen_ref = str(gen_ref)
        plan = plan_shards(n, shard_size)
        specs = [
            ("sample", gen_ref, count, shard_seed(source.seed, k), shard_conditions(table, start, count),
             source.prompt, source.steps, source.guidance)
            for k, (start, count) in enumerate(plan)
        ]
        return specs, [c for _, c in plan]
    if isinstance(source, (str, Path)):
        folder = Path(source).expanduser().resolve()
        if (folder / "manifest.json").is_file():
            from .export import read_manifest

            manifest = read_manifest(folder)
            shards = manifest["shards"]
            return [("export", str(folder), int(s["index"])) for s in shards], [int(s["count"]) for s in shards]
        from .data import load_dataset

        source = load_dataset(source)
    if isinstance(source, (list, tuple)) and source and all(isinstance(s, (ImageSet, np.ndarray)) or hasattr(s, "shape") for s in source):
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
        from .export import read_shard

        return read_shard(spec[1], spec[2]).images
    if kind == "sample":
        _, gen_ref, count, seed, cond, prompt, steps, guidance = spec
        return sample_shard(gen_ref, count, seed, cond, prompt, steps, guidance).images
    raise DataError(f"unknown shard kind {kind!r}.")  # pragma: no cover - internal


def _resolve_metric(metric: Any) -> Callable[[], Any]:
    """A factory of fresh accumulators for a name, a class/factory or an accumulator instance."""
    if isinstance(metric, str):
        from . import metrics as metric_module

        names = {n.lower(): n for n in dir(metric_module)}
        for cand in (f"streaming{metric}", metric):
            attr = names.get(cand.lower().replace("-", "").replace("_", ""))
            obj = getattr(metric_module, attr, None) if attr else None
            if isinstance(obj, type) and hasattr(obj, "update"):
                return obj
        raise DataError(
            f"unknown streaming metric {metric!r}; use e.g. 'fid', 'kid' or a class such as medsynth_explore.metrics.StreamingFID."
        )
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


def _encode_task(spec: tuple, enc_ref: Any, enc_kwargs: Mapping | None, batch_size: Any,
                 factories: Mapping | None, real: Any, want_features: bool):
    images = _shard_images(spec)
    enc = _encoder(enc_ref, enc_kwargs)
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
    shard_size = _check_int(shard_size, "shard_size", 1)
    with _ClientScope(client) as cl:
        specs, weights = _source_specs(data, shard_size, cl)
        enc_ref = _remote_ref(encoder, cl) if not isinstance(encoder, str) else encoder
        results = run_shards(
            _encode_task,
            [(s, enc_ref, encoder_kwargs, batch_size, None, None, True) for s in specs],
            client=cl, callback=callback, weights=weights, name="medsynth-features",
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
        in :mod:`medsynth_explore.metrics`. An instance serves as a template
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
    shard_size = _check_int(shard_size, "shard_size", 1)
    with _ClientScope(client) as cl:
        tasks, weights, sides = [], [], []
        enc_ref = _remote_ref(encoder, cl) if not isinstance(encoder, str) else encoder
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
        side: np.concatenate([f for (f, _), s in zip(results, sides) if s == side])
        for side in ("real", "fake")
        if side in sides
    }
    return state, feats
