"""The Embeddings panel with 100,000 reference points in JupyterLab and chromium: WebGL view next to plotly.

One JupyterLab server, one chromium (Debian's, through playwright), one notebook: a session with
``--n`` reference images (8 x 8 pixels, so that the browser and not the encoder is measured) and
2,000 synthetic ones, and a map given by coordinates (``Embedding.from_layout``; fitting UMAP is
timed by bench_map_scale.py). The same panel is then drawn twice, ``backend="webgl"`` (regl-scatterplot)
and ``backend="plotly"`` (the FigureWidget scattergl the panel used before), and for each the
script times:

* first render: from running the cell that shows the panel to the points drawn on screen;
* lasso: from releasing a lasso drawn over the middle of the map to the thumbnails of the selection
  (the selection went to Python, which computed the metrics of the selection and sent the images back).

    python benchmarks/bench_browser_map.py            # --n 100000
    python benchmarks/bench_browser_map.py --n 20000

Screenshots go to artifacts/browser/. tests/test_browser_scale.py runs the same driver as a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the JupyterLab driver the browser tests use
from labdriver import CHROMIUM, FLAGS, LabServer, write_notebook  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"

SETUP = """\
import numpy as np, pandas as pd
import medsynth_explore as mse
from medsynth_explore.jobs import JobRunner
from medsynth_explore.session import Embedding, Session
from medsynth_explore.widgets import EmbeddingPanel
N = {n}
rng = np.random.default_rng(0)
centres = rng.normal(size=(12, 2)) * 8
def blobs(m):
    c = rng.integers(0, 12, m)
    xy = centres[c] + rng.normal(size=(m, 2))
    img = (np.clip(rng.normal(0.5, 0.15, size=(m, 1, 8, 8)) + (c[:, None, None, None] % 4) * 0.1, 0, 1)).astype(np.float32)
    md = pd.DataFrame({{"sex": rng.choice(["F", "M"], m), "age": rng.integers(20, 90, m),
                       "site": rng.choice(["A", "B", "C"], m)}})
    return mse.ImageSet(img, md), xy
