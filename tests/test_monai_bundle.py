"""MONAI bundles as generators: the published layouts (DDPM, latent, text latent), the safety of reading a config
that is code, weights with weights_only, metadata's shape and value range, seeds, steps and cancelling."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("monai")

import torch

from medsynth_explore.errors import CancelledError, CapabilityError, CheckpointError, OfflineError
from medsynth_explore.generators import load_generator
from medsynth_explore.generators.base import image_seeds, randn_per_image
from medsynth_explore.generators.monai_bundle import MonaiBundleGenerator, is_monai_bundle
from medsynth_explore.generators.tiny import write_monai_bundle


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bundles")
    return {
        "ddpm": write_monai_bundle(root / "ddpm", kind="ddpm", size=32, config_format="yaml"),
        "latent": write_monai_bundle(root / "latent", kind="latent", size=32),
    }


def _copy(src, tmp_path, name="copy"):
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def _edit_config(folder, fn):
    path = folder / "configs" / "inference.json"
    cfg = json.loads(path.read_text())
    fn(cfg)
    path.write_text(json.dumps(cfg))


def test_ddpm_bundle_in_the_mednist_layout(bundles):
    d = bundles["ddpm"]
    assert is_monai_bundle(d) and (d / "configs" / "inference.yaml").is_file() and (d / "models" / "model.pt").is_file()
    g = load_generator(d)
    assert isinstance(g, MonaiBundleGenerator)
    assert g.image_shape == (1, 32, 32) and g.capabilities == frozenset({"steps"})
    arch = g.card["architecture"]
    assert arch["network"] == "DiffusionModelUNet" and arch["inferer"] == "DiffusionInferer" and arch["latent_shape"] is None
    assert any("no value_range" in x for x in g.card["limitations"])  # mednist_ddpm's metadata gives none
    out = g.sample(2, seed=0, steps=3)
    assert out.images.shape == (2, 1, 32, 32) and out.images.dtype == np.float32
    with pytest.raises(CapabilityError, match="unconditional"):
        g.sample(1, seed=0, steps=3, conditions={"sex": "F"})
    with pytest.raises(CapabilityError, match="cannot inpaint"):
        g.inpaint(out, np.ones((32, 32)), steps=3)


def test_latent_bundle_matches_monai_run_by_hand(bundles):
    """The latent bundle sampled through the generator equals MONAI's own inferer run on the same definitions."""
    from monai.bundle import ConfigParser
    from monai.inferers import LatentDiffusionInferer

    d = bundles["latent"]
    g = load_generator(d)
    assert g.card["architecture"]["autoencoder"] == "AutoencoderKL" and g.card["architecture"]["latent_shape"] == [3, 8, 8]
    assert g.card["sampler_defaults"] == {"sampler": "DDIMScheduler", "steps": 10}  # read from the config's text
    out = g.sample(2, seed=7, steps=4)

    raw = ConfigParser.load_config_files(str(d / "configs" / "inference.json"))
    parser = ConfigParser({k: raw[k] for k in ("autoencoder_def", "network_def")})
    net = parser.get_parsed_content("network_def")
    ae = parser.get_parsed_content("autoencoder_def")
    net.load_state_dict(torch.load(d / "models" / "model.pt", weights_only=True))
    ae.load_state_dict(torch.load(d / "models" / "model_autoencoder.pt", weights_only=True))
    sched_cfg = {k: v for k, v in raw["noise_scheduler"].items() if k != "_requires_"}
    sched = ConfigParser({"s": sched_cfg}).get_parsed_content("s")
    sched.set_timesteps(num_inference_steps=4)
    noise = randn_per_image(image_seeds(7, 2), (3, 8, 8))
    with torch.no_grad():
        ref = LatentDiffusionInferer(sched, scale_factor=raw["scale_factor"]).sample(
            noise, autoencoder_model=ae.eval(), diffusion_model=net.eval(), scheduler=sched, verbose=False
        )
    np.testing.assert_allclose(out.images, np.clip(ref.numpy(), 0, 1), atol=1e-5)


def test_text_bundle_with_generative_targets_and_clip_text(tmp_path):
    pytest.importorskip("transformers")
    d = write_monai_bundle(tmp_path / "cxr", kind="text-latent", size=32)
    g = load_generator(d)
    assert g.capabilities == frozenset({"text", "conditions", "guidance", "steps"})
    assert g.conditions.names == ["age", "sex", "race", "findings", "prompt"]
    assert g.card["sampler_defaults"] == {"sampler": "DDIMScheduler", "steps": 8, "guidance": 3.0}
    a = g.sample(2, seed=0, conditions={"findings": ["pleural_effusion"], "sex": "F"}, steps=3)
    assert a.metadata["prompt"][0] == "frontal chest radiograph of a woman with pleural effusion"
    b = g.sample(2, seed=0, prompt="no acute findings", steps=3)
    assert not np.allclose(a.images, b.images)  # the text reaches the network
    c = g.sample(2, seed=0, prompt="no acute findings", steps=3, guidance=0.0)
    assert not np.allclose(b.images, c.images)  # and so does the guidance
    np.testing.assert_allclose(b.images, g.sample(2, seed=0, prompt="no acute findings", steps=3, batch_size=1).images, atol=1e-5)
    shutil.rmtree(d / "models" / "text_encoder")
    with pytest.raises(
        OfflineError, match=r'huggingface-cli download stabilityai/stable-diffusion-2-1-base --include "text_encoder/\*"'
    ):
        load_generator(d)


