"""TorchXRayVision's DenseNet-121 as a feature encoder and as a judge on real chest radiographs.

TorchXRayVision (Cohen et al. 2022) publishes its DenseNet weights as
*pickled whole modules* (``torch.save(model)`` of a
``torchxrayvision.models.DenseNet``), e.g.
``nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt``
for ``densenet121-res224-all``. Unpickling runs code named by the file, so:

- nothing is read without ``allow_pickle=True``; the refusal says so;
- then the file is read by a restricted unpickler that builds only an
  allowlist of classes: the DenseNet pieces (mapped by name onto this
  module's own re-implementation, so torchxrayvision need not be installed),
  torch's convolution, norm, activation, pooling, linear and container
  layers, tensors and plain containers. A zip-format file goes through
  ``torch.load(weights_only=True)`` with that allowlist; a legacy-format file
  (``torch.save`` before PyTorch 1.6) through the same allowlist here, since
  torch's own weights-only reader refuses the module source such files carry.
  Any other class in the file is refused by name;
- only the resulting state dict is kept, loaded into a freshly built network.

Preparation is TorchXRayVision's own: one channel (RGB averaged), the centre
square cropped (``XRayCenterCrop``), resized to 224 x 224 (bilinear with
antialiasing, as ``fix_resolution`` does), and intensities mapped from
[0, 1] to [-1024, 1024] (``xrv.datasets.normalize``). Features are the 1024-d
pooled DenseNet features (``features2``: ReLU then global average pool). The
18 pathology outputs (sigmoid, then the published operating-point calibration
where the weights have one) are available from :meth:`XRVDenseNetEncoder.predict`,
named in the package's label vocabulary (:mod:`medsynth_explore.data.labels`):
a judge for real images, as the reference classifier is for PhantomCXR.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FeatureError, OfflineError
from .base import Encoder, file_hash

__all__ = ["XRVDenseNetEncoder", "XRV_WEIGHTS", "XRV_TARGETS", "load_xrv_state", "pickle_globals"]

#: TorchXRayVision's output order (``DenseNet.targets``).
XRV_TARGETS = (
    "Atelectasis",
    "Consolidation",
    "Infiltration",
    "Pneumothorax",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Effusion",
    "Pneumonia",
    "Pleural_Thickening",
    "Cardiomegaly",
    "Nodule",
    "Mass",
    "Hernia",
    "Lung Lesion",
    "Fracture",
    "Lung Opacity",
    "Enlarged Cardiomediastinum",
)
_RELEASE = "https://github.com/mlmed/torchxrayvision/releases/download/v1/"
_ALL = "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"
_SUFFIX = "-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"
_CHEX_LIKE = (0, 1, 3, 4, 7, 8, 10, 14, 15, 16, 17)  # outputs the CheXpert / MIMIC-trained weights were trained on

#: Published DenseNet-121 weights: tag -> (file name, indices of the outputs they were trained on, op thresholds).
#: The operating points of "all" are TorchXRayVision's published ones; the others are used uncalibrated (sigmoid).
XRV_WEIGHTS = {
    "all": (
        _ALL,
        tuple(range(18)),
        (
            0.07422872,
            0.038290843,
            0.09814756,
            0.0098118475,
            0.023601074,
            0.0022490358,
            0.010060724,
            0.103246614,
            0.056810737,
            0.026791653,
            0.050318155,
            0.023985857,
            0.01939503,
            0.042889766,
            0.053369623,
            0.035975814,
            0.20204692,
            0.05015312,
        ),
    ),
    "nih": ("nih" + _SUFFIX, tuple(range(14)), None),
    "pc": ("pc" + _SUFFIX, tuple(range(14)) + (15,), None),
    "chex": ("chex" + _SUFFIX, _CHEX_LIKE, None),
    "mimic_nb": ("mimic_nb" + _SUFFIX, _CHEX_LIKE, None),
    "mimic_ch": ("mimic_ch" + _SUFFIX, _CHEX_LIKE, None),
    "rsna": ("kaggle" + _SUFFIX, (8, 16), None),
}


# ------------------------------------------------------------------ the network (TorchXRayVision's DenseNet layout)
def _layers():
    """The DenseNet classes, built on first use (so that importing this module does not import torch)."""
    global _CLASSES
    if _CLASSES is not None:
        return _CLASSES
    import torch
    from torch import nn

    class DenseLayer(nn.Sequential):
        """BN-ReLU-1x1 conv-BN-ReLU-3x3 conv whose output is concatenated to its input."""

        def __init__(self, c_in: int = 1, growth: int = 1, bn_size: int = 1) -> None:
            super().__init__()
            self.add_module("norm1", nn.BatchNorm2d(c_in))
            self.add_module("relu1", nn.ReLU(inplace=True))
            self.add_module("conv1", nn.Conv2d(c_in, bn_size * growth, 1, bias=False))
            self.add_module("norm2", nn.BatchNorm2d(bn_size * growth))
            self.add_module("relu2", nn.ReLU(inplace=True))
            self.add_module("conv2", nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False))
            self.drop_rate = 0.0

        def forward(self, x):
            return torch.cat([x, super().forward(x)], 1)

    class DenseBlock(nn.Sequential):
        def __init__(self, n_layers: int = 0, c_in: int = 1, growth: int = 1, bn_size: int = 1) -> None:
            super().__init__()
            for i in range(n_layers):
                self.add_module(f"denselayer{i + 1}", DenseLayer(c_in + i * growth, growth, bn_size))

    class Transition(nn.Sequential):
        def __init__(self, c_in: int = 1, c_out: int = 1) -> None:
            super().__init__()
            self.add_module("norm", nn.BatchNorm2d(c_in))
            self.add_module("relu", nn.ReLU(inplace=True))
            self.add_module("conv", nn.Conv2d(c_in, c_out, 1, bias=False))
            self.add_module("pool", nn.AvgPool2d(kernel_size=2, stride=2))

    class DenseNet(nn.Module):
        """DenseNet with one input channel and TorchXRayVision's module names (``features.*``, ``classifier``)."""

        def __init__(self, growth=32, blocks=(6, 12, 24, 16), init_features=64, bn_size=4, n_out=18) -> None:
            super().__init__()
            feats = OrderedDict(
                [
                    ("conv0", nn.Conv2d(1, init_features, 7, stride=2, padding=3, bias=False)),
                    ("norm0", nn.BatchNorm2d(init_features)),
                    ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(3, stride=2, padding=1)),
                ]
            )
            c = init_features
            for i, n in enumerate(blocks):
                feats[f"denseblock{i + 1}"] = DenseBlock(n, c, growth, bn_size)
                c += n * growth
                if i != len(blocks) - 1:
                    feats[f"transition{i + 1}"] = Transition(c, c // 2)
                    c //= 2
            feats["norm5"] = nn.BatchNorm2d(c)
            self.features = nn.Sequential(feats)
            self.classifier = nn.Linear(c, n_out)

        def pooled(self, x):
            """TorchXRayVision's ``features2``: the last dense features, ReLU, global average pool."""
            f = torch.relu(self.features(x))
            return torch.nn.functional.adaptive_avg_pool2d(f, 1).flatten(1)

        def forward(self, x):
            return self.classifier(self.pooled(x))

    _CLASSES = {"DenseNet": DenseNet, "_DenseBlock": DenseBlock, "_DenseLayer": DenseLayer, "_Transition": Transition}
    return _CLASSES


_CLASSES: dict | None = None


def _allowlist() -> dict:
    """Full global name -> object for everything a TorchXRayVision weights file may build."""
    import collections

    import torch
    from torch import nn

    own = _layers()
    allowed: dict = {}
    for module in ("torchxrayvision.models", "torchxrayvision.models.densenet", "models"):
        for name, cls in own.items():
            allowed[f"{module}.{name}"] = cls
    for name, cls in own.items():  # torchvision's DenseNet pieces have the same names and parameters
        allowed[f"torchvision.models.densenet.{name}"] = cls
    for cls in (
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.ReLU,
        nn.MaxPool2d,
        nn.AvgPool2d,
        nn.AdaptiveAvgPool2d,
        nn.Linear,
        nn.Sequential,
        nn.Dropout,
        nn.Identity,
    ):
        allowed[f"{cls.__module__}.{cls.__name__}"] = cls
    allowed["collections.OrderedDict"] = collections.OrderedDict
    allowed["torch._utils._rebuild_tensor_v2"] = torch._utils._rebuild_tensor_v2
    allowed["torch._utils._rebuild_parameter"] = torch._utils._rebuild_parameter
    for name in ("FloatStorage", "DoubleStorage", "HalfStorage", "LongStorage", "IntStorage", "ByteStorage", "BoolStorage"):
        allowed[f"torch.{name}"] = getattr(torch, name)
    allowed["__builtin__.set"] = allowed["builtins.set"] = set
    return allowed


def pickle_globals(path: Any) -> set:
    """The global names (``module.name``) a torch file's pickle refers to, read without unpickling anything.

    Examples
    --------
    >>> import tempfile, os, torch
    >>> p = os.path.join(tempfile.mkdtemp(), "w.pt")
    >>> torch.save({"w": torch.zeros(1)}, p)
    >>> sorted(pickle_globals(p))
    ['collections.OrderedDict', 'torch.FloatStorage', 'torch._utils._rebuild_tensor_v2']
    """
    path = Path(path)
    streams = []
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith("data.pkl")]
            if not names:
                raise FeatureError(f"{path.name} is a zip file without a data.pkl; it is not a torch file.")
            streams.append(io.BytesIO(z.read(names[0])))
    else:
        streams.append(io.BytesIO(path.read_bytes()[: 64 << 20]))
    found: set = set()
    for stream in streams:
        for _ in range(5):  # a legacy file is several pickles in a row (magic, version, system info, object, keys)
            strings: list = []
            try:
                for op, arg, _pos in pickletools.genops(stream):
                    if op.name == "GLOBAL":
                        found.add(str(arg).replace(" ", "."))
                    elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "SHORT_BINSTRING", "BINSTRING"):
                        strings.append(str(arg))
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        found.add(".".join(strings[-2:]))
            except Exception:  # end of the pickles, or raw storage bytes after them
                break
    return found


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _legacy_load(path: Path, allowed: dict):
    """Read a pre-1.6 ``torch.save`` file with a restricted unpickler (only ``allowed`` globals)."""
    import torch

    storages: dict = {}
    size = path.stat().st_size

    class Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            full = f"{module}.{name}"
            if full not in allowed:
                raise FeatureError(f"{path.name} refers to {full}, which is not allowed in a TorchXRayVision weights file.")
            return allowed[full]

        def persistent_load(self, pid):
            kind = pid[0]
            if kind == "module":  # a container class and its saved source: the class is allowlisted, the source ignored
                return pid[1]
            if kind != "storage":
                raise FeatureError(f"{path.name}: unexpected persistent record {kind!r}.")
            storage_type, key, _location, numel, view = pid[1:6]
            if view is not None:
                raise FeatureError(f"{path.name}: storage views of very old torch files are not supported.")
            dtype = storage_type.dtype
            nbytes = int(numel) * torch._utils._element_size(dtype)
            if nbytes > size:
                raise FeatureError(f"{path.name} declares {nbytes} bytes of weights but the file has {size}.")
            if key not in storages:
                storages[key] = torch.storage.TypedStorage(wrap_storage=torch.UntypedStorage(nbytes), dtype=dtype, _internal=True)
            return storages[key]

    with open(path, "rb") as f:
        if Restricted(f).load() != _LEGACY_MAGIC:
            raise FeatureError(f"{path.name} is neither a zip nor a legacy torch file.")
        Restricted(f).load()  # protocol version
        Restricted(f).load()  # system info
        obj = Restricted(f).load()
        keys = Restricted(f).load()
        offset = f.tell()
        for key in keys:
            ts = storages[key]
            ts._untyped_storage._set_from_file(f, offset, True, torch._utils._element_size(ts.dtype))
            offset = f.tell()
    return obj


