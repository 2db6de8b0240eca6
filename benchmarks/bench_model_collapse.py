"""Model collapse: the VAE trained on its own samples for several generations, against fresh real data.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_model_collapse.py     # 5 generations, 600 images, 8 epochs, width 16
    python benchmarks/bench_model_collapse.py --generations 6 --n-train 2000 --epochs 8 --width 32 --latent-dim 32

Generation 0 is the VAE trained on the first ``--n-train`` images of the
PhantomCXR train split (``simulate(8000, seed=0)``, patient-wise 70/15/15,
split seed 0: the shipped VAE's data, smaller); each later generation of the
self-consuming chain is trained on as many of its predecessor's samples,
drawn with the real training set's conditions. The peer, measured in the
same run, is the fresh-real chain: every generation trained on newly
simulated real images of the same size. Measured per generation against the
test split (``--n-eval`` images): FID, precision, recall, coverage in
domain-CLIP features, and the reference classifier's per-finding AUROC on
samples drawn with the test images' conditions. The shipped VAE (width 32,
latent 32) trained for 9 epochs on 5,600 images; by default this benchmark
trains a narrower VAE (width 16, latent 16) for 8 epochs on 600 images, so
that its eleven trainings take minutes on two shared CPU cores (one
generation of the width-32 VAE on 2,000 images for 8 epochs took 12 minutes
there).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def markdown(df) -> str:
    """A Markdown table of a DataFrame, floats to three decimals."""
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generations", type=int, default=5)
    ap.add_argument("--n-train", type=int, default=600)
    ap.add_argument("--n-eval", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--width", type=int, default=16, help="the VAE's first-level channels (shipped: 32)")
    ap.add_argument("--latent-dim", type=int, default=16, help="the VAE's latent size (shipped: 32)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the table and settings here")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--out-dir", type=Path, help="keep every generation's checkpoint here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from medsynth_explore.collapse import model_collapse
    from medsynth_explore.phantom import simulate

    parts = simulate(8000, seed=0).split((0.7, 0.15, 0.15), seed=0)
    train = parts["train"].subset(slice(0, args.n_train))
    train.provenance["population"] = parts["train"].provenance.get("population")
    t0 = time.perf_counter()
    result = model_collapse(
        train,
        parts["test"],
        generations=args.generations,
        epochs=args.epochs,
        train_kwargs={"width": args.width, "latent_dim": args.latent_dim},
        n_eval=args.n_eval,
        seed=args.seed,
        out_dir=args.out_dir,
        log=lambda line: print(line, flush=True),
    )
    seconds = time.perf_counter() - t0
    t = result.table
    cols = ["chain", "generation", "fid", "precision", "recall", "coverage", "auroc_mean"]
    cols += [c for c in t.columns if c.startswith("auroc_") and c != "auroc_mean"] + ["pixel_std", "train_seconds"]
    print(markdown(t[cols]) if args.markdown else t[cols].round(4).to_string(index=False))
    print("\nself-consuming / fresh real, per generation (1.0: no difference):")
    ratios = {}
    for value in ("fid", "recall", "coverage", "auroc_mean"):
        p = result.pivot(value)
        if "fresh real" in p.columns:
            ratios[value] = (p["self-consuming"] / p["fresh real"]).round(3).tolist()
            print(f"  {value:11s}", " ".join(f"{v:7.3f}" for v in ratios[value]))
    print(f"\n{len(t)} models trained and measured in {seconds:.0f} s ({torch.get_num_threads()} threads)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"settings": result.settings, "seconds": round(seconds, 1), "table": t.to_dict("records"), "ratios": ratios},
                indent=1,
                default=str,
            )
        )
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
