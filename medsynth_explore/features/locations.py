"""Where real models given by name are looked for: the models folder (``$MEDSYNTH_MODELS``)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MODELS_ENV", "models_dir"]

#: Environment variable naming the folder where real models given by name live.
MODELS_ENV = "MEDSYNTH_MODELS"


def models_dir() -> Path:
    """The models folder: ``$MEDSYNTH_MODELS``, else ``~/.cache/medsynth-explore/models``.

    Each named model has a sub-folder there (``rad-dino/``, ``biomedclip/``, ``xrv-densenet121/``).

    Examples
    --------
    >>> models_dir().name
    'models'
    """
    env = os.environ.get(MODELS_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "medsynth-explore" / "models"
