"""The anatomy segmenter: right lung, left lung and heart in a frontal chest radiograph.

A small U-Net trained on PhantomCXR radiographs and the simulator's
ground-truth masks (:func:`~medsynth_explore.anatomy.truth.truth_masks`)
labels every pixel as background, right lung, left lung or heart. Like the
reference classifier it trains on randomly blurred, contrast-scaled and noisy
copies, because generators smooth and add noise and a segmenter that keys on
fine texture would blame them for its own blind spot.

The shipped checkpoint is ``assets/phantomcxr-segmenter.safetensors``;
:func:`~medsynth_explore.anatomy.training.train_segmenter` reproduces it
(``medsynth train --model segmenter``).
A researcher's own model stands in through :func:`load_segmenter`: a torch
module (e.g. TorchXRayVision's ``baseline_models.chestx_det.PSPNet()``,
whose ``targets`` name its output channels), a TorchScript file, a state-dict
file with the function that builds its network, or TorchXRayVision's
ChestX-Det weights by name (``"chestx-det"``). Pickle-based files load only
with ``allow_pickle=True``, and then with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import CheckpointError, DataError, OfflineError
from .truth import STRUCTURES

__all__ = [
    "SEGMENTER_ASSET",
    "Segmenter",
    "ModuleSegmenter",
    "load_segmenter",
    "CHESTX_DET_URL",
]

SEGMENTER_ASSET = Path(__file__).resolve().parent.parent / "assets" / "phantomcxr-segmenter.safetensors"
#: Where TorchXRayVision keeps its ChestX-Det PSPNet weights, and where they come from.
CHESTX_DET_URL = "https://github.com/mlmed/torchxrayvision/releases/download/v1/pspnet_chestxray_best_model_4.pth"
CHESTX_DET_FILE = Path("~/.torchxrayvision/models_data/pspnet_chestxray_best_model_4.pth")

# names a foreign model may give our structures (compared lower-case, spaces and dashes as underscores)
_ALIASES = {
    "right_lung": ("right_lung", "lung_right", "rightlung", "r_lung"),
    "left_lung": ("left_lung", "lung_left", "leftlung", "l_lung"),
    "heart": ("heart", "cardiac", "heart_silhouette"),
}


def _network(width: int = 16):
    """A four-level U-Net: 1 input channel, 1 + len(STRUCTURES) output classes."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    def block(cin, cout):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    w = (width, 2 * width, 4 * width, 6 * width)

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down = nn.ModuleList([block(1, w[0]), block(w[0], w[1]), block(w[1], w[2]), block(w[2], w[3])])
            self.up = nn.ModuleList([block(w[3] + w[2], w[2]), block(w[2] + w[1], w[1]), block(w[1] + w[0], w[0])])
            self.head = nn.Conv2d(w[0], 1 + len(STRUCTURES), 1)

        def forward(self, x):
            skips = []
            for i, b in enumerate(self.down):
                x = b(x if i == 0 else F.max_pool2d(x, 2))
                skips.append(x)
            x = skips.pop()
            for b in self.up:
                s = skips.pop()
                x = b(torch.cat([F.interpolate(x, size=s.shape[-2:], mode="bilinear", align_corners=False), s], 1))
            return self.head(x)

    return UNet()


def _grey(images: Any) -> np.ndarray:
    """Checked float32 (N, 1, H, W) images in [0, 1] (RGB averaged to grey)."""
    from ..data.imageset import as_image_array

    arr = as_image_array(getattr(images, "images", images), "images")
    if arr.shape[1] == 3:
        arr = arr.mean(1, keepdims=True)
    elif arr.shape[1] != 1:
        raise DataError(f"the segmenter takes grey or RGB images, got {arr.shape[1]} channels.")
    if len(arr) == 0:
        raise DataError("no images to segment.")
    return arr


def _resize(x, size):
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(size):
        return x
    down = x.shape[-1] > size[-1]
    return F.interpolate(x, size=tuple(size), mode="bilinear", antialias=down, align_corners=False)


class _SegmenterBase:
    """What every segmenter offers: per-structure probabilities and masks at the images' own resolution."""

    structures = STRUCTURES
    name = "segmenter"
    sha256: str | None = None
    card: dict = {}

    def probabilities(self, images: Any, batch_size: int = 128) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, images: Any, batch_size: int = 128) -> dict[str, np.ndarray]:
        """Masks of :data:`STRUCTURES`: name -> bool (N, H, W), at the images' resolution.

        A pixel belongs to the structure of highest probability when that
        probability is at least 0.5 (structures do not overlap).
        """
        p = self.probabilities(images, batch_size=batch_size)
        best = p.argmax(1)
        on = p.max(1) >= 0.5
        return {name: on & (best == k) for k, name in enumerate(self.structures)}

    def describe(self) -> dict:
        """Name, checkpoint SHA-256 and source, for provenance records."""
        return {"segmenter": self.name, "segmenter_sha256": self.sha256}