def load_xrv_state(path: Any, allow_pickle: bool = False) -> dict:
    """The state dict of a TorchXRayVision DenseNet weights file, read as the module docstring says.

    Raises
    ------
    FeatureError
        Without ``allow_pickle``; for a class outside the allowlist; for a file that is not a torch file.
    """
    import torch

    path = Path(path)
    if not allow_pickle:
        raise FeatureError(
            f"{path.name} is a TorchXRayVision weights file: a pickled PyTorch module, which can run code when read. "
            "Pass allow_pickle=True to read it; it is then read with torch.load(weights_only=True) (or the same "
            "allowlist for legacy files), which builds only the DenseNet's layers, tensors and plain containers."
        )
    allowed = _allowlist()
    try:
        named = pickle_globals(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise FeatureError(f"cannot read {path}: {exc}") from exc
    refused = sorted(g for g in named if g not in allowed)
    if refused:
        raise FeatureError(
            f"{path.name} refers to {', '.join(refused[:5])}, which a TorchXRayVision DenseNet file does not need; "
            "it is not read."
        )
    try:
        if zipfile.is_zipfile(path):
            pairs = [(obj, name) for name, obj in allowed.items()]
            with torch.serialization.safe_globals(pairs):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        else:
            obj = _legacy_load(path, allowed)
    except FeatureError:
        raise
    except Exception as exc:  # UnpicklingError, EOFError, RuntimeError from damaged files
        raise FeatureError(
            f"{path.name} is not a readable TorchXRayVision weights file ({type(exc).__name__}: {str(exc)[:200]})."
        ) from exc
    state = obj.state_dict() if hasattr(obj, "state_dict") else obj
    if not isinstance(state, dict) or not any(str(k).startswith("features.") for k in state):
        raise FeatureError(f"{path.name} does not hold a DenseNet (no features.* weights).")
    return {k: v for k, v in state.items() if k != "op_threshs" and hasattr(v, "shape")}


def _config_of(state: dict) -> dict:
    """DenseNet hyper-parameters read from the shapes of a state dict."""
    try:
        init = int(state["features.conv0.weight"].shape[0])
        blocks = []
        b = 1
        while f"features.denseblock{b}.denselayer1.conv1.weight" in state:
            n = 0
            while f"features.denseblock{b}.denselayer{n + 1}.conv1.weight" in state:
                n += 1
            blocks.append(n)
            b += 1
        growth = int(state["features.denseblock1.denselayer1.conv2.weight"].shape[0])
        bn_size = int(state["features.denseblock1.denselayer1.conv1.weight"].shape[0]) // growth
        n_out = int(state["classifier.weight"].shape[0])
        in_ch = int(state["features.conv0.weight"].shape[1])
    except KeyError as exc:
        raise FeatureError(f"the DenseNet weights lack {exc}; this is not a TorchXRayVision DenseNet.") from exc
    if in_ch != 1:
        raise FeatureError(f"TorchXRayVision DenseNets take one channel; these weights take {in_ch}.")
    return {"growth": growth, "blocks": tuple(blocks), "init_features": init, "bn_size": bn_size, "n_out": n_out}


def _xrv_cache_dirs() -> list:
    return [Path.home() / ".torchxrayvision" / "models_data"]


class XRVDenseNetEncoder(Encoder):
    """1024-d pooled features (and 18 pathology outputs) of a TorchXRayVision DenseNet-121.

    Parameters
    ----------
    path : path, optional
        The weights file. Default: ``weights``' published file name looked up
        in ``$MEDSYNTH_MODELS/xrv-densenet121/`` and in TorchXRayVision's own
        cache (``~/.torchxrayvision/models_data/``).
    weights : str
        Which published weights (:data:`XRV_WEIGHTS`: ``"all"``, ``"nih"``,
        ``"chex"``, ``"mimic_ch"``...), for the file name and the calibration.
    allow_pickle : bool
        Required: the file is a pickled module (see the module docstring).
    calibrated : bool
        :meth:`predict` applies the published operating-point calibration when
        the weights have one (``"all"``), as TorchXRayVision's ``forward`` does.
    device, dtype : optional

    Raises
    ------
    OfflineError
        The file is not on this machine (the message gives the URL and where to put it).
    FeatureError
        Without ``allow_pickle``, or a file that is not such weights.

    Examples
    --------
    >>> enc = XRVDenseNetEncoder(allow_pickle=True)  # doctest: +SKIP
    >>> enc.dim, enc.predict(images).columns[:2].tolist()  # doctest: +SKIP
    (1024, ['p_atelectasis', 'p_consolidation'])
    """

    default_batch_size = 32

    def __init__(
        self,
        path: Any = None,
        weights: str = "all",
        allow_pickle: bool = False,
        calibrated: bool = True,
        device: Any = None,
        dtype: Any = None,
        models_dir: Any = None,
    ) -> None:
        import torch

        if weights not in XRV_WEIGHTS:
            raise FeatureError(f"unknown TorchXRayVision weights {weights!r}; choose one of {sorted(XRV_WEIGHTS)}.")
        fname, trained, threshs = XRV_WEIGHTS[weights]
        if path is None:
            from .locations import models_dir as default_dir

            where = Path(models_dir) if models_dir is not None else default_dir()
            places = [where / "xrv-densenet121" / fname] + [d / fname for d in _xrv_cache_dirs()]
            path = next((p for p in places if p.is_file()), None)
            if path is None:
                raise OfflineError(
                    f"the TorchXRayVision DenseNet weights {fname} are not on this machine (looked in "
                    f"{', '.join(str(p.parent) for p in places)}). On a connected machine run "
                    f"`curl -L -o {places[0]} {_RELEASE}{fname}`, then copy the file to {places[0]} on this machine "
                    "(or give get_encoder the file's path)."
                )
        path = Path(path).expanduser()
        if not path.is_file():
            raise OfflineError(f"{path} does not exist; download {_RELEASE}{fname} to it.")
        state = load_xrv_state(path, allow_pickle=allow_pickle)
        cfg = _config_of(state)
        net = _layers()["DenseNet"](**cfg)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:  # pragma: no cover - the config is read from the same state
            raise FeatureError(f"{path.name} does not fit a DenseNet ({str(exc)[:200]}).") from exc
        self.model = self._place(net, device, dtype)
        self.path = str(path)
        self.weights = weights
        self.channels = 1
        self.input_size = (224, 224)
        self.mean, self.std = (0.5,), (1.0 / 2048.0,)  # [0, 1] -> [-1024, 1024], TorchXRayVision's range
        self.dim = int(self.model.classifier.in_features)
        self.targets = XRV_TARGETS if cfg["n_out"] == 18 else tuple(f"output_{i}" for i in range(cfg["n_out"]))
        self.trained = tuple(i for i in trained if i < cfg["n_out"])
        self.op_threshs = None
        if calibrated and threshs is not None and cfg["n_out"] == len(threshs):
            self.op_threshs = torch.tensor(threshs, dtype=torch.float32)
        self.id = f"xrv-densenet-{weights}-{file_hash(path, 8)}-224px{self.precision_tag}"

    @property
    def normalisation(self) -> str:
        return (
            "RGB images averaged to one channel; the centre square cropped (XRayCenterCrop); resized to 224x224 with "
            "bilinear interpolation and antialiasing; intensities mapped from [0, 1] to [-1024, 1024] (TorchXRayVision's range)"
        )

    def resample(self, x: Any):
        """Centre square crop (TorchXRayVision's ``XRayCenterCrop``), then the base class's channel reduction and resize."""
        h, w = x.shape[-2:]
        if h != w:
            s = min(h, w)
            top, left = h // 2 - s // 2, w // 2 - s // 2
            x = x[..., top : top + s, left : left + s]
        return super().resample(x)

    def _forward(self, x):
        return self.model.pooled(x)

    def predict(self, images: Any, batch_size: int | None = None) -> "Any":
        """Per-image probabilities of the pathologies these weights were trained on, in the label vocabulary.

        Columns are ``p_<finding>`` with the names of :mod:`medsynth_explore.data.labels`
        (``p_pleural_effusion`` for TorchXRayVision's "Effusion", ``p_lung_lesion`` for "Lung Lesion" ...).
        With ``calibrated`` and published operating points, a value of 0.5 is the operating point.
        """
        import pandas as pd
        import torch

        from ..data.labels import CHEXPERT_LABELS, NIH_LABELS
        from .base import _batches

        bs = batch_size or self.default_batch_size
        _, batches = _batches(images, bs, self.decode_transform())  # a file-backed set streams, resized in its threads
        outs = []
        self.model.eval()
        with torch.no_grad():
            for batch in batches:
                logits = self.model(self.prepare(batch)).float().cpu()
                p = torch.sigmoid(logits)
                if self.op_threshs is not None:
                    t = self.op_threshs.expand_as(p)
                    p = torch.where(p < t, p / (t * 2), 1.0 - (1.0 - p) / ((1.0 - t) * 2))
                outs.append(p.numpy())
        probs = np.concatenate(outs) if outs else np.zeros((0, len(self.targets)), np.float32)
        vocab = {**NIH_LABELS, **CHEXPERT_LABELS}
        cols = {}
        for i in self.trained:
            name = self.targets[i]
            cols[f"p_{vocab.get(name, name.lower().replace(' ', '_'))}"] = probs[:, i].astype(np.float64)
        return pd.DataFrame(cols)
