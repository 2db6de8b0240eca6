"""Streaming accumulators in the torchmetrics style (``update`` / ``compute`` / ``reset``).

Each keeps the sufficient statistics of its metric as state, so a live panel
recomputes in milliseconds after a batch arrives, and partial states built by
several workers combine with ``merge`` (or ``+``).

Every accumulator derives from :class:`StreamingMetric`. A subclass declares
its sufficient statistics once, in ``__init__``, with
:meth:`~StreamingMetric.add_state` (name, default, how two states merge) and
the values derived from them with :meth:`~StreamingMetric.add_cache`; the
base class implements ``reset``, ``merge``, ``+`` and ``copy`` from these
declarations, and each subclass writes only ``update`` and ``compute``:

* :class:`StreamingFID`: per side the count, mean and centred scatter matrix
  (merged with Chan's parallel formula). While the real side is unchanged, its
  covariance factor ``L`` is cached and the congruence ``L^T S_synth L`` is
  updated with each synthetic batch in O(D^2 B); ``compute`` is then one
  symmetric eigenvalue problem.
* :class:`StreamingKID` / :class:`StreamingCMMD`: the features, plus kernel
  sums within fixed blocks of samples (sample ``i`` of a side belongs to
  block ``i % n_blocks``), updated incrementally: a batch of B new samples
  costs B x N / n_blocks kernel evaluations (B x N with ``full=True``, which
  also keeps the sums between blocks). ``compute`` returns the mean and population
  standard deviation of the unbiased MMD^2 over the ``n_blocks`` disjoint
  (real block b, synthetic block b) pairs, i.e. KID on disjoint subsets of
  size about N / n_blocks; :meth:`StreamingKID.compute_full` gives MMD^2 on
  all samples. Merging appends the other state's samples in order (the cross
  kernel terms between workers must be computed), so the merged state equals
  the single-pass state.
* :class:`StreamingPRDC`: the features, the real k-NN radii, and per real
  sample the nearest synthetic distance (coverage) and the number of
  synthetic balls holding it (recall), per synthetic sample the number of
  real balls holding it (precision, density) and its k nearest synthetic
  distances (its ball, which shrinks as samples arrive) -- all updated
  incrementally for new synthetic samples. Adding real samples invalidates
  the cache, rebuilt at the next ``compute``.
"""

from __future__ import annotations

import copy as _copy
from typing import Any, Callable, Optional

import numpy as np

from ..errors import MetricError
from ._validate import check_features
from .fid import _congruence, _cov_from_centred, _psd_factor, _sqrt_trace_sym
from .kernel import poly_kernel, rbf_kernel
from .knn import _block_rows, choose_route, self_knn, sq_dists
from .prdc import cached_radii

__all__ = ["StreamingMetric", "StreamingFID", "StreamingKID", "StreamingCMMD", "StreamingPRDC"]


# --------------------------------------------------------------------------------- state values
class _Side:
    """Count, mean and centred scatter of one side, in float64."""

    def __init__(self):
        self.n = 0
        self.mean = None
        self.scatter = None

    def add_stats(self, n: int, mean: np.ndarray, scatter: np.ndarray) -> None:
        if n == 0:
            return
        if self.n == 0:
            self.n, self.mean, self.scatter = n, mean.copy(), scatter.copy()
            return
        tot = self.n + n
        delta = mean - self.mean
        self.scatter = self.scatter + scatter + np.outer(delta, delta) * (self.n * n / tot)
        self.mean = self.mean + delta * (n / tot)
        self.n = tot

    def add(self, x: np.ndarray) -> None:
        mu = x.mean(0)
        self.add_stats(len(x), mu, _cov_from_centred(x - mu))

    @staticmethod
    def merged(a: "_Side", b: "_Side") -> "_Side":
        """Chan's parallel formula: the statistics of both sides' samples together."""
        out = _copy.deepcopy(a)
        out.add_stats(b.n, b.mean, b.scatter)
        return out


