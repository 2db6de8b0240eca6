"""Streaming accumulators equal batch results; merged partial states equal a single pass."""

from __future__ import annotations

import numpy as np
import pytest

from medsynth_explore import metrics as M
from medsynth_explore.errors import MetricError


def _data(seed=0, n=300, d=6):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(n - 40, d)) * 1.1 + 0.2


def _feed(stream, real, fake, step=37):
    for s in range(0, len(real), step):
        stream.update(real[s : s + step], real=True)
    for s in range(0, len(fake), step):
        stream.update(fake[s : s + step], real=False)
    return stream


def test_streaming_fid_equals_batch_and_merges():
    real, fake = _data()
    s = _feed(M.StreamingFID(), real, fake)
    assert s.compute() == pytest.approx(M.fid(real, fake), rel=1e-9)
    a = _feed(M.StreamingFID(), real[:100], fake[:70])
    b = _feed(M.StreamingFID(), real[100:], fake[70:])
    assert (a + b).compute() == pytest.approx(M.fid(real, fake), rel=1e-9)
    n, mu, cov = (a + b).stats(real=True)
    np.testing.assert_allclose(cov, np.cov(real, rowvar=False), rtol=1e-9, atol=1e-12)
    s.reset()
    with pytest.raises(MetricError, match="at least 2"):
        s.compute()


def _block_kid(real, fake, n_blocks):
    vals = []
    for b in range(n_blocks):
        x, y = real[b::n_blocks], fake[b::n_blocks]
        vals.append(M.mmd2_unbiased(M.poly_kernel(x, x), M.poly_kernel(x, y), M.poly_kernel(y, y)))
    return np.mean(vals), np.std(vals)


def test_streaming_kid_equals_batch_on_blocks_and_merges():
    real, fake = _data(1)
    s = _feed(M.StreamingKID(n_blocks=5), real, fake)
    mean, std = s.compute()
    ref_mean, ref_std = _block_kid(real, fake, 5)
    assert mean == pytest.approx(ref_mean, rel=1e-9)
    assert std == pytest.approx(ref_std, rel=1e-9)
    full = M.mmd2_unbiased(M.poly_kernel(real, real), M.poly_kernel(real, fake), M.poly_kernel(fake, fake))
    with pytest.raises(MetricError, match="full=True"):
        s.compute_full()
    sf = _feed(M.StreamingKID(n_blocks=5, full=True), real, fake)
    assert sf.compute_full() == pytest.approx(full, rel=1e-9)
    assert sf.compute() == pytest.approx(s.compute(), rel=1e-9)
    # the same set through explicit disjoint subsets of the batch function
    idx = [(np.arange(b, len(real), 5), np.arange(b, len(fake), 5)) for b in range(5)]
    assert M.kid(real, fake, indices=idx)[0] == pytest.approx(mean, rel=1e-9)
    a = _feed(M.StreamingKID(n_blocks=5), real[:120], fake[:100])
    b = _feed(M.StreamingKID(n_blocks=5), real[120:], fake[100:])
    merged = a + b
    single = M.StreamingKID(n_blocks=5)
    single.update(real[:120], True)
    single.update(fake[:100], False)
    single.update(real[120:], True)
    single.update(fake[100:], False)
    assert merged.compute() == pytest.approx(single.compute(), rel=1e-9)


def test_streaming_cmmd_equals_batch():
    real, fake = _data(2, n=120)
    s = _feed(M.StreamingCMMD(), real, fake, step=25)
    assert s.compute() == pytest.approx(M.cmmd(real, fake), rel=1e-9)


def test_streaming_prdc_equals_batch_and_merges():
    real, fake = _data(3)
    s = M.StreamingPRDC(k=5)
    s.update(real, real=True)
    for i in range(0, len(fake), 64):
        s.update(fake[i : i + 64], real=False)
        if i == 128:
            mid = s.coverage()  # builds the incremental state part way
            assert mid == pytest.approx(M.prdc(real, fake[: i + 64])["coverage"])
    assert s.compute() == pytest.approx(M.prdc(real, fake), rel=1e-12)
    a = M.StreamingPRDC()
    a.update(real[:150], True)
    a.update(fake[:100], False)
    b = M.StreamingPRDC()
    b.update(real[150:], True)
    b.update(fake[100:], False)
    assert (a + b).compute() == pytest.approx(M.prdc(real, fake), rel=1e-12)


