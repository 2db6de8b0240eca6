"""The Explorer on a 512 px generator in a real JupyterLab 4 and Debian's chromium: Generate (small thumbnails, a
full-size view), Inpaint on the canvas at 512 x 512, the Embeddings map. Screenshots go to artifacts/browser/native_*.png.

The generator is a tiny random-weight Stable Diffusion pipeline (512 px, written in the published folder layout), so
its images are noise; what is checked is that the Explorer handles the resolution: the pixels that travel, the canvas
size, the result computed at 512 px, and no widget errors.
"""

from __future__ import annotations

import pytest
from labdriver import LabServer, require_chromium, write_notebook
from test_browser import ARTIFACTS, CHROMIUM, FLAGS, _run_first_cell, _tab

pytestmark = pytest.mark.browser

NOTEBOOK_CODE = """\
import torch
torch.set_num_threads(2)
import medsynth_explore as mse
from medsynth_explore.generators import load_generator
from medsynth_explore.generators.tiny import write_stable_diffusion
gen = load_generator(write_stable_diffusion("sd512", size=512), default_steps=3)
app = mse.explore(generator=gen, n_reference=60, size=256, encoder="pixels", panels=["Generate", "Inpaint", "Embeddings"])
app
"""


def _shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"native_{name}.png"), full_page=False)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    pytest.importorskip("transformers")
    require_chromium()
    root = tmp_path_factory.mktemp("lab-native")
    write_notebook(root / "native.ipynb", [NOTEBOOK_CODE])
    try:
        server = LabServer(root, "medsynth-native")
    except RuntimeError as err:
        pytest.fail(str(err))
    yield server.url("native.ipynb")
    server.close()


@pytest.fixture(scope="module")
def page(lab):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 1100})
        pg.set_default_timeout(180_000)
        pg.goto(lab)
        pg.wait_for_selector(".jp-Notebook .jp-Cell .cm-content")
        _run_first_cell(pg)
        pg.wait_for_selector(".msx-panel", timeout=300_000)
        pg.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=300_000)
        no = pg.locator(".jp-toast-container button", has_text="No")  # JupyterLab's "get notified of news?" toast
        if no.count():
            no.first.click()
        yield pg
        browser.close()


def _natural_widths(page, selector):
    return page.eval_on_selector_all(selector, "els => els.map(e => e.naturalWidth)")


def test_generate_at_512_px_with_small_thumbnails_and_a_full_size_view(page):
    _shot(page, "01_explorer")
    assert page.locator("text=Error displaying widget").count() == 0
    _tab(page, "Generate")
    panel = page.locator(".msx-panel").filter(has=page.locator("button", has_text="Generate")).first
    assert panel.locator("text=makes 512×512 px images").count() == 1
    assert panel.locator(".widget-checkbox", has_text="pleural_effusion").count() == 1  # the model's own schema
    panel.locator(".widget-checkbox", has_text="pleural_effusion").locator("input").check()
    panel.locator("button", has_text="Generate").first.click()
    page.wait_for_function(
        "() => document.querySelectorAll('.msx-panel .widget-gridbox .widget-image').length >= 8", timeout=300_000
    )
    page.wait_for_timeout(500)
    _shot(page, "02_generate")
    widths = _natural_widths(page, ".msx-panel .widget-gridbox .widget-image")
    assert widths and max(widths) <= 112, widths  # shrunk in Python: a thumbnail is not a 512 px PNG
    captions = panel.locator(".msx-caption").all_inner_texts()
    assert any("pleural_effusion" in c for c in captions), captions[:4]
    panel.locator("button.msx-fullsize").first.click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.msx-panel img')].some(e => e.naturalWidth === 512)", timeout=60_000
    )
    page.wait_for_timeout(300)
    _shot(page, "03_full_size")
    assert page.locator(".msx-error").count() == 0


def test_inpaint_on_the_512_px_canvas(page):
    _tab(page, "Inpaint")
    canvas = page.locator(".msx-canvas canvas").first
    canvas.wait_for(state="visible")
    page.wait_for_function("() => { const c = document.querySelector('.msx-canvas canvas'); return c && c.width === 512; }")
    assert canvas.evaluate("c => [c.width, c.height]") == [512, 512]  # one canvas pixel per image pixel
    assert page.locator("text=resized from 256×256").count() >= 1
    box = canvas.bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.55
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(x0 + k * box["width"] * 0.025, y0 + k * box["height"] * 0.01, steps=2)
    page.mouse.up()
    page.wait_for_timeout(500)
    page.locator(".widget-dropdown:visible", has_text="pleural_effusion").locator("select").select_option("add")
    page.locator("button:visible", has_text="Inpaint").first.click()
    try:
        page.wait_for_selector("text=PSNR outside mask", timeout=300_000)
        page.locator(".msx-metric").filter(has_text="PSNR outside mask").first.scroll_into_view_if_needed()
    finally:
        _shot(page, "04_inpaint")
    assert "512×512 px" in page.locator(".msx-metric").filter(has_text="computed at").first.inner_text()
    assert "dB" in page.locator(".msx-metric").filter(has_text="PSNR outside mask").first.inner_text()
    page.locator("button.msx-fullsize:visible", has_text="full size").nth(2).click()  # the difference at 512 px
    page.wait_for_function(
        "() => [...document.querySelectorAll('.msx-panel img')].filter(e => e.naturalWidth === 512).length >= 1"
    )
    page.locator("text=after − before").last.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    _shot(page, "05_difference_full_size")
    assert page.locator(".msx-error").count() == 0


def test_embeddings_map_with_512_px_samples(page):
    _tab(page, "Embeddings")
    page.locator("button:visible", has_text="Compute map").first.click()
    page.wait_for_selector("text=UMAP of", timeout=300_000)
    page.wait_for_timeout(1500)
    _shot(page, "06_embeddings_map")
    assert page.locator(".js-plotly-plot .scatterlayer .trace, .js-plotly-plot .gl-container").count() >= 1
    assert page.locator(".msx-error").count() == 0


def test_embeddings_map_draws_every_point(page):
    _tab(page, "Embeddings")
    page.wait_for_selector("text=UMAP of", timeout=300_000)
    # plotly draws the figure's state after the panel's heading has changed: wait for the points, not for a fixed time
    count = (
        "() => Math.max(0, ...[...document.querySelectorAll('.msx-panel .js-plotly-plot')]"
        ".map(g => (g.data || []).reduce((s, t) => s + (t.x ? t.x.length : 0), 0)))"
    )
    try:
        page.wait_for_function(f"({count})() >= 68", timeout=120_000)
    finally:
        _shot(page, "06b_embeddings_points")
    assert page.evaluate(count) == 68  # 60 real and 8 synthetic points, not an empty plot


def test_lasso_a_mixed_resolution_selection_shows_thumbnails(page):
    _tab(page, "Embeddings")
    plot = page.locator(".js-plotly-plot .nsewdrag").first
    box = plot.bounding_box()
    cx, cy, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(cx + 0.02 * w, cy + 0.02 * h)
    page.mouse.down()
    for fx, fy in ((0.98, 0.02), (0.98, 0.98), (0.02, 0.98), (0.02, 0.03)):
        page.mouse.move(cx + fx * w, cy + fy * h, steps=8)
    page.mouse.up()
    page.wait_for_selector("text=Selection", timeout=30_000)
    page.wait_for_timeout(500)
    _shot(page, "07_embeddings_selection")
    widths = _natural_widths(page, ".msx-panel .widget-gridbox .widget-image")
    assert len(widths) >= 8 and max(widths) <= 112, widths
    assert page.locator(".msx-error").count() == 0
