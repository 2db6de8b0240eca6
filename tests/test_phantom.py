"""Tests of the PhantomCXR simulator (medsynth_explore.phantom)."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest

from medsynth_explore.errors import ConditionError, DataError, MedsynthError
from medsynth_explore.phantom import (
    FINDINGS,
    Population,
    __version__,
    anatomy,
    complete_patients,
    render,
    sample_patients,
    simulate,
    write_reports,
)


def _only(t: pd.DataFrame, **labels) -> pd.DataFrame:
    """The table with every finding and the tube off, except the given labels."""
    t = t.copy()
    for f in (*FINDINGS, "chest_tube"):
        t[f] = labels.get(f, 0)
    return t


# ---------------------------------------------------------------------------- simulate
def test_simulate_deterministic_and_seed_dependent():
    a = simulate(6, seed=3, size=32)
    b = simulate(6, seed=3, size=32)
    c = simulate(6, seed=4, size=32)
    np.testing.assert_array_equal(a.images, b.images)
    pd.testing.assert_frame_equal(a.metadata, b.metadata)
    assert not np.array_equal(a.images, c.images)
    assert not a.metadata["age"].equals(c.metadata["age"])


def test_render_noise_seed_changes_only_noise():
    t = sample_patients(3, seed=0)
    a, b = render(t, size=48, seed=0), render(t, size=48, seed=1)
    assert not np.array_equal(a, b)
    # same anatomy: the images differ by noise only (small mean difference)
    assert np.abs(a - b).mean() < 0.02


@pytest.mark.parametrize("size", [32, 64, 100, 256])
def test_shapes_dtype_range_and_16bit(size):
    n = 2 if size == 256 else 4
    ds = simulate(n, seed=1, size=size)
    x = ds.images
    assert x.shape == (n, 1, size, size) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 1
    k = np.rint(x.astype(np.float64) * 65535)
    np.testing.assert_array_equal((k.astype(np.float32) / np.float32(65535.0)), x)
    # not a constant image: dark lungs and air, bright mediastinum and bones
    assert x.std() > 0.1


def test_png16_round_trip_exact():
    from PIL import Image

    x = simulate(2, seed=2, size=64).images
    for im in x:
        buf = io.BytesIO()
        Image.fromarray(np.rint(im[0] * 65535).astype(np.uint16)).save(buf, format="PNG")
        buf.seek(0)
        back = np.asarray(Image.open(buf), dtype=np.uint16).astype(np.float32) / 65535.0
        np.testing.assert_array_equal(back, im[0])


def test_metadata_columns_provenance_and_csv_round_trip(tmp_path):
    pop = Population(prevalence={"nodule": 0.5})
    ds = simulate(20, seed=5, size=32, population=pop)
    m = ds.metadata
    need = [
        "patient_id", "age", "sex", "cardiomegaly", "nodule", "effusion", "pneumothorax", "chest_tube",
        "site", "report", "ctr", "nodule_x", "nodule_y", "nodule_diameter_mm", "effusion_side",
        "effusion_volume_ml", "pneumothorax_side", "pneumothorax_size", "bmi",
    ]  # fmt: skip
    assert set(need) <= set(m.columns)
    assert m["patient_id"].is_unique and m["sex"].isin(["F", "M"]).all()
    assert m["age"].between(18, 90).all()
    for f in (*FINDINGS, "chest_tube"):
        assert set(m[f].unique()) <= {0, 1}
    # absent parameters: NaN for numbers, "none" for sides
    no = m["nodule"] == 0
    assert m.loc[no, "nodule_diameter_mm"].isna().all() and m.loc[~no, "nodule_diameter_mm"].notna().all()
    assert (m.loc[m["effusion"] == 0, "effusion_side"] == "none").all()
    assert set(m.loc[m["effusion"] == 1, "effusion_side"]) <= {"left", "right", "both"}
    prov = ds.provenance
    assert prov["source"] == "phantomcxr" and prov["version"] == __version__
    assert prov["seed"] == 5 and prov["size"] == 32
    assert Population.from_dict(prov["population"]) == pop
    path = tmp_path / "m.csv"
    m.to_csv(path, index=False)
    back = pd.read_csv(path)
    for c in ("effusion_side", "pneumothorax_side", "nodule_side"):
        assert back[c].equals(m[c])
    np.testing.assert_allclose(back["nodule_diameter_mm"], m["nodule_diameter_mm"])


# ---------------------------------------------------------------------------- population
def test_prevalence_sex_site_close_to_spec():
    pop = Population(
        prevalence={"cardiomegaly": 0.3, "nodule": 0.1, "effusion": 0.2, "pneumothorax": 0.15},
        female_fraction=0.35,
        site_mix={"A": 0.2, "B": 0.3, "C": 0.5},
        chest_tube_given_pneumothorax=0.8,
        chest_tube_given_no_pneumothorax=0.05,
    )
    t = sample_patients(4000, pop, seed=0)
    for f, p in pop.prevalence.items():
        assert abs(t[f].mean() - p) < 4 * np.sqrt(p * (1 - p) / 4000), f
    assert abs((t["sex"] == "F").mean() - 0.35) < 0.03
    for s, p in pop.site_mix.items():
        assert abs((t["site"] == s).mean() - p) < 0.03
    ptx = t["pneumothorax"] == 1
    assert abs(t.loc[ptx, "chest_tube"].mean() - 0.8) < 0.06
    assert abs(t.loc[~ptx, "chest_tube"].mean() - 0.05) < 0.015
    assert t["age"].between(18, 90).all() and abs(t["age"].mean() - 55) < 2
    assert (t.loc[t["cardiomegaly"] == 1, "ctr"] > 0.5).all()
    assert (t.loc[t["cardiomegaly"] == 0, "ctr"] <= 0.5).all()


def test_biased_cohort_subgroup_share():
    expr = "sex == 'F' and age > 70"
    t = sample_patients(2000, Population(subgroup_shares={expr: 0.02}), seed=1)
    assert int(t.eval(expr).sum()) == 40
    t2 = sample_patients(1000, Population(subgroup_shares={expr: 0.5, "pneumothorax == 1": 0.3}), seed=2)
    assert int(t2.eval(expr).sum()) >= 500  # the first expression's rows, plus none from the rest
    assert int((t2.eval("pneumothorax == 1") & ~t2.eval(expr)).sum()) == 300
    # the unbiased default has far more old women
    assert sample_patients(2000, seed=1).eval(expr).mean() > 0.05


def test_population_round_trip_and_validation():
    pop = Population(prevalence={"effusion": 0.4}, age_min=30, site_mix={"A": 1, "B": 1})
    d = pop.to_dict()
    assert d["site_mix"] == {"A": 0.5, "B": 0.5}
    assert Population.from_dict(d) == pop
    bad = [
        dict(prevalence={"cancer": 0.1}),
        dict(prevalence={"nodule": 1.5}),
        dict(age_min=10),
        dict(age_min=60, age_max=50),
        dict(female_fraction=-0.1),
        dict(site_mix={"Z": 1.0}),
        dict(subgroup_shares={"age > 70": 0.8, "sex == 'F'": 0.5}),
        dict(chest_tube_given_pneumothorax=2),
    ]
    for kw in bad:
        with pytest.raises(ConditionError):
            Population(**kw)
    with pytest.raises(ConditionError, match="unknown population field"):
        Population.from_dict({"prevalance": {}})
    with pytest.raises(ConditionError, match="cannot evaluate"):
        sample_patients(10, Population(subgroup_shares={"height > 2": 0.1}))
    with pytest.raises(ConditionError, match="impossible"):
        sample_patients(10, Population(age_max=40, subgroup_shares={"age > 80": 0.5}))


def test_input_errors():
    for n in (0, -1, 2.5, "3"):
        with pytest.raises(DataError):
            simulate(n)
    for size in (16, 31, 257, 64.0):
        with pytest.raises(DataError, match="size"):
            simulate(2, size=size)
    t = sample_patients(2)
    with pytest.raises(ConditionError, match="age"):
        render(t.assign(age=[10, 50]))
    with pytest.raises(ConditionError, match="0 or 1"):
        render(t.assign(nodule=[2, 0]))
    with pytest.raises(ConditionError, match="site"):
        render(t.assign(site=["A", "Q"]))
    with pytest.raises(DataError):
        render([1, 2, 3])
    with pytest.raises(MedsynthError):
        simulate(2, population="everyone")


# ---------------------------------------------------------------------------- completion
def test_complete_fills_parameters_labels_win():
    t = _only(sample_patients(6, seed=3), nodule=1, effusion=1, pneumothorax=1, chest_tube=1, cardiomegaly=1)
    for c in ("nodule_x", "nodule_y", "nodule_diameter_mm", "effusion_volume_ml", "pneumothorax_size", "ctr"):
        t[c] = np.nan
    c = complete_patients(t)
    assert c["nodule_diameter_mm"].between(18, 30).all()
    assert c["nodule_x"].between(0, 1).all() and c["nodule_y"].between(0, 1).all()
    assert c["effusion_volume_ml"].between(150, 1500).all()
    assert c["pneumothorax_size"].between(0.2, 0.7).all()
    assert (c["ctr"] > 0.5).all()
    assert (c["chest_tube_side"] == c["pneumothorax_side"]).all()
    # deterministic per row, and an explicit value is kept
    pd.testing.assert_frame_equal(c, complete_patients(t))
    t.loc[0, "nodule_diameter_mm"] = 22.0
    assert complete_patients(t).loc[0, "nodule_diameter_mm"] == 22.0
    # turning the labels off clears the parameters
    off = complete_patients(_only(c))
    assert off["nodule_x"].isna().all() and (off["effusion_side"] == "none").all()
    assert (off["ctr"] <= 0.5).all()


def test_editing_a_label_changes_only_that_finding():
    t = _only(sample_patients(4, seed=8))
    a = render(t, size=64, seed=0)
    b = render(t.assign(nodule=1), size=64, seed=0)
    diff = np.abs(a - b)[:, 0]
    assert (diff.reshape(4, -1).max(1) > 0.02).all()
    _, masks = render(t.assign(nodule=1), size=64, seed=0, return_masks=True)
    # the change is concentrated at the nodule (the auto-window shifts the rest slightly)
    inside = np.array([diff[i][masks["nodule"][i]].mean() for i in range(4)])
    outside = np.array([diff[i][~masks["nodule"][i]].mean() for i in range(4)])
    assert (inside > 5 * outside).all()


# ---------------------------------------------------------------------------- masks and anatomy
def test_masks_consistent_with_labels():
    t = sample_patients(40, Population(prevalence={f: 0.5 for f in FINDINGS}), seed=4)
    images, masks = render(t, size=64, seed=0, return_masks=True)
    assert set(masks) == {"lungs", "heart", "nodule", "effusion", "pneumothorax"}
    for k, m in masks.items():
        assert m.shape == (40, 64, 64) and m.dtype == bool
    for f in ("nodule", "effusion", "pneumothorax"):
        present = masks[f].any((1, 2))
        np.testing.assert_array_equal(present, t[f].to_numpy() == 1, err_msg=f)
    assert masks["lungs"].sum((1, 2)).min() > 0.05 * 64 * 64
    assert masks["heart"].any((1, 2)).all()
    # pleural air and fluid are outside the aerated lung mask
    assert not (masks["pneumothorax"] & masks["lungs"]).any()
    # nodule masks sit where the table says
    for i in np.flatnonzero(t["nodule"].to_numpy() == 1):
        yy, xx = np.nonzero(masks["nodule"][i])
        assert abs((xx.mean() + 0.5) / 64 - t.loc[i, "nodule_x"]) < 0.02
        assert abs((yy.mean() + 0.5) / 64 - t.loc[i, "nodule_y"]) < 0.02
    # effusion on the stated side (image right = patient's left)
    for i in np.flatnonzero(t["effusion"].to_numpy() == 1):
        cols = np.nonzero(masks["effusion"][i].any(0))[0]
        side = t.loc[i, "effusion_side"]
        if side == "left":
            assert cols.min() >= 30
        elif side == "right":
            assert cols.max() <= 33


def test_anatomy_ctr_larger_with_cardiomegaly():
    t = sample_patients(60, Population(prevalence={"cardiomegaly": 0.5}), seed=6)
    masks, meas = anatomy(t, size=128)
    cm = t["cardiomegaly"].to_numpy() == 1
    assert cm.any() and (~cm).any()
    np.testing.assert_allclose(meas["ctr"], complete_patients(t)["ctr"])
    assert (meas.loc[cm, "ctr"] > 0.5).all() and (meas.loc[~cm, "ctr"] <= 0.5).all()
    # the ratio measured on the masks agrees with the model's ratio
    assert np.corrcoef(meas["ctr"], meas["ctr_from_masks"])[0, 1] > 0.9
    assert meas.loc[cm, "ctr_from_masks"].mean() > meas.loc[~cm, "ctr_from_masks"].mean() + 0.08
    assert (meas.loc[cm, "heart_area_px"].mean()) > 1.3 * meas.loc[~cm, "heart_area_px"].mean()
    # the same masks as render(return_masks=True)
    _, m2 = render(t.iloc[:5], size=128, return_masks=True)
    np.testing.assert_array_equal(m2["heart"], masks["heart"][:5])


def test_findings_change_image_where_expected():
    """Effusion brightens the base of its side; pneumothorax darkens its side's periphery."""
    t = _only(sample_patients(8, seed=9))
    base = render(t, size=64, seed=0)[:, 0]
    te = t.assign(effusion=1, effusion_side="right", effusion_volume_ml=600.0)
    eff, m = render(te, size=64, seed=0, return_masks=True)
    region = m["effusion"]
    assert ((eff[:, 0] - base)[region].mean()) > 0.1
    tp = t.assign(pneumothorax=1, pneumothorax_side="left", pneumothorax_size=0.5)
    ptx, m = render(tp, size=64, seed=0, return_masks=True)
    assert ((ptx[:, 0] - base)[m["pneumothorax"]].mean()) < -0.02


