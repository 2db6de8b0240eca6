"""The Explorer at native resolution, without a browser: small thumbnails, a full-size view, the mask canvas at the
image's own resolution with zoom, the model's own condition schema in the controls, progress per denoising step and
Cancel in the middle of sampling."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")

from medsynth_explore.errors import DataError
from medsynth_explore.jobs import JobRunner
from medsynth_explore.session import Session
from medsynth_explore.widgets.common import ImageViewer, image_widget, thumb_grid

from doubles import Blobs, toy_card, toy_reference


def _png_size(data: bytes) -> tuple:
    return Image.open(io.BytesIO(bytes(data))).size


@pytest.fixture(scope="module")
def sd128(tmp_path_factory):
    import torch

    from medsynth_explore.generators import load_generator
    from medsynth_explore.generators.tiny import write_stable_diffusion

    torch.set_num_threads(1)
    return load_generator(write_stable_diffusion(tmp_path_factory.mktemp("sd128"), size=128), default_steps=3)


@pytest.fixture
def session(sd128):
    ref = toy_reference(Blobs(toy_card("blobs", size=32, capabilities=("conditions", "inpaint"))), 30)
    return Session(reference=ref, generators=[sd128], encoder="pixels")


def test_thumbnails_are_small_and_the_viewer_shows_every_pixel():
    big = np.random.default_rng(0).random((1, 512, 512)).astype(np.float32)
    assert _png_size(image_widget(big, 112).value) == (112, 112)
    assert _png_size(image_widget(big, 112, max_side=None).value) == (512, 512)
    clicked = []
    grid = thumb_grid(np.stack([big, big]), ["a", "b"], width=96, on_click=clicked.append)
    cell = grid.children[1]
    assert cell.children[1].value.endswith("b</div>") and "512×512" in cell.children[2].tooltip
    cell.children[2].click()
    assert clicked == [1]
    v = ImageViewer()
    v.show(big, "x")
    assert _png_size(v.image.value) == (512, 512) and v.image.layout.width == "512px"
    v.zoom.value = 0.5
    assert v.image.layout.width == "256px"


def test_generate_panel_offers_the_models_own_schema_and_reports_steps(session):
    from medsynth_explore.widgets import GeneratePanel

    panel = GeneratePanel(session, runner=JobRunner(synchronous=True), n=2)
    assert set(panel.controls) == {"age", "sex", "race", "findings", "prompt"}
    boxes, _ = panel.controls["findings"]
    assert len(boxes) == 14 and "pleural_effusion" in boxes and "128×128" in panel.size_note.value
    panel.controls["race"].value = "Asian"
    boxes["pleural_effusion"].value = True
    panel.generate_button.click()
    assert panel.last_error is None, panel.last_error
    meta = session.synthetic[session.active].metadata
    assert (meta["race"] == "Asian").all() and (meta["pleural_effusion"] == 1).all()
    assert meta["prompt"][0] == "frontal chest radiograph of an Asian patient with pleural effusion"
    assert panel.steps_seen == 3  # one batch of 2 images, 3 denoising steps
    cell = panel.grid.children[0].children[0]
    assert _png_size(cell.children[0].value) == (112, 112)  # shrunk in Python
    assert "pleural_effusion" in cell.children[1].value
    cell.children[2].click()
    assert panel.viewer.layout.display == "flex" and _png_size(panel.viewer.image.value) == (128, 128)


def test_cancel_stops_in_the_middle_of_sampling(session):
    from medsynth_explore.widgets import GeneratePanel

    runner = JobRunner()
    panel = GeneratePanel(session, runner=runner, n=2)
    panel.steps.value = 60
    panel.generate()
    deadline = time.time() + 120
    while panel.steps_seen < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert panel.steps_seen >= 2 and panel.preview.layout.display == "block"
    panel.cancel_button.click()
    while runner.current("generate") is not None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    assert "cancelled" in panel.status.value
    assert panel.steps_seen < 60  # stopped within the first (only) batch of 60 steps
    runner.shutdown()


def test_inpaint_panel_works_at_the_models_resolution(session):
    from medsynth_explore.widgets import InpaintPanel

    panel = InpaintPanel(session, runner=JobRunner(synchronous=True))
    assert (panel.canvas.height, panel.canvas.width) == (128, 128)  # the 32 px real image, resized for the model
    assert "resized from 32×32" in panel.resize_note.value
    assert _png_size(panel.canvas.image) == (128, 128) and len(panel.canvas.mask) == 128 * 128
    assert len(panel.findings) == 14 and "pleural_effusion" in panel.findings
    panel.zoom.value = 2.0
    assert panel.canvas.zoom == 2.0
    with pytest.raises(DataError, match="zoom"):
        panel.canvas.zoom = 20
    panel.canvas.paint_disc(64, 64, radius=20)
    panel.findings["pneumothorax"].value = "add"
    panel.run_button.click()
    assert panel.last_error is None, panel.last_error
    res = panel.last_result
    assert res.mask.shape == (128, 128) and res.before.shape == (1, 128, 128)
    np.testing.assert_array_equal(res.after[0][~res.mask], res.before[0][~res.mask])
    assert res.psnr_outside == np.inf
    assert "128×128 px" in panel.result_box.children[1].value
    diff_button = panel.result_box.children[0].children[0].children[2].children[2]
    diff_button.click()
    assert _png_size(panel.viewer.image.value) == (128, 128) and "after − before" in panel.viewer.title.value


def test_a_selection_and_its_neighbours_mix_resolutions(session, sd128):
    from medsynth_explore.widgets import EmbeddingPanel

    session.add_samples(sd128.sample(3, seed=0), sd128.name)  # 128 px samples beside the 32 px reference
    panel = EmbeddingPanel(session, runner=JobRunner(synchronous=True), warm_up=False)
    panel.select({"real": [0, 1, 2], sd128.name: [0, 1, 2]})
    grid = panel.detail.children[1]
    assert len(grid.children) == 6
    assert {_png_size(c.children[0].value) for c in grid.children} == {(32, 32), (80, 80)}
    panel.show_neighbours(sd128.name, 1, k=2)
    assert len(panel.detail.children[1].children) == 3 and panel.last_error is None