ref, ref_xy = blobs(N)
s = Session(reference=ref, generators=[], encoder=mse.get_encoder("pixels", size=8))
s.use_map(Embedding.from_layout(s.reference_features(), ref_xy, a=1.58, b=0.9))
syn, syn_xy = blobs(2000)
s.add_samples(syn, "generator")
print("msx-setup-done", len(s.reference), len(s.synthetic["generator"]))
"""

PANEL = """\
panel_{backend} = EmbeddingPanel(s, runner=JobRunner(synchronous=True), warm_up=False, backend="{backend}")
panel_{backend}.add_class("msx-bench-{backend}")
panel_{backend}.redraw()
panel_{backend}
"""


class Lab:
    """A JupyterLab 4 server on a notebook of the given cells, and chromium on it."""

    def __init__(self, root: Path, cells: list[str]) -> None:
        self.root = root
        write_notebook(root / "scale.ipynb", cells)
        self.server = LabServer(
            root, "medsynth-bench", extra_args=("--ZMQChannelsWebsocketConnection.iopub_data_rate_limit=1e12",), start_timeout=90
        )
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        self.page = self.browser.new_page(viewport={"width": 1280, "height": 1100})
        self.page.set_default_timeout(300_000)
        self.page.goto(self.server.url("scale.ipynb"))
        self.page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content")
        self.page.wait_for_selector(".jp-StatusBar-TextItem:has-text('Idle')", timeout=120_000)

    def run_cell(self, i: int) -> float:
        """Run cell ``i`` (clicking into it, then Shift+Enter); returns the time the keystroke was sent."""
        cell = self.page.locator(".jp-Notebook .jp-Cell").nth(i)
        cell.locator(".cm-content").click()
        t = time.perf_counter()
        self.page.keyboard.press("Control+Enter")
        return t

    def wait_idle(self, timeout: float = 600_000) -> None:
        self.page.wait_for_timeout(300)
        self.page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout)

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)

    def close(self) -> None:
        for step in (lambda: self.browser.close(), lambda: self._pw.stop()):
            try:
                step()
            except Exception:
                pass
        self.server.close()


def _lasso(page, box: dict) -> None:
    """Drag a lasso around the middle third of ``box``."""
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    pts = [(0.35, 0.35), (0.65, 0.35), (0.65, 0.65), (0.35, 0.65), (0.35, 0.36)]
    page.mouse.move(x0 + pts[0][0] * w, y0 + pts[0][1] * h)
    page.mouse.down()
    for fx, fy in pts[1:]:
        page.mouse.move(x0 + fx * w, y0 + fy * h, steps=10)
    page.mouse.up()


def measure(lab: Lab, backend: str, cell: int) -> dict:
    """First render and lasso-to-thumbnails times of the panel drawn with ``backend`` (its cell is ``cell``)."""
    page = lab.page
    panel = f".msx-bench-{backend}"
    t0 = lab.run_cell(cell)
    if backend == "webgl":
        page.wait_for_selector(f"{panel} .msx-scatter[data-drawn]", timeout=600_000)
    else:
        page.wait_for_selector(
            f"{panel} .js-plotly-plot .gl-container canvas, {panel} .js-plotly-plot .scatterlayer .trace", timeout=600_000
        )
    page.wait_for_function("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    first = time.perf_counter() - t0
    lab.wait_idle()
    page.locator(panel).scroll_into_view_if_needed()
    target = page.locator(f"{panel} .msx-scatter-frame" if backend == "webgl" else f"{panel} .js-plotly-plot .nsewdrag").first
    page.wait_for_timeout(1000)
    box = target.bounding_box()
    t1 = time.perf_counter()
    _lasso(page, box)
    t2 = time.perf_counter()
    page.locator(f"{panel} b:text-is('Selection')").first.wait_for(timeout=600_000)
    page.wait_for_function(
        "(sel) => document.querySelectorAll(sel + ' .widget-gridbox .widget-image').length >= 16", arg=panel, timeout=600_000
    )
    lasso = time.perf_counter() - t2
    selected = page.locator(f"{panel} .widget-html:has(b:text-is('Selection'))").first.inner_text()
    lab.shot(f"scale_{backend}")
    page.locator(f"{panel} .widget-gridbox").first.scroll_into_view_if_needed()
    lab.shot(f"scale_{backend}_selection")
    return {
        "first_render_s": first,
        "lasso_to_thumbnails_s": lasso,
        "drag_s": t2 - t1,
        "selection": selected,
        "errors": page.locator(f"{panel} .msx-error").count(),
    }


def run(n: int, root: Path, backends=("webgl", "plotly")) -> dict:
    cells = [SETUP.format(n=n)] + [PANEL.format(backend=b) for b in backends]
    lab = Lab(root, cells)
    try:
        t = lab.run_cell(0)
        lab.page.wait_for_selector("text=msx-setup-done", timeout=900_000)
        setup = time.perf_counter() - t
        lab.wait_idle()
        out = {"setup_s": setup}
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        for i, b in enumerate(backends):
            try:
                out[b] = measure(lab, b, i + 1)
            except PlaywrightTimeout as exc:  # a view that never draws or never answers the lasso is a result too
                lab.shot(f"scale_{b}_timeout")
                out[b] = {"timeout": str(exc).splitlines()[0], "errors": -1}
        return out
    finally:
        lab.close()


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--backends", default="webgl,plotly", help="views to time (plotly may take up to 10 minutes at 100,000)")
    a = ap.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit("Debian chromium is needed (apt-get install chromium)")
    backends = tuple(b for b in a.backends.split(",") if b)
    res = run(a.n, Path(tempfile.mkdtemp(prefix="msx-browser-")), backends)
    print(f"Embeddings panel, {a.n:,} reference + 2,000 synthetic points, chromium (software WebGL), one run\n")
    if len(backends) == 1:
        r = res[backends[0]]
        print(f"{backends[0]} view: " + (r["timeout"] if "timeout" in r else ""))
        if "timeout" not in r:
            print("| what | measured |\n|---|---|")
            print(f"| first render | {r['first_render_s']:.1f} s |")
            print(f"| lasso released -> thumbnails of the selection | {r['lasso_to_thumbnails_s']:.1f} s |")
            print(f"| drawing the lasso (mouse moves) | {r['drag_s']:.1f} s |")
            print(f"\nselection '{r['selection']}'; panel errors {r['errors']}")
        print(f"notebook set-up (data, features, session) {res['setup_s']:.1f} s")
        return
    w, p = res["webgl"], res["plotly"]
    for name, r in (("WebGL view", w), ("plotly view", p)):
        if "timeout" in r:
            print(f"{name}: {r['timeout']}")
    if "timeout" in w or "timeout" in p:
        print({k: v for k, v in res.items()})
        return
    print("| what | WebGL view (regl-scatterplot) | plotly FigureWidget | ratio |\n|---|---|---|---|")
    ratio = p["first_render_s"] / w["first_render_s"]
    print(f"| first render | {w['first_render_s']:.1f} s | {p['first_render_s']:.1f} s | {ratio:.1f}x |")
    print(
        f"| lasso released -> thumbnails of the selection | {w['lasso_to_thumbnails_s']:.1f} s | "
        f"{p['lasso_to_thumbnails_s']:.1f} s | {p['lasso_to_thumbnails_s'] / w['lasso_to_thumbnails_s']:.1f}x |"
    )
    print(f"| drawing the lasso (mouse moves) | {w['drag_s']:.1f} s | {p['drag_s']:.1f} s | |")
    print(f"\nselections: WebGL '{w['selection']}', plotly '{p['selection']}'; panel errors {w['errors']} / {p['errors']}")
    print(f"notebook set-up (data, features, session) {res['setup_s']:.1f} s")


if __name__ == "__main__":
    main()
