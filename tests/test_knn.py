"""Neighbour search (metrics/knn.py): both routes against plain re-computations; PRDC and privacy on each route."""

from __future__ import annotations

import importlib
import logging

import numpy as np
import pytest

import medsynth_explore.metrics as M
from medsynth_explore.errors import MetricError
from medsynth_explore.metrics import knn as K


def _clustered(n, d=32, seed=0, shift=0.0, latent=6, clusters=12):
    """Features on a few clusters in a low-dimensional latent space, as encoder features are."""
    base = np.random.default_rng(99)
    centres = base.normal(size=(clusters, latent)) * 3.0
    w = base.normal(size=(latent, d)) / np.sqrt(latent)
    rng = np.random.default_rng(seed)
    z = centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, latent)) * (1.0 + shift)
    z[:, 0] += 2.0 * shift
    return (np.tanh(z @ w) + 0.3 * z @ w + 0.05 * rng.normal(size=(n, d))).astype(np.float32)


def _brute(q, x, k, exclude_self=False):
    d = np.sqrt(((q.astype(np.float64)[:, None, :] - x.astype(np.float64)[None]) ** 2).sum(-1))
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    i = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, i, 1), i


@pytest.fixture(autouse=True)
def _fresh_cache():
    K.clear_cache()
    yield
    K.clear_cache()


def test_exact_route_equals_brute_force():
    rng = np.random.default_rng(0)
    x, q = rng.normal(size=(300, 7)), rng.normal(size=(40, 7))
    res = K.knn(q, x, 6, route="exact")
    d, i = _brute(q, x, 6)
    assert res.route == "exact"
    np.testing.assert_array_equal(res.indices, i)
    np.testing.assert_allclose(res.distances, d, rtol=1e-9, atol=1e-9)
    own = K.self_knn(x, 4, route="exact")
    d, i = _brute(x, x, 4, exclude_self=True)
    np.testing.assert_array_equal(own.indices, i)
    np.testing.assert_allclose(own.distances, d, rtol=1e-9, atol=1e-9)


def test_approximate_route_with_every_cell_probed_is_exact():
    x = _clustered(3000, seed=1)
    q = _clustered(200, seed=2, shift=0.3)
    ix = K.ApproximateIndex(x, n_clusters=20, n_probe=20, pca_dim=8)
    d, i = ix.search(q, 5)
    bd, bi = _brute(q, x, 5)
    np.testing.assert_array_equal(i, bi)
    np.testing.assert_allclose(d, bd, rtol=1e-6, atol=1e-6)


def test_approximate_route_reports_true_distances_and_finds_nearly_every_neighbour():
    x = _clustered(12_000, seed=3)
    q = _clustered(500, seed=4, shift=0.3)
    res = K.knn(q, x, 10, route="approximate")
    assert res.route == "approximate"
    # every reported distance is the true distance of the reported row, and rows are distinct and sorted
    true = np.sqrt(((q[:, None, :].astype(np.float64) - x[res.indices].astype(np.float64)) ** 2).sum(-1))
    np.testing.assert_allclose(res.distances, true, rtol=1e-6)
    assert (np.diff(res.distances, axis=1) >= 0).all()
    assert all(len(set(row)) == 10 for row in res.indices)
    _, bi = _brute(q, x, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(res.indices, bi)])
    assert recall > 0.97, recall
    own = K.self_knn(x[:4000], 3, route="approximate")
    assert not (own.indices == np.arange(4000)[:, None]).any()  # never its own neighbour


def test_auto_route_chooses_by_size_and_bad_requests_are_refused():
    assert K.choose_route(1000, 1000, 768) == "exact"
    assert K.choose_route(100_000, 100_000, 768) == "approximate"
    assert K.choose_route(100_000, 5_000, 768) == "exact"  # too few data rows to partition
    with pytest.raises(MetricError, match="route must be one of"):
        K.knn(np.zeros((2, 2)), np.zeros((3, 2)), 1, route="fast")
    with pytest.raises(MetricError, match="only 3 rows"):
        K.knn(np.zeros((2, 2)), np.zeros((3, 2)), 4)
    with pytest.raises(MetricError, match="positive integer"):
        K.self_knn(np.zeros((5, 2)), 0)
    with pytest.raises(MetricError, match="dimensions"):
        K.knn(np.zeros((2, 3)), np.zeros((5, 2)), 1)
    with pytest.raises(MetricError, match="NaN"):
        K.knn(np.full((2, 2), np.nan), np.zeros((5, 2)), 1)


