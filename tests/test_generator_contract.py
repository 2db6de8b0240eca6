"""One contract, run over every generator family (as diffusers runs its pipeline tester mixin over every pipeline).

Each family is built small (shipped checkpoints where they are small, tiny
random-weight models otherwise) and must honour the same protocol: shapes,
range and metadata of what it makes; seeding (same seed, same images; batch
size does not matter; the first k images of n are those of k); progress and
cancel; clear errors for bad arguments; its declared capabilities and no
others; inpainting that keeps every pixel outside the mask. A new family
adds one entry to ``FAMILIES``.
"""

from __future__ import annotations

import numpy as np
import pytest

from medsynth_explore.data import ImageSet
from medsynth_explore.errors import CancelledError, CapabilityError, ConditionError, DataError

from doubles import Noise

#: What a contract test may ask each family: keyword arguments that keep sampling cheap.
FAST = {
    "physics": {},
    "vae": {},
    "gan": {},
    "diffusion": {"steps": 2},
    "diffusers": {"steps": 3},
    "diffusers-sd": {"steps": 2},
    "monai-ddpm": {"steps": 3},
    "monai-text-ldm": {"steps": 2},
    "test-double": {},
}

#: Families that do not promise "the first k images of n are those of k", and why.
NO_PREFIX = {
    "physics": "the simulator draws the patient attributes no condition fixes (BMI, positioning, site) for the whole "
    "cohort from one seed, vectorised; per-image draws would cost about 27 ms a patient",
}


def _physics():
    from medsynth_explore.generators.physics import PhysicsGenerator

    return PhysicsGenerator(size=32)


def _shipped(name):
    def build():
        from medsynth_explore.generators import load_generator

        return load_generator(name)

    return build


def _diffusion():
    import torch

    from medsynth_explore.generators.diffusion import DiffusionGenerator

    torch.set_num_threads(1)
    return DiffusionGenerator.tiny(seed=0)


def _diffusers(tmp_path_factory):
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    from medsynth_explore.generators import load_generator

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    folder = tmp_path_factory.mktemp("contract-ddpm")
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=20)).save_pretrained(folder)
    return load_generator(folder)


def _stable_diffusion(tmp_path_factory):
    pytest.importorskip("transformers")
    from medsynth_explore.generators import load_generator
    from medsynth_explore.generators.tiny import write_stable_diffusion

    return load_generator(write_stable_diffusion(tmp_path_factory.mktemp("contract-sd"), size=32))


def _monai_bundle(kind):
    def build(tmp_path_factory):
        pytest.importorskip("monai")
        if kind == "text-latent":
            pytest.importorskip("transformers")
        from medsynth_explore.generators import load_generator
        from medsynth_explore.generators.tiny import write_monai_bundle

        return load_generator(write_monai_bundle(tmp_path_factory.mktemp(f"contract-{kind}"), kind=kind, size=32))

    return build


FAMILIES = {
    "physics": lambda tmp: _physics(),
    "vae": lambda tmp: _shipped("phantomcxr-vae")(),
    "gan": lambda tmp: _shipped("phantomcxr-gan")(),
    "diffusion": lambda tmp: _diffusion(),
    "diffusers": _diffusers,
    "diffusers-sd": _stable_diffusion,
    "monai-ddpm": _monai_bundle("ddpm"),
    "monai-text-ldm": _monai_bundle("text-latent"),
    "test-double": lambda tmp: Noise(size=8),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tmp_path_factory):
    return request.param, FAMILIES[request.param](tmp_path_factory), FAST[request.param]


