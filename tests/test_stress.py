"""Classifier stress tests: edits, classifiers of every kind, regions from ground truth and from the segmenter, the
chest-tube shortcut on the embedded default, other inpainters, bad input, and the Stress test panel."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import medsynth_explore as mse
from medsynth_explore.errors import CapabilityError, CheckpointError, DataError
from medsynth_explore.phantom import Population, anatomy, simulate
from medsynth_explore.stress import Edit, as_scorer, edit_regions, inpainting_anatomy_check, shortcut_demo, stress_test


def _brightness(x):
    return x.mean(axis=(1, 2, 3))


@pytest.fixture(scope="module")
def tube_patients():
    pop = Population(prevalence={"pneumothorax": 1.0}, chest_tube_given_pneumothorax=1.0)
    return simulate(16, seed=7, population=pop)


@pytest.fixture(scope="module")
def demo():
    return shortcut_demo()


# ---------------------------------------------------------------------------- edits and classifiers
def test_edits_parse_and_refuse_nonsense():
    assert Edit.parse("remove chest tube") == Edit("remove", "chest_tube")
    assert Edit.parse("add:nodule") == Edit.parse("Add Nodule") == Edit("add", "nodule")
    assert Edit.parse({"action": "remove", "finding": "effusion", "side": "left"}).side == "left"
    assert Edit("add", "effusion", name="mine").label == "mine"
    for bad in ("grow nodule", "remove", "add fracture", 3):
        with pytest.raises(DataError):
            Edit.parse(bad)
    with pytest.raises(DataError, match="side"):
        Edit("add", "nodule", side="middle")


def test_classifiers_of_every_kind(tmp_path):
    import torch

    x = np.random.default_rng(0).random((5, 1, 8, 8)).astype(np.float32)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    net.targets = ["nodule", "pneumothorax"]
    want = torch.sigmoid(net(torch.from_numpy(x)))[:, 1].detach().numpy()
    np.testing.assert_allclose(as_scorer(net, target="pneumothorax", activation="sigmoid")(x), want, rtol=1e-6)
    np.testing.assert_allclose(as_scorer(net, target=1, activation="sigmoid")(x), want, rtol=1e-6)
    with pytest.raises(DataError, match="target="):
        as_scorer(net)(x)
    with pytest.raises(DataError, match="not among"):
        as_scorer(net, target="effusion")(x)
    path = tmp_path / "clf.pt"
    torch.jit.trace(net, torch.from_numpy(x)).save(str(path))
    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        as_scorer(path, target=1)
    scripted = as_scorer(path, target=1, allow_pickle=True, activation="sigmoid")
    np.testing.assert_allclose(scripted(x), want, rtol=1e-5)

    class Predicts:
        def predict(self, images):
            return pd.DataFrame({"p_a": images.mean((1, 2, 3)), "p_b": 1 - images.mean((1, 2, 3))})

    np.testing.assert_allclose(as_scorer(Predicts(), target="p_b")(x), 1 - x.mean((1, 2, 3)))
    with pytest.raises(DataError, match="target="):
        as_scorer(Predicts())(x)
    with pytest.raises(DataError, match="NaN"):
        as_scorer(lambda im: np.full(len(im), np.nan))(x)
    with pytest.raises(DataError, match="shape"):
        as_scorer(lambda im: np.zeros(3))(x)
    with pytest.raises(DataError, match="callable"):
        as_scorer(42)


# ---------------------------------------------------------------------------- regions
def test_ground_truth_regions_cover_the_tube_and_the_new_finding(tube_patients):
    tube = edit_regions(tube_patients, "remove chest tube")
    assert tube.any((1, 2)).all() and (tube.mean((1, 2)) < 0.15).all()
    right = tube_patients.metadata["chest_tube_side"].to_numpy() == "right"
    cols = np.arange(64)
    centre = (tube.sum(1) * cols).sum(1) / tube.sum((1, 2))
    assert (centre[right] < 32).all() and (centre[~right] > 32).all()  # the patient's right is the image's left
    nodule = edit_regions(tube_patients, "add nodule")
    edited = tube_patients.metadata.assign(nodule=1)
    truth = anatomy(edited, size=64).masks["nodule"]
    assert (nodule | ~truth).all()  # every pixel of the added nodule is inside the region


def test_segmenter_regions_for_images_without_metadata(tube_patients):
    from medsynth_explore.anatomy import load_segmenter

    x = tube_patients.images
    lungs = load_segmenter().predict(x)
    for finding in ("effusion", "pneumothorax", "nodule"):
        r = edit_regions(x, Edit("add", finding, side="left", dilate=0))
        assert r.any((1, 2)).all()
        assert (r & lungs["left_lung"]).sum() / r.sum() > 0.8, finding  # inside the left lung
    heart = edit_regions(x, "add cardiomegaly")
    assert (heart | ~lungs["heart"]).all()
    with pytest.raises(DataError, match="where the tube is"):
        edit_regions(x, "remove chest tube")
    own = edit_regions(x, Edit("add", "nodule", mask=np.eye(64)))
    assert own.sum() == 64 * len(x)


# ---------------------------------------------------------------------------- the stress test
def test_physics_counterfactuals_keep_everything_outside_the_region(tube_patients):
    r = stress_test(_brightness, "phantomcxr-physics", tube_patients, edits=["remove chest tube", "add nodule"], n_boot=200)
    t = r.table.set_index("edit")
    assert t.loc["remove chest tube", "n"] == 16 and t.loc["remove chest tube", "effect_high"] < 0  # the tube is bright
    assert t.loc["add nodule", "effect_low"] > 0  # so is a nodule
    assert abs(t.loc["remove chest tube", "null_shift"]) < 0.2 * abs(t.loc["remove chest tube", "shift"])
    ex = r.examples["remove chest tube"]
    keep = ~ex["region"][:, None]
    assert (ex["after"][keep] == ex["before"][keep]).all()
    pairs = r.pairs[r.pairs["edit"] == "remove chest tube"]
    assert t.loc["remove chest tube", "effect"] == pytest.approx((pairs["after"] - pairs["null"]).mean())
    assert r.provenance["regions"] == "PhantomCXR ground truth" and r.provenance["generator"] == "phantomcxr-physics"


def test_edits_apply_only_where_they_change_something():
    ds = simulate(12, seed=3, population=Population(prevalence={"effusion": 0.5}))
    has = int(ds.metadata["effusion"].sum())
    r = stress_test(_brightness, "phantomcxr-physics", ds, edits=["remove effusion", "add effusion"], n_boot=50)
    t = r.table.set_index("edit")
    assert t.loc["remove effusion", "n"] == has and t.loc["add effusion", "n"] == 12 - has
    assert t.loc["remove effusion", "skipped"] == 12 - has


def test_edit_effect_against_scipy_bootstrap():
    """Means are plain numpy means; intervals agree with scipy's percentile bootstrap of the paired differences."""
    from scipy.stats import bootstrap

    from medsynth_explore.metrics import edit_effect

    rng = np.random.default_rng(5)
    before = rng.random(80)
    null = before + rng.normal(0, 0.02, 80)
    after = before - 0.3 + rng.normal(0, 0.1, 80)
    r = edit_effect(before, after, null, n_boot=4000, seed=1)
    assert r["n"] == 80 and r["effect"] == pytest.approx(np.mean(after - null))
    assert r["shift"] == pytest.approx(np.mean(after - before)) and r["null_shift"] == pytest.approx(np.mean(null - before))
    assert r["flipped"] == pytest.approx(np.mean((before >= 0.5) != (after >= 0.5)))
    ref = bootstrap((after - null,), np.mean, n_resamples=4000, method="percentile", random_state=2).confidence_interval
    width = ref.high - ref.low
    assert abs(r["effect_low"] - ref.low) < 0.1 * width and abs(r["effect_high"] - ref.high) < 0.1 * width
    assert np.isnan(edit_effect([0.1], [0.2], [0.1])["effect_low"])  # one image: no interval
    with pytest.raises(mse.errors.MetricError, match="pair up"):
        edit_effect([0.1, 0.2], [0.2], [0.1, 0.3])
    with pytest.raises(mse.errors.MetricError, match="NaN"):
        edit_effect([0.1, np.nan], [0.2, 0.1], [0.1, 0.3])
    with pytest.raises(mse.errors.MetricError, match="no scores"):
        edit_effect([], [], [])
    assert "stress_test" in set(mse.metrics.list_metrics()["metric"])


