"""Paired image similarity: SSIM and PSNR, with masked variants.

Masks follow the package convention: 1 = region to regenerate (inside),
0 = region to keep (outside). ``region="outside"`` measures how well the kept
part was preserved; ``region="inside"`` compares the regenerated part.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from scipy.ndimage import gaussian_filter

from ..errors import MetricError

__all__ = ["ssim_map", "ssim", "psnr"]

_SIGMA, _TRUNCATE, _K1, _K2 = 1.5, 3.5, 0.01, 0.03
_PAD = int(_TRUNCATE * _SIGMA + 0.5)  # 5: half the 11x11 Gaussian window


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    from ..data.imageset import as_image_array

    try:
        a = as_image_array(a.images if hasattr(a, "metadata") else a, "first images").astype(np.float64)
        b = as_image_array(b.images if hasattr(b, "metadata") else b, "second images").astype(np.float64)
    except Exception as exc:
        raise MetricError(str(exc)) from exc
    if a.shape != b.shape:
        raise MetricError(f"paired images must have equal shapes, got {a.shape} and {b.shape}.")
    return a, b


def _mask(mask: Any, shape: tuple, region: str) -> Optional[np.ndarray]:
    if mask is None:
        return None
    if region not in ("inside", "outside"):
        raise MetricError(f"region must be 'inside' or 'outside', got {region!r}.")
    m = np.asarray(mask.detach().cpu().numpy() if hasattr(mask, "detach") else mask, dtype=np.float64)
    n, c, h, w = shape
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[:, None]  # (N, H, W)
    if m.ndim != 4 or m.shape[-2:] != (h, w) or m.shape[0] not in (1, n) or m.shape[1] not in (1, c):
        raise MetricError(
            f"mask of shape {np.shape(mask)} does not fit images of shape {shape}; give (H, W), (N, H, W) or (N, 1, H, W)."
        )
    m = np.broadcast_to(m > 0.5, shape)
    return m if region == "inside" else ~m


def ssim_map(a: Any, b: Any) -> np.ndarray:
    """SSIM map (N, C, H, W) with an 11x11 Gaussian window, sigma 1.5, data range 1.

    Matches ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=1, full=True)``
    (reflect padding at the borders).

    Examples
    --------
    >>> float(ssim_map(np.ones((8, 8)) * 0.5, np.ones((8, 8)) * 0.5).min())
    1.0
    """
    a, b = _pair(a, b)

    def f(x):
        return gaussian_filter(x, sigma=(0, 0, _SIGMA, _SIGMA), truncate=_TRUNCATE, mode="reflect")

    ux, uy = f(a), f(b)
    vx = f(a * a) - ux * ux
    vy = f(b * b) - uy * uy
    vxy = f(a * b) - ux * uy
    c1, c2 = _K1**2, _K2**2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def _reduce(values: np.ndarray, reduction: str):
    if reduction == "mean":
        return float(values.mean())
    if reduction == "none":
        return values
    raise MetricError(f"reduction must be 'mean' or 'none', got {reduction!r}.")


def ssim(a: Any, b: Any, mask: Any = None, region: str = "outside", reduction: str = "mean"):
    """Structural similarity of paired images, optionally over a mask region.

    Without a mask, each image's SSIM is the mean of its SSIM map with a
    5-pixel border cropped (scikit-image's convention), averaged over
    channels. With a mask, the SSIM map (windows still see the whole image) is
    averaged over the pixels of ``region`` inside that cropped area.

    Parameters
    ----------
    a, b : ImageSet or array (N, C, H, W) / (C, H, W) / (H, W) in [0, 1]
    mask : array (H, W), (N, H, W) or (N, 1, H, W), optional
        1 = region to regenerate (inside), 0 = keep (outside).
    region : {"outside", "inside"}
    reduction : {"mean", "none"}
        Mean over images, or one value per image.

    Examples
    --------
    >>> x = np.random.default_rng(0).random((2, 1, 32, 32))
    >>> ssim(x, x)
    1.0
    """
    s = ssim_map(a, b)
    n, c, h, w = s.shape
    if h <= 2 * _PAD or w <= 2 * _PAD:
        raise MetricError(f"SSIM needs images larger than {2 * _PAD + 1}x{2 * _PAD + 1} pixels, got {h}x{w}.")
    crop = (slice(None), slice(None), slice(_PAD, h - _PAD), slice(_PAD, w - _PAD))
    m = _mask(mask, s.shape, region)
    if m is None:
        per = s[crop].mean(axis=(2, 3)).mean(axis=1)
    else:
        mc = m[crop]
        cnt = mc.sum(axis=(1, 2, 3))
        if (cnt == 0).any():
            raise MetricError(f"the {region} region of the mask is empty (after the {_PAD}-pixel border crop) for some image.")
        per = (s[crop] * mc).sum(axis=(1, 2, 3)) / cnt
    return _reduce(per, reduction)


def psnr(a: Any, b: Any, mask: Any = None, region: str = "outside", reduction: str = "mean"):
    """Peak signal-to-noise ratio in dB with data range 1, per image.

    ``10 log10(1 / MSE)`` with the MSE over all pixels of an image (all
    channels), or over the pixels of ``region`` when a mask is given. Identical
    images give ``inf``; the mean over images is then ``inf`` too.

    Parameters
    ----------
    a, b : ImageSet or array (N, C, H, W) / (C, H, W) / (H, W) in [0, 1]
    mask : array (H, W), (N, H, W) or (N, 1, H, W), optional
        1 = region to regenerate (inside), 0 = keep (outside).
    region : {"outside", "inside"}
    reduction : {"mean", "none"}

    Examples
    --------
    >>> round(psnr(np.zeros((4, 4)), np.full((4, 4), 0.1)), 6)
    20.0
    """
    a, b = _pair(a, b)
    se = (a - b) ** 2
    m = _mask(mask, se.shape, region)
    if m is None:
        mse = se.reshape(len(se), -1).mean(1)
    else:
        cnt = m.reshape(len(m), -1).sum(1)
        if (cnt == 0).any():
            raise MetricError(f"the {region} region of the mask is empty for some image.")
        mse = (se * m).reshape(len(se), -1).sum(1) / cnt
    with np.errstate(divide="ignore"):
        per = np.where(mse > 0, 10.0 * np.log10(1.0 / np.where(mse > 0, mse, 1.0)), np.inf)
    return _reduce(per, reduction)