class Segmenter(_SegmenterBase):
    """The shipped anatomy segmenter (or one written by :func:`train_segmenter`).

    Parameters
    ----------
    path : path-like, optional
        A checkpoint of family ``"segmenter"`` (written by
        :func:`~medsynth_explore.anatomy.training.train_segmenter`); default the shipped one.

    Attributes
    ----------
    size : int
        Resolution the network works at; other images are resized to it and
        the probabilities back to the images' size.
    card : dict
        The model card, with held-out Dice and CTR error under ``metrics`` and
        the plausible ranges of every measurement under ``plausible_ranges``.

    Examples
    --------
    >>> from medsynth_explore.phantom import simulate
    >>> seg = Segmenter()
    >>> masks = seg.predict(simulate(2, seed=0).images)
    >>> sorted(masks), masks["heart"].shape
    (['heart', 'left_lung', 'right_lung'], (2, 64, 64))
    """

    def __init__(self, path: Any = None) -> None:
        from ..checkpoint import load_checkpoint

        path = Path(path) if path is not None else SEGMENTER_ASSET
        if not path.is_file():
            raise CheckpointError(
                f"segmenter checkpoint {str(path)!r} is missing; train it with "
                "`medsynth train --model segmenter --data phantomcxr --out FILE`."
            )
        ckpt = load_checkpoint(path)
        if ckpt.card.get("family") != "segmenter":
            raise CheckpointError(f"{str(path)!r} is a {ckpt.card.get('family')!r} checkpoint, not a segmenter.")
        arch = ckpt.card["architecture"]
        if list(arch.get("structures", STRUCTURES)) != list(STRUCTURES):
            raise CheckpointError(f"{str(path)!r} segments {arch.get('structures')}, expected {list(STRUCTURES)}.")
        self.size = int(arch["image_size"])
        self.net = _network(int(arch["width"]))
        try:
            self.net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt.tensors.items()})
        except RuntimeError as exc:
            raise CheckpointError(f"weights in {str(path)!r} do not fit the segmenter described by its card: {exc}") from exc
        self.net.eval()
        self.card, self.sha256, self.path = dict(ckpt.card), ckpt.sha256, str(path)
        self.name = str(self.card.get("name", "segmenter"))

    def probabilities(self, images: Any, batch_size: int = 128) -> np.ndarray:
        """Probability of each structure per pixel: float32 (N, 3, H, W) at the images' resolution."""
        import torch

        x = torch.from_numpy(_grey(images))
        h, w = x.shape[-2:]
        out = []
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                logits = self.net(_resize(x[i : i + batch_size], (self.size, self.size)))
                logits = _resize(logits, (h, w))
                out.append(torch.softmax(logits, 1)[:, 1:].numpy())
        return np.concatenate(out).astype(np.float32)


def _norm(name: str) -> str:
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def _channels(targets: Sequence[str]) -> list[int]:
    """Output channel of each of :data:`STRUCTURES` among a model's target names."""
    names = [_norm(t) for t in targets]
    out = []
    for s in STRUCTURES:
        hit = [i for i, n in enumerate(names) if n in _ALIASES[s]]
        if not hit:
            raise DataError(
                f"the segmentation model's targets {list(targets)} name no {s.replace('_', ' ')}; "
                f"give targets= naming its output channels (e.g. 'Right Lung', 'Left Lung', 'Heart')."
            )
        out.append(hit[0])
    return out


