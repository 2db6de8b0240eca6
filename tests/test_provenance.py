"""Provenance: the invisible watermark, C2PA manifests, detect, and what export / verify / the CLI do with them.

The watermark is checked against the library it is built on (invisible-watermark's own public decoder reads
the bits we embed), the code against its defining property (minimum distance 16), and the C2PA manifests
against c2pa-python's own reader. Robustness and false-positive rates at scale are measured in
``benchmarks/bench_watermark.py``; here a few images per case.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medsynth_explore.errors import CancelledError, DataError
from medsynth_explore.export import _sha256_file, export, read_manifest, read_png_labels, verify
from medsynth_explore.provenance import (
    C2PASigner,
    created_manifest,
    detect,
    make_test_signer,
    read_c2pa,
    sign_bytes,
    strip_c2pa,
)
from medsynth_explore.provenance import watermark as wm

from doubles import AGE_SEX_SCHEMA, Noise

SHA = "ab12" + "cd" * 30
DIST = {"n": 2, "age": {"hist": [1, 1], "edges": [18.0, 54.0, 90.0]}, "sex": {"F": 0.5, "M": 0.5}}


@pytest.fixture(scope="module")
def signer():
    return make_test_signer(seed=7)


@pytest.fixture(scope="module")
def phantoms():
    from medsynth_explore.phantom import simulate

    return simulate(6, seed=3, size=64).images


def gen64(sha256: str = SHA) -> Noise:
    return Noise(size=64, schema=AGE_SEX_SCHEMA, sha256=sha256, distribution=DIST)


def _png16(x: np.ndarray, **text) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.fromarray(np.rint(x[0] * 65535).astype(np.uint16)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def _to8(x16: np.ndarray) -> np.ndarray:
    return np.rint(x16.astype(np.float64) / 257.0).astype(np.uint8)


def _jpeg(a8: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a8).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _psnr16(a: np.ndarray, b: np.ndarray) -> float:
    qa, qb = np.rint(a * 65535.0), np.rint(b * 65535.0)
    return float(10 * np.log10(65535.0**2 / np.mean((qa - qb) ** 2)))


# --------------------------------------------------------------------------- the code and the library
def test_reed_muller_code_has_minimum_distance_16():
    # every codeword with the header set to zero (the differences between two hash prefixes) weighs 0 or >= 16
    G = wm._G
    assert G.shape == (22, 64)
    prefixes = np.arange(1 << wm.PREFIX_BITS)
    bits = ((prefixes[:, None] >> np.arange(wm.PREFIX_BITS)) & 1).astype(np.int64)
    words = bits @ G[len(wm._HEADER) :].astype(np.int64) % 2
    weights = words.sum(1)
    assert weights[0] == 0 and weights[1:].min() == 16
    # and the 22 rows are independent (rank over GF(2))
    m, rank = G.copy(), 0
    for col in range(64):
        pivot = next((r for r in range(rank, 22) if m[r, col]), None)
        if pivot is None:
            continue
        m[[rank, pivot]] = m[[pivot, rank]]
        for r in range(22):
            if r != rank and m[r, col]:
                m[r] ^= m[rank]
        rank += 1
    assert rank == 22


def test_library_decoder_reads_the_bits_we_embed():
    """invisible-watermark's public WatermarkDecoder (its own YUV conversion and DWT) reads our bits back."""
    import cv2
    from imwatermark import WatermarkDecoder

    from medsynth_explore.phantom import simulate

    x = simulate(1, seed=11, size=256).images[0]
    marked = wm.embed(x, SHA)
    grey = np.rint(marked[0] * 255).astype(np.uint8)
    bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    bits = WatermarkDecoder("bits", 64).decode(bgr, "dwtDctSvd", scales=[wm.STRENGTH, 0, 0], block=wm.BLOCK)
    expected = wm._library_bits(wm.hash_prefix(SHA), wm.DEFAULT_KEY)
    assert np.mean(np.asarray(bits, int) == expected) >= 0.95  # 16 repetitions per bit, majority vote


