"""Shared pieces of the training functions: data checks, provenance, condition tables."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from .conditions import ConditionSchema, condition_distribution

AGE_BANDS = (18, 40, 60, 90)


def condition_table(metadata: pd.DataFrame, schema: ConditionSchema) -> pd.DataFrame:
    """Read the schema's conditions from a training set's metadata.

    Findings are read from 0/1 columns named after each finding, or parsed from
    a ``findings`` column holding lists or ``;``/``,``-separated names.
    """
    out: dict[str, Any] = {}
    for c in schema.conditions:
        if c.kind in ("continuous", "categorical"):
            if c.name not in metadata:
                raise DataError(
                    f"training data lacks the metadata column {c.name!r} needed for the {c.name} condition; "
                    f"it has {list(metadata.columns)}."
                )
            out[c.name] = metadata[c.name].to_numpy()
        elif c.kind == "findings":
            parsed = None
            for name in c.names:
                if name in metadata:
                    out[name] = metadata[name].astype(float).astype(int).to_numpy()
                    continue
                if "findings" not in metadata:
                    raise DataError(
                        f"training data has neither a {name!r} column nor a 'findings' column; "
                        "give one 0/1 column per finding."
                    )
                if parsed is None:
                    parsed = [
                        set(x) if isinstance(x, (list, tuple, set, np.ndarray))
                        else {s.strip() for s in str(x).replace(";", ",").split(",") if s.strip()}
                        for x in metadata["findings"].fillna("")
                    ]
                out[name] = np.array([int(name in s) for s in parsed])
    df = pd.DataFrame(out, index=pd.RangeIndex(len(metadata)))
    try:
        schema.validate({k: df[k].to_numpy() for k in df.columns})
    except Exception as exc:
        raise DataError(f"training metadata does not fit the condition schema: {exc}") from exc
    return df


def training_images(data: Any, image_size: int) -> np.ndarray:
    from ..data.imageset import ImageSet

    if not isinstance(data, ImageSet):
        raise DataError(f"training data must be an ImageSet, got {type(data).__name__}; load it with medsynth_explore.load_dataset.")
    if len(data) < 2:
        raise DataError(f"training needs at least 2 images, got {len(data)}.")
    c, h, w = data.images.shape[1:]
    if c != 1 or h != image_size or w != image_size:
        raise DataError(
            f"training images have shape (C, H, W)=({c}, {h}, {w}); this model needs (1, {image_size}, {image_size}). "
            "Resize or simulate at that size."
        )
    return data.images


def data_provenance(data: Any, table: pd.DataFrame, schema: ConditionSchema) -> dict:
    """Training-data section of a model card: source, hashes, counts and condition distribution."""
    prov = dict(data.provenance)
    counts: dict[str, Any] = {"total": int(len(table))}
    if "sex" in table:
        counts["sex"] = {str(k): int(v) for k, v in table["sex"].astype(str).value_counts().sort_index().items()}
    if "age" in table:
        bands = pd.cut(table["age"].astype(float), bins=list(AGE_BANDS), include_lowest=True, right=False)
        counts["age_band"] = {str(k): int(v) for k, v in bands.value_counts().sort_index().items()}
    meta = data.metadata
    for col in ("site", "race", "ethnicity", "view"):
        if col in meta:
            counts[col] = {str(k): int(v) for k, v in meta[col].astype(str).value_counts().sort_index().items()}
    finding_counts = {n: int(table[n].sum()) for n in schema.finding_names if n in table}
    out = {
        "dataset": str(prov.get("source", prov.get("dataset", "unknown"))),
        "version": str(prov.get("version", "unknown")),
        "seed": prov.get("seed"),
        "split": prov.get("split"),
        "content_hash": data.content_hash,
        "size": int(len(data)),
        "image_shape": list(data.images.shape[1:]),
        "counts": counts,
        "finding_counts": finding_counts,
        "condition_distribution": condition_distribution(table, schema),
    }
    if prov.get("population"):  # simulated data: who was simulated, so the set can be rebuilt
        out["population"] = prov["population"]
    return {k: _plain(v) for k, v in out.items()}


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    return v


def torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def check_epochs(epochs: Any, batch_size: Any) -> tuple[int, int]:
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise DataError(f"epochs must be a positive integer, got {epochs!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}.")
    return int(epochs), int(batch_size)


def out_path(out: Any):
    from pathlib import Path

    if not isinstance(out, (str, os.PathLike)):
        raise DataError(f"out must be a file path ending in .safetensors, got {out!r}.")
    p = Path(out)
    if p.suffix != ".safetensors":
        raise DataError(f"out must end in .safetensors, got {p.name!r}.")
    return p


def _storage_dtype(tensors: dict, weights_dtype: str) -> dict:
    import torch

    if weights_dtype not in ("float16", "float32"):
        raise DataError(f"weights_dtype must be 'float16' or 'float32', got {weights_dtype!r}.")
    dt = torch.float16 if weights_dtype == "float16" else torch.float32
    return {k: (v.to(dt) if v.is_floating_point() else v) for k, v in tensors.items()}


def prepare_training(data: Any, schema: ConditionSchema | None = None):
    """Images, condition table and encoded conditions of a training set (shared by every trainer).

    Returns
    -------
    schema, images (float32 (N, 1, H, W)), table (DataFrame), cond (torch tensor (N, K))
    """
    from .conditions import encode_conditions, phantomcxr_schema

    schema = schema or phantomcxr_schema()
    images = training_images(data, int(getattr(data, "images", np.zeros((1, 1, 64, 64))).shape[-1]))
    table = condition_table(data.metadata, schema)
    return schema, images, table, encode_conditions(table, schema)
