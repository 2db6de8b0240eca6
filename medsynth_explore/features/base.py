"""The :class:`Encoder` base class: images in, one feature vector per image out.

A subclass declares what its network expects (channels, input size, per-channel
normalisation) and implements :meth:`Encoder._forward` on a torch batch. The
base class does everything else the same way for every encoder:

1. validation of the input with :func:`medsynth_explore.data.as_image_array`
   (an :class:`~medsynth_explore.data.ImageSet` or an (N, C, H, W) array in [0, 1]);
2. batching, ``torch.no_grad`` and the progress callback;
3. channel conversion: a grayscale image fed to a 3-channel network is
   repeated on the three channels (R = G = B, no colour map); an RGB image fed
   to a 1-channel network is averaged over its channels;
4. resizing to :attr:`Encoder.input_size` with bilinear interpolation and
   antialiasing (a grey image is resized before it is repeated on three
   channels, which gives the same values for a third of the work) (``torch.nn.functional.interpolate(mode="bilinear",
   antialias=True, align_corners=False)``); the resize changes feature
   statistics and therefore FID, so it is part of :attr:`Encoder.id`;
5. per-channel normalisation ``(x - mean) / std`` when the subclass sets
   ``mean`` and ``std``.

:attr:`Encoder.normalisation` states steps 3-5 in words so that a report can
say exactly how the images were prepared.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..errors import CancelledError, FeatureError

__all__ = ["Encoder", "ProgressCallback", "to_image_array", "state_dict_hash", "file_hash"]

#: ``callback(done, total)`` called after each batch; returning ``False`` (or
#: raising :class:`~medsynth_explore.errors.CancelledError`) stops the work.
ProgressCallback = Callable[[int, int], Optional[bool]]


def to_image_array(images: Any) -> np.ndarray:
    """Images of an :class:`ImageSet` or an array, checked, as float32 (N, C, H, W).

    Examples
    --------
    >>> to_image_array(np.zeros((2, 1, 4, 4))).dtype
    dtype('float32')
    """
    from ..data.imageset import as_image_array

    if hasattr(images, "images") and hasattr(images, "metadata"):
        images = images.images
    try:
        return as_image_array(images)
    except Exception as exc:  # DataError: re-raise with the encoder context
        raise FeatureError(f"cannot encode these images: {exc}") from exc


def state_dict_hash(module: Any, n_chars: int = 12) -> str:
    """Short SHA-256 of a torch module's parameters and buffers (names and bytes).

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0) and None
    >>> len(state_dict_hash(torch.nn.Linear(2, 2)))
    12
    """
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        try:
            h.update(t.numpy().tobytes())
        except TypeError:  # dtypes numpy lacks (bfloat16): hash their float32 values
            h.update(t.float().numpy().tobytes())
    return h.hexdigest()[:n_chars]


def file_hash(path: Any, n_chars: int = 12) -> str:
    """Short SHA-256 of a file's bytes (read in 1 MiB blocks).

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.bin")
    >>> _ = open(p, "wb").write(b"abc")
    >>> file_hash(p)
    'ba7816bf8f01'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n_chars]


def _batches(images: Any, batch_size: int, transform: Any = None):
    """(N, iterator of float32 batches) of an ImageSet (streamed) or an array (checked once, sliced).

    ``transform`` (per image) is run in the decoding threads of a file-backed
    set; an in-memory set or array is handed over as it is.
    """
    if hasattr(images, "batches") and hasattr(images, "metadata") and hasattr(images, "shape"):
        if transform is not None and getattr(images, "file_backed", False):
            return len(images), images.batches(batch_size, transform=transform)
        return len(images), images.batches(batch_size)
    arr = to_image_array(images)
    return len(arr), (arr[s : s + batch_size] for s in range(0, len(arr), batch_size))


