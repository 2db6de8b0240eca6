"""Shards: the unit of work that :mod:`~medsynth_explore.export` and :mod:`~medsynth_explore.scale` share.

Work is cut into shards of a fixed size (:func:`plan_shards`). Shard ``k`` of
a run seeded with ``seed`` is sampled with :func:`shard_seed` ``(seed, k)``,
so images never depend on how many workers run or in which order shards
finish. :func:`run_shards` runs one task per shard, here or on a
``dask.distributed`` cluster (:func:`get_client`, :class:`ClientScope`),
and returns the results in shard order. :func:`sample_shard` samples one
shard of a generator (:func:`resolve_generator` loads a generator once per
process; :func:`resolve_encoder` does the same for encoders), and
:func:`read_manifest` / :func:`read_shard` read a folder written by
:func:`medsynth_explore.export.export` back shard by shard.

This module sits below both ``export`` and ``scale``: they import from it,
never from each other.

Examples
--------
>>> plan_shards(5, 2), run_shards(pow, [(2, 3), (3, 2)])
([(0, 2), (2, 2), (4, 1)], [8, 9])
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import CancelledError, DataError, MedsynthError

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "ClientScope",
    "check_int",
    "conditions_table",
    "get_client",
    "plan_shards",
    "read_manifest",
    "read_shard",
    "remote_ref",
    "resolve_encoder",
    "resolve_generator",
    "run_shards",
    "sample_shard",
    "shard_conditions",
    "shard_seed",
]

#: Images per shard (one task) unless told otherwise.
DEFAULT_SHARD_SIZE = 256
#: ``format`` and ``format_version`` of the ``manifest.json`` of an export folder.
FORMAT = "medsynth-synthetic-dataset"
FORMAT_VERSION = 1
#: File name of an export folder's manifest, written last: its presence marks a finished export.
MANIFEST = "manifest.json"

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
    seed, index = check_int(seed, "seed", 0), check_int(index, "shard index", 0)
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint32)[0])


def plan_shards(n: int, shard_size: int = DEFAULT_SHARD_SIZE) -> list[tuple[int, int]]:
    """``(start, count)`` of each shard when ``n`` items are cut into shards.

    Examples
    --------
    >>> plan_shards(5, 2)
    [(0, 2), (2, 2), (4, 1)]
    """
    n = check_int(n, "n", 1)
    shard_size = check_int(shard_size, "shard_size", 1)
    return [(s, min(shard_size, n - s)) for s in range(0, n, shard_size)]


def check_int(value: Any, name: str, minimum: int) -> int:
    """``value`` as an ``int``, checked to be an integer (not a bool) of at least ``minimum``.

    Raises
    ------
    DataError
        Naming ``name`` and what was given.

    Examples
    --------
    >>> check_int(np.int64(3), "n", 1)
    3
    >>> check_int(0, "n", 1)
    Traceback (most recent call last):
    ...
    medsynth_explore.errors.DataError: n must be at least 1, got 0.
    """
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


class ClientScope:
    """Resolve ``client`` with :func:`get_client`; close it afterwards only when it was made here.

    Examples
    --------
    >>> with ClientScope(None) as client:
    ...     print(client)
    None
    """

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
    with ClientScope(client) as cl:
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
    import uuid

    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    token = uuid.uuid4().hex[:10]
    futures = [
        client.submit(func, *args, key=f"{name}-{token}-{k:06d}", pure=False, retries=0) for k, args in enumerate(arguments)
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


def resolve_encoder(encoder: Any, kwargs: Mapping | None = None) -> Any:
    """An encoder for a name (built once per process with these ``kwargs``), or an encoder object as is.

    Examples
    --------
    >>> enc = resolve_encoder("pixels", {"size": 4})
    >>> enc is resolve_encoder("pixels", {"size": 4}), enc.encode(np.zeros((2, 1, 8, 8), np.float32)).shape
    (True, (2, 16))
    """

    def build():
        from .features import get_encoder

        return get_encoder(encoder, **dict(kwargs or {}))

    return _cached("encoder", encoder, kwargs, build)


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
            raise MedsynthError(
                f"cannot load generator {generator!r}: medsynth_explore.generators is not available ({exc})."
            ) from exc
    if not callable(getattr(generator, "sample", None)):
        raise DataError(
            f"generator must be a name, a checkpoint path or a Generator with a .sample() method; got {type(generator).__name__}."
        )
    return generator


def remote_ref(obj: Any, client: Any) -> Any:
    """What tasks get for ``obj``: a name (or anything, without a client) as is; an object scattered once to every worker.

    Examples
    --------
    >>> remote_ref("phantomcxr-vae", None)
    'phantomcxr-vae'
    """
    if obj is None or isinstance(obj, str) or client is None:
        return obj
    return client.scatter(obj, broadcast=True, hash=False)


# --------------------------------------------------------------------------- sampling shards
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
            f"conditions must be a dict (same for every image), a DataFrame or a list of dicts (one per image); got "
            f"{type(conditions).__name__}."
        )
    if len(conditions) != n:
        raise DataError(f"conditions has {len(conditions)} rows but n={n}; give one row per image or a single dict.")
    return conditions.reset_index(drop=True)


def shard_conditions(table: Any, start: int, count: int) -> Any:
    """The conditions of images ``start .. start+count`` (a dict is shared by all).

    Examples
    --------
    >>> t = conditions_table([{"age": a} for a in (40, 50, 60)], 3)
    >>> shard_conditions(t, 1, 2)["age"].tolist(), shard_conditions({"age": 40}, 1, 2)
    ([50, 60], {'age': 40})
    """
    if isinstance(table, pd.DataFrame):
        return table.iloc[start : start + count].reset_index(drop=True)
    return table


def sample_shard(
    generator: Any,
    count: int,
    seed: int,
    conditions: Any = None,
    prompt: Any = None,
    steps: Any = None,
    guidance: Any = None,
    callback: ProgressCallback | None = None,
) -> Any:
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


# --------------------------------------------------------------------------- export folders, shard by shard
def read_manifest(out: Any) -> dict:
    """The parsed ``manifest.json`` of a folder written by :func:`medsynth_explore.export.export`.

    Raises
    ------
    DataError
        When the folder or its manifest is missing or not valid JSON.

    Examples
    --------
    >>> try:
    ...     read_manifest("/nonexistent")
    ... except DataError as exc:
    ...     print("no manifest.json" in str(exc))
    True
    """
    folder = Path(out).expanduser()
    path = folder / MANIFEST
    if not path.is_file():
        raise DataError(f"{str(folder)!r} has no manifest.json; it is not a finished export (run export() again to resume).")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{str(path)!r} is not valid JSON: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise DataError(f"{str(path)!r} is not a medsynth export manifest (format={manifest.get('format')!r}).")
    return manifest


def read_shard(out: Any, index: int) -> Any:
    """Images and metadata of one shard of an export folder, as an ImageSet.

    Reads the shard's NPZ when the export wrote one, else its PNG files.

    Examples
    --------
    >>> import tempfile
    >>> from medsynth_explore.data import ImageSet
    >>> class Flat:
    ...     name, sha256, card = "flat", "0" * 64, {}
    ...     def sample(self, n, **kw): return ImageSet(np.full((n, 1, 4, 4), 0.5, np.float32))
    >>> from medsynth_explore.export import export
    >>> out = export(Flat(), 3, tempfile.mkdtemp() + "/x", shard_size=2, npz=True)
    >>> len(read_shard(out, 1))
    1
    """
    from .data import ImageSet
    from .data.io import _pil_to_array

    folder = Path(out).expanduser()
    manifest = read_manifest(folder)
    shards = {int(s["index"]): s for s in manifest["shards"]}
    if index not in shards:
        raise DataError(f"{str(folder)!r} has shards 0..{len(shards) - 1}; no shard {index}.")
    s = shards[index]
    start, count = int(s["start"]), int(s["count"])
    meta = pd.read_csv(folder / "metadata.csv").iloc[start : start + count].reset_index(drop=True)
    scale = float(manifest["image"]["scale"])
    npz_files = [f for f in s["files"] if f.endswith(".npz")]
    if npz_files:
        with np.load(folder / npz_files[0], allow_pickle=False) as z:
            images = z["images"].astype(np.float32) / np.float32(scale)
    else:
        from PIL import Image

        arrays = []
        for f in meta["filename"]:
            with Image.open(folder / f) as im:
                a = _pil_to_array(im)
            arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
        images = np.stack(arrays)
    prov = {
        "source": "export",
        "path": str(folder),
        "shard": index,
        "shard_seed": s["seed"],
        "generator": manifest["generator"]["name"],
        "checkpoint_sha256": manifest["generator"]["checkpoint_sha256"],
    }
    return ImageSet(images, meta, prov)