# --------------------------------------------------------------------------- embed / read
def test_round_trip_grey_and_rgb_and_key(phantoms):
    for x in phantoms[:3]:
        m = wm.embed(x, SHA)
        assert m.dtype == np.float32 and m.shape == x.shape and 0.0 <= m.min() and m.max() <= 1.0
        r = wm.read(m)
        assert r.detected and r.model_sha256_prefix == "ab12" and r.score > 0.9 and r.payload()["ai_generated"]
        assert not wm.read(x).detected and wm.read(x).payload() is None
        assert not wm.read(m, key="another key").detected
        assert _psnr16(x, m) >= 40.0
    rgb = np.stack([phantoms[0, 0], phantoms[1, 0] * 0.9, phantoms[2, 0] * 0.8])
    m = wm.embed(rgb, SHA)
    assert wm.read(m).detected
    # the change is in the luminance only: every channel moved by the same amount (up to clipping)
    d = (m - rgb).astype(np.float64)
    inside = (m > 0.01).all(0) & (m < 0.99).all(0)
    assert np.abs(d[0] - d[1])[inside].max() < 1e-5 and np.abs(d[0] - d[2])[inside].max() < 1e-5


def test_embedding_is_deterministic_and_batched(phantoms):
    a, b = wm.embed(phantoms, SHA), wm.embed(phantoms, SHA)
    assert a.tobytes() == b.tobytes()
    np.testing.assert_array_equal(a[2], wm.embed(phantoms[2], SHA))
    assert not np.array_equal(wm.embed(phantoms[0], SHA), wm.embed(phantoms[0], "ffff" + SHA[4:]))
    assert wm.read(wm.embed(phantoms[0], "ffff" + SHA[4:])).model_sha256_prefix == "ffff"


def test_survives_stripping_jpeg_resize_and_8_bit(phantoms):
    for x in phantoms[:4]:
        m16 = np.rint(wm.embed(x, SHA)[0] * 65535).astype(np.uint16)
        m8 = _to8(m16)
        cases = {
            "16-bit PNG without metadata": _png16(m16[None].astype(np.float64) / 65535),
            "8-bit PNG": _png_bytes8(m8),
            "JPEG q90": _jpeg(m8, 90),
            "resize 0.9": _png_bytes8(np.asarray(Image.fromarray(m8).resize((58, 58), Image.BICUBIC))),
            "resize 1.1": _png_bytes8(np.asarray(Image.fromarray(m8).resize((70, 70), Image.BICUBIC))),
        }
        for what, data in cases.items():
            r = detect(data)
            assert r["watermark"] and r["payload"]["model_sha256_prefix"] == "ab12", what
            assert r["c2pa"] is None and not r["c2pa_valid"]


def _png_bytes8(a8: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a8).save(buf, "PNG")
    return buf.getvalue()


def test_unmarked_images_are_rejected():
    from medsynth_explore.phantom import simulate

    rng = np.random.default_rng(0)
    flat = [np.zeros((1, 64, 64)), np.ones((1, 64, 64)), np.full((1, 64, 64), 0.5)]
    noise = [rng.random((1, 64, 64)) for _ in range(5)]
    real = list(simulate(40, seed=21, size=64).images.astype(np.float64))
    scores = [wm.read(x).score for x in flat + noise + real]
    assert max(scores) < wm.THRESHOLD
    assert not any(detect(_jpeg(np.rint(x[0] * 255).astype(np.uint8)))["watermark"] for x in real[:10])


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((1, 32, 32), np.float32), "too small"),
        (np.zeros((2, 64, 64), np.float32), "C = 1 or 3"),
        (np.full((1, 64, 64), np.nan, np.float32), "NaN"),
        (np.full((1, 64, 64), 2.0, np.float32), r"\[0, 1\]"),
        (np.zeros((1, 64, 64), np.uint8), "floats"),
    ],
)
def test_embed_rejects_bad_images(bad, match):
    with pytest.raises(DataError, match=match):
        wm.embed(bad, SHA)


def test_bad_hash_and_key():
    with pytest.raises(DataError, match="no model hash"):
        wm.hash_prefix("")
    assert wm.hash_prefix("phantomcxr-1.1.0") != wm.hash_prefix("phantomcxr-1.1.1")
    with pytest.raises(DataError, match="non-empty string"):
        wm.embed(np.zeros((1, 64, 64), np.float32), SHA, key="")


