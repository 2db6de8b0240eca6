"""Fuzzing the loaders with hypothesis: whatever a CSV, a DICOM header or an image file holds, only MedsynthError comes out."""

from __future__ import annotations

import io
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from medsynth_explore import load_dataset
from medsynth_explore.errors import MedsynthError

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _load(path, **kw):
    """Load, returning the set or the MedsynthError; anything else fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # skipped-file notes
        try:
            data = load_dataset(path, **kw)
            for _ in data.batches(8):
                pass
            return data
        except MedsynthError as exc:
            return exc


class _Folder:
    def __enter__(self):
        self.path = Path(tempfile.mkdtemp(prefix="fuzz-"))
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


# --------------------------------------------------------------------------- CSV contents
CELLS = st.one_of(
    st.sampled_from(
        [
            "a.png",
            "b.jpg",
            "../a.png",
            "/etc/passwd",
            "",
            "sub/../a.png",
            "a.png\x00",
            "CheXpert-v1.0-small/a.png",
            "1.0",
            "-1.0",
            "0",
            "Male",
            "Female",
            "Frontal",
            "Lateral",
            "AP",
            "PA",
            "nan",
            "9" * 40,
            "ünïcode",
            '"',
            ",",
        ]
    ),
    st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(-(10**12), 10**12).map(str),
)
COLUMNS = st.sampled_from(
    [
        "filename",
        "file",
        "Path",
        "Sex",
        "Age",
        "Frontal/Lateral",
        "AP/PA",
        "Pleural Effusion",
        "No Finding",
        "sex",
        "age",
        "effusion",
        "Finding Labels",
        "Patient Age",
        "view",
        "x",
        "filename",
    ]
)


@FUZZ
@given(
    header=st.lists(COLUMNS, min_size=1, max_size=6),
    rows=st.lists(st.lists(CELLS, min_size=0, max_size=7), min_size=0, max_size=6),
    raw=st.binary(max_size=60),
    use_raw=st.booleans(),
)
def test_any_csv_gives_a_set_or_a_medsynth_error(header, rows, raw, use_raw):
    with _Folder() as d:
        Image.fromarray(np.zeros((6, 6), np.uint8)).save(d / "a.png")
        Image.fromarray(np.zeros((6, 6), np.uint8)).save(d / "b.jpg")
        if use_raw:
            (d / "metadata.csv").write_bytes(raw)
        else:

            def cell(v):
                return '"' + v.replace('"', '""') + '"' if any(ch in v for ch in ',"\n\r') else v

            text = ",".join(header) + "\n" + "\n".join(",".join(cell(v) for v in r) for r in rows)
            (d / "metadata.csv").write_text(text, encoding="utf-8", errors="surrogatepass")
        (d / "train.csv").write_bytes((d / "metadata.csv").read_bytes())
        for kw in ({}, {"layout": "folder", "size": 4}, {"layout": "chexpert"}, {"layout": "folder", "on_error": "skip"}):
            out = _load(d, **kw)
            assert isinstance(out, MedsynthError) or len(out) >= 1


# --------------------------------------------------------------------------- DICOM headers
TEXT = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=8),
    st.sampled_from(["", "0", "1", "-1", "12", "NaN", "1e309", "abc", "045Y", "018M", "\\"]),
)


@FUZZ
@given(
    rows=st.integers(0, 65535),
    cols=st.integers(0, 65535),
    bits_allocated=st.sampled_from([0, 1, 8, 12, 16, 32, 64]),
    bits_stored=st.integers(0, 40),
    signed=st.integers(0, 2),
    samples=st.integers(0, 4),
    photometric=st.sampled_from(["MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "XYZ", ""]),
    frames=TEXT,
    center=TEXT,
    width=TEXT,
    slope=TEXT,
    function=st.sampled_from(["LINEAR", "SIGMOID", "LINEAR_EXACT", "NONSENSE", ""]),
    age=TEXT,
    n_bytes=st.integers(0, 600),
    drop_pixels=st.booleans(),
)
def test_any_dicom_header_gives_a_set_or_a_medsynth_error(
    rows,
    cols,
    bits_allocated,
    bits_stored,
    signed,
    samples,
    photometric,
    frames,
    center,
    width,
    slope,
    function,
    age,
    n_bytes,
    drop_pixels,
):
    import pydicom.config
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "DX"
    mode = pydicom.config.settings.writing_validation_mode
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE  # write what a broken scanner might
    try:
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_stored, max(0, bits_stored - 1)
        ds.PixelRepresentation, ds.SamplesPerPixel, ds.PhotometricInterpretation = signed, samples, photometric
        # text fields written as LO, whatever their proper VR: the file then holds the value as it is, as a broken writer would
        for tag, value in (
            (0x00280008, frames),
            (0x00281050, center),
            (0x00281051, width),
            (0x00281053, slope),
            (0x00281056, function),
            (0x00101010, age),
        ):
            if value:
                ds.add_new(tag, "LO", value)
        if not drop_pixels:
            ds.PixelData = np.random.default_rng(n_bytes).integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
    except Exception:  # pydicom refuses to write some values at all: such a file cannot exist
        assume(False)
    finally:
        pydicom.config.settings.writing_validation_mode = mode
    with _Folder() as d:
        (d / "x.dcm").write_bytes(buf.getvalue())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pydicom's notes on invalid values as it reads them
            for kw in ({}, {"size": 8}, {"on_error": "skip"}, {"voi": "none", "lazy": True}):
                _load(d, **kw)


# --------------------------------------------------------------------------- image bytes
def _image_bytes(fmt):
    a = np.random.default_rng(0).integers(0, 256, (12, 10), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format=fmt)
    return buf.getvalue()


@FUZZ
@given(
    fmt=st.sampled_from(["PNG", "JPEG", "TIFF", "BMP"]),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 10_000)),
    name=st.sampled_from(["x.img", "x.jpg"]),  # a .jpg name takes the greyscale-JPEG decoder first
)
def test_any_damaged_image_file_gives_a_set_or_a_medsynth_error(fmt, edits, cut, name):
    data = bytearray(_image_bytes(fmt))
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    with _Folder() as d:
        (d / name).write_bytes(bytes(data))
        (d / "metadata.csv").write_text(f"filename\n{name}\n")
        for kw in ({"lazy": False}, {"lazy": True}, {"size": 5, "aspect": "pad"}):
            _load(d, **kw)


def test_the_fuzzers_reach_both_outcomes():
    """The generated inputs include loadable ones, so the properties above test more than error paths."""
    with _Folder() as d:
        (d / "x.img").write_bytes(_image_bytes("PNG"))
        (d / "metadata.csv").write_text("filename\nx.img\n")
        assert len(_load(d)) == 1
        (d / "metadata.csv").write_text("filename\n../x.img\n")
        assert isinstance(_load(d), MedsynthError)


@pytest.mark.parametrize("value", ["yes", "maybe", 2.0, "-1", None])
def test_label_values_outside_the_vocabulary_are_data_errors(value):
    from medsynth_explore.data.labels import finding_values
    from medsynth_explore.errors import DataError

    try:
        out = finding_values([value])
        assert out.isna().all() or set(out.dropna().tolist()) <= {0, 1}
    except DataError:
        assert value in ("maybe", 2.0)