def test_the_chest_tube_shortcut_on_the_embedded_default(demo):
    """A classifier trained where tubes mark pneumothorax drops when the tube goes; one trained without does not."""
    results = {
        name: stress_test(clf, "phantomcxr-physics", demo.images, edits=["remove chest tube", "remove pneumothorax"], n_boot=500)
        for name, clf in demo.classifiers.items()
    }
    shortcut = results["trained with the tube shortcut"].table.set_index("edit")
    fair = results["trained without it"].table.set_index("edit")
    assert shortcut.loc["remove chest tube", "effect_high"] < -0.03
    assert fair.loc["remove chest tube", "effect_low"] > shortcut.loc["remove chest tube", "effect_high"]
    assert fair.loc["remove chest tube", "effect"] > -0.02  # no drop
    for t in (shortcut, fair):  # both still respond to the pneumothorax itself
        assert t.loc["remove pneumothorax", "effect_high"] < 0


def test_other_inpainters_and_capabilities(tube_patients):
    vae = stress_test(_brightness, "phantomcxr-vae", tube_patients, edits=["add effusion"], n_boot=50)
    without = int((tube_patients.metadata["effusion"] == 0).sum())
    assert vae.table["n"].iloc[0] == without and np.isfinite(vae.table["effect"].iloc[0])
    with pytest.raises(CapabilityError, match="chest-tube"):
        stress_test(_brightness, "phantomcxr-vae", tube_patients, edits=["remove chest tube"])
    with pytest.raises(CapabilityError, match="cannot inpaint"):
        stress_test(_brightness, "phantomcxr-gan", tube_patients)
    with pytest.raises(DataError, match="shape"):
        stress_test(_brightness, "phantomcxr-physics", np.zeros((2, 1, 32, 32), np.float32))
    with pytest.raises(DataError, match="same label"):
        stress_test(_brightness, "phantomcxr-physics", tube_patients, edits=["add nodule", "add:nodule"])
    assert mse.stress_test is stress_test


