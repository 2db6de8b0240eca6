"""Metrics: oracle tests against independent implementations, properties, validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsynth_explore import metrics as M
from medsynth_explore.errors import MetricError


def _feats(seed, n, d, shift=0.0, scale=1.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(12345).normal(size=(d, d)) / np.sqrt(d) + np.eye(d)
    base = rng.normal(size=(n, d)) @ mixing
    return (base * scale + shift).astype(dtype)


# ---------------------------------------------------------------- FID
def test_fid_matches_pytorch_fid_and_torchmetrics():
    torch = pytest.importorskip("torch")
    from pytorch_fid.fid_score import calculate_frechet_distance
    from torchmetrics.image.fid import _compute_fid

    a = _feats(0, 600, 32)
    b = _feats(1, 500, 32, shift=0.3, scale=1.2)
    ours = M.fid(a, b)
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    ref_pf = calculate_frechet_distance(mu1, s1, mu2, s2)
    ref_tm = float(_compute_fid(torch.from_numpy(mu1), torch.from_numpy(s1), torch.from_numpy(mu2), torch.from_numpy(s2)))
    assert ours == pytest.approx(ref_pf, rel=1e-6)
    assert ours == pytest.approx(ref_tm, rel=1e-6)


def test_feature_stats_matches_numpy():
    a = _feats(3, 200, 10)
    mu, cov = M.feature_stats(a)
    np.testing.assert_allclose(mu, a.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(a, rowvar=False), rtol=1e-10, atol=1e-12)


def test_sqrt_trace_singular_covariance_uses_eigh_route():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 8))  # N < D: rank-deficient covariance, no Cholesky
    s1 = np.cov(x, rowvar=False)
    s2 = np.cov(rng.normal(size=(40, 8)), rowvar=False)
    w = np.linalg.eigvals(s1 @ s2)
    expected = np.sqrt(np.clip(w.real, 0, None)).sum()
    assert M.sqrt_trace_product(s1, s2) == pytest.approx(expected, rel=1e-6)


def test_fid_warns_when_n_below_dim():
    with pytest.warns(RuntimeWarning, match="N < D"):
        M.fid(_feats(0, 10, 20), _feats(1, 10, 20))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(20, 80), d=st.integers(1, 6))
def test_fid_properties(seed, n, d):
    a = _feats(seed, n, d)
    b = _feats(seed + 1, n + 3, d, shift=0.5)
    assert M.fid(a, a) == pytest.approx(0.0, abs=1e-7)
    assert M.fid(a, b) == pytest.approx(M.fid(b, a), rel=1e-7, abs=1e-9)
    perm = np.random.default_rng(seed).permutation(len(a))
    assert M.fid(a[perm], b) == pytest.approx(M.fid(a, b), rel=1e-7, abs=1e-9)
    assert M.fid(a, b) >= 0


def test_fid_infinity_and_relative_fd():
    a, b = _feats(0, 2000, 4), _feats(1, 2000, 4)
    r = M.fid_infinity(a, b, n_points=6, seed=0)
    assert len(r["fid"]) == len(r["n"]) >= 2
    # finite-N FID is biased upwards; the extrapolated value is closer to 0 than the smallest subset's
    assert abs(r["fid_inf"]) < max(r["fid"])
    assert r["slope"] > 0
    rel = M.relative_fd(a, b + 1.0, seed=0)
    assert rel["relative"] == pytest.approx(rel["fd"] / rel["fd_real_halves"])
    assert rel["relative"] > 10
    assert M.relative_fd(a, b, seed=0)["relative"] < 5


# ---------------------------------------------------------------- KID / CMMD
def test_kid_matches_torchmetrics_on_identical_subsets():
    torch = pytest.importorskip("torch")
    # KernelInceptionDistance itself needs torch-fidelity to be constructed; its
    # compute() is: per subset poly_mmd(real[randperm[:size]], fake[randperm[:size]]),
    # then mean and std(unbiased=False). The same subsets go to both implementations.
    from torchmetrics.image.kid import poly_mmd

    a = _feats(0, 120, 16).astype(np.float32)
    b = _feats(1, 110, 16, shift=0.2).astype(np.float32)
    subsets, size = 7, 50
    torch.manual_seed(123)
    idx, scores = [], []
    ta, tb = torch.from_numpy(a).double(), torch.from_numpy(b).double()
    for _ in range(subsets):
        ia = torch.randperm(len(a))[:size]
        ib = torch.randperm(len(b))[:size]
        idx.append((ia.numpy(), ib.numpy()))
        scores.append(poly_mmd(ta[ia], tb[ib], degree=3, gamma=None, coef=1.0))
    scores = torch.stack(scores)
    ref_mean, ref_std = float(scores.mean()), float(scores.std(unbiased=False))
    mean, std = M.kid(a, b, indices=idx)
    assert mean == pytest.approx(ref_mean, rel=1e-6)
    assert std == pytest.approx(ref_std, rel=1e-6)


def test_kid_seeded_and_adapts_subset_size():
    a, b = _feats(0, 60, 8), _feats(1, 40, 8, shift=1.0)
    with pytest.warns(RuntimeWarning, match="subset"):
        m1 = M.kid(a, b, subsets=5, subset_size=1000, seed=3)
    with pytest.warns(RuntimeWarning):
        m2 = M.kid(a, b, subsets=5, subset_size=1000, seed=3)
    assert m1 == m2
    assert m1[0] > 0.05
    same = M.kid(a, _feats(9, 60, 8), subsets=20, subset_size=40, seed=0)[0]
    assert abs(same) < 0.2 * m1[0]


def test_cmmd_matches_direct_formula():
    a = _feats(0, 40, 6)
    b = _feats(1, 30, 6, shift=0.5)
    d = lambda x, y: ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    k = lambda x, y: np.exp(-d(x, y) / (2 * 10.0**2))
    biased = 1000 * (k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean())
    assert M.cmmd(a, b) == pytest.approx(biased, rel=1e-9)
    kaa, kbb = k(a, a), k(b, b)
    unb = 1000 * ((kaa.sum() - 40) / (40 * 39) + (kbb.sum() - 30) / (30 * 29) - 2 * k(a, b).mean())
    assert M.cmmd(a, b, unbiased=True) == pytest.approx(unb, rel=1e-9)


# ---------------------------------------------------------------- PRDC
@pytest.mark.parametrize("k", [3, 5])
def test_prdc_matches_prdc_package(k):
    from prdc import compute_prdc

    real = _feats(0, 400, 12).astype(np.float32)
    fake = _feats(1, 350, 12, shift=0.2, scale=1.1).astype(np.float32)
    ours = M.prdc(real, fake, k=k)
    ref = compute_prdc(real, fake, k)
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(float(ref[key]), rel=1e-6), key


def test_prdc_chunking_does_not_change_values(monkeypatch):
    import importlib

    prdc_mod = importlib.import_module("medsynth_explore.metrics.prdc")

    real, fake = _feats(0, 300, 5), _feats(1, 200, 5, shift=0.3)
    full = M.prdc(real, fake)
    monkeypatch.setattr(prdc_mod, "_block_rows", lambda n_cols, budget=0: 7)
    assert M.prdc(real, fake) == full


# ---------------------------------------------------------------- scores
def test_inception_score_extremes():
    uniform = np.full((20, 5), 0.2)
    assert M.inception_score(uniform, splits=2)[0] == pytest.approx(1.0)
    onehot = np.eye(5)[np.arange(50) % 5]
    assert M.inception_score(onehot, splits=5) == (pytest.approx(5.0), pytest.approx(0.0, abs=1e-12))
    with pytest.raises(MetricError, match="softmax"):
        M.inception_score(np.ones((4, 3)))


def test_clip_score_conventions():
    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(10, 8)), rng.normal(size=(10, 8))
    cos = (img * txt).sum(1) / np.linalg.norm(img, axis=1) / np.linalg.norm(txt, axis=1)
    np.testing.assert_allclose(M.clip_score(img, txt), 100 * np.maximum(cos, 0))
    np.testing.assert_allclose(M.clip_score(img, txt, convention="w2.5"), 2.5 * np.maximum(cos, 0))
    with pytest.raises(MetricError, match="convention"):
        M.clip_score(img, txt, convention="bad")
    with pytest.raises(MetricError, match="paired"):
        M.clip_score(img, txt[:5])


# ---------------------------------------------------------------- SSIM / PSNR
def _pair_images(seed, shape=(3, 1, 40, 36)):
    rng = np.random.default_rng(seed)
    a = rng.random(shape).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.1, shape), 0, 1).astype(np.float32)
    return a, b


def test_ssim_and_psnr_match_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a, b = _pair_images(0)
    per = M.ssim(a, b, reduction="none")
    for i in range(len(a)):
        ref = structural_similarity(
            a[i, 0].astype(np.float64),
            b[i, 0].astype(np.float64),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1,
        )
        assert per[i] == pytest.approx(ref, rel=1e-6)
        assert M.psnr(a[i], b[i]) == pytest.approx(
            peak_signal_noise_ratio(a[i].astype(np.float64), b[i].astype(np.float64), data_range=1), rel=1e-6
        )
    # multi-channel: mean over channels, as skimage with channel_axis
    c, d = _pair_images(1, (1, 3, 32, 32))
    ref = structural_similarity(
        c[0].astype(np.float64),
        d[0].astype(np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1,
        channel_axis=0,
    )
    assert M.ssim(c, d) == pytest.approx(ref, rel=1e-6)


def test_masked_ssim_and_psnr_regions():
    from skimage.metrics import structural_similarity

    a, _ = _pair_images(2, (1, 1, 40, 40))
    b = a.copy()
    mask = np.zeros((40, 40), np.float32)
    mask[10:30, 10:30] = 1
    rng = np.random.default_rng(0)
    b[0, 0, 10:30, 10:30] = rng.random((20, 20))
    assert M.psnr(a, b, mask=mask, region="outside") == np.inf
    inside = M.psnr(a, b, mask=mask, region="inside")
    mse = ((a[0, 0, 10:30, 10:30].astype(np.float64) - b[0, 0, 10:30, 10:30]) ** 2).mean()
    assert inside == pytest.approx(10 * np.log10(1 / mse), rel=1e-9)
    # masked SSIM = mean of skimage's full SSIM map over the region (inside the 5-px border crop)
    _, smap = structural_similarity(
        a[0, 0].astype(np.float64),
        b[0, 0].astype(np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1,
        full=True,
    )
    sel = mask.astype(bool)
    sel[:5], sel[-5:], sel[:, :5], sel[:, -5:] = False, False, False, False
    assert M.ssim(a, b, mask=mask, region="inside") == pytest.approx(smap[sel].mean(), rel=1e-6)
    assert M.ssim(a, b, mask=mask, region="outside") > M.ssim(a, b, mask=mask, region="inside")


def test_image_metric_validation():
    a, b = _pair_images(0)
    with pytest.raises(MetricError, match="equal shapes"):
        M.ssim(a, b[:, :, :30])
    with pytest.raises(MetricError, match="mask"):
        M.psnr(a, b, mask=np.ones((5, 5)))
    with pytest.raises(MetricError, match="region"):
        M.psnr(a, b, mask=np.ones((40, 36)), region="middle")
    with pytest.raises(MetricError):
        M.psnr(a * 3, b)


# ---------------------------------------------------------------- CAS
def test_cas_linear_and_cnn():
    rng = np.random.default_rng(0)
    y = np.arange(300) % 2
    x = rng.normal(size=(300, 4)) + 2.5 * y[:, None]
    good = M.cas(x[:100], y[:100], x[100:200], y[100:200], x[200:], y[200:])
    assert good["cas"] > 0.85 and good["trtr"] > 0.85
    # synthetic data with swapped labels: trained on it, the classifier fails on real data
    bad = M.cas(x[:100], 1 - y[:100], x[100:200], y[100:200], x[200:], y[200:])
    assert bad["cas"] < 0.2 and bad["ratio"] < 0.25
    # CNN mode on images: bright vs dark squares
    imgs = np.clip(rng.random((120, 1, 16, 16)) * 0.3 + 0.6 * (np.arange(120) % 2)[:, None, None, None], 0, 1).astype(np.float32)
    lab = np.arange(120) % 2
    r = M.cas(imgs[:40], lab[:40], imgs[40:80], lab[40:80], imgs[80:], lab[80:], mode="cnn", epochs=15, seed=0)
    assert r["trtr"] > 0.9 and r["cas"] > 0.9
    with pytest.raises(MetricError, match="single class"):
        M.cas(x[:10], np.zeros(10), x[:10], y[:10], x[:10], y[:10])


# ---------------------------------------------------------------- privacy
def test_nn_distances_matches_brute_force():
    q, r = _feats(0, 30, 3), _feats(1, 50, 3)
    d, i = M.nn_distances(q, r)
    full = np.sqrt(((q[:, None] - r[None]) ** 2).sum(-1))
    np.testing.assert_allclose(d, full.min(1), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(i, full.argmin(1))
    d2, _ = M.nn_distances(r, r, exclude_self=True)
    f2 = np.sqrt(((r[:, None] - r[None]) ** 2).sum(-1))
    np.fill_diagonal(f2, np.inf)
    np.testing.assert_allclose(d2, f2.min(1), rtol=1e-9, atol=1e-9)


def test_authenticity_copy_rate_and_ct_detect_copies():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 4))
    held = rng.normal(size=(500, 4))
    fresh = rng.normal(size=(500, 4))
    copies = train[:500] + rng.normal(scale=1e-4, size=(500, 4))
    assert M.authenticity(train, copies)["authenticity"] == 0.0
    assert M.authenticity(train, fresh)["authenticity"] > 0.3
    assert M.copy_rate(train, copies, held)["copy_rate"] == 1.0
    assert M.copy_rate(train, fresh, held, q=0.05)["copy_rate"] < 0.15
    ct_copy = M.ct_test(train, held, copies, n_cells=5)["ct"]
    ct_fresh = M.ct_test(train, held, fresh, n_cells=5)["ct"]
    assert ct_copy < -5
    assert abs(ct_fresh) < 3


def test_ct_z_score_matches_mann_whitney_formula():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(1)
    train = rng.normal(size=(200, 2))
    held, syn = rng.normal(size=(150, 2)), rng.normal(size=(120, 2)) * 0.7
    r = M.ct_test(train, held, syn, n_cells=1, min_count=5)
    dh, _ = M.nn_distances(held, train)
    ds, _ = M.nn_distances(syn, train)
    u = mannwhitneyu(ds, dh).statistic
    m, n = len(ds), len(dh)
    z = (u - m * n / 2) / np.sqrt(m * n * (m + n + 1) / 12)
    assert r["ct"] == pytest.approx(z)


# ---------------------------------------------------------------- subgroups
def test_by_group_values_ci_and_gaps():
    rng = np.random.default_rng(0)
    md_r = pd.DataFrame({"sex": np.repeat(["F", "M"], 200), "age": rng.integers(20, 90, 400)})
    md_s = pd.DataFrame({"sex": np.repeat(["F", "M"], 150), "age": rng.integers(20, 90, 300)})
    real = rng.normal(size=(400, 3))
    syn = rng.normal(size=(300, 3))
    syn[150:] += 2.0  # the M group is badly generated
    res = M.by_group(M.fid, "fid", real, md_r, syn, md_s, "sex", n_boot=20, seed=0, higher_is_better=False)
    bg = res.by_group
    assert list(bg.index) == ["sex=F", "sex=M"]
    assert bg.loc["sex=F", "value"] == pytest.approx(M.fid(real[:200], syn[:150]))
    assert res.worst() == "sex=M"
    assert res.difference() == pytest.approx(bg["value"].max() - bg["value"].min())
    assert res.ratio() == pytest.approx(bg["value"].min() / bg["value"].max())
    assert (bg["ci_low"] <= bg["ci_high"]).all() and bg["n"].tolist() == [150, 150]
    inter = M.by_group(M.fid, "fid", real, md_r, syn, md_s, ["sex", "age_group"], min_n=5)
    assert all(" & age_group=" in g for g in inter.by_group.index)


def test_validation_messages():
    with pytest.raises(MetricError, match="NaN"):
        M.fid(np.array([[np.nan, 1.0], [1.0, 2.0]]), np.ones((3, 2)))
    with pytest.raises(MetricError, match="dimensions"):
        M.fid(np.ones((3, 2)), np.ones((3, 4)))
    with pytest.raises(MetricError, match="at least 2"):
        M.fid(np.ones((1, 2)), np.ones((3, 2)))
    with pytest.raises(MetricError, match=r"shape \(N, D\)"):
        M.kid(np.ones((3, 2, 2)), np.ones((3, 2)))
    with pytest.raises(MetricError, match="at least 6"):
        M.prdc(np.ones((4, 2)), np.ones((10, 2)), k=5)
