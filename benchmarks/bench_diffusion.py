"""Time the shipped diffusion model against the physics simulator, in one process.

Usage::

    python benchmarks/bench_diffusion.py [--threads 1] [--repeats 3]

Prints the best-of-``repeats`` wall-clock time for 16 images of 64x64 at the
model card's default settings (sampler, steps, guidance) and for 16 images
from :func:`medsynth_explore.phantom.simulate`, and their ratio. It also
times the denoiser alone for one guided step, and a DDIM run with the same
number of steps.
"""

from __future__ import annotations

import argparse
import time


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from medsynth_explore.generators import load_generator
    from medsynth_explore.generators.diffusion import DiffusionGenerator
    from medsynth_explore.phantom import simulate

    gen = load_generator("phantomcxr-diffusion")
    d = gen.card["sampler_defaults"]
    cond = {"sex": "F", "age": 60, "findings": ["effusion"]}
    t_diff = best_of(lambda: gen.sample(16, conditions=cond, seed=0), args.repeats)
    ddim = DiffusionGenerator(gen.card, gen.net, gen.clip, sampler="ddim")
    t_ddim = best_of(lambda: ddim.sample(16, conditions=cond, seed=0), args.repeats)
    t_phys = best_of(lambda: simulate(16, seed=0, size=64), args.repeats)
    x = torch.randn(32, 1, 64, 64)
    c = gen._cond_inputs(gen._resolve(32, cond, None, 0))
    tt = torch.full((32,), 500)
    with torch.no_grad():
        t_net = best_of(lambda: gen.net(x, tt, c), args.repeats)
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"defaults: sampler={d.get('sampler')} steps={d.get('steps')} guidance={d.get('guidance')}")
    print(f"diffusion, 16 images, defaults       : {t_diff:7.2f} s")
    print(f"diffusion, 16 images, DDIM same steps: {t_ddim:7.2f} s")
    print(f"denoiser, one guided pass (32 rows)  : {t_net:7.3f} s")
    print(f"physics simulator, 16 images         : {t_phys:7.2f} s")
    print(f"ratio diffusion / physics            : {t_diff / t_phys:7.2f}")


if __name__ == "__main__":
    main()
