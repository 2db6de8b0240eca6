"""Anatomy by segmentation: ground-truth masks, measurements against the simulator's own, the shipped segmenter,
foreign segmentation models, generator checks and the Anatomy panel."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest

from medsynth_explore import anatomy as A
from medsynth_explore.errors import CheckpointError, DataError, MetricError, OfflineError
from medsynth_explore.metrics import dice, list_metrics
from medsynth_explore.phantom import Population, anatomy, sample_patients, simulate


@pytest.fixture(scope="module")
def heldout():
    """Patients no shipped model saw (seed 4242), with every finding present now and then."""
    pop = Population(prevalence={"cardiomegaly": 0.3, "nodule": 0.2, "effusion": 0.25, "pneumothorax": 0.2})
    return simulate(96, seed=4242, population=pop)


@pytest.fixture(scope="module")
def segmenter():
    return A.Segmenter()


# ---------------------------------------------------------------------------- ground truth and measurements
def test_truth_masks_split_the_lungs_at_the_patient_midline():
    t = sample_patients(12, seed=3)
    m = A.truth_masks(t, size=64)
    lungs = anatomy(t, size=64).masks["lungs"]
    assert ((m["left_lung"] | m["right_lung"]) == lungs).all()
    assert not (m["left_lung"] & m["right_lung"]).any()
    cols = np.arange(64)
    for i in range(12):  # the patient's left lung is on the image's right
        left_x = (m["left_lung"][i].sum(0) * cols).sum() / m["left_lung"][i].sum()
        right_x = (m["right_lung"][i].sum(0) * cols).sum() / m["right_lung"][i].sum()
        assert right_x < 32 < left_x
    with pytest.raises(DataError, match="patient columns"):
        A.truth_masks(pd.DataFrame({"age": [50]}))


def test_measurements_equal_the_simulators_own_on_its_masks():
    """ctr and areas of measure_masks against phantom.anatomy's independent ctr_from_masks and pixel areas."""
    t = sample_patients(40, Population(prevalence={"cardiomegaly": 0.5}), seed=9)
    truth = anatomy(t, size=64)
    m = A.measure_masks(A.truth_masks(t, size=64))
    np.testing.assert_allclose(m["ctr"], truth.measurements["ctr_from_masks"], rtol=1e-12)
    np.testing.assert_allclose(m["lung_area_left"] + m["lung_area_right"], truth.measurements["lungs_area_px"] / 64**2)
    np.testing.assert_allclose(m["heart_area"], truth.measurements["heart_area_px"] / 64**2)
    assert (m["heart_main"] == 1).all() and (m["ctr"] > 0.5).mean() == pytest.approx((t["cardiomegaly"] == 1).mean(), abs=0.1)


def test_plausibility_rules_name_what_failed():
    m = A.truth_masks(sample_patients(3, seed=1), size=64)
    ranges = A.Segmenter().card["plausible_ranges"]
    assert A.check_plausible(A.measure_masks(m), ranges)["plausible"].all()
    swapped = {"right_lung": m["left_lung"], "left_lung": m["right_lung"], "heart": m["heart"]}
    assert (A.check_plausible(A.measure_masks(swapped), ranges)["implausible_reasons"] == "lungs and heart out of place").all()
    broken = {k: v.copy() for k, v in m.items()}
    broken["heart"][:, :, :] = False
    broken["heart"][:, 5:8, 5:8] = True
    broken["heart"][:, 40:43, 40:43] = True  # two pieces of equal size
    reasons = A.check_plausible(A.measure_masks(broken), ranges)["implausible_reasons"]
    assert reasons.str.contains("heart in pieces").all()
    with pytest.raises(DataError, match="lack"):
        A.measure_masks({"heart": m["heart"]})