def test_stochastic_steps_draw_each_images_noise_from_its_own_seed(bundles):
    g = load_generator(bundles["ddpm"])
    a = g.sample(3, seed=2, steps=4)
    b = g.sample(3, seed=2, steps=4, batch_size=1)
    np.testing.assert_allclose(a.images, b.images, atol=1e-5)
    np.testing.assert_allclose(g.sample(1, seed=2, steps=4).images, a.images[:1], atol=1e-5)
    assert not np.allclose(a.images, g.sample(3, seed=3, steps=4).images)


def test_value_range_from_metadata_maps_to_unit_interval(bundles, tmp_path):
    d = _copy(bundles["ddpm"], tmp_path)
    meta_path = d / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    base = load_generator(d).sample(2, seed=0, steps=2).images
    meta["network_data_format"]["outputs"]["pred"]["value_range"] = [-1, 1]
    meta_path.write_text(json.dumps(meta))
    g = load_generator(d)
    assert g.card["architecture"]["value_range"] == [-1.0, 1.0]
    raw = load_generator(d, value_range=(0, 1)).sample(2, seed=0, steps=2).images
    np.testing.assert_allclose(raw, base, atol=1e-6)
    # the same network output read as [-1, 1]: (x + 1) / 2 of the unclipped value
    mapped = g.sample(2, seed=0, steps=2).images
    inside = (base > 0) & (base < 1)
    np.testing.assert_allclose(mapped[inside], (base[inside] + 1) / 2, atol=1e-5)


def test_steps_are_reported_and_cancel_mid_sampling(bundles):
    g = load_generator(bundles["latent"])
    seen = []
    g.sample(2, seed=0, steps=5, step_callback=seen.append)
    assert [s.step for s in seen] == [1, 2, 3, 4, 5] and seen[0].preview.shape == (2, 1, 8, 8)
    with pytest.raises(CancelledError, match="step 3 of 5"):
        g.sample(2, seed=0, steps=5, step_callback=lambda s: s.step < 3)


def test_device_and_dtype(bundles):
    g = load_generator(bundles["ddpm"], dtype="bfloat16")
    assert next(g._parts["network"].parameters()).dtype == torch.bfloat16 and g.card["architecture"]["dtype"] == "bfloat16"
    assert np.isfinite(g.sample(1, seed=0, steps=2).images).all()
    with pytest.raises(CapabilityError, match="float16 on the CPU"):
        load_generator(bundles["ddpm"], dtype="float16")


def test_config_expressions_are_never_evaluated(bundles, tmp_path):
    d = _copy(bundles["latent"], tmp_path)
    marker = tmp_path / "evaluated.txt"

    def poison(cfg):
        cfg["imports"].append(f"$open({str(marker)!r}, 'w').write('x')")
        cfg["noise_scheduler"]["_requires_"] = ["@side_effect"]
        cfg["side_effect"] = f"$open({str(marker)!r}, 'w').write('x')"

    _edit_config(d, poison)
    load_generator(d).sample(1, seed=0, steps=2)
    assert not marker.exists()

    def expression_in_network(cfg):
        cfg["network_def"]["num_res_blocks"] = f"$open({str(marker)!r}, 'w').write('x') and 1"

    _edit_config(d, expression_in_network)
    with pytest.raises(CheckpointError, match="Python expression"):
        load_generator(d)
    assert not marker.exists()


def test_only_monai_classes_are_built(bundles, tmp_path):
    d = _copy(bundles["latent"], tmp_path)
    _edit_config(d, lambda cfg: cfg["network_def"].update(_target_="os.system"))
    with pytest.raises(CheckpointError, match="not a MONAI class"):
        load_generator(d)


def test_weights_paths_outside_the_bundle_are_refused(bundles, tmp_path):
    d = _copy(bundles["latent"], tmp_path)
    (d / "models" / "model.pt").rename(tmp_path / "outside.pt")
    _edit_config(d, lambda cfg: cfg.update(load_diffusion_path="$@bundle_root + '/../outside.pt'"))
    with pytest.raises(CheckpointError, match="outside the bundle"):
        load_generator(d)


def test_missing_and_pickled_weights(bundles, tmp_path):
    d = _copy(bundles["ddpm"], tmp_path)
    (d / "models" / "model.pt").unlink()
    with pytest.raises(OfflineError, match=r"monai.bundle download"):
        load_generator(d)
    torch.save(torch.nn.Linear(2, 2), d / "models" / "model.pt")  # a pickled module, not a state dict
    with pytest.raises(CheckpointError, match="weights_only"):
        load_generator(d)
    torch.save({"unrelated.weight": torch.zeros(2)}, d / "models" / "model.pt")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_generator(d)
    (d / "models" / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError):
        load_generator(d)


def test_malformed_bundles(bundles, tmp_path):
    d = _copy(bundles["ddpm"], tmp_path)
    meta = d / "configs" / "metadata.json"
    meta.write_text("{broken")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_generator(d)
    meta.write_text(json.dumps({"network_data_format": {"outputs": {"pred": {"spatial_shape": [1, 8, 8, 8]}}}}))
    with pytest.raises(CapabilityError, match="only 2-D"):
        load_generator(d)
    meta.write_text(json.dumps({"version": "1"}))
    with pytest.raises(CheckpointError, match="network_data_format"):
        load_generator(d)
    e = _copy(bundles["latent"], tmp_path, "nonet")
    _edit_config(e, lambda cfg: cfg.pop("network_def"))
    with pytest.raises(CheckpointError, match="no diffusion network"):
        load_generator(e)
    f = _copy(bundles["latent"], tmp_path, "noinfer")
    (f / "configs" / "inference.json").unlink()
    with pytest.raises(CheckpointError, match="inference config|none of the model layouts|no configs/inference"):
        load_generator(f)