# --------------------------------------------------------------------------- C2PA
def test_sign_keeps_labels_and_pixels_and_reads_back(signer, phantoms):
    src = _png16(phantoms[0], ai_generated="true", DigitalSourceType="trainedAlgorithmicMedia")
    manifest = created_manifest("x.png", "image/png", {"generator": "g", "seed": 3}, label_parts=("t", "x.png"))
    signed = sign_bytes(src, signer, manifest)
    assert strip_c2pa(signed) == src
    with Image.open(io.BytesIO(signed)) as im:
        assert im.info["ai_generated"] == "true" and im.mode.startswith("I;16")
        np.testing.assert_array_equal(np.asarray(im), np.rint(phantoms[0, 0] * 65535).astype(np.uint16))
    rep = read_c2pa(signed)
    assert rep.present and rep.valid and not rep.trusted and not rep.tampered and rep.failures == []
    action = rep.action()
    assert action["digitalSourceType"].endswith("trainedAlgorithmicMedia")
    assert action["parameters"] == {"generator": "g", "seed": 3}
    assert rep.manifest["label"] == manifest["label"] and rep.manifest["instance_id"] == manifest["instance_id"]
    assert "UNTRUSTED" in rep.manifest["signature_info"]["common_name"]
    trusted = read_c2pa(signed, trust_anchors=signer.trust_anchors)
    assert trusted.valid and trusted.trusted
    other = make_test_signer(seed=8)
    assert not read_c2pa(signed, trust_anchors=other.trust_anchors).trusted
    # the only difference between two signings is inside the manifest store (c2pa-rs draws random salts)
    again = sign_bytes(src, signer, manifest)
    assert strip_c2pa(again) == strip_c2pa(signed)


def test_tampering_is_reported_not_raised(signer, phantoms):
    src = _png16(phantoms[1], ai_generated="true")
    signed = sign_bytes(src, signer, created_manifest("x.png", "image/png", {"seed": 1}))
    # a text chunk changed after signing
    relabelled = signed.replace(b"ai_generated\x00true", b"ai_generated\x00fals")
    assert relabelled != signed
    rep = read_c2pa(relabelled)
    assert rep.present and rep.tampered and not rep.valid and "assertion.dataHash.mismatch" in rep.failures
    # the pixels changed (decoded, edited, re-encoded with the manifest chunk kept)
    chunks = [c for kind, c in _chunks(signed) if kind == b"caBX"]
    with Image.open(io.BytesIO(signed)) as im:
        a = np.asarray(im).copy()
    a[10:20, 10:20] = 65535
    edited = _png16(a[None].astype(np.float64) / 65535, ai_generated="true")
    edited = edited[:33] + chunks[0] + edited[33:]  # after IHDR, where c2pa puts it
    rep = read_c2pa(edited)
    assert rep.tampered and detect(edited)["c2pa_tampered"]
    # a damaged manifest store: reported as present and invalid
    i = signed.index(b"caBX")
    broken = signed[: i + 200] + bytes(b ^ 0x5A for b in signed[i + 200 : i + 260]) + signed[i + 260 :]
    rep = read_c2pa(broken)
    assert rep.present and not rep.valid
    # no manifest at all
    assert not read_c2pa(src).present and read_c2pa(src).summary() == "none"


def _chunks(data: bytes):
    from medsynth_explore.provenance.c2pa import _png_chunks

    return list(_png_chunks(data))


def test_jpeg_signing_and_es256(phantoms, tmp_path):
    es = make_test_signer(tmp_path / "certs", seed=2, alg="es256")
    assert es.alg == "es256" and (tmp_path / "certs" / "signer-key.pem").is_file()
    again = C2PASigner.from_files(tmp_path / "certs" / "signer-chain.pem", tmp_path / "certs" / "signer-key.pem")
    assert again.alg == "es256" and again.fingerprint == es.fingerprint
    jpg = _jpeg(np.rint(phantoms[2, 0] * 255).astype(np.uint8))
    signed = sign_bytes(jpg, again, created_manifest("x.jpg", "image/jpeg", {"seed": 0}))
    assert strip_c2pa(signed) == jpg
    assert read_c2pa(signed).valid and read_c2pa(signed, trust_anchors=es.trust_anchors).trusted
    r = detect(signed)
    assert r["format"] == "jpeg" and r["c2pa_valid"] and r["c2pa"]["claim_version"] == 2