def test_dice_against_monai_and_sklearn():
    from monai.metrics import compute_dice
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    a, b = rng.random((6, 16, 16)) > 0.6, rng.random((6, 16, 16)) > 0.5
    ours = dice(a, b)
    import torch

    theirs = compute_dice(torch.from_numpy(a[:, None]).float(), torch.from_numpy(b[:, None]).float(), include_background=True)
    np.testing.assert_allclose(ours, theirs.numpy().ravel(), rtol=1e-6)
    np.testing.assert_allclose(ours[0], f1_score(b[0].ravel(), a[0].ravel()), rtol=1e-12)
    region = rng.random((16, 16)) > 0.5
    np.testing.assert_allclose(dice(a, b, region)[1], f1_score(b[1][region], a[1][region]), rtol=1e-12)
    assert dice(np.zeros((1, 4, 4)), np.zeros((1, 4, 4))).tolist() == [1.0]
    with pytest.raises(MetricError, match="0 and 1"):
        dice(np.full((1, 4, 4), 0.5), np.zeros((1, 4, 4)))
    with pytest.raises(MetricError, match="same shape"):
        dice(np.zeros((1, 4, 4)), np.zeros((1, 5, 4)))


def test_anatomy_metrics_are_registered():
    t = list_metrics().set_index("name")
    assert {"dice", "ctr_mae", "implausible_rate", "ctr_mean"} <= set(t.index)
    assert t.loc["implausible_rate", "kind"] == "external" and t.loc["implausible_rate", "higher_is_better"] is False
    assert bool(t.loc["dice", "higher_is_better"])


# ---------------------------------------------------------------------------- the shipped segmenter
def test_shipped_segmenter_on_held_out_patients(segmenter, heldout):
    truth = A.truth_masks(heldout.metadata, 64)
    pred = segmenter.predict(heldout)
    for s in A.STRUCTURES:
        assert dice(pred[s], truth[s]).mean() > 0.9, s
    ctr = A.measure_masks(pred)["ctr"]
    from medsynth_explore.metrics import ctr_error

    err = ctr_error(ctr, heldout.metadata["ctr"])
    assert err["failed"] == 0 and err["ctr_mae"] < 0.03
    card = segmenter.card
    assert card["family"] == "segmenter" and card["metrics"]["dice_heart"] > 0.9
    assert set(card["plausible_ranges"]) == set(A.RANGED)


def test_measure_real_images_are_plausible_and_noise_is_not(segmenter, heldout):
    m = A.measure(heldout, segmenter=segmenter)
    assert {"ctr", "lung_area_left", "lung_area_right", "heart_area", "plausible", "implausible_reasons"} <= set(m.columns)
    assert m["plausible"].mean() >= 0.95
    assert m.attrs["provenance"]["segmenter_sha256"] == segmenter.sha256
    noise = np.random.default_rng(0).random((16, 1, 64, 64)).astype(np.float32)
    assert A.measure(noise, segmenter=segmenter)["plausible"].mean() < 0.2
    flat = np.full((4, 1, 64, 64), 0.5, np.float32)
    assert not A.measure(flat, segmenter=segmenter)["plausible"].any()
    big = A.measure(np.kron(heldout.images[:4], np.ones((1, 1, 2, 2), np.float32)), segmenter=segmenter)
    np.testing.assert_allclose(big["ctr"], m["ctr"][:4], atol=0.05)  # 128 px images are measured at their own size


def test_measure_rejects_bad_images():
    bad = np.zeros((2, 1, 64, 64), np.float32)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        A.measure(bad)
    with pytest.raises(DataError, match="channels"):
        A.measure(np.zeros((1, 2, 64, 64), np.float32))
    with pytest.raises(DataError, match="no images"):
        A.measure(np.zeros((0, 1, 64, 64), np.float32))


# ---------------------------------------------------------------------------- foreign segmentation models


def _xrv_like_module():
    import torch

    seg = A.Segmenter()

    class XRVLike(torch.nn.Module):
        targets = ["Left Clavicle", "Heart", "Left Lung", "Right Lung"]

        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):  # x in [-1024, 1024] at 128 px; logits at 32 px
            img = ((x + 1024) / 2048).clamp(0, 1)
            img = torch.nn.functional.interpolate(img, size=(64, 64), mode="bilinear", antialias=True)
            p = torch.from_numpy(seg.probabilities(img.numpy())).clamp(1e-4, 1 - 1e-4)
            logits = torch.logit(p)[:, [2, 1, 0]]  # heart, left lung, right lung
            logits = torch.cat([torch.full_like(logits[:, :1], -9.0), logits], 1) * self.scale
            return torch.nn.functional.interpolate(logits, size=(32, 32), mode="bilinear")

    return XRVLike()


