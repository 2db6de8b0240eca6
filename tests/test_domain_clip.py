"""Tests of the domain CLIP: shapes, determinism, tokenizer limits, save/load, training."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from medsynth_explore.data import ImageSet  # noqa: E402
from medsynth_explore.errors import CancelledError, CheckpointError, ConditionError, DataError  # noqa: E402
from medsynth_explore.features import domain_clip as dc  # noqa: E402

TEXTS = ["Left pleural effusion with a meniscus.", "No acute findings.", "Moderate cardiomegaly."]


@pytest.fixture(scope="module")
def clip():
    return dc.DomainCLIP.from_config(dc.tiny_config(), TEXTS, seed=0)


def _toy_set(n=24, seed=0):
    """Images whose bright lower half goes with the effusion report."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    imgs = rng.random((n, 1, 32, 32)).astype(np.float32) * 0.3
    imgs[y == 1, :, 16:, :] += 0.6
    meta = pd.DataFrame({"effusion": y, "report": np.where(y == 1, TEXTS[0], TEXTS[1])})
    return ImageSet(imgs, meta, {"source": "toy"})


def test_encode_shapes_and_unit_norm(clip):
    zi = clip.encode_image(np.random.default_rng(0).random((5, 1, 64, 64)).astype(np.float32))
    zt = clip.encode_text(TEXTS)
    assert zi.shape == (5, 16) and zt.shape == (3, 16)
    assert zi.dtype == np.float32 and zt.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(zi, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(zt, axis=1), 1, atol=1e-5)
    assert clip.similarity(np.zeros((2, 1, 32, 32), np.float32), TEXTS).shape == (2, 3)