class _Buffer:
    """Rows appended to a float64 array that doubles its capacity (no copy of old rows per batch)."""

    def __init__(self):
        self.data = np.zeros((0, 0))
        self.n = 0

    def append(self, x: np.ndarray) -> None:
        need = self.n + len(x)
        if self.data.shape[0] < need or self.data.shape[1] != x.shape[1]:
            cap = max(need, 2 * self.data.shape[0], 64)
            grown = np.empty((cap, x.shape[1]))
            if self.n:
                grown[: self.n] = self.data[: self.n]
            self.data = grown
        self.data[self.n : need] = x
        self.n = need

    @property
    def rows(self) -> np.ndarray:
        return self.data[: self.n]

    def __deepcopy__(self, memo):
        out = _Buffer()
        out.data, out.n = self.rows.copy(), self.n
        return out

    @staticmethod
    def concatenated(a: "_Buffer", b: "_Buffer") -> "_Buffer":
        out = _copy.deepcopy(a)
        if b.n:
            out.append(b.rows)
        return out


def _same(a: Any, b: Any) -> Any:
    """Merge rule of a value both states must agree on (None: not yet known)."""
    if a is None:
        return b
    if b is not None and a != b:
        raise MetricError(f"cannot merge streams of {a}- and {b}-dimensional features; use one encoder per stream.")
    return a


#: Merge rules by name: how the values of one statistic in two states combine.
MERGE_RULES: dict[str, Callable[[Any, Any], Any]] = {
    "sum": lambda a, b: a + b,
    "cat": _Buffer.concatenated,
    "moments": _Side.merged,
    "same": _same,
}

_DEFAULTS: dict[str, Callable[[], Any]] = {"cat": _Buffer, "moments": _Side}


