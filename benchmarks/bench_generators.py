"""Images per second of each built-in generator at default settings.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_generators.py [--n 64] [--repeats 3]

Each generator samples ``n`` images (64x64) with its default sampler settings;
the best of ``repeats`` runs is reported, with the ratio to the PhantomCXR
physics simulator measured in the same process. Generators whose weights are
not installed are listed as missing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def best_rate(gen, n: int, repeats: int) -> float:
    gen.sample(min(n, 4), seed=0)  # warm-up (imports, allocations)
    best = float("inf")
    for r in range(repeats):
        t = time.perf_counter()
        gen.sample(n, seed=r + 1)
        best = min(best, time.perf_counter() - t)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--diffusion-n", type=int, default=16, help="images for the (slow) diffusion model")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from medsynth_explore.generators import list_generators, load_generator

    print(f"torch threads: {torch.get_num_threads()}, n={args.n}, best of {args.repeats}")
    physics = load_generator("phantomcxr-physics")
    ref = best_rate(physics, args.n, args.repeats)
    print(f"{'generator':24s} {'images/s':>10s} {'ratio to physics':>18s}")
    print(f"{'phantomcxr-physics':24s} {ref:10.1f} {1.0:18.2f}")
    for row in list_generators().itertuples():
        if row.name == "phantomcxr-physics":
            continue
        if not row.available:
            print(f"{row.name:24s} {'missing':>10s}")
            continue
        gen = load_generator(row.name)
        n = args.diffusion_n if row.family == "diffusion" else args.n
        rate = best_rate(gen, n, args.repeats)
        print(f"{row.name:24s} {rate:10.1f} {rate / ref:18.2f}")


if __name__ == "__main__":
    main()
