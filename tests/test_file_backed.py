"""File-backed image sets: the same API as in memory, pixels read in batches, safe decoding, size policies."""

from __future__ import annotations

import os
import struct
import warnings
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medsynth_explore import DataError, load_dataset
from medsynth_explore.data import ImageSet, write_folder
from medsynth_explore.data.sources import FileSource
from medsynth_explore.features import PixelEncoder, RandomCNNEncoder
from medsynth_explore.features.cache import FeatureCache, encode_cached


def _set(n=12, size=16, seed=0):
    rng = np.random.default_rng(seed)
    images = (np.rint(rng.random((n, 1, size, size)) * 65535) / 65535).astype(np.float32)
    meta = pd.DataFrame(
        {"patient_id": [f"P{i // 2}" for i in range(n)], "sex": ["F", "M"] * (n // 2), "age": rng.integers(20, 90, n)}
    )
    return ImageSet(images, meta, {"source": "test"})


@pytest.fixture
def folder(tmp_path):
    s = _set()
    return s, write_folder(s, tmp_path / "ds")


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSYNTH_CACHE_DIR", str(tmp_path / "cache"))


# --------------------------------------------------------------------------- the same API
def test_file_backed_set_reads_what_the_in_memory_one_holds(folder):
    s, path = folder
    lazy = load_dataset(path, lazy=True)
    eager = load_dataset(path, lazy=False)
    assert lazy.file_backed and not eager.file_backed and not s.file_backed
    assert len(lazy) == 12 and lazy.shape == (12, 1, 16, 16) and lazy.nbytes == 12 * 16 * 16 * 4
    np.testing.assert_array_equal(np.concatenate(list(lazy.batches(5))), s.images)
    assert [len(b) for b in lazy.batches(5, workers=3)] == [5, 5, 2]
    np.testing.assert_array_equal(lazy.read([7, 2]), s.images[[7, 2]])
    np.testing.assert_array_equal(eager.images, s.images)
    pd.testing.assert_frame_equal(lazy.metadata, eager.metadata)
    assert "file-backed" in repr(lazy)


def test_subset_query_split_concat_stay_file_backed(folder):
    s, path = folder
    lazy = load_dataset(path, lazy=True)
    f = lazy.query("sex == 'F'")
    assert f.file_backed and len(f) == 6
    np.testing.assert_array_equal(np.concatenate(list(f.batches(4))), s.images[::2])
    assert f.provenance["parent_hash"] == lazy.content_hash
    parts = lazy.split((0.5, 0.5), seed=1)
    assert all(p.file_backed for p in parts.values())
    assert not set(parts["train"].metadata.patient_id) & set(parts["val"].metadata.patient_id)
    both = ImageSet.concat([lazy[:3], s[5:7], lazy[10:]])
    assert both.file_backed and len(both) == 7
    np.testing.assert_array_equal(np.concatenate(list(both.batches(3))), s.images[[0, 1, 2, 5, 6, 10, 11]])
    np.testing.assert_array_equal(both.read([6, 3, 0]), s.images[[11, 5, 0]])
    np.testing.assert_array_equal(both[[4, 1]].read([0, 1]), s.images[[6, 1]])
    with pytest.raises(DataError, match="different shapes"):
        ImageSet.concat([lazy, _set(size=8)])
    assert lazy.copy().file_backed


def test_images_loads_within_the_memory_limit_and_refuses_above(folder, monkeypatch):
    s, path = folder
    lazy = load_dataset(path, lazy=True)
    np.testing.assert_array_equal(lazy.images, s.images)  # 12 KB: within the default limit, loaded and kept
    monkeypatch.setenv("MEDSYNTH_MEMORY_LIMIT", "4KB")
    big = load_dataset(path)  # lazy="auto": above the limit, so file-backed
    assert big.file_backed
    with pytest.raises(DataError, match=r"more than the in-memory limit.*batches"):
        big.images
    assert big[:2].images.shape == (2, 1, 16, 16)  # a subset that fits
    monkeypatch.setenv("MEDSYNTH_MEMORY_LIMIT", "lots")
    with pytest.raises(DataError, match="MEDSYNTH_MEMORY_LIMIT"):
        big.images


def test_batches_decode_at_most_prefetch_batches_ahead(folder):
    _, path = folder
    lazy = load_dataset(path, lazy=True)
    src = lazy.source
    decoded = []
    orig = src.decoder

    def counting(p):
        decoded.append(p)
        return orig(p)

    src.decoder = counting
    seen = 0
    for batch in src.batches(2, workers=2, prefetch=1):
        seen += len(batch)
        # the batch handed over, the one being decoded next: never the whole set
        assert len(decoded) <= seen + 2 * 2
    assert seen == 12 and len(decoded) == 12


def test_one_worker_still_decodes_the_next_batch_while_the_consumer_works(folder):
    import threading

    _, path = folder
    src = load_dataset(path, lazy=True).source
    expected = src.read(np.arange(len(src)), workers=1)
    orig, threads, second_batch_started = src.decoder, set(), threading.Event()
    second = set(src.paths[4:8])

    def watching(p):
        threads.add(threading.current_thread().name)
        if p in second:
            second_batch_started.set()
        return orig(p)

    src.decoder = watching
    got = []
    for i, batch in enumerate(src.batches(4, workers=1, prefetch=1)):
        if i == 0:  # the consumer holds batch 0 and has not asked for more: batch 1 is decoded meanwhile
            assert second_batch_started.wait(timeout=30)
        got.append(batch)
    assert np.array_equal(np.concatenate(got), expected)
    assert threads and all(t.startswith("medsynth-decode") for t in threads)
    # prefetch=0: each batch is decoded in the caller's thread when asked for
    threads.clear()
    assert sum(len(b) for b in src.batches(4, workers=1, prefetch=0)) == 12
    assert threads == {threading.current_thread().name}


def test_a_failing_file_raises_a_data_error_while_streaming(folder):
    _, path = folder
    lazy = load_dataset(path, lazy=True)
    (path / lazy.metadata.filename[5]).write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="unreadable or truncated"):
        for _ in lazy.batches(4, workers=2):
            pass


# --------------------------------------------------------------------------- encoders, cache, evaluate
def test_encoders_stream_a_file_backed_set_with_the_same_features(folder):
    s, path = folder
    lazy = load_dataset(path, lazy=True)
    for enc in (PixelEncoder(size=8), RandomCNNEncoder(seed=0)):
        np.testing.assert_array_equal(enc.encode(lazy, batch_size=5), enc.encode(s.images, batch_size=5))
    got = []
    PixelEncoder(size=8).encode(lazy, batch_size=5, callback=lambda d, t: got.append((d, t)))
    assert got == [(5, 12), (10, 12), (12, 12)]


def test_decoding_threads_resize_for_the_encoder_and_hand_over_small_batches(folder):
    s, path = folder
    lazy = load_dataset(path, lazy=True)
    enc = PixelEncoder(size=8)
    t = enc.decode_transform()
    assert t(np.zeros((3, 16, 16), np.float32)).shape == (1, 8, 8)  # colour averaged, resized: one image in, one out
    streamed = list(lazy.batches(5, workers=2, transform=t))
    assert [b.shape for b in streamed] == [(5, 1, 8, 8), (5, 1, 8, 8), (2, 1, 8, 8)]
    np.testing.assert_array_equal(np.concatenate(streamed), enc.resample(enc.as_tensor(s.images)).numpy())
    # the same contract in memory and for a concatenation, whole or read at chosen positions
    np.testing.assert_array_equal(np.concatenate(list(s.batches(5, transform=t))), np.concatenate(streamed))
    both = ImageSet.concat([lazy, lazy[:3]])
    assert both.file_backed
    np.testing.assert_array_equal(np.concatenate(list(both.batches(4, transform=t)))[12:], np.concatenate(streamed)[:3])
    picked = np.concatenate(list(both._source.batches(2, positions=[13, 0, 7], transform=t)))
    np.testing.assert_array_equal(picked, np.concatenate(streamed)[[1, 0, 7]])

    seen = []

    class Spy(PixelEncoder):
        def normalise(self, x):
            seen.append(tuple(x.shape))
            return super().normalise(x)

    spy = Spy(size=8)
    np.testing.assert_array_equal(spy.encode(lazy, batch_size=5), enc.encode(s.images, batch_size=5))
    assert seen == [(5, 1, 8, 8), (5, 1, 8, 8), (2, 1, 8, 8)]  # the encoder's thread got 8 x 8 images, not 16 x 16


def test_an_encoder_with_its_own_prepare_gets_the_decoded_images_as_they_are(folder):
    s, path = folder
    lazy = load_dataset(path, lazy=True)
    seen = []

    class OwnPrepare(PixelEncoder):  # geometry that resample() does not know: it must see the files' own size
        def prepare(self, batch):
            seen.append(tuple(batch.shape[-2:]))
            return super().prepare(np.asarray(batch)[..., 4:, 4:])

    enc = OwnPrepare(size=8)
    assert enc.decode_transform() is None
    np.testing.assert_array_equal(enc.encode(lazy, batch_size=6), enc.encode(s.images, batch_size=6))
    assert set(seen) == {(16, 16)}


def test_feature_cache_keys_files_by_identity_and_reads_no_pixel_the_second_time(folder, tmp_path, monkeypatch):
    s, path = folder
    cache = FeatureCache(tmp_path / "fc")
    enc = PixelEncoder(size=8)
    lazy = load_dataset(path, lazy=True)
    first = encode_cached(enc, lazy, cache=cache)
    np.testing.assert_array_equal(first, enc.encode(s.images))

    def no_decoding(self, position):
        raise AssertionError("a pixel was decoded although every feature was cached")

    monkeypatch.setattr(FileSource, "_decode_one", no_decoding)
    again = load_dataset(path, lazy=True)  # a new set over the same files: same keys
    assert again.image_hashes() == lazy.image_hashes()
    np.testing.assert_array_equal(encode_cached(enc, again, cache=cache), first)
    monkeypatch.undo()
    # other decoding settings or a changed file: other keys
    assert load_dataset(path, lazy=True, size=8).image_hashes()[0] != lazy.image_hashes()[0]
    f = path / lazy.metadata.filename[0]
    Image.fromarray(np.zeros((16, 16), np.uint16)).save(f)
    os.utime(f, ns=(1, 1))
    changed = load_dataset(path, lazy=True)
    assert changed.image_hashes()[0] != lazy.image_hashes()[0] and changed.image_hashes()[1:] == lazy.image_hashes()[1:]
    feats = encode_cached(enc, changed, cache=cache)  # only the changed file is encoded again
    np.testing.assert_array_equal(feats[1:], first[1:])
    np.testing.assert_array_equal(feats[0], enc.encode(np.zeros((1, 1, 16, 16), np.float32))[0])


def test_evaluate_takes_paths_and_file_backed_sets_on_either_side(tmp_path):
    from medsynth_explore.evaluate import evaluate

    real, syn = _set(40, seed=1), _set(40, seed=2)
    rp, sp = write_folder(real, tmp_path / "real"), write_folder(syn, tmp_path / "syn")
    direct = evaluate(real, syn, encoder="pixels", metrics=["fid", "coverage"], by="sex", n_boot=0, cache=False)
    lazy = evaluate(load_dataset(rp, lazy=True), sp, encoder="pixels", metrics=["fid", "coverage"], by="sex", n_boot=0)
    pd.testing.assert_frame_equal(lazy.table, direct.table)
    assert lazy.provenance["real"]["file_backed"] is True
    again = evaluate(load_dataset(rp, lazy=True), syn, encoder="pixels", metrics=["fid"], n_boot=0)  # from the cache
    assert again.value("fid") == direct.value("fid")


def test_cas_cnn_mode_reads_file_backed_sets_in_batches(tmp_path):
    from medsynth_explore.metrics import cas

    rng = np.random.default_rng(0)
    lab = np.arange(90) % 2
    imgs = (rng.random((90, 1, 16, 16)) * 0.3 + lab[:, None, None, None] * 0.5).astype(np.float32)
    imgs = np.rint(imgs * 65535) / 65535
    path = write_folder(ImageSet(imgs.astype(np.float32)), tmp_path / "x")
    lazy = load_dataset(path, lazy=True)
    a = cas(imgs[:30], lab[:30], imgs[30:60], lab[30:60], imgs[60:], lab[60:], mode="cnn", epochs=3, seed=0)
    b = cas(lazy[:30], lab[:30], lazy[30:60], lab[30:60], lazy[60:], lab[60:], mode="cnn", epochs=3, seed=0)
    assert a == b


def test_session_streams_a_file_backed_reference(folder):
    from medsynth_explore.session import Session

    s, path = folder
    session = Session(reference=load_dataset(path, lazy=True), generators=[], encoder="pixels", cache=False)
    np.testing.assert_array_equal(session.reference_features(), PixelEncoder().encode(s.images))
    train, holdout = session.privacy_sets()
    assert train.file_backed and len(train) + len(holdout) == 12
    tf, hf = session.privacy_features()
    assert tf.shape[0] == len(train)


def test_write_folder_streams_a_file_backed_set(folder, tmp_path):
    s, path = folder
    out = load_dataset(path, lazy=True).to_folder(tmp_path / "copy")
    np.testing.assert_array_equal(load_dataset(out).images, s.images)


# --------------------------------------------------------------------------- size policies
def _bars(tmp_path, w=40, h=20):
    a = np.zeros((h, w), np.uint8)
    a[:, : w // 4] = 255  # a bright left quarter
    Image.fromarray(a).save(tmp_path / "wide.png")
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(tmp_path / "small.png")
    pd.DataFrame({"filename": ["wide.png", "small.png"]}).to_csv(tmp_path / "metadata.csv", index=False)


@pytest.mark.parametrize("lazy", [True, False])
def test_size_policies_and_the_original_size_in_metadata(tmp_path, lazy):
    _bars(tmp_path)
    with pytest.raises(DataError, match="mixed sizes.*size="):
        load_dataset(tmp_path, lazy=lazy)
    crop = load_dataset(tmp_path, size=10, lazy=lazy)
    pad = load_dataset(tmp_path, size=10, aspect="pad", lazy=lazy)
    stretch = load_dataset(tmp_path, size=(10, 10), aspect="stretch", lazy=lazy)
    for d in (crop, pad, stretch):
        assert d.shape == (2, 1, 10, 10)
        assert d.metadata[["original_width", "original_height"]].values.tolist() == [[40, 20], [8, 8]]
    c, p, s = crop.images[0, 0], pad.images[0, 0], stretch.images[0, 0]
    # crop: the centre 20x20 of 40x20 (columns 10-29) has no bright column: only the left quarter (0-9) was bright
    # (the filter's support reaches one source pixel past the box, so the first output column sees a little of it)
    assert c[:, 1:].max() < 0.05 and c[:, 0].max() < 0.2
    # pad: the image fills rows 2.5-7.5 (5 of 10 rows), black above and below; the bright quarter is on the left
    assert p[0].max() == 0 and p[-1].max() == 0 and p[5, 0] > 0.9 and p[5, -1] < 0.05
    # stretch: every row has the bright left quarter (columns 0-1.5 of 10)
    assert (s[:, 0] > 0.9).all() and s[:, -1].max() < 0.05
    np.testing.assert_allclose(crop.images[1], 128 / 255, atol=1 / 255)  # upscaled, flat
    with pytest.raises(DataError, match="aspect"):
        load_dataset(tmp_path, size=10, aspect="squash")
    with pytest.raises(DataError, match="size must be"):
        load_dataset(tmp_path, size=0)


# --------------------------------------------------------------------------- safety
def test_paths_outside_the_data_folder_are_refused(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "outside.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "inside.png")
    for bad, msg in (("../outside.png", "outside the data folder"), (str(tmp_path / "outside.png"), "absolute path")):
        pd.DataFrame({"filename": ["inside.png", bad]}).to_csv(root / "metadata.csv", index=False)
        with pytest.raises(DataError, match=msg):
            load_dataset(root)
        assert len(load_dataset(root, allow_outside_root=True)) == 2
    os.symlink(tmp_path / "outside.png", root / "link.png")
    pd.DataFrame({"filename": ["link.png"]}).to_csv(root / "metadata.csv", index=False)
    with pytest.raises(DataError, match="outside the data folder"):
        load_dataset(root)
    pd.DataFrame({"filename": ["inside.png", ""]}).to_csv(root / "metadata.csv", index=False)
    with pytest.raises(DataError, match="empty"):
        load_dataset(root)


def test_resolve_listed_agrees_with_resolving_each_path_whole(tmp_path):
    """Folders resolved once per folder give what Path.resolve gives per file: links, '..', loops, missing files."""
    from medsynth_explore.data.paths import resolve_listed

    root, outside = tmp_path / "data", tmp_path / "elsewhere"
    (root / "sub" / "deep").mkdir(parents=True)
    outside.mkdir()
    for p in (root / "a.png", root / "sub" / "b.png", root / "sub" / "deep" / "c.png", outside / "o.png"):
        p.write_bytes(b"")
    os.symlink(outside, root / "out_dir")  # a folder link that leaves the root
    os.symlink(root / "sub", root / "in_dir")  # one that stays inside
    os.symlink(root / "sub" / "b.png", root / "sub" / "deep" / "link_b.png")
    os.symlink(root / "loop1", root / "loop2")
    os.symlink(root / "loop2", root / "loop1")
    listed = [
        "a.png",
        "sub/b.png",
        "sub\\deep\\c.png",
        "./sub//deep/./c.png",
        "sub/deep/../b.png",
        "in_dir/deep/c.png",
        "in_dir/../a.png",
        "sub/deep/link_b.png",
        "sub/missing.png",
        "nowhere/missing.png",
        "out_dir/o.png",
        "out_dir/../data/a.png",
        "sub/..",
    ]
    for text in listed:
        expected = (root / text.replace("\\", "/")).resolve()
        inside = expected == root.resolve() or root.resolve() in expected.parents
        if inside:
            assert resolve_listed(root, [text]) == [expected], text
        else:
            with pytest.raises(DataError, match="outside the data folder"):
                resolve_listed(root, [text])
        assert resolve_listed(root, [text], allow_outside_root=True) == [expected], text
    assert resolve_listed(root, listed[:9]) == [(root / t.replace("\\", "/")).resolve() for t in listed[:9]]  # one cache
    try:  # a link loop: Python 3.11 and 3.12 raise on it, later versions resolve it as far as they can
        expected = (root / "loop1" / "x.png").resolve()
    except RuntimeError:
        with pytest.raises(DataError, match="cannot resolve"):
            resolve_listed(root, ["loop1/x.png"])
    else:
        assert resolve_listed(root, ["loop1/x.png"], allow_outside_root=True) == [expected]


def _png_header_only(path, w, h):
    """A PNG that declares w x h grey pixels but holds a few bytes of data (what a bomb's header looks like)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [30000, 10000])
def test_decompression_bombs_raise_a_data_error_without_pil_warnings(tmp_path, side):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "ok.png")
    _png_header_only(tmp_path / "bomb.png", side, side)
    pd.DataFrame({"filename": ["ok.png", "bomb.png"]}).to_csv(tmp_path / "metadata.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(DataError, match="bomb|pixel limit|above the limit"):
            load_dataset(tmp_path)
        with pytest.warns(RuntimeWarning, match="skipped 1 of 2"):
            kept = load_dataset(tmp_path, on_error="skip")
    assert len(kept) == 1 and kept.provenance["skipped"][0]["file"] == "bomb.png"
    small = tmp_path / "small"
    small.mkdir()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(small / "a.png")
    pd.DataFrame({"filename": ["a.png"]}).to_csv(small / "metadata.csv", index=False)
    with pytest.raises(DataError, match="above the limit"):
        load_dataset(small, pixel_limit=1000)


def test_on_error_skip_lists_missing_unreadable_and_truncated_files(tmp_path):
    for i in range(4):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    raw = (tmp_path / "2.png").read_bytes()
    (tmp_path / "2.png").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "3.png").write_text("not an image")
    pd.DataFrame({"filename": ["0.png", "1.png", "2.png", "3.png", "gone.png"], "k": range(5)}).to_csv(
        tmp_path / "metadata.csv", index=False
    )
    with pytest.raises(DataError, match=r"2.png' \(unreadable or truncated\)"):  # the first bad row
        load_dataset(tmp_path)
    for lazy in (True, False):
        with pytest.warns(RuntimeWarning, match="skipped 3 of 5"):
            d = load_dataset(tmp_path, on_error="skip", lazy=lazy)
        assert d.metadata.k.tolist() == [0, 1]
        assert [s["file"] for s in d.provenance["skipped"]] == ["2.png", "3.png", "gone.png"]
        assert "truncated" in d.provenance["skipped"][0]["reason"] and d.provenance["skipped"][2]["reason"] == "missing"


def test_verify_finds_files_that_only_fail_when_decoded(tmp_path):
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 32), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    raw = bytearray((tmp_path / "1.png").read_bytes())
    start = raw.index(b"IDAT") + 8
    raw[start : start + 40] = b"\xff" * 40  # damaged compressed data; the file still ends with IEND
    (tmp_path / "1.png").write_bytes(bytes(raw))
    pd.DataFrame({"filename": ["0.png", "1.png", "2.png"]}).to_csv(tmp_path / "metadata.csv", index=False)
    lazy = load_dataset(tmp_path, lazy=True)  # the probe passes
    assert len(lazy) == 3
    with pytest.raises(DataError, match="1.png"):
        list(lazy.batches(2))
    checked = load_dataset(tmp_path, lazy=True, verify=True, on_error="skip")
    assert len(checked) == 2 and "1.png" in checked.provenance["skipped"][0]["file"]
    with pytest.raises(DataError, match="1.png"):
        load_dataset(tmp_path, lazy=True, verify=True)


def test_bad_loader_options_are_data_errors(folder):
    _, path = folder
    for kw, msg in (({"lazy": "maybe"}, "lazy"), ({"on_error": "ignore"}, "on_error"), ({"channels": 2}, "channels")):
        with pytest.raises(DataError, match=msg):
            load_dataset(path, **kw)


# --------------------------------------------------------------------------- npz
@pytest.mark.parametrize("compressed", [False, True])
def test_medmnist_npz_is_read_row_by_row_when_file_backed(tmp_path, compressed):
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (7, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 2, (7, 1)),
        "test_images": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 2, (3, 1)),
    }
    (np.savez_compressed if compressed else np.savez)(tmp_path / "m.npz", **arrays)
    eager = load_dataset(tmp_path / "m.npz", lazy=False)
    lazy = load_dataset(tmp_path / "m.npz", lazy=True)
    assert lazy.file_backed and lazy.shape == eager.shape == (10, 1, 28, 28)
    np.testing.assert_array_equal(np.concatenate(list(lazy.batches(4))), eager.images)
    np.testing.assert_array_equal(lazy.read([8, 1]), eager.images[[8, 1]])
    np.testing.assert_allclose(eager.images[:7, 0] * 255, arrays["train_images"], atol=1e-4)
    small = load_dataset(tmp_path / "m.npz", lazy=True, size=14)
    assert small.shape == (10, 1, 14, 14)


def test_the_quick_header_read_agrees_with_pil_or_leaves_the_file_to_it(tmp_path):
    from medsynth_explore.data import decode as D

    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, (37, 53), dtype=np.uint8)
    rgb = rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)
    cases = {
        "l.png": (Image.fromarray(grey), {}),
        "one.png": (Image.fromarray(grey).convert("1"), {}),
        "i16.png": (Image.fromarray((grey.astype(np.uint16) * 257)), {}),
        "rgb.png": (Image.fromarray(rgb), {}),
        "rgba.png": (Image.fromarray(rgb).convert("RGBA"), {}),
        "la.png": (Image.fromarray(grey).convert("LA"), {}),
        "p.png": (Image.fromarray(rgb).convert("P"), {}),
        "interlaced.png": (Image.fromarray(grey), {"interlace": 1}),
        "l.jpg": (Image.fromarray(grey), {"quality": 90}),
        "rgb.jpg": (Image.fromarray(rgb), {}),
        "progressive.jpg": (Image.fromarray(rgb), {"progressive": True}),
        "icc.jpg": (Image.fromarray(grey), {"icc_profile": bytes(100_000)}),  # frame header past 64 KiB
        "cmyk.jpg": (Image.fromarray(rgb).convert("CMYK"), {}),
        "rgb.tif": (Image.fromarray(rgb), {}),
    }
    quick = set()
    for name, (im, opts) in cases.items():
        p = tmp_path / name
        im.save(p, **opts)
        with Image.open(p) as ref:
            expect = (ref.size, ref.mode in D._GREY_MODES, ref.format)
        got = D._quick_probe(p)
        if got is not None:
            info, ended = got
            assert ((info.width, info.height), info.grey, info.format) == expect, name
            assert ended, name
            quick.add(name)
        assert D.probe_image(p) == D.ImageInfo(*expect[0], D.probe_image(p).mode, expect[2])
    # the common files of real data sets take the quick path; the unusual ones are left to PIL
    assert {"l.png", "i16.png", "rgb.png", "l.jpg", "rgb.jpg", "progressive.jpg"} <= quick
    assert not {"cmyk.jpg", "rgb.tif", "icc.jpg"} & quick
    cut = tmp_path / "cut.jpg"
    cut.write_bytes((tmp_path / "l.jpg").read_bytes()[:-300])
    with pytest.raises(DataError, match="end marker is missing"):
        D.probe_image(cut)
    big = tmp_path / "big.png"
    data = bytearray((tmp_path / "l.png").read_bytes())
    data[16:24] = (40_000).to_bytes(4, "big") * 2  # declares 40,000 x 40,000 pixels
    big.write_bytes(bytes(data))
    with pytest.raises(DataError, match="above the limit"):
        D.probe_image(big)


def test_greyscale_jpegs_decode_to_the_pixels_pil_gives(tmp_path, monkeypatch):
    """libjpeg-turbo through simplejpeg and through PIL: the same pixels, under every size policy and channel count."""
    from medsynth_explore.data import decode as D

    rng = np.random.default_rng(1)
    smooth = np.clip(np.cumsum(rng.normal(0, 6, (61, 47)), axis=0) + 128, 0, 255).astype(np.uint8)
    noise = rng.integers(0, 256, (40, 72), dtype=np.uint8)
    cases = {
        "q95.jpg": (smooth, {"quality": 95}),
        "q40.JPEG": (noise, {"quality": 40}),
        "progressive.jpg": (smooth, {"progressive": True, "quality": 80}),
        "optimised.jpe": (noise, {"optimize": True}),
        "restarts.jpg": (smooth, {"restart_marker_blocks": 2}),
        "rgb.jpg": (np.stack([noise, noise // 2, noise // 3], -1), {}),  # colour: PIL's path
    }
    settings = [D.DecodeSettings(), D.DecodeSettings(channels=3)]
    smooth_q95 = None
    settings += [D.DecodeSettings(size=(16, 24), aspect=a) for a in D.ASPECTS]
    for name, (a, opts) in cases.items():
        Image.fromarray(a).save(tmp_path / name, format="JPEG", **opts)
        if name == "q95.jpg":
            with Image.open(tmp_path / name) as ref:
                smooth_q95 = np.asarray(ref, np.float32) / np.float32(255)
        for s in settings:
            fast = D._decode_grey_jpeg(tmp_path / name, s)
            assert (fast is None) == (name == "rgb.jpg"), name
            got = D.decode_image(tmp_path / name, s)
            with monkeypatch.context() as m:
                m.setattr(D, "_simplejpeg", lambda: None)
                assert D._decode_grey_jpeg(tmp_path / name, s) is None
                want = D.decode_image(tmp_path / name, s)
            assert got.dtype == want.dtype == np.float32 and got.shape == want.shape, name
            np.testing.assert_array_equal(got, want, err_msg=f"{name} {s}")
    # a PNG with a JPEG name, and a damaged JPEG, are PIL's to read or to refuse
    Image.fromarray(noise).save(tmp_path / "png.jpg", format="PNG")
    assert D._decode_grey_jpeg(tmp_path / "png.jpg", settings[0]) is None
    np.testing.assert_array_equal(D.decode_image(tmp_path / "png.jpg", settings[0])[0], noise / np.float32(255))
    raw = (tmp_path / "q95.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(raw[: len(raw) // 2])
    assert D._decode_grey_jpeg(tmp_path / "cut.jpg", settings[0]) is None
    monkeypatch.setattr(D, "_WHOLE_READ_LIMIT", 100)  # a file above the whole-read limit is PIL's to stream
    assert D._decode_grey_jpeg(tmp_path / "q95.jpg", settings[0]) is None
    np.testing.assert_array_equal(D.decode_image(tmp_path / "q95.jpg", settings[0])[0], smooth_q95)
    monkeypatch.undo()
    with pytest.raises(DataError, match=r"cut.jpg' \(unreadable or truncated\)"):
        D.decode_image(tmp_path / "cut.jpg", settings[0])
    # the frame header is checked against the pixel limit before a pixel is decoded
    sof = raw.index(b"\xff\xc0")
    big = bytearray(raw)
    big[sof + 5 : sof + 9] = (40_000).to_bytes(2, "big") * 2  # 40,000 x 40,000
    (tmp_path / "big.jpg").write_bytes(bytes(big))
    with pytest.raises(DataError, match="above the limit"):
        D._decode_grey_jpeg(tmp_path / "big.jpg", settings[0])
    with pytest.raises(DataError, match="above the limit"):
        D.decode_image(tmp_path / "q95.jpg", D.DecodeSettings(pixel_limit=100))


@pytest.mark.parametrize("aspect", ["crop", "pad", "stretch"])
def test_size_policies_take_shapes_whose_crop_box_rounds_outside_the_image(tmp_path, aspect):
    # 47 x 61 to 24 x 16 crops a box whose left edge computes as -3.6e-15; PIL refuses any negative offset
    Image.fromarray(np.full((61, 47), 200, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "metadata.csv").write_text("filename\na.png\n")
    for lazy in (False, True):
        d = load_dataset(tmp_path, size=(16, 24), aspect=aspect, lazy=lazy)
        assert d.shape == (1, 1, 16, 24)
        assert np.isclose(d.read([0]).max(), 200 / 255)