# --------------------------------------------------------------------------------- base class
class StreamingMetric:
    """Base class of the streaming accumulators: sufficient statistics declared once.

    A subclass calls :meth:`add_state` for each sufficient statistic and
    :meth:`add_cache` for each value derived from them (cleared whenever the
    statistics change by anything other than ``update``), lists the
    constructor settings two mergeable states must share in ``settings``,
    names its results in ``outputs``, and implements ``update(features,
    real)`` and ``compute()``. ``reset``, ``merge``, ``+``, ``copy`` and
    :meth:`values` come from here.

    Merge rules: ``"sum"`` (numbers or arrays added), ``"cat"`` (rows
    appended, for statistics that are the samples themselves), ``"moments"``
    (count, mean and centred scatter, combined with Chan's parallel formula),
    ``"same"`` (a value both must agree on, e.g. the feature dimension), or
    a callable ``merge(mine, theirs) -> merged``.

    Examples
    --------
    >>> class Count(StreamingMetric):
    ...     outputs = ("n_real", "n_synthetic")
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.add_state("counts", default=lambda: np.zeros(2, int), merge="sum")
    ...     def update(self, features, real):
    ...         self.counts[0 if real else 1] += len(self._check(features))
    ...     def compute(self):
    ...         return tuple(int(c) for c in self.counts)
    >>> a, b = Count(), Count()
    >>> a.update(np.zeros((3, 2)), real=True); b.update(np.zeros((2, 2)), real=False)
    >>> (a + b).values()
    {'n_real': 3, 'n_synthetic': 2}
    """

    #: Names of the values ``compute`` returns, in order (see :meth:`values`).
    outputs: tuple[str, ...] = ()
    #: Constructor settings that two states must share to be merged.
    settings: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._state_specs: dict[str, tuple[Callable[[], Any], Callable[[Any, Any], Any]]] = {}
        self._cache_names: list[str] = []
        self.add_state("dim", default=None, merge="same")

    # -- declarations --------------------------------------------------------------------
    def add_state(self, name: str, default: Any = None, merge: str | Callable[[Any, Any], Any] = "sum") -> None:
        """Declare a sufficient statistic: its name, its value after ``reset`` and how two merge.

        ``default`` is a value (copied at every reset) or a zero-argument
        factory; for ``"cat"`` and ``"moments"`` it may be left out.
        """
        rule = MERGE_RULES.get(merge) if isinstance(merge, str) else merge
        if rule is None or not callable(rule):
            raise MetricError(f"unknown merge rule {merge!r} for state {name!r}; use one of {sorted(MERGE_RULES)} or a callable.")
        if default is None and isinstance(merge, str) and merge in _DEFAULTS:
            factory = _DEFAULTS[merge]
        elif callable(default) and not isinstance(default, (np.ndarray, type(None))):
            factory = default
        else:

            def factory(v=default):
                return _copy.deepcopy(v)

        self._state_specs[name] = (factory, rule)
        setattr(self, name, factory())

    def add_cache(self, *names: str) -> None:
        """Declare values derived from the statistics (set to None by ``reset`` and ``merge``)."""
        for name in names:
            if name not in self._cache_names:
                self._cache_names.append(name)
            setattr(self, name, None)

    # -- generic behaviour ---------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything: every statistic back to its default, every cache cleared."""
        for name, (factory, _rule) in self._state_specs.items():
            setattr(self, name, factory())
        self._clear_caches()

    def _clear_caches(self) -> None:
        for name in self._cache_names:
            setattr(self, name, None)

    def merge(self, other: "StreamingMetric") -> "StreamingMetric":
        """Add another stream's statistics to this one (in place; returns self)."""
        if type(other) is not type(self):
            raise MetricError(f"cannot merge a {type(other).__name__} into a {type(self).__name__}.")
        differ = [s for s in self.settings if getattr(self, s) != getattr(other, s)]
        if differ:
            raise MetricError(
                f"can only merge {type(self).__name__} streams with the same settings; they differ in {', '.join(differ)}."
            )
        merged = {name: rule(getattr(self, name), getattr(other, name)) for name, (_f, rule) in self._state_specs.items()}
        for name, value in merged.items():
            setattr(self, name, value)
        self._clear_caches()
        return self

    def __add__(self, other: "StreamingMetric") -> "StreamingMetric":
        out = self.copy()
        out.merge(other)
        return out

    def copy(self) -> "StreamingMetric":
        """An independent copy (statistics and caches)."""
        return _copy.deepcopy(self)

    def values(self) -> dict:
        """``compute()`` as a mapping from the names in :attr:`outputs` to values."""
        result = self.compute()
        if isinstance(result, dict):
            return dict(result)
        if isinstance(result, tuple):
            return dict(zip(self.outputs, result))
        return {self.outputs[0]: result}

    def _check(self, features: Any) -> np.ndarray:
        x = check_features(features, "streamed features", min_n=1)
        if self.dim is None:
            self.dim = x.shape[1]
        elif x.shape[1] != self.dim:
            raise MetricError(f"this stream holds {self.dim}-dimensional features; got {x.shape[1]}. Use one encoder per stream.")
        return x

    # -- what each subclass writes ---------------------------------------------------------
    def update(self, features: Any, real: bool) -> None:  # pragma: no cover - abstract
        """Add a batch of features to the real (``real=True``) or synthetic side."""
        raise NotImplementedError

    def compute(self) -> Any:  # pragma: no cover - abstract
        """The metric of the samples seen so far."""
        raise NotImplementedError


