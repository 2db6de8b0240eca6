"""Baseline encoders that need no downloaded weights: pixels and a random CNN."""

from __future__ import annotations

from typing import Any

import numpy as np  # noqa: F401 - the doctests use it

from ..errors import FeatureError
from .base import Encoder, state_dict_hash

__all__ = ["PixelEncoder", "RandomCNNEncoder"]


class PixelEncoder(Encoder):
    """Downsampled pixels as features (``size`` x ``size`` -> ``size**2`` values).

    Images are averaged to one channel and resized with antialiased bilinear
    interpolation; the flattened intensities in [0, 1] are the features. A
    transparent baseline: distances between these features are distances
    between blurred images.

    Parameters
    ----------
    size : int
        Side of the downsampled image (default 16, giving 256 features).

    Examples
    --------
    >>> enc = PixelEncoder(size=16)
    >>> enc.id, enc.dim
    ('pixels-16x16', 256)
    >>> float(enc.encode(np.ones((2, 1, 64, 64), np.float32)).mean())
    1.0
    """

    def __init__(self, size: int = 16, device: Any = "cpu", dtype: Any = None):
        from ..generators.devices import resolve_device, resolve_dtype

        size = int(size)
        if size < 1:
            raise FeatureError(f"PixelEncoder size must be a positive integer, got {size}.")
        self.size = size
        self.input_size = (size, size)
        self.channels = 1
        self.dim = size * size
        self.device = resolve_device(device)
        dt = resolve_dtype(dtype, self.device)
        self.dtype = None if str(dt) == "torch.float32" else dt
        self.default_batch_size = 256
        self.id = f"pixels-{size}x{size}{self.precision_tag}"

    def _forward(self, x):
        return x.reshape(len(x), -1)


class RandomCNNEncoder(Encoder):
    """A small convolutional network with seeded random weights.

    Random-feature networks are a known baseline for generative-model metrics:
    they carry no ImageNet bias, yet their features respond to texture and
    structure more than raw pixels. The architecture is four stride-2 3x3
    convolutions with ReLU, then global average pooling; weights are He-normal
    (zero biases) drawn after ``torch.manual_seed(seed)`` inside a forked RNG
    state, so the same seed gives the same encoder with the same torch version
    and the global random state is left untouched.

    Parameters
    ----------
    seed : int
        Seed of the weight initialisation.
    dim : int
        Feature length (channels of the last convolution).
    size : int
        Images are resized to ``size`` x ``size`` (default 64).
    width : int
        Channels of the first convolution (doubled at each layer).

    Examples
    --------
    >>> enc = RandomCNNEncoder(seed=0, dim=32)
    >>> enc.encode(np.zeros((3, 1, 32, 32), np.float32)).shape
    (3, 32)
    >>> RandomCNNEncoder(seed=0, dim=32).id == enc.id != RandomCNNEncoder(seed=1, dim=32).id
    True
    """

    def __init__(self, seed: int = 0, dim: int = 128, size: int = 64, width: int = 16, device: Any = "cpu", dtype: Any = None):
        import torch
        from torch import nn

        if dim < 1 or size < 16 or width < 1:
            raise FeatureError(
                f"RandomCNNEncoder needs dim >= 1, size >= 16, width >= 1; got dim={dim}, size={size}, width={width}."
            )
        self.seed, self.width = int(seed), int(width)
        self.dim = int(dim)
        self.input_size = (int(size), int(size))
        self.channels = 1
        self.mean, self.std = (0.5,), (0.5,)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            w = self.width
            self.model = nn.Sequential(
                nn.Conv2d(1, w, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(4 * w, self.dim, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            for m in self.model.modules():
                if isinstance(m, nn.Conv2d):  # He initialisation keeps the activation scale through ReLUs
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        self.model = self._place(self.model, device, dtype)
        self.id = f"random-cnn-seed{self.seed}-w{w}-d{self.dim}-{size}px-{state_dict_hash(self.model, 8)}{self.precision_tag}"

    def _forward(self, x):
        return self.model(x)
