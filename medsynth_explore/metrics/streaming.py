"""Streaming accumulators in the torchmetrics style (``update`` / ``compute`` / ``reset``).

Each keeps the sufficient statistics of its metric as state, so a live panel
recomputes in milliseconds after a batch arrives, and partial states built by
several workers combine with ``merge`` (or ``+``):

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
  sample the nearest synthetic distance (coverage), per synthetic sample the
  number of real balls holding it (precision, density) -- all updated
  incrementally for new synthetic samples. Recall needs the synthetic radii,
  which change with every batch, and is recomputed (chunked) when asked.
  Adding real samples invalidates the cache, rebuilt at the next ``compute``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..errors import MetricError
from ._validate import check_features
from .fid import _congruence, _cov_from_centred, _psd_factor, _sqrt_trace_sym
from .kernel import poly_kernel, rbf_kernel
from .prdc import _block_rows, sq_dists

__all__ = ["StreamingFID", "StreamingKID", "StreamingCMMD", "StreamingPRDC"]


class _Side:
    """Count, mean and centred scatter of one side, in float64."""

    def __init__(self, dim: Optional[int] = None):
        self.n = 0
        self.mean = None if dim is None else np.zeros(dim)
        self.scatter = None if dim is None else np.zeros((dim, dim))

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


class _Streaming:
    dim: Optional[int] = None

    def _check(self, features: Any) -> np.ndarray:
        x = check_features(features, "streamed features", min_n=1)
        if self.dim is None:
            self.dim = x.shape[1]
        elif x.shape[1] != self.dim:
            raise MetricError(f"this stream holds {self.dim}-dimensional features; got {x.shape[1]}. Use one encoder per stream.")
        return x

    def __add__(self, other):
        out = self.copy()
        out.merge(other)
        return out

    def copy(self):
        import copy

        return copy.deepcopy(self)


class StreamingFID(_Streaming):
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

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        self.dim = None
        self.real, self.fake = _Side(), _Side()
        self._factor = None
        self._m = None  # L^T scatter_synthetic L for the cached real factor L

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

    def merge(self, other: "StreamingFID") -> "StreamingFID":
        """Add another stream's statistics to this one (in place; returns self)."""
        if other.dim is not None and self.dim is not None and other.dim != self.dim:
            raise MetricError(f"cannot merge streams of {self.dim}- and {other.dim}-dimensional features.")
        self.dim = self.dim or other.dim
        for mine, theirs in ((self.real, other.real), (self.fake, other.fake)):
            if theirs.n:
                mine.add_stats(theirs.n, theirs.mean, theirs.scatter)
        if other.real.n:
            self._factor = None
        self._m = None
        return self

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


class _StreamingMMD(_Streaming):
    def __init__(self, n_blocks: int = 10, full: bool = False):
        if n_blocks < 1:
            raise MetricError(f"n_blocks must be at least 1, got {n_blocks}.")
        self.n_blocks = int(n_blocks)
        self.full = bool(full)
        self.reset()

    def _kernel(self, x, y):  # pragma: no cover - abstract
        raise NotImplementedError

    def reset(self) -> None:
        """Forget everything."""
        self.dim = None
        self.buf = {True: _Buffer(), False: _Buffer()}
        b = self.n_blocks
        # kernel sums between blocks: within real (i != j), within fake (i != j), real x fake.
        # Without ``full`` only the diagonal (same-block) entries are kept up to date.
        self.kxx = np.zeros((b, b))
        self.kyy = np.zeros((b, b))
        self.kxy = np.zeros((b, b))

    @property
    def n(self) -> dict:
        return {True: self.buf[True].n, False: self.buf[False].n}

    def _all(self, side: bool) -> np.ndarray:
        return self.buf[side].rows

    def update(self, features: Any, real: bool) -> None:
        """Add a batch; costs kernel evaluations against the samples of the same blocks (all samples with ``full``)."""
        x = self._check(features)
        real = bool(real)
        b = self.n_blocks
        start = self.buf[real].n
        new_blk = (start + np.arange(len(x))) % b
        within = self.kxx if real else self.kyy
        same, other = self.buf[real].rows, self.buf[not real].rows
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
        self.buf[real].append(x)

    def merge(self, other: "_StreamingMMD") -> "_StreamingMMD":
        """Append another stream's samples (real, then synthetic) to this one; returns self."""
        if other.n_blocks != self.n_blocks or type(other) is not type(self) or other.full != self.full:
            raise MetricError("can only merge streams of the same kind, n_blocks and full setting.")
        for side in (True, False):
            if other.n[side]:
                self.update(other._all(side), real=side)
        return self

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
        d = np.arange(self.n_blocks)
        return self.kxx[d, d] / (nx * (nx - 1)) + self.kyy[d, d] / (ny * (ny - 1)) - 2.0 * self.kxy[d, d] / (nx * ny)

    def compute_full(self) -> float:
        """Unbiased MMD^2 on all samples seen (no subsets); needs ``full=True``."""
        if not self.full:
            raise MetricError("compute_full needs a stream built with full=True (kernel sums between all blocks).")
        m, n = self.n[True], self.n[False]
        if m < 2 or n < 2:
            raise MetricError("MMD needs at least 2 samples per side.")
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
        v = (self.kxx.sum() + m) / m**2 + (self.kyy.sum() + n) / n**2 - 2.0 * self.kxy.sum() / (m * n)
        return float(self.scale * v)