# --------------------------------------------------------------------------------- FID
class StreamingFID(StreamingMetric):
    """FID from running sufficient statistics.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = StreamingFID()
    >>> s.update(rng.normal(size=(300, 3)), real=True)
    >>> s.update(rng.normal(size=(300, 3)) + 1, real=False)
    >>> round(s.compute(), 1)
    3.1
    """

    outputs = ("fid",)

    def __init__(self):
        super().__init__()
        self.add_state("real", merge="moments")
        self.add_state("fake", merge="moments")
        self.add_cache("_factor", "_m")  # real-side factor L, and L^T scatter_synthetic L

    def update(self, features: Any, real: bool) -> None:
        """Add a batch of features to the real (``real=True``) or synthetic side."""
        x = self._check(features)
        if real:
            self.real.add(x)
            self._factor = self._m = None
            return
        mu = x.mean(0)
        xc = x - mu
        if self._m is not None and self.fake.n:
            L = np.asarray(self._factor)
            n, nb = self.fake.n, len(x)
            y = xc @ L
            v = (mu - self.fake.mean) @ L
            self._m = self._m + y.T @ y + np.outer(v, v) * (n * nb / (n + nb))
        else:
            self._m = None
        self.fake.add_stats(len(x), mu, _cov_from_centred(xc))

    def stats(self, real: bool) -> tuple[int, np.ndarray, np.ndarray]:
        """(n, mean, covariance) of one side."""
        s = self.real if real else self.fake
        if s.n < 2:
            raise MetricError(f"the {'real' if real else 'synthetic'} side has {s.n} sample(s); FID needs at least 2 per side.")
        return s.n, s.mean, s.scatter / (s.n - 1)

    def compute(self) -> float:
        """FID of the samples seen so far (the real-side factor is cached)."""
        _, m1, c1 = self.stats(True)
        n2, m2, c2 = self.stats(False)
        if self._factor is None:
            self._factor = _psd_factor(c1)
            self._m = None
        if self._m is None:
            self._m = _congruence(self._factor, self.fake.scatter)
        m = self._m / (n2 - 1)
        diff = m1 - m2
        value = diff @ diff + np.trace(c1) + np.trace(c2) - 2.0 * _sqrt_trace_sym((m + m.T) * 0.5)
        return max(float(value), 0.0)


