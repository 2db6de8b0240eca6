"""A small CLIP trained on PhantomCXR image-report pairs (the "domain CLIP").

The model is an :class:`open_clip.CLIP` built from a custom configuration: a
small ViT image tower for 64x64 grayscale radiographs (the channel is repeated
to three) and a small causal text transformer. Text is split with open_clip's
:class:`~open_clip.tokenizer.SimpleTokenizer` (its BPE vocabulary ships inside
the package) and the BPE ids are then mapped onto a compact vocabulary made of
the tokens seen in the training reports. A BPE token never seen in training
maps to one shared "unknown" id: its embedding would otherwise be untrained
noise, so the compact table is both smaller and more honest.

The shipped checkpoint ``assets/phantomcxr-clip.safetensors`` serves as

* the default feature encoder of the metrics (:class:`DomainCLIPEncoder`,
  registry name ``"phantomcxr-clip"``),
* the text encoder of the shipped diffusion model, and
* the CLIPScore model.

Examples
--------
>>> clip = DomainCLIP.from_config(tiny_config(), vocab_texts=["no acute findings"], seed=0)
>>> clip.encode_text(["no acute findings"]).shape
(1, 16)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import CheckpointError, ConditionError, DataError, FeatureError

if TYPE_CHECKING:
    from ..generators._training import TrainingResult

__all__ = [
    "CLIPConfig",
    "DEFAULT_CLIP_PATH",
    "DomainCLIP",
    "DomainCLIPEncoder",
    "ReportTokenizer",
    "default_config",
    "encode_text",
    "evaluate_clip",
    "load_domain_clip",
    "tiny_config",
    "train_clip",
]

DEFAULT_CLIP_PATH = Path(__file__).resolve().parent.parent / "assets" / "phantomcxr-clip.safetensors"

# compact vocabulary: fixed special ids, then the BPE tokens seen in training
PAD_ID, UNK_ID, SOT_ID, EOT_ID = 0, 1, 2, 3
N_SPECIAL = 4


@dataclass
class CLIPConfig:
    """Architecture of a domain CLIP.

    Parameters
    ----------
    embed_dim : int
        Size of the joint image-text embedding.
    image_size, patch_size, vision_width, vision_layers, vision_head_width : int
        ViT image tower. Input images are resized to ``image_size``.
    context_length, text_width, text_heads, text_layers : int
        Causal text transformer. Prompts longer than ``context_length`` tokens
        (start and end tokens included) are refused.
    vision_type : {"vit", "resnet"}
        A ViT (patch_size) or open_clip's ModifiedResNet with ``vision_layers``
        blocks in each of its four stages and an attention pool.
    """

    embed_dim: int = 128
    image_size: int = 64
    patch_size: int = 8
    vision_width: int = 128
    vision_layers: int = 4
    vision_head_width: int = 32
    context_length: int = 96
    text_width: int = 128
    text_heads: int = 4
    text_layers: int = 3
    vision_type: str = "vit"

    @classmethod
    def from_dict(cls, d: dict) -> "CLIPConfig":
        known = {k: (str(v) if k == "vision_type" else int(v)) for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def default_config() -> CLIPConfig:
    """Configuration of the shipped model (about 1.8 M parameters).

    A small ModifiedResNet image tower: on PhantomCXR a ViT of similar cost
    (patch 8, width 128, 2 layers) learned the findings several times more
    slowly (finding BCE 0.57 vs 0.36 after 60 steps of 32 images), which on a
    one-core training budget decides the outcome.

    Examples
    --------
    >>> default_config().context_length
    96
    """
    return CLIPConfig(vision_type="resnet", vision_layers=1, vision_width=16, vision_head_width=16)


def tiny_config() -> CLIPConfig:
    """A very small configuration for tests and doctests.

    Examples
    --------
    >>> tiny_config().embed_dim
    16
    """
    return CLIPConfig(
        embed_dim=16,
        image_size=32,
        patch_size=8,
        vision_width=32,
        vision_layers=1,
        vision_head_width=16,
        context_length=32,
        text_width=32,
        text_heads=2,
        text_layers=1,
    )


# ----------------------------------------------------------------------------------------------
# tokenizer
# ----------------------------------------------------------------------------------------------
_BPE = None


def _bpe():
    global _BPE
    if _BPE is None:
        from open_clip.tokenizer import SimpleTokenizer

        _BPE = SimpleTokenizer()
    return _BPE


class ReportTokenizer:
    """open_clip BPE tokenisation mapped onto a compact vocabulary.

    Parameters
    ----------
    bpe_ids : sequence of int
        The open_clip BPE ids kept, in compact-id order (compact id =
        position + 4; ids 0-3 are padding, unknown, start and end).
    context_length : int
        Number of positions of the text transformer.

    Examples
    --------
    >>> tok = ReportTokenizer.fit(["small left pleural effusion"], context_length=16)
    >>> ids = tok(["small left pleural effusion", "large effusion"])
    >>> tuple(ids.shape), int(ids[0, 0]), int((ids[1] == UNK_ID).sum())
    ((2, 16), 2, 1)
    >>> tok(["word " * 40])
    Traceback (most recent call last):
    ...
    medsynth_explore.errors.ConditionError: prompt 0 is 42 tokens long but the text model reads at most 16 ...
    """

    def __init__(self, bpe_ids: Sequence[int], context_length: int):
        self.bpe_ids = np.asarray(list(bpe_ids), dtype=np.int64)
        self.context_length = int(context_length)
        self._map = {int(b): i + N_SPECIAL for i, b in enumerate(self.bpe_ids)}

    @classmethod
    def fit(cls, texts: Iterable[str], context_length: int = 64) -> "ReportTokenizer":
        """Build the compact vocabulary from the BPE tokens of ``texts``."""
        seen: dict[int, None] = {}
        for t in texts:
            for b in _bpe().encode(str(t)):
                seen.setdefault(int(b), None)
        return cls(sorted(seen), context_length)

    @property
    def vocab_size(self) -> int:
        """Number of rows of the token embedding."""
        return N_SPECIAL + len(self.bpe_ids)

    def token_ids(self, text: str) -> list[int]:
        """Compact ids of one text, without start and end tokens."""
        return [self._map.get(int(b), UNK_ID) for b in _bpe().encode(str(text))]

    def __call__(self, texts: str | Sequence[str], truncate: bool = False):
        """Token id tensor of shape (N, context_length).

        Parameters
        ----------
        texts : str or sequence of str
        truncate : bool
            If False (default) a prompt longer than the context raises
            :class:`ConditionError`; if True it is clamped with a warning.
        """
        import torch

        if isinstance(texts, str):
            texts = [texts]
        out = torch.full((len(texts), self.context_length), PAD_ID, dtype=torch.long)
        for i, t in enumerate(texts):
            if t is None or (isinstance(t, float) and math.isnan(t)):
                t = ""
            ids = [SOT_ID, *self.token_ids(t), EOT_ID]
            if len(ids) > self.context_length:
                if not truncate:
                    raise ConditionError(
                        f"prompt {i} is {len(ids)} tokens long but the text model reads at most "
                        f"{self.context_length} (start and end tokens included); shorten it, "
                        "or pass truncate=True to clamp it."
                    )
                warnings.warn(
                    f"prompt {i} has {len(ids)} tokens; clamped to the context length {self.context_length}.",
                    stacklevel=2,
                )
                ids = ids[: self.context_length - 1] + [EOT_ID]
            out[i, : len(ids)] = torch.tensor(ids)
        return out


# ----------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------
def _build_open_clip(cfg: CLIPConfig, vocab_size: int):
    import open_clip

    if cfg.vision_type not in ("vit", "resnet"):
        raise CheckpointError(f"unknown vision tower {cfg.vision_type!r}; use 'vit' or 'resnet'.")
    vision = open_clip.CLIPVisionCfg(
        layers=cfg.vision_layers if cfg.vision_type == "vit" else (cfg.vision_layers,) * 4,
        width=cfg.vision_width,
        head_width=cfg.vision_head_width,
        patch_size=cfg.patch_size,
        image_size=cfg.image_size,
    )
    text = open_clip.CLIPTextCfg(
        context_length=cfg.context_length,
        vocab_size=vocab_size,
        width=cfg.text_width,
        heads=cfg.text_heads,
        layers=cfg.text_layers,
        pool_type="eos",
        eos_id=EOT_ID,
        pad_id=PAD_ID,
    )
    return open_clip.CLIP(cfg.embed_dim, vision, text)


class DomainCLIP:
    """An open_clip model plus its compact tokenizer and model card.

    Use :func:`load_domain_clip` to get the shipped model and :func:`train_clip`
    to train a new one.

    Attributes
    ----------
    model : open_clip.CLIP
    tokenizer : ReportTokenizer
    config : CLIPConfig
    card : dict
    """

    # grayscale radiograph -> three identical channels, then this normalisation
    mean = 0.5
    std = 0.5

    def __init__(self, model, tokenizer: ReportTokenizer, config: CLIPConfig, card: dict | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.card = dict(card or {})

    @classmethod
    def from_config(cls, config: CLIPConfig, vocab_texts: Iterable[str], seed: int = 0) -> "DomainCLIP":
        """A freshly initialised (untrained) model; the vocabulary comes from ``vocab_texts``."""
        import torch

        tok = ReportTokenizer.fit(vocab_texts, config.context_length)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _build_open_clip(config, tok.vocab_size)
        return cls(model, tok, config)

    @property
    def dim(self) -> int:
        """Size of the joint embedding."""
        return self.config.embed_dim

    # -- preprocessing -----------------------------------------------------------------------
    def preprocess(self, images):
        """(N, C, H, W) float images in [0, 1] -> normalised (N, 3, S, S) torch tensor."""
        import torch
        import torch.nn.functional as F

        x = torch.as_tensor(np.asarray(images, dtype=np.float32)) if not torch.is_tensor(images) else images.float()
        if x.ndim != 4:
            raise FeatureError(f"images must have shape (N, C, H, W); got {tuple(x.shape)}.")
        if x.shape[1] == 3:
            x = x.mean(1, keepdim=True)
        elif x.shape[1] != 1:
            raise FeatureError(f"the domain CLIP reads 1- or 3-channel images; got {x.shape[1]} channels.")
        s = self.config.image_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        x = (x - self.mean) / self.std
        return x.expand(-1, 3, -1, -1).contiguous()

    # -- encoders ----------------------------------------------------------------------------
    def encode_image(self, images, batch_size: int = 256, normalize: bool = True) -> np.ndarray:
        """Image embeddings, (N, embed_dim) float32 (unit length if ``normalize``).

        Examples
        --------
        >>> clip = DomainCLIP.from_config(tiny_config(), ["x"], seed=0)
        >>> clip.encode_image(np.zeros((3, 1, 64, 64), np.float32)).shape
        (3, 16)
        """
        import torch

        outs = []
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                x = self.preprocess(images[i : i + batch_size])
                outs.append(self.model.encode_image(x, normalize=normalize).float().numpy())
        if not outs:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate(outs).astype(np.float32)

    def encode_text(self, texts: str | Sequence[str], normalize: bool = True, truncate: bool = False) -> np.ndarray:
        """Text embeddings, (N, embed_dim) float32 (unit length if ``normalize``).

        Raises
        ------
        ConditionError
            If a prompt is longer than the context length and ``truncate`` is False.
        """
        import torch

        ids = self.tokenizer(texts, truncate=truncate)
        with torch.no_grad():
            z = self.model.encode_text(ids, normalize=normalize)
        return z.float().numpy().astype(np.float32)

    def text_states(self, texts: str | Sequence[str], truncate: bool = False):
        """Per-token hidden states and pooled embedding (torch, no grad).

        Returns
        -------
        tokens : torch.Tensor, (N, context_length, text_width)
            Final-layer-norm output of every position.
        pooled : torch.Tensor, (N, embed_dim)
            Unit-length text embedding.
        mask : torch.Tensor, (N, context_length) bool
            True on real tokens (start to end token).
        """
        import torch

        ids = self.tokenizer(texts, truncate=truncate)
        m = self.model
        with torch.no_grad():
            x = m.token_embedding(ids) + m.positional_embedding
            x = m.transformer(x, attn_mask=m.attn_mask)
            x = m.ln_final(x)
            eot = (ids == EOT_ID).int().argmax(-1)
            pooled = x[torch.arange(len(ids)), eot] @ m.text_projection
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        mask = torch.arange(ids.shape[1])[None] <= eot[:, None]
        return x, pooled, mask

    def similarity(self, images, texts: Sequence[str]) -> np.ndarray:
        """Cosine similarity matrix (N_images, N_texts)."""
        return self.encode_image(images) @ self.encode_text(texts).T

    # -- persistence -------------------------------------------------------------------------
    def state_tensors(self, fp16: bool = True) -> dict:
        """Flat name -> tensor dict for a safetensors file (weights in fp16 by default)."""
        import torch

        out = {}
        for k, v in self.model.state_dict().items():
            v = v.detach().cpu()
            if fp16 and v.is_floating_point():
                v = v.half()
            out[f"model.{k}"] = v.contiguous()
        out["tokenizer.bpe_ids"] = torch.as_tensor(self.tokenizer.bpe_ids, dtype=torch.int64)
        return out

    def save(self, path, card: dict | None = None) -> str:
        """Write one safetensors checkpoint with its card; returns its sha256."""
        from ..checkpoint import save_checkpoint

        card = dict(card or self.card)
        card.setdefault("name", "phantomcxr-clip")
        card["family"] = "clip"
        card["architecture"] = {
            "type": "open_clip.CLIP",
            **asdict(self.config),
            "vocab_size": self.tokenizer.vocab_size,
            "tokenizer": "open_clip SimpleTokenizer BPE mapped to a compact vocabulary",
        }
        self.card = card
        return save_checkpoint(path, self.state_tensors(), card)

    @classmethod
    def from_tensors(cls, tensors: dict, card: dict) -> "DomainCLIP":
        """Rebuild from a checkpoint's tensors and card."""
        import torch

        arch = card.get("architecture") or {}
        try:
            cfg = CLIPConfig.from_dict(arch)
            bpe_ids = np.asarray(tensors["tokenizer.bpe_ids"]).astype(np.int64)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"this is not a domain-CLIP checkpoint (missing {exc}); train one with train_clip().") from exc
        tok = ReportTokenizer(bpe_ids, cfg.context_length)
        model = _build_open_clip(cfg, tok.vocab_size)
        state = {
            k[len("model.") :]: torch.as_tensor(np.asarray(v)).float()
            if np.asarray(v).dtype.kind == "f"
            else torch.as_tensor(np.asarray(v))
            for k, v in tensors.items()
            if k.startswith("model.")
        }
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"domain-CLIP checkpoint does not match its card: missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}."
            )
        return cls(model, tok, cfg, card)


