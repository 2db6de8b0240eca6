"""Checkpoint format: round trip, hashes, corruption, pickle policy, card checks."""

from __future__ import annotations

import hashlib
import json
import pickle
import struct

import pytest
import torch

from medsynth_explore.checkpoint import (
    CARD_KEY,
    detect_format,
    file_sha256,
    format_card,
    load_checkpoint,
    new_card,
    save_checkpoint,
    validate_card,
    weights_digest,
)
from medsynth_explore.errors import CheckpointError


def _tensors():
    g = torch.Generator().manual_seed(0)
    return {"enc.weight": torch.randn(4, 3, generator=g), "enc.bias": torch.randn(4, generator=g), "steps": torch.arange(3)}


def _card(**kw):
    return new_card("tiny", "vae", {"latent_dim": 2}, training_data={"dataset": "unit", "size": 3}, **kw)


@pytest.fixture
def saved(tmp_path):
    p = tmp_path / "m.safetensors"
    sha = save_checkpoint(p, _tensors(), _card())
    return p, sha


def test_round_trip_keeps_tensors_and_card(saved):
    p, sha = saved
    ck = load_checkpoint(p)
    for k, v in _tensors().items():
        assert torch.equal(ck.tensors[k], v)
        assert ck.tensors[k].dtype == v.dtype
    assert ck.card["name"] == "tiny"
    assert ck.card["training_data"] == {"dataset": "unit", "size": 3}
    assert ck.card["tensor_shapes"] == {"enc.bias": [4], "enc.weight": [4, 3], "steps": [3]}
    assert ck.card["weights_digest"] == weights_digest(_tensors())
    assert ck.sha256 == sha
    assert ck.format == "safetensors"


def test_sha256_matches_hashlib_and_changes_with_content(saved, tmp_path):
    p, sha = saved
    assert sha == hashlib.sha256(p.read_bytes()).hexdigest() == file_sha256(p)
    t = _tensors()
    t["enc.bias"] = t["enc.bias"] + 1
    sha2 = save_checkpoint(tmp_path / "other.safetensors", t, _card())
    assert sha2 != sha


def test_no_temp_files_left_behind(saved, tmp_path):
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.safetensors"]


def test_card_is_in_header_metadata(saved):
    from safetensors import safe_open

    p, _ = saved
    with safe_open(str(p), "pt") as f:
        meta = f.metadata()
    assert meta["medsynth_format"] == "1"
    assert json.loads(meta[CARD_KEY])["family"] == "vae"


def test_truncated_file_is_refused(saved):
    p, _ = saved
    data = p.read_bytes()
    for cut in (4, 20, len(data) // 2, len(data) - 3):
        p.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated|corrupt|not a safetensors"):
            load_checkpoint(p)


def test_flipped_header_bytes_are_refused(saved):
    p, _ = saved
    data = bytearray(p.read_bytes())
    (n,) = struct.unpack("<Q", bytes(data[:8]))
    for pos in (9, 8 + n // 2, 8 + n - 2):
        bad = bytearray(data)
        bad[pos] ^= 0xFF
        p.write_bytes(bytes(bad))
        with pytest.raises(CheckpointError):
            load_checkpoint(p)


def test_flipped_weight_bytes_fail_the_digest(saved):
    p, _ = saved
    data = bytearray(p.read_bytes())
    data[-2] ^= 0x01  # inside the tensor data, header intact
    p.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="digest"):
        load_checkpoint(p)


def test_non_safetensors_files_are_refused(tmp_path):
    p = tmp_path / "notes.safetensors"
    p.write_text("this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a safetensors"):
        load_checkpoint(p)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="folder"):
        load_checkpoint(tmp_path)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError):
        load_checkpoint(empty)


def test_safetensors_without_card_is_refused(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(p))
    assert detect_format(p) == "safetensors"
    with pytest.raises(CheckpointError, match="model card"):
        load_checkpoint(p)


def _write_raw(path, tensors, card):
    """A safetensors file whose card was written by hand (no consistency fields added)."""
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata={CARD_KEY: json.dumps(card), "medsynth_format": "1"})


