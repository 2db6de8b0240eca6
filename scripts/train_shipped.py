"""Train the shipped PhantomCXR VAE and GAN and draw their sample grids.

Usage::

    OMP_NUM_THREADS=1 python scripts/train_shipped.py --model vae
    OMP_NUM_THREADS=1 python scripts/train_shipped.py --model gan
    python scripts/train_shipped.py --grids-only

The shipped checkpoints were made with::

    python scripts/train_shipped.py --model vae --epochs 9 --minutes 23
    python scripts/train_shipped.py --model gan --epochs 8 --minutes 26 --out /tmp/gan_run1.safetensors
    python scripts/train_shipped.py --model gan --epochs 9 --minutes 23 \
        --init-from /tmp/gan_run1.safetensors --mismatch-weight 1.0

on PhantomCXR 1.1.0 (VAE 274 s; GAN 255 + 305 s; one torch thread on two CPUs). The first
GAN run's SHA-256 and time are recorded under ``training.previous_runs`` in the
shipped card.

The script trains through the command line, so the same runs are, without
the release metrics and sample grids::

    OMP_NUM_THREADS=1 medsynth train --model vae --data phantomcxr --n 8000 --split train --seed 0 \
        --epochs 9 --minutes 23 --out phantomcxr-vae.safetensors
    OMP_NUM_THREADS=1 medsynth train --model gan --data phantomcxr --n 8000 --split train --seed 0 \
        --epochs 8 --minutes 26 --out /tmp/gan_run1.safetensors
    OMP_NUM_THREADS=1 medsynth train --model gan --data phantomcxr --n 8000 --split train --seed 0 \
        --epochs 9 --minutes 23 --init-from /tmp/gan_run1.safetensors --mismatch-weight 1.0 \
        --out phantomcxr-gan.safetensors

(the last two are the GAN's two-run recipe; the second records the first under
``training.previous_runs``). The epochs, not the minutes, ended these runs.

Data: the train split (70 %, patient-wise, split seed 0) of ``simulate(n,
seed=0, size=64)``. Checkpoints go to ``medsynth_explore/assets/`` and sample
grids (one row per condition) to ``docs/images/``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Rows of the sample grids: label and conditions.
GRID_ROWS = [
    ("healthy F 40", {"age": 40, "sex": "F", "findings": []}),
    ("healthy M 40", {"age": 40, "sex": "M", "findings": []}),
    ("cardiomegaly M 70", {"age": 70, "sex": "M", "findings": ["cardiomegaly"]}),
    ("effusion F 65", {"age": 65, "sex": "F", "findings": ["effusion"]}),
    ("pneumothorax M 30", {"age": 30, "sex": "M", "findings": ["pneumothorax"]}),
    ("nodule F 55", {"age": 55, "sex": "F", "findings": ["nodule"]}),
]


def train_command(
    model: str,
    out: Path,
    n: int,
    epochs: int,
    minutes: float,
    init_from: Path | None = None,
    mismatch_weight: float | None = None,
) -> list[str]:
    """The ``medsynth train`` arguments of one shipped run."""
    argv = [
        "train",
        "--model",
        model,
        "--data",
        "phantomcxr",
        "--n",
        str(n),
        "--split",
        "train",
        "--seed",
        "0",
        "--epochs",
        str(epochs),
        "--minutes",
        f"{minutes:g}",
        "--out",
        str(out),
    ]
    if init_from is not None:
        argv += ["--init-from", str(init_from)]
    if mismatch_weight is not None:
        argv += ["--mismatch-weight", f"{mismatch_weight:g}"]
    return argv


def save_grid(gen, path: Path, cols: int = 8, seed: int = 0) -> None:
    """One row per condition in GRID_ROWS, label on the left."""
    from PIL import Image, ImageDraw

    scale = 2
    size = 64 * scale
    label_w = 150
    canvas = Image.new("L", (label_w + cols * size, len(GRID_ROWS) * size), color=255)
    draw = ImageDraw.Draw(canvas)
    for r, (label, cond) in enumerate(GRID_ROWS):
        s = gen.sample(cols, conditions=cond, seed=seed + r)
        for c in range(cols):
            im = Image.fromarray(np.round(s.images[c, 0] * 255).astype(np.uint8)).resize((size, size), Image.NEAREST)
            canvas.paste(im, (label_w + c * size, r * size))
        draw.text((6, r * size + size // 2 - 6), label, fill=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    print(f"wrote {path}")


def condition_effects(gen, n: int = 64, seed: int = 1) -> dict:
    """Mean intensity change a condition causes where the simulator says it should.

    Regions come from the simulator's ground truth (60-year-old men): the
    effusion region (effusion mask in > 30 % of patients), the ring a
    cardiomegaly adds to the heart shadow, and the lower lung fields (rows
    36-49) for female vs male. Values for the physics simulator are the target.
    """
    from medsynth_explore.generators import load_generator
    from medsynth_explore.phantom import anatomy

    phys = load_generator("phantomcxr-physics")
    base = {"age": 60, "sex": "M"}
    eff = anatomy(phys.sample(n, conditions={**base, "findings": ["effusion"]}, seed=0).metadata).masks["effusion"].mean(0) > 0.3
    heart = lambda f: anatomy(phys.sample(n, conditions={**base, "findings": f}, seed=0).metadata).masks["heart"].mean(0) > 0.5  # noqa: E731
    ring = heart(["cardiomegaly"]) & ~heart([])
    h = gen.sample(n, conditions={**base, "findings": []}, seed=seed).images[:, 0]
    e = gen.sample(n, conditions={**base, "findings": ["effusion"]}, seed=seed).images[:, 0]
    c = gen.sample(n, conditions={**base, "findings": ["cardiomegaly"]}, seed=seed).images[:, 0]
    f = gen.sample(n, conditions={"age": 60, "sex": "F", "findings": []}, seed=seed).images[:, 0]
    return {
        "effusion_region_delta": round(float((e - h)[:, eff].mean()), 4),
        "cardiomegaly_heart_ring_delta": round(float((c - h)[:, ring].mean()), 4),
        "female_minus_male_lower_lungs": round(float((f - h)[:, 36:50, 10:54].mean()), 4),
    }


def add_release_metrics(path: Path) -> str:
    """Measure condition effects of a checkpoint and the simulator; store them in its card."""
    from medsynth_explore.checkpoint import load_checkpoint, save_checkpoint
    from medsynth_explore.generators import load_generator

    ck = load_checkpoint(path)
    card = dict(ck.card)
    metrics = dict(card.get("metrics") or {})
    metrics["condition_effects"] = condition_effects(load_generator(path))
    metrics["condition_effects_physics_reference"] = condition_effects(load_generator("phantomcxr-physics"))
    metrics["condition_effects_protocol"] = (
        "64 images per condition at seed 1, age 60; mean intensity change inside simulator ground-truth regions "
        "(scripts/train_shipped.py:condition_effects)"
    )
    card["metrics"] = metrics
    sha = save_checkpoint(path, ck.tensors, card)
    print(f"{path.name}: {metrics['condition_effects']} (physics {metrics['condition_effects_physics_reference']}), sha256 {sha}")
    return sha


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["vae", "gan"], default=None)
    ap.add_argument("--n", type=int, default=8000, help="simulated images before the split (default 8000 -> 5600 train)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument(
        "--minutes", type=float, default=25.0, help="wall-clock budget; training stops after the epoch that passes it"
    )
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--grids-only", action="store_true")
    ap.add_argument("--measure", action="store_true", help="write condition-effect metrics into the checkpoint's card")
    ap.add_argument("--init-from", type=Path, default=None, help="GAN only: start the generator from this checkpoint")
    ap.add_argument(
        "--mismatch-weight", type=float, default=None, help="GAN only: weight of the shuffled-condition negatives (default 0.5)"
    )
    ap.add_argument("--physics-grid", type=Path, default=None, help="also draw the simulator's grid here, for comparison")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from medsynth_explore.checkpoint import load_checkpoint
    from medsynth_explore.cli import main as medsynth
    from medsynth_explore.generators import load_generator

    models = [args.model] if args.model else ([] if args.physics_grid and args.grids_only else ["vae", "gan"])
    for model in models:
        out = args.out or ROOT / "medsynth_explore" / "assets" / f"phantomcxr-{model}.safetensors"
        if not args.grids_only:
            argv = train_command(model, out, args.n, args.epochs or 40, args.minutes, args.init_from, args.mismatch_weight)
            print("medsynth " + " ".join(argv), flush=True)
            if medsynth(argv) != 0:
                sys.exit(f"{model}: training failed")
            ck = load_checkpoint(out)
            print(
                f"{model}: saved {out} ({out.stat().st_size / 1e6:.2f} MB), sha256 {ck.sha256}, "
                f"{ck.card['training']['time_seconds']:.0f}s",
                flush=True,
            )
        if args.measure or not args.grids_only:
            add_release_metrics(out)
        gen = load_generator(out)
        save_grid(gen, ROOT / "docs" / "images" / f"{model}_samples.png")
    if args.physics_grid:
        save_grid(load_generator("phantomcxr-physics"), args.physics_grid)


if __name__ == "__main__":
    main()
