"""ImageSet and the loaders, on files the tests make."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medsynth_explore import DataError, load_dataset
from medsynth_explore.data import ImageSet, as_image_array, write_folder


def _set(n=6, size=8, seed=0):
    rng = np.random.default_rng(seed)
    images = np.rint(rng.random((n, 1, size, size)) * 65535) / 65535
    meta = pd.DataFrame(
        {
            "patient_id": [f"P{i // 2}" for i in range(n)],
            "age": rng.integers(18, 90, n),
            "sex": ["F", "M"] * (n // 2),
            "effusion": rng.integers(0, 2, n),
            "side": ["none", "left"] * (n // 2),
            "report": [f'Finding, number {i}; "quoted"' for i in range(n)],
        }
    )
    return ImageSet(images.astype(np.float32), meta, {"source": "test", "seed": seed})


# --------------------------------------------------------------------------- ImageSet
def test_imageset_validates_shape_range_nan_and_rows():
    with pytest.raises(DataError, match="shape"):
        ImageSet(np.zeros((2, 2, 2, 2, 2), np.float32))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        ImageSet(np.full((1, 1, 4, 4), 2.0))
    bad = np.zeros((3, 1, 4, 4), np.float32)
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN or infinite values in 1 image"):
        ImageSet(bad)
    with pytest.raises(DataError, match="one row per image"):
        ImageSet(np.zeros((3, 1, 4, 4)), pd.DataFrame({"a": [1, 2]}))
    with pytest.raises(DataError, match="numeric"):
        as_image_array(np.array([["a"]]))


def test_imageset_converts_layouts_and_hashes():
    s = ImageSet(np.zeros((8, 8), np.float64))
    assert s.images.dtype == np.float32 and s.shape == (1, 1, 8, 8)
    a, b = _set(seed=1), _set(seed=1)
    assert a.content_hash == b.content_hash
    assert a.content_hash != _set(seed=2).content_hash
    hashes = a.image_hashes()
    assert len(set(hashes)) == len(a) and hashes == b.image_hashes()


def test_subset_query_and_indexing():
    s = _set()
    f = s.query("sex == 'F'")
    assert len(f) == 3 and set(f.metadata.sex) == {"F"}
    np.testing.assert_array_equal(f.images, s.images[::2])
    assert f.provenance["parent_hash"] == s.content_hash
    assert len(s[1:3]) == 2 and len(s[0]) == 1 and len(s[[0, 5]]) == 2
    assert len(s.subset(s.metadata.effusion.to_numpy() == 1)) == int(s.metadata.effusion.sum())
    with pytest.raises(DataError, match="query"):
        s.query("no_such_column > 1")
    with pytest.raises(DataError, match="out of range"):
        s[[10]]
    with pytest.raises(DataError, match="boolean mask"):
        s.subset(np.ones(3, bool))


def test_split_keeps_patients_together_and_is_seeded():
    s = _set(n=40)
    parts = s.split((0.5, 0.25, 0.25), seed=3)
    assert sum(len(p) for p in parts.values()) == 40
    ids = [set(p.metadata.patient_id) for p in parts.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    again = s.split((0.5, 0.25, 0.25), seed=3)
    assert all(parts[k].content_hash == again[k].content_hash for k in parts)
    assert parts["train"].provenance["split"] == "train"
    with pytest.raises(DataError, match="fractions"):
        s.split((0, 0))


def test_concat_checks_shapes():
    s = _set()
    both = ImageSet.concat([s, s])
    assert len(both) == 12 and list(both.metadata.columns) == list(s.metadata.columns)
    with pytest.raises(DataError, match="different shapes"):
        ImageSet.concat([s, _set(size=4)])


# --------------------------------------------------------------------------- folders
def test_folder_round_trip_is_exact(tmp_path):
    s = _set()
    out = write_folder(s, tmp_path / "ds")
    back = load_dataset(out)
    np.testing.assert_array_equal(back.images, s.images)
    assert back.content_hash == s.content_hash
    pd.testing.assert_frame_equal(back.metadata.drop(columns="filename"), s.metadata)
    assert back.provenance["source"] == "test" and back.provenance["seed"] == 0
    with pytest.raises(DataError, match="overwrite"):
        write_folder(s, out)
    write_folder(s.subset([0, 1]), out, overwrite=True)
    assert len(load_dataset(out)) == 2
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_folder_of_8bit_and_rgb_images(tmp_path):
    grey = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "a.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "b.jpg", quality=100)
    pd.DataFrame({"file": ["a.png", "b.jpg"], "label": [0, 1]}).to_csv(tmp_path / "metadata.csv", index=False)
    ds = load_dataset(tmp_path)
    assert ds.shape == (2, 1, 8, 8)  # grey RGB collapses to one channel
    np.testing.assert_allclose(ds.images[0, 0], grey / 255.0, atol=1e-7)
    assert list(ds.metadata.columns) == ["filename", "label"]
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[..., 0] = 255
    Image.fromarray(colour).save(tmp_path / "c.png")
    pd.DataFrame({"filename": ["a.png", "c.png"]}).to_csv(tmp_path / "metadata.csv", index=False)
    assert load_dataset(tmp_path).shape == (2, 3, 8, 8)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(DataError, match="Built-in"):
        load_dataset("phantomcx")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(DataError, match="no metadata.csv"):
        load_dataset(tmp_path)
    pd.DataFrame({"name": ["a.png"]}).to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(DataError, match="no filename column"):
        load_dataset(tmp_path)
    pd.DataFrame({"filename": ["a.png", "b.png"]}).to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(DataError, match="'b.png' listed in metadata.csv is missing"):
        load_dataset(tmp_path)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(DataError, match="mixed sizes.*16x16.*Resize"):
        load_dataset(tmp_path)
    good = (tmp_path / "b.png").read_bytes()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "b.png")
    data = (tmp_path / "b.png").read_bytes()
    (tmp_path / "b.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="unreadable or truncated"):
        load_dataset(tmp_path)
    (tmp_path / "b.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="unreadable or truncated"):
        load_dataset(tmp_path)
    assert good  # the first file stays readable
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DataError, match="cannot load"):
        load_dataset(tmp_path / "x.txt")


# --------------------------------------------------------------------------- MedMNIST
def _medmnist(path, multilabel=False):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 5), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (n, 3 if multilabel else 1))
    np.savez(path, **arrays)
    return arrays


def test_medmnist_reads_splits(tmp_path):
    arrays = _medmnist(tmp_path / "m.npz")
    ds = load_dataset(tmp_path / "m.npz")
    assert ds.shape == (10, 1, 28, 28)
    assert ds.metadata.split.tolist() == ["train"] * 5 + ["val"] * 2 + ["test"] * 3
    np.testing.assert_allclose(ds.images[:5, 0] * 255, arrays["train_images"], atol=1e-4)
    np.testing.assert_array_equal(ds.metadata.label[:5], arrays["train_labels"][:, 0])
    test = load_dataset(tmp_path / "m.npz", split="test")
    assert len(test) == 3 and set(test.metadata.split) == {"test"}
    _medmnist(tmp_path / "ml.npz", multilabel=True)
    assert {"label_0", "label_1", "label_2"} <= set(load_dataset(tmp_path / "ml.npz").metadata.columns)


def test_medmnist_errors(tmp_path):
    np.savez(tmp_path / "x.npz", foo=np.zeros(3))
    with pytest.raises(DataError, match="no MedMNIST arrays"):
        load_dataset(tmp_path / "x.npz")
    _medmnist(tmp_path / "m.npz")
    with pytest.raises(DataError, match="split 'dev'"):
        load_dataset(tmp_path / "m.npz", split="dev")
    raw = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataError, match="truncated"):
        load_dataset(tmp_path / "t.npz")
    np.savez(tmp_path / "o.npz", train_images=np.array([{"a": 1}], dtype=object), train_labels=np.zeros(1))
    with pytest.raises(DataError):  # object arrays would need pickle: refused
        load_dataset(tmp_path / "o.npz")


# --------------------------------------------------------------------------- DICOM
def _write_dicom(path, pixels, age="045Y", sex="F", photometric="MONOCHROME2", bits=12):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientAge, ds.PatientSex, ds.Modality = "PX1", age, sex, "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_dicom_folder(tmp_path):
    px = np.arange(256, dtype=np.uint16).reshape(16, 16) * 16
    _write_dicom(tmp_path / "a.dcm", px, age="045Y", sex="F")
    _write_dicom(tmp_path / "b", px, age="018M", sex="M", photometric="MONOCHROME1")  # no suffix: found by preamble
    ds = load_dataset(tmp_path)
    assert ds.shape == (2, 1, 16, 16)
    meta = ds.metadata.set_index("filename")
    assert meta.loc["a.dcm", "age"] == 45 and meta.loc["a.dcm", "sex"] == "F"
    assert meta.loc["b", "age"] == pytest.approx(1.5) and meta.loc["b", "sex"] == "M"
    a = ds.images[ds.metadata.filename.tolist().index("a.dcm"), 0]
    b = ds.images[ds.metadata.filename.tolist().index("b"), 0]
    np.testing.assert_allclose(a, px / 4095, atol=1e-6)
    np.testing.assert_allclose(b, 1 - px / 4095, atol=1e-6)  # MONOCHROME1 inverted


def test_dicom_errors(tmp_path):
    px = np.zeros((16, 16), np.uint16)
    _write_dicom(tmp_path / "a.dcm", px)
    _write_dicom(tmp_path / "b.dcm", np.zeros((8, 8), np.uint16))
    with pytest.raises(DataError, match="mixed sizes"):
        load_dataset(tmp_path)
    raw = (tmp_path / "b.dcm").read_bytes()
    (tmp_path / "b.dcm").write_bytes(raw[: len(raw) - 100])
    with pytest.raises(DataError, match="corrupt, truncated"):
        load_dataset(tmp_path)


# --------------------------------------------------------------------------- the data set registry
@pytest.fixture
def registry_entries(monkeypatch):
    """Register freely in a test: the registry's tables are restored afterwards."""
    from medsynth_explore.data import registry

    registry.is_registered("phantomcxr")  # discover the entry points first, so they are part of what is restored
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))
    monkeypatch.setattr(registry, "_NAMES", dict(registry._NAMES))
    return registry


