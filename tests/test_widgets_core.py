"""Generate, Inpaint, Embeddings, Live metrics and the app, driven as the browser would (no browser)."""

from __future__ import annotations

import numpy as np
import pytest

from medsynth_explore.jobs import JobRunner
from medsynth_explore.session import Session

from doubles import Blobs, toy_card, toy_reference


def _generator():
    return Blobs(toy_card("blobs", size=32, capabilities=("conditions", "inpaint")))


def _reference(n=60):
    return toy_reference(_generator(), n)


@pytest.fixture
def session():
    return Session(reference=_reference(), generators=[_generator()], encoder="pixels")


def test_generate_panel_builds_controls_from_schema_and_generates(session):
    from medsynth_explore.widgets import GeneratePanel

    panel = GeneratePanel(session, runner=JobRunner(synchronous=True), n=6)
    slider, free = panel.controls["age"]
    assert slider.disabled and free.value  # unset by default: drawn from the data
    free.value = False
    slider.value = 70
    panel.controls["sex"].value = "F"
    boxes, _ = panel.controls["findings"]
    boxes["effusion"].value = True
    assert panel.conditions() == {"age": 70.0, "sex": "F", "findings": ["effusion"]}
    panel.generate_button.click()
    assert panel.last_error is None
    assert len(session.synthetic["blobs"]) == 6
    meta = session.synthetic["blobs"].metadata
    assert (meta.age == 70).all() and (meta.sex == "F").all() and (meta.effusion == 1).all()
    assert len(panel.grid.children) == 1 and len(panel.grid.children[0].children) == 6
    caption = panel.grid.children[0].children[0].children[1].value
    assert "<b>asked</b> 70y F effusion" in caption


def test_generate_panel_starts_at_the_card_defaults_and_sets_condition_guidance():
    pytest.importorskip("diffusers")
    from medsynth_explore.generators.diffusion import DiffusionGenerator
    from medsynth_explore.widgets import GeneratePanel

    gen = DiffusionGenerator.tiny(seed=0)
    session = Session(reference=_reference(), generators=[gen], encoder="pixels")
    panel = GeneratePanel(session, runner=JobRunner(synchronous=True), n=2)
    assert panel.steps.value == gen.card["sampler_defaults"]["steps"] == 4
    assert panel.guidance.value == 2.0
    assert list(panel.condition_guidance) == ["age", "sex", "findings"]
    assert all(sl.value == 0.0 for sl in panel.condition_guidance.values())  # the card's default: none
    panel.condition_guidance["age"].value = 1.5
    panel.generate_button.click()
    assert panel.last_error is None
    meta = session.synthetic[gen.name].metadata
    assert (meta["steps"] == 4).all() and (meta["condition_guidance"] == "age=1.5").all()
    assert gen.condition_guidance == {"age": 1.5}
    panel.condition_guidance["age"].value = 0.0
    panel.generate_button.click()
    assert (session.synthetic[gen.name].metadata["condition_guidance"].iloc[-2:] == "").all() and gen.condition_guidance == {}


def test_generate_panel_shows_errors_in_words(session):
    from medsynth_explore.widgets import GeneratePanel

    panel = GeneratePanel(session, runner=JobRunner(synchronous=True))
    panel.controls["age"][1].value = False
    panel.controls["age"][0].max = 120
    panel.controls["age"][0].value = 110
    panel.generate_button.click()  # must not raise
    assert "outside the range" in panel.last_error and "msx-error" in panel.error.value
    assert len(session.synthetic["blobs"]) == 0


def test_inpaint_panel_paints_runs_and_reports(session):
    from medsynth_explore.widgets import InpaintPanel

    panel = InpaintPanel(session, runner=JobRunner(synchronous=True))
    panel.run_button.click()
    assert "mask is empty" in panel.last_error
    panel.canvas.paint_disc(26, 16, radius=5)
    panel.canvas.paint_disc(26, 18, radius=1, erase=True)
    m = panel.canvas.mask_array
    assert m.any() and not m[26, 18]
    panel.canvas.undo()
    assert panel.canvas.mask_array[26, 18]
    panel.findings["effusion"].value = "add"
    assert "effusion" in panel.conditions()["findings"]
    panel.run_button.click()
    assert panel.last_error is None, panel.last_error
    res = panel.last_result
    keep = ~res.mask
    np.testing.assert_array_equal(res.after[0][keep], res.before[0][keep])
    assert res.psnr_outside == np.inf or res.psnr_outside > 60
    assert 0.9 < res.ssim_outside <= 1.0  # windows at the mask edge see changed pixels
    assert len(panel.result_box.children) == 2
    panel.canvas.clear()
    assert not panel.canvas.mask_array.any()


