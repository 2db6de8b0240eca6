"""Membership inference: ROC numbers against scikit-learn, the distance and loss attacks on copiers, independent
models and overfit models, bad input, the registry, and the Privacy panel's section."""

from __future__ import annotations

import numpy as np
import pytest

from medsynth_explore.errors import CapabilityError, MetricError
from medsynth_explore.metrics import list_metrics, membership_inference
from medsynth_explore.metrics.membership import attack_roc, roc_auc, tpr_at_fpr
from medsynth_explore.phantom import simulate


# ---------------------------------------------------------------------------- ROC numbers
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_and_tpr_at_low_fpr_equal_scikit_learn(seed):
    from sklearn.metrics import roc_auc_score, roc_curve

    rng = np.random.default_rng(seed)
    m = np.round(rng.normal(0.5, 1, 300), 1)  # rounded: many ties
    n = np.round(rng.normal(0, 1, 400), 1)
    y = np.r_[np.ones(len(m)), np.zeros(len(n))]
    s = np.r_[m, n]
    assert roc_auc(m, n) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s)
    for level in (0.0, 0.01, 0.05, 0.2):
        assert tpr_at_fpr(m, n, level)[0] == pytest.approx(tpr[fpr <= level + 1e-12].max(), abs=1e-12)


def test_intervals_bracket_the_estimate_and_are_seeded():
    rng = np.random.default_rng(3)
    m, n = rng.normal(0.3, 1, 200), rng.normal(0, 1, 200)
    a, b = attack_roc(m, n, n_boot=300, seed=1), attack_roc(m, n, n_boot=300, seed=1)
    assert a == b
    assert (
        a["auc_low"] < a["auc"] < a["auc_high"] and a["tpr_at_1pct_fpr_low"] <= a["tpr_at_1pct_fpr"] <= a["tpr_at_1pct_fpr_high"]
    )
    assert 0 <= a["advantage"] <= 1 and a["n_members"] == 200
    with pytest.raises(MetricError, match="NaN"):
        attack_roc(np.r_[m[:5], np.nan], n)
    with pytest.raises(MetricError, match="at least 2"):
        attack_roc(m[:1], n)


# ---------------------------------------------------------------------------- the distance attack
def test_distance_attack_copier_near_one_independent_near_half():
    rng = np.random.default_rng(0)
    members, non = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    copier = membership_inference(members + 1e-4 * rng.normal(size=members.shape), members, non, n_boot=200)
    assert copier["auc"] > 0.99 and copier["tpr_at_1pct_fpr"] > 0.95 and copier["auc_low"] > 0.98
    independent = membership_inference(rng.normal(size=(600, 16)), members, non, n_boot=200)
    assert independent["auc_low"] < 0.5 < independent["auc_high"] and independent["tpr_at_1pct_fpr"] < 0.06
    assert independent["attack"] == "distance" and independent["member_scores"].shape == (300,)


def test_distance_attack_on_images_of_a_copying_generator():
    """PhantomCXR images; a Copier double returns its training images; a fresh simulator run is independent."""
    from doubles import Copier, toy_card

    train, held = simulate(80, seed=21), simulate(80, seed=22)
    copier = Copier(toy_card("copier", size=64), train.images)
    syn = copier.sample(640, seed=0)  # draws its 80 training images with replacement: all of them, nearly surely
    copied = membership_inference(syn, train, held, encoder="pixels", n_boot=200)
    independent = membership_inference(simulate(160, seed=23), train, held, encoder="pixels", n_boot=200)
    assert copied["auc"] > 0.98 and copied["tpr_at_1pct_fpr"] > 0.9
    assert 0.35 < independent["auc"] < 0.65 and independent["auc_low"] < 0.5 < independent["auc_high"]
    assert copied["settings"]["encoder"] == "pixels"


def test_bad_input_is_refused():
    x = np.zeros((10, 4))
    with pytest.raises(MetricError, match="unknown attack"):
        membership_inference(x, x, x, attack="shadow")
    with pytest.raises(MetricError, match="synthetic samples"):
        membership_inference(None, x, x)
    with pytest.raises(MetricError, match="members="):
        membership_inference(x, None, x)
    with pytest.raises(MetricError, match="dimensions"):
        membership_inference(np.zeros((10, 3)), x, x)
    with pytest.raises(MetricError):
        membership_inference(x, np.full((10, 4), np.nan), x)
    with pytest.raises(MetricError, match="generator="):
        membership_inference(None, x, x, attack="loss")


# ---------------------------------------------------------------------------- the loss attack
@pytest.fixture(scope="module")
def overfit_vae(tmp_path_factory):
    """A small VAE trained for many epochs on 16 images: it remembers them."""
    import torch

    from medsynth_explore.generators.vae import train_vae

    members = simulate(16, seed=31)
    out = tmp_path_factory.mktemp("vae") / "v.safetensors"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: one thread is faster, and much faster on a busy machine
    try:
        gen, _ = train_vae(members, out, epochs=60, batch_size=8, width=8, latent_dim=16, sigma=0.05, weights_dtype="float32")
    finally:
        torch.set_num_threads(threads)
    return gen, members