def test_signer_rejects_bad_keys_and_certificates(signer, tmp_path):
    other = make_test_signer(seed=99)
    with pytest.raises(DataError, match="does not belong"):
        C2PASigner(signer.certificate_chain, other.private_key)
    with pytest.raises(DataError, match="not PEM"):
        C2PASigner(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n", signer.private_key)
    with pytest.raises(DataError, match="private key"):
        C2PASigner(signer.certificate_chain, b"not a key")
    with pytest.raises(DataError, match="unknown C2PA signing algorithm"):
        C2PASigner(signer.certificate_chain, signer.private_key, alg="md5")
    with pytest.raises(DataError, match="cannot read the certificate chain"):
        C2PASigner.from_files(tmp_path / "missing.pem", tmp_path / "key.pem")
    with pytest.raises(DataError, match="neither"):
        sign_bytes(b"GIF89a....", signer, {})
    with pytest.raises(DataError, match="C2PASigner"):
        sign_bytes(b"\x89PNG\r\n\x1a\n", "key.pem", {})
    assert "private_key" not in repr(signer)


def test_detect_input_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="not an image"):
        detect(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="not a file"):
        detect(tmp_path / "nope.png")
    (tmp_path / "cut.png").write_bytes(_png16(np.zeros((1, 64, 64)))[:60])
    with pytest.raises(DataError):
        detect(tmp_path / "cut.png")
    with pytest.raises(DataError, match="uint8 or uint16"):
        detect(np.zeros((64, 64), np.int32))
    with pytest.raises(DataError, match="NaN"):
        detect(np.full((64, 64), np.nan))
    rgb = np.zeros((64, 64, 3), np.uint8)
    assert detect(rgb)["size"] == (64, 64) and not detect(rgb)["watermark"]


# --------------------------------------------------------------------------- export and verify
def test_signed_export_verifies_and_equals_unsigned_export_outside_the_manifest(signer, tmp_path):
    gen = gen64()
    a = export(gen, 5, tmp_path / "a", seed=1, shard_size=2, signer=signer, npz=True)
    b = export(gen, 5, tmp_path / "b", seed=1, shard_size=2, signer=signer, npz=True)
    plain = export(gen, 5, tmp_path / "plain", seed=1, shard_size=2, npz=True)
    res = verify(a, check_watermark=True)
    assert res.ok, str(res)
    assert res.signed and res.watermarked and set(res.table()["c2pa"]) == {"valid"} and set(res.table()["watermark"]) == {"found"}
    m = read_manifest(a)
    assert m["provenance"]["c2pa"]["signed"] and m["provenance"]["c2pa"]["signer"]["certificate_sha256"] == signer.fingerprint
    assert m["provenance"]["watermark"]["payload"] == {"ai_generated": True, "model_sha256_prefix": "ab12"}
    assert m["generator"]["model_card_sha256"]
    for name, info in m["files"].items():
        assert _sha256_file(a / name) == info["sha256"]  # the hash of the final, signed file
        if name.endswith(".png"):
            sa, sb, sp = (strip_c2pa((d / name).read_bytes()) for d in (a, b, plain))
            assert sa == sb == sp  # byte-identical outside the manifest store
            assert (
                info["sha256_without_c2pa"]
                == m["files"][name]["sha256_without_c2pa"]
                == read_manifest(b)["files"][name]["sha256_without_c2pa"]
            )
            assert read_manifest(plain)["files"][name]["sha256"] == info["sha256_without_c2pa"]
        else:
            assert (a / name).read_bytes() == (plain / name).read_bytes()
    rep = read_c2pa(a / "images" / "000003.png")
    params = rep.action()["parameters"]
    assert params["checkpoint_sha256"] == SHA and params["index"] == 3 and params["shard"] == 1
    assert params["seed"] == m["shards"][1]["seed"] and params["export_seed"] == 1 and params["watermark"]["embedded"]
    assert params["model_card_sha256"] == m["generator"]["model_card_sha256"]
    assert read_png_labels(a / "images" / "000003.png")["ai_generated"] == "true"
    # the NPZ holds the marked pixels, the same as the PNG files
    with np.load(a / "shards" / "shard-00001.npz", allow_pickle=False) as z:
        with Image.open(a / "images" / "000002.png") as im:
            np.testing.assert_array_equal(z["images"][0, 0], np.asarray(im))