# --------------------------------------------------------------------------------- kernel metrics
def _block_sums(k: np.ndarray, b: int, offset: int = 0) -> np.ndarray:
    """Column sums of ``k`` grouped by ``(offset + column index) % b`` -> (rows, b)."""
    if offset % b:
        k = np.concatenate([np.zeros((k.shape[0], offset % b)), k], axis=1)
    rows, m = k.shape
    full = (m // b) * b
    out = k[:, :full].reshape(rows, m // b, b).sum(1) if full else np.zeros((rows, b))
    if m > full:
        out[:, : m - full] += k[:, full:]
    return out


class _StreamingMMD(StreamingMetric):
    """Features of both sides (the statistics) and kernel sums between blocks (a cache kept up to date)."""

    settings = ("n_blocks", "full")
    _REBUILD_CHUNK = 2048

    def __init__(self, n_blocks: int = 10, full: bool = False):
        if n_blocks < 1:
            raise MetricError(f"n_blocks must be at least 1, got {n_blocks}.")
        self.n_blocks = int(n_blocks)
        self.full = bool(full)
        super().__init__()
        self.add_state("real_rows", merge="cat")
        self.add_state("fake_rows", merge="cat")
        # kernel sums between blocks: within real (i != j), within fake (i != j), real x fake.
        # Without ``full`` only the diagonal (same-block) entries are kept up to date.
        self.add_cache("kxx", "kyy", "kxy")

    def _kernel(self, x, y):  # pragma: no cover - abstract
        raise NotImplementedError

    def _buffer(self, side: bool) -> _Buffer:
        return self.real_rows if side else self.fake_rows

    @property
    def n(self) -> dict:
        return {True: self.real_rows.n, False: self.fake_rows.n}

    def _all(self, side: bool) -> np.ndarray:
        return self._buffer(side).rows

    def _sums(self) -> None:
        """Make sure the kernel sums exist: rebuilt from the held features after a reset or merge."""
        if self.kxx is not None:
            return
        b = self.n_blocks
        rows = {True: self.real_rows.rows, False: self.fake_rows.rows}
        self.real_rows, self.fake_rows = _Buffer(), _Buffer()
        self.kxx, self.kyy, self.kxy = np.zeros((b, b)), np.zeros((b, b)), np.zeros((b, b))
        for side in (True, False):
            for s in range(0, len(rows[side]), self._REBUILD_CHUNK):
                self._absorb(rows[side][s : s + self._REBUILD_CHUNK], side)

    def update(self, features: Any, real: bool) -> None:
        """Add a batch; costs kernel evaluations against the samples of the same blocks (all samples with ``full``)."""
        x = self._check(features)
        self._sums()
        self._absorb(x, bool(real))

    def _absorb(self, x: np.ndarray, real: bool) -> None:
        b = self.n_blocks
        start = self._buffer(real).n
        new_blk = (start + np.arange(len(x))) % b
        within = self.kxx if real else self.kyy
        same, other = self._buffer(real).rows, self._buffer(not real).rows
        k_new = self._kernel(x, x)
        np.fill_diagonal(k_new, 0.0)
        if self.full:
            np.add.at(within, new_blk, _block_sums(k_new, b, offset=start))
            if len(same):
                tmp = np.zeros((b, b))
                np.add.at(tmp, new_blk, _block_sums(self._kernel(x, same), b))
                within += tmp + tmp.T
            if len(other):
                tmp = np.zeros((b, b))
                np.add.at(tmp, new_blk, _block_sums(self._kernel(x, other), b))
                self.kxy += tmp if real else tmp.T
        else:
            for c in np.unique(new_blk):
                sel = new_blk == c
                xs = x[sel]
                total = k_new[np.ix_(sel, sel)].sum()
                old = same[c::b]
                if len(old):
                    total += 2.0 * self._kernel(xs, old).sum()
                within[c, c] += total
                oth = other[c::b]
                if len(oth):
                    self.kxy[c, c] += self._kernel(xs, oth).sum()
        self._buffer(real).append(x)

    def _counts(self, side: bool) -> np.ndarray:
        return np.bincount(np.arange(self.n[side]) % self.n_blocks, minlength=self.n_blocks).astype(float)

    def block_values(self) -> np.ndarray:
        """Unbiased MMD^2 of each (real block b, synthetic block b) pair."""
        nx, ny = self._counts(True), self._counts(False)
        if nx.min() < 2 or ny.min() < 2:
            raise MetricError(
                f"each of the {self.n_blocks} blocks needs 2 samples per side: got {self.n[True]} real and "
                f"{self.n[False]} synthetic samples. Add samples or use fewer blocks."
            )
        self._sums()
        d = np.arange(self.n_blocks)
        return self.kxx[d, d] / (nx * (nx - 1)) + self.kyy[d, d] / (ny * (ny - 1)) - 2.0 * self.kxy[d, d] / (nx * ny)

    def compute_full(self) -> float:
        """Unbiased MMD^2 on all samples seen (no subsets); needs ``full=True``."""
        if not self.full:
            raise MetricError("compute_full needs a stream built with full=True (kernel sums between all blocks).")
        m, n = self.n[True], self.n[False]
        if m < 2 or n < 2:
            raise MetricError("MMD needs at least 2 samples per side.")
        self._sums()
        return float(self.kxx.sum() / (m * (m - 1)) + self.kyy.sum() / (n * (n - 1)) - 2.0 * self.kxy.sum() / (m * n))


class StreamingKID(_StreamingMMD):
    """KID with incrementally updated kernel sums over disjoint blocks.

    Parameters
    ----------
    n_blocks : int
        Number of disjoint subsets (sample i of a side is in block i % n_blocks).
    degree, gamma, coef : polynomial kernel parameters (gamma None = 1/D).
    full : bool
        Also keep kernel sums between different blocks, so that
        :meth:`compute_full` gives MMD^2 on all samples; a batch then costs
        kernels against every sample held instead of one block's.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = StreamingKID(n_blocks=4)
    >>> s.update(rng.normal(size=(200, 8)), real=True)
    >>> s.update(rng.normal(size=(200, 8)) + 1, real=False)
    >>> mean, std = s.compute()
    >>> mean > 0.1
    True
    """

    outputs = ("kid", "kid_std")
    settings = ("n_blocks", "full", "degree", "gamma", "coef")

    def __init__(self, n_blocks: int = 10, degree: int = 3, gamma: Optional[float] = None, coef: float = 1.0, full: bool = False):
        self.degree, self.gamma, self.coef = degree, gamma, coef
        super().__init__(n_blocks, full)

    def _kernel(self, x, y):
        return poly_kernel(x, y, self.degree, self.gamma, self.coef)

    def compute(self) -> tuple[float, float]:
        """(mean, population std) of MMD^2 over the blocks."""
        v = self.block_values()
        return float(v.mean()), float(v.std())


class StreamingCMMD(_StreamingMMD):
    """CMMD (RBF kernel, sigma 10, scale 1000) on all samples, updated incrementally.

    ``compute`` gives the biased estimate (kernel diagonals included) like
    :func:`medsynth_explore.metrics.cmmd`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(50, 4))
    >>> s = StreamingCMMD(n_blocks=1)
    >>> s.update(x, real=True); s.update(x, real=False)
    >>> abs(s.compute()) < 1e-9
    True
    """

    outputs = ("cmmd",)
    settings = ("n_blocks", "full", "sigma", "scale")

    def __init__(self, sigma: float = 10.0, scale: float = 1000.0, n_blocks: int = 1):
        self.sigma, self.scale = sigma, scale
        super().__init__(n_blocks, full=True)

    def _kernel(self, x, y):
        return rbf_kernel(x, y, self.sigma)

    def compute(self) -> float:
        """scale * biased MMD^2 on all samples."""
        m, n = self.n[True], self.n[False]
        if m < 1 or n < 1:
            raise MetricError("CMMD needs samples on both sides.")
        self._sums()
        v = (self.kxx.sum() + m) / m**2 + (self.kyy.sum() + n) / n**2 - 2.0 * self.kxy.sum() / (m * n)
        return float(self.scale * v)


# --------------------------------------------------------------------------------- PRDC
class StreamingPRDC(StreamingMetric):
    """Precision, recall, density and coverage updated as synthetic samples stream in.

    Every value is kept incrementally for new synthetic samples, recall
    included: besides the real radii, per real sample the nearest synthetic
    distance (coverage) and per synthetic sample the number of real balls
    holding it (precision, density), the state keeps each synthetic sample's
    k nearest synthetic distances (its ball, which only shrinks as samples
    arrive) and per real sample the number of synthetic balls holding it
    (recall). A batch of B samples costs B x (N_real + M) distances plus
    N_real distances for each older synthetic sample whose ball it shrank
    (about k per new sample), instead of the M x M and N_real x M of a
    recomputation. The values equal :func:`~medsynth_explore.metrics.prdc`
    on the same features (exact route).

    Parameters
    ----------
    k : int
        Neighbourhood size.
    route : {"auto", "exact", "approximate"}
        Neighbour search for the real radii (:mod:`~medsynth_explore.metrics.knn`);
        they are cached per real set, so a large reference's radii are found
        once. Synthetic-side distances are always exact.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = StreamingPRDC(k=5)
    >>> s.update(rng.normal(size=(200, 3)), real=True)
    >>> for _ in range(4):
    ...     s.update(rng.normal(size=(50, 3)), real=False)
    >>> sorted(s.compute())
    ['coverage', 'density', 'precision', 'recall']
    """

    outputs = ("precision", "recall", "density", "coverage")
    settings = ("k", "route")

    def __init__(self, k: int = 5, route: str = "auto"):
        self.k = int(k)
        self.route = str(route)
        super().__init__()
        self.add_state("real_rows", merge="cat")
        self.add_state("fake_rows", merge="cat")
        # real k-NN radii and squared norms; per real sample the nearest synthetic distance and the number of
        # synthetic balls holding it; per synthetic sample the number of real balls holding it, its squared norm
        # and its k nearest synthetic squared distances (inf while fewer than k others exist)
        self.add_cache("_r_real", "_real_sq", "_nearest_fake", "_ball_count", "_recall_count", "_fake_sq", "_fake_knn")

    @property
    def real(self) -> np.ndarray:
        """Real features held (a view)."""
        return self.real_rows.rows

    @property
    def fake(self) -> np.ndarray:
        """Synthetic features held (a view)."""
        return self.fake_rows.rows

    def update(self, features: Any, real: bool) -> None:
        """Add a batch; synthetic batches update all four values in place."""
        x = self._check(features)
        if real:
            self.real_rows.append(x)
            self._clear_caches()
            return
        start = self.fake_rows.n
        self.fake_rows.append(x)
        if self._r_real is not None:
            self._absorb(start)

    def _rebuild(self) -> None:
        if len(self.real) <= self.k:
            raise MetricError(f"PRDC needs more than k={self.k} real samples, got {len(self.real)}.")
        if choose_route(len(self.real), len(self.real), self.real.shape[1], self.route) == "approximate":
            res = self_knn(self.real.astype(np.float32), self.k, "approximate", what="streaming prdc radii (real)")
            self._r_real = res.distances[:, self.k - 1] ** 2
        else:
            self._r_real = cached_radii(self.real, self.k)
        self._real_sq = (self.real * self.real).sum(1)
        self._nearest_fake = np.full(len(self.real), np.inf)
        self._recall_count = np.zeros(len(self.real), np.int64)
        self._ball_count = np.zeros(0, np.int64)
        self._fake_sq = np.zeros(0)
        self._fake_knn = np.zeros((0, self.k))
        if self.fake.size:
            self._absorb(0)

    def _absorb(self, start: int) -> None:
        """Take synthetic rows ``start:`` into every kept count."""
        k, fake = self.k, self.fake
        new = fake[start:]
        new_sq = (new * new).sum(1)
        fake_sq = np.concatenate([self._fake_sq, new_sq])
        # 1. synthetic balls: the new rows' k nearest others, and older rows whose ball a new row shrinks
        knn_d = np.concatenate([self._fake_knn, np.full((len(new), k), np.inf)])
        before = knn_d[:start, k - 1].copy()
        step = _block_rows(len(fake))
        for s in range(0, len(new), step):
            d = sq_dists(new[s : s + step], fake, new_sq[s : s + step], fake_sq)
            rows = np.arange(len(d))
            d[rows, start + s + rows] = np.inf  # not its own neighbour
            both = np.concatenate([knn_d[start + s : start + s + len(d)], d], axis=1)
            knn_d[start + s : start + s + len(d)] = np.sort(np.partition(both, k - 1, axis=1)[:, :k], axis=1)
            if start:
                old = np.concatenate([knn_d[:start], d[:, :start].T], axis=1)
                knn_d[:start] = np.sort(np.partition(old, k - 1, axis=1)[:, :k], axis=1)
        r_fake = knn_d[:, k - 1]
        shrunk = np.flatnonzero(r_fake[:start] < before)
        # 2. real x new rows: nearest synthetic (coverage), real balls (precision, density), new balls (recall)
        counts = np.zeros(len(new), np.int64)
        step = _block_rows(len(new) + len(shrunk))
        for s in range(0, len(self.real), step):
            sl = slice(s, s + step)
            d = sq_dists(self.real[sl], new, self._real_sq[sl], new_sq)
            np.minimum(self._nearest_fake[sl], d.min(1), out=self._nearest_fake[sl])
            counts += (d < self._r_real[sl, None]).sum(0)
            self._recall_count[sl] += (d < r_fake[None, start:]).sum(1)
            if len(shrunk):  # 3. older balls that shrank: count them again
                d_old = sq_dists(self.real[sl], fake[shrunk], self._real_sq[sl], fake_sq[shrunk])
                self._recall_count[sl] -= (d_old < before[shrunk][None, :]).sum(1)
                self._recall_count[sl] += (d_old < r_fake[None, shrunk]).sum(1)
        self._ball_count = np.concatenate([self._ball_count, counts])
        self._fake_sq, self._fake_knn = fake_sq, knn_d

    def coverage(self) -> float:
        """Share of real samples whose k-NN ball holds a synthetic sample (incremental)."""
        if self._r_real is None:
            self._rebuild()
        if not self.fake.size:
            raise MetricError("no synthetic samples yet.")
        return float((self._nearest_fake < self._r_real).mean())

    def compute(self, recall: bool = True) -> dict:
        """All four values from the kept counts; ``recall=False`` leaves recall out."""
        cov = self.coverage()
        out = {
            "precision": float((self._ball_count > 0).mean()),
            "density": float(self._ball_count.sum() / (self.k * len(self.fake))),
            "coverage": cov,
        }
        if recall:
            if len(self.fake) <= self.k:
                raise MetricError(f"recall needs more than k={self.k} synthetic samples, got {len(self.fake)}.")
            out["recall"] = float((self._recall_count > 0).mean())
        return {k: out[k] for k in ("precision", "recall", "density", "coverage") if k in out}
