"""Generator protocol, condition schemas, registry, physics generator, diffusers wrapper."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medsynth_explore.errors import (
    CancelledError,
    CapabilityError,
    CheckpointError,
    ConditionError,
    DataError,
    OfflineError,
)
from medsynth_explore.generators import (
    Condition,
    ConditionSchema,
    Generator,
    encode_conditions,
    list_generators,
    load_generator,
    phantomcxr_schema,
    randn_per_image,
)
from medsynth_explore.generators.conditions import condition_distribution, draw_conditions
from medsynth_explore.phantom import FINDINGS


# -- a tiny generator made in the test ---------------------------------------------------------
class NoiseGen(Generator):
    """Each image: sigmoid of per-image noise, brightened by the age condition."""

    def _generate(self, cond_table, rng_seed, steps, guidance, prompts):
        x = randn_per_image(rng_seed, (1, 8, 8)).numpy()
        age = cond_table["age"].to_numpy(float)[:, None, None, None]
        return 1 / (1 + np.exp(-x)) * 0.5 + (age - 18) / 72 * 0.5


def _noise_gen(**card_extra):
    schema = phantomcxr_schema()
    meta = pd.DataFrame(
        {
            "age": [30, 50, 70, 80],
            "sex": ["F", "F", "M", "M"],
            "cardiomegaly": [0, 0, 1, 1],
            "nodule": [0, 1, 0, 0],
            "effusion": [0, 0, 0, 1],
            "pneumothorax": [0, 0, 0, 0],
        }
    )
    card = {
        "name": "noise",
        "family": "vae",
        "architecture": {"image_size": 8},
        "conditions": schema.to_dict(),
        "training_data": {"condition_distribution": condition_distribution(meta, schema)},
    }
    card.update(card_extra)
    return NoiseGen(card, sha256="f" * 64)


# -- schema ----------------------------------------------------------------------------------
def test_phantomcxr_schema_and_round_trip():
    s = phantomcxr_schema(text=True)
    assert s.names == ["age", "sex", "findings", "prompt"]
    assert s.finding_names == list(FINDINGS)
    assert s.width == 1 + 2 + len(FINDINGS)
    assert ConditionSchema.from_dict(s.to_dict()) == s


def test_validate_accepts_the_documented_forms():
    s = phantomcxr_schema()
    v = s.validate({"age": 40, "sex": "F", "findings": ["effusion", "nodule"]})
    assert v == {"age": 40.0, "sex": "F", "cardiomegaly": 0, "nodule": 1, "effusion": 1, "pneumothorax": 0}
    assert s.validate({"findings": "effusion, nodule"})["nodule"] == 1
    assert s.validate({"findings": {"effusion": True}})["effusion"] == 1
    assert s.validate({"effusion": 1}) == {"effusion": 1}
    per_image = s.validate({"age": [20, 30], "findings": [["effusion"], []]})
    assert per_image["age"].tolist() == [20.0, 30.0]
    assert per_image["effusion"].tolist() == [1, 0]
    # explicit flag wins over the list form
    assert s.validate({"findings": ["effusion"], "effusion": 0})["effusion"] == 0
    assert s.validate(None) == {}


@pytest.mark.parametrize(
    "cond, match",
    [
        ({"age": 12}, "outside the range .* 18 to 90"),
        ({"age": [30, 95]}, "age=95 is outside"),
        ({"age": float("nan")}, "NaN"),
        ({"age": "old"}, "must be a number"),
        ({"sex": "X"}, "choose one of F, M"),
        (
            {"findings": ["fracture"]},
            "unknown finding 'fracture'; allowed findings are cardiomegaly, nodule, effusion, pneumothorax",
        ),
        ({"effusion": 2}, "0/1"),
        ({"colour": "red"}, "unknown condition 'colour'"),
        ({"prompt": "text"}, "unknown condition 'prompt'"),
    ],
)
def test_validate_rejects_bad_conditions(cond, match):
    with pytest.raises(ConditionError, match=match):
        phantomcxr_schema().validate(cond)


def test_validate_rejects_non_mapping_and_long_text():
    with pytest.raises(ConditionError, match="dict"):
        phantomcxr_schema().validate(["age", 40])
    s = phantomcxr_schema(text=True, max_tokens=3)
    with pytest.raises(ConditionError, match="at most 3"):
        s.validate({"prompt": "one two three four"})


def test_condition_definitions_are_checked():
    with pytest.raises(ConditionError, match="low < high"):
        Condition("age", "continuous", range=(5, 5))
    with pytest.raises(ConditionError, match="unknown kind"):
        Condition("x", "ordinal")
    with pytest.raises(ConditionError, match="unique"):
        ConditionSchema((Condition("a", "text"), Condition("a", "text")))


def test_encode_conditions_scales_and_one_hot_encodes():
    s = phantomcxr_schema()
    t = pd.DataFrame(
        {
            "age": [18, 90, 54],
            "sex": ["F", "M", "F"],
            "cardiomegaly": [1, 0, 0],
            "nodule": [0, 0, 1],
            "effusion": [0, 1, 0],
            "pneumothorax": [0, 0, 0],
        }
    )
    x = encode_conditions(t, s)
    assert x.dtype.is_floating_point and tuple(x.shape) == (3, 7)
    np.testing.assert_allclose(x[:, 0].numpy(), [0.0, 1.0, 0.5])
    np.testing.assert_array_equal(x[:, 1:3].numpy(), [[1, 0], [0, 1], [1, 0]])
    np.testing.assert_array_equal(x[:, 3:].numpy(), t[list(FINDINGS)].to_numpy())
    with pytest.raises(ConditionError, match="lacks column 'age'"):
        encode_conditions(t.drop(columns="age"), s)


def test_draw_conditions_follows_the_recorded_distribution():
    s = phantomcxr_schema()
    dist = {
        "age": {"hist": [0, 10], "edges": [18, 54, 90]},
        "sex": {"F": 0.25, "M": 0.75},
        "findings": {f: {"all": 0.5, "F": 1.0, "M": 0.0} for f in FINDINGS},
        "findings_by": "sex",
    }
    t = draw_conditions(4000, s, dist, np.random.default_rng(0))
    assert t["age"].between(54, 90).all()
    assert abs((t["sex"] == "F").mean() - 0.25) < 0.03
    assert (t.loc[t["sex"] == "F", "effusion"] == 1).all() and (t.loc[t["sex"] == "M", "effusion"] == 0).all()
    with pytest.raises(ConditionError, match="records no training distribution"):
        draw_conditions(3, s, {}, np.random.default_rng(0))
    with pytest.raises(ConditionError, match="2 values but 3 images"):
        draw_conditions(3, s, dist, np.random.default_rng(0), given={"age": np.array([20.0, 30.0])})


# -- base protocol ---------------------------------------------------------------------------
def test_sample_metadata_and_provenance():
    g = _noise_gen()
    s = g.sample(5, conditions={"age": 60, "findings": ["effusion"]}, seed=3)
    m = s.metadata
    assert s.images.shape == (5, 1, 8, 8) and s.images.dtype == np.float32
    assert (m["age"] == 60).all() and (m["effusion"] == 1).all() and (m["nodule"] == 0).all()
    assert set(m["sex"]) <= {"F", "M"}
    for col in ("prompt", "generator", "checkpoint_sha256", "seed", "image_seed", "sampler", "steps", "guidance"):
        assert col in m
    assert (m["checkpoint_sha256"] == "f" * 64).all() and (m["seed"] == 3).all()
    assert m["image_seed"].nunique() == 5
    assert s.provenance["generator"] == "noise" and s.provenance["requested_conditions"] == [
        "age",
        "cardiomegaly",
        "effusion",
        "nodule",
        "pneumothorax",
    ]


def test_same_seed_same_output_and_batch_size_invariance():
    g = _noise_gen()
    a = g.sample(7, seed=11)
    b = g.sample(7, seed=11, batch_size=3)
    c = g.sample(7, seed=12)
    np.testing.assert_allclose(a.images, b.images, atol=1e-6)
    pd.testing.assert_frame_equal(a.metadata, b.metadata)
    assert not np.allclose(a.images, c.images)
    # with the conditions given, a prefix of a bigger run equals a smaller run
    d = g.sample(3, conditions={"age": 40, "sex": "F", "findings": []}, seed=5)
    e = g.sample(6, conditions={"age": 40, "sex": "F", "findings": []}, seed=5)
    np.testing.assert_allclose(d.images, e.images[:3], atol=1e-6)


def test_unspecified_conditions_are_drawn_and_recorded():
    g = _noise_gen()
    s = g.sample(400, seed=0)
    assert set(s.metadata["sex"]) == {"F", "M"}
    assert s.metadata["age"].between(18, 90).all()
    # seed=None draws a fresh seed and records it, so the run can be repeated
    r = g.sample(2)
    again = g.sample(2, seed=int(r.metadata["seed"][0]))
    np.testing.assert_array_equal(r.images, again.images)


def test_callback_reports_progress_and_can_cancel():
    g = _noise_gen()
    seen = []
    g.sample(10, seed=0, batch_size=4, callback=lambda d, t: seen.append((d, t)))
    assert seen == [(0, 10), (4, 10), (8, 10), (10, 10)]
    calls = []

    def stop_after_first(done, total):
        calls.append(done)
        return done < 4

    with pytest.raises(CancelledError, match="after 4 of 10"):
        g.sample(10, seed=0, batch_size=4, callback=stop_after_first)
    assert calls == [0, 4]


@pytest.mark.parametrize("n", [0, -1, 2.5, "3", True, None])
def test_bad_n_is_refused(n):
    with pytest.raises(DataError, match="n must be"):
        _noise_gen().sample(n, seed=0)


def test_bad_sampler_arguments_are_refused():
    g = _noise_gen()
    with pytest.raises(DataError, match="seed"):
        g.sample(2, seed=-1)
    with pytest.raises(DataError, match="batch_size"):
        g.sample(2, seed=0, batch_size=0)
    with pytest.raises(CapabilityError, match="steps"):
        g.sample(2, seed=0, steps=10)
    with pytest.raises(CapabilityError, match="guidance"):
        g.sample(2, seed=0, guidance=3.0)
    with pytest.raises(CapabilityError, match="not text-conditioned"):
        g.sample(2, seed=0, prompt="effusion")
    with pytest.raises(ConditionError, match="outside the range"):
        g.sample(2, seed=0, conditions={"age": 100})
    with pytest.raises(ConditionError, match="unknown finding"):
        g.sample(2, seed=0, conditions={"findings": ["atelectasis"]})
    with pytest.raises(ConditionError, match="3 values but 2 images"):
        g.sample(2, seed=0, conditions={"age": [20, 30, 40]})


def test_bad_generator_output_is_caught():
    class Broken(NoiseGen):
        def _generate(self, cond_table, rng_seed, steps, guidance, prompts):
            out = super()._generate(cond_table, rng_seed, steps, guidance, prompts)
            out[0, 0, 0, 0] = np.nan
            return out

    g = Broken(_noise_gen().card)
    with pytest.raises(DataError, match="NaN"):
        g.sample(2, seed=0)


def test_models_without_inpaint_raise_capability_error():
    g = _noise_gen()
    with pytest.raises(CapabilityError, match="cannot inpaint"):
        g.inpaint(np.zeros((8, 8)), np.ones((8, 8)))


def test_inpaint_runs_the_same_batch_loop_and_passes_the_image_metadata_to_resolve():
    class Painter(NoiseGen):
        contexts: list = []

        def _resolve(self, n, conditions, prompts, seed, context=None):
            self.contexts.append(context)
            return super()._resolve(n, conditions, prompts, seed, context=context)

        def _inpaint(self, images, masks, cond_table, rng_seed, steps, guidance, prompts):
            return self._generate(cond_table, rng_seed, steps, guidance, prompts)

    g = Painter(dict(_noise_gen().card, capabilities=["conditions", "inpaint"]))
    src = g.sample(5, seed=0, conditions={"age": 30})
    mask = np.zeros((8, 8))
    mask[:4] = 1
    seen = []
    out = g.inpaint(src, mask, conditions={"sex": "M"}, seed=1, batch_size=2, callback=lambda d, t: seen.append((d, t)))
    assert g.contexts[0] is None and g.contexts[1] is src.metadata
    assert seen == [(0, 5), (2, 5), (4, 5), (5, 5)]
    np.testing.assert_array_equal(out.images[:, :, 4:], src.images[:, :, 4:])
    assert (
        (out.metadata["age"] == 30).all() and (out.metadata["sex"] == "M").all() and (out.metadata["mask_fraction"] == 0.5).all()
    )
    assert out.provenance["sampler"] == "inpaint:" + src.provenance["sampler"] and "requested_conditions" not in out.provenance
    with pytest.raises(CancelledError, match="inpainting cancelled by the progress callback after 2 of 5"):
        g.inpaint(src, mask, seed=1, batch_size=2, callback=lambda d, t: d < 2)


# -- physics generator ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def physics():
    return load_generator("phantomcxr-physics")


def test_physics_card_and_capabilities(physics):
    assert physics.family == "physics" and physics.name == "phantomcxr-physics"
    assert physics.capabilities == frozenset({"conditions", "inpaint"})
    assert physics.image_shape == (1, 64, 64)
    assert "inpaint" in physics.describe().lower()


def test_physics_conditional_sampling_respects_conditions(physics):
    s = physics.sample(6, conditions={"age": 75, "sex": "F", "findings": ["cardiomegaly", "effusion"]}, seed=1)
    m = s.metadata
    assert s.images.shape == (6, 1, 64, 64)
    assert (m["age"] == 75).all() and (m["sex"] == "F").all()
    assert (m["cardiomegaly"] == 1).all() and (m["effusion"] == 1).all()
    assert (m["nodule"] == 0).all() and (m["pneumothorax"] == 0).all()
    # ground truth agrees: enlarged heart, effusion volume present
    assert (m["ctr"] > 0.5).all()
    assert m["effusion_volume_ml"].notna().all()
    healthy = physics.sample(6, conditions={"findings": []}, seed=1).metadata
    assert (healthy["ctr"] < 0.5).all() and healthy["effusion_volume_ml"].isna().all()


def test_physics_ground_truth_masks_match_the_conditions(physics):
    from medsynth_explore.phantom import anatomy

    pos = physics.sample(3, conditions={"findings": ["effusion"]}, seed=2)
    neg = physics.sample(3, conditions={"findings": []}, seed=2)
    assert anatomy(pos.metadata).masks["effusion"].reshape(3, -1).any(1).all()
    assert not anatomy(neg.metadata).masks["effusion"].any()
    # same seed, same patients: only the effusion differs, and it brightens the lung bases
    assert (pos.metadata["anatomy_seed"].to_numpy() == neg.metadata["anatomy_seed"].to_numpy()).all()
    m = anatomy(pos.metadata).masks["effusion"]
    diff = pos.images[:, 0] - neg.images[:, 0]
    assert diff[m].mean() > diff[~m].mean() + 0.02


def test_physics_is_deterministic(physics):
    a = physics.sample(3, seed=9)
    b = physics.sample(3, seed=9, batch_size=1)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, physics.sample(3, seed=10).images)


def test_physics_inpaint_keeps_outside_and_changes_inside(physics):
    img = physics.sample(2, conditions={"findings": []}, seed=4)
    mask = np.zeros((64, 64), np.float32)
    mask[36:, :] = 1
    out = physics.inpaint(img, mask, conditions={"findings": ["effusion"]}, seed=0)
    assert out.images.shape == (2, 1, 64, 64)
    np.testing.assert_array_equal(out.images[:, :, :36], img.images[:, :, :36])
    assert not np.array_equal(out.images[:, :, 36:], img.images[:, :, 36:])
    m = out.metadata
    assert (m["effusion"] == 1).all()
    # conditions not given are kept from the image (same patient, same age and sex)
    assert m["age"].tolist() == img.metadata["age"].tolist() and m["sex"].tolist() == img.metadata["sex"].tolist()
    assert (m["anatomy_seed"].to_numpy() == img.metadata["anatomy_seed"].to_numpy()).all()
    np.testing.assert_allclose(m["mask_fraction"], 28 / 64)


def test_inpaint_bad_input(physics):
    img = physics.sample(2, seed=0)
    with pytest.raises(DataError, match="empty"):
        physics.inpaint(img, np.zeros((64, 64)))
    with pytest.raises(DataError, match="mask has shape"):
        physics.inpaint(img, np.ones((32, 32)))
    with pytest.raises(DataError, match="mask has shape"):
        physics.inpaint(img, np.ones((3, 1, 64, 64)))
    with pytest.raises(DataError, match="0 \\(keep\\) or 1"):
        physics.inpaint(img, np.full((64, 64), 2.0))
    bad = img.images.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        physics.inpaint(bad, np.ones((64, 64)))
    with pytest.raises(DataError, match="resize"):
        physics.inpaint(np.zeros((1, 1, 32, 32), np.float32), np.ones((32, 32)))
    with pytest.raises(ConditionError, match="unknown finding"):
        physics.inpaint(img, np.ones((64, 64)), conditions={"findings": ["fracture"]})


# -- registry ---------------------------------------------------------------------------------
def test_list_generators_reports_builtins():
    df = list_generators()
    assert set(df["name"]) == {"phantomcxr-diffusion", "phantomcxr-vae", "phantomcxr-gan", "phantomcxr-physics"}
    assert {"name", "family", "available", "path"} <= set(df.columns)
    assert df.set_index("name").loc["phantomcxr-physics", "available"]


def test_missing_builtin_weights_say_how_to_train(monkeypatch, tmp_path):
    from medsynth_explore.generators import registry

    monkeypatch.setattr(registry, "ASSETS_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="medsynth train --model vae"):
        load_generator("phantomcxr-vae")
    assert not list_generators().set_index("name").loc["phantomcxr-gan", "available"]


def test_load_generator_bad_names(tmp_path):
    with pytest.raises(CheckpointError, match="neither a built-in"):
        load_generator("phantomcxr-unicorn")
    with pytest.raises(CheckpointError, match="neither a built-in"):
        load_generator(str(tmp_path / "missing.safetensors"))
    with pytest.raises(CheckpointError, match="model_index.json"):
        load_generator(tmp_path)
    with pytest.raises(CheckpointError, match="name or a path"):
        load_generator(42)


def test_uncached_hub_id_raises_offline_error():
    with pytest.raises(OfflineError, match="huggingface-cli download medsynth-test-org/no-such-model --local-dir DIR"):
        load_generator("medsynth-test-org/no-such-model")


def test_clip_checkpoint_is_not_a_generator(tmp_path):
    import torch

    from medsynth_explore.checkpoint import new_card, save_checkpoint

    p = tmp_path / "clip.safetensors"
    save_checkpoint(p, {"w": torch.zeros(1)}, new_card("c", "clip", {}))
    with pytest.raises(CheckpointError, match="get_encoder"):
        load_generator(p)


# -- diffusers pipelines ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_ddpm_dir(tmp_path_factory):
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

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
    d = tmp_path_factory.mktemp("ddpm")
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=20)).save_pretrained(d)
    return d


def test_diffusers_pipeline_folder_loads_and_samples(tiny_ddpm_dir):
    g = load_generator(tiny_ddpm_dir)
    assert type(g).__name__ == "DiffusersPipelineGenerator"
    assert g.capabilities == frozenset({"steps"}) and g.image_shape == (1, 16, 16)
    a = g.sample(3, seed=0, steps=4)
    b = g.sample(3, seed=0, steps=4, batch_size=1)
    assert a.images.shape == (3, 1, 16, 16) and 0 <= a.images.min() and a.images.max() <= 1
    np.testing.assert_allclose(a.images, b.images, atol=1e-5)
    assert (a.metadata["steps"] == 4).all() and len(a.metadata["checkpoint_sha256"][0]) == 64
    with pytest.raises(CapabilityError, match="unconditional"):
        g.sample(2, seed=0, conditions={"sex": "F"})
    with pytest.raises(CapabilityError, match="cannot inpaint"):
        g.inpaint(np.zeros((16, 16)), np.ones((16, 16)))


def test_conditions_to_prompt():
    from medsynth_explore.generators.diffusers_pipeline import conditions_to_prompt

    assert conditions_to_prompt({"age": 64.6, "sex": "M", "cardiomegaly": 1, "effusion": 1}) == (
        "frontal chest radiograph of a 65 year old man with cardiomegaly and pleural effusion"
    )
    assert conditions_to_prompt({"age": float("nan"), "sex": pd.NA}) == "frontal chest radiograph"


class _FakeTextPipeline:
    """Stands in for a text-to-image pipeline (transformers is not installed here)."""

    def __init__(self):
        self.calls = []

    def __call__(self, prompt, generator=None, num_inference_steps=50, guidance_scale=7.5, height=16, width=16, output_type="np"):
        import torch

        self.calls.append({"prompt": list(prompt), "steps": num_inference_steps, "guidance": guidance_scale})
        imgs = torch.stack([torch.rand((height, width, 3), generator=g) for g in generator]).numpy()
        return type("Out", (), {"images": imgs})()


def test_text_pipeline_wrapper_turns_conditions_into_prompts():
    from medsynth_explore.generators.diffusers_pipeline import DiffusersPipelineGenerator

    pipe = _FakeTextPipeline()
    g = DiffusersPipelineGenerator(pipe, name="fake-sd", source="memory", default_steps=7, schema="phantomcxr")
    assert g.capabilities == frozenset({"text", "conditions", "steps", "guidance"})
    s = g.sample(2, conditions={"age": 70, "sex": "F", "findings": ["effusion"]}, seed=0, guidance=3.0)
    assert pipe.calls[-1] == {
        "prompt": ["frontal chest radiograph of a 70 year old woman with pleural effusion"] * 2,
        "steps": 7,
        "guidance": 3.0,
    }
    assert s.images.shape == (2, 1, 64, 64)  # no UNet to read a size from: 64 by default
    assert (s.metadata["effusion"] == 1).all() and (s.metadata["nodule"] == 0).all()
    # conditions not given stay unknown rather than drawn
    t = g.sample(1, conditions={"sex": "M"}, seed=0)
    assert pd.isna(t.metadata["age"][0]) and pd.isna(t.metadata["effusion"][0])
    assert t.metadata["prompt"][0] == "frontal chest radiograph of a man"
    # an explicit prompt replaces the generated text; seeds make it repeatable
    u = g.sample(2, prompt="chest x-ray, effusion", seed=1)
    assert pipe.calls[-1]["prompt"] == ["chest x-ray, effusion"] * 2
    np.testing.assert_array_equal(u.images, g.sample(2, prompt="chest x-ray, effusion", seed=1, batch_size=1).images)


# -- the model's own condition schema, devices and precision ------------------------------------
def test_chexpert_schema_uses_the_label_vocabulary():
    from medsynth_explore.data.labels import CHEXPERT_FINDINGS
    from medsynth_explore.generators.conditions import RACES, as_schema, chexpert_schema

    s = chexpert_schema()
    assert s.names == ["age", "sex", "race", "findings", "prompt"]
    assert tuple(s.finding_names) == CHEXPERT_FINDINGS and len(CHEXPERT_FINDINGS) == 14
    assert s["race"].values == RACES and s["sex"].values == ("F", "M")
    assert chexpert_schema(text=False, races=None).names == ["age", "sex", "findings"]
    assert as_schema(s) is s and as_schema(None) is None and as_schema("phantomcxr").has_text
    assert as_schema(s.to_dict()) == s
    for bad, match in (
        (3, "must be a ConditionSchema"),
        ("radiology", "unknown ready schema"),
        ({"schema": "chexpert", "x": 1}, "options"),
    ):
        with pytest.raises(ConditionError, match=match):
            as_schema(bad)
    with pytest.raises(ConditionError, match="race='Martian'"):
        s.validate({"race": "Martian"})


def test_folder_formats_table_dispatches_and_names_the_layouts(tmp_path):
    from medsynth_explore.generators.registry import FOLDER_FORMATS

    assert [f[0] for f in FOLDER_FORMATS] == ["diffusers", "monai-bundle"]
    (tmp_path / "junk").mkdir()
    with pytest.raises(CheckpointError, match="model_index.json.*configs/metadata.json"):
        load_generator(tmp_path / "junk")


def test_devices_and_precisions_are_parsed_in_one_place():
    import torch

    from medsynth_explore.generators.devices import dtype_name, resolve_device, resolve_dtype

    assert resolve_device(None) == torch.device("cpu") and resolve_device("auto").type in ("cpu", "cuda")
    assert resolve_dtype("bf16") == torch.bfloat16 and resolve_dtype("half", "cuda:0" if torch.cuda.is_available() else None)
    assert dtype_name(resolve_dtype(None)) == "float32"
    with pytest.raises(CapabilityError, match="unknown device"):
        resolve_device("tpu:0")
    with pytest.raises(CapabilityError, match="float32, float16 or bfloat16"):
        resolve_dtype(torch.int8)
    with pytest.raises(CapabilityError, match="float16 on the CPU"):
        resolve_dtype("float16", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(CapabilityError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize("name", ["phantomcxr-vae", "phantomcxr-gan"])
def test_shipped_generators_honour_dtype(name):
    import torch

    g32 = load_generator(name)
    g16 = load_generator(name, dtype="bfloat16")
    assert next(g16.net.parameters()).dtype == torch.bfloat16 and g32.dtype == torch.float32
    a, b = g32.sample(4, seed=0), g16.sample(4, seed=0)
    assert b.images.dtype == np.float32
    assert np.abs(a.images - b.images).mean() < 0.05  # the same images, to bfloat16's precision
    with pytest.raises(CapabilityError, match="float16 on the CPU"):
        load_generator(name, dtype="float16")


def test_diffusion_and_physics_honour_or_refuse_device_and_dtype():
    import torch

    from medsynth_explore.generators.diffusion import DiffusionGenerator

    tiny = DiffusionGenerator.tiny(seed=0)
    bf = DiffusionGenerator(tiny.card, tiny.net, tiny.clip, dtype="bfloat16")
    assert next(bf.net.parameters()).dtype == torch.bfloat16
    assert np.isfinite(bf.sample(2, seed=0, steps=2).images).all()
    assert load_generator("phantomcxr-physics", device="cpu").image_shape == (1, 64, 64)
    with pytest.raises(CapabilityError, match="physics simulator runs on the CPU"):
        load_generator("phantomcxr-physics", dtype="bfloat16")
