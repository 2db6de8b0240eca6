"""Encoders in their published formats: RAD-DINO (transformers), BiomedCLIP (open_clip hub folder), TorchXRayVision
DenseNet (a pickled module), torchvision / timm state dicts. Each is written tiny, with random weights, in exactly the
published layout; each loads, encodes, gives identical features twice, refuses damaged files with a MedsynthError, and
is checked against the library that publishes it (transformers' processor and model, open_clip's own loading,
torchxrayvision's pipeline, torchvision)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from medsynth_explore.errors import CapabilityError, FeatureError, MedsynthError, OfflineError
from medsynth_explore.features import get_encoder, list_encoders
from medsynth_explore.features.registry import ENCODER_FORMATS, detect_format
from medsynth_explore.features.tiny import write_biomedclip, write_rad_dino, write_resnet_state_dict, write_xrv_densenet


def _smooth(n=2, h=100, w=130, seed=0):
    """Smooth test images (resizing filters agree on these; noise would exaggerate their differences), on 8-bit levels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(6, 14, 3)
        img = 0.5 + 0.4 * np.sin(yy / a + c) * np.cos(xx / b)
        out.append(np.round(img * 255) / 255)
    return np.stack(out)[:, None].astype(np.float32)


def _cos(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_every_format_is_in_the_table_and_the_names_are_registered():
    assert [f.name for f in ENCODER_FORMATS] == [
        "open_clip-hub",
        "transformers-image",
        "state-dict",
        "torchxrayvision",
        "domain-clip",
    ]
    names = list_encoders()
    assert {"rad-dino", "biomedclip", "xrv-densenet121[:<weights>]"} <= set(names)


# ------------------------------------------------------------------ RAD-DINO: a transformers Dinov2 folder
@pytest.fixture(scope="module")
def rad_dino(tmp_path_factory):
    pytest.importorskip("transformers")
    return write_rad_dino(tmp_path_factory.mktemp("models") / "rad-dino", image_size=56)


def test_rad_dino_layout_and_the_folders_own_preprocessing(rad_dino):
    from transformers import AutoImageProcessor, AutoModel

    assert {p.name for p in rad_dino.iterdir()} == {"config.json", "model.safetensors", "preprocessor_config.json"}
    assert detect_format(rad_dino).name == "transformers-image"
    enc = get_encoder(str(rad_dino))
    assert enc.dim == 32 and enc.input_size == (56, 56) and enc.mean == (0.5307,) * 3
    x = _smooth()
    u8 = np.round(x[:, 0] * 255).astype(np.uint8)
    proc = AutoImageProcessor.from_pretrained(str(rad_dino))
    ref_pixels = proc(images=[np.stack([im] * 3, -1) for im in u8], return_tensors="pt")["pixel_values"]
    ours = enc.prepare(x)
    assert ours.shape == ref_pixels.shape
    assert float((ours - ref_pixels).abs().mean()) < 0.01 and float((ours - ref_pixels).abs().max()) < 0.05
    model = AutoModel.from_pretrained(str(rad_dino)).eval()
    with torch.no_grad():
        out = model(pixel_values=ours)  # the same input: the pooling is exactly the model's
        via_processor = model(pixel_values=ref_pixels).pooler_output.numpy()
    feats = enc.encode(x)
    np.testing.assert_allclose(feats, out.pooler_output.numpy(), atol=1e-5)  # the CLS embedding
    mean = get_encoder(rad_dino, pool="mean").encode(x)
    np.testing.assert_allclose(mean, out.last_hidden_state[:, 1:].mean(1).numpy(), atol=1e-5)
    assert not np.allclose(feats, mean)
    assert (_cos(feats, via_processor) > 0.999).all()  # the processor quantises to 8 bits after resizing


def test_rad_dino_same_features_twice_and_by_name(rad_dino, monkeypatch):
    x = _smooth(3)
    a = get_encoder(rad_dino).encode(x)
    np.testing.assert_array_equal(a, get_encoder(rad_dino).encode(x, batch_size=1))
    monkeypatch.setenv("MEDSYNTH_MODELS", str(rad_dino.parent))
    enc = get_encoder("rad-dino")
    np.testing.assert_array_equal(enc.encode(x), a)
    bf = get_encoder("rad-dino", dtype="bfloat16")
    assert bf.id != enc.id and bf.id.endswith("bfloat16") and bf.encode(x).dtype == np.float32
    assert (_cos(bf.encode(x), a) > 0.99).all()


def test_rad_dino_missing_and_damaged_files(rad_dino, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("MEDSYNTH_MODELS", str(tmp_path))
    fetch = r"huggingface-cli download microsoft/rad-dino config.json model.safetensors preprocessor_config.json --local-dir"
    with pytest.raises(OfflineError, match=fetch):
        get_encoder("rad-dino")
    bad = tmp_path / "rad-dino"
    shutil.copytree(rad_dino, bad)
    (bad / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(FeatureError, match="cannot load"):
        get_encoder(bad)
    (bad / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(FeatureError, match="preprocessor_config.json"):
        get_encoder(bad)
    (bad / "model.safetensors").unlink()
    with pytest.raises(OfflineError, match="lacks model.safetensors"):
        from medsynth_explore.features.hf_image import TransformersImageEncoder

        TransformersImageEncoder(bad)


# ------------------------------------------------------------------ BiomedCLIP: an open_clip hub folder with a BERT text tower
@pytest.fixture(scope="module")
def biomedclip(tmp_path_factory):
    pytest.importorskip("transformers")
    return write_biomedclip(tmp_path_factory.mktemp("models") / "biomedclip")


def test_biomedclip_loads_only_with_allow_pickle(biomedclip):
    assert {"open_clip_config.json", "open_clip_pytorch_model.bin"} <= {p.name for p in biomedclip.iterdir()}
    assert detect_format(biomedclip).name == "open_clip-hub"
    with pytest.raises(FeatureError, match="allow_pickle=True"):
        get_encoder(biomedclip)
    enc = get_encoder(biomedclip, allow_pickle=True)
    assert enc.dim == 16 and enc.input_size == (224, 224)


def test_biomedclip_matches_open_clips_own_loading(biomedclip):
    import json

    import open_clip
    from PIL import Image

    enc = get_encoder(biomedclip, allow_pickle=True)
    x = _smooth(2, 240, 260)
    texts = ["left pleural effusion", "normal chest x-ray"]
    cfg = json.loads((biomedclip / "open_clip_config.json").read_text())["model_cfg"]["text_cfg"]
    cfg.update(hf_model_name=str(biomedclip / "text"), hf_model_pretrained=False)
    cfg.pop("hf_tokenizer_name")
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{biomedclip}", text_cfg=cfg)
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{biomedclip}")
    pil = [Image.fromarray(np.round(im[0] * 255).astype(np.uint8)).convert("RGB") for im in x]
    with torch.no_grad():
        ref_img = model.encode_image(torch.stack([preprocess(p) for p in pil]), normalize=True).numpy()
        ref_txt = model.encode_text(tokenizer(texts), normalize=True).numpy()
    img = enc.encode(x)
    assert (_cos(img, ref_img) > 0.999).all()
    np.testing.assert_allclose(enc.encode_text(texts), ref_txt, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)


def test_biomedclip_gives_clipscore_and_refuses_long_text(biomedclip):
    from medsynth_explore.metrics import clip_score

    enc = get_encoder(biomedclip, allow_pickle=True)
    x = _smooth(2)
    s = clip_score(enc.encode(x), enc.encode_text(["left pleural effusion", "normal"]))
    assert s.shape == (2,) and np.isfinite(s).all() and (0 <= s).all() and (s <= 100).all()
    np.testing.assert_array_equal(enc.encode(x), get_encoder(biomedclip, allow_pickle=True).encode(x))
    long = " ".join(["effusion"] * 40)
    with pytest.raises(FeatureError, match="tokens"):
        enc.encode_text([long])
    assert enc.encode_text([long], truncate=True).shape == (1, 16)


def test_biomedclip_missing_text_tower_and_damaged_weights(biomedclip, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty Hugging Face cache
    bad = tmp_path / "biomedclip"
    shutil.copytree(biomedclip, bad)
    shutil.rmtree(bad / "text")
    with pytest.raises(
        OfflineError, match=r"huggingface-cli download microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract config.json vocab.txt"
    ):
        get_encoder(bad, allow_pickle=True, text_repo_id="microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract")
    monkeypatch.setenv("MEDSYNTH_MODELS", str(tmp_path / "empty"))
    with pytest.raises(OfflineError, match="biomedclip is not on this machine"):
        get_encoder("biomedclip", allow_pickle=True)
    good = tmp_path / "good"
    shutil.copytree(biomedclip, good)
    (good / "open_clip_pytorch_model.bin").write_bytes(os.urandom(200))
    with pytest.raises(FeatureError, match="plain state dict"):
        get_encoder(good, allow_pickle=True)


# ------------------------------------------------------------------ TorchXRayVision DenseNet: a pickled whole module
@pytest.fixture(scope="module")
def xrv_real(tmp_path_factory):
    """A file written by torchxrayvision itself (its DenseNet class, torch.save of the whole module)."""
    xrv = pytest.importorskip("torchxrayvision")
    torch.manual_seed(0)
    m = xrv.models.DenseNet(num_classes=18, in_channels=1, growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("xrv") / "tiny-densenet121-res224-all.pt"
    torch.save(m.eval(), path)
    return path, m.eval()


def test_xrv_refuses_without_allow_pickle_and_says_so(xrv_real):
    path, _ = xrv_real
    assert detect_format(path).name == "torchxrayvision"
    with pytest.raises(FeatureError, match="pickled PyTorch module.*allow_pickle=True"):
        get_encoder(path)


def test_xrv_features_and_outputs_match_torchxrayvision(xrv_real):
    import torchxrayvision as xrv

    path, model = xrv_real
    enc = get_encoder(path, allow_pickle=True)
    assert enc.dim == model.classifier.in_features and enc.channels == 1
    # at the native 224 px no resize happens: the prepared input is xrv.datasets.normalize's, exactly
    x = _smooth(2, 224, 224)
    ref_in = torch.from_numpy(np.stack([xrv.datasets.normalize(im[0] * 255, 255)[None] for im in x]))
    np.testing.assert_allclose(enc.prepare(x).numpy(), ref_in.numpy(), atol=1e-3)
    with torch.no_grad():
        ref_feats = model.features2(ref_in).numpy()
        ref_probs = xrv.models.op_norm(
            torch.sigmoid(model.classifier(torch.from_numpy(ref_feats))),
            torch.tensor(xrv.models.model_urls["all"]["op_threshs"], dtype=torch.float32),
        ).numpy()
    np.testing.assert_allclose(enc.encode(x), ref_feats, rtol=1e-4, atol=1e-4)
    probs = enc.predict(x)
    assert list(probs.columns[:3]) == ["p_atelectasis", "p_consolidation", "p_infiltration"]
    assert "p_pleural_effusion" in probs and "p_lung_lesion" in probs and probs.shape == (2, 18)
    np.testing.assert_allclose(probs.to_numpy(), ref_probs, atol=1e-5)
    # a non-square, larger image: TorchXRayVision's centre crop and resize (skimage) vs ours (torch, antialiased)
    y = _smooth(2, 300, 260, seed=1)
    ref = []
    for im in y:
        a = xrv.datasets.normalize(im[0] * 255, 255)[None]
        ref.append(xrv.datasets.XRayResizer(224)(xrv.datasets.XRayCenterCrop()(a)))
    with torch.no_grad():
        ref_y = model.features2(torch.from_numpy(np.stack(ref))).numpy()
    assert (_cos(enc.encode(y), ref_y) > 0.999).all()


def test_xrv_needs_no_torchxrayvision_and_reads_legacy_files(tmp_path):
    zipped = write_xrv_densenet(tmp_path / "zip.pt")
    legacy = write_xrv_densenet(tmp_path / "legacy.pt", legacy=True)
    x = _smooth(2, 224, 224)
    a = get_encoder(zipped, allow_pickle=True).encode(x)
    np.testing.assert_array_equal(a, get_encoder(legacy, allow_pickle=True).encode(x))
    np.testing.assert_array_equal(a, get_encoder(zipped, allow_pickle=True).encode(x))
    code = (
        "import sys; sys.modules['torchxrayvision'] = None\n"  # importing it would fail
        "import numpy as np\n"
        "from medsynth_explore.features import get_encoder\n"
        f"e = get_encoder({str(zipped)!r}, allow_pickle=True)\n"
        "print(e.encode(np.full((1, 1, 224, 224), 0.5, np.float32)).shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(1, 32)" in out.stdout


def test_xrv_malicious_and_damaged_files_are_refused(tmp_path):
    marker = tmp_path / "ran.txt"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    from medsynth_explore.features.xrv import XRVDenseNetEncoder

    evil = tmp_path / "evil.pt"
    torch.save({"features.conv0.weight": torch.zeros(1), "x": Evil()}, evil)
    with pytest.raises(FeatureError, match="system"):
        XRVDenseNetEncoder(evil, allow_pickle=True)
    torch.save({"x": Evil()}, tmp_path / "evil_legacy.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(FeatureError, match="system"):
        XRVDenseNetEncoder(tmp_path / "evil_legacy.pt", allow_pickle=True)
    assert not marker.exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(500))
    with pytest.raises(MedsynthError):
        XRVDenseNetEncoder(junk, allow_pickle=True)
    torch.save({"w": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(FeatureError, match="DenseNet"):
        XRVDenseNetEncoder(tmp_path / "plain.pt", allow_pickle=True)


def test_xrv_by_name_looks_in_the_models_folder(tmp_path, monkeypatch):
    from medsynth_explore.features.xrv import XRV_WEIGHTS

    monkeypatch.setenv("MEDSYNTH_MODELS", str(tmp_path))
    with pytest.raises(OfflineError, match=r"curl -L -o .*releases/download/v1/nih-pc-chex"):
        get_encoder("xrv-densenet121", allow_pickle=True)
    write_xrv_densenet(tmp_path / "xrv-densenet121" / XRV_WEIGHTS["chex"][0])
    enc = get_encoder("xrv-densenet121:chex", allow_pickle=True)
    assert enc.weights == "chex" and enc.op_threshs is None
    assert list(enc.predict(_smooth(1, 224, 224)).columns) == [
        "p_atelectasis",
        "p_consolidation",
        "p_pneumothorax",
        "p_edema",
        "p_pleural_effusion",
        "p_pneumonia",
        "p_cardiomegaly",
        "p_lung_lesion",
        "p_fracture",
        "p_lung_opacity",
        "p_enlarged_cardiomediastinum",
    ]


# ------------------------------------------------------------------ torchvision / timm state dicts with arch=
def test_state_dict_with_arch_matches_torchvision(tmp_path):
    import torch.nn.functional as F
    import torchvision

    path = write_resnet_state_dict(tmp_path / "ResNet18.pt", arch="resnet18", prefix="module.")
    with pytest.raises(FeatureError, match="allow_pickle=True"):
        get_encoder(path, arch="resnet18")
    with pytest.raises(FeatureError, match="arch="):
        get_encoder(path, allow_pickle=True)
    enc = get_encoder(path, arch="resnet18", allow_pickle=True)
    x = _smooth(2)
    net = torchvision.models.resnet18(weights=None)
    state = torch.load(path, weights_only=True)
    net.load_state_dict({k[7:]: v for k, v in state.items()})
    net.fc = torch.nn.Identity()
    t = F.interpolate(torch.from_numpy(x).expand(-1, 3, -1, -1), size=(224, 224), mode="bilinear", antialias=True)
    t = (t - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = net.eval()(t).numpy()
    np.testing.assert_allclose(enc.encode(x), ref, rtol=1e-4, atol=1e-5)
    assert enc.dim == 512
    st = write_resnet_state_dict(tmp_path / "r.safetensors", arch="resnet18", head=False)
    np.testing.assert_allclose(get_encoder(st, arch="resnet18").encode(x), ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(FeatureError, match="does not fit resnet50"):
        get_encoder(st, arch="resnet50")
    with pytest.raises(FeatureError, match="unknown architecture"):
        get_encoder(st, arch="resnet9000")


def test_timm_state_dict(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = timm.create_model("resnet10t", pretrained=False)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "t.safetensors"))
    enc = get_encoder(tmp_path / "t.safetensors", arch="timm:resnet10t", size=64)
    assert enc.dim == net.num_features and enc.encode(_smooth(2)).shape == (2, enc.dim)


# ------------------------------------------------------------------ paths and devices
def test_paths_in_no_layout_and_devices(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FeatureError, match="none of the encoder layouts"):
        get_encoder(tmp_path / "empty")
    with pytest.raises(OfflineError, match="does not exist"):
        get_encoder(str(tmp_path / "nowhere" / "model.safetensors"))
    if not torch.cuda.is_available():
        path = write_resnet_state_dict(tmp_path / "r.safetensors", arch="resnet18")
        with pytest.raises(CapabilityError, match="CUDA is not available"):
            get_encoder(path, arch="resnet18", device="cuda")


@pytest.mark.parametrize("which", ["rad_dino", "biomedclip", "xrv_real"])
def test_streamed_sets_give_the_same_features_with_the_resize_in_the_decoding_threads(which, request, tmp_path):
    """Each format's geometry (shorter-side resize and crop, XRayCenterCrop) run image by image in the decoding
    threads gives exactly the features of the whole batch prepared in the encoder's thread."""
    import pandas as pd

    from medsynth_explore import load_dataset
    from medsynth_explore.data import ImageSet, write_folder

    fixture = request.getfixturevalue(which)
    enc = get_encoder(fixture[0] if which == "xrv_real" else fixture, allow_pickle=True)
    grey = _smooth(5, 70, 90, seed=3)
    colour = np.concatenate([grey, grey[:, :, ::-1] * 0.9, grey * 0.5], axis=1)
    for x in (grey, colour):  # resample is idempotent and prepare(resample(x)) == prepare(x)
        r = enc.resample(enc.as_tensor(x))
        assert r.shape[1] in (1, enc.channels) and tuple(r.shape[-2:]) == tuple(enc.input_size)
        np.testing.assert_array_equal(enc.resample(r).numpy(), r.numpy())
        np.testing.assert_array_equal(enc.prepare(r).numpy(), enc.prepare(x).numpy())
    folder = write_folder(ImageSet(grey, pd.DataFrame({"i": range(5)})), tmp_path / "ds")
    lazy = load_dataset(folder, lazy=True)
    assert enc.decode_transform() is not None and lazy.file_backed
    np.testing.assert_array_equal(enc.encode(lazy, batch_size=2), enc.encode(lazy.to_memory().images, batch_size=2))
    if which == "xrv_real":  # its classifier head streams the same way
        pd.testing.assert_frame_equal(enc.predict(lazy, batch_size=2), enc.predict(lazy.to_memory().images))