def test_embedding_panel_places_new_samples_without_refitting(session):
    from medsynth_explore.widgets import EmbeddingPanel

    panel = EmbeddingPanel(session, runner=JobRunner(synchronous=True))
    session.generate(20, seed=1)
    panel.fit_button.click()
    assert panel.last_error is None, panel.last_error
    emb = session.embedding()
    ref_before = emb.reference.copy()
    n_traces = len(panel.figure.data)
    assert n_traces == 2 and len(panel.figure.data[0].x) == len(session.reference)
    session.generate(10, seed=2)  # streamed in: placed by transform
    np.testing.assert_array_equal(emb.reference, ref_before)
    assert len(emb.synthetic["blobs"]) == 30 and len(panel.figure.data[1].x) == 30
    panel.color_by.value = "sex"
    assert len(panel.figure.data) == 4
    panel.select({"blobs": np.arange(10), "real": np.arange(20)})
    assert panel.selection["blobs"].tolist() == list(range(10))
    text = " ".join(getattr(c, "value", "") for c in panel.detail.children)
    assert "Metrics of the selected blobs samples" in text and "coverage" in text
    panel.show_neighbours("blobs", 0, k=3)
    assert "distance" in str(panel.detail.children[1].children[1].children[1].value)


def test_umap_kernels_get_numba_disk_cache():
    """umap-learn marks almost no kernel cache=True; the session switches numba's disk cache on for them."""
    import sys

    from numba.core.caching import FunctionCache

    from medsynth_explore.session import enable_umap_cache

    enable_umap_cache()
    umap_ = sys.modules["umap.umap_"]
    for kernel in (
        umap_.smooth_knn_dist,
        umap_.compute_membership_strengths,
        umap_.fast_knn_indices,
        sys.modules["umap.layouts"]._nb_optimize_layout_euclidean_single_epoch,
    ):
        assert isinstance(kernel._cache, FunctionCache), kernel
    assert enable_umap_cache() == 0  # idempotent


def test_metrics_panel_streams_batches(session):
    from medsynth_explore.widgets import MetricsPanel

    panel = MetricsPanel(session, runner=JobRunner(synchronous=True))
    panel.total.value, panel.batch.value = 64, 32
    panel.run_button.click()
    assert panel.last_error is None, panel.last_error
    assert panel.history.n.tolist() == [32, 64]
    assert np.isfinite(panel.history.fid).all() and "FID" in panel.numbers.value
    direct = session.metrics()
    assert panel.history.fid.iloc[-1] == pytest.approx(direct["fid"])
    assert len(panel.figure.data) == 5


def test_app_holds_every_panel_over_one_session(session):
    from medsynth_explore.widgets import Explorer
    from medsynth_explore.widgets.app import PANEL_ORDER

    app = Explorer(session, runner=JobRunner(synchronous=True))
    assert list(app.panels) == [t for t, _, _ in PANEL_ORDER]
    assert all(getattr(p, "session", session) is session for p in app.panels.values())


def test_live_metrics_follow_streamed_batches_and_match_batch_values(session):
    session.generate(20, seed=1)
    first = session.live_metrics()
    session.generate(20, seed=2)  # updates the streaming states, no recomputation
    live = session.live_metrics()
    batch = session.metrics()
    assert live["fid"] == pytest.approx(batch["fid"], rel=1e-6)
    for key in ("precision", "recall", "density", "coverage"):
        assert live[key] == pytest.approx(batch[key], rel=1e-9), key
    assert live["fid"] != first["fid"]
    session.clear_samples()
    with pytest.raises(Exception, match="more than 5 synthetic"):
        session.live_metrics()
