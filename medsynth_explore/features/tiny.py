"""Tiny random-weight encoders written in the real published layouts, for tests, tutorials and benchmarks.

Each writer produces the files the real model is published as, with the
library that publishes it, so that the loaders run their real code paths
offline:

- :func:`write_rad_dino`: ``config.json`` + ``model.safetensors`` +
  ``preprocessor_config.json`` of a transformers ``Dinov2Model``, saved by
  transformers, with RAD-DINO's kind of preprocessing (bicubic shorter-side
  resize, centre crop, single-value mean and std);
- :func:`write_biomedclip`: ``open_clip_config.json`` (BiomedCLIP's
  ``model_cfg``: a timm ViT image tower, a Hugging Face BERT text tower with
  MLP projection and CLS pooling) + ``open_clip_pytorch_model.bin`` (a state
  dict saved by ``torch.save``) + tokenizer files, and the BERT's
  ``text/config.json``;
- :func:`write_xrv_densenet`: a whole module pickled by ``torch.save`` as a
  ``torchxrayvision.models.DenseNet`` (the class path TorchXRayVision's files
  carry; the module is made up for the duration of the save);
- :func:`write_resnet_state_dict`: a torchvision ResNet state dict
  (``.pt``, or ``.safetensors``).

They make meaningless features: they exist to exercise the loaders.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

__all__ = ["write_rad_dino", "write_biomedclip", "write_xrv_densenet", "write_resnet_state_dict", "write_bert_vocab"]

_BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_rad_dino(folder: Any, image_size: int = 56, crop: int | None = None, seed: int = 0) -> Path:
    """A tiny ``Dinov2Model`` folder (hidden 32, 2 layers, patch 14) with a RAD-DINO-style ``preprocessor_config.json``."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    from ..generators.devices import quiet_loading

    folder = Path(folder)
    torch.manual_seed(seed)
    cfg = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        patch_size=14,
        image_size=image_size,
        num_channels=3,
    )
    with quiet_loading():
        Dinov2Model(cfg).eval().save_pretrained(str(folder), safe_serialization=True)
    crop = crop or image_size
    pre = {
        "crop_size": {"height": crop, "width": crop},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5307, 0.5307, 0.5307],
        "image_processor_type": "BitImageProcessor",
        "image_std": [0.2583, 0.2583, 0.2583],
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"shortest_edge": image_size},
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=2), encoding="utf-8")
    return folder


def write_bert_vocab(path: Any) -> list:
    """A WordPiece ``vocab.txt``: BERT's special tokens, lower-case letters, digits, punctuation and a few words."""
    words = "chest x ray radiograph left right pleural effusion no acute findings normal lung heart".split()
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:-()/'")
    vocab = _BERT_SPECIALS + chars + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"] + words
    Path(path).write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    return vocab


def write_biomedclip(folder: Any, image_size: int = 224, context_length: int = 32, seed: int = 0, text: bool = True) -> Path:
    """A tiny open_clip hub folder in BiomedCLIP's layout (``text=False`` leaves out ``text/``)."""
    import open_clip
    import torch

    folder = Path(folder)
    (folder / "text").mkdir(parents=True, exist_ok=True)
    vocab = write_bert_vocab(folder / "vocab.txt")
    bert = {
        "architectures": ["BertForMaskedLM"],
        "model_type": "bert",
        "vocab_size": len(dict.fromkeys(vocab)),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 37,
        "max_position_embeddings": 64,
        "type_vocab_size": 2,
        "pad_token_id": 0,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
    }
    (folder / "text" / "config.json").write_text(json.dumps(bert, indent=2), encoding="utf-8")
    (folder / "text" / "vocab.txt").write_text((folder / "vocab.txt").read_text(encoding="utf-8"), encoding="utf-8")
    tok_cfg = {"do_lower_case": True, "model_max_length": 512, "tokenizer_class": "BertTokenizer"}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_cfg), encoding="utf-8")
    special = {"cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]", "sep_token": "[SEP]", "unk_token": "[UNK]"}
    (folder / "special_tokens_map.json").write_text(json.dumps(special), encoding="utf-8")
    name = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"
    model_cfg = {
        "embed_dim": 16,
        "vision_cfg": {
            "timm_model_name": "vit_tiny_patch16_224",
            "timm_model_pretrained": False,
            "timm_pool": "",
            "timm_proj": "linear",
            "image_size": image_size,
        },
        "text_cfg": {
            "hf_model_name": name,
            "hf_tokenizer_name": name,
            "hf_proj_type": "mlp",
            "hf_pooler_type": "cls_last_hidden_state_pooler",
            "context_length": context_length,
        },
    }
    config = {
        "model_cfg": model_cfg,
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
    }
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    built = json.loads(json.dumps(model_cfg))
    built["text_cfg"]["hf_model_name"] = str(folder / "text")
    built["text_cfg"]["hf_model_pretrained"] = False
    built["text_cfg"].pop("hf_tokenizer_name")
    torch.manual_seed(seed)
    model = open_clip.CustomTextCLIP(**built)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    if not text:
        for f in (folder / "text").iterdir():
            f.unlink()
        (folder / "text").rmdir()
    return folder


def write_xrv_densenet(
    path: Any, blocks: tuple = (2, 2), growth: int = 8, init_features: int = 16, seed: int = 0, legacy: bool = False
) -> Path:
    """A whole DenseNet pickled as ``torchxrayvision.models.DenseNet``, as TorchXRayVision publishes its weights.

    ``legacy=True`` writes the pre-1.6 torch format (``_use_new_zipfile_serialization=False``).
    """
    import torch

    from .xrv import _layers

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    own = _layers()
    fake_pkg, fake_mod = types.ModuleType("torchxrayvision"), types.ModuleType("torchxrayvision.models")
    fake_pkg.models = fake_mod
    saved = {k: sys.modules.get(k) for k in ("torchxrayvision", "torchxrayvision.models")}
    renamed = {}
    try:
        sys.modules["torchxrayvision"], sys.modules["torchxrayvision.models"] = fake_pkg, fake_mod
        for name, cls in own.items():  # pickle records the class as torchxrayvision.models.<name>
            renamed[cls] = (cls.__module__, cls.__qualname__)
            cls.__module__, cls.__qualname__ = "torchxrayvision.models", name
            setattr(fake_mod, name, cls)
        torch.manual_seed(seed)
        net = own["DenseNet"](growth=growth, blocks=tuple(blocks), init_features=init_features, bn_size=2, n_out=18)
        with torch.no_grad():
            for m in net.modules():  # non-trivial running statistics, as a trained network has
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
        net.pathologies = ["Atelectasis"] * 18  # attributes TorchXRayVision's objects carry
        net.register_buffer("op_threshs", None)
        net.eval()
        if legacy:
            torch.save(net, path, _use_new_zipfile_serialization=False)
        else:
            torch.save(net, path)
    finally:
        for cls, (module, qual) in renamed.items():
            cls.__module__, cls.__qualname__ = module, qual
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return path


def write_resnet_state_dict(path: Any, arch: str = "resnet18", seed: int = 0, prefix: str = "", head: bool = True) -> Path:
    """A torchvision ``arch`` state dict (``.pt`` via ``torch.save``, or ``.safetensors``), optionally key-prefixed."""
    import torch
    import torchvision

    path = Path(path)
    torch.manual_seed(seed)
    net = torchvision.models.get_model(arch, weights=None).eval()
    state = {f"{prefix}{k}": v.contiguous() for k, v in net.state_dict().items() if head or not k.startswith("fc.")}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path