def test_card_weight_shape_mismatch_is_refused(tmp_path):
    card = _card()
    card["tensor_shapes"] = {"enc.weight": [4, 3], "enc.bias": [5], "steps": [3]}
    p = tmp_path / "m.safetensors"
    _write_raw(p, _tensors(), card)
    with pytest.raises(CheckpointError, match="shape mismatch.*enc.bias"):
        load_checkpoint(p)
    card["tensor_shapes"] = {"enc.weight": [4, 3]}
    _write_raw(p, _tensors(), card)
    with pytest.raises(CheckpointError, match="unexpected tensors"):
        load_checkpoint(p)


def test_swapped_weights_fail_the_digest(tmp_path):
    card = _card()
    card["tensor_shapes"] = {k: list(v.shape) for k, v in _tensors().items()}
    card["weights_digest"] = weights_digest(_tensors())
    other = {k: (v + 1 if v.is_floating_point() else v) for k, v in _tensors().items()}
    p = tmp_path / "m.safetensors"
    _write_raw(p, other, card)
    with pytest.raises(CheckpointError, match="digest"):
        load_checkpoint(p)


def test_invalid_cards_are_refused(tmp_path):
    p = tmp_path / "m.safetensors"
    _write_raw(p, {"w": torch.zeros(1)}, {"name": "x", "family": "unicorn", "architecture": {}})
    with pytest.raises(CheckpointError, match="family 'unicorn'"):
        load_checkpoint(p)
    with pytest.raises(CheckpointError, match="architecture"):
        validate_card({"name": "x", "family": "gan"})
    with pytest.raises(CheckpointError, match="JSON"):
        validate_card({"name": "x", "family": "gan", "architecture": {"f": object()}})
    with pytest.raises(CheckpointError, match="mapping"):
        validate_card(["not", "a", "card"])


def test_save_refuses_bad_input(tmp_path):
    with pytest.raises(CheckpointError, match=".safetensors"):
        save_checkpoint(tmp_path / "m.pt", _tensors(), _card())
    with pytest.raises(CheckpointError, match="not a torch.Tensor"):
        save_checkpoint(tmp_path / "m.safetensors", {"w": [1, 2]}, _card())


# -- pickle policy ----------------------------------------------------------------------------
def test_pickle_checkpoint_refused_without_opt_in(tmp_path):
    p = tmp_path / "m.pt"
    torch.save({"state_dict": _tensors(), "card": _card()}, p)
    assert detect_format(p) == "pickle"
    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        load_checkpoint(p)


def test_pickle_checkpoint_loads_with_opt_in(tmp_path):
    p = tmp_path / "m.pt"
    torch.save({"state_dict": _tensors(), "card": _card()}, p)
    ck = load_checkpoint(p, allow_pickle=True)
    assert ck.format == "pickle"
    assert torch.equal(ck.tensors["enc.weight"], _tensors()["enc.weight"])
    assert ck.card["name"] == "tiny"


def test_pickle_checkpoint_with_sidecar_card(tmp_path):
    p = tmp_path / "m.ckpt"
    torch.save(_tensors(), p)
    with pytest.raises(CheckpointError, match="no model card"):
        load_checkpoint(p, allow_pickle=True)
    (tmp_path / "m.json").write_text(json.dumps(_card()))
    ck = load_checkpoint(p, allow_pickle=True)
    assert set(ck.tensors) == set(_tensors())


_EXECUTED: list = []


def _payload_target(msg):
    """What a malicious pickle would run; records the call instead of doing harm."""
    _EXECUTED.append(msg)
    return msg


class _Payload:
    def __reduce__(self):
        return (_payload_target, ("payload ran",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_malicious_pickle_refused_even_with_opt_in(tmp_path):
    _EXECUTED.clear()
    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump({"state_dict": {"w": torch.zeros(1)}, "card": _card(), "x": _Payload()}, f)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(p, allow_pickle=True)
    # torch zip format with the same payload
    p2 = tmp_path / "evil2.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Payload()}, p2)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(p2, allow_pickle=True)
    assert _EXECUTED == []
    # sanity check of the test itself: a plain unpickle would have run the payload
    with open(p, "rb") as f:
        pickle.load(f)
    assert _EXECUTED == ["payload ran"]


def test_format_card_is_readable(saved):
    p, sha = saved
    ck = load_checkpoint(p)
    text = format_card(ck.card, sha)
    assert text.startswith("# tiny (vae)")
    assert sha in text
    assert "## Training data" in text and "dataset: unit" in text
    assert "weights: 3 tensors" in text
