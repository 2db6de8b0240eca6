"""The map at scale: Embedding's disk cache and large-map path, the WebGL scatter, the panel on it, the Dask helpers."""

from __future__ import annotations

import importlib.resources
import re
import warnings

import numpy as np
import pytest

from medsynth_explore.data import ImageSet
from medsynth_explore.errors import DataError
from medsynth_explore.jobs import JobRunner
from medsynth_explore.session import Embedding, Session
from medsynth_explore.session.embedding import SMALL_MAP


def _blobs(n, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1).normal(size=(4, d)) * 6
    return (centres[rng.integers(0, 4, n)] + rng.normal(size=(n, d))).astype(np.float32)


def test_embedding_is_public():
    import medsynth_explore as mse

    assert mse.Embedding is Embedding and "Embedding" in mse.__all__


def test_fitted_map_is_cached_on_disk_and_reloaded(tmp_path):
    x = _blobs(200)
    first = Embedding(x, n_epochs=30, cache=tmp_path)
    files = list(tmp_path.glob("map-*.safetensors"))
    assert not first.from_cache and len(files) == 1
    again = Embedding(x.copy(), n_epochs=30, cache=tmp_path)
    assert again.from_cache
    np.testing.assert_array_equal(again.reference, first.reference)
    q = x[:10] + 0.05
    np.testing.assert_array_equal(again.transform(q), first.transform(q))  # placement identical after a reload
    other = Embedding(x, n_epochs=31, cache=tmp_path)  # other settings: another entry
    assert not other.from_cache and len(list(tmp_path.glob("map-*.safetensors"))) == 2


def test_a_damaged_cache_file_is_refitted_not_trusted(tmp_path):
    x = _blobs(120, seed=2)
    first = Embedding(x, n_epochs=20, cache=tmp_path)
    (path,) = tmp_path.glob("map-*.safetensors")
    path.write_bytes(b"\x00" * 64)
    with pytest.warns(RuntimeWarning, match="unreadable cached map"):
        again = Embedding(x, n_epochs=20, cache=tmp_path)
    assert not again.from_cache
    np.testing.assert_array_equal(again.reference, first.reference)  # same seed, same map
    assert Embedding(x, n_epochs=20, cache=tmp_path).from_cache  # rewritten


def test_large_map_takes_the_precomputed_graph_and_places_points_near_their_twins():
    x = _blobs(SMALL_MAP + 200, seed=3)
    emb = Embedding(x, n_epochs=30, cache=False)
    assert emb.route == "exact"  # neighbour graph from metrics/knn.py, handed to umap-learn
    xy = emb.transform(x[:50] + 0.01)
    spread = np.ptp(emb.reference, axis=0).max()
    assert np.median(np.linalg.norm(xy - emb.reference[:50], axis=1)) < 0.05 * spread
    # the four blobs stay apart: each placed point lands nearest to a reference point of its own blob
    nearest = np.argmin(((xy[:, None, :] - emb.reference[None]) ** 2).sum(-1), axis=1)
    blob = np.argmin(((x[:, None, :] - np.random.default_rng(1).normal(size=(4, 8))[None] * 6) ** 2).sum(-1), axis=1)
    assert (blob[nearest] == blob[:50]).mean() > 0.95


def test_bad_input_to_the_map_is_refused():
    x = _blobs(60)
    emb = Embedding.from_layout(x, x[:, :2], a=1.58, b=0.9, n_neighbors=5)
    with pytest.raises(DataError, match="dimensions"):
        emb.transform(np.zeros((2, 3)))
    with pytest.raises(DataError, match="rows of the reference"):
        emb.place_neighbours(np.full((1, 5), 999), np.ones((1, 5)))
    with pytest.raises(DataError, match="shape"):
        Embedding.from_layout(x, x[:10, :2], a=1.0, b=1.0)
    with pytest.raises(DataError, match="n_epochs"):
        Embedding(x, n_epochs=0, cache=False)
    with pytest.raises(Exception, match="NaN"):
        Embedding(np.full((10, 2), np.nan), cache=False)


def test_session_uses_a_map_made_elsewhere():
    rng = np.random.default_rng(0)
    ref = ImageSet(rng.random((40, 1, 8, 8)).astype(np.float32))
    s = Session(reference=ref, generators=[], encoder="pixels")
    s.add_samples(ImageSet(rng.random((6, 1, 8, 8)).astype(np.float32)), "g")
    feats = s.reference_features()
    emb = Embedding.from_layout(feats, rng.normal(size=(40, 2)), a=1.58, b=0.9, n_neighbors=5)
    s.use_map(emb)
    assert s.has_map and s.embedding() is emb and emb.synthetic["g"].shape == (6, 2)
    with pytest.raises(DataError, match="not this session's reference"):
        s.use_map(Embedding.from_layout(feats + 1, rng.normal(size=(40, 2)), a=1.58, b=0.9, n_neighbors=5))