_LOADED: dict[str, DomainCLIP] = {}


def load_domain_clip(path: str | Path | None = None) -> DomainCLIP:
    """Load a domain CLIP checkpoint (the shipped one when ``path`` is None).

    Loaded models are cached per resolved path.

    Raises
    ------
    CheckpointError
        If the file is missing or is not a domain-CLIP checkpoint.

    Examples
    --------
    >>> clip = load_domain_clip()  # doctest: +SKIP
    >>> clip.encode_text(["right pleural effusion"]).shape  # doctest: +SKIP
    (1, 128)
    """
    p = Path(path) if path is not None else DEFAULT_CLIP_PATH
    key = str(p.resolve())
    if key in _LOADED:
        return _LOADED[key]
    if not p.exists():
        raise CheckpointError(
            f"domain-CLIP checkpoint {p} not found. The shipped one lives at {DEFAULT_CLIP_PATH}; "
            "reinstall the package or train one with `medsynth train --model clip --data DIR --out FILE`."
        )
    from ..checkpoint import load_checkpoint

    ck = load_checkpoint(p)
    fam = (ck.card or {}).get("family")
    if fam != "clip":
        raise CheckpointError(f"{p} is a {fam!r} checkpoint, not a domain CLIP (family 'clip').")
    clip = DomainCLIP.from_tensors(ck.tensors, ck.card)
    _LOADED[key] = clip
    return clip


