"""The built-in data set ``"phantomcxr"``: a seeded PhantomCXR cohort, cached on disk.

Importing this module registers it with
:func:`medsynth_explore.data.register_dataset` (alias ``"phantom"``); the
package's ``medsynth_explore.datasets`` entry point names this module, so
``load_dataset("phantomcxr")`` finds it without anything importing
:mod:`medsynth_explore.phantom` first.

Examples
--------
>>> from medsynth_explore.data import load_dataset
>>> ds = load_dataset("phantomcxr", n=4, size=32, cache=False)
>>> ds.shape, ds.provenance["source"]
((4, 1, 32, 32), 'phantomcxr')
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data import ImageSet, hash_array
from ..data.io import cache_dir
from ..data.registry import register_dataset
from .simulator import __version__, simulate

__all__ = ["load_phantomcxr"]


def load_phantomcxr(n: int = 2000, size: int = 64, seed: int = 0, population: Any = None, cache: bool = True) -> ImageSet:
    """PhantomCXR with a fixed seed (:func:`medsynth_explore.phantom.simulate`), cached on disk.

    The cache (an uncompressed ``.npz`` without pickles plus a CSV) lives in
    :func:`medsynth_explore.data.io.cache_dir` and is keyed by the simulator
    version, ``n``, ``size``, ``seed`` and the population spec. A damaged
    entry (its images no longer match the recorded hash) is rebuilt.

    Parameters
    ----------
    n : int
        Number of images.
    size : int
        Image side in pixels, 32 to 256.
    seed : int
    population : Population, dict or None
        Cohort spec; the default :class:`~medsynth_explore.phantom.Population` when None.
    cache : bool
        Read and write the disk cache.

    Returns
    -------
    ImageSet
        As :func:`~medsynth_explore.phantom.simulate` makes it.
    """
    pop_dict = population.to_dict() if population is not None and hasattr(population, "to_dict") else population
    key = json.dumps({"v": __version__, "n": n, "size": size, "seed": seed, "pop": pop_dict}, sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    folder = cache_dir() / "phantomcxr" / digest
    if cache and (folder / "images.npz").exists():
        try:
            with np.load(folder / "images.npz", allow_pickle=False) as z:
                images = z["images"]
            meta = pd.read_csv(folder / "metadata.csv", keep_default_na=True)
            prov = json.loads((folder / "provenance.json").read_text())
            if hash_array(images) == prov.get("content_hash"):
                return ImageSet(images, meta, prov)
        except Exception:  # a damaged cache entry is rebuilt below
            pass
    ds = simulate(n, seed=seed, size=size, population=population)
    if cache:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
        np.savez(tmp / "images.npz", images=ds.images)
        ds.metadata.to_csv(tmp / "metadata.csv", index=False)
        (tmp / "provenance.json").write_text(json.dumps(ds.provenance, default=str))
        shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process won the race; its copy is as good
            shutil.rmtree(tmp, ignore_errors=True)
    return ds


register_dataset(
    "phantomcxr",
    load_phantomcxr,
    "PhantomCXR: simulated frontal chest radiographs with ground-truth labels and reports (offline, seeded, cached)",
    aliases=("phantom",),
)