def test_streaming_dimension_mismatch():
    s = M.StreamingFID()
    s.update(np.zeros((3, 4)), real=True)
    with pytest.raises(MetricError, match="4-dimensional"):
        s.update(np.zeros((3, 5)), real=False)


def test_streaming_fid_incremental_congruence_after_many_batches():
    real, fake = _data(5, n=400, d=8)
    s = M.StreamingFID()
    s.update(real, real=True)
    values = []
    for i in range(0, len(fake), 16):
        s.update(fake[i : i + 16], real=False)
        if i + 16 >= 2:
            values.append(s.compute())  # the cached factor and congruence are reused from here on
    assert values[-1] == pytest.approx(M.fid(real, fake), rel=1e-9)
    s.update(real[:10], real=True)  # a real batch invalidates the cache
    assert s.compute() == pytest.approx(M.fid(np.concatenate([real, real[:10]]), fake), rel=1e-9)


def test_a_state_declared_once_gets_reset_merge_add_and_copy():
    class Moments(M.StreamingMetric):
        outputs = ("mean_real", "n_synthetic")
        settings = ("scale",)

        def __init__(self, scale=1.0):
            self.scale = scale
            super().__init__()
            self.add_state("real_sum", default=0.0, merge="sum")
            self.add_state("real_n", default=0, merge="sum")
            self.add_state("fake", merge="cat")
            self.add_cache("_mean")

        def update(self, features, real):
            x = self._check(features)
            if real:
                self.real_sum += float(x.sum()) * self.scale
                self.real_n += x.size
                self._mean = None
            else:
                self.fake.append(x)

        def compute(self):
            if self._mean is None:
                self._mean = self.real_sum / self.real_n
            return self._mean, self.fake.n

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 3)), rng.normal(size=(4, 3))
    a, b = Moments(), Moments()
    a.update(x[:6], True)
    a.update(y[:1], False)
    b.update(x[6:], True)
    b.update(y[1:], False)
    assert a.compute()[0] == pytest.approx(x[:6].mean())  # fills the cache
    total = a + b
    assert total.values() == {"mean_real": pytest.approx(x.mean()), "n_synthetic": 4}
    assert a.values()["n_synthetic"] == 1 and a.real_n == 18  # + left the parts alone
    a.merge(b)
    assert a.compute()[0] == pytest.approx(x.mean())  # merging cleared the stale cache
    c = a.copy()
    c.reset()
    assert c.real_n == 0 and c.fake.n == 0 and c.dim is None and a.fake.n == 4
    with pytest.raises(MetricError, match="same settings; they differ in scale"):
        Moments(scale=2.0).merge(Moments())
    with pytest.raises(MetricError, match="cannot merge a StreamingFID"):
        Moments().merge(M.StreamingFID())
    d = Moments()
    d.update(np.zeros((2, 5)), True)
    with pytest.raises(MetricError, match="5- and 3-dimensional"):
        d.merge(b)
    with pytest.raises(MetricError, match="unknown merge rule"):
        Moments().add_state("z", 0, merge="max")


def test_kernel_sums_are_rebuilt_after_a_merge_and_a_reset():
    real, fake = _data(6, n=90)
    a = _feed(M.StreamingKID(n_blocks=3, full=True), real[:40], fake[:30])
    b = _feed(M.StreamingKID(n_blocks=3, full=True), real[40:], fake[30:])
    merged = a + b
    assert merged.kxx is None  # the cache is rebuilt on demand from the held features
    full = M.mmd2_unbiased(M.poly_kernel(real, real), M.poly_kernel(real, fake), M.poly_kernel(fake, fake))
    assert merged.compute_full() == pytest.approx(full, rel=1e-9)
    merged.update(fake[:5], real=False)  # and then kept up to date incrementally
    f2 = np.concatenate([fake, fake[:5]])
    assert merged.compute_full() == pytest.approx(
        M.mmd2_unbiased(M.poly_kernel(real, real), M.poly_kernel(real, f2), M.poly_kernel(f2, f2)), rel=1e-9
    )
    merged.reset()
    assert merged.n == {True: 0, False: 0}
    with pytest.raises(MetricError, match="blocks needs 2 samples"):
        merged.compute()