def encode_text(texts: str | Sequence[str], path: str | Path | None = None, truncate: bool = False) -> np.ndarray:
    """Unit-length text embeddings (N, D) from the domain CLIP.

    Raises
    ------
    ConditionError
        If a prompt is longer than the context length (96 tokens for the
        shipped model) and ``truncate`` is False.

    Examples
    --------
    >>> encode_text(["left pleural effusion", "no acute findings"]).shape  # doctest: +SKIP
    (2, 128)
    """
    return load_domain_clip(path).encode_text(texts, truncate=truncate)


# ----------------------------------------------------------------------------------------------
# feature encoder
# ----------------------------------------------------------------------------------------------
from .base import Encoder, state_dict_hash  # noqa: E402  (base is light: no torch at import)


class DomainCLIPEncoder(Encoder):
    """Image tower of the domain CLIP as a feature :class:`Encoder`.

    The default feature encoder of the metrics (registry name
    ``"phantomcxr-clip"``). Features are unit-length ``embed_dim`` vectors.

    Parameters
    ----------
    path : str or Path, optional
        Checkpoint to load; the shipped one when omitted.
    checkpoint : str or Path, optional
        Alias of ``path``.
    clip : DomainCLIP, optional
        An already built model (e.g. made in a test); overrides ``path``.
    device : str
        Torch device (default ``"cpu"``).

    Examples
    --------
    >>> enc = DomainCLIPEncoder(clip=DomainCLIP.from_config(tiny_config(), ["x"], seed=0))
    >>> enc.encode(np.zeros((2, 1, 64, 64), np.float32)).shape
    (2, 16)
    >>> enc.encode_text(["x"]).shape
    (1, 16)
    """

    channels = 3
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    #: 32 rather than the base's 64: at 64 images of 64 px the widest activations pass glibc's 32 MB ceiling for
    #: reusing freed memory, so every batch maps fresh pages (about 120 page faults per image); at 32 none do, the
    #: features are bit-identical and the forward pass ran 1.22-1.44x faster on one CPU thread, 1.08-1.24x on two
    default_batch_size = 32

    def __init__(
        self,
        path: str | Path | None = None,
        checkpoint: str | Path | None = None,
        clip: DomainCLIP | None = None,
        device: Any = "cpu",
        dtype: Any = None,
    ):
        from ..generators.devices import resolve_device, resolve_dtype

        if clip is None:
            clip = load_domain_clip(path if path is not None else checkpoint)
        self.clip = clip
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        if dev.type == "cpu" and str(dt) == "torch.float32":
            self.model, self.device = clip.model, dev
        else:  # the loaded CLIP is shared (load_domain_clip caches it): move a copy, leave it as it is
            import copy

            self.model = self._place(copy.deepcopy(clip.model), dev, dt)
        s = clip.config.image_size
        self.input_size = (s, s)
        self.dim = clip.config.embed_dim
        name = clip.card.get("name", "domain-clip") if clip.card else "domain-clip"
        self.id = f"{name}-{s}px-{state_dict_hash(clip.model)}{self.precision_tag}"

    def _forward(self, x):
        return self.model.encode_image(x, normalize=True)

    def encode_text(self, texts: str | Sequence[str], truncate: bool = False) -> np.ndarray:
        """Unit-length text embeddings (N, D); see :meth:`DomainCLIP.encode_text`."""
        return self.clip.encode_text(texts, truncate=truncate)


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
def _report_column(data) -> list[str]:
    meta = getattr(data, "metadata", None)
    if meta is None or "report" not in meta.columns:
        cols = list(meta.columns) if meta is not None else []
        raise DataError(
            f"training the domain CLIP needs an ImageSet with a 'report' text column; got columns {cols}. "
            "PhantomCXR data (medsynth_explore.simulate) has one."
        )
    return [str(t) for t in meta["report"].fillna("").tolist()]


