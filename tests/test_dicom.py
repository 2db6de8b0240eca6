"""DICOM as scanners write it: rescale, windows, VOI LUTs, MONOCHROME1, BitsStored, compressed syntaxes, trees, skips."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from medsynth_explore import DataError, load_dataset


def make_dicom(path, pixels, *, bits=12, signed=False, photometric="MONOCHROME2", patient="PX1", study=None, **tags):
    """Write a DX image the way a scanner would (explicit VR little endian unless compressed later)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientAge, ds.PatientSex, ds.Modality, ds.ViewPosition = patient, "050Y", "F", "DX", "PA"
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, int(signed)
    ds.PixelData = pixels.astype("<i2" if signed else "<u2").tobytes()
    for k, v in tags.items():
        setattr(ds, k, v)
    return ds


def save(ds, path):
    ds.save_as(path, enforce_file_format=True)
    return path


def _ramp(h=16, w=16, top=4095):
    return (np.arange(h * w).reshape(h, w) * (top / (h * w - 1))).round().astype(np.uint16)


# --------------------------------------------------------------------------- pixel transforms
def test_stored_range_window_rescale_and_monochrome1(tmp_path):
    px = _ramp()
    save(make_dicom(tmp_path / "plain.dcm", px), tmp_path / "plain.dcm")
    save(make_dicom(tmp_path / "inv.dcm", px, photometric="MONOCHROME1"), tmp_path / "inv.dcm")
    save(
        make_dicom(tmp_path / "win.dcm", px, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=3000, WindowWidth=2001),
        tmp_path / "win.dcm",
    )
    save(
        make_dicom(tmp_path / "sig.dcm", px, WindowCenter=2000, WindowWidth=1000, VOILUTFunction="SIGMOID"), tmp_path / "sig.dcm"
    )
    save(make_dicom(tmp_path / "bad.dcm", px, WindowCenter=100, WindowWidth=0), tmp_path / "bad.dcm")
    signed = (px.astype(np.int32) - 2048).astype(np.int16)
    save(make_dicom(tmp_path / "signed.dcm", signed, signed=True), tmp_path / "signed.dcm")
    ds = load_dataset(tmp_path)
    get = {f: ds.images[i, 0].astype(np.float64) for i, f in enumerate(ds.metadata.filename)}
    meta = ds.metadata.set_index("filename")
    np.testing.assert_allclose(get["plain.dcm"], px / 4095, atol=1e-6)
    np.testing.assert_allclose(get["inv.dcm"], 1 - px / 4095, atol=1e-6)
    v = 2.0 * px - 100  # DICOM PS3.3 C.11.2.1.2.1, LINEAR, on rescaled values
    np.testing.assert_allclose(get["win.dcm"], np.clip((v - 2999.5) / 2000 + 0.5, 0, 1), atol=1e-6)
    np.testing.assert_allclose(get["sig.dcm"], 1 / (1 + np.exp(-4 * (px - 2000.0) / 1000)), atol=1e-6)
    np.testing.assert_allclose(get["bad.dcm"], px / 4095, atol=1e-6)
    np.testing.assert_allclose(get["signed.dcm"], (signed + 2048.0) / 4095, atol=1e-6)
    assert meta.loc["win.dcm", "voi"] == "window" and meta.loc["plain.dcm", "voi"] == "stored range"
    assert meta.loc["bad.dcm", "voi"] == "stored range (invalid window)"
    assert meta.loc["win.dcm", "rescale_slope"] == 2 and meta.loc["win.dcm", "window_center"] == 3000
    assert set(meta["sex"]) == {"F"} and set(meta["age"]) == {50.0} and set(meta["view"]) == {"PA"}
    none = load_dataset(tmp_path, voi="none")
    np.testing.assert_allclose(none.images[list(none.metadata.filename).index("win.dcm"), 0], px / 4095, atol=1e-6)
    mine = load_dataset(tmp_path, voi=(2047.5, 4096))
    np.testing.assert_allclose(
        mine.images[list(mine.metadata.filename).index("plain.dcm"), 0], np.clip((px - 2047.0) / 4095 + 0.5, 0, 1), atol=1e-6
    )
    with pytest.raises(DataError, match="voi"):
        load_dataset(tmp_path, voi=(1, 0))