def test_umap_kernels_of_placement_use_numba_disk_cache():
    import sys

    from numba.core.caching import FunctionCache

    from medsynth_explore.session import enable_umap_cache

    enable_umap_cache()
    umap_ = sys.modules["umap.umap_"]
    for kernel in (
        umap_.compute_membership_strengths,
        umap_.smooth_knn_dist,
        sys.modules["umap.layouts"]._nb_optimize_layout_euclidean_single_epoch,
    ):
        assert isinstance(kernel._cache, FunctionCache), kernel


def test_background_warm_up_imports_umap_before_its_thread_starts():
    """The thread only compiles: importing in it raced the caller's own scipy imports."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from medsynth_explore.session import warm_up_umap\n"
        "assert 'umap.umap_' not in sys.modules\n"
        "t = warm_up_umap(background=True)\n"
        "imported = [m for m in ('umap.umap_', 'umap.layouts', 'scipy.sparse', 'pynndescent') if m in sys.modules]\n"
        "t.join()\n"
        "print(','.join(imported))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().split(",") == ["umap.umap_", "umap.layouts", "scipy.sparse", "pynndescent"]


# ------------------------------------------------------------------ the WebGL scatter
def test_scatter_javascript_ships_in_the_package_and_fetches_nothing():
    js = importlib.resources.files("medsynth_explore.widgets").joinpath("scatter.js").read_text()
    assert "export" in js and "render" in js and len(js) > 50_000  # the bundle, regl-scatterplot inside
    assert not re.search(r"""import\s*\(?\s*["']https?:""", js)  # no module loaded from the network
    assert not re.search(r"""from\s*["']https?:""", js)
    assert "fetch(" not in js


def test_scatter_syncs_points_as_binary_and_selection_back():
    from medsynth_explore.widgets.scatter import MapScatter

    w = MapScatter()
    xy = np.random.default_rng(0).normal(size=(1000, 2)) * 5 + 3
    w.set_points(xy, category=np.arange(1000) % 3, side=np.arange(1000) > 900, palette=["#111111", "#222222", "#333333"])
    pts = np.frombuffer(w.points, np.float32).reshape(-1, 2)
    assert len(w.points) == 8000 and np.abs(pts).max() == pytest.approx(1.0)
    state = w.get_state()
    assert isinstance(state["points"], (bytes, memoryview))
    # the browser sends a lasso selection as an int32 buffer
    w.set_state({"selection": memoryview(np.array([5, 7, 900], np.int32).tobytes()), "selection_id": 1})
    assert w.selected.tolist() == [5, 7, 900]
    with pytest.raises(DataError, match="palette"):
        w.set_points(xy, category=np.full(1000, 5), palette=["#000000"])
    with pytest.raises(DataError, match="shape"):
        w.set_points(np.zeros((4, 3)))
    with pytest.raises(DataError, match="indices"):
        w.select([5000])


def _webgl_session(n_ref=300, n_syn=40):
    rng = np.random.default_rng(0)
    import pandas as pd

    md = pd.DataFrame(
        {"sex": rng.choice(["F", "M"], n_ref), "age": rng.integers(20, 90, n_ref), "site": rng.choice(["A", "B"], n_ref)}
    )
    ref = ImageSet(rng.random((n_ref, 1, 8, 8)).astype(np.float32), md)
    s = Session(reference=ref, generators=[], encoder="pixels")
    md2 = pd.DataFrame({"sex": rng.choice(["F", "M"], n_syn), "age": rng.integers(20, 90, n_syn), "site": "A"})
    s.add_samples(ImageSet(rng.random((n_syn, 1, 8, 8)).astype(np.float32), md2), "gen")
    s.use_map(Embedding.from_layout(s.reference_features(), rng.normal(size=(n_ref, 2)), a=1.58, b=0.9, n_neighbors=5))
    return s


def test_panel_draws_large_maps_with_the_webgl_scatter_and_takes_its_selection(monkeypatch):
    import medsynth_explore.widgets.embeddings as E
    from medsynth_explore.widgets import EmbeddingPanel

    s = _webgl_session()
    monkeypatch.setattr(E, "PLOTLY_MAX_POINTS", 100)  # 340 points count as a large map here
    panel = EmbeddingPanel(s, runner=JobRunner(synchronous=True), warm_up=False)
    panel.redraw()
    assert panel.backend_used == "webgl" and panel.map_box.children == (panel.scatter,)
    assert panel.scatter.n_points == 340 and "UMAP of 300 real and 40 synthetic" in panel.heading.value
    assert panel.color_by.options == ("source", "sex", "age_group", "site")
    panel.color_by.value = "age_group"
    cats = np.frombuffer(panel.scatter.category, np.float32)
    assert len(cats) == 340 and len(panel.scatter.palette) == len(set(cats.tolist()))
    assert "age_group" in panel.legend.value
    # a lasso in the browser: 10 real points and 5 synthetic ones (points 300.. are the generator's)
    chosen = np.r_[np.arange(10), 300 + np.arange(5)].astype(np.int32)
    panel.scatter.set_state({"selection": memoryview(chosen.tobytes()), "selection_id": 1})
    assert panel.last_error is None, panel.last_error
    assert panel.selection["real"].tolist() == list(range(10)) and panel.selection["gen"].tolist() == list(range(5))
    text = " ".join(getattr(c, "value", "") for c in panel.detail.children)
    assert "10 real" in text and "Metrics of the selected gen samples" in text
    # a click on one synthetic point shows its nearest reference images
    panel.scatter.set_state({"selection": memoryview(np.array([307], np.int32).tobytes()), "selection_id": 2})
    assert "Nearest reference images" in panel.detail.children[0].value
    # Python selects: the browser is told
    panel.select({"real": np.array([1, 2, 3])})
    assert panel.scatter.selected.tolist() == [1, 2, 3]


def test_small_maps_keep_the_plotly_view():
    from medsynth_explore.widgets import EmbeddingPanel

    s = _webgl_session()
    panel = EmbeddingPanel(s, runner=JobRunner(synchronous=True), warm_up=False)
    panel.redraw()
    assert panel.backend_used == "plotly" and len(panel.figure.data) == 2
    forced = EmbeddingPanel(s, runner=JobRunner(synchronous=True), warm_up=False, backend="webgl")
    forced.redraw()
    assert forced.backend_used == "webgl" and forced.scatter.n_points == 340
    with pytest.raises(ValueError, match="backend"):
        EmbeddingPanel(s, warm_up=False, backend="svg")


# ------------------------------------------------------------------ Dask
def test_distributed_neighbours_and_placement_match_the_local_ones():
    from medsynth_explore.metrics.knn import knn, self_knn
    from medsynth_explore.scale import distributed_neighbours, distributed_place

    x = _blobs(230, seed=4)
    idx, d = distributed_neighbours(x, x, 4, shard_size=60, exclude_self=True)
    local = self_knn(x, 4, route="exact")
    np.testing.assert_array_equal(idx, local.indices)
    np.testing.assert_allclose(d, local.distances, rtol=1e-4)  # float32 blocks on both sides
    q = _blobs(17, seed=5)
    idx, _ = distributed_neighbours(q, x, 3, shard_size=50)
    np.testing.assert_array_equal(idx, knn(q, x, 3, route="exact").indices)
    emb = Embedding.from_layout(x, x[:, :2], a=1.58, b=0.9, n_neighbors=5)
    got, want = distributed_place(emb, q, shard_size=64), emb.transform(q)
    # the same neighbours; distances differ in float rounding, which the layout's few epochs can amplify a little
    spread = np.ptp(emb.reference, axis=0).max()
    assert np.median(np.linalg.norm(got - want, axis=1)) < 0.01 * spread


@pytest.mark.slow
def test_distributed_embedding_on_a_local_cluster():
    distributed = pytest.importorskip("distributed")
    from medsynth_explore.scale import distributed_embedding

    x = _blobs(400, seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
            with distributed.Client(cluster) as client:
                emb = distributed_embedding(x, client=client, shard_size=150, n_neighbors=8, n_epochs=30)
    assert emb.reference.shape == (400, 2) and np.isfinite(emb.reference).all()
    blob = np.argmin(((x[:, None, :] - np.random.default_rng(1).normal(size=(4, 8))[None] * 6) ** 2).sum(-1), axis=1)
    d = ((emb.reference[:, None, :] - emb.reference[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (blob[d.argmin(1)] == blob).mean() > 0.95  # the four blobs stay apart in the layout
