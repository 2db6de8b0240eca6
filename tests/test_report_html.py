"""The HTML report of evaluate, opened in Debian's chromium with playwright: it renders offline, its images decode.

The screenshot goes to ``artifacts/report/`` for people to look at. Without
chromium the test is skipped with the reason, except under CI (``CI=true``),
where ``.ci/run`` installs it and its absence is a failure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from labdriver import CHROMIUM, FLAGS, require_chromium

from medsynth_explore.data import ImageSet
from medsynth_explore.evaluate import Report, evaluate

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "report"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    import medsynth_explore as mse

    tmp = tmp_path_factory.mktemp("report")
    train = mse.load_dataset("phantomcxr", n=160, seed=11)
    held = mse.load_dataset("phantomcxr", n=160, seed=12)
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(train), 120)
    copies = ImageSet(
        np.clip(train.images[pick] + rng.normal(0, 0.01, train.images[pick].shape), 0, 1).astype(np.float32),
        train.metadata.iloc[pick].reset_index(drop=True),
        {"source": "copier"},
    )
    with pytest.warns(RuntimeWarning):  # pixel features at this N: rank-deficient covariances, kept in the report
        rep = evaluate(held, copies, encoder="pixels", by="sex", train=train, n_boot=5, cache=False)
    # through JSON and back, as `medsynth evaluate` writes it and a colleague reopens it
    rep = Report.from_json(rep.to_json(tmp / "report.json"))
    return rep, rep.to_html(tmp / "report.html")


def test_report_renders_offline_with_images_and_charts(browser, report):
    rep, path = report
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r):
        requests.append(r.request.url)
        if r.request.url.startswith(("file:", "data:")):
            r.continue_()
        else:
            r.abort()

    page.route("**/*", route)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    assert not errors, errors
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []

    images = page.eval_on_selector_all(
        "img", "els => els.map(e => ({ok: e.complete && e.naturalWidth > 0, w: e.naturalWidth, src: e.src.slice(0, 22)}))"
    )
    assert len(images) == 8 + 8 + 2 * 6, len(images)
    assert all(i["ok"] and i["src"] == "data:image/png;base64," for i in images), images
    assert {i["w"] for i in images} == {64}

    charts = page.eval_on_selector_all(
        ".msx-chart",
        "els => els.map(e => ({metric: e.dataset.metric, points: e.querySelectorAll('circle.point').length,"
        " width: e.querySelector('svg').getBoundingClientRect().width}))",
    )
    assert [c["metric"] for c in charts] == rep.metrics
    by_metric = {c["metric"]: c for c in charts}
    assert by_metric["fid"]["points"] == 3  # all, sex=F, sex=M
    assert by_metric["ct"]["points"] == 1  # whole sets only
    assert all(c["width"] > 300 for c in charts)
    assert page.locator("svg path").count() == 2  # the two distance histograms
    assert page.locator("text=below the copy threshold").count() == 6  # the copier is caught
    assert not page.locator("details").first.evaluate("d => d.open")  # provenance folded
    assert page.locator("table.msx-values tbody tr").count() == len(rep.table)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    page.close()