def test_encode_is_deterministic_and_seeded():
    a = dc.DomainCLIP.from_config(dc.tiny_config(), TEXTS, seed=3)
    b = dc.DomainCLIP.from_config(dc.tiny_config(), TEXTS, seed=3)
    c = dc.DomainCLIP.from_config(dc.tiny_config(), TEXTS, seed=4)
    x = np.random.default_rng(1).random((3, 1, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(a.encode_image(x), b.encode_image(x))
    np.testing.assert_array_equal(a.encode_text(TEXTS), a.encode_text(TEXTS))
    assert not np.allclose(a.encode_image(x), c.encode_image(x))


def test_text_depends_on_words_and_unknown_words_share_one_id(clip):
    z = clip.encode_text(TEXTS)
    assert not np.allclose(z[0], z[1])
    ids = clip.tokenizer(["zebra giraffe"])
    assert (ids[0, 1:3] == dc.UNK_ID).all()
    assert ids[0, 0] == dc.SOT_ID and ids[0, 3] == dc.EOT_ID


def test_tokenizer_refuses_too_long_prompt_and_clamps_on_request(clip):
    long = "left pleural effusion " * 40
    with pytest.raises(ConditionError, match="at most 32"):
        clip.encode_text([long])
    with pytest.warns(UserWarning, match="clamped"):
        ids = clip.tokenizer([long], truncate=True)
    assert ids.shape == (1, 32) and int(ids[0, -1]) == dc.EOT_ID


def test_encoder_subclass(clip):
    enc = dc.DomainCLIPEncoder(clip=clip)
    x = np.random.default_rng(2).random((4, 1, 64, 64)).astype(np.float32)
    f = enc.encode(x, batch_size=3)
    assert f.shape == (4, enc.dim) and enc.input_size == (32, 32)
    # the base-class preparation equals the model's own preprocessing
    np.testing.assert_allclose(f, clip.encode_image(x), atol=1e-5)
    assert enc.id.startswith("domain-clip-32px-")
    with pytest.raises(CancelledError):
        enc.encode(x, batch_size=2, callback=lambda d, t: False)


def test_save_load_round_trip(tmp_path, clip):
    path = tmp_path / "clip.safetensors"
    card = {"name": "tiny-clip", "family": "clip", "architecture": {}}
    clip.save(path, card)
    loaded = dc.load_domain_clip(path)
    assert loaded.card["family"] == "clip" and loaded.tokenizer.vocab_size == clip.tokenizer.vocab_size
    x = np.random.default_rng(3).random((2, 1, 32, 32)).astype(np.float32)
    # weights are stored in fp16
    np.testing.assert_allclose(loaded.encode_image(x), clip.encode_image(x), atol=2e-2)
    np.testing.assert_allclose(loaded.encode_text(TEXTS), clip.encode_text(TEXTS), atol=2e-2)
    enc = dc.DomainCLIPEncoder(path=path)
    assert enc.encode(x).shape == (2, 16)


def test_load_missing_or_wrong_family(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        dc.load_domain_clip(tmp_path / "nope.safetensors")
    from medsynth_explore.checkpoint import save_checkpoint

    p = tmp_path / "vae.safetensors"
    save_checkpoint(p, {"w": torch.zeros(2)}, {"name": "v", "family": "vae", "architecture": {}})
    with pytest.raises(CheckpointError, match="not a domain CLIP"):
        dc.load_domain_clip(p)


def test_train_clip_learns_toy_pairs_and_writes_card(tmp_path):
    torch.set_num_threads(1)
    data = _toy_set(48)
    out = tmp_path / "c.safetensors"
    seen, lines = [], []
    _, card = dc.train_clip(
        data,
        out,
        epochs=8,
        seed=0,
        config=dc.tiny_config(),
        batch_size=16,
        lr=3e-3,
        val_fraction=0.25,
        callback=lambda d, t: seen.append((d, t)),
        log=lines.append,
    )
    assert [int(line.split("/")[0].split()[1]) for line in lines] == list(range(1, 9))
    assert seen[0] == (0, 16) and seen[-1] == (16, 16)  # 36 training images: 2 steps of 16 per epoch
    assert card["family"] == "clip" and card["training"]["time_seconds"] > 0
    m = card["metrics"]["heldout"]
    assert m["n_images"] == 12 and 0 <= m["retrieval_top1"] <= 1
    # the bright-lower-half images match the effusion report
    assert m["zeroshot_auroc"]["effusion"] > 0.5 or m["retrieval_top1"] > 0.5
    clip = dc.load_domain_clip(out)
    test = _toy_set(20, seed=9)
    sim = clip.similarity(test.images, [TEXTS[0], TEXTS[1]])
    pred = (sim[:, 0] > sim[:, 1]).astype(int)
    assert (pred == test.metadata["effusion"].to_numpy()).mean() >= 0.8


def test_train_clip_is_seeded():
    data = _toy_set(16)
    clip_a, a = dc.train_clip(data, None, epochs=1, seed=5, config=dc.tiny_config(), batch_size=8, val_fraction=0)
    za = clip_a.encode_text(TEXTS)
    clip_b, b = dc.train_clip(data, None, epochs=1, seed=5, config=dc.tiny_config(), batch_size=8, val_fraction=0)
    zb = clip_b.encode_text(TEXTS)
    np.testing.assert_array_equal(za, zb)
    assert a["training"]["loss_history"] == b["training"]["loss_history"]


def test_train_clip_bad_input_and_cancel():
    with pytest.raises(DataError, match="report"):
        dc.train_clip(ImageSet(np.zeros((8, 1, 8, 8), np.float32)), None, epochs=1, config=dc.tiny_config())
    with pytest.raises(CancelledError):
        dc.train_clip(
            _toy_set(16),
            None,
            epochs=3,
            config=dc.tiny_config(),
            batch_size=8,
            val_fraction=0,
            callback=lambda done, total: False,
        )


@pytest.mark.skipif(not dc.DEFAULT_CLIP_PATH.is_file(), reason="shipped domain CLIP not present")
def test_shipped_clip_loads_and_encodes():
    clip = dc.load_domain_clip()
    assert clip.card["family"] == "clip"
    z = clip.encode_text(["Left pleural effusion.", "No pleural effusion."])
    assert z.shape == (2, clip.dim)
    zi = clip.encode_image(np.full((2, 1, 64, 64), 0.5, np.float32))
    assert zi.shape == (2, clip.dim) and np.isfinite(zi).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from medsynth_explore.features import get_encoder

        assert get_encoder("phantomcxr-clip").dim == clip.dim