def _flat(n: int = 2, value: float = 0.5) -> ImageSet:
    """Flat grey test images."""
    return ImageSet(np.full((n, 1, 4, 4), value, np.float32), provenance={"source": "flat"})


def test_registered_data_set_loads_by_name_and_alias_case_insensitive(registry_entries):
    from medsynth_explore.data import list_datasets, register_dataset

    assert register_dataset("Flat-Test", _flat, aliases=("flat-alias",)) is _flat
    assert load_dataset("flat-test", n=3).shape == (3, 1, 4, 4)
    assert float(load_dataset("FLAT-ALIAS", value=0.25).images.max()) == 0.25
    row = list_datasets().set_index("name").loc["flat-test"]
    assert row["aliases"] == "flat-alias" and row["description"] == "Flat grey test images."
    assert row["loader"].endswith(":_flat")
    with pytest.raises(DataError, match="'flat-test' \\(alias 'flat-alias'\\)"):
        load_dataset("no-such-data-set")


def test_register_rejects_taken_names_unless_replaced(registry_entries):
    from medsynth_explore.data import register_dataset, unregister_dataset

    register_dataset("flat-test", _flat, aliases=("flat-alias",))
    register_dataset("flat-test", _flat, aliases=("flat-alias",))  # the same loader again: fine (e.g. a reload)
    with pytest.raises(DataError, match="'phantom' is taken by 'phantomcxr'"):
        register_dataset("other", lambda: _flat(), aliases=("phantom",))
    with pytest.raises(DataError, match="must be callable"):
        register_dataset("broken", "not a function")
    with pytest.raises(DataError, match="non-empty string"):
        register_dataset("  ", _flat)

    def half() -> ImageSet:
        return _flat(1, 0.5)

    register_dataset("half", half, aliases=("flat-alias",), replace=True)  # the alias moves over
    assert registry_entries.dataset_loader("flat-alias") is half
    assert registry_entries.dataset_loader("flat-test") is _flat
    unregister_dataset("flat-alias")  # by alias: the whole data set goes
    assert not registry_entries.is_registered("half") and registry_entries.is_registered("flat-test")


