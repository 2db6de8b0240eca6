"""Image tower of any open_clip model as a feature encoder.

Two ways in. :class:`OpenCLIPEncoder` builds a named open_clip architecture;
:class:`OpenCLIPFolderEncoder` reads an open_clip *hub folder* (the layout
BiomedCLIP is published in: ``open_clip_config.json`` +
``open_clip_pytorch_model.bin``), image and text towers, so that CLIPScore
can use it.

For :class:`OpenCLIPEncoder`, weights come from a local checkpoint file (``.safetensors`` or a plain state
dict ``.pt``/``.bin``, read with ``weights_only=True``), from an open_clip
pretrained tag already in the local cache, or from an ``hf-hub:`` model id
already in the Hugging Face cache. Nothing is downloaded unless
``allow_download=True``; without the files an :class:`OfflineError` says what
to fetch and where to put it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Optional

from ..errors import FeatureError, OfflineError
from .base import Encoder, file_hash, state_dict_hash

__all__ = ["OpenCLIPEncoder", "OpenCLIPFolderEncoder", "OPEN_CLIP_HUB_FILES"]

#: The files of an open_clip hub folder as BiomedCLIP publishes it (``huggingface-cli download <repo>``).
OPEN_CLIP_HUB_FILES = ("open_clip_config.json", "open_clip_pytorch_model.bin")


@contextlib.contextmanager
def _hf_offline(active: bool):
    if not active:
        yield
        return
    old = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:  # huggingface_hub reads the variable once at import; switch its constant too
        from huggingface_hub import constants as hf_constants
    except ImportError:  # pragma: no cover
        hf_constants = None
    old_const = getattr(hf_constants, "HF_HUB_OFFLINE", None)
    if hf_constants is not None:
        hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if hf_constants is not None:
            hf_constants.HF_HUB_OFFLINE = old_const
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class OpenCLIPEncoder(Encoder):
    """Unit-length image embeddings of an open_clip model.

    Parameters
    ----------
    model_name : str
        An open_clip architecture (``open_clip.list_models()``, including
        configs registered with ``open_clip.add_model_config``) or an
        ``"hf-hub:org/repo"`` id.
    pretrained : str or path, optional
        A local checkpoint file, or an open_clip pretrained tag (e.g.
        ``"laion2b_s34b_b79k"``). Required unless ``model_name`` is an hf-hub id.
    cache_dir : path, optional
        Where open_clip looks for downloaded weights.
    allow_download : bool
        Permit network downloads (off by default: this package works offline).
    device : str

    Notes
    -----
    Images are prepared by the base class: grayscale repeated on 3 channels,
    resized to the model's square input size with antialiased bilinear
    interpolation (open_clip's own transform resizes the short side with
    bicubic interpolation and centre-crops; for square inputs only the
    interpolation differs), then normalised with the model's mean and std.

    Examples
    --------
    >>> enc = OpenCLIPEncoder("ViT-B-32", pretrained="laion2b_s34b_b79k")  # doctest: +SKIP
    """

    def __init__(
        self,
        model_name: str,
        pretrained: Optional[str | os.PathLike] = None,
        cache_dir: Optional[str] = None,
        allow_download: bool = False,
        device: Any = "cpu",
        dtype: Any = None,
    ):
        from ..generators.devices import resolve_device

        device = str(resolve_device(device))
        try:
            import open_clip
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise FeatureError("OpenCLIPEncoder needs open_clip_torch: pip install open_clip_torch") from exc

        hub = str(model_name).startswith("hf-hub:")
        if not hub and str(model_name) not in open_clip.list_models():
            raise FeatureError(
                f"unknown open_clip model {model_name!r}. Known models include {open_clip.list_models()[:8]}...; "
                "register a custom config with open_clip.add_model_config(path) first."
            )
        if not hub and pretrained is None:
            raise FeatureError(
                f"give pretrained= for {model_name!r}: a local checkpoint path or a tag from "
                f"{open_clip.list_pretrained_tags_by_model(model_name)} (random weights make meaningless features)."
            )
        local = pretrained is not None and Path(str(pretrained)).expanduser().is_file()
        if pretrained is not None and not local and any(s in str(pretrained) for s in ("/", "\\", ".safetensors", ".pt", ".bin")):
            raise OfflineError(f"checkpoint file {pretrained} does not exist; put the open_clip weights there or fix the path.")
        try:
            with _hf_offline(not allow_download):
                if hub:
                    model = open_clip.create_model(model_name, cache_dir=cache_dir, device=device)
                else:
                    arg = str(Path(str(pretrained)).expanduser()) if local else str(pretrained)
                    model = open_clip.create_model(
                        model_name, pretrained=arg, cache_dir=cache_dir, device=device, require_pretrained=True
                    )
        except (RuntimeError, KeyError) as exc:
            if local:
                raise FeatureError(f"{pretrained} does not hold {model_name} weights: {str(exc)[:300]}") from exc
            raise self._offline(model_name, pretrained, cache_dir, exc) from exc
        except Exception as exc:  # network / hub errors come in many types
            raise self._offline(model_name, pretrained, cache_dir, exc) from exc
        self.model = self._place(model, device, dtype)
        self.channels = 3
        size = model.visual.image_size
        self.input_size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        pcfg = getattr(model.visual, "preprocess_cfg", None) or {}
        self.mean = tuple(pcfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
        self.std = tuple(pcfg.get("std", open_clip.OPENAI_DATASET_STD))
        import torch

        with torch.no_grad():
            probe = self.model.encode_image(torch.zeros(1, 3, *self.input_size, device=self.device, dtype=self.dtype))
        self.dim = int(probe.shape[-1])
        self.model_name = str(model_name)
        self.pretrained = str(pretrained) if pretrained is not None else None
        weights = file_hash(Path(str(pretrained)).expanduser(), 8) if local else state_dict_hash(model, 8)
        tag = "local" if local else (self.pretrained or "hub")
        self.id = (
            f"open_clip-{self.model_name}-{Path(tag).stem if local else tag}-{weights}-{self.input_size[0]}px{self.precision_tag}"
        )

    @staticmethod
    def _offline(model_name, pretrained, cache_dir, exc) -> OfflineError:
        where = cache_dir or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        what = model_name if str(model_name).startswith("hf-hub:") else f"{model_name} / pretrained={pretrained!r}"
        return OfflineError(
            f"open_clip weights for {what} are not on this machine and downloads are off ({type(exc).__name__}: "
            f"{str(exc)[:200]}). Download the checkpoint elsewhere and pass its file path as pretrained=..., "
            f"or place it in the Hugging Face cache ({where}), or pass allow_download=True where the network is reachable."
        )

    def _forward(self, x):
        return self.model.encode_image(x, normalize=True)


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / n).is_file() for n in _TOKENIZER_FILES)


class OpenCLIPFolderEncoder(Encoder):
    """Image and text towers of an open_clip hub folder (BiomedCLIP's published layout), read from local files only.

    The folder holds ``open_clip_config.json`` (``model_cfg`` and
    ``preprocess_cfg``) and ``open_clip_pytorch_model.bin`` (a pickled state
    dict: read only with ``allow_pickle=True``, and then by torch's
    ``weights_only=True`` unpickler) or ``open_clip_model.safetensors`` (no flag
    needed). A Hugging Face text tower (``text_cfg.hf_model_name``, BiomedCLIP's
    PubMedBERT) is built from local files: its ``config.json`` in ``<folder>/text/``
    (or ``text_config=``, or the local Hugging Face cache), its tokenizer from the
    folder itself when it has tokenizer files, else from the same place.

    Images are prepared as open_clip does: grey repeated on 3 channels, the
    shorter side resized to the model's size with the config's interpolation
    (bicubic by default, antialiased), centre-cropped, normalised with the
    config's mean and std. Features are unit-length image embeddings;
    :meth:`encode_text` gives the matching unit-length text embeddings, so
    ``clip_score(enc.encode(images), enc.encode_text(reports))`` is CLIPScore in
    this model.

    Parameters
    ----------
    folder : path
    allow_pickle : bool
        Read ``open_clip_pytorch_model.bin`` (with ``weights_only=True``).
    text_config : path, optional
        A folder with the text model's ``config.json`` (and tokenizer files).
    device, dtype : optional
    repo_id : str, optional
        The hub repository the folder came from (used in messages).

    Examples
    --------
    >>> enc = OpenCLIPFolderEncoder("models/biomedclip", allow_pickle=True)  # doctest: +SKIP
    >>> enc.encode_text(["left pleural effusion"]).shape  # doctest: +SKIP
    (1, 512)
    """

    default_batch_size = 32

    def __init__(
        self,
        folder: Any,
        allow_pickle: bool = False,
        text_config: Any = None,
        device: Any = None,
        dtype: Any = None,
        repo_id: Optional[str] = None,
        text_repo_id: Optional[str] = None,
    ) -> None:
        import json

        import open_clip
        import torch

        folder = Path(folder).expanduser()
        cfg_path = folder / "open_clip_config.json"
        repo = repo_id or "<org>/<model>"
        if not cfg_path.is_file():
            raise OfflineError(
                f"{folder} has no open_clip_config.json. On a connected machine run "
                f"`huggingface-cli download {repo} --local-dir {folder}` and copy the folder here."
            )
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
            model_cfg = dict(config["model_cfg"])
            vision_cfg, text_cfg = dict(model_cfg["vision_cfg"]), dict(model_cfg.get("text_cfg") or {})
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise FeatureError(f"{cfg_path} is not an open_clip config with model_cfg.vision_cfg ({exc}).") from exc
        weights = folder / "open_clip_model.safetensors"
        if not weights.is_file():
            weights = folder / "open_clip_pytorch_model.bin"
            if not weights.is_file():
                raise OfflineError(
                    f"{folder} has no open_clip_pytorch_model.bin (or open_clip_model.safetensors). On a connected machine "
                    f"run `huggingface-cli download {repo} --local-dir {folder}`."
                )
            if not allow_pickle:
                raise FeatureError(
                    f"{weights.name} is a pickle file; pass allow_pickle=True to read it (it is then read with "
                    "torch.load(weights_only=True), which accepts tensors and plain containers only)."
                )
        tokenizer_dir = folder if _has_tokenizer(folder) else None
        hf_name = text_cfg.get("hf_model_name")
        if hf_name:
            text_dir = Path(text_config).expanduser() if text_config is not None else folder / "text"
            if (text_dir / "config.json").is_file():
                text_cfg["hf_model_name"] = str(text_dir)
                tokenizer_dir = tokenizer_dir or (text_dir if _has_tokenizer(text_dir) else None)
            else:
                cached = self._cached_hf(hf_name)
                if cached is None:
                    name = text_repo_id or hf_name
                    raise OfflineError(
                        f"the text tower of {folder.name} is the Hugging Face model {hf_name}, whose config.json is not "
                        f"in {text_dir} nor in the local Hugging Face cache. On a connected machine run "
                        f"`huggingface-cli download {name} config.json vocab.txt --local-dir {text_dir}` and copy it here."
                    )
                text_cfg["hf_model_name"] = cached
                tokenizer_dir = tokenizer_dir or Path(cached)
            text_cfg["hf_model_pretrained"] = False  # the CLIP checkpoint holds the text weights
            text_cfg.pop("hf_tokenizer_name", None)
        model_cfg["text_cfg"] = text_cfg
        vision_cfg["timm_model_pretrained"] = False
        model_cfg["vision_cfg"] = vision_cfg
        custom = bool(hf_name) or bool(model_cfg.pop("custom_text", False))
        try:
            with _hf_offline(True):
                cls = open_clip.CustomTextCLIP if custom else open_clip.CLIP
                model = cls(**model_cfg)
        except (TypeError, ValueError, KeyError, OSError, RuntimeError) as exc:
            raise FeatureError(f"cannot build the open_clip model of {cfg_path}: {str(exc)[:300]}") from exc
        state = self._read_weights(weights)
        key = "text.transformer.embeddings.position_ids"
        if key in state and key not in model.state_dict():
            del state[key]
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise FeatureError(f"{weights.name} does not fit {cfg_path.name} ({str(exc)[:300]}).") from exc
        self.model = self._place(model, device, dtype)
        self.folder = str(folder)
        pcfg = dict(config.get("preprocess_cfg") or {})
        size = model.visual.image_size
        self.input_size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        self.channels = 3
        self.mean = tuple(pcfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
        self.std = tuple(pcfg.get("std", open_clip.OPENAI_DATASET_STD))
        self.interpolation = str(pcfg.get("interpolation", "bicubic"))
        if self.interpolation not in ("bicubic", "bilinear", "nearest"):
            raise FeatureError(f"{cfg_path}: preprocess_cfg.interpolation {self.interpolation!r} is not supported.")
        self.context_length = int(text_cfg.get("context_length", 77))
        self.tokenizer = self._tokenizer(tokenizer_dir, text_cfg, folder)
        with torch.no_grad():
            probe = self.model.encode_image(torch.zeros(1, 3, *self.input_size, device=self.device, dtype=self.dtype))
        self.dim = int(probe.shape[-1])
        self.id = f"open_clip-folder-{folder.name}-{file_hash(weights, 8)}-{self.input_size[0]}px{self.precision_tag}"

    @staticmethod
    def _cached_hf(name: str) -> Optional[str]:
        try:
            from huggingface_hub import snapshot_download

            with _hf_offline(True):
                path = snapshot_download(name, local_files_only=True)
        except Exception:  # not in the cache (huggingface_hub raises several types)
            return None
        return path if (Path(path) / "config.json").is_file() else None

    @staticmethod
    def _read_weights(path: Path) -> dict:
        import torch

        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise FeatureError(
                f"cannot read {path.name} as a plain state dict ({type(exc).__name__}: {str(exc)[:200]}); "
                "pickled objects other than tensors and containers are refused."
            ) from exc
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not state:
            raise FeatureError(f"{path.name} does not hold a state dict.")
        if next(iter(state)).startswith("module."):
            state = {k[7:]: v for k, v in state.items()}
        return state

    def _tokenizer(self, tokenizer_dir: Optional[Path], text_cfg: dict, folder: Path):
        import open_clip

        if not text_cfg.get("hf_model_name"):
            return open_clip.get_tokenizer("ViT-B-32", context_length=self.context_length)  # the CLIP BPE (ships with open_clip)
        if tokenizer_dir is None:
            raise OfflineError(
                f"no tokenizer files (vocab.txt, tokenizer.json or tokenizer_config.json) in {folder} or {folder / 'text'}."
            )
        from open_clip.tokenizer import HFTokenizer

        try:
            with _hf_offline(True):
                return HFTokenizer(
                    str(tokenizer_dir), context_length=self.context_length, **(text_cfg.get("tokenizer_kwargs") or {})
                )
        except (OSError, ValueError) as exc:
            raise FeatureError(f"cannot load the tokenizer in {tokenizer_dir}: {str(exc)[:300]}") from exc

    @property
    def normalisation(self) -> str:
        h, w = self.input_size
        return (
            f"grayscale images repeated on 3 channels (R=G=B); shorter side resized to {h} with {self.interpolation} "
            f"interpolation and antialiasing, centre-cropped to {h}x{w}; then (x - mean) / std with mean={self.mean} "
            f"and std={self.std} from open_clip_config.json"
        )

    def resample(self, x: Any):
        """open_clip's resize (shorter side) and centre crop; a grey image stays one channel until :meth:`normalise`."""
        from .hf_image import resize_and_crop

        return resize_and_crop(self.reduce_channels(x), ("short", self.input_size[0]), self.input_size, self.interpolation)

    def _forward(self, x):
        return self.model.encode_image(x, normalize=True)

    encode_image = Encoder.encode

    def encode_text(self, texts: Any, truncate: bool = False, batch_size: int = 64) -> Any:
        """Unit-length text embeddings (N, D) in the same space as the image features.

        Raises
        ------
        FeatureError
            Empty input, or a text longer than the model's context length
            (``context_length`` tokens) when ``truncate`` is False.
        """
        import numpy as np
        import torch

        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise FeatureError("encode_text takes a string or a non-empty list of strings.")
        if not truncate and hasattr(self.tokenizer, "tokenizer"):
            lengths = [len(ids) for ids in self.tokenizer.tokenizer(texts)["input_ids"]]
            long = [i for i, n in enumerate(lengths) if n > self.context_length]
            if long:
                raise FeatureError(
                    f"text {long[0]} has {lengths[long[0]]} tokens; this model reads {self.context_length}. "
                    "Shorten it or pass truncate=True."
                )
        out = []
        with torch.no_grad():
            for a in range(0, len(texts), batch_size):
                ids = self.tokenizer(texts[a : a + batch_size]).to(self.device)
                out.append(self.model.encode_text(ids, normalize=True).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)