class Encoder:
    """Base class of every feature encoder.

    Attributes
    ----------
    id : str
        Unique name of the encoder including its configuration and a hash of
        its weights; feature caches and reports are keyed by it.
    input_size : tuple of int or None
        (H, W) the images are resized to before the network; ``None`` keeps the
        size they come with.
    channels : int
        Channels the network expects (1 or 3).
    mean, std : tuple of float or None
        Per-channel normalisation applied after resizing.
    dim : int
        Length D of the feature vector.
    device : torch.device or str
        Where the network runs (``"cpu"`` by default; see
        :func:`medsynth_explore.generators.devices.resolve_device`).
    dtype : torch.dtype or None
        Precision of the network; ``None`` is float32. Prepared batches are
        cast to it; features come back as float32 whatever it is.
    normalisation : str
        Human-readable statement of the preparation (channels, resize, scaling).

    Subclasses set these attributes in ``__init__`` and implement
    :meth:`_forward`, which maps a prepared float32 tensor (B, channels, H, W)
    to a (B, D) tensor.

    Examples
    --------
    >>> import torch
    >>> class MeanEncoder(Encoder):
    ...     def __init__(self):
    ...         self.id, self.dim, self.channels, self.input_size = "mean", 1, 1, None
    ...     def _forward(self, x):
    ...         return x.mean(dim=(1, 2, 3))[:, None]
    >>> MeanEncoder().encode(np.full((3, 1, 4, 4), 0.5, np.float32)).ravel().tolist()
    [0.5, 0.5, 0.5]
    """

    id: str = "encoder"
    input_size: Optional[tuple] = None
    channels: int = 1
    mean: Optional[Sequence[float]] = None
    std: Optional[Sequence[float]] = None
    dim: int = 0
    device: Any = "cpu"
    dtype: Any = None
    default_batch_size: int = 64

    # -- description ------------------------------------------------------------------
    @property
    def normalisation(self) -> str:
        """How images are prepared for this encoder, in words."""
        parts = []
        if self.channels == 3:
            parts.append("grayscale images repeated on 3 channels (R=G=B); RGB images used as they are")
        else:
            parts.append("single channel; RGB images averaged over their channels")
        if self.input_size is None:
            parts.append("no resize")
        else:
            h, w = self.input_size
            parts.append(f"resized to {h}x{w} with bilinear interpolation and antialiasing (align_corners=False)")
        if self.mean is None:
            parts.append("intensities kept in [0, 1]")
        else:
            m = ", ".join(f"{v:g}" for v in self.mean)
            s = ", ".join(f"{v:g}" for v in self.std)
            parts.append(f"then (x - mean) / std with mean=({m}) and std=({s})")
        return "; ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, dim={self.dim}, input_size={self.input_size})"

    def describe(self) -> dict:
        """A JSON-ready record of the encoder for report provenance.

        Examples
        --------
        >>> from medsynth_explore.features import PixelEncoder
        >>> sorted(PixelEncoder().describe())
        ['class', 'dim', 'id', 'input_size', 'normalisation']
        """
        return {
            "id": self.id,
            "class": type(self).__name__,
            "dim": int(self.dim),
            "input_size": list(self.input_size) if self.input_size is not None else None,
            "normalisation": self.normalisation,
        }

    # -- work -----------------------------------------------------------------------------
    def _place(self, module: Any, device: Any = None, dtype: Any = None) -> Any:
        """Check ``device`` / ``dtype`` (see :mod:`medsynth_explore.generators.devices`), set them, move ``module`` there.

        Returns the module in eval mode with gradients off.
        """
        from ..generators.devices import resolve_device, resolve_dtype

        self.device = resolve_device(device)
        resolved = resolve_dtype(dtype, self.device)
        self.dtype = None if str(resolved) == "torch.float32" else resolved
        module = module.to(self.device, resolved).eval()
        for p in module.parameters():
            p.requires_grad_(False)
        return module

    @property
    def precision_tag(self) -> str:
        """``""`` in float32, else ``"-bfloat16"`` / ``"-float16"``: part of :attr:`id` (precision changes features)."""
        return "" if self.dtype is None else "-" + str(self.dtype).replace("torch.", "")

    def _forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement _forward(batch_tensor).")

    def as_tensor(self, batch: Any):
        """``batch`` as a float32 torch tensor on :attr:`device` (a view where it already is one)."""
        import torch

        x = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(batch))
        return x.to(device=self.device, dtype=torch.float32)

    def resample(self, x: Any):
        """The per-image part of :meth:`prepare`: channel reduction, crop and resize.

        Takes a float32 tensor (B, C, H, W) and returns one of (B, c, h, w)
        on the same device, where c is 1 or :attr:`channels`: a grey image
        stays one channel (:meth:`normalise` repeats it, a third of the
        interpolation work). Each image's result depends on that image
        alone, so a file-backed set runs it in its decoding threads, one
        image at a time, right after decoding (:meth:`decode_transform`).
        It is idempotent, and ``prepare(resample(x))`` equals ``prepare(x)``.

        Subclasses with their own geometry (a centre crop, a shorter-side
        resize) override this and, where needed, :meth:`normalise`; not
        :meth:`prepare`.

        Examples
        --------
        >>> import torch
        >>> from medsynth_explore.features import PixelEncoder
        >>> tuple(PixelEncoder(size=4).resample(torch.zeros(2, 3, 8, 8)).shape)
        (2, 1, 4, 4)
        """
        import torch.nn.functional as F

        x = self.reduce_channels(x)
        if self.input_size is not None and tuple(x.shape[-2:]) != tuple(self.input_size):
            x = F.interpolate(x, size=tuple(self.input_size), mode="bilinear", align_corners=False, antialias=True)
        return x

    def reduce_channels(self, x: Any):
        """RGB averaged to grey for a 1-channel network; grey kept as one channel (:meth:`normalise` repeats it).

        Raises
        ------
        FeatureError
            Channels other than 1 or 3.
        """
        c = x.shape[1]
        if c == 3 and self.channels == 1:
            return x.mean(dim=1, keepdim=True)
        if c != self.channels and not (c == 1 and self.channels == 3):
            raise FeatureError(
                f"{type(self).__name__} expects 1 or 3 channel images it can convert to {self.channels}; got {c} channels."
            )
        return x

    def normalise(self, x: Any):
        """The rest of :meth:`prepare` on resampled images: grey repeated to 3 channels, ``(x - mean) / std``, precision."""
        import torch

        if x.shape[1] == 1 and self.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        if self.mean is not None:
            mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            x = (x - mean) / std
        if self.dtype is not None and x.dtype != self.dtype:
            x = x.to(self.dtype)
        return x.contiguous()

    def prepare(self, batch: Any):
        """Channel conversion, resize and normalisation of a batch (torch tensor out): ``normalise(resample(batch))``.

        Parameters
        ----------
        batch : array-like or torch.Tensor, shape (B, C, H, W), values in [0, 1]

        Examples
        --------
        >>> from medsynth_explore.features import PixelEncoder
        >>> tuple(PixelEncoder(size=4).prepare(np.zeros((2, 3, 8, 8), np.float32)).shape)
        (2, 1, 4, 4)
        """
        return self.normalise(self.resample(self.as_tensor(batch)))

    def decode_transform(self) -> Optional[Callable[[np.ndarray], np.ndarray]]:
        """What a file-backed set's decoding threads apply to each image for this encoder, or None.

        On the CPU it is :meth:`resample` of one image (float32 (C, H, W) in
        and out): the threads that decode also resize, while the encoder's
        own thread runs only the network, and the batches handed over hold
        images at the network's size rather than the files'. On an
        accelerator it is None: resizing is cheap there and the CPU is
        better left to decoding. Also None for a subclass that overrides
        :meth:`prepare` itself, whose geometry :meth:`resample` does not know.

        Examples
        --------
        >>> from medsynth_explore.features import PixelEncoder
        >>> PixelEncoder(size=4).decode_transform()(np.zeros((3, 8, 8), np.float32)).shape
        (1, 4, 4)
        """
        if type(self).prepare is not Encoder.prepare or str(self.device) != "cpu":
            return None

        def one(image: np.ndarray) -> np.ndarray:
            import torch

            with torch.no_grad():
                x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
                return self.resample(x)[0].contiguous().numpy()

        return one

    def encode(self, images: Any, batch_size: Optional[int] = None, callback: Optional[ProgressCallback] = None) -> np.ndarray:
        """Features of ``images``, one row per image.

        Parameters
        ----------
        images : ImageSet or array-like, shape (N, C, H, W), values in [0, 1]
            An ImageSet is read batch by batch (:meth:`ImageSet.batches`): a
            file-backed set never holds more than a few batches of pixels,
            and its files are decoded, and on the CPU resized to
            :attr:`input_size` (:meth:`decode_transform`), in worker threads
            while the network runs. The features are the same either way.
        batch_size : int, optional
            Images per forward pass (default :attr:`default_batch_size`).
        callback : callable, optional
            ``callback(done, total)`` after each batch; return ``False`` to cancel.

        Returns
        -------
        numpy.ndarray, float32, shape (N, D)

        Raises
        ------
        FeatureError
            Input that is not a valid image array.
        CancelledError
            When the callback asks to stop.

        Examples
        --------
        >>> from medsynth_explore.features import PixelEncoder
        >>> PixelEncoder(size=8).encode(np.zeros((5, 1, 32, 32), np.float32)).shape
        (5, 64)
        """
        import torch

        bs = self.default_batch_size if batch_size is None else int(batch_size)
        if bs < 1:
            raise FeatureError(f"batch_size must be at least 1, got {batch_size}.")
        n, batches = _batches(images, bs, self.decode_transform())
        out = np.empty((n, self.dim), dtype=np.float32)
        module = getattr(self, "model", None)
        if module is not None and hasattr(module, "eval"):
            module.eval()
        start = 0
        with torch.no_grad():
            for batch in batches:  # a file-backed set decodes (and resamples) the next batches in threads meanwhile
                x = self.prepare(batch)  # on resampled images only normalise() does work
                y = self._forward(x)
                y = y.reshape(len(x), -1).detach().float().cpu().numpy()
                if y.shape[1] != self.dim:
                    raise FeatureError(f"{type(self).__name__} produced {y.shape[1]} features, declared dim={self.dim}.")
                out[start : start + len(x)] = y
                start += len(x)
                if callback is not None and callback(start, n) is False:
                    raise CancelledError(f"encoding cancelled after {start} of {n} images.")
        if not np.isfinite(out).all():
            raise FeatureError(f"{self.id} produced NaN or infinite features; check the weights and input.")
        return out

    __call__ = encode
