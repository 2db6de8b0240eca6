"""Inception-v3 with the standard FID weights (pytorch-fid's port of the TF graph).

The weights file is pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``
(from https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/).
It is never downloaded here; it is looked up, in order, at

1. the ``weights`` argument,
2. the environment variable ``MEDSYNTH_INCEPTION_WEIGHTS``,
3. the torch hub cache, ``<torch.hub.get_dir()>/checkpoints/pt_inception-2015-12-05-*.pth``
   (where ``pytorch_fid`` itself stores it after a download).

It is read with ``torch.load(weights_only=True)`` (no arbitrary unpickling).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from ..errors import FeatureError, OfflineError
from .base import Encoder, file_hash

__all__ = ["InceptionEncoder", "FID_WEIGHTS_NAME", "find_inception_weights", "build_fid_inception"]

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
_PATTERN = "pt_inception-2015-12-05-*.pth"
_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_NAME


def _hub_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def find_inception_weights(weights: Optional[str | os.PathLike] = None) -> Path:
    """Path of the FID Inception weights, or OfflineError saying where to put them.

    Examples
    --------
    >>> find_inception_weights("/nonexistent/pt_inception.pth")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    medsynth_explore.errors.OfflineError: ...
    """
    if weights is not None:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise OfflineError(f"Inception weights file {p} does not exist. Download {_URL} and pass its path.")
        return p
    env = os.environ.get("MEDSYNTH_INCEPTION_WEIGHTS")
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise OfflineError(f"MEDSYNTH_INCEPTION_WEIGHTS points to {p}, which does not exist. Download {_URL} to that path.")
        return p
    hub = _hub_dir()
    found = sorted(hub.glob(_PATTERN)) if hub.is_dir() else []
    if found:
        return found[0]
    raise OfflineError(
        f"the FID Inception weights {FID_WEIGHTS_NAME} are not on this machine and cannot be downloaded here. "
        f"Fetch {_URL} on a machine with internet access and either put it in {hub}/ "
        "or set MEDSYNTH_INCEPTION_WEIGHTS=/path/to/" + FID_WEIGHTS_NAME + " (or pass weights=path)."
    )


def build_fid_inception():
    """The FID Inception-v3 graph (torchvision Inception3 with pytorch-fid's patched blocks), untrained.

    Examples
    --------
    >>> net = build_fid_inception()  # doctest: +SKIP
    """
    try:
        from pytorch_fid.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2
    except ImportError as exc:
        raise FeatureError("the Inception encoder needs the pytorch-fid package: pip install pytorch-fid") from exc
    from torchvision.models import inception_v3

    net = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE_1(1280)
    net.Mixed_7c = FIDInceptionE_2(2048)
    return net


class InceptionEncoder(Encoder):
    """2048-d pool features of the FID Inception-v3.

    Images are prepared as documented in :mod:`medsynth_explore.features.base`:
    grayscale repeated on 3 channels, resized to 299x299 with antialiased
    bilinear interpolation, then scaled from [0, 1] to [-1, 1]. (pytorch-fid
    resizes inside the network without antialiasing; for inputs already at
    299x299 the two are identical, for smaller radiographs the antialiased
    resize is used here and recorded in :attr:`id`.)

    Parameters
    ----------
    weights : path, optional
        The ``pt_inception-2015-12-05-*.pth`` file (see :func:`find_inception_weights`).
    device : str
    dtype : str or torch.dtype, optional
        Precision of the network (float32 by default; FID is defined in float32).

    Raises
    ------
    OfflineError
        When the weights are not on this machine.

    Examples
    --------
    >>> enc = InceptionEncoder()  # doctest: +SKIP
    >>> enc.dim  # doctest: +SKIP
    2048
    """

    def __init__(self, weights: Optional[str | os.PathLike] = None, device: Any = "cpu", dtype: Any = None):
        import torch

        path = find_inception_weights(weights)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise FeatureError(f"cannot read Inception weights {path} as a plain state dict: {exc}") from exc
        net = build_fid_inception()
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise FeatureError(f"{path} is not a pytorch-fid Inception state dict ({str(exc)[:200]}...).") from exc
        net.fc = torch.nn.Identity()
        net.dropout = torch.nn.Identity()
        self.model = self._place(net, device, dtype)
        self.weights_path = str(path)
        self.channels = 3
        self.input_size = (299, 299)
        self.mean, self.std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        self.dim = 2048
        self.default_batch_size = 32
        self.id = f"inception-v3-fid-{file_hash(path, 8)}-299px-bilinear-aa{self.precision_tag}"

    def _forward(self, x):
        m = self.model
        # the pool3 path of the FID Inception graph (up to the global average pool)
        for name in (
            "Conv2d_1a_3x3",
            "Conv2d_2a_3x3",
            "Conv2d_2b_3x3",
            "maxpool1",
            "Conv2d_3b_1x1",
            "Conv2d_4a_3x3",
            "maxpool2",
            "Mixed_5b",
            "Mixed_5c",
            "Mixed_5d",
            "Mixed_6a",
            "Mixed_6b",
            "Mixed_6c",
            "Mixed_6d",
            "Mixed_6e",
            "Mixed_7a",
            "Mixed_7b",
            "Mixed_7c",
            "avgpool",
        ):
            x = getattr(m, name)(x)
        return x.flatten(1)