def test_self_neighbours_are_cached_per_content_and_sliced_for_smaller_k(monkeypatch):
    x = np.random.default_rng(0).normal(size=(200, 4))
    calls = []
    real_exact = K._exact
    monkeypatch.setattr(K, "_exact", lambda *a: calls.append(a[2]) or real_exact(*a))
    big = K.self_knn(x, 6)
    small = K.self_knn(x.copy(), 2)  # same content, new array: from the cache
    assert calls == [6]
    np.testing.assert_array_equal(small.indices, big.indices[:, :2])
    K.self_knn(x + 1e-3, 2)  # other content: computed
    assert calls == [6, 2]


def test_approximate_searches_are_cached_per_content_of_both_sides(monkeypatch):
    x = _clustered(3000, seed=5)
    q = _clustered(100, seed=6, shift=0.3)
    K.clear_cache()
    calls = []
    real_search = K.ApproximateIndex.search
    monkeypatch.setattr(K.ApproximateIndex, "search", lambda self, qq, k, **kw: calls.append(k) or real_search(self, qq, k, **kw))
    first = K.knn(q, x, 4, route="approximate")
    again = K.knn(q.copy(), x.copy(), 2, route="approximate")  # same contents, smaller k: a slice of the first
    assert calls == [4]
    np.testing.assert_array_equal(again.indices, first.indices[:, :2])
    K.knn(q + 1e-3, x, 2, route="approximate")  # another query set: searched
    assert calls == [4, 2]


def test_routes_are_logged_and_recorded(caplog):
    x = np.random.default_rng(0).normal(size=(50, 3))
    with caplog.at_level(logging.INFO, logger="medsynth_explore.metrics.knn"), K.record_routes() as log:
        M.prdc(x, x + 0.1, k=3)
        M.nn_distances(x, x + 0.1)
    assert [e["route"] for e in log] == ["exact", "exact"]
    assert {e["what"] for e in log} == {"prdc", "nearest (privacy)"}
    assert "exact route" in caplog.text


def test_radii_are_computed_once_per_set(monkeypatch):
    prdc_mod = importlib.import_module("medsynth_explore.metrics.prdc")

    rng = np.random.default_rng(1)
    real = rng.normal(size=(120, 5))
    calls = []
    real_radii = prdc_mod.knn_radii
    monkeypatch.setattr(prdc_mod, "knn_radii", lambda x, k, squared=False: calls.append(len(x)) or real_radii(x, k, squared))
    first = M.prdc(real, rng.normal(size=(80, 5)), k=4)
    second = M.prdc(real, rng.normal(size=(90, 5)), k=4)
    assert calls == [120, 80, 90]  # the real radii once, each synthetic set once
    assert set(first) == set(second)


@pytest.mark.parametrize("k", [3, 5])
def test_prdc_approximate_route_stays_within_half_a_point_of_the_exact_route(k):
    real = _clustered(12_000, seed=5)
    fake = _clustered(12_000, seed=6, shift=0.25)
    exact = M.prdc(real, fake, k=k, route="exact")
    approx = M.prdc(real, fake, k=k, route="approximate")
    for name in exact:
        assert abs(approx[name] - exact[name]) < 0.005, (name, exact[name], approx[name])


def test_privacy_approximate_route_stays_within_half_a_point_of_the_exact_route():
    train = _clustered(12_000, seed=7)
    held = _clustered(12_000, seed=8)
    syn = np.concatenate([_clustered(11_000, seed=9, shift=0.1), train[:1000] + 1e-4])  # 1,000 near-copies
    for route in ("exact", "approximate"):
        a = M.authenticity(train, syn, route=route)["authenticity"]
        c = M.copy_rate(train, syn, held, route=route)["copy_rate"]
        if route == "exact":
            a0, c0 = a, c
    assert abs(a - a0) < 0.005 and abs(c - c0) < 0.005, (a0, a, c0, c)
    assert c0 >= 1000 / 12_000  # the copies are found on both routes
    d_exact, _ = M.nn_distances(syn[:300], train, route="exact")
    d_approx, _ = M.nn_distances(syn[:300], train, route="approximate")
    assert (d_approx >= d_exact * (1 - 1e-6)).all()  # an approximate neighbour is never nearer than the true one
    assert np.mean(np.isclose(d_approx, d_exact, rtol=1e-6)) > 0.97