# ---------------------------------------------------------------------------- reports
def test_reports_agree_with_labels():
    t = sample_patients(300, Population(prevalence={f: 0.4 for f in FINDINGS}), seed=10)
    reps = write_reports(t, seed=0)
    assert len(reps) == 300 and all(isinstance(r, str) and r for r in reps)
    assert reps == write_reports(t, seed=0)
    assert reps != write_reports(t, seed=1)
    assert len(set(reps)) > 250  # varied phrasing
    pos = {
        "cardiomegaly": r"enlarged|cardiomegaly",
        "nodule": r"nodule|opacity",
        "effusion": r"effusion|pleural fluid|blunt",
        "pneumothorax": r"pneumothorax",
    }
    neg = {
        "cardiomegaly": r"heart size is normal|normal cardiac size|within normal limits|no cardiomegaly",
        "nodule": r"no pulmonary nodule|no focal lung nodule or mass|no suspicious pulmonary nodule",
        "effusion": r"no pleural effusion|no effusion|angles are sharp|no pleural fluid",
        "pneumothorax": r"there is no pneumothorax|no pneumothorax|no evidence of pneumothorax",
    }
    for rep, (_, row) in zip(reps, t.iterrows()):
        low = rep.lower()
        for f in FINDINGS:
            negated = re.search(neg[f], low) is not None
            mentioned = re.search(pos[f], re.sub(neg[f], "", low)) is not None
            if row[f] == 1:
                assert mentioned and not negated, (f, rep)
            else:
                assert not mentioned, (f, rep)  # absent: negated or not mentioned
        if row["chest_tube"] == 1:
            assert "chest tube" in low or "chest drain" in low
            assert row["chest_tube_side"] in low
        if row["effusion"] == 1 and row["effusion_side"] in ("left", "right"):
            assert row["effusion_side"] in low
        if row["pneumothorax"] == 1:
            assert row["pneumothorax_side"] in low


