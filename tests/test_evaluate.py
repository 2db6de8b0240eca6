"""evaluate() and Report: metrics per subgroup, provenance, JSON/HTML round trips."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from medsynth_explore import metrics as M
from medsynth_explore.data import ImageSet
from medsynth_explore.errors import MetricError
from medsynth_explore.evaluate import Report, evaluate
from medsynth_explore.features import PixelEncoder


def _set(n, seed, bright_m=0.0):
    rng = np.random.default_rng(seed)
    sex = np.where(np.arange(n) % 2 == 0, "F", "M")
    age = rng.integers(20, 90, n)
    base = rng.random((n, 1, 16, 16)) * 0.5 + 0.2
    base[sex == "M"] += bright_m
    md = pd.DataFrame({"sex": sex, "age": age})
    return ImageSet(np.clip(base, 0, 1).astype(np.float32), md, {"source": f"test-{seed}"})


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSYNTH_CACHE_DIR", str(tmp_path / "cache"))


def test_evaluate_imagesets_by_subgroup_with_privacy(tmp_path):
    real, syn, train = _set(160, 0), _set(160, 1, bright_m=0.15), _set(200, 2)
    with pytest.warns(RuntimeWarning, match="distinct warning"):
        rep = evaluate(real, syn, encoder="pixels", by=["sex", "age_group"], train=train, n_boot=2, seed=0)
    assert any("N < D" in w for w in rep.provenance["warnings"])
    t = rep.table
    assert list(t.columns) == ["metric", "group", "value", "ci_low", "ci_high", "n_real", "n_synthetic"]
    assert set(t["metric"]) == {"fid", "kid", "precision", "recall", "density", "coverage", "authenticity", "copy_rate", "ct"}
    assert rep.provenance["encoder"]["id"] == PixelEncoder().id
    assert "bilinear" in rep.provenance["encoder"]["normalisation"]
    assert rep.provenance["n_real"] == 160 and rep.provenance["n_train"] == 200
    assert {"numpy", "torch", "medsynth_explore"} <= set(rep.provenance["versions"])
    # the overall values are the metric functions on the encoded features
    enc = PixelEncoder()
    fr, fs = enc.encode(real), enc.encode(syn)
    assert rep.value("fid") == pytest.approx(M.fid(fr, fs), rel=1e-9)
    assert rep.value("coverage") == pytest.approx(M.prdc(fr, fs)["coverage"])
    assert rep.value("kid") == pytest.approx(M.kid(fr, fs, seed=0, subset_size=1000)[0], rel=1e-9)
    # per group: the brighter (badly generated) male group is the worst by FID
    by_sex = evaluate(real, syn, encoder="pixels", metrics=["fid"], by="sex", n_boot=5)
    gr = by_sex.group_result("fid")
    assert gr.worst() == "sex=M"
    assert gr.by_group.loc["sex=F", "value"] == pytest.approx(M.fid(fr[::2], fs[::2]), rel=1e-9)
    row = by_sex.table.query("group == 'sex=M'").iloc[0]
    assert row.ci_low <= row.value * 1.5 and row.ci_low <= row.ci_high and row.n_real == 80
    groups = set(t["group"])
    assert "all" in groups and any(g.startswith("sex=F & age_group=") for g in groups)


def test_report_json_html_round_trip(tmp_path):
    rep = evaluate(_set(60, 0), _set(60, 1), encoder="pixels", metrics=["fid", "coverage", "kid"], by="sex", n_boot=3)
    p = rep.to_json(tmp_path / "r.json")
    back = Report.from_json(p)
    pd.testing.assert_frame_equal(back.table, rep.table, check_dtype=False)
    assert back.provenance["encoder"]["id"] == rep.provenance["encoder"]["id"]
    assert json.loads(p.read_text())["format"] == "medsynth-explore-report"
    h = rep.to_html(tmp_path / "r.html").read_text()
    assert h.startswith("<!DOCTYPE html>") and "<table" in h and "pixels-16x16" in h and "sex=F" in h
    assert "<table" in rep._repr_html_()
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(MetricError, match="not a medsynth-explore report"):
        Report.from_json(bad)


def test_evaluate_folders_and_feature_arrays(tmp_path):
    real, syn = _set(40, 0), _set(40, 1)
    real.to_folder(tmp_path / "real")
    syn.to_folder(tmp_path / "syn")
    rep = evaluate(tmp_path / "real", str(tmp_path / "syn"), encoder="pixels", metrics=["fid"], by="sex", n_boot=0)
    direct = evaluate(real, syn, encoder="pixels", metrics=["fid"], n_boot=0)
    assert rep.value("fid") == pytest.approx(direct.value("fid"), rel=1e-4)
    feats = evaluate(
        np.random.default_rng(0).normal(size=(50, 3)), np.random.default_rng(1).normal(size=(50, 3)), metrics=["fid"], n_boot=0
    )
    assert feats.provenance["encoder"]["id"] == "precomputed"


def test_evaluate_default_encoder_is_recorded():
    from medsynth_explore.features import default_encoder_name

    rep = evaluate(_set(30, 0), _set(30, 1), metrics=["fid"], n_boot=0, cache=False)
    name = default_encoder_name()
    assert rep.provenance["encoder"]["id"].startswith("pixels" if name == "pixels" else "")
    assert rep.provenance["encoder"]["id"] not in ("", None, "precomputed")


def test_evaluate_errors():
    x = np.random.default_rng(0).normal(size=(30, 3))
    with pytest.raises(MetricError, match="unknown metric"):
        evaluate(x, x, metrics=["fidd"])
    with pytest.raises(MetricError, match="train="):
        evaluate(x, x, metrics=["authenticity"])
    with pytest.raises(MetricError, match="cannot group by 'sex'"):
        evaluate(x, x, metrics=["fid"], by="sex")
    with pytest.raises(MetricError, match="dimension"):
        evaluate(x, x[:, :2], metrics=["fid"])
    with pytest.raises(MetricError, match="not a mix"):
        evaluate(_set(10, 0), x, metrics=["fid"])


def test_small_groups_get_nan_not_a_fallback():
    md = pd.DataFrame({"site": ["a"] * 45 + ["b"] * 5})
    x = np.random.default_rng(0).normal(size=(50, 3))
    rep = evaluate(x, x + 0.1, metrics=["fid"], by="site", real_metadata=md, synthetic_metadata=md, n_boot=0, min_group_size=10)
    assert np.isnan(rep.value("fid", "site=b"))
    assert np.isfinite(rep.value("fid", "site=a"))


def test_package_attribute_evaluate_is_callable_even_after_submodule_import():
    import importlib

    import medsynth_explore

    importlib.import_module("medsynth_explore.evaluate")
    x = np.random.default_rng(0).normal(size=(30, 3))
    rep = medsynth_explore.evaluate(x, x + 1.0, metrics=["fid"], n_boot=0)
    assert rep.value("fid") == pytest.approx(3.0, rel=1e-9)


# --------------------------------------------------------------------------- the evidence a report carries
def _png_array(b64):
    import base64
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def test_report_carries_thumbnails_of_both_sides_and_keeps_them_through_json(tmp_path):
    from medsynth_explore.data.display import thumbnail

    real, syn = _set(60, 0), _set(50, 1)
    rep = evaluate(real, syn, encoder="pixels", metrics=["coverage"], n_boot=0, thumbnails=5, seed=3)
    ev = rep.evidence["samples"]
    assert ev["real"]["n"] == 60 and ev["synthetic"]["n"] == 50
    for side, s in (("real", real), ("synthetic", syn)):
        shown = ev[side]["shown"]
        rows = [x["index"] for x in shown]
        assert len(rows) == 5 and rows == sorted(set(rows)) and all(0 <= r < len(s) for r in rows)
        for x in shown:  # each thumbnail is that row's image
            assert np.array_equal(_png_array(x["png"]), thumbnail(s.images[x["index"]], max_side=128))
            assert x["caption"].startswith(f"#{x['index']} · {s.metadata['sex'][x['index']]}")
    again = evaluate(real, syn, encoder="pixels", metrics=["coverage"], n_boot=0, thumbnails=5, seed=3)
    assert again.evidence == rep.evidence  # seeded
    back = Report.from_json(rep.to_json(tmp_path / "r.json"))
    assert back.evidence == rep.evidence
    none = evaluate(real, syn, encoder="pixels", metrics=["coverage"], n_boot=0, thumbnails=0)
    assert none.evidence["samples"]["real"]["shown"] == [] and none.evidence["samples"]["real"]["given"]


def test_evaluate_reads_only_the_rows_it_shows():
    seen = []

    class Counting(ImageSet):
        def read(self, index, *args, **kwargs):
            seen.append(len(np.asarray(index)))
            return np.asarray(super().subset(index).images)

    s = _set(80, 0)
    evaluate(
        Counting(s.images, s.metadata, s.provenance), _set(40, 1), encoder="pixels", metrics=["coverage"], n_boot=0, cache=False
    )
    assert seen == [8]


def test_privacy_evidence_pairs_the_closest_copies_with_their_training_images():
    rng = np.random.default_rng(0)
    train, held = _set(120, 2), _set(100, 3)
    pick = rng.integers(0, 120, 60)
    copies = ImageSet(
        np.clip(train.images[pick] + rng.normal(0, 0.002, train.images[pick].shape), 0, 1).astype(np.float32),
        train.metadata.iloc[pick].reset_index(drop=True),
    )
    rep = evaluate(held, copies, encoder="pixels", metrics=["copy_rate", "coverage"], train=train, n_boot=0)
    pv = rep.evidence["privacy"]
    enc = PixelEncoder()
    d, j = M.nn_distances(enc.encode(copies), enc.encode(train))
    d_held, _ = M.nn_distances(enc.encode(held), enc.encode(train))
    assert pv["threshold"] == pytest.approx(np.quantile(d_held, 0.01))
    assert pv["n_below"] / pv["n_synthetic"] == pytest.approx(rep.value("copy_rate"))  # the same threshold as the metric
    assert sum(pv["histogram"]["synthetic_to_train"]) == 60 and sum(pv["histogram"]["heldout_to_train"]) == 100
    pairs = pv["pairs"]
    assert len(pairs) == 6 and [p["distance"] for p in pairs] == sorted(p["distance"] for p in pairs)
    for p in pairs:
        i = p["synthetic_index"]
        assert p["train_index"] == j[i] == pick[i] and p["distance"] == pytest.approx(d[i])
        assert p["below_threshold"] and p["synthetic_png"] and p["train_png"]
        assert np.abs(_png_array(p["synthetic_png"]).astype(int) - _png_array(p["train_png"]).astype(int)).max() <= 2
    # no privacy metric asked for: no privacy evidence
    assert evaluate(held, copies, encoder="pixels", metrics=["coverage"], train=train, n_boot=0).evidence["privacy"] is None


def test_feature_inputs_have_no_pictures_but_keep_the_distances():
    rng = np.random.default_rng(0)
    x, y, t = rng.normal(size=(60, 4)), rng.normal(size=(50, 4)), rng.normal(size=(70, 4))
    rep = evaluate(x, y, metrics=["copy_rate"], train=t, n_boot=0)
    ev = rep.evidence
    assert not ev["samples"]["real"]["given"] and ev["samples"]["real"]["shown"] == []
    assert not ev["privacy"]["images"] and len(ev["privacy"]["pairs"]) == 6
    assert all(p["synthetic_png"] is None for p in ev["privacy"]["pairs"])
    html = rep._repr_html_()
    assert "given as feature arrays" in html and "<img" not in html


@pytest.mark.filterwarnings("ignore:.*distinct warning:RuntimeWarning")
def test_html_report_shows_samples_charts_and_pairs(tmp_path):
    train = _set(100, 2)
    rep = evaluate(_set(80, 0), _set(80, 1), encoder="pixels", by="sex", train=train, n_boot=3, thumbnails=4)
    page = rep.to_html(tmp_path / "r.html").read_text()
    assert page.count("data:image/png;base64,") == 4 + 4 + 2 * 6
    assert page.count("class='msx-chart'") == len(rep.metrics)
    assert page.count("<svg") == len(rep.metrics) + 1  # a chart per metric and the distance histogram
    assert "<details><summary>Provenance" in page and "sex=F" in page and "<table" in page
    assert "whole sets only" in page  # C_T has no per-group values, and says why
    assert "all  (n=80/80)" in page  # real/synthetic images behind each line
    assert "src='http" not in page and "href='http" not in page and "<script" not in page


def test_by_takes_a_string_or_a_list_and_prdc_is_the_four_values():
    from medsynth_explore.metrics import list_metrics

    real, syn = _set(60, 0), _set(60, 1)
    one = evaluate(real, syn, encoder="pixels", metrics=["prdc"], by="sex", n_boot=0, thumbnails=0)
    many = evaluate(real, syn, encoder="pixels", metrics=["prdc"], by=["sex"], n_boot=0, thumbnails=0)
    pd.testing.assert_frame_equal(one.table, many.table)
    assert one.metrics == ["precision", "recall", "density", "coverage"]
    assert set(one.table["group"]) == {"all", "sex=F", "sex=M"} and one.provenance["by"] == ["sex"]
    direct = M.prdc(PixelEncoder().encode(real), PixelEncoder().encode(syn))
    assert {m: one.value(m) for m in one.metrics} == pytest.approx({m: direct[m] for m in one.metrics})
    listed = list_metrics().set_index("name")
    assert (listed.loc[["precision", "recall", "density", "coverage"], "metric"] == "prdc").all()
