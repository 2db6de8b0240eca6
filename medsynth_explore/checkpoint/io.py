"""Reading and writing checkpoints: one ``.safetensors`` file per model.

The file holds the weights and, in its header metadata, the model card as a
JSON string under ``"medsynth_card"`` plus ``"medsynth_format": "1"``. The card
records the name, shape and dtype of every tensor and a digest of the weights,
so a file whose weights were swapped or damaged is caught on load.

Pickle-based files (``.pt``, ``.pth``, ``.ckpt``, ``.bin``) are refused unless
the caller passes ``allow_pickle=True``; even then they are read with
``torch.load(weights_only=True)``, which refuses arbitrary Python objects.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import CheckpointError
from .card import validate_card

__all__ = [
    "FORMAT_VERSION",
    "CARD_KEY",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "file_sha256",
    "weights_digest",
    "detect_format",
]

FORMAT_VERSION = "1"
CARD_KEY = "medsynth_card"
FORMAT_KEY = "medsynth_format"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl")
_MAX_HEADER = 100 * 1024 * 1024


@dataclass
class Checkpoint:
    """Weights and model card read from one file.

    Attributes
    ----------
    tensors : dict of str to torch.Tensor
    card : dict
    sha256 : str
        SHA-256 of the file's bytes.
    path : str
    """

    tensors: dict
    card: dict
    sha256: str
    path: str
    format: str = "safetensors"
    extra: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"Checkpoint(name={self.card.get('name')!r}, family={self.card.get('family')!r}, "
            f"tensors={len(self.tensors)}, sha256={self.sha256[:12]}..., path={self.path!r})"
        )


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.bin"
    >>> _ = p.write_bytes(b"abc")
    >>> file_sha256(p)[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint file {str(path)!r} does not exist; check the path.") from exc
    return h.hexdigest()


def weights_digest(tensors: Mapping[str, Any]) -> str:
    """SHA-256 over tensor names, dtypes, shapes and bytes (order independent).

    Examples
    --------
    >>> import torch
    >>> weights_digest({"w": torch.zeros(2)}) == weights_digest({"w": torch.zeros(2)})
    True
    >>> weights_digest({"w": torch.zeros(2)}) == weights_digest({"w": torch.ones(2)})
    False
    """
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(-1).view(dtype=_byte_dtype()).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _byte_dtype():
    import torch

    return torch.uint8


def detect_format(path: str | os.PathLike) -> str:
    """Guess a checkpoint file's format from its first bytes.

    Returns ``"safetensors"``, ``"pickle"`` (a torch zip archive or a raw
    pickle stream) or ``"unknown"``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
    >>> _ = p.write_text("hello")
    >>> detect_format(p)
    'unknown'
    """
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint file {str(path)!r} does not exist; check the path.") from exc
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= _MAX_HEADER and head[8:9] == b"{":
            return "safetensors"
    if head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
        return "pickle"
    return "unknown"


def save_checkpoint(path: str | os.PathLike, tensors: Mapping[str, Any], card: Mapping[str, Any]) -> str:
    """Write weights and a model card to one ``.safetensors`` file.

    The card is validated, completed with ``tensor_shapes``, ``tensor_dtypes``
    and ``weights_digest``, and stored in the header. The file is written to a
    temporary name in the same folder and then renamed, so a crash never
    leaves a half-written checkpoint under the final name.

    Parameters
    ----------
    path : path-like
        Output file; should end in ``.safetensors``.
    tensors : mapping of str to torch.Tensor
    card : mapping
        Model card (see :func:`medsynth_explore.checkpoint.new_card`).

    Returns
    -------
    str
        SHA-256 of the written file.

    Examples
    --------
    >>> import torch, tempfile, pathlib
    >>> from medsynth_explore.checkpoint import new_card
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.safetensors"
    >>> sha = save_checkpoint(p, {"w": torch.ones(2, 3)}, new_card("m", "vae", {}))
    >>> load_checkpoint(p).tensors["w"].shape
    torch.Size([2, 3])
    """
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(
            f"checkpoints are written as .safetensors files; got {path.name!r}. Use a name ending in .safetensors."
        )
    clean: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"tensor names must be non-empty strings, got {name!r}.")
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"tensor {name!r} is a {type(t).__name__}, not a torch.Tensor.")
        clean[name] = t.detach().cpu().contiguous().clone()
    c = validate_card(card)
    c["tensor_shapes"] = {k: list(v.shape) for k, v in sorted(clean.items())}
    c["tensor_dtypes"] = {k: str(v.dtype).replace("torch.", "") for k, v in sorted(clean.items())}
    c["weights_digest"] = weights_digest(clean)
    meta = {CARD_KEY: json.dumps(c, sort_keys=True, allow_nan=False), FORMAT_KEY: FORMAT_VERSION}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(clean, tmp, metadata=meta)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return file_sha256(path)


def _check_card_against_tensors(card: dict, tensors: Mapping[str, Any], path: str) -> None:
    shapes = card.get("tensor_shapes")
    if shapes is not None:
        want = {k: list(v) for k, v in shapes.items()}
        have = {k: list(v.shape) for k, v in tensors.items()}
        if want != have:
            missing = sorted(set(want) - set(have))
            extra = sorted(set(have) - set(want))
            wrong = sorted(k for k in set(want) & set(have) if want[k] != have[k])
            parts = []
            if missing:
                parts.append(f"missing tensors {missing[:5]}")
            if extra:
                parts.append(f"unexpected tensors {extra[:5]}")
            if wrong:
                parts.append(f"shape mismatch for {wrong[:5]} (card {want[wrong[0]]}, file {have[wrong[0]]})")
            raise CheckpointError(
                f"checkpoint {path!r}: the weights do not match the model card ({'; '.join(parts)}). "
                "The file was modified or assembled from different models; re-export it with save_checkpoint."
            )
    digest = card.get("weights_digest")
    if digest is not None and weights_digest(tensors) != digest:
        raise CheckpointError(
            f"checkpoint {path!r}: the weights digest does not match the one recorded in the model card, "
            "so the weights are corrupt or were changed after saving. Re-download or re-train the checkpoint."
        )


def _load_safetensors(path: Path) -> tuple[dict, dict]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(
                f"{str(path)!r} is too short to be a safetensors file ({size} bytes); it is truncated or not a checkpoint."
            )
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER or 8 + n > size:
            raise CheckpointError(
                f"{str(path)!r} is not a valid safetensors file: its header claims {n} bytes but the file has {size}. "
                "The file is truncated or corrupt; fetch or save it again."
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{str(path)!r}: the safetensors header is not valid JSON ({exc}); the file is corrupt.") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{str(path)!r}: the safetensors header is not a JSON object; the file is corrupt.")
    meta = header.get("__metadata__") or {}
    if CARD_KEY not in meta:
        raise CheckpointError(
            f"{str(path)!r} is a safetensors file without a medsynth model card (header key {CARD_KEY!r}). "
            "Wrap foreign weights with medsynth_explore.checkpoint.save_checkpoint(path, tensors, card)."
        )
    fmt = meta.get(FORMAT_KEY, FORMAT_VERSION)
    if fmt != FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} uses checkpoint format {fmt!r}; this version reads format {FORMAT_VERSION!r}. Upgrade "
            "medsynth-explore."
        )
    try:
        card = json.loads(meta[CARD_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{str(path)!r}: the model card in the header is not valid JSON ({exc}).") from exc
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{str(path)!r}: cannot read the weights ({exc}); the file is truncated or corrupt.") from exc
    return tensors, card


def _load_pickle(path: Path) -> tuple[dict, dict]:
    import pickle

    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as exc:
        raise CheckpointError(
            f"{str(path)!r} could not be read with torch.load(weights_only=True): it holds Python objects other than "
            f"tensors and plain containers, or is corrupt ({str(exc).splitlines()[0][:200]}). Such files can run code when "
            "unpickled, so they are refused; convert the weights to safetensors in a trusted environment."
        ) from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{str(path)!r} holds a {type(obj).__name__}; expected a dict of tensors (a state dict).")
    card = obj.get("card")
    if isinstance(card, str):
        try:
            card = json.loads(card)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{str(path)!r}: its 'card' entry is not valid JSON.") from exc
    state = obj.get("state_dict", obj.get("tensors"))
    if state is None:
        state = {k: v for k, v in obj.items() if k != "card"}
    if card is None:
        for side in (path.with_suffix(".json"), Path(str(path) + ".json"), path.with_name(path.stem + ".card.json")):
            if side.is_file():
                try:
                    card = json.loads(side.read_text())
                except json.JSONDecodeError as exc:
                    raise CheckpointError(f"sidecar model card {str(side)!r} is not valid JSON ({exc}).") from exc
                break
    if card is None:
        raise CheckpointError(
            f"{str(path)!r} has no model card: put one under a 'card' key in the file or in a sidecar "
            f"{path.with_suffix('.json').name!r} next to it."
        )
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{str(path)!r}: entries {bad[:5]} are not tensors; expected a flat state dict.")
    return dict(state), card


def load_checkpoint(path: str | os.PathLike, allow_pickle: bool = False) -> Checkpoint:
    """Read a checkpoint file and check it against its model card.

    Parameters
    ----------
    path : path-like
        A ``.safetensors`` file written by :func:`save_checkpoint`, or (with
        ``allow_pickle=True``) a ``.pt``/``.pth``/``.ckpt`` state dict whose card
        sits under a ``"card"`` key or in a sidecar JSON file.
    allow_pickle : bool, default False
        Opt in to pickle-based files. They are still read with
        ``torch.load(weights_only=True)``, which refuses arbitrary objects.

    Returns
    -------
    Checkpoint

    Raises
    ------
    CheckpointError
        For a missing, truncated, corrupt or non-checkpoint file, a missing or
        invalid card, weights that do not match the card, or a pickle file
        without ``allow_pickle=True``.

    Examples
    --------
    >>> import torch, tempfile, pathlib
    >>> from medsynth_explore.checkpoint import new_card
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.safetensors"
    >>> _ = save_checkpoint(p, {"w": torch.zeros(3)}, new_card("m", "gan", {}))
    >>> ck = load_checkpoint(p)
    >>> ck.card["name"], len(ck.sha256)
    ('m', 64)
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint file {str(path)!r} does not exist; check the path.")
    if path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a folder, not a checkpoint file; give the .safetensors file inside it.")
    fmt = detect_format(path)
    if fmt == "pickle" or (fmt == "unknown" and path.suffix.lower() in PICKLE_SUFFIXES):
        if not allow_pickle:
            raise CheckpointError(
                f"{str(path)!r} is a pickle-based checkpoint. Unpickling can run arbitrary code, so it is refused by "
                "default. If you trust the file, pass allow_pickle=True (it is then read with "
                "torch.load(weights_only=True)), or convert it to .safetensors."
            )
        tensors, card = _load_pickle(path)
        fmt = "pickle"
    elif fmt == "safetensors":
        tensors, card = _load_safetensors(path)
    else:
        raise CheckpointError(
            f"{str(path)!r} is not a safetensors checkpoint (its first bytes do not form a safetensors header). "
            "It may be truncated, corrupt or a different kind of file."
        )
    card = validate_card(card)
    _check_card_against_tensors(card, tensors, str(path))
    return Checkpoint(tensors=tensors, card=card, sha256=file_sha256(path), path=str(path), format=fmt)