# ---------------------------------------------------------------------------- the built-in data set
def test_phantomcxr_data_set_is_cached_keyed_and_rebuilt_when_damaged(tmp_path, monkeypatch):
    from medsynth_explore.data import load_dataset
    from medsynth_explore.phantom import load_phantomcxr

    monkeypatch.setenv("MEDSYNTH_CACHE_DIR", str(tmp_path))
    ds = load_dataset("phantomcxr", n=6, size=32, seed=2)
    ref = simulate(6, seed=2, size=32)
    np.testing.assert_array_equal(ds.images, ref.images)
    entries = list((tmp_path / "phantomcxr").iterdir())
    assert len(entries) == 1 and {p.name for p in entries[0].iterdir()} == {"images.npz", "metadata.csv", "provenance.json"}
    again = load_phantomcxr(n=6, size=32, seed=2)  # from the cache
    np.testing.assert_array_equal(again.images, ref.images)
    assert again.metadata["report"].tolist() == ref.metadata["report"].tolist()
    load_dataset("phantom", n=6, size=32, seed=3)  # the alias; another seed is another entry
    assert len(list((tmp_path / "phantomcxr").iterdir())) == 2
    np.savez(entries[0] / "images.npz", images=np.zeros_like(ref.images))  # damaged: no longer matches its hash
    np.testing.assert_array_equal(load_phantomcxr(n=6, size=32, seed=2).images, ref.images)
    load_phantomcxr(n=2, size=32, cache=False)
    assert len(list((tmp_path / "phantomcxr").iterdir())) == 2


def test_phantomcxr_is_registered_by_the_phantom_package():
    from medsynth_explore.data import list_datasets
    from medsynth_explore.data.registry import dataset_loader
    from medsynth_explore.phantom import load_phantomcxr

    assert dataset_loader("PhantomCXR") is load_phantomcxr and dataset_loader("phantom") is load_phantomcxr
    row = list_datasets().set_index("name").loc["phantomcxr"]
    assert row["aliases"] == "phantom" and row["loader"] == "medsynth_explore.phantom.dataset:load_phantomcxr"
