"""Conditional VAE and GAN: tiny training runs, save/load, sampling, shipped checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsynth_explore.checkpoint import load_checkpoint
from medsynth_explore.errors import CancelledError, CapabilityError, CheckpointError, DataError
from medsynth_explore.generators import list_generators, load_generator
from medsynth_explore.generators.gan import GANGenerator, train_gan
from medsynth_explore.generators.vae import VAEGenerator, train_vae
from medsynth_explore.phantom import FINDINGS, simulate

TINY_VAE = dict(epochs=1, batch_size=8, width=4, latent_dim=4)
TINY_GAN = dict(epochs=1, batch_size=8, width=4, latent_dim=8)


@pytest.fixture(scope="module")
def data():
    return simulate(24, seed=3, size=64)


@pytest.fixture(scope="module")
def vae_file(data, tmp_path_factory):
    p = tmp_path_factory.mktemp("vae") / "vae.safetensors"
    _, card = train_vae(data, p, seed=0, **TINY_VAE)
    return p, card


@pytest.fixture(scope="module")
def gan_file(data, tmp_path_factory):
    p = tmp_path_factory.mktemp("gan") / "gan.safetensors"
    _, card = train_gan(data, p, seed=0, **TINY_GAN)
    return p, card


@pytest.mark.parametrize("which", ["vae", "gan"])
def test_card_records_training(which, data, vae_file, gan_file):
    p, card = vae_file if which == "vae" else gan_file
    ck = load_checkpoint(p)
    assert ck.sha256 == card["sha256"]
    assert ck.card["family"] == which
    td = ck.card["training_data"]
    assert td["content_hash"] == data.content_hash and td["size"] == 24 and td["dataset"] == "phantomcxr"
    assert td["counts"]["sex"] == data.metadata["sex"].value_counts().sort_index().to_dict()
    assert td["finding_counts"] == {f: int(data.metadata[f].sum()) for f in FINDINGS}
    assert set(td["condition_distribution"]) >= {"age", "sex", "findings"}
    assert td["population"] == data.provenance["population"]  # simulated: the set can be rebuilt
    tr = ck.card["training"]
    assert tr["time_seconds"] > 0 and tr["epochs"] == 1 and tr["steps"] == 3 and "machine" in tr
    assert ck.card["conditions"]["conditions"][0]["name"] == "age"
    # stored in float16, computed in float32
    assert all(t.dtype == torch.float16 for t in ck.tensors.values() if t.is_floating_point())


@pytest.mark.parametrize("which", ["vae", "gan"])
def test_saved_model_loads_back_with_identical_samples(which, vae_file, gan_file):
    p, card = vae_file if which == "vae" else gan_file
    g1, g2 = load_generator(p), load_generator(str(p))
    assert isinstance(g1, VAEGenerator if which == "vae" else GANGenerator)
    assert g1.sha256 == card["sha256"]
    cond = {"age": 50, "sex": "F", "findings": ["effusion"]}
    a = g1.sample(5, conditions=cond, seed=2)
    b = g2.sample(5, conditions=cond, seed=2, batch_size=2)
    assert a.images.shape == (5, 1, 64, 64) and a.images.dtype == np.float32
    assert 0 <= a.images.min() and a.images.max() <= 1
    np.testing.assert_allclose(a.images, b.images, atol=1e-5)
    assert not np.allclose(a.images, g1.sample(5, conditions=cond, seed=3).images)
    assert (a.metadata["checkpoint_sha256"] == card["sha256"]).all()
    assert (a.metadata["effusion"] == 1).all() and (a.metadata["sex"] == "F").all()


def test_same_training_seed_same_weights(data, tmp_path, vae_file, gan_file):
    _, card = train_vae(data, tmp_path / "again.safetensors", seed=0, **TINY_VAE)
    assert card["weights_digest"] == vae_file[1]["weights_digest"]
    _, again = train_gan(data, tmp_path / "again_gan.safetensors", seed=0, **TINY_GAN)
    assert again["weights_digest"] == gan_file[1]["weights_digest"]


@pytest.mark.parametrize("which", ["vae", "gan"])
def test_conditions_change_the_output(which, vae_file, gan_file):
    g = load_generator((vae_file if which == "vae" else gan_file)[0])
    a = g.sample(4, conditions={"age": 30, "sex": "F", "findings": []}, seed=0).images
    b = g.sample(4, conditions={"age": 80, "sex": "M", "findings": list(FINDINGS)}, seed=0).images
    assert np.abs(a - b).mean() > 1e-4


def test_gan_cannot_inpaint(gan_file):
    g = load_generator(gan_file[0])
    assert g.capabilities == frozenset({"conditions"})
    with pytest.raises(CapabilityError, match="cannot inpaint"):
        g.inpaint(np.zeros((64, 64)), np.ones((64, 64)))


def test_vae_inpaint_keeps_pixels_outside_the_mask(vae_file, data):
    g = load_generator(vae_file[0])
    img = data[:2]
    mask = np.zeros((2, 1, 64, 64))
    mask[:, :, 10:30, 20:40] = 1
    out = g.inpaint(img, mask, conditions={"findings": ["nodule"]}, seed=0)
    keep = mask == 0
    np.testing.assert_array_equal(out.images[keep], img.images[keep])
    assert not np.array_equal(out.images[~keep], img.images[~keep])
    assert (out.metadata["nodule"] == 1).all()
    assert out.metadata["age"].tolist() == img.metadata["age"].astype(float).tolist()
    np.testing.assert_allclose(g.inpaint(img, mask, seed=0).images, g.inpaint(img, mask, seed=0).images)
    assert g.encode(img).shape == (2, 4)


def test_training_callback_progress_and_cancel(data, tmp_path):
    seen = []
    train_gan(data, tmp_path / "g.safetensors", seed=0, callback=lambda d, t: seen.append((d, t)), **TINY_GAN)
    assert seen[0] == (0, 3) and seen[-1] == (3, 3)
    out = tmp_path / "cancelled.safetensors"
    with pytest.raises(CancelledError):
        train_vae(data, out, seed=0, callback=lambda d, t: d < 1, **TINY_VAE)
    assert not out.exists()


def test_training_rejects_bad_input(data, tmp_path):
    from medsynth_explore.data import ImageSet

    with pytest.raises(DataError, match="ImageSet"):
        train_vae(data.images, tmp_path / "x.safetensors")
    with pytest.raises(DataError, match=".safetensors"):
        train_gan(data, tmp_path / "x.pt")
    with pytest.raises(DataError, match="epochs"):
        train_vae(data, tmp_path / "x.safetensors", epochs=0)
    two_channel = ImageSet(np.repeat(data.images[:4], 2, axis=1), data.metadata.iloc[:4])
    with pytest.raises(DataError, match="\\(1, 64, 64\\)"):
        train_gan(two_channel, tmp_path / "x.safetensors", **TINY_GAN)
    no_sex = ImageSet(data.images, data.metadata.drop(columns="sex"))
    with pytest.raises(DataError, match="'sex'"):
        train_vae(no_sex, tmp_path / "x.safetensors", **TINY_VAE)


def test_card_weight_mismatch_is_caught_on_build(vae_file, gan_file):
    ck = load_checkpoint(vae_file[0])
    card = dict(ck.card)
    card["architecture"] = dict(card["architecture"], width=8)
    with pytest.raises(CheckpointError, match="do not fit the architecture"):
        VAEGenerator(card, ck.tensors)


def test_pickle_state_dict_loads_only_with_opt_in(vae_file, tmp_path):
    ck = load_checkpoint(vae_file[0])
    p = tmp_path / "vae.pt"
    torch.save({"state_dict": ck.tensors, "card": ck.card}, p)
    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        load_generator(p)
    g = load_generator(p, allow_pickle=True)
    ref = load_generator(vae_file[0])
    np.testing.assert_allclose(g.sample(2, seed=0).images, ref.sample(2, seed=0).images, atol=1e-6)


# -- shipped checkpoints --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["phantomcxr-vae", "phantomcxr-gan"])
def test_shipped_checkpoint_loads_and_samples(name):
    row = list_generators().set_index("name").loc[name]
    if not row["available"]:
        pytest.skip(f"{name} weights are not installed")
    g = load_generator(name)
    assert g.name == name and g.card["training_data"]["size"] > 1000
    s = g.sample(6, conditions={"sex": "M", "findings": ["cardiomegaly"]}, seed=0)
    assert s.images.shape == (6, 1, 64, 64)
    assert (s.metadata["sex"] == "M").all() and (s.metadata["cardiomegaly"] == 1).all()
    assert s.metadata["age"].between(18, 90).all()
    assert s.images.std() > 0.05  # not a blank or collapsed output


def test_gan_can_start_from_a_checkpoint(data, gan_file, tmp_path):
    p, card = gan_file
    _, out = train_gan(data, tmp_path / "more.safetensors", seed=1, init_from=p, mismatch_weight=1.0, **TINY_GAN)
    assert out["training"]["initialised_from"] == card["sha256"]
    # the first run is recorded, so the two-run recipe can be rebuilt from the card
    first = out["training"]["previous_runs"][0]
    assert first["sha256"] == card["sha256"] and first["steps"] == card["training"]["steps"] and "(weight 0.5)" in first["loss"]
    assert "(weight 1.0)" in out["training"]["loss"]
    assert out["training"]["total_time_seconds"] >= out["training"]["time_seconds"] > 0
    # a loaded GANGenerator starts a run as its file does
    _, same = train_gan(data, tmp_path / "same.safetensors", seed=1, init_from=load_generator(p), mismatch_weight=1.0, **TINY_GAN)
    assert same["weights_digest"] == out["weights_digest"]
    with pytest.raises(CheckpointError, match="not a GAN with architecture"):
        train_gan(data, tmp_path / "bad.safetensors", seed=1, init_from=p, **dict(TINY_GAN, width=8))


# -- the shared training loop ---------------------------------------------------------------------
def test_time_budget_stops_after_the_epoch_that_passes_it(data, tmp_path):
    _, card = train_vae(data, tmp_path / "short.safetensors", seed=0, max_seconds=0, **dict(TINY_VAE, epochs=3))
    tr = card["training"]
    assert tr["epochs"] == 1 and tr["epochs_planned"] == 3 and tr["steps"] == 3 and len(tr["history"]) == 1
    with pytest.raises(DataError, match="max_seconds"):
        train_gan(data, tmp_path / "x.safetensors", max_seconds=-1, **TINY_GAN)


def test_training_loop_budget_history_log_and_cancel():
    from medsynth_explore.generators._training import TrainingLoop

    now = [0.0]
    lines, seen = [], []

    def step(batch):
        now[0] += 4.0  # each step takes 4 s on the fake clock
        return {"loss": float(batch), "other": 1.0}

    loop = TrainingLoop(12, callback=lambda d, t: seen.append((d, t)), max_seconds=10, log=lines.append, clock=lambda: now[0])
    history = loop.run_epochs(
        4, lambda epoch: [1, 2, 3], step, lambda e, m: ((e, m["loss"], m["other"]), f"loss {m['loss']:.1f}")
    )
    # epoch 1 ends at 12 s > 10 s: the budget stops the run there
    assert loop.epochs == 1 and loop.step == 3 and history == [(1, 2.0, 1.0)]
    assert seen == [(0, 12), (1, 12), (2, 12), (3, 12)] and lines == ["epoch 1/4: loss 2.0, 12 s"]
    loop = TrainingLoop(100, clock=lambda: now[0])
    assert loop.run_steps(lambda: 0.5, every=40, summary=lambda s, m: ([s, m["loss"]], "")) == [[40, 0.5], [80, 0.5]]
    assert loop.step == 100
    loop = TrainingLoop(5, callback=lambda d, t: d < 2)
    with pytest.raises(CancelledError, match="after 2 of 5"):
        loop.run_steps(lambda: 0.0)


def test_durations_are_never_rounded_to_zero():
    from medsynth_explore.generators._training import duration

    assert duration(0.00004) > 0 and duration(0.04) == 0.04 and duration(273.98) == 274.0


def test_parameter_average_formulas_agree():
    from medsynth_explore.generators._training import ParameterEMA

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    a = ParameterEMA(net, 0.9, formula="lerp")
    b = ParameterEMA(net, 0.9, formula="mul_add", buffers_each_update=False)
    for _ in range(5):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        net.train()(torch.randn(8, 3))
        a.update()
        b.update()
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a.model.parameters(), b.model.parameters()))
    assert torch.equal(a.model[1].running_mean, net[1].running_mean)  # copied at every update
    assert not torch.equal(b.model[1].running_mean, net[1].running_mean)
    b.copy_buffers()
    assert torch.equal(b.model[1].running_mean, net[1].running_mean)
    assert not any(p.requires_grad for p in a.model.parameters())


def test_trained_generator_is_the_saved_one(data, tmp_path):
    out = tmp_path / "v.safetensors"
    gen, card = train_vae(data, out, seed=0, **TINY_VAE)
    assert isinstance(gen, VAEGenerator) and gen.sha256 == card["sha256"] and gen.path == str(out)
    np.testing.assert_array_equal(gen.sample(3, seed=1).images, load_generator(out).sample(3, seed=1).images)
