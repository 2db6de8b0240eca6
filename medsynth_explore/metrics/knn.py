"""Nearest neighbours for the metrics and the map: an exact blocked route and an approximate one.

Every k-NN metric (precision, recall, density, coverage, authenticity, copy
rate, the nearest-neighbour distances of the privacy checks) and the UMAP
map ask this module for neighbours. Two routes answer:

``"exact"``
    Squared Euclidean distances over blocks of rows (``||x||^2 + ||y||^2 -
    2 x.y``, float64 for the metrics), so that no N x M matrix is held whole.
    Its cost grows as ``n_query * n_data * dim``: 20,000 x 20,000 at 64
    dimensions takes about 4 s on two cores, 100,000 x 100,000 at 768 about
    an hour.
``"approximate"``
    Candidates from an inverted-file partition, then exact distances. The
    data are projected on their leading principal axes (``pca_dim``, default
    64), cut into ``n_clusters`` cells by faiss k-means, and the queries of
    each cell are compared by one matrix product with the points of the
    ``n_probe`` cells nearest to it, which keeps the candidates to about 4 %
    of the data; the cells are shared among one thread per core. The best
    ``candidates`` of each query are then re-ranked with true distances in
    all dimensions (ranked by float32 products of centred rows; the k kept
    measured from their differences), so a reported distance is a true
    distance to about 1e-6 relative; what the
    route can get wrong is only a neighbour that fell outside the probed
    cells or the projection's best candidates.
    ``benchmarks/bench_map_scale.py`` measures its error on every metric
    against the exact route.

``"auto"`` (the default) takes the exact route while ``n_query * n_data *
dim`` stays below :data:`APPROX_WORK` (about 15 s of exact work on two cores)
or the data have fewer than :data:`APPROX_MIN_DATA` rows, and the
approximate route above. Each choice is logged (logger
``medsynth_explore.metrics.knn``, level INFO) and collected by
:func:`record_routes`, which :func:`~medsynth_explore.evaluate` uses to
write the route into a report's provenance.

The neighbours of a set among itself (:func:`self_knn`: the k-th-neighbour
radii of PRDC, the nearest other training image of authenticity, the UMAP
graph) are cached per content hash of the features, route and seed, for the
largest k asked so far: a reference set's radii are computed once however
many metrics, subgroups, panels and maps ask for them.

Why faiss: umap-learn's own neighbour search, pynndescent, built the graph
of 100,000 x 768 features in 97 s at 96 % recall on this machine; faiss's
k-means gives the cells in about a second, the products over probed cells
run at BLAS speed, and neither needs numba compilation in a fresh process.
PRDC, authenticity and copy rate at 100,000 x 100,000 x 768 take about a
minute on two cores (``benchmarks/bench_map_scale.py``).

Examples
--------
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(200, 8))
>>> res = knn(x[:5], x, k=3)
>>> res.route, res.indices[:, 0].tolist()
('exact', [0, 1, 2, 3, 4])
>>> self_knn(x, k=2).distances.shape
(200, 2)
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np

from ..errors import MetricError
from ._validate import check_features

__all__ = [
    "ROUTES",
    "APPROX_WORK",
    "APPROX_MIN_DATA",
    "KnnResult",
    "ApproximateIndex",
    "sq_dists",
    "features_hash",
    "choose_route",
    "knn",
    "self_knn",
    "record_routes",
    "clear_cache",
    "memo",
]

_log = logging.getLogger(__name__)

#: Routes a caller can ask for.
ROUTES = ("auto", "exact", "approximate")
#: ``n_query * n_data * dim`` above which ``"auto"`` takes the approximate route.
APPROX_WORK = 1.0e11
#: Fewer data rows than this always take the exact route under ``"auto"``.
APPROX_MIN_DATA = 10_000


def sq_dists(x: np.ndarray, y: np.ndarray, x_sq=None, y_sq=None) -> np.ndarray:
    """Squared Euclidean distances between rows (clipped at 0).

    Examples
    --------
    >>> sq_dists(np.zeros((1, 2)), np.array([[3.0, 4.0]])).tolist()
    [[25.0]]
    """
    xs = (x * x).sum(1) if x_sq is None else x_sq
    ys = (y * y).sum(1) if y_sq is None else y_sq
    d = x @ y.T
    d *= -2.0
    d += xs[:, None]
    d += ys[None, :]
    np.maximum(d, 0.0, out=d)
    return d


def _block_rows(n_cols: int, budget: int = 1 << 22) -> int:
    """Rows per block so that one block of distances holds about ``budget`` values."""
    return max(1, budget // max(n_cols, 1))


def features_hash(x: np.ndarray) -> str:
    """Content hash of a feature array (its shape, dtype and bytes); the key of the neighbour caches.

    Examples
    --------
    >>> a = np.arange(6.0).reshape(3, 2)
    >>> features_hash(a) == features_hash(a.copy()), features_hash(a) == features_hash(a + 1)
    (True, False)
    """
    arr = np.ascontiguousarray(x)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.shape}|{arr.dtype.str}|".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


@dataclass(frozen=True)
class KnnResult:
    """The k nearest data rows of each query row.

    Attributes
    ----------
    distances : ndarray (n_query, k), float64
        Euclidean distances, ascending along each row.
    indices : ndarray (n_query, k), int64
        Data rows, in the same order.
    route : str
        ``"exact"`` or ``"approximate"``.
    """

    distances: np.ndarray
    indices: np.ndarray
    route: str

    def first(self, k: int) -> "KnnResult":
        """The first ``k`` neighbours only."""
        return KnnResult(self.distances[:, :k], self.indices[:, :k], self.route)


# ------------------------------------------------------------------------------------ route choice
_local = threading.local()


@contextmanager
def record_routes() -> Iterator[list]:
    """Collect the route of every neighbour search made in this thread inside the block.

    Yields a list that fills with one dict per search (``what``,
    ``n_query``, ``n_data``, ``dim``, ``k``, ``route``).

    Examples
    --------
    >>> with record_routes() as log:
    ...     _ = knn(np.zeros((3, 2)), np.eye(2), k=1)
    >>> [(e["what"], e["route"]) for e in log]
    [('knn', 'exact')]
    """
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    log: list = []
    stack.append(log)
    try:
        yield log
    finally:
        stack.remove(log)


def _note(what: str, n_query: int, n_data: int, dim: int, k: int, route: str) -> None:
    entry = {"what": what, "n_query": int(n_query), "n_data": int(n_data), "dim": int(dim), "k": int(k), "route": route}
    _log.info("%s: %d x %d x %d, k=%d -> %s route", what, n_query, n_data, dim, k, route)
    for log in getattr(_local, "stack", None) or ():
        log.append(entry)


def choose_route(n_query: int, n_data: int, dim: int, route: str = "auto") -> str:
    """``"exact"`` or ``"approximate"`` for a search of ``n_query`` rows among ``n_data`` rows of ``dim`` features.

    Examples
    --------
    >>> choose_route(20_000, 20_000, 64), choose_route(100_000, 100_000, 768)
    ('exact', 'approximate')
    >>> choose_route(100_000, 100_000, 768, route="exact")
    'exact'
    """
    if route not in ROUTES:
        raise MetricError(f"knn route must be one of {ROUTES}, got {route!r}.")
    if route != "auto":
        return route
    if n_data < APPROX_MIN_DATA or float(n_query) * float(n_data) * float(dim) < APPROX_WORK:
        return "exact"
    return "approximate"


# ------------------------------------------------------------------------------------ exact route
def _exact(
    query: np.ndarray, data: np.ndarray, k: int, self_rows: Optional[np.ndarray], data_sq: Optional[np.ndarray] = None
) -> tuple[np.ndarray, np.ndarray]:
    """k nearest rows by blocked brute force; ``self_rows[i]`` (a data row) is excluded for query i.

    ``data_sq`` (the rows' squared norms, ``(data * data).sum(1)``) spares a pass over ``data`` when given.
    """
    qs = (query * query).sum(1)
    ds = (data * data).sum(1) if data_sq is None else data_sq
    dist = np.empty((len(query), k))
    idx = np.empty((len(query), k), np.int64)
    step = _block_rows(len(data), budget=1 << 23)  # 64 queries among 100,000 rows in one product
    for s in range(0, len(query), step):
        d = sq_dists(query[s : s + step], data, qs[s : s + step], ds)
        if self_rows is not None:
            rows = np.arange(len(d))
            d[rows, self_rows[s : s + step]] = np.inf
        part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else np.tile(np.arange(d.shape[1]), (len(d), 1))
        pd_ = np.take_along_axis(d, part, 1)
        order = np.argsort(pd_, axis=1, kind="stable")
        idx[s : s + step] = np.take_along_axis(part, order, 1)
        dist[s : s + step] = np.take_along_axis(pd_, order, 1)
    return np.sqrt(dist), idx


# ------------------------------------------------------------------------------------ approximate route
def _faiss():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a core dependency
        raise MetricError(
            "the approximate neighbour route needs faiss (pip install faiss-cpu); or pass knn_route='exact'."
        ) from exc
    return faiss


class ApproximateIndex:
    """Inverted-file candidates with exact re-ranking (see the module docstring).

    Parameters
    ----------
    data : array (N, D)
        The rows to search among (kept as float32).
    seed : int
        Seed of the PCA sample and of k-means.
    n_clusters : int, optional
        Cells of the partition (default ``round(sqrt(N))``, at least 16).
    n_probe : int, optional
        Cells searched per query cell (default: about 4 % of the cells, at least 12).
    pca_dim : int
        Dimensions of the projection the candidates are found in (no projection at or below it).
    candidates : int
        Candidates per query measured in all dimensions (at least ``k``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2000, 16)).astype(np.float32)
    >>> ix = ApproximateIndex(x, n_clusters=16, n_probe=16)  # every cell probed: exact
    >>> d, i = ix.search(x[:3], k=2, self_rows=np.arange(3))
    >>> bool((i != np.arange(3)[:, None]).all())
    True
    """

    def __init__(
        self,
        data: Any,
        seed: int = 0,
        n_clusters: Optional[int] = None,
        n_probe: Optional[int] = None,
        pca_dim: int = 64,
        candidates: int = 16,
    ) -> None:
        faiss = _faiss()
        x = np.ascontiguousarray(check_features(data, "data features", min_n=2, dtype=np.float32))
        n, d = x.shape
        self.seed, self.candidates = int(seed), int(candidates)
        rng = np.random.default_rng(seed)
        sample = x[rng.choice(n, min(n, 20_000), replace=False)].astype(np.float64)
        self.mean = sample.mean(0)
        # the data, centred: distances from centred rows lose less to cancellation in float32
        self.data = x - self.mean.astype(np.float32)
        self._sq = np.einsum("ij,ij->i", self.data, self.data, dtype=np.float64)
        self.components = None
        if d > pca_dim:
            xc = sample - self.mean
            _, vecs = np.linalg.eigh(xc.T @ xc)
            self.components = np.ascontiguousarray(vecs[:, ::-1][:, :pca_dim].astype(np.float32))
        self.projected = self._project(self.data, centred=True)
        self._psq = np.einsum("ij,ij->i", self.projected, self.projected)
        c = int(n_clusters or max(16, round(math.sqrt(n))))
        c = max(1, min(c, n // 4 if n >= 64 else 1))
        self.n_clusters = c
        self.n_probe = int(min(c, n_probe or max(12, math.ceil(0.04 * c))))
        km = faiss.Kmeans(self.projected.shape[1], c, niter=12, seed=int(seed) + 1, max_points_per_centroid=128)
        km.train(self.projected)
        self._centroids = faiss.IndexFlatL2(self.projected.shape[1])
        self._centroids.add(km.centroids)
        _, assign = self._centroids.search(self.projected, 1)
        assign = assign[:, 0]
        self._order = np.argsort(assign, kind="stable")
        self._starts = np.searchsorted(assign[self._order], np.arange(c + 1))
        _, self._probes = self._centroids.search(km.centroids, self.n_probe)

    def _project(self, x: np.ndarray, centred: bool = False) -> np.ndarray:
        xc = x if centred else (x - self.mean).astype(np.float32)
        if self.components is None:
            return np.ascontiguousarray(xc, np.float32)
        return np.ascontiguousarray(xc @ self.components, np.float32)

    @property
    def nbytes(self) -> int:
        """Memory held by the index (the data, their projection, the cell lists)."""
        return int(self.data.nbytes + self.projected.nbytes + self._order.nbytes + self._sq.nbytes + self._psq.nbytes)

    def search(
        self, query: Any, k: int, self_rows: Optional[np.ndarray] = None, candidates: Optional[int] = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(distances, indices) of the k nearest data rows of each query row, ascending.

        ``self_rows[i]`` is a data row query ``i`` must not return (itself, in
        a self-join). ``candidates`` (default: the index's) is how many rows
        found in the projection are measured in all dimensions.

        The cells are searched by a pool of threads (one per core, BLAS held
        to one thread each), each comparing its queries with the points of its
        probed cells by one matrix product in the projection.
        """
        q = check_features(query, "query features", dtype=np.float32)
        if q.shape[1] != self.data.shape[1]:
            raise MetricError(f"query features have {q.shape[1]} dimensions but the index holds {self.data.shape[1]}.")
        qc = q - self.mean.astype(np.float32)
        q_sq = np.einsum("ij,ij->i", qc, qc, dtype=np.float64)
        extra = 0 if self_rows is None else 1
        need = k + extra
        if need > len(self.data):
            raise MetricError(f"asked for {k} neighbours among {len(self.data) - extra} rows.")
        m = max(need, (self.candidates if candidates is None else int(candidates)) + extra)
        qp = self._project(qc, centred=True)
        _, cell = self._centroids.search(qp, 1)
        cell = cell[:, 0]
        q_order = np.argsort(cell, kind="stable")
        q_starts = np.searchsorted(cell[q_order], np.arange(self.n_clusters + 1))
        dist = np.empty((len(q), k))
        idx = np.empty((len(q), k), np.int64)

        def one_cell(c: int) -> None:
            qi = q_order[q_starts[c] : q_starts[c + 1]]
            if not len(qi):
                return
            cand = np.concatenate([self._order[self._starts[j] : self._starts[j + 1]] for j in self._probes[c]])
            if len(cand) < need:  # too few points in the probed cells: widen to every cell
                cand = np.arange(len(self.data))
            mm = min(m, len(cand))
            proj = qp[qi] @ self.projected[cand].T  # squared distances in the projection, less the queries' norms
            proj *= -2.0
            proj += self._psq[cand][None, :]
            local = np.argpartition(proj, mm - 1, axis=1)[:, :mm] if mm < len(cand) else np.tile(np.arange(mm), (len(qi), 1))
            cand_idx = np.sort(cand[local], axis=1)  # ascending rows: the gather below reads memory in order
            for s in range(0, len(qi), 256):  # the candidates measured in all dimensions
                rows, ci = qi[s : s + 256], cand_idx[s : s + 256]
                block = self.data[ci]
                # ranked by float32 products ...
                d2 = self._sq[ci] + q_sq[rows, None] - 2.0 * np.matmul(block, qc[rows][:, :, None])[:, :, 0]
                if self_rows is not None:
                    d2[ci == self_rows[rows, None]] = np.inf
                order = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < d2.shape[1] else np.argsort(d2, axis=1)
                # ... and the k kept measured from their differences, which cancel nothing
                # (a query's own row, at infinity among at least k + 1 candidates, is never among them)
                diff = np.take_along_axis(block, order[:, :, None], 1)
                diff -= qc[rows][:, None, :]
                best = np.einsum("ijk,ijk->ij", diff, diff).astype(np.float64)
                final = np.argsort(best, axis=1, kind="stable")
                dist[rows] = np.sqrt(np.take_along_axis(best, final, 1))
                idx[rows] = np.take_along_axis(np.take_along_axis(ci, order, 1), final, 1)

        _run_cells(one_cell, self.n_clusters)
        return dist, idx


