"""Model cards: what a checkpoint is, what it was trained on, and how to use it.

A card is a plain JSON-serialisable ``dict``. It travels inside the
``.safetensors`` header (metadata key ``"medsynth_card"``) so weights and
documentation can never be separated. :func:`new_card` fills in the standard
fields, :func:`validate_card` checks one read from a file, and
:func:`format_card` renders a readable Markdown view.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import platform
from typing import Any, Mapping

from ..errors import CheckpointError

__all__ = ["FAMILIES", "CARD_FIELDS", "new_card", "validate_card", "format_card", "machine_description", "weights_summary"]

#: Model families a card may declare.
FAMILIES = ("vae", "gan", "diffusion", "physics", "clip", "classifier", "segmenter")

#: Standard card fields and their defaults (filled in by :func:`validate_card`).
CARD_FIELDS: dict[str, Any] = {
    "name": None,  # required
    "family": None,  # required, one of FAMILIES
    "architecture": None,  # required: constructor arguments that rebuild the model
    "description": "",
    "conditions": None,  # ConditionSchema.to_dict(), or None for unconditional models
    "training_data": {},  # dataset, version, seed, content_hash, size, counts, condition_distribution
    "training": {},  # hyperparameters, time_seconds, machine, epochs, steps
    "sampler_defaults": {},
    "capabilities": [],
    "license": "BSD-3-Clause",
    "intended_use": "",
    "limitations": [],
    "metrics": {},
    "created": None,
    "tensor_shapes": None,  # {name: [dims]} written by save_checkpoint
    "tensor_dtypes": None,  # {name: dtype string} written by save_checkpoint
    "weights_digest": None,  # SHA-256 over names, dtypes, shapes and bytes; written by save_checkpoint
}


def machine_description() -> str:
    """A short description of this machine for the ``training.machine`` field.

    Examples
    --------
    >>> isinstance(machine_description(), str)
    True
    """
    import os

    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}"


def new_card(name: str, family: str, architecture: Mapping[str, Any], **fields: Any) -> dict:
    """Build a model card with every standard field present.

    Parameters
    ----------
    name : str
        Short model name, e.g. ``"phantomcxr-vae"``.
    family : {"vae", "gan", "diffusion", "physics", "clip", "classifier", "segmenter"}
        Model family; decides which class :func:`medsynth_explore.load_generator` builds.
    architecture : mapping
        Constructor arguments that rebuild the network (JSON-serialisable).
    **fields
        Any other card field (see :data:`CARD_FIELDS`), e.g. ``conditions``,
        ``training_data``, ``training``, ``limitations``.

    Returns
    -------
    dict
        A validated card.

    Examples
    --------
    >>> card = new_card("tiny", "vae", {"latent_dim": 8})
    >>> card["family"], card["license"]
    ('vae', 'BSD-3-Clause')
    """
    card = {"name": name, "family": family, "architecture": dict(architecture)}
    card.update(fields)
    card.setdefault("created", _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return validate_card(card)


def validate_card(card: Any) -> dict:
    """Check a model card and return a copy with missing optional fields filled in.

    Parameters
    ----------
    card : mapping
        The card, e.g. as parsed from a checkpoint header.

    Returns
    -------
    dict

    Raises
    ------
    CheckpointError
        If the card is not a mapping, is not JSON-serialisable, lacks ``name``,
        ``family`` or ``architecture``, or names an unknown family.

    Examples
    --------
    >>> validate_card({"name": "m", "family": "gan", "architecture": {}})["limitations"]
    []
    >>> validate_card({"name": "m", "family": "flow", "architecture": {}})
    Traceback (most recent call last):
    ...
    medsynth_explore.errors.CheckpointError: model card family 'flow' is unknown; use one of vae, gan, diffusion, ...
    """
    if not isinstance(card, Mapping):
        raise CheckpointError(f"a model card must be a mapping (JSON object), got {type(card).__name__}.")
    out = copy.deepcopy(dict(card))
    missing = [k for k in ("name", "family", "architecture") if out.get(k) in (None, "")]
    if missing:
        raise CheckpointError(
            f"model card lacks the required field(s) {', '.join(missing)}; "
            "a card needs at least name, family and architecture (see medsynth_explore.checkpoint.new_card)."
        )
    if not isinstance(out["name"], str):
        raise CheckpointError(f"model card name must be a string, got {type(out['name']).__name__}.")
    if out["family"] not in FAMILIES:
        raise CheckpointError(f"model card family {out['family']!r} is unknown; use one of {', '.join(FAMILIES)}.")
    if not isinstance(out["architecture"], Mapping):
        raise CheckpointError("model card architecture must be a mapping of constructor arguments.")
    for key, default in CARD_FIELDS.items():
        if key not in out:
            out[key] = copy.deepcopy(default)
    if isinstance(out["limitations"], str):
        out["limitations"] = [out["limitations"]]
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"model card is not JSON-serialisable ({exc}); convert numpy values to plain Python.") from exc
    return out


def weights_summary(card: Mapping[str, Any]) -> str:
    """``"N tensors, M values"`` from a card's ``tensor_shapes`` (empty when it has none).

    Examples
    --------
    >>> weights_summary({"tensor_shapes": {"w": [3, 4], "b": [4]}})
    '2 tensors, 16 values'
    """
    shapes = card.get("tensor_shapes") or {}
    total = 0
    for shape in shapes.values():
        p = 1
        for d in shape:
            p *= int(d)
        total += p
    return f"{len(shapes)} tensors, {total:,} values" if shapes else ""


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        s = json.dumps(v, sort_keys=True)
        return s if len(s) <= 200 else s[:197] + "..."
    return str(v)


def format_card(card: Mapping[str, Any], sha256: str | None = None) -> str:
    """Render a model card as readable Markdown.

    Parameters
    ----------
    card : mapping
        A model card.
    sha256 : str, optional
        SHA-256 of the checkpoint file, shown in the header.

    Returns
    -------
    str

    Examples
    --------
    >>> text = format_card(new_card("tiny", "vae", {"latent_dim": 8}), sha256="ab" * 32)
    >>> text.splitlines()[0]
    '# tiny (vae)'
    >>> "abababab" in text
    True
    """
    c = validate_card(card)
    lines = [f"# {c['name']} ({c['family']})", ""]
    if sha256:
        lines.append(f"- **SHA-256**: `{sha256}`")
    if c.get("created"):
        lines.append(f"- **Created**: {c['created']}")
    lines.append(f"- **Licence**: {c['license']}")
    if c.get("capabilities"):
        lines.append(f"- **Capabilities**: {', '.join(map(str, c['capabilities']))}")
    if c.get("description"):
        lines += ["", c["description"]]
    if c.get("intended_use"):
        lines += ["", "## Intended use", "", str(c["intended_use"])]
    if c.get("limitations"):
        lines += ["", "## Known limitations", ""] + [f"- {x}" for x in c["limitations"]]
    cond = c.get("conditions")
    if cond:
        lines += ["", "## Conditions", ""]
        for item in cond.get("conditions", []):
            kind = item.get("kind")
            detail = {
                "continuous": f"range {item.get('range')}",
                "categorical": f"values {item.get('values')}",
                "findings": f"labels {item.get('names')}",
                "text": f"up to {item.get('max_tokens')} tokens",
            }.get(kind, "")
            lines.append(f"- `{item.get('name')}` ({kind}): {detail}")
    td = c.get("training_data") or {}
    if td:
        lines += ["", "## Training data", ""]
        for k, v in td.items():
            if k == "condition_distribution":
                continue
            lines.append(f"- {k}: {_fmt_value(v)}")
    tr = c.get("training") or {}
    if tr:
        lines += ["", "## Training", ""] + [f"- {k}: {_fmt_value(v)}" for k, v in tr.items()]
    if c.get("sampler_defaults"):
        lines += ["", "## Sampler defaults", ""] + [f"- {k}: {_fmt_value(v)}" for k, v in c["sampler_defaults"].items()]
    if c.get("metrics"):
        lines += ["", "## Metrics at release", ""] + [f"- {k}: {_fmt_value(v)}" for k, v in c["metrics"].items()]
    lines += ["", "## Architecture", ""] + [f"- {k}: {_fmt_value(v)}" for k, v in c["architecture"].items()]
    if c.get("tensor_shapes"):
        lines.append(f"- weights: {weights_summary(c)}")
    return "\n".join(lines) + "\n"
