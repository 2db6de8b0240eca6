"""The Embeddings panel with 100,000 reference points in JupyterLab 4 and Debian's chromium (WebGL view).

Drives the panel as a user would: runs the cell that shows it, waits for the points to be drawn,
draws a lasso and waits for the thumbnails of the selection. The driver is the one
benchmarks/bench_browser_map.py times (next to the plotly view). Skipped without chromium,
except under CI, where its absence is a failure.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
bench = pytest.importorskip("bench_browser_map")
from labdriver import require_chromium  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_webgl_map_with_100k_reference_points_renders_and_lassos(tmp_path):
    require_chromium()
    res = bench.run(100_000, tmp_path, backends=("webgl",))["webgl"]
    assert res["errors"] == 0
    m = re.search(r"Selection: ([\d,]+) real", res["selection"])
    assert m and int(m.group(1).replace(",", "")) > 100, res["selection"]