def _run_cells(work, n_cells: int) -> None:
    """``work(c)`` for every cell, on one thread per core with BLAS held to one thread inside each."""
    threads = max(1, min(os.cpu_count() or 1, n_cells))
    if threads == 1:
        for c in range(n_cells):
            work(c)
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1), ThreadPoolExecutor(threads, thread_name_prefix="medsynth-knn") as ex:
        for _ in ex.map(work, range(n_cells)):
            pass


# ------------------------------------------------------------------------------------ caches
class _LRU:
    """A small least-recently-used cache bounded by entries and bytes."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._items: OrderedDict = OrderedDict()  # key -> (value, nbytes)
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key, value, nbytes: int) -> None:
        with self._lock:
            self._items[key] = (value, int(nbytes))
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries or (
                len(self._items) > 1 and sum(b for _, b in self._items.values()) > self.max_bytes
            ):
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_INDEXES = _LRU(max_entries=3, max_bytes=3 << 30)
_GRAPHS = _LRU(max_entries=16, max_bytes=1 << 30)


def clear_cache() -> None:
    """Forget every cached index and neighbour graph."""
    _INDEXES.clear()
    _GRAPHS.clear()


def memo(key: tuple, compute) -> Any:
    """``compute()`` once per ``key`` (a tuple holding a :func:`features_hash`), kept in the graph cache.

    Examples
    --------
    >>> memo(("doc-example", 1), lambda: np.arange(3)).tolist()
    [0, 1, 2]
    """
    value = _GRAPHS.get(key)
    if value is None:
        value = compute()
        _GRAPHS.put(key, value, getattr(value, "nbytes", 0))
    return value


def _index_for(data: np.ndarray, seed: int, key: Optional[str] = None) -> ApproximateIndex:
    x32 = np.ascontiguousarray(data, np.float32)
    key = (key or features_hash(x32), int(seed))
    ix = _INDEXES.get(key)
    if ix is None:
        ix = ApproximateIndex(x32, seed=seed)
        _INDEXES.put(key, ix, ix.nbytes)
    return ix


# ------------------------------------------------------------------------------------ public searches
def knn(
    query: Any, data: Any, k: int, route: str = "auto", seed: int = 0, what: str = "knn", data_sq: Optional[np.ndarray] = None
) -> KnnResult:
    """The ``k`` nearest ``data`` rows of each ``query`` row (Euclidean).

    Parameters
    ----------
    query, data : array-like (n, D), (N, D)
    k : int
        Neighbours per query row (at most N).
    route : {"auto", "exact", "approximate"}
        See the module docstring.
    seed : int
        Seed of the approximate route's partition.
    what : str
        A name for the search in the route log.
    data_sq : ndarray (N,), optional
        ``(data * data).sum(1)`` computed once by a caller that searches the
        same data many times (the map's placements); used by the exact route.

    Returns
    -------
    KnnResult

    Examples
    --------
    >>> r = knn([[0.0], [2.4]], [[0.0], [1.0], [3.0]], k=2)
    >>> r.indices.tolist(), r.distances.round(2).tolist()
    ([[0, 1], [2, 1]], [[0.0, 1.0], [0.6, 1.4]])
    """
    q = check_features(query, "query features", dtype=None)
    x = check_features(data, "data features", dtype=None)
    if q.shape[1] != x.shape[1]:
        raise MetricError(f"query features have {q.shape[1]} dimensions but data features have {x.shape[1]}.")
    k = _check_k(k, len(x))
    chosen = choose_route(len(q), len(x), x.shape[1], route)
    _note(what, len(q), len(x), x.shape[1], k, chosen)
    if chosen == "exact":
        if data_sq is not None and np.shape(data_sq) != (len(x),):
            raise MetricError(f"data_sq must hold one squared norm per data row ({len(x)}), got shape {np.shape(data_sq)}.")
        d, i = _exact(q, x, k, None, data_sq)
        return KnnResult(d, i, chosen)
    # approximate: cached per content of both sides (privacy checks and copy rate ask for the same search)
    x32, q32 = np.ascontiguousarray(x, np.float32), np.ascontiguousarray(q, np.float32)
    data_key = features_hash(x32)
    key = ("knn", features_hash(q32), data_key, int(seed))
    cached = _GRAPHS.get(key)
    if cached is not None and cached.distances.shape[1] >= k:
        return cached.first(k)
    d, i = _index_for(x32, seed, data_key).search(q32, k)
    result = KnnResult(d, i, chosen)
    _GRAPHS.put(key, result, d.nbytes + i.nbytes)
    return result


def self_knn(data: Any, k: int, route: str = "auto", seed: int = 0, what: str = "self-knn") -> KnnResult:
    """The ``k`` nearest *other* rows of each row of ``data``, cached per content hash, route and seed.

    The cache keeps the largest ``k`` computed for a set; a smaller ``k``
    is a slice of it, so PRDC's radii (k = 5), authenticity's nearest other
    training image (k = 1) and the UMAP graph (k = 14) of one reference are
    found once.

    Examples
    --------
    >>> x = np.array([[0.0], [1.0], [3.0]])
    >>> self_knn(x, 1).distances[:, 0].tolist()
    [1.0, 1.0, 2.0]
    """
    x = check_features(data, "features", min_n=2, dtype=None)
    k = _check_k(k, len(x) - 1)
    chosen = choose_route(len(x), len(x), x.shape[1], route)
    if chosen == "approximate":
        x = np.ascontiguousarray(x, np.float32)
    key = (features_hash(x), chosen, int(seed) if chosen == "approximate" else 0)
    cached = _GRAPHS.get(key)
    if cached is not None and cached.distances.shape[1] >= k:
        return cached.first(k)
    _note(what, len(x), len(x), x.shape[1], k, chosen)
    rows = np.arange(len(x))
    if chosen == "exact":
        d, i = _exact(x, x, k, rows)
    else:
        d, i = _index_for(x, seed, key[0]).search(x, k, self_rows=rows)
    result = KnnResult(d, i, chosen)
    _GRAPHS.put(key, result, d.nbytes + i.nbytes)
    return result


def _check_k(k: Any, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise MetricError(f"k must be a positive integer, got {k!r}.")
    if k > n:
        raise MetricError(f"asked for {k} neighbours but only {n} rows can be neighbours.")
    return int(k)
