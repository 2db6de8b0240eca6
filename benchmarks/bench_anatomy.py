"""The anatomy segmenter on held-out patients, and the anatomy of every shipped generator.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_anatomy.py              # segmenter + all generators, 64 per condition
    python benchmarks/bench_anatomy.py --segmenter-only --n-heldout 1000

Part 1, the segmenter: Dice per structure and CTR error against the
simulator's true ``ctr`` on ``--n-heldout`` PhantomCXR patients (seed 777,
default population, none of them seen in training), clean, blurred (0.8 px)
and noisy (0.03). The peer measured in the same run is the simulator's own
masks, whose CTR error is the floor the 64-pixel grid sets.

Part 2, every shipped generator (physics, diffusion, VAE, GAN):
:func:`medsynth_explore.anatomy.anatomy_report` with ``--per-condition``
samples of no finding and of each finding alone (the CTR per condition and
the implausible-anatomy rate, with 95% bootstrap intervals), and, for the
generators that inpaint, :func:`medsynth_explore.stress.inpainting_anatomy_check`
("add effusion" into ``--n-inpaint`` held-out patients without one; regions
from the simulator's ground truth): Dice of each structure outside the mask,
before vs after. Real images (the held-out patients) are the reference row.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GENERATORS = ("phantomcxr-physics", "phantomcxr-diffusion", "phantomcxr-vae", "phantomcxr-gan")


def segmenter_part(n: int) -> dict:
    from medsynth_explore.anatomy import Segmenter, heldout_metrics
    from medsynth_explore.phantom import simulate

    held = simulate(n, seed=777)
    seg = Segmenter()
    t0 = time.perf_counter()
    m = heldout_metrics(seg, held)
    seconds = time.perf_counter() - t0
    print(f"segmenter {seg.sha256[:12]} on {n} held-out patients (seed 777), {seconds:.1f} s for the three passes")
    print("| images | Dice right lung | Dice left lung | Dice heart | CTR MAE | failed |")
    print("|---|---|---|---|---|---|")
    for label, r in (("clean", m), ("blurred 0.8 px", m["blurred_sigma_0.8px"]), ("noise 0.03", m["noisy_std_0.03"])):
        print(
            f"| {label} | {r['dice_right_lung']:.3f} | {r['dice_left_lung']:.3f} | {r['dice_heart']:.3f} | "
            f"{r['ctr_mae']:.4f} | {r['ctr_failed']} |"
        )
    print(f"| simulator's own masks (peer: the grid's floor) | 1 | 1 | 1 | {m['ctr_mae_truth_masks']:.4f} | 0 |")
    print(f"CTR error / floor: {m['ctr_mae'] / m['ctr_mae_truth_masks']:.2f}")
    return m


def generators_part(per_condition: int, n_inpaint: int) -> None:
    from medsynth_explore.anatomy import anatomy_report, measure
    from medsynth_explore.generators import load_generator
    from medsynth_explore.phantom import Population, simulate
    from medsynth_explore.stress import inpainting_anatomy_check

    pop = Population(prevalence={"cardiomegaly": 0.3, "nodule": 0.3, "effusion": 0.3, "pneumothorax": 0.25})
    real = simulate(5 * per_condition, seed=778, population=pop)
    rm = measure(real)
    cm = real.metadata["cardiomegaly"].to_numpy() == 1
    plain = real.metadata[["cardiomegaly", "nodule", "effusion", "pneumothorax"]].sum(1).to_numpy() == 0
    rows = [
        {
            "generator": "real (held-out patients)",
            "implausible": f"{100 * (1 - rm['plausible'].mean()):.1f}%",
            "ctr_none": f"{rm['ctr'][plain].mean():.3f}",
            "ctr_cm": f"{rm['ctr'][cm].mean():.3f}",
            "above_none": f"{100 * (rm['ctr'][plain] > 0.5).mean():.0f}%",
            "above_cm": f"{100 * (rm['ctr'][cm] > 0.5).mean():.0f}%",
            "inpaint": "",
        }
    ]
    no_effusion = simulate(4 * n_inpaint, seed=779)
    no_effusion = no_effusion.subset(np.flatnonzero(no_effusion.metadata["effusion"].to_numpy() == 0)[:n_inpaint])
    for name in GENERATORS:
        gen = load_generator(name)
        t0 = time.perf_counter()
        r = anatomy_report(gen, n=per_condition, seed=0)
        t = r["by_condition"].set_index("condition")
        inpaint = "cannot inpaint"
        if "inpaint" in gen.capabilities:
            s = inpainting_anatomy_check(gen, no_effusion, "add effusion", seed=0)["summary"].set_index("structure")
            inpaint = " / ".join(f"{s.loc[k, 'dice_outside']:.3f}" for k in ("right_lung", "left_lung", "heart"))
        rows.append(
            {
                "generator": name,
                "implausible": ci(
                    100 * r["implausible_rate"], 100 * r["implausible_low"], 100 * r["implausible_high"], "{:.1f}", "%"
                ),
                "ctr_none": ci(*t.loc["no finding", ["ctr_mean", "ctr_low", "ctr_high"]]),
                "ctr_cm": ci(*t.loc["cardiomegaly", ["ctr_mean", "ctr_low", "ctr_high"]]),
                "above_none": f"{100 * t.loc['no finding', 'ctr_above_half']:.0f}%",
                "above_cm": f"{100 * t.loc['cardiomegaly', 'ctr_above_half']:.0f}%",
                "inpaint": inpaint,
            }
        )
        reasons = ", ".join(f"{k} {v}" for k, v in list(r["reasons"].items())[:4]) or "none"
        print(f"{name}: {time.perf_counter() - t0:.0f} s; failed rules: {reasons}", flush=True)
    print(
        f"\n{per_condition} samples per condition (seed 0); CTR mean [95% CI] when asked for no finding / cardiomegaly; "
        f"inpainting: Dice outside the mask (right lung / left lung / heart) after 'add effusion' in {len(no_effusion)} patients"
    )
    head = ["generator", "implausible anatomy", "CTR, no finding", "CTR, cardiomegaly", "CTR > 0.5, none / cardiomegaly"]
    head.append("inpainting keeps (Dice outside)")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        cells = [
            r["generator"],
            r["implausible"],
            r["ctr_none"],
            r["ctr_cm"],
            f"{r['above_none']} / {r['above_cm']}",
            r["inpaint"],
        ]
        print("| " + " | ".join(cells) + " |")


def ci(m: float, lo: float, hi: float, fmt: str = "{:.3f}", unit: str = "") -> str:
    """``m [lo, hi]`` with a unit."""
    return f"{fmt.format(m)}{unit} [{fmt.format(lo)}, {fmt.format(hi)}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-heldout", type=int, default=1000)
    ap.add_argument("--per-condition", type=int, default=64)
    ap.add_argument("--n-inpaint", type=int, default=32)
    ap.add_argument("--segmenter-only", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    segmenter_part(args.n_heldout)
    if not args.segmenter_only:
        generators_part(args.per_condition, args.n_inpaint)


if __name__ == "__main__":
    main()
