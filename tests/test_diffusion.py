"""Tests of the conditional diffusion generator with tiny seeded models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from medsynth_explore.data import ImageSet  # noqa: E402
from medsynth_explore.errors import CancelledError, CapabilityError, ConditionError, DataError  # noqa: E402
from medsynth_explore.generators import diffusion as dm  # noqa: E402

COND = {"age": 60, "sex": "F", "findings": ["effusion"]}


@pytest.fixture(scope="module")
def gen():
    torch.set_num_threads(1)
    return dm.DiffusionGenerator.tiny(seed=0)


def test_sample_shape_range_and_metadata(gen):
    s = gen.sample(3, conditions=COND, seed=0, steps=3)
    assert s.images.shape == (3, 1, 64, 64) and s.images.dtype == np.float32
    assert s.images.min() >= 0 and s.images.max() <= 1
    m = s.metadata
    assert m["sex"].tolist() == ["F"] * 3 and m["effusion"].tolist() == [1] * 3 and m["cardiomegaly"].tolist() == [0] * 3
    assert (m["age"] == 60).all() and (m["steps"] == 3).all() and (m["sampler"] == "dpmsolver++").all()
    assert (m["conditioned_on"] == "age,sex,findings").all()


def test_same_seed_same_images_and_batch_size_does_not_matter(gen):
    a = gen.sample(4, conditions=COND, seed=7, steps=3)
    b = gen.sample(4, conditions=COND, seed=7, steps=3, batch_size=3)
    c = gen.sample(4, conditions=COND, seed=8, steps=3)
    np.testing.assert_allclose(a.images, b.images, atol=1e-5)
    assert not np.allclose(a.images, c.images)


def test_conditions_change_the_output(gen):
    a = gen.sample(2, conditions=COND, seed=1, steps=3)
    b = gen.sample(2, conditions={**COND, "findings": ["cardiomegaly", "nodule"]}, seed=1, steps=3)
    assert not np.allclose(a.images, b.images)


def _count_passes(gen, monkeypatch) -> list:
    """Batch size of every network pass ``gen`` makes from now on (undone with ``monkeypatch``)."""
    calls = []
    orig = gen.net.forward

    def counting(x, t, c):
        calls.append(len(x))
        return orig(x, t, c)

    monkeypatch.setattr(gen.net, "forward", counting)
    return calls


def test_steps_and_guidance_are_honoured(gen, monkeypatch):
    calls = _count_passes(gen, monkeypatch)
    monkeypatch.setattr(gen, "condition_guidance", {})
    gen.sample(2, conditions=COND, seed=0, steps=5, guidance=3.0)
    assert len(calls) == 5 and set(calls) == {4}  # guided: conditional and unconditional in one batch
    calls.clear()
    gen.sample(2, conditions=COND, seed=0, steps=4, guidance=1.0)
    assert len(calls) == 4 and set(calls) == {2}  # guidance 1: no unconditional pass
    monkeypatch.undo()
    g1 = gen.sample(2, conditions=COND, seed=0, steps=3, guidance=1.0).images
    g4 = gen.sample(2, conditions=COND, seed=0, steps=3, guidance=4.0).images
    assert not np.allclose(g1, g4)
    s = gen.sample(1, conditions=COND, seed=0, steps=3, guidance=4.0)
    assert s.metadata["guidance"].iloc[0] == 4.0


def test_condition_guidance_composes_one_more_pass_per_group(gen, monkeypatch):
    assert gen.condition_guidance == {} and gen.guidable_conditions == ["age", "sex", "findings"]  # default: none
    monkeypatch.setattr(gen, "condition_guidance", {"age": 1.5})
    orig = gen.net.forward
    calls = _count_passes(gen, monkeypatch)
    s = gen.sample(2, conditions=COND, seed=0, steps=3, guidance=2.0)
    assert calls == [6] * 3  # with all conditions, with none, without age
    assert (s.metadata["condition_guidance"] == "age=1.5").all()
    calls.clear()
    gen.sample(2, prompt="left pleural effusion", seed=0, steps=2, guidance=2.0)
    assert calls == [4] * 2  # age not conditioned on: its term is zero, no extra pass
    monkeypatch.setattr(gen.net, "forward", orig)

    # the guided output, composed here from three plain network passes
    table = gen._resolve(2, COND, None, 0)
    cond = gen._cond_inputs(table)
    width = gen.card["architecture"]["cond_width"]  # age is column 0, its presence flag column `width`
    no_age = cond.clone()
    no_age[:, 0] = 0
    no_age[:, width] = 0
    x = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    t = torch.full((2,), 500)
    with torch.no_grad():
        c, u, na = gen.net(x, t, cond), gen.net(x, t, torch.zeros_like(cond)), gen.net(x, t, no_age)
    want = u + 2.0 * (c - u) + 1.5 * (c - na)
    torch.testing.assert_close(gen._model_out(x, 500, cond, 2.0), want, atol=1e-5, rtol=1e-5)
    monkeypatch.setattr(gen, "condition_guidance", {"age": 0})  # zero: dropped
    torch.testing.assert_close(gen._model_out(x, 500, cond, 2.0), u + 2.0 * (c - u), atol=1e-5, rtol=1e-5)
    assert gen.sample(1, conditions=COND, seed=0, steps=2).metadata["condition_guidance"].iloc[0] == ""


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"bmi": 2.0}, "not a condition"),
        ({"age": -1.0}, ">= 0"),
        ({"age": float("nan")}, ">= 0"),
        ({"age": True}, ">= 0"),
        ([("age", 2.0)], "mapping"),
    ],
)
def test_condition_guidance_is_checked(bad, msg):
    g = dm.DiffusionGenerator.tiny(seed=0)
    with pytest.raises(ConditionError, match=msg):
        g.condition_guidance = bad
    with pytest.raises(ConditionError, match=msg):
        dm.DiffusionGenerator(g.card, g.net, g.clip, condition_guidance=bad)
    assert g.condition_guidance == {}


def test_ddim_sampler(gen):
    g = dm.DiffusionGenerator(gen.card, gen.net, gen.clip, sampler="ddim")
    s = g.sample(2, conditions=COND, seed=0, steps=3)
    assert (s.metadata["sampler"] == "ddim").all() and s.images.shape == (2, 1, 64, 64)
    with pytest.raises(ConditionError, match="sampler"):
        dm.DiffusionGenerator(gen.card, gen.net, gen.clip, sampler="euler")


def test_prompt_conditions_only_on_what_was_given(gen):
    s = gen.sample(2, prompt="Left pleural effusion.", seed=0, steps=3)
    assert (s.metadata["conditioned_on"] == "prompt").all()
    s2 = gen.sample(2, prompt="Left pleural effusion.", conditions={"sex": "M"}, seed=0, steps=3)
    assert (s2.metadata["conditioned_on"] == "sex,prompt").all()
    s3 = gen.sample(2, prompt="Left pleural effusion.", conditions={"findings": ["effusion"]}, seed=0, steps=3)
    assert (s3.metadata["conditioned_on"] == "findings,prompt").all()
    other = gen.sample(2, prompt="Moderate cardiomegaly.", seed=0, steps=3)
    assert not np.allclose(s.images, other.images)
    with pytest.raises(ConditionError):
        gen.sample(1, prompt="effusion " * 70, seed=0, steps=2)


def test_model_without_text_refuses_prompts():
    g = dm.DiffusionGenerator.tiny(seed=0, text=False)
    assert "text" not in g.capabilities
    with pytest.raises(CapabilityError):
        g.sample(1, prompt="effusion", seed=0, steps=2)


def test_cancel_via_callback(gen):
    seen = []

    def cb(done, total):
        seen.append(done)
        return done < 2

    with pytest.raises(CancelledError):
        gen.sample(6, conditions=COND, seed=0, steps=2, batch_size=2, callback=cb)
    assert seen == [0, 2]


def test_inpaint_keeps_known_region_and_changes_masked_region(gen):
    src = gen.sample(2, conditions=COND, seed=3, steps=3)
    mask = np.zeros((64, 64), np.float32)
    mask[32:, :] = 1
    out = gen.inpaint(src, mask, seed=0, steps=4)
    np.testing.assert_array_equal(out.images[:, :, :32], src.images[:, :, :32])
    assert not np.allclose(out.images[:, :, 32:], src.images[:, :, 32:])
    assert (out.metadata["mask_fraction"] == 0.5).all()
    # the RePaint loop itself (without the base class paste) keeps the known region close
    m4 = np.broadcast_to(mask, (2, 1, 64, 64)).astype(np.float32).copy()
    raw = gen._inpaint(src.images, m4, out.metadata, np.array([1, 2]), 4, 2.0, None)
    assert np.abs(raw[:, :, :32] - src.images[:, :, :32]).max() < 1e-5
    again = gen.inpaint(src, mask, seed=0, steps=4)
    np.testing.assert_array_equal(out.images, again.images)


def test_repaint_jumps_resample(gen):
    calls = []
    orig = gen.net.forward
    gen.net.forward = lambda x, t, c: calls.append(1) or orig(x, t, c)
    try:
        src = gen.sample(1, conditions=COND, seed=3, steps=2)
        gen.inpaint(src, np.ones((64, 64)), seed=0, steps=6)
    finally:
        del gen.net.forward
    assert len(calls) > 6  # jumps back in time add denoising passes


def _toy_data(n=8):
    rng = np.random.default_rng(0)
    meta = pd.DataFrame(
        {
            "age": np.linspace(20, 85, n),
            "sex": ["F", "M"] * (n // 2),
            "cardiomegaly": [0, 1] * (n // 2),
            "nodule": 0,
            "effusion": [1, 0] * (n // 2),
            "pneumothorax": 0,
            "report": ["Left pleural effusion.", "Moderate cardiomegaly."] * (n // 2),
        }
    )
    return ImageSet(rng.random((n, 1, 64, 64)).astype(np.float32), meta, {"source": "toy"})


def test_train_save_load_round_trip(tmp_path, gen):
    from medsynth_explore.checkpoint import load_checkpoint
    from medsynth_explore.generators import load_generator

    out = tmp_path / "d.safetensors"
    seen = []
    model, card = dm.train_diffusion(
        _toy_data(),
        out,
        steps=60,
        max_seconds=None,
        seed=0,
        config=dm._tiny_config(),
        batch_size=4,
        clip=gen.clip,
        callback=lambda d, t: seen.append((d, t)),
    )
    # the loss is recorded every 50 steps; progress is reported after every step
    assert card["training"]["steps"] == 60 and [i[0] for i in card["training"]["loss_history"]] == [50]
    assert seen[0] == (0, 60) and seen[-1] == (60, 60) and len(seen) == 61
    assert card["training"]["time_seconds"] > 0
    assert card["training"]["total_steps"] == 60 and card["training"]["total_time_seconds"] == card["training"]["time_seconds"]
    assert card["training_data"]["condition_distribution"]["n"] == 8
    assert card["training_data"]["finding_counts"]["effusion"] == 4 and card["training_data"]["size"] == 8
    loaded = load_generator(out)
    assert isinstance(loaded, dm.DiffusionGenerator)
    assert set(loaded.capabilities) == {"conditions", "text", "inpaint", "guidance", "steps"}
    a = loaded.sample(2, conditions=COND, prompt="Left pleural effusion.", seed=0, steps=2).images
    b = model.sample(2, conditions=COND, prompt="Left pleural effusion.", seed=0, steps=2).images
    np.testing.assert_allclose(a, b, atol=2e-2)  # fp16 storage of the text encoder
    assert model.sha256 == card["sha256"] == load_checkpoint(out).sha256
    assert load_checkpoint(out).card["family"] == "diffusion"


def test_train_is_seeded_and_cancellable(gen):
    model_a, a = dm.train_diffusion(
        _toy_data(), None, steps=3, max_seconds=None, seed=1, config=dm._tiny_config(), batch_size=4, clip=False
    )
    wa = [p.detach().clone() for p in model_a.net.parameters()]
    model_b, _ = dm.train_diffusion(
        _toy_data(), None, steps=3, max_seconds=None, seed=1, config=dm._tiny_config(), batch_size=4, clip=False
    )
    wb = list(model_b.net.parameters())
    assert all(torch.equal(x, y) for x, y in zip(wa, wb))
    assert a["capabilities"] == ["conditions", "guidance", "steps", "inpaint"]
    with pytest.raises(CancelledError):
        dm.train_diffusion(
            _toy_data(),
            None,
            steps=100,
            max_seconds=None,
            config=dm._tiny_config(),
            batch_size=4,
            clip=False,
            callback=lambda done, total: False,
        )
    with pytest.raises(DataError, match="age"):
        dm.train_diffusion(ImageSet(np.zeros((4, 1, 64, 64), np.float32)), None, steps=1, clip=False)


def test_time_budget_in_seconds_and_the_deprecated_minutes():
    kw = dict(steps=5, seed=1, config=dm._tiny_config(), batch_size=4, clip=False)
    _, card = dm.train_diffusion(_toy_data(), None, max_seconds=0, **kw)
    assert card["training"]["steps"] == 1 and card["training"]["max_seconds"] == 0  # the first step always runs
    with pytest.warns(DeprecationWarning, match="max_seconds"):
        _, card = dm.train_diffusion(_toy_data(), None, max_minutes=None, **kw)
    assert card["training"]["steps"] == 5 and card["training"]["max_seconds"] is None
    with pytest.warns(DeprecationWarning), pytest.raises(DataError, match="not both"):
        dm.train_diffusion(_toy_data(), None, max_minutes=1, max_seconds=5, **kw)
    with pytest.raises(DataError, match="max_seconds"):
        dm.train_diffusion(_toy_data(), None, max_seconds=-1, **kw)


def test_pixel_weights_weight_the_loss_and_are_checked():
    data = _toy_data()
    kw = dict(steps=3, max_seconds=None, seed=1, config=dm._tiny_config(), batch_size=4, clip=False)
    model, _ = dm.train_diffusion(data, None, **kw)
    plain = [p.detach().clone() for p in model.net.parameters()]
    ones = np.ones((len(data), 1, 64, 64), np.float32)
    model, card = dm.train_diffusion(data, None, pixel_weights=ones, **kw)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(plain, model.net.parameters()))
    assert card["training"]["pixel_weights"] == {"mean": 1.0, "max": 1.0}
    lesion = ones.copy()
    lesion[:, :, 20:30, 20:30] = 50.0  # a weighted region changes what is learned
    model, _ = dm.train_diffusion(data, None, pixel_weights=lesion, **kw)
    assert not all(torch.allclose(a, b, atol=1e-5) for a, b in zip(plain, model.net.parameters()))
    with pytest.raises(DataError, match="shape"):
        dm.train_diffusion(data, None, pixel_weights=ones[:, :, :32], **kw)
    bad = ones.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="finite"):
        dm.train_diffusion(data, None, pixel_weights=bad, **kw)
    with pytest.raises(DataError, match="not all zero"):
        dm.train_diffusion(data, None, pixel_weights=ones * 0, **kw)


@pytest.mark.skipif(not dm.DEFAULT_DIFFUSION_PATH.is_file(), reason="shipped diffusion checkpoint not present")
def test_shipped_checkpoint_loads_and_samples():
    from medsynth_explore.generators import load_generator

    g = load_generator("phantomcxr-diffusion")
    s = g.sample(2, conditions=COND, seed=0, steps=3)
    assert s.images.shape == (2, 1, 64, 64) and np.isfinite(s.images).all()
    assert g.card["training"]["time_seconds"] > 0
