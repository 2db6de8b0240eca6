"""Where a network runs and in which precision: ``device=`` and ``dtype=`` for every generator and encoder.

One parser for both arguments, so that ``load_generator(path, device="cuda",
dtype="float16")`` and ``get_encoder("rad-dino", device="cuda", dtype="bfloat16")``
mean the same thing everywhere:

- ``device``: ``None`` or ``"cpu"`` (the default: everything works offline on
  the CPU), ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"auto"`` (CUDA when
  available, else the CPU) or a ``torch.device``. Asking for a device this
  machine does not have raises :class:`~medsynth_explore.errors.CapabilityError`
  instead of silently running elsewhere.
- ``dtype``: ``None`` (float32), ``"float32"``, ``"float16"`` / ``"fp16"`` /
  ``"half"``, ``"bfloat16"`` / ``"bf16"`` or a ``torch.dtype``: the precision of
  the network's weights and arithmetic. Images going in and out stay float32 in
  [0, 1] whatever it is (the package's convention). float16 is meant for GPUs;
  on a CPU many kernels are missing or slow, so it is refused there with a
  message that suggests bfloat16.

Examples
--------
>>> resolve_device(None)
device(type='cpu')
>>> resolve_dtype("bf16")
torch.bfloat16
>>> dtype_name(resolve_dtype(None))
'float32'
"""

from __future__ import annotations

from typing import Any

from ..errors import CapabilityError

__all__ = ["resolve_device", "resolve_dtype", "dtype_name", "quiet_loading", "DTYPE_NAMES"]

#: Accepted spellings -> torch dtype attribute names.
DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


def resolve_device(device: Any = None):
    """A ``torch.device`` for ``device``, checked against this machine.

    Raises
    ------
    CapabilityError
        A device this machine lacks (e.g. ``"cuda"`` without a GPU), or a
        name torch does not know.

    Examples
    --------
    >>> resolve_device("cpu").type
    'cpu'
    >>> resolve_device("auto").type in ("cpu", "cuda")
    True
    """
    import torch

    if device is None:
        return torch.device("cpu")
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = device if isinstance(device, torch.device) else torch.device(str(device).strip())
    except (RuntimeError, TypeError) as exc:
        raise CapabilityError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'.") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CapabilityError(
                f"device={device!r} was asked for but CUDA is not available on this machine "
                "(torch.cuda.is_available() is False); use device='cpu' (or 'auto')."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CapabilityError(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise CapabilityError(f"device={device!r} was asked for but Apple MPS is not available here; use 'cpu'.")
    elif dev.type != "cpu":
        raise CapabilityError(f"device type {dev.type!r} is not supported; use 'cpu', 'cuda', 'cuda:N' or 'mps'.")
    return dev


def resolve_dtype(dtype: Any = None, device: Any = None):
    """A floating ``torch.dtype`` for ``dtype`` (``None`` = float32), checked against ``device``.

    Raises
    ------
    CapabilityError
        An unknown or non-floating dtype, or float16 on the CPU.

    Examples
    --------
    >>> import torch
    >>> resolve_dtype(torch.float16, "cpu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    medsynth_explore.errors.CapabilityError: dtype float16 on the CPU ...
    """
    import torch

    if dtype is None:
        out = torch.float32
    elif isinstance(dtype, torch.dtype):
        out = dtype
    else:
        name = DTYPE_NAMES.get(str(dtype).strip().lower().replace("torch.", ""))
        if name is None:
            raise CapabilityError(f"unknown dtype {dtype!r}; use one of {sorted(set(DTYPE_NAMES))}.")
        out = getattr(torch, name)
    if out not in (torch.float32, torch.float16, torch.bfloat16):
        raise CapabilityError(f"dtype must be float32, float16 or bfloat16, got {out}.")
    if out == torch.float16 and device is not None and resolve_device(device).type == "cpu":
        raise CapabilityError(
            "dtype float16 on the CPU is refused: many CPU kernels lack half precision and the rest are slow. "
            "Use dtype='bfloat16' (or float32) on the CPU, float16 on a GPU."
        )
    return out


def dtype_name(dtype: Any) -> str:
    """``"float32"`` for ``torch.float32`` (for cards, ids and metadata).

    Examples
    --------
    >>> import torch
    >>> dtype_name(torch.bfloat16)
    'bfloat16'
    """
    return str(dtype).replace("torch.", "")


class quiet_loading:
    """Silence the progress bars diffusers and transformers print while loading weights, for one block.

    Only libraries already imported are touched (nothing is imported for this).

    Examples
    --------
    >>> with quiet_loading():
    ...     pass
    """

    _MODULES = ("diffusers.utils.logging", "transformers.utils.logging")

    def __enter__(self):
        import importlib
        import sys

        self._restore = []
        for name in self._MODULES:
            if name.split(".")[0] not in sys.modules:
                continue
            log = importlib.import_module(name)
            if log.is_progress_bar_enabled():
                log.disable_progress_bar()
                self._restore.append(log)
        return self

    def __exit__(self, *exc):
        for log in self._restore:
            log.enable_progress_bar()
        return False