def test_evaluate_records_the_route_in_the_provenance():
    from medsynth_explore.evaluate import evaluate

    rng = np.random.default_rng(0)
    real, syn = rng.normal(size=(200, 4)), rng.normal(size=(150, 4))
    rep = evaluate(real, syn, metrics=["coverage"], n_boot=2)
    assert rep.provenance["neighbours"]["route"] == "exact"
    assert rep.provenance["settings"]["knn_route"] == "auto"
    rep = evaluate(real, syn, metrics=["coverage", "fid"], n_boot=0, knn_route="approximate")
    assert rep.provenance["neighbours"]["route"] == "approximate"
    assert rep.provenance["neighbours"]["largest"]["n_data"] in (150, 200)


@pytest.mark.parametrize("sizes", [[3, 1, 7, 40, 2, 64], [200], [1] * 12 + [90]])
def test_streaming_prdc_keeps_recall_incrementally_and_equals_batch(sizes, monkeypatch):
    prdc_mod = importlib.import_module("medsynth_explore.metrics.prdc")
    rng = np.random.default_rng(len(sizes))
    real = rng.normal(size=(150, 4))
    fake = rng.normal(size=(sum(sizes) + 1, 4)) * 1.1 + 0.2
    ends = np.cumsum([1, *sizes])[1:]
    expected = {int(e): M.prdc(real, fake[:e], route="exact") for e in ends if e > 5}
    s = M.StreamingPRDC(k=5)
    s.update(real, real=True)
    s.update(fake[:1], real=False)
    s.compute(recall=False)  # builds the real radii; from here on nothing is recomputed from scratch

    def refuse(*a, **kw):
        raise AssertionError("the stream recomputed radii")

    monkeypatch.setattr(prdc_mod, "knn_radii", refuse)
    done = 1
    for n in sizes:
        s.update(fake[done : done + n], real=False)
        done += n
        if done > 5:
            assert s.compute() == pytest.approx(expected[done], rel=1e-12)


def test_streaming_prdc_route_setting_is_part_of_its_settings():
    a, b = M.StreamingPRDC(route="exact"), M.StreamingPRDC(route="auto")
    a.update(np.zeros((8, 2)), real=True)
    with pytest.raises(MetricError, match="route"):
        a.merge(b)


def test_exact_route_with_given_norms_equals_the_plain_search():
    rng = np.random.default_rng(5)
    x, q = rng.normal(size=(500, 6)).astype(np.float32), rng.normal(size=(20, 6)).astype(np.float32)
    plain = K.knn(q, x, 4, route="exact")
    given = K.knn(q, x, 4, route="exact", data_sq=(x * x).sum(1))
    np.testing.assert_array_equal(given.indices, plain.indices)
    np.testing.assert_array_equal(given.distances, plain.distances)
    with pytest.raises(MetricError, match="one squared norm per data row"):
        K.knn(q, x, 4, route="exact", data_sq=np.ones(3))


def test_session_metrics_take_the_route_asked_for():
    from medsynth_explore.data import ImageSet
    from medsynth_explore.session import Session

    rng = np.random.default_rng(3)
    s = Session(reference=ImageSet(rng.random((40, 1, 8, 8)).astype(np.float32)), generators=[], encoder="pixels")
    s.add_samples(ImageSet(rng.random((30, 1, 8, 8)).astype(np.float32)), "mine")
    values = {}
    for route in ("exact", "approximate"):
        with K.record_routes() as log:
            values[route] = s.metrics("mine", ["prdc"], k=3, knn_route=route)
        assert {e["route"] for e in log} == {route}
    assert values["approximate"] == pytest.approx(values["exact"], abs=0.05)
    with pytest.raises(MetricError, match="knn route"):
        s.metrics("mine", ["prdc"], knn_route="fast")