def _conditions(gen, n):
    """Explicit conditions for every image when the model takes any (so draws never depend on n)."""
    if "conditions" not in gen.capabilities:
        return None
    names = set(gen.conditions.names)
    out = {}
    if "age" in names:
        out["age"] = np.linspace(30, 70, n)
    if "sex" in names:
        out["sex"] = ["F", "M"] * (n // 2) + ["F"] * (n % 2)
    if "findings" in names:
        out["findings"] = [[] for _ in range(n)]
    return out


def test_sample_shape_range_and_provenance(family):
    _, gen, fast = family
    out = gen.sample(3, seed=0, **fast)
    assert isinstance(out, ImageSet) and len(out) == 3
    assert out.images.shape == (3, *gen.image_shape) and out.images.dtype == np.float32
    assert np.isfinite(out.images).all() and out.images.min() >= 0 and out.images.max() <= 1
    meta = out.metadata
    assert {"generator", "checkpoint_sha256", "seed", "image_seed", "sampler"} <= set(meta.columns)
    assert (meta["generator"] == gen.name).all() and (meta["seed"] == 0).all() and meta["image_seed"].is_unique
    assert out.provenance["generator"] == gen.name and out.provenance["family"] == gen.family
    assert gen.name in repr(gen) and gen.describe()


def test_same_seed_same_images_batch_size_and_prefix(family):
    _, gen, fast = family
    cond4 = _conditions(gen, 4)
    a = gen.sample(4, seed=5, conditions=cond4, **fast)
    b = gen.sample(4, seed=5, conditions=cond4, batch_size=1, **fast)
    c = gen.sample(4, seed=6, conditions=cond4, **fast)
    np.testing.assert_allclose(a.images, b.images, atol=1e-5)
    assert not np.allclose(a.images, c.images)
    name = family[0]
    if name in NO_PREFIX:
        return
    cond2 = None if cond4 is None else {k: v[:2] for k, v in cond4.items()}
    first = gen.sample(2, seed=5, conditions=cond2, **fast)
    np.testing.assert_allclose(first.images, a.images[:2], atol=1e-5)


def test_progress_and_cancel(family):
    _, gen, fast = family
    seen = []
    gen.sample(3, seed=0, batch_size=2, callback=lambda d, t: seen.append((d, t)), **fast)
    assert seen[0] == (0, 3) and seen[-1] == (3, 3) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    with pytest.raises(CancelledError, match="cancelled"):
        gen.sample(3, seed=0, batch_size=1, callback=lambda d, t: d < 1, **fast)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True])
def test_bad_n_is_refused(family, bad):
    _, gen, fast = family
    with pytest.raises(DataError, match="n must be"):
        gen.sample(bad, **fast)


def test_bad_seed_and_batch_size_are_refused(family):
    _, gen, fast = family
    with pytest.raises(DataError, match="seed"):
        gen.sample(1, seed=-3, **fast)
    with pytest.raises(DataError, match="batch_size"):
        gen.sample(1, seed=0, batch_size=0, **fast)


def test_declared_capabilities_and_no_others(family):
    _, gen, fast = family
    caps = gen.capabilities
    if "steps" not in caps:
        with pytest.raises(CapabilityError, match="steps"):
            gen.sample(1, seed=0, steps=3)
    if "guidance" not in caps:
        with pytest.raises(CapabilityError, match="guidance"):
            gen.sample(1, seed=0, guidance=2.0, **fast)
    else:
        gen.sample(1, seed=0, guidance=1.0, **fast)
    if "text" not in caps:
        with pytest.raises(CapabilityError, match="not text-conditioned"):
            gen.sample(1, seed=0, prompt="a chest radiograph", **fast)


def test_conditions_are_checked_and_recorded(family):
    _, gen, fast = family
    if "conditions" not in gen.capabilities:
        with pytest.raises(CapabilityError, match="unconditional"):
            gen.sample(1, seed=0, conditions={"sex": "F"}, **fast)
        return
    names = set(gen.conditions.names)
    if "sex" in names:
        out = gen.sample(2, seed=0, conditions={"sex": "F"}, **fast)
        assert (out.metadata["sex"] == "F").all()
    if "age" in names:
        with pytest.raises(ConditionError, match="age"):
            gen.sample(1, seed=0, conditions={"age": 500}, **fast)
    with pytest.raises(ConditionError):
        gen.sample(1, seed=0, conditions={"no_such_condition": 1}, **fast)


def test_inpainting_keeps_the_outside_or_is_refused(family):
    _, gen, fast = family
    c, h, w = gen.image_shape
    image = gen.sample(2, seed=1, **fast)
    mask = np.zeros((h, w), np.float32)
    mask[h // 2 :, : w // 2] = 1
    if "inpaint" not in gen.capabilities:
        with pytest.raises(CapabilityError, match="cannot inpaint"):
            gen.inpaint(image, mask, seed=0, **fast)
        return
    out = gen.inpaint(image, mask, seed=0, **fast)
    keep = mask == 0
    np.testing.assert_array_equal(out.images[:, :, keep], image.images[:, :, keep])
    assert out.images.shape == image.images.shape and np.allclose(out.metadata["mask_fraction"], mask.mean())
    with pytest.raises(DataError, match="empty"):
        gen.inpaint(image, np.zeros((h, w)), seed=0, **fast)
    with pytest.raises(DataError, match="mask"):
        gen.inpaint(image, np.ones((h + 1, w)), seed=0, **fast)
