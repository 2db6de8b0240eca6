"""The helpers the tutorials import from medsynth_explore.tutorial."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medsynth_explore import metrics as M
from medsynth_explore.errors import DataError, MetricError
from medsynth_explore.features import PixelEncoder
from medsynth_explore.tutorial import chest_tube_cohort, fit_logistic, lower_zone_contrast, metric_table, per_group_auroc


# ---------------------------------------------------------------- lower_zone_contrast
def test_lower_zone_contrast_is_lower_minus_mid_zone_on_the_outer_columns():
    x = np.zeros((4, 1, 100, 100), np.float32)
    x[1, 0, 60:74, 12:32] = 0.4  # lower zone, right outer columns: half of the measured columns
    x[2, 0, 31:44, 68:88] = 0.4  # mid zone, left outer columns
    x[3, 0, 60:74, 40:60] = 1.0  # lower zone, but the mediastinum (not measured)
    c = lower_zone_contrast(x)
    assert c.shape == (4,)
    assert c[0] == 0 and c[3] == 0
    assert c[1] > 0 and c[2] < 0
    np.testing.assert_allclose(c[1], 0.4 * (14 * 20) / ((75 - 57) * 40), rtol=1e-6)


def test_lower_zone_contrast_uses_the_first_channel_and_accepts_an_image_set():
    rng = np.random.default_rng(0)
    x = rng.random((3, 2, 64, 64)).astype(np.float32)
    y = x.copy()
    y[:, 1] = 0  # other channels do not matter
    np.testing.assert_array_equal(lower_zone_contrast(x), lower_zone_contrast(y))

    class Set:
        images = x

    np.testing.assert_array_equal(lower_zone_contrast(Set()), lower_zone_contrast(x))


def test_lower_zone_contrast_sees_a_simulated_effusion():
    from medsynth_explore.phantom import render, sample_patients

    table = sample_patients(8, {"prevalence": {f: 0.0 for f in ("nodule", "effusion", "pneumothorax", "cardiomegaly")}}, seed=3)
    wet = table.copy()
    wet["effusion"], wet["effusion_side"], wet["effusion_volume_ml"] = 1, "both", 1500.0
    dry_c = lower_zone_contrast(render(table, size=64, seed=0))
    wet_c = lower_zone_contrast(render(wet, size=64, seed=0))
    assert (wet_c > dry_c).all()


def test_lower_zone_contrast_rejects_images_without_a_channel_axis():
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        lower_zone_contrast(np.zeros((2, 64, 64)))


# ---------------------------------------------------------------- chest_tube_cohort
def test_chest_tube_cohort_ties_tubes_to_pneumothorax():
    table, images = chest_tube_cohort(40, seed=1, tube_rate=1.0, prevalence=0.5, size=32)
    assert images.shape == (40, 1, 32, 32) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1
    ptx = table["pneumothorax"] == 1
    assert 0 < ptx.sum() < 40
    assert (table.loc[ptx, "chest_tube"] == 1).all()
    assert (table.loc[~ptx, "chest_tube"] == 0).all()
    assert (table.loc[ptx, "pneumothorax_size"] == 0.10).all()

    none, _ = chest_tube_cohort(40, seed=1, tube_rate=0.0, prevalence=0.5, size=32)
    assert (none["chest_tube"] == 0).all()


def test_chest_tube_cohort_is_seeded_and_sets_the_size():
    a_table, a_images = chest_tube_cohort(10, seed=4, tube_rate=0.5, prevalence=0.6, pneumothorax_size=0.4, size=32)
    b_table, b_images = chest_tube_cohort(10, seed=4, tube_rate=0.5, prevalence=0.6, pneumothorax_size=0.4, size=32)
    pd.testing.assert_frame_equal(a_table, b_table)
    np.testing.assert_array_equal(a_images, b_images)
    assert (a_table.loc[a_table["pneumothorax"] == 1, "pneumothorax_size"] == 0.4).all()
    c_table, _ = chest_tube_cohort(10, seed=5, tube_rate=0.5, prevalence=0.6, size=32)
    assert not a_table["age"].equals(c_table["age"])


def test_chest_tube_cohort_rejects_a_size_outside_the_lung():
    with pytest.raises(DataError, match="pneumothorax_size"):
        chest_tube_cohort(4, seed=0, tube_rate=0.5, prevalence=0.5, pneumothorax_size=1.5)


# ---------------------------------------------------------------- fit_logistic
def test_fit_logistic_learns_a_separable_pixel_problem():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 20)
    images = rng.random((40, 1, 16, 16)).astype(np.float32) * 0.2
    images[labels == 1, :, :8] += 0.6  # the positives are brighter in the upper half
    enc = PixelEncoder(size=4)
    model = fit_logistic(enc, images, labels)
    p = model.predict_proba(enc.encode(images))[:, 1]
    assert roc_auc_score(labels, p) == 1.0
    assert model.C == 1.0 and model.max_iter == 3000
    assert fit_logistic(enc, images, labels, C=0.01).C == 0.01


# ---------------------------------------------------------------- per_group_auroc
def test_per_group_auroc_scores_each_part_like_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    scores = y + rng.normal(0, 1.0, 300)
    group = rng.random(300) < 0.3
    res = per_group_auroc(y, scores, group, n_boot=50)
    assert list(res.index) == ["group", "everyone else"]
    assert list(res.columns) == ["AUROC", "low", "high", "n"]
    assert res.loc["group", "AUROC"] == pytest.approx(roc_auc_score(y[group], scores[group]))
    assert res.loc["everyone else", "AUROC"] == pytest.approx(roc_auc_score(y[~group], scores[~group]))
    assert res["n"].tolist() == [group.sum(), (~group).sum()]
    assert (res["low"] <= res["AUROC"]).all() and (res["AUROC"] <= res["high"]).all()
    assert (res["high"] - res["low"]).loc["group"] > (res["high"] - res["low"]).loc["everyone else"]  # fewer rows, wider


def test_per_group_auroc_is_seeded_and_names_its_rows():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 120)
    scores = rng.random(120)
    group = np.arange(120) < 60
    a = per_group_auroc(y, scores, group, n_boot=30, seed=7, names=("women", "men"))
    b = per_group_auroc(y, scores, group, n_boot=30, seed=7, names=("women", "men"))
    c = per_group_auroc(y, scores, group, n_boot=30, seed=8, names=("women", "men"))
    pd.testing.assert_frame_equal(a, b)
    assert list(a.index) == ["women", "men"]
    assert not a["low"].equals(c["low"])
    assert (a["AUROC"] == c["AUROC"]).all()


def test_per_group_auroc_interval_narrows_with_the_level():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    scores = y + rng.normal(0, 1.5, 200)
    group = rng.random(200) < 0.5
    wide = per_group_auroc(y, scores, group, n_boot=100, level=0.95)
    narrow = per_group_auroc(y, scores, group, n_boot=100, level=0.5)
    assert ((narrow["high"] - narrow["low"]) < (wide["high"] - wide["low"])).all()


def test_per_group_auroc_needs_both_classes_in_each_part():
    y = np.array([0, 1, 0, 1, 1, 1])
    group = np.array([True, True, True, True, False, False])
    with pytest.raises(MetricError, match="everyone else"):
        per_group_auroc(y, np.linspace(0, 1, 6), group)
    with pytest.raises(MetricError, match="same length"):
        per_group_auroc(y, np.linspace(0, 1, 5), group)


# ---------------------------------------------------------------- metric_table
def test_metric_table_rows_agree_with_the_metric_functions():
    rng = np.random.default_rng(0)
    real = rng.random((120, 1, 8, 8)).astype(np.float32)
    same = real.copy()
    shifted = np.clip(rng.random((150, 1, 8, 8)) * 0.6 + 0.4, 0, 1).astype(np.float32)
    enc = PixelEncoder(size=4)
    res = metric_table(enc, real, {"copy": same, "shifted": shifted}, n=100, kid_subsets=5, kid_subset_size=50)
    assert list(res.index) == ["copy", "shifted"]
    assert list(res.columns) == ["FID x1000", "KID x1000", "precision", "recall", "coverage"]
    f_real, f_shift = enc.encode(real), enc.encode(shifted[:100])
    assert res.loc["shifted", "FID x1000"] == pytest.approx(1000 * M.fid(f_real, f_shift))
    assert res.loc["shifted", "KID x1000"] == pytest.approx(1000 * M.kid(f_real, f_shift, subsets=5, subset_size=50)[0])
    assert res.loc["shifted", "precision"] == pytest.approx(M.prdc(f_real, f_shift, k=5)["precision"])
    # the first 100 images of a copy of the real set: inside the real manifold, and closer than the shifted set
    assert res.loc["copy", "precision"] == 1.0
    assert res.loc["copy", "FID x1000"] < res.loc["shifted", "FID x1000"]
    assert res.loc["copy", "coverage"] > res.loc["shifted", "coverage"]


def test_metric_table_accepts_image_sets():
    rng = np.random.default_rng(1)

    class Set:
        def __init__(self, images):
            self.images = images

    real = rng.random((60, 1, 8, 8)).astype(np.float32)
    other = rng.random((60, 1, 8, 8)).astype(np.float32)
    enc = PixelEncoder(size=2)
    a = metric_table(enc, Set(real), {"x": Set(other)}, n=60, kid_subsets=3, kid_subset_size=30)
    b = metric_table(enc, real, {"x": other}, n=60, kid_subsets=3, kid_subset_size=30)
    pd.testing.assert_frame_equal(a, b)


# ---------------------------------------------------------------- pictures: forest plot, distance histogram, nearest pairs
def test_forest_plot_draws_each_group_of_each_table_with_its_interval():
    import re

    from medsynth_explore.tutorial import forest_plot

    y = np.tile([0, 1], 60)
    p = np.random.default_rng(0).random(120) * 0.6 + y * 0.3
    g = np.arange(120) < 40
    before = per_group_auroc(y, p, g, n_boot=50)
    after = per_group_auroc(y, p + y * 0.1, g, n_boot=50)
    svg = forest_plot({"before": before, "after": after}).text
    assert svg.count("<circle class='point'") == 4 and svg.count("<line class='ci'") == 4
    for name, t in (("before", before), ("after", after)):
        for group, r in t.iterrows():
            tip = f"{group} · {name}: {r.AUROC:.3g} [{r.low:.3g}, {r.high:.3g}]"
            assert tip in svg, tip
    assert "group  (n=40)" in svg and "everyone else  (n=80)" in svg
    # two series: colour tells them apart (no worst-group red); one table: the worst group is red
    assert "#E45756" not in svg
    assert len(re.findall("fill='#E45756'", forest_plot(before).text)) == 2  # its point and its text
    with pytest.raises(MetricError, match="lacks columns"):
        forest_plot(before.drop(columns="low"))


def test_distance_histogram_and_nearest_pairs_show_the_copies():
    from medsynth_explore.tutorial import distance_histogram, nearest_pairs

    rng = np.random.default_rng(0)
    train = rng.random((30, 1, 8, 8)).astype(np.float32)
    copies = np.clip(train[[3, 7, 11]] + 0.001, 0, 1).astype(np.float32)
    fresh = rng.random((5, 1, 8, 8)).astype(np.float32)
    query = np.concatenate([fresh, copies])
    f_q, f_t = query.reshape(len(query), -1), train.reshape(30, -1)
    g = nearest_pairs(query, train, f_q, f_t, k=3, threshold=0.1, title="closest")
    assert sorted(p.tolist() for _, p in g.groups) == [[5, 3], [6, 7], [7, 11]]
    assert g.html.count("<img") == 6 and g.html.count("below threshold") == 3 and "closest" in g.html
    d, _ = M.nn_distances(f_q, f_t)
    svg = distance_histogram({"fresh": d[:5], "copies": d[5:]}, threshold=0.1).text
    assert svg.count("<path") == 2 and "threshold" in svg
    with pytest.raises(MetricError):
        distance_histogram({"empty": np.array([])})
    with pytest.raises(DataError, match="one row per image"):
        nearest_pairs(query[:2], train, f_q, f_t)
