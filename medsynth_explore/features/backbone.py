"""A torchvision or timm backbone's state dict as a feature encoder (RadImageNet-style ResNet-50 and the like).

Many medical feature extractors are published as a bare state dict for a
standard architecture: RadImageNet's PyTorch ResNet-50, DenseNet-121 and
Inception-v3, or fine-tuned timm models. The architecture is named with
``arch=``: a torchvision model name (``"resnet50"``, ``"densenet121"``...) or
``"timm:<name>"`` (``"timm:convnext_tiny"``). The network is built without
weights, the state dict is loaded into it, and the features are the globally
pooled penultimate activations (the classification head is removed; a
head in the file is allowed to be missing or ignored).

Weights: ``.safetensors`` as is; ``.pt`` / ``.pth`` / ``.bin`` are pickles and
are read only with ``allow_pickle=True``, then with ``torch.load(weights_only=True)``.
Prefixes that training wrappers add (``module.``, ``model.``, ``backbone.``,
``encoder.``) are stripped. Any other mismatch is an error that lists the
first missing and unexpected keys.

Preparation: grey repeated on 3 channels (or the network's first convolution
takes one channel), resized to ``size`` (default 224) with antialiased
bilinear interpolation, normalised with ``mean`` / ``std`` (default ImageNet's,
which torchvision and RadImageNet use; pass others when the weights say so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..errors import FeatureError
from .base import Encoder, file_hash

__all__ = ["StateDictEncoder"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_PREFIXES = ("module.", "model.", "backbone.", "encoder.", "net.")
_HEADS = ("fc.", "classifier.", "head.", "heads.", "last_linear.", "AuxLogits.")


def _build(arch: str):
    """The network without weights and without its classification head (returns module, feature dim)."""
    import torch

    if arch.startswith("timm:"):
        try:
            import timm
        except ImportError as exc:
            raise FeatureError("arch='timm:...' needs the timm package (installed with open_clip_torch).") from exc
        name = arch[5:]
        try:
            net = timm.create_model(name, pretrained=False, num_classes=0)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise FeatureError(f"timm has no model {name!r} ({exc}); see timm.list_models().") from exc
        return net, int(net.num_features)
    import torchvision

    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise FeatureError(
            f"unknown architecture {arch!r}; give a torchvision classification model name (e.g. 'resnet50', "
            "'densenet121') or 'timm:<name>'."
        )
    kw = {"aux_logits": False, "init_weights": False} if arch.startswith("inception") else {}
    net = torchvision.models.get_model(arch, weights=None, **kw)
    for attr in ("fc", "classifier", "head", "heads"):
        head = getattr(net, attr, None)
        if head is None:
            continue
        layers = list(head) if isinstance(head, torch.nn.Sequential) else [head]
        linear = [m for m in layers if isinstance(m, torch.nn.Linear)]
        if linear:
            dim = int(linear[0].in_features)
            setattr(net, attr, torch.nn.Identity())
            return net, dim
    raise FeatureError(f"cannot find the classification head of torchvision's {arch} to remove.")


def _read(path: Path, allow_pickle: bool) -> dict:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise FeatureError(f"{path.name} is not a readable safetensors file ({exc}).") from exc
    if not allow_pickle:
        raise FeatureError(
            f"{path.name} is a pickle file; pass allow_pickle=True to read it (then with torch.load(weights_only=True), "
            "tensors and plain containers only), or convert it to .safetensors."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FeatureError(
            f"cannot read {path.name} with weights_only=True ({type(exc).__name__}: {str(exc)[:200]}); it must be a "
            "state dict of tensors."
        ) from exc
    for key in ("state_dict", "model_state_dict", "model", "network"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state:
        raise FeatureError(f"{path.name} does not hold a state dict.")
    return state


class StateDictEncoder(Encoder):
    """Pooled penultimate features of a torchvision or timm network loaded from a state dict.

    Parameters
    ----------
    path : path
        ``.safetensors``, or ``.pt`` / ``.pth`` / ``.bin`` with ``allow_pickle=True``.
    arch : str
        ``"resnet50"`` (any torchvision classification model) or ``"timm:<name>"``.
    size : int
        Side the images are resized to (default 224).
    mean, std : sequence of float, optional
        Per-channel normalisation (default ImageNet's).
    allow_pickle : bool
    device, dtype : optional

    Examples
    --------
    >>> enc = StateDictEncoder("RadImageNet-ResNet50.pt", arch="resnet50", allow_pickle=True)  # doctest: +SKIP
    >>> enc.dim  # doctest: +SKIP
    2048
    """

    default_batch_size = 32

    def __init__(
        self,
        path: Any,
        arch: str,
        size: int = 224,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        allow_pickle: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FeatureError(f"weights file {path} does not exist.")
        if not isinstance(arch, str) or not arch:
            raise FeatureError("give the architecture of the state dict, e.g. arch='resnet50' or arch='timm:convnext_tiny'.")
        net, dim = _build(arch)
        state = _read(path, allow_pickle)
        for prefix in _PREFIXES:
            if all(str(k).startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
        own = set(net.state_dict())
        # the classification head was removed from the network; its weights in the file are not needed
        state = {k: v for k, v in state.items() if k in own or not str(k).startswith(_HEADS)}
        try:
            result = net.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shapes that do not fit
            raise FeatureError(f"{path.name} does not fit {arch}: {' '.join(str(exc).split())[:300]} Check arch=.") from exc
        if result.missing_keys or result.unexpected_keys:
            raise FeatureError(
                f"{path.name} does not fit {arch}: missing {list(result.missing_keys)[:5]}, "
                f"unexpected {list(result.unexpected_keys)[:5]}. Check arch=."
            )
        first = next((m for m in net.modules() if hasattr(m, "in_channels") and hasattr(m, "weight")), None)
        self.model = self._place(net, device, dtype)
        self.channels = int(getattr(first, "in_channels", 3)) if first is not None else 3
        self.input_size = (int(size), int(size))
        self.mean = tuple(mean) if mean is not None else (IMAGENET_MEAN if self.channels == 3 else (0.5,))
        self.std = tuple(std) if std is not None else (IMAGENET_STD if self.channels == 3 else (0.5,))
        if len(self.mean) != self.channels or len(self.std) != self.channels or any(s <= 0 for s in self.std):
            raise FeatureError(f"mean and std need {self.channels} values each (std > 0); got {self.mean}, {self.std}.")
        self.dim = dim
        self.arch = arch
        self.path = str(path)
        self.id = f"{arch.replace(':', '-')}-{path.stem}-{file_hash(path, 8)}-{size}px{self.precision_tag}"

    def _forward(self, x):
        out = self.model(x)
        return out.flatten(1) if out.ndim > 2 else out