def test_voi_lut_sequence_is_applied(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    px = (np.arange(64).reshape(8, 8) * 16).astype(np.uint16)
    ds = make_dicom(tmp_path / "lut.dcm", px, bits=12)
    item = Dataset()
    lut = (np.sqrt(np.arange(1024) / 1023.0) * 255).round().astype(np.uint16)  # a gamma-like LUT over values 0-1023
    item.add_new(0x00283002, "US", [1024, 0, 8])  # LUTDescriptor: entries, first value mapped, bits per entry
    item.add_new(0x00283006, "US", lut.tolist())  # LUTData
    ds.VOILUTSequence = Sequence([item])
    ds.WindowCenter, ds.WindowWidth = 50, 10  # present too: the LUT wins
    save(ds, tmp_path / "lut.dcm")
    out = load_dataset(tmp_path)
    expected = lut[np.clip(px, 0, 1023)] / 255.0  # values past the LUT take its last entry
    np.testing.assert_allclose(out.images[0, 0], expected, atol=1e-6)
    assert out.metadata.loc[0, "voi"] == "lut"


# --------------------------------------------------------------------------- compressed transfer syntaxes
def test_rle_and_jpeg2000_lossless_decode_exactly(tmp_path):
    from pydicom.uid import JPEG2000Lossless, RLELossless

    px = _ramp(72, 64)  # JPEG 2000's default six resolution levels need at least 32 pixels a side
    for name, uid in (("rle.dcm", RLELossless), ("j2k.dcm", JPEG2000Lossless)):
        ds = make_dicom(tmp_path / name, px)
        ds.compress(uid)
        save(ds, tmp_path / name)
    out = load_dataset(tmp_path)
    assert set(out.metadata.transfer_syntax) == {str(RLELossless), str(JPEG2000Lossless)}
    for im in out.images:
        np.testing.assert_allclose(im[0], px / 4095, atol=1e-6)


def test_jpeg_baseline_decodes_like_the_jpeg_it_holds(tmp_path):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    img = (np.add.outer(np.arange(32), np.arange(32)) * 4).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    ds = make_dicom(tmp_path / "jpg.dcm", img.astype(np.uint16), bits=8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    save(ds, tmp_path / "jpg.dcm")
    out = load_dataset(tmp_path)
    reference = np.asarray(Image.open(io.BytesIO(buf.getvalue())), np.float64) / 255  # PIL's own decoding of the bytes
    np.testing.assert_allclose(out.images[0, 0], reference, atol=2 / 255)


def _jpeg_lossless(pixels: np.ndarray, precision: int) -> bytes:
    """A JPEG lossless (process 14, first-order prediction, SV1) codestream of one grey image, written from the standard."""

    def marker(code, payload):
        return bytes([0xFF, code]) + (len(payload) + 2).to_bytes(2, "big") + payload

    h, w = pixels.shape
    # one Huffman table: the 17 difference categories, all with 5-bit codes (canonical codes 0..16)
    dht = bytes([0x00]) + bytes([0, 0, 0, 0, 17] + [0] * 11) + bytes(range(17))
    sof = bytes([precision]) + h.to_bytes(2, "big") + w.to_bytes(2, "big") + bytes([1, 1, 0x11, 0])
    sos = bytes([1, 1, 0x00, 1, 0, 0])  # predictor 1 (left), point transform 0
    bits: list[str] = []
    x = pixels.astype(np.int64)
    for r in range(h):
        for c in range(w):
            if r == 0 and c == 0:
                pred = 1 << (precision - 1)
            elif r == 0:
                pred = x[r, c - 1]
            elif c == 0:
                pred = x[r - 1, c]
            else:
                pred = x[r, c - 1]
            d = int(x[r, c] - pred) % 65536
            d = d - 65536 if d > 32768 else d
            s = 0 if d == 0 else abs(d).bit_length()
            bits.append(format(s, "05b"))
            if 0 < s < 16:
                bits.append(format(d if d > 0 else d + (1 << s) - 1, f"0{s}b"))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    data = bytearray()
    for i in range(0, len(stream), 8):
        byte = int(stream[i : i + 8], 2)
        data.append(byte)
        if byte == 0xFF:
            data.append(0x00)  # byte stuffing
    return b"\xff\xd8" + marker(0xC4, dht) + marker(0xC3, sof) + marker(0xDA, sos) + bytes(data) + b"\xff\xd9"


def test_jpeg_lossless_decodes_exactly(tmp_path):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLosslessSV1

    rng = np.random.default_rng(0)
    px = (_ramp(12, 10).astype(np.int64) + rng.integers(-30, 30, (12, 10))).clip(0, 4095).astype(np.uint16)
    ds = make_dicom(tmp_path / "ll.dcm", px)
    ds.PixelData = encapsulate([_jpeg_lossless(px, 12)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    save(ds, tmp_path / "ll.dcm")
    out = load_dataset(tmp_path)
    np.testing.assert_allclose(out.images[0, 0], px / 4095, atol=1e-6)


def test_a_missing_codec_names_the_packages(tmp_path, monkeypatch):
    import pydicom.dataset

    save(make_dicom(tmp_path / "a.dcm", _ramp()), tmp_path / "a.dcm")

    def unavailable(self):
        raise RuntimeError("Unable to decompress 'JPEG 2000' pixel data because all plugins are missing dependencies")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(unavailable))
    with pytest.raises(DataError, match="pip install pylibjpeg"):
        load_dataset(tmp_path, lazy=False)


# --------------------------------------------------------------------------- trees, sizes, skips, patients
def test_a_tree_of_mixed_sizes_loads_with_size_and_keeps_patients_together(tmp_path):
    from pydicom.uid import generate_uid

    sizes = [(16, 16), (20, 12), (12, 24), (16, 16), (8, 8), (30, 20)]
    for i, (h, w) in enumerate(sizes):
        folder = tmp_path / f"patient{i % 3}" / f"study{i}"
        folder.mkdir(parents=True)
        save(make_dicom(folder / "IM0001", _ramp(h, w), patient=f"P{i % 3}", study=generate_uid()), folder / "IM0001")
    with pytest.raises(DataError, match="mixed sizes.*size="):
        load_dataset(tmp_path)
    out = load_dataset(tmp_path, size=16, lazy=True)
    assert out.file_backed and out.shape == (6, 1, 16, 16)
    assert sorted(zip(out.metadata.original_height, out.metadata.original_width)) == sorted(sizes)
    assert out.metadata.filename.tolist()[0] == "patient0/study0/IM0001"
    assert out.metadata.study_uid.nunique() == 6 and set(out.metadata.patient_id) == {"P0", "P1", "P2"}
    parts = out.split((0.5, 0.5), seed=0)
    assert not set(parts["train"].metadata.patient_id) & set(parts["val"].metadata.patient_id)
    assert np.isfinite(np.concatenate(list(out.batches(4)))).all()


def test_non_image_and_multi_frame_objects_are_skipped_and_reported(tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    save(make_dicom(tmp_path / "image.dcm", _ramp()), tmp_path / "image.dcm")
    multi = make_dicom(tmp_path / "multi.dcm", np.zeros((8, 8), np.uint16))
    multi.NumberOfFrames = 2
    multi.PixelData = np.zeros((2, 8, 8), "<u2").tobytes()
    save(multi, tmp_path / "multi.dcm")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR: no pixels
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr = Dataset()
    sr.file_meta = meta
    sr.SOPClassUID, sr.SOPInstanceUID, sr.Modality, sr.PatientID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
        "SR",
        "PX1",
    )
    save(sr, tmp_path / "report.dcm")
    with pytest.warns(RuntimeWarning, match="skipped 2 of 3"):
        out = load_dataset(tmp_path)
    assert out.metadata.filename.tolist() == ["image.dcm"]
    reasons = {s["file"]: s["reason"] for s in out.provenance["skipped"]}
    assert "2 frames" in reasons["multi.dcm"] and "no pixel data" in reasons["report.dcm"]


def test_damaged_and_oversized_dicoms(tmp_path):
    save(make_dicom(tmp_path / "a.dcm", _ramp()), tmp_path / "a.dcm")
    save(make_dicom(tmp_path / "b.dcm", _ramp()), tmp_path / "b.dcm")
    raw = (tmp_path / "b.dcm").read_bytes()
    (tmp_path / "b.dcm").write_bytes(raw[:-100])
    with pytest.raises(DataError, match="truncated"):
        load_dataset(tmp_path)
    with pytest.warns(RuntimeWarning, match="skipped 1 of 2"):
        assert len(load_dataset(tmp_path, on_error="skip")) == 1
    (tmp_path / "b.dcm").unlink()
    big = make_dicom(tmp_path / "big.dcm", np.zeros((4, 4), np.uint16))
    big.Rows, big.Columns = 40000, 40000
    save(big, tmp_path / "big.dcm")
    with pytest.raises(DataError, match="pixel limit"):
        load_dataset(tmp_path)