class StreamingPRDC(_Streaming):
    """Precision, recall, density and coverage updated as synthetic samples stream in.

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

    def __init__(self, k: int = 5):
        self.k = int(k)
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        self.dim = None
        self._real, self._fake = _Buffer(), _Buffer()
        self._valid = False

    @property
    def real(self) -> np.ndarray:
        """Real features held (a view)."""
        return self._real.rows

    @property
    def fake(self) -> np.ndarray:
        """Synthetic features held (a view)."""
        return self._fake.rows

    def update(self, features: Any, real: bool) -> None:
        """Add a batch; synthetic batches update coverage, precision and density in place."""
        x = self._check(features)
        if real:
            self._real.append(x)
            self._valid = False
            return
        start = self._fake.n
        self._fake.append(x)
        if self._valid:
            self._absorb(start)

    def merge(self, other: "StreamingPRDC") -> "StreamingPRDC":
        """Append another stream's samples; returns self."""
        if other.k != self.k:
            raise MetricError("can only merge PRDC streams with the same k.")
        if other.real.size:
            self.update(other.real, real=True)
        if other.fake.size:
            self.update(other.fake, real=False)
        return self

    def _rebuild(self) -> None:
        from .prdc import knn_radii

        if len(self.real) <= self.k:
            raise MetricError(f"PRDC needs more than k={self.k} real samples, got {len(self.real)}.")
        self._r_real = knn_radii(self.real, self.k, squared=True)
        self._real_sq = (self.real * self.real).sum(1)
        self._nearest_fake = np.full(len(self.real), np.inf)
        self._ball_count = np.zeros(0, np.int64)
        self._valid = True
        if self.fake.size:
            self._absorb(0)

    def _absorb(self, start: int) -> None:
        new = self.fake[start:]
        new_sq = (new * new).sum(1)
        counts = np.zeros(len(new), np.int64)
        step = _block_rows(len(new))
        for s in range(0, len(self.real), step):
            d = sq_dists(self.real[s : s + step], new, self._real_sq[s : s + step], new_sq)
            np.minimum(self._nearest_fake[s : s + step], d.min(1), out=self._nearest_fake[s : s + step])
            counts += (d < self._r_real[s : s + step, None]).sum(0)
        self._ball_count = np.concatenate([self._ball_count, counts])

    def coverage(self) -> float:
        """Share of real samples whose k-NN ball holds a synthetic sample (incremental)."""
        if not self._valid:
            self._rebuild()
        if not self.fake.size:
            raise MetricError("no synthetic samples yet.")
        return float((self._nearest_fake < self._r_real).mean())

    def compute(self, recall: bool = True) -> dict:
        """All four values; ``recall=False`` skips the one that is not incremental."""
        from .prdc import knn_radii

        cov = self.coverage()
        out = {
            "precision": float((self._ball_count > 0).mean()),
            "density": float(self._ball_count.sum() / (self.k * len(self.fake))),
            "coverage": cov,
        }
        if recall:
            if len(self.fake) <= self.k:
                raise MetricError(f"recall needs more than k={self.k} synthetic samples, got {len(self.fake)}.")
            r_fake = knn_radii(self.fake, self.k, squared=True)
            fake_sq = (self.fake * self.fake).sum(1)
            hit = np.empty(len(self.real), bool)
            step = _block_rows(len(self.fake))
            for s in range(0, len(self.real), step):
                d = sq_dists(self.real[s : s + step], self.fake, self._real_sq[s : s + step], fake_sq)
                hit[s : s + step] = (d < r_fake[None, :]).any(1)
            out["recall"] = float(hit.mean())
        return {k: out[k] for k in ("precision", "recall", "density", "coverage") if k in out}