def test_loss_attack_recognises_what_an_overfit_vae_memorised(overfit_vae):
    gen, members = overfit_vae
    non = simulate(16, seed=32)
    r = membership_inference(None, members, non, attack="loss", generator=gen, n_boot=200)
    assert r["auc"] > 0.8 and r["auc_low"] > 0.6 and r["attack"] == "loss" and r["settings"]["generator"] == gen.name
    # two sets the model never saw: nothing to tell apart
    neither = membership_inference(None, simulate(16, seed=33), non, attack="loss", generator=gen, n_boot=200)
    assert neither["auc_low"] < 0.5 < neither["auc_high"]


def test_diffusion_loss_attack_scores_are_the_denoising_error():
    import torch

    from medsynth_explore.generators.diffusion import DiffusionGenerator
    from medsynth_explore.metrics.membership import loss_scores

    gen = DiffusionGenerator.tiny(seed=0, text=False)
    x = simulate(6, seed=41)
    same = membership_inference(None, x, x, attack="loss", generator=gen, timesteps=(10, 500), repeats=1, n_boot=50)
    assert same["auc"] == 0.5  # identical sets, identical noise: identical scores
    s_m, _ = loss_scores(gen, x, x, timesteps=(500,), repeats=1, seed=0)
    # recompute one image's error by hand: noise the image, run the network, compare its noise estimate
    from diffusers import DDPMScheduler

    from medsynth_explore.generators.base import image_seeds, randn_per_image

    cfg = gen.config
    a = DDPMScheduler(num_train_timesteps=1000, beta_schedule=cfg.beta_schedule).alphas_cumprod[500]
    noise = randn_per_image(image_seeds(0, 6, stream=100), (1, 64, 64))[:1]
    x0 = torch.from_numpy(x.images[:1]) * 2 - 1
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    cond = gen._cond_inputs(
        gen._resolve(
            1,
            gen.conditions.validate(x.metadata[["age", "sex", "cardiomegaly", "nodule", "effusion", "pneumothorax"]].iloc[:1]),
            None,
            0,
        )
    )
    with torch.no_grad():
        v = gen.net(xt, torch.tensor([500]), cond)
    eps = a.sqrt() * v + (1 - a).sqrt() * xt
    assert s_m[0] == pytest.approx(-float(((eps - noise) ** 2).mean()), rel=1e-5)
    with pytest.raises(MetricError, match="timesteps"):
        loss_scores(gen, x, x, timesteps=(1000,))


def test_loss_attack_needs_a_model_with_a_loss():
    from medsynth_explore.generators import load_generator

    x = simulate(4, seed=1)
    with pytest.raises(CapabilityError, match="distance"):
        membership_inference(None, x, x, attack="loss", generator=load_generator("phantomcxr-gan"))
    with pytest.raises(CapabilityError):
        membership_inference(None, x, x, attack="loss", generator=load_generator("phantomcxr-physics"))


def test_membership_metrics_are_registered():
    t = list_metrics().set_index("name")
    assert t.loc["mia_auc", "metric"] == "membership_inference" and t.loc["mia_auc", "higher_is_better"] is False
    assert t.loc["mia_loss_auc", "kind"] == "external"
    assert t.loc["mia_auc", "function"] == "medsynth_explore.metrics.membership_inference"


# ---------------------------------------------------------------------------- the Privacy panel
def test_privacy_panel_runs_the_attack_on_the_session():
    from medsynth_explore.jobs import JobRunner
    from medsynth_explore.session import Session
    from medsynth_explore.widgets import PrivacyPanel
    from medsynth_explore.widgets.membership import session_membership

    from doubles import Copier, toy_card

    train, held = simulate(60, seed=51), simulate(60, seed=52)
    copier = Copier(toy_card("copier", size=64), train.images)
    session = Session(reference=held, generators=[copier], encoder="pixels", train=train, holdout=held)
    session.generate(480, seed=0)  # the copier draws its 60 training images with replacement: all of them, nearly surely
    panel = PrivacyPanel(session, runner=JobRunner(synchronous=True))
    panel.membership.run_button.click()
    assert panel.membership.last_error is None, panel.membership.last_error
    r = panel.membership.result
    direct = session_membership(session, "distance", n_boot=1000)
    assert r["auc"] == direct["auc"] and r["auc"] > 0.9 and r["train_given"]
    assert "MIA AUC" in panel.membership.summary.value and len(panel.membership.figure.data) == 2
    panel.membership.attack.value = "loss"
    panel.membership.run_button.click()
    assert "loss" in (panel.membership.last_error or "") and "distance" in panel.membership.last_error
    panel.close()