def _patch_manifest(folder: Path, name: str) -> None:
    m = json.loads((folder / "manifest.json").read_text())
    m["files"][name] = {"sha256": _sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
    (folder / "manifest.json").write_text(json.dumps(m))


def test_verify_reports_missing_invalid_and_tampered_manifests_per_file(signer, tmp_path):
    out = export(gen64(), 6, tmp_path / "syn", seed=2, shard_size=3, signer=signer)
    other = export(gen64("ee" * 32), 1, tmp_path / "other", seed=2, signer=signer)
    img = out / "images"
    # 1: manifest stripped (hash patched, as someone re-signing the folder's manifest.json would)
    (img / "000001.png").write_bytes(strip_c2pa((img / "000001.png").read_bytes()))
    _patch_manifest(out, "images/000001.png")
    # 2: pixels edited, manifest chunk kept
    data = (img / "000002.png").read_bytes()
    chunk = next(c for kind, c in _chunks(data) if kind == b"caBX")
    with Image.open(io.BytesIO(data)) as im:
        labels = {k: v for k, v in im.info.items() if isinstance(v, str) and k != "XML:com.adobe.xmp"}
        a = np.asarray(im).copy()
    a[:8, :8] = 0
    edited = _png16(a[None].astype(np.float64) / 65535, **labels)
    (img / "000002.png").write_bytes(edited[:33] + chunk + edited[33:])
    _patch_manifest(out, "images/000002.png")
    # 4: a validly signed image of another generator put in its place
    (img / "000004.png").write_bytes((other / "images" / "000000.png").read_bytes())
    _patch_manifest(out, "images/000004.png")
    res = verify(out, check_labels=False, check_watermark=True)
    assert not res.ok
    assert res.c2pa_missing == ["images/000001.png"]
    assert [t.split(" ")[0] for t in res.c2pa_tampered] == ["images/000002.png"]
    assert [t.split(" ")[0] for t in res.c2pa_invalid] == ["images/000004.png"] and "describes checkpoint" in res.c2pa_invalid[0]
    assert res.unmarked == ["images/000004.png (carries model prefix eeee)"]
    table = res.table().set_index("file")
    assert table.loc["images/000001.png", "c2pa"] == "missing" and table.loc["images/000001.png", "watermark"] == "found"
    assert table.loc["images/000002.png", "c2pa"] == "tampered" and table.loc["images/000000.png", "c2pa"] == "valid"
    report = str(res)
    for words in (
        "without their C2PA manifest (1)",
        "fail validation (1)",
        "changed after signing (C2PA hash mismatch) (1)",
        "3 of 6 images",
    ):
        assert words in report
    # requiring a trust anchor: the local root makes them trusted, another root does not
    assert verify(other, trust_anchors=signer.trust_anchors).ok
    strict = verify(other, trust_anchors=make_test_signer(seed=5).trust_anchors)
    assert not strict.ok and strict.c2pa_invalid


def test_small_images_are_exported_unmarked_and_say_so(tmp_path):
    with pytest.warns(UserWarning, match="too small for the watermark"):
        out = export(Noise(size=16), 2, tmp_path / "syn")
    m = read_manifest(out)
    assert not m["provenance"]["watermark"]["embedded"] and "16 x 16" in m["provenance"]["watermark"]["reason"]
    res = verify(out, check_watermark=True)
    assert res.ok and "watermark: none" in str(res) and set(res.table()["watermark"]) == {"not embedded"}
    out2 = export(gen64(), 2, tmp_path / "off", watermark=False)
    assert not detect(out2 / "images" / "000000.png")["watermark"]
    assert "watermark=False" in read_manifest(out2)["provenance"]["watermark"]["reason"]
    with pytest.raises(DataError, match="C2PASigner"):
        export(gen64(), 2, tmp_path / "bad", signer="key.pem")


def test_signed_export_resumes_after_cancel(signer, tmp_path):
    out = tmp_path / "syn"
    with pytest.raises(CancelledError):
        export(gen64(), 6, out, seed=4, shard_size=2, signer=signer, callback=lambda d, t: d < 2)
    before = {p.name: p.read_bytes() for p in (out / "images").iterdir()}
    assert sorted(before) == ["000000.png", "000001.png"]
    export(gen64(), 6, out, seed=4, shard_size=2, signer=signer)
    assert all((out / "images" / k).read_bytes() == v for k, v in before.items())  # finished shards untouched
    assert verify(out).ok
    # another signer is another export: it does not resume this one
    with pytest.raises(DataError, match="other settings"):
        export(gen64(), 6, out, seed=4, shard_size=2, signer=make_test_signer(seed=3))


def test_dask_signed_export_equals_local_outside_the_manifest(signer, tmp_path):
    distributed = pytest.importorskip("distributed")
    cloudpickle = pytest.importorskip("cloudpickle")
    import doubles

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cloudpickle.register_pickle_by_value(doubles)
    local = export(gen64(), 5, tmp_path / "local", seed=9, shard_size=2, signer=signer)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
        with distributed.Client(lc) as client:
            remote = export(gen64(), 5, tmp_path / "remote", seed=9, shard_size=2, signer=signer, client=client)
    ml, mr = read_manifest(local), read_manifest(remote)
    assert [v.get("sha256_without_c2pa") for v in ml["files"].values()] == [
        v.get("sha256_without_c2pa") for v in mr["files"].values()
    ]
    for name in ml["files"]:
        la, ra = (local / name).read_bytes(), (remote / name).read_bytes()
        assert (strip_c2pa(la) == strip_c2pa(ra)) if name.endswith(".png") else la == ra
    assert verify(remote, check_watermark=True).ok


# --------------------------------------------------------------------------- command line
def test_cli_detect_and_verify_per_file(signer, tmp_path, capsys):
    from medsynth_explore.cli import main

    make_test_signer(tmp_path / "certs", seed=7)
    code = main(
        [
            "generate",
            "phantomcxr-physics",
            "--n",
            "3",
            "--out",
            str(tmp_path / "syn"),
            "--sign-cert",
            str(tmp_path / "certs" / "signer-chain.pem"),
            "--sign-key",
            str(tmp_path / "certs" / "signer-key.pem"),
        ]
    )
    assert code == 0 and "watermarked, C2PA-signed by" in capsys.readouterr().out
    png = tmp_path / "syn" / "images" / "000000.png"
    with Image.open(png) as im:
        _ = Image.fromarray(_to8(np.asarray(im))).save(tmp_path / "copy.jpg", quality=90)
    (tmp_path / "notes.txt").write_text("x")
    code = main(["detect", str(png), str(tmp_path / "copy.jpg"), str(tmp_path / "notes.txt")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 2 and len(lines) == 3
    assert "watermark YES" in lines[0] and "C2PA valid, untrusted signer" in lines[0] and "AI label yes" in lines[0]
    assert "watermark YES" in lines[1] and "C2PA none" in lines[1] and "AI label no" in lines[1]
    assert "error: cannot read" in lines[2]
    assert main(["detect", "--json", str(png), "--trust-anchors", str(tmp_path / "certs" / "test-root.pem")]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["watermark"] and row["c2pa_trusted"] and row["c2pa"]["claim_version"] == 2
    assert main(["verify", str(tmp_path / "syn"), "--per-file", "--watermark"]) == 0
    out = capsys.readouterr().out
    assert "OK, 3 images" in out and out.count("valid     found") == 3
    assert main(["generate", "phantomcxr-physics", "--n", "1", "--out", str(tmp_path / "x"), "--sign-key", "k.pem"]) == 2
    assert "go together" in capsys.readouterr().err


def test_sizes_tried_after_resize_are_few():
    assert wm._candidate_sizes(58, 58, None) == [(58, 58), (64, 64), (48, 48)]
    assert wm._candidate_sizes(70, 70, None)[:2] == [(70, 70), (64, 64)]
    assert wm._candidate_sizes(100, 50, [80]) == [(100, 50), (80, 40)]


def test_verify_does_not_follow_manifest_paths_out_of_the_folder(tmp_path):
    out = export(gen64(), 2, tmp_path / "syn", signer=None)
    (tmp_path / "secret.png").write_bytes(b"not yours")
    m = json.loads((out / "manifest.json").read_text())
    m["files"]["../secret.png"] = {"sha256": "0" * 64, "bytes": 9}
    m["files"]["/etc/passwd"] = {"sha256": "0" * 64, "bytes": 1}
    (out / "manifest.json").write_text(json.dumps(m))
    res = verify(out, check_watermark=True)
    assert not res.ok and any("outside the folder" in p for p in res.problems)
    assert "../secret.png" not in res.altered + res.missing and len(res.table()) == 2
