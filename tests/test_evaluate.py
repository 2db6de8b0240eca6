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