class ModuleSegmenter(_SegmenterBase):
    """A researcher's torch segmentation model behind the segmenter interface.

    Parameters
    ----------
    module : torch.nn.Module or callable
        Takes a float tensor (N, C, H, W) and returns logits (N, K, h, w)
        (a tuple or dict output uses its first / ``"out"`` entry).
    targets : sequence of str, optional
        Name of each output channel; default ``module.targets`` (as
        TorchXRayVision models have). Right lung, left lung and heart must be
        among them (``"Right Lung"``, ``"left_lung"``, ...).
    input_range : (float, float)
        Pixel values the model expects for black and white: ``(0, 1)`` for
        this package's convention, ``(-1024, 1024)`` for TorchXRayVision.
    input_size : int, optional
        Side the images are resized to before the model (None: as given).
    channels : int
        Input channels the model expects (1 or 3; grey is repeated).
    activation : {"sigmoid", "softmax"}
        How logits become probabilities: independent per channel (sigmoid,
        TorchXRayVision) or one class per pixel (softmax).
    name : str, optional
        Recorded with every measurement.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Conv2d(1, 3, 1)
    >>> seg = ModuleSegmenter(net, targets=["Heart", "Left Lung", "Right Lung"])
    >>> seg.probabilities(np.zeros((2, 1, 16, 16), np.float32)).shape
    (2, 3, 16, 16)
    """

    def __init__(
        self,
        module: Any,
        targets: Sequence[str] | None = None,
        input_range: tuple[float, float] = (0.0, 1.0),
        input_size: int | None = None,
        channels: int = 1,
        activation: str = "sigmoid",
        name: str | None = None,
    ) -> None:
        if not callable(module):
            raise DataError(f"a segmentation model must be a torch module or a callable, got {type(module).__name__}.")
        targets = targets if targets is not None else getattr(module, "targets", None)
        if targets is None:
            raise DataError("the segmentation model has no .targets; pass targets=[...] naming its output channels.")
        if activation not in ("sigmoid", "softmax"):
            raise DataError(f"activation must be 'sigmoid' or 'softmax', got {activation!r}.")
        if channels not in (1, 3):
            raise DataError(f"channels must be 1 or 3, got {channels!r}.")
        lo, hi = (float(v) for v in input_range)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise DataError(f"input_range must be (black, white) with white > black, got {input_range!r}.")
        self.module, self.targets, self.index = module, list(targets), _channels(targets)
        self.input_range, self.input_size, self.channels, self.activation = (lo, hi), input_size, channels, activation
        self.name = name or type(module).__name__
        if hasattr(module, "eval"):
            module.eval()
        try:
            from ..features.base import state_dict_hash

            self.sha256 = state_dict_hash(module, 64) if hasattr(module, "state_dict") else None
        except Exception:  # a scripted or exotic module without plain tensors: no weights digest
            self.sha256 = None

    def probabilities(self, images: Any, batch_size: int = 16) -> np.ndarray:
        import torch

        x = torch.from_numpy(_grey(images))
        h, w = x.shape[-2:]
        lo, hi = self.input_range
        out = []
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                xb = x[i : i + batch_size]
                if self.input_size:
                    xb = _resize(xb, (self.input_size, self.input_size))
                xb = lo + (hi - lo) * xb
                if self.channels == 3:
                    xb = xb.repeat(1, 3, 1, 1)
                y = self.module(xb)
                if isinstance(y, dict):
                    y = y.get("out", next(iter(y.values())))
                elif isinstance(y, (tuple, list)):
                    y = y[0]
                if not hasattr(y, "shape") or y.ndim != 4 or y.shape[0] != len(xb) or y.shape[1] < max(self.index) + 1:
                    raise DataError(
                        f"the segmentation model returned {getattr(y, 'shape', type(y).__name__)}; expected logits "
                        f"(N, {len(self.targets)}, h, w) for its targets {self.targets}."
                    )
                y = _resize(y.float(), (h, w))
                p = torch.sigmoid(y) if self.activation == "sigmoid" else torch.softmax(y, 1)
                out.append(p[:, self.index].numpy())
        return np.concatenate(out).astype(np.float32)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.split("/", 1)[-1].startswith("code/") or n.endswith("/constants.pkl") for n in z.namelist())


def _strip_prefix(state: dict) -> dict:
    """Drop the ``module.`` prefix DataParallel adds (TorchXRayVision's ChestX-Det file has it)."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state


def _chestx_det(allow_pickle: bool, path: Any, **kw: Any) -> ModuleSegmenter:
    """TorchXRayVision's ChestX-Det PSPNet (14 structures, 512 px, inputs in [-1024, 1024])."""
    file = Path(os.path.expanduser(str(path or CHESTX_DET_FILE)))
    if not file.is_file():
        raise OfflineError(
            f"the ChestX-Det segmentation weights {str(file)!r} are not on this machine (nothing is downloaded). "
            f"On a connected machine run `mkdir -p {file.parent} && wget {CHESTX_DET_URL} -O {file}` and copy the file here."
        )
    if not allow_pickle:
        raise CheckpointError(
            f"{str(file)!r} is a pickle-based state dict. Unpickling can run arbitrary code, so it is refused by default; "
            "if you trust the file, pass allow_pickle=True (it is then read with torch.load(weights_only=True))."
        )
    try:
        from torchxrayvision.baseline_models.chestx_det import PSPNet
        from torchxrayvision.baseline_models.chestx_det.ptsemseg.pspnet import pspnet
    except ImportError as exc:
        raise CheckpointError("the ChestX-Det segmenter needs TorchXRayVision: pip install torchxrayvision.") from exc
    import torch

    state = _strip_prefix(torch.load(file, map_location="cpu", weights_only=True))
    net = pspnet(len(_CHESTX_DET_TARGETS))
    net.load_state_dict(state)
    wrapper = PSPNet.__new__(PSPNet)  # TorchXRayVision's wrapper without its own download and unrestricted load
    torch.nn.Module.__init__(wrapper)
    import torchvision

    wrapper.transform = torchvision.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    wrapper._targets = list(kw.pop("targets", None) or _CHESTX_DET_TARGETS)
    wrapper.model = net.eval()
    wrapper.upsample = torch.nn.Upsample(size=(512, 512), mode="bilinear", align_corners=False)
    return ModuleSegmenter(wrapper, input_range=(-1024.0, 1024.0), activation="sigmoid", name="chestx-det-pspnet", **kw)


