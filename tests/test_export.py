"""Export of synthetic data sets: files, provenance labels, manifest, verify, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medsynth_explore.data import load_dataset
from medsynth_explore.errors import CancelledError, DataError, MedsynthError
from medsynth_explore.export import (
    DIGITAL_SOURCE_TYPE,
    _sha256_file,
    export,
    read_manifest,
    read_png_labels,
    read_shard,
    verify,
)
from medsynth_explore.generators import condition_distribution
from medsynth_explore.provenance.watermark import embed as embed_watermark
from medsynth_explore.provenance.watermark import hash_prefix
from medsynth_explore.scale import shard_seed

from doubles import SMALL_SCHEMA, Noise


def _distribution() -> dict:
    rng = np.random.default_rng(0)
    train = pd.DataFrame(
        {
            "age": rng.uniform(18, 90, 200),
            "sex": rng.choice(["F", "M"], 200),
            "effusion": rng.integers(0, 2, 200),
            "nodule": rng.integers(0, 2, 200),
        }
    )
    return condition_distribution(train, SMALL_SCHEMA)


def NoiseGenerator(size: int = 16) -> Noise:
    """A tiny seeded conditional model: noise whose brightness follows age."""
    return Noise(size=size, distribution=_distribution())


@pytest.fixture(scope="module")
def gen():
    return NoiseGenerator()


def _files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _quantised(images: np.ndarray) -> np.ndarray:
    return (np.rint(images * 65535.0) / 65535.0).astype(np.float32)


def test_export_round_trips_through_load_dataset(gen, tmp_path):
    out = export(gen, 7, tmp_path / "syn", seed=3, shard_size=3)
    ds = load_dataset(out)
    assert ds.shape == (7, 1, 16, 16)
    # shard k is exactly what the generator makes with shard_seed(3, k)
    expected = np.concatenate([gen.sample(c, seed=shard_seed(3, k)).images for k, c in enumerate([3, 3, 1])])
    np.testing.assert_array_equal(ds.images, _quantised(expected))
    meta = ds.metadata
    assert list(meta["filename"]) == [f"images/{i:06d}.png" for i in range(7)]
    assert list(meta["image_index"]) == list(range(7))
    assert list(meta["shard"]) == [0, 0, 0, 1, 1, 1, 2]
    assert {"age", "sex", "effusion", "nodule", "checkpoint_sha256", "image_seed"} <= set(meta.columns)
    parquet = pd.read_parquet(out / "metadata.parquet")
    assert list(parquet.columns) == list(meta.columns)
    np.testing.assert_allclose(parquet["age"].to_numpy(), meta["age"].to_numpy())
    assert list(parquet["filename"]) == list(meta["filename"])


def test_png_files_carry_ai_label_and_provenance(gen, tmp_path):
    out = export(gen, 4, tmp_path / "syn", conditions={"age": 70, "sex": "F", "findings": ["effusion"]}, seed=5, shard_size=2)
    labels = read_png_labels(out / "images" / "000003.png")
    assert labels["ai_generated"] == "true"
    assert labels["DigitalSourceType"] == DIGITAL_SOURCE_TYPE == "trainedAlgorithmicMedia"
    assert labels["generator"] == "test-noise"
    assert labels["checkpoint_sha256"] == "ab" * 32
    assert labels["seed"] == str(shard_seed(5, 1))
    assert json.loads(labels["conditions"]) == {"age": 70, "sex": "F", "findings": ["effusion"]}
    row = json.loads(labels["metadata"])
    assert row["age"] == 70.0 and row["effusion"] == 1 and row["nodule"] == 0
    assert "trainedAlgorithmicMedia" in labels["XML:com.adobe.xmp"]


def test_manifest_records_generator_seeds_files_and_counts(gen, tmp_path):
    out = export(gen, 5, tmp_path / "syn", seed=11, shard_size=2, steps=None)
    m = read_manifest(out)
    assert m["generator"]["checkpoint_sha256"] == "ab" * 32
    assert m["generator"]["card"]["name"] == "test-noise"
    assert m["package"]["version"]
    assert m["sampler"]["seed"] == 11 and m["sampler"]["shard_size"] == 2 and m["sampler"]["n"] == 5
    assert [s["seed"] for s in m["shards"]] == [shard_seed(11, k) for k in range(3)]
    assert [s["count"] for s in m["shards"]] == [2, 2, 1]
    assert m["counts"] == {"images": 5, "shards": 3, "files": 7, "png": 5, "npz": 0}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == set(m["files"]) | {"manifest.json"}
    for name, info in m["files"].items():
        assert _sha256_file(out / name) == info["sha256"]
        assert (out / name).stat().st_size == info["bytes"]


def test_same_seed_same_files_other_seed_other_images(gen, tmp_path):
    a = _files(export(gen, 5, tmp_path / "a", seed=2, shard_size=2))
    b = _files(export(gen, 5, tmp_path / "b", seed=2, shard_size=2))
    c = _files(export(gen, 5, tmp_path / "c", seed=3, shard_size=2))
    a.pop("manifest.json"), b.pop("manifest.json")
    assert a == b
    assert a["images/000000.png"] != c["images/000000.png"]


def test_npz_shards_hold_the_png_pixels(gen, tmp_path):
    out = export(gen, 5, tmp_path / "syn", seed=0, shard_size=2, npz=True)
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]
    with np.load(out / "shards" / "shard-00001.npz", allow_pickle=False) as z:
        assert z["images"].dtype == np.uint16
        assert z["index"].tolist() == [2, 3]
        from_npz = z["images"].astype(np.float32) / 65535.0
    ds = load_dataset(out)
    np.testing.assert_array_equal(from_npz, ds.images[2:4])
    np.testing.assert_array_equal(read_shard(out, 1).images, ds.images[2:4])
    assert verify(out).ok
    assert read_manifest(out)["counts"]["npz"] == 3


def test_per_image_conditions(gen, tmp_path):
    cond = pd.DataFrame({"age": [20, 40, 60, 80], "sex": ["F", "M", "F", "M"]})
    out = export(gen, 4, tmp_path / "syn", conditions=cond, shard_size=3)
    meta = load_dataset(out).metadata
    assert meta["age"].tolist() == [20, 40, 60, 80] and meta["sex"].tolist() == ["F", "M", "F", "M"]
    assert json.loads(read_png_labels(out / "images" / "000003.png")["conditions"]) == {"age": 80, "sex": "M"}
    with pytest.raises(DataError, match="one row per image"):
        export(gen, 5, tmp_path / "bad", conditions=cond)


def test_verify_reports_missing_altered_extra_and_unlabelled(gen, tmp_path):
    from PIL import Image

    out = export(gen, 6, tmp_path / "syn", seed=1, shard_size=3)
    res = verify(out)
    assert res.ok and bool(res) and "OK, 6 images" in str(res)

    (out / "images" / "000001.png").unlink()
    data = bytearray((out / "images" / "000002.png").read_bytes())
    data[-20] ^= 0xFF
    (out / "images" / "000002.png").write_bytes(bytes(data))
    (out / "images" / "stray.png").write_bytes(b"x")
    # an image re-saved without its labels, with the manifest patched to match
    with Image.open(out / "images" / "000004.png") as im:
        im.load()
        im.save(out / "images" / "000004.png")
    m = json.loads((out / "manifest.json").read_text())
    m["files"]["images/000004.png"] = {
        "sha256": _sha256_file(out / "images" / "000004.png"),
        "bytes": (out / "images" / "000004.png").stat().st_size,
    }
    (out / "manifest.json").write_text(json.dumps(m))

    res = verify(out)
    assert not res.ok
    assert res.missing == ["images/000001.png"]
    assert res.altered == ["images/000002.png"]
    assert res.extra == ["images/stray.png"]
    assert res.unlabelled == ["images/000004.png"]
    report = str(res)
    for word in (
        "FAILED",
        "missing files (1)",
        "images/000001.png",
        "altered",
        "images/000002.png",
        "not in the manifest",
        "images/stray.png",
        "AI-generated label",
        "images/000004.png",
    ):
        assert word in report


def test_verify_notices_metadata_row_dropped(gen, tmp_path):
    out = export(gen, 4, tmp_path / "syn", shard_size=2)
    meta = pd.read_csv(out / "metadata.csv")
    meta.iloc[:3].to_csv(out / "metadata.csv", index=False)
    res = verify(out)
    assert res.altered == ["metadata.csv"]
    assert any("3 rows for 4 images" in p for p in res.problems)


def test_verify_without_manifest_and_not_a_folder(tmp_path):
    res = verify(tmp_path)
    assert not res.ok and "no manifest.json" in str(res)
    with pytest.raises(DataError, match="not a folder"):
        verify(tmp_path / "nope")


def test_cancelled_export_resumes_without_rewriting_finished_shards(gen, tmp_path):
    out = tmp_path / "syn"
    seen = []

    def stop_after_two_shards(done, total):
        seen.append((done, total))
        return done < 4

    with pytest.raises(CancelledError):
        export(gen, 10, out, seed=4, shard_size=2, callback=stop_after_two_shards)
    assert seen == [(2, 10), (4, 10)]
    assert not (out / "manifest.json").exists()
    records = sorted(p.name for p in (out / ".progress").glob("shard-*.json"))
    assert records == ["shard-00000.json", "shard-00001.json"]
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{i:06d}.png" for i in range(4)]
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "images").iterdir()}

    progress = []
    export(gen, 10, out, seed=4, shard_size=2, callback=lambda d, t: progress.append(d))
    assert progress == [6, 8, 10]  # resumed after the 4 images already done
    for name, (mtime, data) in before.items():
        p = out / "images" / name
        assert p.stat().st_mtime_ns == mtime and p.read_bytes() == data
    assert not (out / ".progress").exists()
    assert verify(out).ok
    clean = export(gen, 10, tmp_path / "clean", seed=4, shard_size=2)
    assert _files(out).keys() == _files(clean).keys()
    assert {k: v for k, v in _files(out).items() if k != "manifest.json"} == {
        k: v for k, v in _files(clean).items() if k != "manifest.json"
    }


def test_crash_leftovers_are_cleaned_and_unrecorded_shards_redone(gen, tmp_path):
    out = tmp_path / "syn"
    with pytest.raises(CancelledError):
        export(gen, 6, out, seed=0, shard_size=2, callback=lambda d, t: False)
    # what a process killed inside shard 1 leaves: a temporary file and a stray image, no record
    (out / "images" / ".000002.png.1234-abcd.tmp").write_bytes(b"half")
    (out / "images" / "000002.png").write_bytes(b"half-written")
    # and a damaged record of shard 0 (its image altered after it was recorded)
    (out / "images" / "000000.png").write_bytes(b"garbage")
    export(gen, 6, out, seed=0, shard_size=2)
    assert not list(out.rglob("*.tmp"))
    res = verify(out)
    assert res.ok, str(res)
    clean = export(gen, 6, tmp_path / "clean", seed=0, shard_size=2)
    assert (out / "images" / "000000.png").read_bytes() == (clean / "images" / "000000.png").read_bytes()
    assert (out / "images" / "000002.png").read_bytes() == (clean / "images" / "000002.png").read_bytes()


def test_folder_in_use_needs_overwrite(gen, tmp_path):
    out = tmp_path / "syn"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="overwrite=True"):
        export(gen, 2, out)
    export(gen, 2, out, overwrite=True)
    assert not (out / "notes.txt").exists() and verify(out).ok

    # the same finished export again: nothing is rewritten
    mtime = (out / "images" / "000000.png").stat().st_mtime_ns
    assert export(gen, 2, out) == out
    assert (out / "images" / "000000.png").stat().st_mtime_ns == mtime
    # other settings on a finished export
    with pytest.raises(DataError, match="finished export with other settings"):
        export(gen, 2, out, seed=9)
    export(gen, 3, out, seed=9, overwrite=True)
    assert len(load_dataset(out)) == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, "n must be at least 1"),
        ({"n": 2.5}, "n must be an integer"),
        ({"n": 2, "shard_size": 0}, "shard_size"),
        ({"n": 2, "seed": -1}, "seed"),
        ({"n": 2, "conditions": "age=3"}, "conditions must be"),
    ],
)
def test_bad_arguments(gen, tmp_path, kwargs, match):
    with pytest.raises(DataError, match=match):
        export(gen, out=tmp_path / "x", **kwargs)


def test_generator_errors_surface_as_project_errors(gen, tmp_path):
    with pytest.raises(MedsynthError, match="outside the range"):
        export(gen, 2, tmp_path / "x", conditions={"age": 5})
    with pytest.raises(DataError, match="Generator"):
        export(object(), 2, tmp_path / "y")


def test_builtin_physics_generator_by_name(tmp_path):
    from medsynth_explore.generators import load_generator

    out = export(
        "phantomcxr-physics", 3, tmp_path / "syn", conditions={"sex": "F", "findings": ["effusion"]}, seed=1, shard_size=2
    )
    ds = load_dataset(out)
    assert ds.metadata["sex"].tolist() == ["F"] * 3 and ds.metadata["effusion"].tolist() == [1, 1, 1]
    gen = load_generator("phantomcxr-physics")
    m = read_manifest(out)
    assert m["generator"]["name"] == gen.name and m["generator"]["checkpoint_sha256"] == gen.sha256
    first = gen.sample(2, conditions={"sex": "F", "findings": ["effusion"]}, seed=shard_seed(1, 0)).images
    # 64 x 64 images carry the watermark: the files hold exactly the generator's images, marked, then quantised
    np.testing.assert_array_equal(ds.images[:2], _quantised(embed_watermark(first, gen.sha256)))
    assert m["provenance"]["watermark"]["embedded"] and m["provenance"]["watermark"]["payload"][
        "model_sha256_prefix"
    ] == hash_prefix(gen.sha256)
    assert verify(out, check_watermark=True).ok


# --------------------------------------------------------------------------- the shard module export and scale share
def test_export_and_scale_share_one_shard_module(tmp_path):
    from medsynth_explore import export as export_module
    from medsynth_explore import scale, shards

    shared = (
        "DEFAULT_SHARD_SIZE",
        "shard_seed",
        "plan_shards",
        "get_client",
        "run_shards",
        "conditions_table",
        "shard_conditions",
        "sample_shard",
        "resolve_generator",
        "read_manifest",
        "read_shard",
    )
    for name in shared:
        assert getattr(scale, name) is getattr(shards, name), name
    for name in ("read_manifest", "read_shard", "DEFAULT_SHARD_SIZE", "FORMAT", "MANIFEST"):
        assert getattr(export_module, name) is getattr(shards, name), name
    # the former private names of scale stay importable
    assert (scale._check_int, scale._ClientScope, scale._remote_ref) == (shards.check_int, shards.ClientScope, shards.remote_ref)
    out = export(NoiseGenerator(), 5, tmp_path / "x", shard_size=2, seed=4)
    manifest = shards.read_manifest(out)
    assert [s["seed"] for s in manifest["shards"]] == [shards.shard_seed(4, k) for k in range(3)]
    assert len(shards.read_shard(out, 2)) == 1


def test_shard_helpers_check_their_input():
    from medsynth_explore.shards import ClientScope, check_int, conditions_table, resolve_encoder

    assert check_int(np.int32(4), "n", 1) == 4
    with pytest.raises(DataError, match="n must be an integer, got True"):
        check_int(True, "n", 1)
    with pytest.raises(DataError, match="one row per image"):
        conditions_table([{"age": 40}], 2)
    with pytest.raises(DataError, match="one dict per image"):
        conditions_table([{"age": 40}, 3], 2)

    class Client:  # a client given by the caller is used, and left open
        closed = False

        def submit(self, *args, **kwargs): ...

        def close(self):
            self.closed = True

    given = Client()
    with ClientScope(given) as client:
        assert client is given
    assert not given.closed
    enc = resolve_encoder("pixels", {"size": 4})
    assert enc is resolve_encoder("pixels", {"size": 4}) and enc is not resolve_encoder("pixels", {"size": 8})
    assert resolve_encoder(enc) is enc