def test_a_torch_module_with_targets_stands_in(heldout):
    module = _xrv_like_module()
    seg = A.load_segmenter(module, input_range=(-1024, 1024), input_size=128)
    assert seg.index == [3, 2, 1]
    m = A.measure(heldout.subset(np.arange(8)), segmenter=seg)
    ours = A.measure(heldout.subset(np.arange(8)))
    np.testing.assert_allclose(m["ctr"], ours["ctr"], atol=0.06)
    assert m.attrs["provenance"]["segmenter"] == "XRVLike"
    with pytest.raises(DataError, match="name no heart"):
        A.ModuleSegmenter(module, targets=["a", "Left Lung", "Right Lung", "b"])
    with pytest.raises(DataError, match="no .targets"):
        A.ModuleSegmenter(lambda x: x)
    with pytest.raises(DataError, match="returned"):
        A.ModuleSegmenter(lambda x: x[:, :1], targets=["Heart", "Left Lung", "Right Lung"]).probabilities(np.zeros((1, 1, 8, 8)))


def test_files_load_only_with_allow_pickle(tmp_path):
    import torch

    net = torch.nn.Conv2d(1, 3, 1)
    scripted = tmp_path / "seg.pt"
    torch.jit.script(net).save(str(scripted))
    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        A.load_segmenter(scripted, targets=["Heart", "Left Lung", "Right Lung"])
    seg = A.load_segmenter(scripted, allow_pickle=True, targets=["Heart", "Left Lung", "Right Lung"])
    x = np.random.default_rng(0).random((2, 1, 16, 16)).astype(np.float32)
    want = torch.sigmoid(net(torch.from_numpy(x))).detach().numpy()[:, [2, 1, 0]]
    np.testing.assert_allclose(seg.probabilities(x), want, rtol=1e-5, atol=1e-6)
    # a DataParallel state dict ("module." prefixes), as TorchXRayVision's ChestX-Det file is, into a given architecture
    state = tmp_path / "weights.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, state)
    with pytest.raises(DataError, match="architecture"):
        A.load_segmenter(state, allow_pickle=True, targets=["Heart", "Left Lung", "Right Lung"])
    seg2 = A.load_segmenter(
        state, allow_pickle=True, architecture=lambda: torch.nn.Conv2d(1, 3, 1), targets=["Heart", "Left Lung", "Right Lung"]
    )
    np.testing.assert_allclose(seg2.probabilities(x), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(CheckpointError, match="do not fit"):
        A.load_segmenter(state, allow_pickle=True, architecture=lambda: torch.nn.Conv2d(1, 4, 1), targets=["Heart"] * 3)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(CheckpointError, match="cannot read"):
        A.load_segmenter(junk, allow_pickle=True)
    with pytest.raises(CheckpointError, match="not a segmenter"):
        A.Segmenter(A.SEGMENTER_ASSET.parent / "phantomcxr-classifier.safetensors")


def test_chestx_det_weights_offline_and_without_torchxrayvision(tmp_path, monkeypatch):
    with pytest.raises(OfflineError, match="wget https://github.com/mlmed/torchxrayvision"):
        A.load_segmenter("chestx-det", path=tmp_path / "missing.pth")
    import torch

    file = tmp_path / "pspnet_chestxray_best_model_4.pth"
    torch.save({"module.w": torch.zeros(1)}, file)
    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        A.load_segmenter("chestx-det", path=file)
    monkeypatch.setitem(sys.modules, "torchxrayvision", types.ModuleType("torchxrayvision"))  # installed without the model
    with pytest.raises(CheckpointError, match="pip install torchxrayvision"):
        A.load_segmenter("chestx-det", path=file, allow_pickle=True)


# ---------------------------------------------------------------------------- generators
def test_ctr_follows_the_requested_condition_on_the_simulator(segmenter):
    t = A.ctr_by_condition(
        "phantomcxr-physics",
        {"normal": {"findings": []}, "cardiomegaly": {"findings": ["cardiomegaly"]}},
        n=24,
        segmenter=segmenter,
    )
    rows = t.set_index("condition")
    assert rows.loc["cardiomegaly", "ctr_low"] > 0.5 > rows.loc["normal", "ctr_high"]
    assert rows.loc["normal", "ctr_above_half"] < 0.1 and rows.loc["cardiomegaly", "ctr_above_half"] > 0.8
    assert (t["implausible_rate"] < 0.1).all()
    assert t.attrs["provenance"]["generator"] == "phantomcxr-physics" and len(t.attrs["measurements"]) == 48


def test_anatomy_report_flags_a_generator_that_draws_noise(segmenter):
    from medsynth_explore.generators.conditions import phantomcxr_schema

    from doubles import Noise

    report = A.anatomy_report(Noise(size=64, schema=phantomcxr_schema()), n=8, segmenter=segmenter, n_boot=100)
    assert report["implausible_rate"] > 0.8 and report["implausible_low"] <= report["implausible_rate"]
    assert set(report["samples"]) == set(A.checks.DEFAULT_CONDITIONS) and sum(report["reasons"].values()) >= 1


def test_inpainting_anatomy_outside_the_mask(segmenter, heldout):
    from medsynth_explore.generators import load_generator

    x = heldout.subset(np.arange(8))
    mask = np.zeros((8, 64, 64))
    mask[:, 44:, :] = 1
    same = A.inpainting_anatomy(x, x, mask, segmenter=segmenter)
    assert (same.filter(like="dice_").to_numpy() == 1).all()
    out = load_generator("phantomcxr-physics").inpaint(x, mask[:, None], conditions={"findings": ["effusion"]}, seed=0)
    d = A.inpainting_anatomy(x, out, mask, segmenter=segmenter)
    assert d["dice_outside_heart"].mean() > 0.95 and d["dice_outside_right_lung"].mean() > 0.9
    with pytest.raises(DataError, match="one shape"):
        A.inpainting_anatomy(x, x.images[:4], mask)


# ---------------------------------------------------------------------------- training and the command line
def test_train_segmenter_tiny_run_writes_a_card_with_heldout_scores(tmp_path):
    data = simulate(40, seed=11)
    seg, card = A.train_segmenter(
        data, tmp_path / "s.safetensors", epochs=1, width=4, batch_size=16, heldout=simulate(8, seed=12)
    )
    assert isinstance(seg, A.Segmenter) and card["family"] == "segmenter" and card["training"]["epochs"] == 1
    assert {"dice_heart", "ctr_mae", "ctr_mae_truth_masks", "blurred_sigma_0.8px", "noisy_std_0.03"} <= set(card["metrics"])
    assert card["metrics"]["heldout"]["n"] == 8 and set(card["plausible_ranges"]) == set(A.RANGED)
    assert seg.predict(data.images[:2])["heart"].shape == (2, 64, 64)
    with pytest.raises(DataError, match="ImageSet"):
        A.train_segmenter(data.images, tmp_path / "x.safetensors")
    with pytest.raises(DataError, match="epochs"):
        A.train_segmenter(data, tmp_path / "x.safetensors", epochs=0)


def test_cli_trains_the_segmenter(tmp_path, capsys):
    from medsynth_explore.cli import main

    out = tmp_path / "seg.safetensors"
    assert main(["train", "--model", "segmenter", "--data", "phantomcxr", "--n", "40", "--epochs", "1", "--out", str(out)]) == 0
    assert "segmenter" in capsys.readouterr().out and A.Segmenter(out).card["training"]["epochs"] == 1


# ---------------------------------------------------------------------------- the panel
def test_anatomy_panel_measures_and_checks_inpainting():
    from medsynth_explore.jobs import JobRunner
    from medsynth_explore.session import Session
    from medsynth_explore.widgets import AnatomyPanel

    session = Session(reference=simulate(40, seed=5), generators=["phantomcxr-physics"], encoder="pixels")
    panel = AnatomyPanel(session, runner=JobRunner(synchronous=True))
    panel.n_per_condition.value = 8
    panel.measure_button.click()
    assert panel.last_error is None, panel.last_error
    table = panel.report["by_condition"].set_index("condition")
    assert table.loc["cardiomegaly", "ctr_mean"] > 0.5 > table.loc["no finding", "ctr_mean"]
    assert "cardiomegaly" in panel.table.value and len(panel.figure.data) == 5
    panel.n_inpaint.value = 4
    panel.inpaint_button.click()
    assert panel.last_error is None, panel.last_error
    assert panel.inpainting["summary"]["dice_outside"].min() > 0.8 and "Dice outside" in panel.inpaint_out.value
    panel.close()