def test_loader_must_return_an_image_set(registry_entries):
    registry_entries.register_dataset("not-images", lambda: np.zeros((2, 1, 4, 4)))
    with pytest.raises(DataError, match="returned ndarray, not an ImageSet"):
        load_dataset("not-images")


def test_names_win_over_folders_of_the_same_name(registry_entries, tmp_path, monkeypatch):
    ImageSet(np.zeros((5, 1, 8, 8), np.float32)).to_folder(tmp_path / "flat-test")
    monkeypatch.chdir(tmp_path)
    assert load_dataset("flat-test").shape == (5, 1, 8, 8)  # a folder while the name is free
    registry_entries.register_dataset("flat-test", _flat)
    assert load_dataset("flat-test").shape == (2, 1, 4, 4)
    assert load_dataset("./flat-test").shape == (5, 1, 8, 8)  # a path is still a path


def test_phantomcxr_is_found_through_its_entry_point_without_importing_phantom():
    """The data layer does not import phantom; the entry point in pyproject.toml leads the registry there."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from medsynth_explore.data import load_dataset, list_datasets\n"
        "assert 'medsynth_explore.phantom' not in sys.modules\n"
        "ds = load_dataset('phantomcxr', n=3, size=32, cache=False)\n"
        "print(ds.shape, ds.provenance['source'], list_datasets()['name'].tolist())\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr + "\n(stale package metadata? run: pip install -e . --no-deps)"
    assert "(3, 1, 32, 32) phantomcxr" in res.stdout and "'phantomcxr'" in res.stdout


def test_a_broken_plugin_warns_and_the_rest_still_works(registry_entries, monkeypatch):
    from importlib.metadata import EntryPoint

    name = registry_entries.ENTRY_POINT_GROUP
    eps = [EntryPoint("broken", "medsynth_explore_no_such_module", name), EntryPoint("flatfn", f"{__name__}:_flat", name)]
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group=None: eps if group == name else [])
    monkeypatch.setattr(registry_entries, "_DISCOVERED", False)
    with pytest.warns(RuntimeWarning, match="could not load data set plugin 'broken'"):
        assert registry_entries.is_registered("flatfn")  # a "module:function" entry point registers the function
    assert load_dataset("flatfn", n=1).shape == (1, 1, 4, 4)
