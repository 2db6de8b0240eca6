"""Stable-Diffusion-style text pipelines end to end: tiny pipelines with a local tokenizer, the model's own schema,
prompts, inpainting, device and precision, progress per denoising step and cancelling mid-sampling."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import torch

from medsynth_explore.errors import CancelledError, CapabilityError, CheckpointError, ConditionError
from medsynth_explore.generators import load_generator
from medsynth_explore.generators.conditions import chexpert_schema, conditions_to_prompt
from medsynth_explore.generators.tiny import write_stable_diffusion

EXPECTED_FILES = {"model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler"}


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    return write_stable_diffusion(tmp_path_factory.mktemp("sd"), size=32, seed=0)


@pytest.fixture(scope="module")
def sd(sd_dir):
    torch.set_num_threads(1)
    return load_generator(sd_dir)


def test_the_folder_is_the_published_layout_and_loads_offline(sd_dir, sd):
    assert EXPECTED_FILES <= {p.name for p in sd_dir.iterdir()}
    index = json.loads((sd_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    assert type(sd).__name__ == "DiffusersPipelineGenerator" and sd.image_shape == (1, 32, 32)
    assert sd.capabilities == frozenset({"text", "conditions", "guidance", "steps", "inpaint"})
    assert len(sd.sha256) == 64


def test_default_schema_is_the_chexpert_vocabulary(sd):
    assert sd.conditions.names == ["age", "sex", "race", "findings", "prompt"]
    assert sd.conditions.finding_names == list(chexpert_schema().finding_names)
    assert "pleural_effusion" in sd.conditions.finding_names and "effusion" not in sd.conditions.finding_names
    with pytest.raises(ConditionError, match="unknown finding 'effusion'"):
        sd.sample(1, seed=0, steps=2, conditions={"findings": ["effusion"]})


def test_conditions_become_prompts_the_pipeline_receives(sd):
    seen = []
    orig = sd.pipeline.__class__.__call__

    def spy(pipe, *a, **kw):
        seen.append(list(kw["prompt"]))
        return orig(pipe, *a, **kw)

    cond = {"age": [45, 80], "sex": ["F", "M"], "race": "Black", "findings": ["pleural_effusion", "edema"]}
    try:
        sd.pipeline.__class__.__call__ = spy
        out = sd.sample(2, seed=0, steps=2, conditions=cond)
    finally:
        sd.pipeline.__class__.__call__ = orig
    assert seen[-1] == [
        "frontal chest radiograph of a 45 year old Black woman with edema and pleural effusion",
        "frontal chest radiograph of an 80 year old Black man with edema and pleural effusion",
    ]
    meta = out.metadata
    assert meta["prompt"].tolist() == seen[-1]
    assert (meta["pleural_effusion"] == 1).all() and (meta["cardiomegaly"] == 0).all() and (meta["race"] == "Black").all()


def test_same_seed_same_images_and_batch_size_does_not_matter(sd):
    a = sd.sample(3, seed=4, steps=2, prompt="left pleural effusion")
    b = sd.sample(3, seed=4, steps=2, prompt="left pleural effusion", batch_size=1)
    c = sd.sample(3, seed=5, steps=2, prompt="left pleural effusion")
    np.testing.assert_allclose(a.images, b.images, atol=1e-5)
    assert not np.allclose(a.images, c.images)
    assert a.images.dtype == np.float32 and 0 <= a.images.min() and a.images.max() <= 1


def test_conditions_json_and_schema_argument_and_template(tmp_path):
    schema = {"conditions": [{"name": "sex", "kind": "categorical", "values": ["F", "M"]}]}
    d = write_stable_diffusion(tmp_path / "own", size=32, conditions={**schema, "prompt_template": "chest x-ray of a {sex}"})
    g = load_generator(d)
    assert g.conditions.names == ["sex", "prompt"]  # the prompt itself is always accepted by a text pipeline
    out = g.sample(1, seed=0, steps=2, conditions={"sex": "M"})
    assert out.metadata["prompt"][0] == "chest x-ray of a man"
    with pytest.raises(ConditionError, match="unknown condition 'age'"):
        g.sample(1, seed=0, steps=2, conditions={"age": 50})
    # schema= wins over the file, and a ready schema is named
    h = load_generator(d, schema="phantomcxr", prompt_template="{patient}; {findings}")
    assert h.conditions.finding_names == ["cardiomegaly", "nodule", "effusion", "pneumothorax"]
    out = h.sample(1, seed=0, steps=2, conditions={"age": 30, "sex": "F", "findings": ["nodule"]})
    assert out.metadata["prompt"][0] == "30 year old woman; a pulmonary nodule"
    (d / "conditions.json").write_text("{not json")
    with pytest.raises(ConditionError, match="not valid JSON"):
        load_generator(d)
    (d / "conditions.json").write_text(json.dumps({"schema": "nonsense"}))
    with pytest.raises(ConditionError, match="unknown ready schema"):
        load_generator(d)


def test_prompt_template_fields():
    row = {"age": 61.7, "sex": "F", "race": "White", "cardiomegaly": 0, "edema": 0}
    assert conditions_to_prompt(row, ["cardiomegaly", "edema"], "x-ray: {findings} ({patient})") == (
        "x-ray: no acute findings (62 year old White woman)"
    )
    assert conditions_to_prompt({"no_finding": 1, "edema": 0}, ["no_finding", "edema"]) == "frontal chest radiograph, no finding"
    assert conditions_to_prompt({"age": 30}, template=lambda r: f"age {r['age']}") == "age 30"
    with pytest.raises(ConditionError, match="cannot be filled"):
        conditions_to_prompt({"age": 30}, template="{age:d}{")


def test_inpainting_keeps_the_outside_and_changes_the_inside(sd):
    base = sd.sample(2, seed=1, steps=2, prompt="chest radiograph")
    mask = np.zeros((32, 32), np.float32)
    mask[8:24, 8:24] = 1
    out = sd.inpaint(base, mask, seed=3, steps=2, prompt="right pleural effusion")
    np.testing.assert_array_equal(out.images[:, :, mask == 0], base.images[:, :, mask == 0])
    assert np.abs(out.images[:, :, mask == 1] - base.images[:, :, mask == 1]).mean() > 1e-3
    assert out.metadata["sampler"].iloc[0].startswith("inpaint:")


def test_a_dedicated_inpainting_pipeline_folder(tmp_path):
    g = load_generator(write_stable_diffusion(tmp_path / "inp", size=32, inpainting=True))
    assert type(g.pipeline).__name__ == "StableDiffusionInpaintPipeline" and "inpaint" in g.capabilities
    img = np.full((1, 1, 32, 32), 0.4, np.float32)
    mask = np.zeros((32, 32))
    mask[:16] = 1
    out = g.inpaint(img, mask, seed=0, steps=2, conditions={"findings": ["pneumothorax"]})
    assert (out.images[0, 0, 16:] == np.float32(0.4)).all()


def test_progress_per_denoising_step_with_preview(sd):
    steps, coarse = [], []
    sd.sample(3, seed=0, steps=4, batch_size=2, step_callback=steps.append, callback=lambda d, t: coarse.append((d, t)))
    assert [(s.step, s.steps, s.start, s.stop) for s in steps] == [(i, 4, 0, 2) for i in range(1, 5)] + [
        (i, 4, 2, 3) for i in range(1, 5)
    ]
    assert steps[0].preview.shape == (2, 1, 4, 4) and 0 <= steps[0].preview.min() and steps[0].preview.max() <= 1
    fractions = [s.fraction for s in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert coarse[0] == (0, 3) and coarse[-1] == (3, 3) and (0, 3) in coarse[1:]  # the callback also hears each step


def test_cancel_mid_sampling_not_only_between_batches(sd):
    seen = []

    def stop_at_second_step(info):
        seen.append(info.step)
        return info.step < 2

    with pytest.raises(CancelledError, match="step 2 of 6"):
        sd.sample(4, seed=0, steps=6, batch_size=4, step_callback=stop_at_second_step)
    assert seen == [1, 2]  # one batch, stopped inside it
    calls = []

    def job(done, total):  # the Explorer's Job.progress: False once cancelled
        calls.append(done)
        return len(calls) < 3

    with pytest.raises(CancelledError):
        sd.sample(4, seed=0, steps=6, batch_size=4, callback=job)
    assert calls == [0, 0, 0]  # cancelled at the second denoising step of the first (only) batch
    # the generator is usable afterwards
    assert sd.sample(1, seed=0, steps=2).images.shape == (1, 1, 32, 32)


def test_device_and_dtype_are_honoured(sd_dir):
    g = load_generator(sd_dir, dtype="bfloat16")
    assert g.dtype == torch.bfloat16 and g.pipeline.unet.dtype == torch.bfloat16
    assert g.card["architecture"]["dtype"] == "bfloat16"
    out = g.sample(1, seed=0, steps=2)
    assert out.images.dtype == np.float32 and np.isfinite(out.images).all()
    with pytest.raises(CapabilityError, match="float16 on the CPU"):
        load_generator(sd_dir, dtype="float16")
    if not torch.cuda.is_available():
        with pytest.raises(CapabilityError, match="CUDA is not available"):
            load_generator(sd_dir, device="cuda")
    with pytest.raises(CapabilityError, match="unknown dtype"):
        load_generator(sd_dir, dtype="int8")


def test_missing_transformers_is_said_in_words(sd_dir, monkeypatch):
    import diffusers

    def no_transformers(*a, **kw):
        raise ImportError("StableDiffusionPipeline requires the transformers library but it was not found in your environment")

    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", no_transformers)
    with pytest.raises(CheckpointError, match=r"medsynth-explore\[models\]"):
        load_generator(sd_dir)


def test_a_damaged_pipeline_folder_is_a_checkpoint_error(sd_dir, tmp_path):
    import shutil

    bad = tmp_path / "damaged"
    shutil.copytree(sd_dir, bad)
    (bad / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError):
        load_generator(bad)
    (bad / "model_index.json").unlink()
    (bad / "configs").mkdir()
    with pytest.raises(CheckpointError, match="none of the model layouts"):
        load_generator(bad)


def test_unknown_conditions_stay_unknown(sd):
    out = sd.sample(1, seed=0, steps=2, conditions={"sex": "F"})
    assert pd.isna(out.metadata["age"][0]) and pd.isna(out.metadata["pleural_effusion"][0])
    assert out.metadata["prompt"][0] == "frontal chest radiograph of a woman"
