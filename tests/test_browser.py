"""The Explorer in a real JupyterLab 4 and Debian's chromium, driven by playwright.

Screenshots are saved to ``artifacts/browser/`` for people to look at. Without
chromium the test is skipped with the reason, except under CI (``CI=true``),
where ``.ci/run`` installs it and its absence is a failure.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from labdriver import CHROMIUM, FLAGS, LabServer, require_chromium, write_notebook
from labdriver import run_first_cell as _drive_first_cell

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"

pytestmark = pytest.mark.browser

NOTEBOOK_CODE = """\
import medsynth_explore as mse
app = mse.explore(generator="phantomcxr-physics", n_reference=300, encoder="pixels")
app
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require_chromium()
    root = tmp_path_factory.mktemp("lab")
    write_notebook(root / "explorer.ipynb", [NOTEBOOK_CODE])
    try:
        server = LabServer(root, "medsynth-test")
    except RuntimeError as err:
        pytest.fail(str(err))
    yield server.url("explorer.ipynb")
    server.close()


@pytest.fixture(scope="module")
def page(lab):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 1000})
        pg.set_default_timeout(120_000)
        pg.goto(lab)
        pg.wait_for_selector(".jp-Notebook .jp-Cell .cm-content")
        _run_first_cell(pg)
        pg.wait_for_selector(".msx-panel", timeout=240_000)
        pg.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=240_000)
        yield pg
        browser.close()


def _run_first_cell(pg) -> None:
    _drive_first_cell(pg, on_failure=lambda p: _shot(p, "00_not_started"))


def _shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


def _tab(page, title):
    page.locator(".lm-TabBar-tab, .p-TabBar-tab", has_text=title).first.click()
    page.wait_for_timeout(300)


def test_explorer_renders_without_widget_errors(page):
    _shot(page, "01_explorer")
    assert page.locator("text=Error displaying widget").count() == 0
    assert page.locator(".msx-error").count() == 0
    for title in (
        "Generate",
        "Inpaint",
        "Embeddings",
        "Live metrics",
        "Fairness",
        "Trilemma",
        "Privacy",
        "Model card",
        "Turing test",
    ):
        assert page.locator(".lm-TabBar-tab", has_text=title).count() >= 1, title


def test_change_condition_and_generate(page):
    _tab(page, "Generate")
    panel = page.locator(".msx-panel").filter(has=page.locator("button", has_text="Generate")).first
    panel.locator(".widget-toggle-buttons button", has_text="F").first.click()
    # count grid thumbnails only: the panel also holds the step preview and the full-size viewer
    before = page.locator(".msx-panel .widget-gridbox .widget-image").count()
    panel.locator("button", has_text="Generate").first.click()
    page.wait_for_function(
        "(n) => document.querySelectorAll('.msx-panel .widget-gridbox .widget-image').length >= n + 8", arg=before
    )
    _shot(page, "02_generate")
    captions = panel.locator(".msx-caption").all_inner_texts()
    asked = [c for c in captions if c.startswith("asked")]
    assert len(asked) >= 8 and all(" F " in c for c in asked[:8]), asked[:8]
    assert page.locator(".msx-error").count() == 0


def test_paint_mask_and_inpaint(page):
    _tab(page, "Inpaint")
    canvas = page.locator(".msx-canvas canvas").first
    canvas.wait_for(state="visible")
    box = canvas.bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.30, box["y"] + box["height"] * 0.70
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(x0 + k * box["width"] * 0.03, y0, steps=2)
    page.mouse.up()
    page.wait_for_timeout(500)
    page.locator(".widget-dropdown:visible", has_text="nodule").locator("select").select_option("add")
    page.locator("button:visible", has_text="Inpaint").first.click()
    try:
        page.wait_for_selector("text=PSNR outside mask", timeout=120_000)
    finally:
        _shot(page, "03_inpaint")
    _shot(page, "03_inpaint")
    text = page.locator(".msx-metric").filter(has_text="PSNR outside mask").first.inner_text()
    assert "dB" in text
    assert page.locator(".msx-error").count() == 0


def test_select_points_on_umap_shows_thumbnails(page):
    _tab(page, "Embeddings")
    page.locator("button:visible", has_text="Compute map").first.click()
    page.wait_for_selector("text=UMAP of", timeout=240_000)
    page.wait_for_timeout(1500)
    plot = page.locator(".js-plotly-plot .nsewdrag").first
    box = plot.bounding_box()
    cx, cy, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(cx + 0.02 * w, cy + 0.02 * h)
    page.mouse.down()
    for fx, fy in ((0.98, 0.02), (0.98, 0.98), (0.02, 0.98), (0.02, 0.03)):
        page.mouse.move(cx + fx * w, cy + fy * h, steps=8)
    page.mouse.up()
    page.wait_for_selector("text=Selection", timeout=60_000)
    _shot(page, "04_embeddings")
    n_thumbs = page.locator(".msx-panel .widget-gridbox .widget-image").count()
    assert n_thumbs >= 16
    assert page.locator(".msx-error").count() == 0


def test_model_card_and_fairness_tabs_render(page):
    _tab(page, "Model card")
    page.wait_for_selector("text=phantomcxr-physics", timeout=60_000)
    _shot(page, "05_model_card")
    _tab(page, "Fairness")
    page.locator("button:visible", has_text="Compute").first.click()
    page.wait_for_timeout(500)
    page.wait_for_selector(".msx-panel .js-plotly-plot .bars, .msx-panel .msx-error", timeout=120_000)
    _shot(page, "06_fairness")
    assert page.locator("text=Error displaying widget").count() == 0
