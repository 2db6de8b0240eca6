"""Rich displays: thumbnails and grids of ImageSets, a generator's card in brief, the SVG charts, one PNG encoder."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medsynth_explore.charts import SVG, forest_svg, histogram_svg, nice_ticks
from medsynth_explore.data import ImageSet
from medsynth_explore.data import display as D
from medsynth_explore.errors import DataError, MetricError


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def _phantom_like(n=12, size=64, seed=0):
    rng = np.random.default_rng(seed)
    md = pd.DataFrame(
        {
            "sex": np.where(np.arange(n) % 2 == 0, "F", "M"),
            "age": rng.integers(20, 90, n),
            "effusion": (np.arange(n) % 3 == 0).astype(int),
            "nodule": (np.arange(n) % 4 == 0).astype(int),
            "site": list("ABC" * (n // 3 + 1))[:n],
        }
    )
    return ImageSet(rng.random((n, 1, size, size)).astype(np.float32), md, {"source": "test"})


# --------------------------------------------------------------------------- the encoder
def test_png_round_trips_to_8_bits_and_shrinks_by_area_average():
    x = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(1, 16, 16)
    back = _decode(D.png_bytes(x))
    assert back.shape == (16, 16) and back.dtype == np.uint8
    assert np.abs(back.astype(float) - x[0] * 255).max() <= 0.5 + 1e-6
    # 2x2 blocks shrink to their means (a plain re-computation with numpy)
    y = np.random.default_rng(0).random((1, 32, 32)).astype(np.float32)
    small = _decode(D.png_bytes(y, max_side=16))
    want = np.round(y[0].reshape(16, 2, 16, 2).mean(axis=(1, 3)) * 255)
    assert small.shape == (16, 16) and np.abs(small.astype(float) - want).max() <= 1
    # never enlarged; the longer side decides; colour stays colour
    assert D.thumbnail(np.zeros((1, 8, 8)), max_side=96).shape == (8, 8)
    assert D.thumbnail(np.zeros((1, 300, 150)), max_side=96).shape == (96, 48)
    rgb = np.zeros((3, 4, 4), np.float32)
    rgb[0] = 1.0
    assert _decode(D.png_bytes(rgb))[0, 0].tolist() == [255, 0, 0]


def test_thumbnails_of_radiographs_are_a_few_kilobytes():
    import medsynth_explore as mse

    s = mse.load_dataset("phantomcxr", n=8, seed=0)
    sizes = [len(D.png_bytes(im, max_side=D.THUMB_SIDE)) for im in s.images]
    assert max(sizes) < 6000, sizes
    big = np.clip(np.kron(s.images[:2], np.ones((1, 1, 8, 8))), 0, 1).astype(np.float32)  # 512 x 512
    assert all(len(D.png_bytes(im, max_side=D.THUMB_SIDE)) < 8000 for im in big)


def test_widgets_png_bytes_is_the_same_encoder():
    pytest.importorskip("ipywidgets")
    from medsynth_explore.widgets.common import png_bytes as widget_png

    x = np.random.default_rng(1).random((1, 12, 12)).astype(np.float32)
    assert widget_png(x) == D.png_bytes(x)
    assert widget_png(x, scale=3) == D.png_bytes(x, scale=3)
    d = np.random.default_rng(2).uniform(-1, 1, (1, 6, 6)).astype(np.float32)
    assert widget_png(d, cmap="diverging") == D.png_bytes(d, cmap="diverging")
    assert _decode(widget_png(np.array([[-1.0, 0.0, 1.0]]), cmap="diverging"))[0].tolist() == [
        [0, 0, 255],
        [255, 255, 255],
        [255, 0, 0],
    ]


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.full((1, 4, 4), np.nan), "NaN"),
        (np.zeros((2, 2, 4, 4)), "shape"),
        (np.array([["a"]]), "numeric"),
        (np.zeros((1, 0, 4)), "at least one pixel"),
    ],
)
def test_bad_images_get_a_data_error(bad, match):
    with pytest.raises(DataError, match=match):
        D.png_bytes(bad)


def test_bad_settings_get_a_data_error():
    x = np.zeros((1, 4, 4))
    with pytest.raises(DataError, match="vmax"):
        D.png_bytes(x, vmin=1, vmax=1)
    with pytest.raises(DataError, match="cmap"):
        D.png_bytes(x, cmap="jet")
    with pytest.raises(DataError, match="max_side"):
        D.png_bytes(x, max_side=0)
    with pytest.raises(DataError, match="scale"):
        D.png_bytes(x, scale=0)


# --------------------------------------------------------------------------- captions and grids
def test_captions_name_sex_age_and_findings():
    md = pd.DataFrame({"sex": ["F", "M"], "age": [61.4, 30], "effusion": [1, 0], "nodule": [1, 0]})
    assert D.captions(md) == ["F 61 · effusion, nodule", "M 30 · no finding"]
    assert D.captions(md, ["sex", "age"]) == ["sex=F · age=61.4", "sex=M · age=30"]
    with pytest.raises(DataError, match="cannot caption by"):
        D.captions(md, "site")
    # a harmonised duplicate of a PhantomCXR finding is not named twice; non-binary columns are not findings
    md2 = pd.DataFrame({"effusion": [1], "pleural_effusion": [1.0], "edema": [0.3]})
    assert D.finding_columns(md2) == ["effusion"]


def test_grid_embeds_each_image_and_escapes_captions():
    ims = np.random.default_rng(0).random((3, 1, 8, 8)).astype(np.float32)
    out = D.grid_html(ims, ["<b>x</b>", "y", "z"])
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', out)
    assert len(uris) == 3
    assert np.array_equal(_decode(base64.b64decode(uris[1])), D.thumbnail(ims[1]))
    assert "<b>x</b>" not in out and "&lt;b&gt;x&lt;/b&gt;" in out
    with pytest.raises(DataError, match="one caption per image"):
        D.grid_html(ims, ["a"])


class CountingSet(ImageSet):
    """An ImageSet that records which rows a display reads (through ``read`` or ``subset``)."""

    rows: list = []

    def read(self, index, *args, **kwargs):
        CountingSet.rows.append(np.asarray(index).tolist())
        return np.asarray(super().subset(index).images)

    def subset(self, index):
        CountingSet.rows.append(np.asarray(index).tolist())
        return super().subset(index)


def test_repr_html_reads_only_the_first_images():
    s = _phantom_like(40)
    cs = CountingSet(s.images, s.metadata, s.provenance)
    CountingSet.rows = []
    out = cs._repr_html_()
    assert CountingSet.rows == [list(range(16))]
    assert out.count("<img") == 16 and "40 images" in out and "first 16 of 40 shown" in out
    assert "1 channel, 64×64 px" in out and "source test" in out and "effusion" in out
    small = ImageSet(np.zeros((3, 1, 8, 8), np.float32))
    assert small._repr_html_().count("<img") == 3 and "shown" not in small._repr_html_()
    assert ImageSet(np.zeros((0, 1, 8, 8), np.float32))._repr_html_().count("<img") == 0


def test_show_groups_by_a_column_and_by_findings():
    s = _phantom_like(12)
    g = s.show(n=2, by="sex")
    assert [(h, p.tolist()) for h, p in g.groups] == [("sex=F", [0, 2]), ("sex=M", [1, 3])]
    assert g.html.count("<img") == 4 and "sex=F: 2 of 6 images" in g.html
    both = s.show(n=1, by=["sex", "site"])
    assert [h for h, _ in both.groups][:2] == ["sex=F & site=A", "sex=F & site=B"]
    f = s.show(n=10, by="findings")
    groups = dict((h, p.tolist()) for h, p in f.groups)
    assert groups["effusion"] == [0, 3, 6, 9] and groups["nodule"] == [0, 4, 8]
    assert groups["no finding"] == [1, 2, 5, 7, 10, 11]
    assert f.html.count("<img") == sum(len(p) for p in groups.values())  # an image in two groups shows in both
    assert s.show(n=3).html.count("<img") == 3 and "first 3 of 12 shown" in s.show(n=3).note
    with pytest.raises(DataError, match="cannot group by"):
        s.show(by="ward")
    with pytest.raises(DataError, match="age_group"):
        s.show(by="age_group")
    with pytest.raises(DataError, match="finding columns"):
        ImageSet(np.zeros((2, 1, 4, 4), np.float32)).show(by="findings")
    with pytest.raises(DataError, match="non-negative"):
        s.show(n=-1)


def test_show_reads_each_shown_image_once_and_saves_a_page(tmp_path):
    s = _phantom_like(30)
    cs = CountingSet(s.images, s.metadata, s.provenance)
    CountingSet.rows = []
    g = cs.show(n=2, by="findings")
    assert len(CountingSet.rows) == 1
    wanted = sorted({r for _, p in g.groups for r in p.tolist()})
    assert CountingSet.rows[0] == wanted
    page = g.save(tmp_path / "g.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<img") == sum(len(p) for _, p in g.groups)


def test_show_caps_the_number_of_groups():
    s = ImageSet(np.zeros((40, 1, 4, 4), np.float32), pd.DataFrame({"id": np.arange(40)}))
    g = s.show(n=1, by="id")
    assert len(g.groups) == D.MAX_GROUPS and "16 more groups not shown" in g.note


# --------------------------------------------------------------------------- generators
def test_generator_html_shows_card_capabilities_and_schema():
    import medsynth_explore as mse

    g = mse.load_generator("phantomcxr-vae")
    out = g._repr_html_()
    assert "phantomcxr-vae" in out and g.sha256[:16] in out and "64×64 px" in out
    assert "✓ conditions" in out and "✓ inpaint" in out and "✗ text" in out
    assert "a number from 18 to 90" in out and "one of F, M" in out and "effusion" in out
    assert "Known limitations" in out and "size 5600" in out
    phys = mse.load_generator("phantomcxr-physics")._repr_html_()
    assert "SHA-256" not in phys and "phantomcxr-1.1" in phys  # an identity string, not a file hash


def test_every_capability_is_explained_in_words():
    from medsynth_explore.generators import CAPABILITIES
    from medsynth_explore.generators.display import CAPABILITY_TEXT

    assert set(CAPABILITY_TEXT) == set(CAPABILITIES)


def test_generator_html_escapes_the_card():
    from medsynth_explore.generators import Generator

    g = Generator({"name": "<x>", "family": "vae", "architecture": {"image_size": 8}, "limitations": ["<script>"]})
    out = g._repr_html_()
    assert "<x>" not in out and "&lt;x&gt;" in out and "<script>" not in out and "Unconditional" in out


# --------------------------------------------------------------------------- charts
def test_nice_ticks_cover_the_range_with_round_steps():
    for lo, hi in [(0.13, 0.87), (-3.2, 41.0), (1e-4, 3e-3), (5.0, 5.0)]:
        t = nice_ticks(lo, hi)
        steps = np.diff(t)
        assert 2 <= len(t) <= 11 and np.allclose(steps, steps[0])
        mant = steps[0] / 10 ** np.floor(np.log10(steps[0]))
        assert any(np.isclose(mant, m) for m in (1, 2, 5))
        assert t[0] - steps[0] < min(lo, hi) and t[-1] + steps[0] > max(lo, hi)
    with pytest.raises(MetricError):
        nice_ticks(0, np.inf)


def test_forest_places_points_and_intervals_on_one_scale():
    rows = [
        {"label": "all", "value": 0.8, "low": 0.75, "high": 0.85, "n": 100},
        {"label": "sex=F", "value": 0.6, "low": 0.5, "high": 0.7, "n": 50},
        {"label": "sex=M", "value": 0.9, "low": 0.85, "high": 0.95, "n": 50},
        {"label": "site=C", "value": np.nan, "low": np.nan, "high": np.nan, "n": 3, "note": "no value: too few"},
    ]
    svg = forest_svg(rows, title="AUROC", reference=0.8, higher_is_better=True, overall="all")
    cx = [float(v) for v in re.findall(r"<circle class='point' cx='([\d.]+)'", svg)]
    assert len(cx) == 3 and cx[1] < cx[0] < cx[2]  # the NaN row has no point
    lines = re.findall(r"<line class='ci' x1='([\d.]+)' x2='([\d.]+)'", svg)
    (a1, a2), (f1, f2), (m1, m2) = [(float(a), float(b)) for a, b in lines]
    scale = (a2 - a1) / 0.10  # pixels per unit from the first interval
    assert f2 - f1 == pytest.approx(0.2 * scale, abs=0.3) and m2 - m1 == pytest.approx(0.1 * scale, abs=0.3)  # 0.1 px rounding
    ref = float(re.search(r"<line class='reference' x1='([\d.]+)'", svg).group(1))
    assert ref == pytest.approx(cx[0], abs=0.11)
    assert "no value: too few" in svg and svg.count("#E45756") == 3  # worst group: its line, point and text
    assert "sex=F  (n=50)" in svg and "0.6 [0.5, 0.7]" in svg
    # all groups equal: none is the worst; a value outside its interval is marked
    flat = forest_svg(
        [{"label": "a", "value": 0, "low": 0, "high": 0}, {"label": "b", "value": 0, "low": 0, "high": 0}], higher_is_better=False
    )
    assert "#E45756" not in flat
    assert "†" in forest_svg([{"label": "a", "value": 0.5, "low": 0.6, "high": 0.7}])
    with pytest.raises(MetricError):
        forest_svg([])


def test_forest_with_two_series_and_escaping():
    rows = [
        {"label": "<g>", "value": 0.6, "low": 0.5, "high": 0.7, "series": "before"},
        {"label": "<g>", "value": 0.7, "low": 0.6, "high": 0.8, "series": "after"},
    ]
    svg = forest_svg(rows, series=["before", "after"])
    assert svg.count("<circle class='point'") == 2 and "before" in svg and "after" in svg
    assert "<g>" not in svg and "&lt;g&gt;" in svg
    assert SVG(svg)._repr_svg_() == svg


def test_histogram_normalises_each_series_and_checks_its_input():
    svg = histogram_svg([0, 1, 2], {"a": [30, 10], "b": [0, 4]}, marker=0.5, marker_label="threshold")
    assert svg.count("<path") == 2 and "threshold" in svg and "<line class='marker'" in svg
    with pytest.raises(MetricError, match="counts"):
        histogram_svg([0, 1, 2], {"a": [1, 2, 3]})
    with pytest.raises(MetricError, match="increasing"):
        histogram_svg([0, 0], {"a": [1]})


def test_displays_of_a_file_backed_set_decode_only_what_they_show():
    sources = pytest.importorskip("medsynth_explore.data.sources")
    calls = []

    class CountingSource(sources.ArraySource):
        def read(self, positions, workers=None):
            calls.append(np.asarray(positions).tolist())
            return super().read(positions, workers)

    base = _phantom_like(50)
    s = ImageSet(metadata=base.metadata, provenance={"source": "disk"}, source=CountingSource(base.images))
    assert s.file_backed
    assert s._repr_html_().count("<img") == 16 and calls == [list(range(16))]
    calls.clear()
    g = s.show(n=3, by="sex")
    assert calls == [sorted(r for _, p in g.groups for r in p.tolist())] and len(calls[0]) == 6


def test_histogram_cuts_a_towering_bin_and_says_its_share():
    svg = histogram_svg([0, 1, 2, 3, 4], {"copies": [100, 0, 0, 0], "real": [1, 1, 1, 1]})
    assert "class='cut'" in svg and "↑ 1" in svg
    assert "class='cut'" not in histogram_svg([0, 1, 2], {"a": [3, 1], "b": [1, 3]})
