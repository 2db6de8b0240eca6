"""DINOv2 ViT image features through ``torch.hub`` (offline: from the local hub cache only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..errors import FeatureError, OfflineError
from .base import Encoder, file_hash

__all__ = ["DINOv2Encoder", "DINOV2_VARIANTS"]

#: variant -> feature dimension of the CLS token
DINOV2_VARIANTS = {"vits14": 384, "vitb14": 768, "vitl14": 1024, "vitg14": 1536}


class DINOv2Encoder(Encoder):
    """CLS-token features of a DINOv2 ViT (Oquab et al. 2023).

    The hub code (``facebookresearch/dinov2``) and weights
    (``dinov2_<variant>_pretrain.pth``) must already be in the torch hub
    cache (``torch.hub.get_dir()``), as ``torch.hub.load`` leaves them after a
    download on a machine with internet access; ``repo_dir`` may point to a
    local clone instead. Images: grayscale repeated on 3 channels, resized to
    224x224 (antialiased bilinear), ImageNet mean/std.

    Parameters
    ----------
    variant : {"vits14", "vitb14", "vitl14", "vitg14"}
    repo_dir : path, optional
        A local clone of facebookresearch/dinov2 (default: the hub cache copy).
    device : str

    Raises
    ------
    OfflineError
        When the code or weights are not on this machine.

    Examples
    --------
    >>> DINOv2Encoder("vits14").dim  # doctest: +SKIP
    384
    """

    def __init__(self, variant: str = "vits14", repo_dir: Optional[str] = None, device: Any = "cpu", dtype: Any = None):
        import torch

        variant = variant.replace("dinov2_", "")
        if variant not in DINOV2_VARIANTS:
            raise FeatureError(f"unknown DINOv2 variant {variant!r}; choose one of {sorted(DINOV2_VARIANTS)}.")
        hub = Path(torch.hub.get_dir())
        repo = Path(repo_dir) if repo_dir else hub / "facebookresearch_dinov2_main"
        weights = hub / "checkpoints" / f"dinov2_{variant}_pretrain.pth"
        missing = [str(p) for p in (repo / "hubconf.py", weights) if not p.is_file()]
        if missing:
            raise OfflineError(
                f"DINOv2 {variant} is not on this machine (missing: {', '.join(missing)}). On a machine with internet "
                f"access run torch.hub.load('facebookresearch/dinov2', 'dinov2_{variant}') and copy {hub} "
                "(the facebookresearch_dinov2_main folder and checkpoints/) to this machine's torch hub dir."
            )
        try:
            model = torch.hub.load(str(repo), f"dinov2_{variant}", source="local", pretrained=False)
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as exc:
            raise FeatureError(f"cannot build DINOv2 {variant} from {repo} and {weights}: {str(exc)[:300]}") from exc
        self.model = self._place(model, device, dtype)
        self.channels = 3
        self.input_size = (224, 224)
        self.mean, self.std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        self.dim = DINOV2_VARIANTS[variant]
        self.id = f"dinov2-{variant}-{file_hash(weights, 8)}-224px{self.precision_tag}"

    def _forward(self, x):
        return self.model(x)