def test_inpainting_keeps_the_anatomy_outside_the_region(tube_patients):
    r = inpainting_anatomy_check("phantomcxr-physics", tube_patients, "add effusion", n_boot=100)
    s = r["summary"].set_index("structure")
    assert (s["dice_outside"] > 0.95).all() and r["provenance"]["n"] == 16


# ---------------------------------------------------------------------------- the panel
def test_stress_panel_runs_the_demonstration(demo):
    from medsynth_explore.jobs import JobRunner
    from medsynth_explore.session import Session
    from medsynth_explore.widgets import StressPanel

    session = Session(reference=simulate(24, seed=5), generators=["phantomcxr-vae"], encoder="pixels")
    panel = StressPanel(session, runner=JobRunner(synchronous=True), classifiers={"brightness": _brightness})
    panel._demo = demo  # trained once for the module
    assert panel.generator.value == "phantomcxr-physics" and "phantomcxr-vae" in panel.generator.options
    panel.classifier.value = "demo: trained with the tube shortcut"
    panel.n_images.value = 16
    panel.run_button.click()
    assert panel.last_error is None, panel.last_error
    t = panel.result.table.set_index("edit")
    direct = stress_test(
        demo.classifiers["trained with the tube shortcut"],
        "phantomcxr-physics",
        demo.images.subset(np.arange(16)),
        edits=["remove chest tube", "remove pneumothorax"],
    )
    assert t.loc["remove chest tube", "effect"] == pytest.approx(
        direct.table.set_index("edit").loc["remove chest tube", "effect"]
    )
    assert "moves the score" in panel.summary.value and len(panel.figure.data) == 2 and panel.examples.children
    panel.classifier.value = "brightness"
    panel.images.value = "the session's reference images"
    panel.edits.value = ("add nodule",)
    panel.generator.value = "phantomcxr-vae"
    panel.run_button.click()
    assert panel.last_error is None, panel.last_error
    assert panel.result.provenance["generator"] == "phantomcxr-vae"
    panel.edits.value = ()
    panel.run_button.click()
    assert "at least one edit" in panel.last_error
    panel.close()


def test_a_stress_test_can_be_cancelled(tube_patients):
    from medsynth_explore.errors import CancelledError

    with pytest.raises(CancelledError):
        stress_test(_brightness, "phantomcxr-physics", tube_patients, callback=lambda done, total: False)
