"""Train the shipped domain CLIP on simulated PhantomCXR image-report pairs.

Usage::

    python scripts/train_clip.py --out medsynth_explore/assets/phantomcxr-clip.safetensors

By default it simulates the training cohort (``--n`` images, ``--seed``, findings
enriched to 25-30 % so that each finding has enough positive reports); with
``--cache DIR`` it reads ``train_images.npy`` / ``train_meta.parquet`` /
``train_prov.json`` written earlier from the same simulation.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

ENRICHED = {"cardiomegaly": 0.3, "nodule": 0.3, "effusion": 0.3, "pneumothorax": 0.25}


def load_cohort(cache: str | None, n: int, seed: int, part: str = "train"):
    from medsynth_explore.data import ImageSet
    from medsynth_explore.phantom import Population, simulate

    if cache:
        d = Path(cache)
        images = np.load(d / f"{part}_images.npy", allow_pickle=False)
        meta = pd.read_parquet(d / f"{part}_meta.parquet")
        prov = json.loads((d / f"{part}_prov.json").read_text())
        prov.pop("content_hash", None)
        return ImageSet(images, meta, prov)
    return simulate(n, seed=seed, size=64, population=Population(prevalence=ENRICHED))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="medsynth_explore/assets/phantomcxr-clip.safetensors")
    ap.add_argument("--cache", default=None, help="folder with pre-simulated train_*.npy/parquet/json")
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from medsynth_explore.features.domain_clip import train_clip

    data = load_cohort(args.cache, args.n, args.seed)
    print(f"training on {len(data)} images", flush=True)
    t0 = time.time()
    _, card = train_clip(data, args.out, epochs=args.epochs, seed=0, log=lambda line: print(line, flush=True))
    print(json.dumps(card["metrics"], indent=1))
    print(f"total {time.time() - t0:.0f}s; size {os.path.getsize(args.out) / 1e6:.2f} MB" if args.out else "")


if __name__ == "__main__":
    main()
