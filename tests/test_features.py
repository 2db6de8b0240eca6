"""Feature encoders: preparation (channels, resize), built-in encoders, loaders on local files, cache."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medsynth_explore.errors import CancelledError, FeatureError, OfflineError
from medsynth_explore.features import (
    Encoder,
    FeatureCache,
    PixelEncoder,
    RandomCNNEncoder,
    encode_cached,
    get_encoder,
    registry,
)


class _Probe(Encoder):
    """Returns the prepared input flattened, to see exactly what a network receives."""

    def __init__(self, channels=3, size=(8, 8), mean=None, std=None):
        self.channels, self.input_size, self.mean, self.std = channels, size, mean, std
        self.dim = channels * size[0] * size[1]
        self.id = "probe"

    def _forward(self, x):
        return x.reshape(len(x), -1)


def _images(n=4, size=32, seed=0):
    return np.random.default_rng(seed).random((n, 1, size, size)).astype(np.float32)


def test_grayscale_is_repeated_on_three_channels_and_rgb_averaged_for_gray_nets():
    x = _images(2, 8)
    out = _Probe(channels=3, size=(8, 8)).encode(x).reshape(2, 3, 8, 8)
    for c in range(3):
        np.testing.assert_array_equal(out[:, c], x[:, 0])
    rgb = np.random.default_rng(1).random((2, 3, 8, 8)).astype(np.float32)
    gray = _Probe(channels=1, size=(8, 8)).encode(rgb).reshape(2, 8, 8)
    np.testing.assert_allclose(gray, rgb.mean(1), rtol=1e-6)
    with pytest.raises(FeatureError, match="channels"):
        _Probe().encode(np.zeros((1, 2, 8, 8), np.float32))


def test_resize_is_antialiased_bilinear_as_documented():
    x = _images(3, 64)
    enc = _Probe(channels=1, size=(16, 16))
    assert "bilinear" in enc.normalisation and "antialias" in enc.normalisation
    out = enc.encode(x).reshape(3, 1, 16, 16)
    ref = F.interpolate(torch.from_numpy(x), size=(16, 16), mode="bilinear", align_corners=False, antialias=True).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-7)
    plain = F.interpolate(torch.from_numpy(x), size=(16, 16), mode="bilinear", align_corners=False).numpy()
    assert np.abs(out - plain).max() > 1e-3  # the antialiased resize really differs from the plain one


def test_normalisation_applied_after_resize():
    x = np.full((1, 1, 8, 8), 0.75, np.float32)
    enc = _Probe(channels=3, size=(8, 8), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    np.testing.assert_allclose(enc.encode(x), 1.0)
    assert "mean=(0.5, 0.5, 0.5)" in enc.normalisation


def test_encode_accepts_imageset_validates_and_batches():
    from medsynth_explore.data import ImageSet

    x = _images(10, 32)
    enc = PixelEncoder(size=8)
    a = enc.encode(ImageSet(x))
    b = enc.encode(x, batch_size=3)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == (10, 64)
    with pytest.raises(FeatureError, match=r"\[0, 1\]"):
        enc.encode(x * 2)
    with pytest.raises(FeatureError, match="NaN"):
        enc.encode(np.full((1, 1, 8, 8), np.nan, np.float32))
    with pytest.raises(FeatureError, match="batch_size"):
        enc.encode(x, batch_size=0)


def test_callback_reports_progress_and_can_cancel():
    seen = []
    PixelEncoder(size=4).encode(_images(10, 16), batch_size=4, callback=lambda d, t: seen.append((d, t)))
    assert seen == [(4, 10), (8, 10), (10, 10)]
    with pytest.raises(CancelledError, match="4 of 10"):
        PixelEncoder(size=4).encode(_images(10, 16), batch_size=4, callback=lambda d, t: False)


def test_random_cnn_is_seeded_and_does_not_touch_global_rng():
    x = _images(5, 64)
    torch.manual_seed(42)
    before = torch.rand(1)
    torch.manual_seed(42)
    a = RandomCNNEncoder(seed=3, dim=32)
    after = torch.rand(1)
    assert before == after
    b = RandomCNNEncoder(seed=3, dim=32)
    c = RandomCNNEncoder(seed=4, dim=32)
    np.testing.assert_array_equal(a.encode(x), b.encode(x))
    assert a.id == b.id != c.id
    assert not np.allclose(a.encode(x), c.encode(x))


def test_registry_names_and_errors(monkeypatch):
    assert isinstance(get_encoder("pixels"), PixelEncoder)
    assert get_encoder("pixels").dim == 256
    enc = RandomCNNEncoder(dim=8)
    assert get_encoder(enc) is enc
    with pytest.raises(FeatureError, match="unknown encoder"):
        get_encoder("nope")
    with pytest.raises(FeatureError, match="open_clip model"):
        get_encoder("open_clip:")
    # default: the domain CLIP when its shipped checkpoint exists, else pixels
    monkeypatch.setattr(registry, "DOMAIN_CLIP_ASSET", registry.DOMAIN_CLIP_ASSET.with_name("absent.safetensors"))
    assert registry.default_encoder_name() == "pixels"
    assert isinstance(get_encoder(None), PixelEncoder)
    with pytest.raises(FeatureError, match="checkpoint"):
        get_encoder("phantomcxr-clip")
    import sys

    monkeypatch.setitem(sys.modules, "medsynth_explore.features.domain_clip", None)
    with pytest.raises(FeatureError, match="domain_clip"):
        get_encoder("phantomcxr-clip")


# ------------------------------------------------------------------ Inception
@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    from medsynth_explore.features.inception import build_fid_inception

    torch.manual_seed(0)
    net = build_fid_inception()
    path = tmp_path_factory.mktemp("inc") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.mark.slow
def test_inception_loads_local_weights_and_matches_pytorch_fid(inception_file, monkeypatch):
    from pytorch_fid import inception as pf

    from medsynth_explore.features.inception import InceptionEncoder

    enc = InceptionEncoder(weights=inception_file)
    assert enc.dim == 2048 and enc.input_size == (299, 299) and "inception" in enc.id
    x = np.random.default_rng(0).random((2, 1, 299, 299)).astype(np.float32)
    ours = enc.encode(x)
    # pytorch-fid's own network with the same weights (its download replaced by the local state dict)
    state = torch.load(inception_file, weights_only=True)
    monkeypatch.setattr(pf, "load_state_dict_from_url", lambda *a, **k: state)
    ref_net = pf.InceptionV3([3], resize_input=False, normalize_input=True).eval()
    with torch.no_grad():
        ref = ref_net(torch.from_numpy(x).repeat(1, 3, 1, 1))[0].flatten(1).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)
    # found through the environment variable and the torch hub cache too
    monkeypatch.setenv("MEDSYNTH_INCEPTION_WEIGHTS", str(inception_file))
    assert get_encoder("inception").id == enc.id
    monkeypatch.delenv("MEDSYNTH_INCEPTION_WEIGHTS")
    home = inception_file.parent / "torchhome"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    os.link(inception_file, home / "hub" / "checkpoints" / inception_file.name)
    monkeypatch.setenv("TORCH_HOME", str(home))
    assert InceptionEncoder().weights_path.startswith(str(home))


def test_inception_offline_error_names_file_and_place(tmp_path, monkeypatch):
    from medsynth_explore.features.inception import InceptionEncoder

    monkeypatch.delenv("MEDSYNTH_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(OfflineError, match=r"pt_inception-2015-12-05-6726825d\.pth.*MEDSYNTH_INCEPTION_WEIGHTS"):
        InceptionEncoder()
    bad = tmp_path / "junk.pth"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(FeatureError, match="state dict"):
        InceptionEncoder(weights=bad)


# ------------------------------------------------------------------ open_clip
@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    import open_clip
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("oc")
    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    }
    (d / "medsynth-test-tiny.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(d / "medsynth-test-tiny.json")
    torch.manual_seed(0)
    model = open_clip.create_model("medsynth-test-tiny")
    path = d / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model.eval(), path


def test_open_clip_encoder_from_local_checkpoint(tiny_clip):
    model, path = tiny_clip
    enc = get_encoder(f"open_clip:medsynth-test-tiny:{path}")
    assert enc.dim == 16 and enc.input_size == (32, 32)
    x = _images(3, 48)
    feats = enc.encode(x)
    prepared = enc.prepare(x)
    with torch.no_grad():
        ref = model.encode_image(prepared, normalize=True).numpy()
    np.testing.assert_allclose(feats, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)
    assert "medsynth-test-tiny" in enc.id


def test_open_clip_offline_and_bad_input_errors(tiny_clip, tmp_path):
    from medsynth_explore.features.openclip import OpenCLIPEncoder

    with pytest.raises(FeatureError, match="unknown open_clip model"):
        OpenCLIPEncoder("no-such-model", pretrained="x")
    with pytest.raises(FeatureError, match="pretrained="):
        OpenCLIPEncoder("medsynth-test-tiny")
    with pytest.raises(OfflineError, match="does not exist"):
        OpenCLIPEncoder("medsynth-test-tiny", pretrained=str(tmp_path / "missing.safetensors"))
    with pytest.raises(OfflineError, match="not on this machine"):
        OpenCLIPEncoder("hf-hub:medsynth-test/not-cached-model", cache_dir=str(tmp_path))


# ------------------------------------------------------------------ DINOv2
def test_dinov2_offline_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(OfflineError, match=r"dinov2_vits14_pretrain\.pth"):
        get_encoder("dinov2")
    with pytest.raises(FeatureError, match="variant"):
        get_encoder("dinov2:vitx99")


# ------------------------------------------------------------------ cache
class _Counting(PixelEncoder):
    def __init__(self):
        super().__init__(size=4)
        self.n_encoded = 0

    def encode(self, images, batch_size=None, callback=None):
        self.n_encoded += len(images)
        return super().encode(images, batch_size, callback)


def test_feature_cache_reuses_and_extends(tmp_path):
    x = _images(6, 16)
    enc = _Counting()
    a = encode_cached(enc, x[:4], cache=FeatureCache(tmp_path))
    assert enc.n_encoded == 4
    # a fresh cache object (a reopened notebook) reads the same files
    b = encode_cached(enc, x, cache=FeatureCache(tmp_path))
    assert enc.n_encoded == 6
    np.testing.assert_array_equal(b[:4], a)
    np.testing.assert_array_equal(b, PixelEncoder(size=4).encode(x))
    c = encode_cached(enc, x[::-1], cache=tmp_path)
    assert enc.n_encoded == 6
    np.testing.assert_array_equal(c, b[::-1])
    files = list(tmp_path.rglob("*"))
    assert not [p for p in files if p.name.startswith(".tmp-")]
    assert len([p for p in files if p.suffix == ".npz"]) == 2
    # another encoder id does not see these features
    other = PixelEncoder(size=2)
    assert FeatureCache(tmp_path).get(other.id, np.array(["x"]))[1].tolist() == [False]


def test_feature_cache_dir_from_env_and_damaged_shard(tmp_path, monkeypatch):
    from medsynth_explore.features.cache import default_cache_dir

    monkeypatch.setenv("MEDSYNTH_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "features"
    x = _images(2, 16)
    encode_cached(PixelEncoder(size=4), x)
    shard = next((tmp_path / "features").rglob("shard-*.npz"))
    shard.write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        again = encode_cached(PixelEncoder(size=4), x)
    np.testing.assert_array_equal(again, PixelEncoder(size=4).encode(x))