#: Output channels of TorchXRayVision's ChestX-Det PSPNet, in order.
_CHESTX_DET_TARGETS = (
    "Left Clavicle",
    "Right Clavicle",
    "Left Scapula",
    "Right Scapula",
    "Left Lung",
    "Right Lung",
    "Left Hilus Pulmonis",
    "Right Hilus Pulmonis",
    "Heart",
    "Aorta",
    "Facies Diaphragmatica",
    "Mediastinum",
    "Weasand",
    "Spine",
)


def load_segmenter(
    source: Any = None,
    *,
    allow_pickle: bool = False,
    architecture: Callable[[], Any] | None = None,
    path: Any = None,
    **kwargs: Any,
) -> _SegmenterBase:
    """A segmenter from a name, a file, a torch module or an existing segmenter.

    Parameters
    ----------
    source : None, str, path, torch.nn.Module or segmenter
        ``None`` or ``"phantomcxr-segmenter"``: the shipped one. A
        ``.safetensors`` file of family ``"segmenter"``. A TorchScript file or
        a state-dict file (``.pt``/``.pth``; only with ``allow_pickle=True``;
        a state dict needs ``architecture``). ``"chestx-det"``:
        TorchXRayVision's ChestX-Det PSPNet from its weights file (``path``,
        default ``~/.torchxrayvision/models_data/pspnet_chestxray_best_model_4.pth``).
        A torch module: wrapped by :class:`ModuleSegmenter`.
    allow_pickle : bool
        Opt in to pickle-based files (read with ``torch.load(weights_only=True)``).
    architecture : callable, optional
        Builds the network a state-dict file's weights load into.
    path : path-like, optional
        The weights file of ``"chestx-det"``.
    **kwargs
        For foreign models: ``targets``, ``input_range``, ``input_size``,
        ``channels``, ``activation``, ``name`` (see :class:`ModuleSegmenter`).

    Examples
    --------
    >>> load_segmenter().name
    'phantomcxr-segmenter'
    >>> load_segmenter("model.pt")
    Traceback (most recent call last):
    ...
    medsynth_explore.errors.CheckpointError: segmentation model file 'model.pt' does not exist; check the path.
    """
    if source is None or (isinstance(source, str) and source.lower() in ("phantomcxr-segmenter", "phantomcxr")):
        if kwargs:
            raise DataError(f"options {sorted(kwargs)} apply to foreign segmentation models, not the shipped one.")
        return Segmenter()
    if isinstance(source, _SegmenterBase):
        return source
    if isinstance(source, str) and _norm(source) in ("chestx_det", "torchxrayvision", "xrv"):
        return _chestx_det(allow_pickle, path, **kwargs)
    if isinstance(source, (str, os.PathLike)):
        file = Path(source)
        if not file.is_file():
            raise CheckpointError(f"segmentation model file {str(source)!r} does not exist; check the path.")
        from ..checkpoint import detect_format

        if detect_format(file) == "safetensors":
            return Segmenter(file)
        if not allow_pickle:
            raise CheckpointError(
                f"{str(file)!r} is a pickle-based file. Unpickling can run arbitrary code, so it is refused by default; "
                "if you trust the file, pass allow_pickle=True (it is then read with torch.load(weights_only=True))."
            )
        import torch

        if _is_torchscript(file):
            module = torch.jit.load(str(file), map_location="cpu")
            return ModuleSegmenter(module, name=kwargs.pop("name", file.name), **kwargs)
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"cannot read {str(file)!r} as a state dict of tensors: {str(exc)[:300]}") from exc
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{str(file)!r} does not hold a flat state dict of tensors.")
        if architecture is None:
            raise DataError(
                f"{str(file)!r} holds weights only; pass architecture=<function building the network> to load them into."
            )
        module = architecture()
        try:
            module.load_state_dict(_strip_prefix(state))
        except RuntimeError as exc:
            raise CheckpointError(f"the weights in {str(file)!r} do not fit the given architecture: {str(exc)[:300]}") from exc
        return ModuleSegmenter(module, name=kwargs.pop("name", file.name), **kwargs)
    if callable(source):
        return ModuleSegmenter(source, **kwargs)
    raise DataError(f"cannot make a segmenter from a {type(source).__name__}; give a path, 'chestx-det', a torch module or None.")
