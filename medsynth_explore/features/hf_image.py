"""A transformers image-model folder as a feature encoder (RAD-DINO and other DINOv2 / ViT backbones).

The folder is what ``huggingface-cli download microsoft/rad-dino`` leaves:
``config.json`` (the architecture; RAD-DINO is a ``Dinov2Model``),
``model.safetensors`` (the weights) and ``preprocessor_config.json`` (how
images are prepared). Nothing is downloaded; transformers is imported only
when such a folder is loaded.

Preparation follows the folder's own ``preprocessor_config.json``, not
numbers written here: grey images are repeated on three channels
(``do_convert_rgb``), the shorter side is resized to ``size.shortest_edge``
(or to ``size.height`` x ``size.width``) with the config's ``resample``
filter (PIL codes: 2 bilinear, 3 bicubic; done in torch with antialiasing),
the centre is cropped to ``crop_size`` when ``do_center_crop``, and
``(x - image_mean) / image_std`` is applied when ``do_normalize``. Pixel
values are already in [0, 1], which is what ``do_rescale`` with
``rescale_factor = 1/255`` makes of 8-bit images. ``tests/test_encoder_formats.py``
checks this against the folder's own ``AutoImageProcessor``.

Features: the CLS embedding by default (``pooler_output``: the final
layer-normed CLS token, RAD-DINO's image embedding), or the mean of the patch
tokens (``pool="mean"``, register tokens excluded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import FeatureError, OfflineError
from .base import Encoder, file_hash

__all__ = ["TransformersImageEncoder", "HF_IMAGE_FILES", "read_preprocessor", "resize_and_crop"]

#: The files of a published transformers image-model folder (weights as safetensors).
HF_IMAGE_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")

_RESAMPLE = {0: "nearest", 1: "bilinear", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bicubic"}  # PIL codes


def _hw(value: Any, what: str) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return ("short", int(value))
    if isinstance(value, dict):
        if "shortest_edge" in value:
            return ("short", int(value["shortest_edge"]))
        if "height" in value and "width" in value:
            return ("exact", (int(value["height"]), int(value["width"])))
    raise FeatureError(f"preprocessor_config.json: cannot read {what}={value!r} (expected shortest_edge or height/width).")


def read_preprocessor(path: Any) -> dict:
    """The preparation steps of a ``preprocessor_config.json`` as plain values.

    Examples
    --------
    >>> import json, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "preprocessor_config.json")
    >>> _ = open(p, "w").write(json.dumps({"size": {"shortest_edge": 518}, "crop_size": {"height": 518, "width": 518},
    ...     "do_center_crop": True, "image_mean": [0.53] * 3, "image_std": [0.26] * 3, "resample": 3}))
    >>> sorted(read_preprocessor(p).items())  # doctest: +NORMALIZE_WHITESPACE
    [('crop', (518, 518)), ('mean', (0.53, 0.53, 0.53)), ('mode', 'bicubic'), ('resize', ('short', 518)),
     ('std', (0.26, 0.26, 0.26))]
    """
    try:
        cfg = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FeatureError(f"cannot read {path}: {exc}") from exc
    if not isinstance(cfg, dict):
        raise FeatureError(f"{path} must hold a JSON object.")
    out: dict = {}
    out["resize"] = _hw(cfg.get("size"), "size") if cfg.get("do_resize", True) else None
    out["mode"] = _RESAMPLE.get(int(cfg.get("resample", 2)), "bilinear")
    crop = _hw(cfg.get("crop_size"), "crop_size") if cfg.get("do_center_crop", False) else None
    if crop is not None:
        out["crop"] = crop[1] if crop[0] == "exact" else (crop[1], crop[1])
    else:
        out["crop"] = None
    if cfg.get("do_normalize", True):
        try:
            out["mean"] = tuple(float(v) for v in cfg["image_mean"])
            out["std"] = tuple(float(v) for v in cfg["image_std"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FeatureError(f"{path} has do_normalize but no numeric image_mean / image_std ({exc}).") from exc
        if any(s <= 0 for s in out["std"]):
            raise FeatureError(f"{path}: image_std must be positive, got {out['std']}.")
    else:
        out["mean"] = out["std"] = None
    return out


def resize_and_crop(x: Any, resize: tuple | None, crop: tuple | None, mode: str = "bilinear"):
    """Resize a (B, C, H, W) tensor as image processors do, then centre-crop.

    ``resize`` is ``("short", S)`` (shorter side to S, aspect kept, the longer
    side truncated to an integer as transformers and torchvision do),
    ``("exact", (H, W))`` or None; ``crop`` is ``(H, W)`` or None (padded with
    zeros when larger than the image). Interpolation is antialiased;
    bicubic results are clipped to [0, 1], the range 8-bit pixels have.

    Examples
    --------
    >>> import torch
    >>> tuple(resize_and_crop(torch.rand(1, 3, 40, 80), ("short", 20), (16, 16)).shape)
    (1, 3, 16, 16)
    """
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    if resize is not None:
        if resize[0] == "short":
            s = resize[1]
            size = (s, max(1, int(s * w / h))) if h <= w else (max(1, int(s * h / w)), s)
        else:
            size = tuple(resize[1])
        if tuple(size) != (h, w):
            kw = {} if mode == "nearest" else {"align_corners": False, "antialias": True}
            x = F.interpolate(x, size=tuple(size), mode=mode, **kw)
            if mode == "bicubic":
                x = x.clamp(0, 1)
    if crop is not None:
        ch, cw = crop
        h, w = x.shape[-2:]
        if ch > h or cw > w:
            x = F.pad(x, (max(0, (cw - w + 1) // 2), max(0, (cw - w) // 2), max(0, (ch - h + 1) // 2), max(0, (ch - h) // 2)))
            h, w = x.shape[-2:]
        top, left = (h - ch) // 2, (w - cw) // 2
        x = x[..., top : top + ch, left : left + cw]
    return x


class TransformersImageEncoder(Encoder):
    """Image embeddings of a transformers vision backbone folder (``AutoModel``), prepared by its own config.

    Parameters
    ----------
    folder : path
        With ``config.json``, ``model.safetensors`` and ``preprocessor_config.json``.
    pool : {"cls", "mean"}
        The CLS embedding (default) or the mean of the patch tokens.
    device, dtype : optional
        Where the model runs and in which precision (default CPU, float32).
    allow_pickle : bool
        Also accept ``pytorch_model.bin`` weights (a pickle, read by
        transformers with ``weights_only=True``) when there is no safetensors file.

    Raises
    ------
    OfflineError
        A file of the layout is missing (the message names it and the command that fetches it).
    FeatureError
        Files that cannot be read as this layout.

    Examples
    --------
    >>> enc = TransformersImageEncoder("models/rad-dino")  # doctest: +SKIP
    >>> enc.dim, enc.input_size  # doctest: +SKIP
    (768, (518, 518))
    """

    default_batch_size = 16

    def __init__(
        self,
        folder: Any,
        pool: str = "cls",
        device: Any = None,
        dtype: Any = None,
        allow_pickle: bool = False,
        repo_id: str | None = None,
    ) -> None:
        folder = Path(folder).expanduser()
        if pool not in ("cls", "mean"):
            raise FeatureError(f"pool must be 'cls' or 'mean', got {pool!r}.")
        weights = folder / "model.safetensors"
        if not weights.is_file() and allow_pickle and (folder / "pytorch_model.bin").is_file():
            weights = folder / "pytorch_model.bin"
        missing = [n for n in ("config.json", "preprocessor_config.json") if not (folder / n).is_file()]
        if not weights.is_file():
            missing.append("model.safetensors")
        if missing:
            repo = repo_id or "<org>/<model>"
            raise OfflineError(
                f"{folder} lacks {', '.join(missing)} of a transformers image-model folder. On a connected machine run "
                f"`huggingface-cli download {repo} {' '.join(HF_IMAGE_FILES)} --local-dir {folder}` and copy the folder here."
                + (
                    " (A pytorch_model.bin is there: it is a pickle; pass allow_pickle=True to read it with weights_only=True.)"
                    if (folder / "pytorch_model.bin").is_file() and not allow_pickle
                    else ""
                )
            )
        prep = read_preprocessor(folder / "preprocessor_config.json")
        try:
            from transformers import AutoConfig, AutoModel
        except ImportError as exc:
            raise FeatureError('transformers image models need transformers: pip install "medsynth-explore[models]".') from exc
        from ..generators.devices import quiet_loading as _quiet

        try:
            with _quiet():
                config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
                model = AutoModel.from_pretrained(
                    str(folder), local_files_only=True, use_safetensors=weights.suffix == ".safetensors"
                )
        except Exception as exc:  # transformers and safetensors raise many types for a damaged folder
            raise FeatureError(f"cannot load the transformers model in {folder}: {str(exc).splitlines()[0][:300]}") from exc
        if getattr(config, "is_encoder_decoder", False) or not hasattr(config, "hidden_size"):
            raise FeatureError(f"{folder} holds a {type(model).__name__}, not a vision backbone with hidden states.")
        self.model = self._place(model, device, dtype)
        self.folder = str(folder)
        self.pool = pool
        self.prep = prep
        self.channels = int(getattr(config, "num_channels", 3))
        crop = prep["crop"]
        resize = prep["resize"]
        if crop is not None:
            self.input_size = tuple(crop)
        elif resize is not None and resize[0] == "exact":
            self.input_size = tuple(resize[1])
        elif resize is not None:
            self.input_size = (resize[1], resize[1])
        else:
            self.input_size = None
        self.mean, self.std = prep["mean"], prep["std"]
        self.n_registers = int(getattr(config, "num_register_tokens", 0) or 0)
        self.dim = int(config.hidden_size)
        kind = str(getattr(config, "model_type", "hf"))
        size = self.input_size[0] if self.input_size else "native"
        self.id = f"hf-{kind}-{folder.name}-{file_hash(weights, 8)}-{size}px-{pool}{self.precision_tag}"

    @property
    def normalisation(self) -> str:
        p = self.prep
        parts = ["grayscale images repeated on 3 channels (R=G=B)" if self.channels == 3 else "single channel"]
        if p["resize"] is not None:
            what = f"shorter side to {p['resize'][1]}" if p["resize"][0] == "short" else f"to {p['resize'][1]}"
            parts.append(f"resized ({what}) with {p['mode']} interpolation and antialiasing")
        if p["crop"] is not None:
            parts.append(f"centre-cropped to {p['crop'][0]}x{p['crop'][1]}")
        if self.mean is not None:
            parts.append(f"(x - mean) / std with mean={self.mean} and std={self.std} from preprocessor_config.json")
        return "; ".join(parts)

    def resample(self, x: Any):
        """Channels, then resize and centre crop as ``preprocessor_config.json`` says (a grey image stays one channel)."""
        return resize_and_crop(self.reduce_channels(x), self.prep["resize"], self.prep["crop"], self.prep["mode"])

    def _forward(self, x):
        out = self.model(pixel_values=x)
        if self.pool == "mean":
            return out.last_hidden_state[:, 1 + self.n_registers :].mean(1)
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None else out.last_hidden_state[:, 0]