def _augment(x, gen):
    """Small random shifts (up to 2 px) and brightness/contrast jitter, on [0, 1] images."""
    import torch

    n = x.shape[0]
    pad = 2
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    h, w = x.shape[-2:]
    out = torch.stack([xp[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    gain = 1 + 0.1 * (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1)
    bias = 0.05 * (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1)
    return (out * gain + bias).clamp(0, 1)


def evaluate_clip(clip: DomainCLIP, data, findings: Sequence[str] | None = None) -> dict:
    """Retrieval and zero-shot scores of a domain CLIP on held-out data.

    Parameters
    ----------
    clip : DomainCLIP
    data : ImageSet
        Images with a ``report`` column and 0/1 finding columns.
    findings : sequence of str, optional
        Finding columns to score zero-shot; defaults to those of
        :data:`FINDING_PROMPTS` present in the metadata.

    Returns
    -------
    dict
        ``retrieval_top1`` / ``retrieval_top5``: fraction of images whose own
        report (or a report with identical text) is the best / among the five
        best of all distinct held-out reports. ``zeroshot_auroc``: per finding,
        the AUROC of ``sim(image, positive prompt) - sim(image, negative
        prompt)`` against the label. ``retrieval_top1_same_findings``: fraction
        of images whose best report states exactly their findings.
    """
    from sklearn.metrics import roc_auc_score

    reports = _report_column(data)
    uniq, inv = np.unique(np.asarray(reports, dtype=object).astype(str), return_inverse=True)
    zi = clip.encode_image(data.images)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zt = clip.encode_text(list(uniq), truncate=True)
    sim = zi @ zt.T
    order = np.argsort(-sim, axis=1)
    top1 = float(np.mean(order[:, 0] == inv))
    top5 = float(np.mean((order[:, :5] == inv[:, None]).any(1)))
    out = {"retrieval_top1": top1, "retrieval_top5": top5, "n_images": int(len(zi)), "n_distinct_reports": int(len(uniq))}
    meta = data.metadata
    lab_cols = [c for c in FINDING_PROMPTS if c in meta.columns]
    if lab_cols:
        # first report of each distinct text, and whether the best report states the image's findings
        lab = meta[lab_cols].fillna(0).to_numpy(int)
        first = np.zeros(len(uniq), int)
        first[inv[::-1]] = np.arange(len(inv))[::-1]
        out["retrieval_top1_same_findings"] = float(np.mean((lab[first[order[:, 0]]] == lab).all(1)))
    aucs = {}
    names = findings if findings is not None else [f for f in FINDING_PROMPTS if f in meta.columns]
    for f in names:
        y = meta[f].to_numpy().astype(int)
        if y.min() == y.max():
            continue
        pos, neg = FINDING_PROMPTS.get(f, (f.replace("_", " "), f"no {f.replace('_', ' ')}"))
        zp = clip.encode_text([pos, neg])
        score = zi @ zp[0] - zi @ zp[1]
        aucs[f] = float(roc_auc_score(y, score))
    out["zeroshot_auroc"] = aucs
    return out


#: Prompt pairs (positive, negative) used for zero-shot finding scores.
FINDING_PROMPTS = {
    "effusion": ("pleural effusion", "no pleural effusion"),
    "cardiomegaly": ("cardiomegaly", "no cardiomegaly"),
    "nodule": ("pulmonary nodule", "no pulmonary nodule"),
    "pneumothorax": ("pneumothorax", "no pneumothorax"),
    "chest_tube": ("chest tube", "no chest tube"),
}


def train_clip(
    data,
    out: str | Path | None,
    epochs: int = 30,
    seed: int = 0,
    callback: Callable[[int, int], Any] | None = None,
    config: CLIPConfig | None = None,
    batch_size: int = 64,
    lr: float = 5e-4,
    val_fraction: float = 0.1,
    name: str = "phantomcxr-clip",
    label_columns: Sequence[str] | None = None,
    label_weight: float = 1.0,
    *,
    max_seconds: float | None = None,
    log: Callable[[str], Any] | None = None,
) -> TrainingResult:
    """Train a domain CLIP contrastively on image-report pairs.

    The target of each image (and each report) is a distribution over the
    batch: its own pair, every pair with an identical report text, and, with
    weight ``label_weight``, every pair whose report describes the same set
    of findings (rows with equal ``label_columns`` values; PhantomCXR reports
    are written from these labels, so such reports say the same thing in
    other words). Without these soft positives a small CLIP trained from
    scratch on a few thousand look-alike radiographs stays at chance level
    for many epochs (measured: loss at ln(batch) after 2 epochs on 6000
    images).

    Parameters
    ----------
    data : ImageSet
        Images with a ``report`` column (PhantomCXR metadata has one).
    out : str or Path or None
        Where to write the safetensors checkpoint; ``None`` writes nothing.
    epochs : int
        Passes over the training part.
    seed : int
        Seed of the split, initialisation, shuffling and augmentation.
    callback : callable(done_steps, total_steps), optional
        Called after every step; returning ``False`` cancels (raises
        :class:`~medsynth_explore.errors.CancelledError`; nothing is saved).
    config : CLIPConfig, optional
        Architecture (default :func:`default_config`).
    batch_size, lr : training hyperparameters (AdamW, cosine schedule, warm-up).
    val_fraction : float
        Share of images held out for the metrics in the card.
    name : str
        Model name in the card.
    label_columns : sequence of str, optional
        Metadata columns defining "same findings" (default: those of
        :data:`FINDING_PROMPTS` present). Pass ``[]`` for pure image-report pairs.
    label_weight : float
        Weight of same-findings pairs in the soft targets (0 disables them).
    max_seconds : float, optional
        Stop after the first epoch that ends past this wall-clock budget; the
        card records the epochs actually run.
    log : callable(str), optional
        Receives one line per epoch with the mean loss.

    Returns
    -------
    TrainingResult
        ``(clip, card)``: the trained :class:`DomainCLIP` (loaded back from
        ``out`` when written) and its model card: ``card["metrics"]`` holds
        held-out retrieval and zero-shot AUROC, ``card["training"]["time_seconds"]``
        the time, and ``card["sha256"]`` the file's SHA-256 when written.

    Examples
    --------
    >>> import pandas as pd
    >>> from medsynth_explore.data import ImageSet
    >>> rng = np.random.default_rng(0)
    >>> ds = ImageSet(rng.random((16, 1, 32, 32)).astype(np.float32),
    ...               pd.DataFrame({"report": ["effusion", "normal"] * 8}))
    >>> clip, card = train_clip(ds, None, epochs=1, config=tiny_config(), batch_size=8)
    >>> card["family"], card["training"]["epochs"], clip.dim == card["architecture"]["embed_dim"]
    ('clip', 1, True)
    """
    import torch

    from ..generators._training import TrainingLoop, TrainingResult, epoch_batches, out_path, run_record, save_and_reload

    if len(data) < 4:
        raise DataError(f"training the domain CLIP needs at least 4 images; got {len(data)}.")
    out = out_path(out) if out is not None else None
    reports = _report_column(data)
    config = config or default_config()
    split = data.split({"train": 1 - val_fraction, "val": val_fraction}, seed=seed) if val_fraction > 0 else {"train": data}
    train, val = split["train"], split.get("val")
    clip = DomainCLIP.from_config(config, reports, seed=seed)
    model = clip.model.train()
    gen = torch.Generator().manual_seed(seed)
    x_all, ids_all, rep_code, lab_code, label_cols = _clip_training_tensors(clip, train, label_columns, label_weight)
    n = len(x_all)
    bs = min(batch_size, n)
    total = epochs * max(1, n // bs)
    opt, sched = _clip_optimizer(model, lr, total)
    loop = TrainingLoop(total, callback, max_seconds, log, what="CLIP training")

    def step(idx):
        x = _augment(x_all[idx] * DomainCLIP.std + DomainCLIP.mean, gen)
        x = ((x - DomainCLIP.mean) / DomainCLIP.std).expand(-1, 3, -1, -1)
        zi = model.encode_image(x, normalize=True)
        zt = model.encode_text(ids_all[idx], normalize=True)
        logits = model.logit_scale.exp() * zi @ zt.T
        same = (rep_code[idx][:, None] == rep_code[idx][None, :]).float()
        if lab_code is not None:
            same_lab = (lab_code[idx][:, None] == lab_code[idx][None, :]).float()
            same = torch.maximum(same, label_weight * same_lab)
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (
            torch.sum(-target * logits.log_softmax(1), 1).mean() + torch.sum(-target * logits.T.log_softmax(1), 1).mean()
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        return float(loss.detach())

    history = loop.run_epochs(
        epochs, lambda epoch: epoch_batches(n, bs, gen), step, lambda epoch, m: (round(m["loss"], 4), f"loss {m['loss']:.4f}")
    )
    record = run_record(loop, int(seed))
    model.eval()
    # round-trip through fp16, as stored, before measuring
    for p in model.parameters():
        p.data = p.data.half().float()

    metrics = evaluate_clip(clip, val) if val is not None and len(val) >= 2 else {}
    from ..checkpoint.card import new_card

    prov = dict(getattr(data, "provenance", {}) or {})
    counts = {c: int(data.metadata[c].sum()) for c in FINDING_PROMPTS if c in data.metadata.columns}
    card = new_card(
        name,
        "clip",
        {
            "type": "open_clip.CLIP",
            **asdict(config),
            "vocab_size": clip.tokenizer.vocab_size,
            "tokenizer": "open_clip SimpleTokenizer BPE mapped to a compact vocabulary",
        },
        description=(
            "Small CLIP (open_clip ViT image tower, causal text transformer) trained contrastively on "
            "image-report pairs; image features serve as the default metric encoder and text features "
            "condition the diffusion model."
        ),
        training_data={
            "dataset": prov.get("source", "unknown"),
            "version": prov.get("version"),
            "seed": prov.get("seed"),
            "content_hash": prov.get("content_hash"),
            "size": int(len(data)),
            "train_size": int(len(train)),
            "val_size": int(len(val)) if val is not None else 0,
            "counts": counts,
        },
        training={
            "epochs": loop.epochs,
            "epochs_planned": int(epochs),
            "steps": loop.step,
            "batch_size": int(bs),
            "lr": float(lr),
            "optimizer": "AdamW(0.9, 0.98), wd 0.1",
            "schedule": "linear warm-up 5% then cosine",
            "augmentation": "shift <= 2 px, gain +-10%, bias +-0.05",
            "loss": (
                "symmetric InfoNCE with soft targets: identical reports, and reports of the same findings "
                "with weight label_weight"
            ),
            "label_columns": label_cols,
            "label_weight": float(label_weight),
            **record,
            "loss_history": history,
        },
        sampler_defaults={},
        capabilities=["image_features", "text_features"],
        intended_use="Feature encoder and text encoder for PhantomCXR-like 64x64 chest radiographs; teaching and method "
        "development.",
        limitations=[
            "Trained only on simulated PhantomCXR images and their template reports; features of real radiographs are "
            "not validated.",
            "Vocabulary limited to BPE tokens seen in the training reports; other words map to one unknown token.",
            f"Prompts longer than {config.context_length} tokens are refused (or clamped with truncate=True).",
        ],
        metrics={"heldout": metrics},
    )
    clip.card = card
    if out is None:
        return TrainingResult(clip, card)
    ck, card = save_and_reload(out, clip.state_tensors(), card)
    return TrainingResult(DomainCLIP.from_tensors(ck.tensors, ck.card), card)


def _clip_training_tensors(clip: DomainCLIP, train, label_columns, label_weight: float) -> tuple:
    """Normalised single-channel images, token ids, report codes and (optional) same-findings codes of the training part."""
    import torch

    tr_reports = _report_column(train)
    x_all = clip.preprocess(train.images)[:, :1]  # normalised single channel, expanded per batch
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids_all = clip.tokenizer(tr_reports, truncate=True)
    if caught:
        warnings.warn(
            f"{len(caught)} training reports are longer than the context length {clip.config.context_length} and were clamped.",
            stacklevel=3,
        )
    _, rep_code = np.unique(np.asarray(tr_reports, dtype=object).astype(str), return_inverse=True)
    label_cols = [c for c in (label_columns if label_columns is not None else FINDING_PROMPTS) if c in train.metadata.columns]
    lab_code = None
    if label_cols and label_weight > 0:
        lab = train.metadata[label_cols].fillna(0).to_numpy(float)
        _, codes = np.unique(lab, axis=0, return_inverse=True)
        lab_code = torch.as_tensor(codes.ravel())
    return x_all, ids_all, torch.as_tensor(rep_code), lab_code, label_cols


def _clip_optimizer(model, lr: float, total: int) -> tuple:
    """AdamW (no weight decay on gains, biases, embeddings and the logit scale) with a 5 % warm-up and cosine decay."""
    import torch

    decay, no_decay = [], []
    for pname, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in pname or "logit_scale" in pname else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98)
    )
    warm = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm)))
    )
    return opt, sched
