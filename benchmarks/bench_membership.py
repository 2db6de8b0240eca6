"""Membership inference against the shipped models, with a copier and an independent simulator as controls.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_membership.py
    python benchmarks/bench_membership.py --n 600 --synthetic 1000 --skip-diffusion

Members are each model's training set rebuilt from its card (VAE and GAN:
the train split of ``simulate(8000, seed=0)``; diffusion: ``simulate(6000,
seed=1)`` of the enriched population the card records); non-members are
held-out patients of the same population (VAE and GAN: the test split of the
same cohort; diffusion: ``simulate(n, seed=2)`` of the enriched population).
``--n`` of each are used. The distance attack scores them by their nearest
of ``--synthetic`` samples in domain-CLIP features; the loss attack runs the
VAE (negative ELBO) and the diffusion model (denoising error at t = 50, 100,
200, 300). The controls, measured in the same run on the VAE/GAN members: a
copier (its samples are draws of the members themselves) should score near
1, an independent simulator (fresh PhantomCXR patients as "samples") near 0.5.

The rebuilt training sets are compared with the cards (content hash, finding,
sex and site counts), and the distance attack is repeated with every member
image moved by up to two 16-bit levels, which tells how much a rebuild that
differs only in rounding could change the result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ENRICHED = {"prevalence": {"cardiomegaly": 0.3, "nodule": 0.3, "effusion": 0.3, "pneumothorax": 0.25}}


def card_check(card: dict, data) -> dict:
    """How the rebuilt training set compares with what the card recorded."""
    td = card.get("training_data") or {}
    meta = data.metadata
    findings = {f: int(meta[f].sum()) for f in td.get("finding_counts", {})}
    sex = {k: int(v) for k, v in meta["sex"].value_counts().sort_index().items()}
    site = {k: int(v) for k, v in meta["site"].value_counts().sort_index().items()}
    counts = td.get("counts", {})
    return {
        "content_hash_equal": td.get("content_hash") == data.content_hash,
        "size_equal": td.get("size") == len(data),
        "finding_counts_equal": findings == td.get("finding_counts"),
        "sex_counts_equal": sex == counts.get("sex"),
        "site_counts_equal": site == counts.get("site"),
    }


def row(name, attack, r) -> dict:
    return {
        "model": name,
        "attack": attack,
        "auc": r["auc"],
        "auc_ci": [r["auc_low"], r["auc_high"]],
        "tpr_at_1pct_fpr": r["tpr_at_1pct_fpr"],
        "tpr_ci": [r["tpr_at_1pct_fpr_low"], r["tpr_at_1pct_fpr_high"]],
        "n_members": r["n_members"],
        "n_non_members": r["n_non_members"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="members and non-members used per model")
    ap.add_argument("--synthetic", type=int, default=2000, help="samples per generator for the distance attack")
    ap.add_argument("--n-loss-diffusion", type=int, default=400, help="members and non-members of the diffusion loss attack")
    ap.add_argument("--skip-diffusion", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from medsynth_explore.checkpoint import load_checkpoint
    from medsynth_explore.features import get_encoder
    from medsynth_explore.generators import load_generator
    from medsynth_explore.generators.registry import builtin_path
    from medsynth_explore.metrics import membership_inference
    from medsynth_explore.phantom import Population, simulate

    t0 = time.perf_counter()
    enc = get_encoder(None)
    rows, checks = [], {}
    rng = np.random.default_rng(0)

    parts = simulate(8000, seed=0).split((0.7, 0.15, 0.15), seed=0)
    members_all, non_all = parts["train"], parts["test"]
    checks["vae/gan"] = card_check(load_checkpoint(builtin_path("phantomcxr-vae")).card, members_all)
    members = members_all.subset(np.sort(rng.choice(len(members_all), min(args.n, len(members_all)), replace=False)))
    non = non_all.subset(np.arange(min(args.n, len(non_all))))
    fm, fn = enc.encode(members.images), enc.encode(non.images)

    # controls
    copier = fm[rng.integers(0, len(fm), args.synthetic)]
    rows.append(row("copier (draws of the members)", "distance", membership_inference(copier, fm, fn)))
    indep = enc.encode(simulate(args.synthetic, seed=99).images)
    rows.append(row("independent simulator (fresh patients)", "distance", membership_inference(indep, fm, fn)))
    # sensitivity: members moved by up to two 16-bit levels
    jitter = np.clip(members.images + rng.integers(-2, 3, members.images.shape) / 65535.0, 0, 1).astype(np.float32)
    fj = enc.encode(jitter)
    print(
        f"feature shift of a 2-level jitter: median {np.median(np.linalg.norm(fj - fm, axis=1)):.2e} "
        f"(median member-to-non-member distance {np.median(np.linalg.norm(fm[:200, None] - fn[None, :200], axis=2)):.3f})"
    )

    for name in ("phantomcxr-vae", "phantomcxr-gan"):
        gen = load_generator(name)
        syn = enc.encode(gen.sample(args.synthetic, seed=0).images)
        r = membership_inference(syn, fm, fn)
        rows.append(row(name, "distance", r))
        if name == "phantomcxr-vae":
            rj = membership_inference(syn, fj, fn)
            rows.append(row(name + " (members jittered by 2 levels)", "distance", rj))
            rows.append(row(name, "loss (negative ELBO)", membership_inference(None, members, non, attack="loss", generator=gen)))
        print(f"{name} done, {time.perf_counter() - t0:.0f} s", flush=True)

    if not args.skip_diffusion:
        gen = load_generator("phantomcxr-diffusion")
        td = gen.card["training_data"]
        pop = Population.from_dict(td.get("population") or ENRICHED)
        dm_all = simulate(int(td.get("size", 6000)), seed=int(td.get("seed", 1)), population=pop)
        checks["diffusion"] = card_check(dict(gen.card), dm_all)
        dm = dm_all.subset(np.sort(rng.choice(len(dm_all), min(args.n, len(dm_all)), replace=False)))
        dn = simulate(args.n, seed=2, population=pop)
        n_syn = min(args.synthetic, 1000)
        syn = enc.encode(gen.sample(n_syn, seed=0).images)
        rows.append(
            row("phantomcxr-diffusion", "distance", membership_inference(syn, enc.encode(dm.images), enc.encode(dn.images)))
        )
        k = args.n_loss_diffusion
        r = membership_inference(None, dm.subset(np.arange(k)), dn.subset(np.arange(k)), attack="loss", generator=gen, repeats=1)
        rows.append(row("phantomcxr-diffusion", "loss (denoising error, t=50-300)", r))
        print(f"diffusion done, {time.perf_counter() - t0:.0f} s", flush=True)

    print("\n| model | attack | AUC [95% CI] | TPR at 1% FPR [95% CI] | members / non-members |")
    print("|---|---|---|---|---|")
    for x in rows:
        print(
            f"| {x['model']} | {x['attack']} | {x['auc']:.3f} [{x['auc_ci'][0]:.3f}, {x['auc_ci'][1]:.3f}] | "
            f"{100 * x['tpr_at_1pct_fpr']:.1f}% [{100 * x['tpr_ci'][0]:.1f}, {100 * x['tpr_ci'][1]:.1f}] | "
            f"{x['n_members']} / {x['n_non_members']} |"
        )
    print("\nrebuilt training sets vs their cards:", json.dumps(checks))
    print(f"encoder {enc.id}; {time.perf_counter() - t0:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "card_checks": checks, "encoder": enc.id}, indent=1))


if __name__ == "__main__":
    main()
