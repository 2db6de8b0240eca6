"""Sampling and encoding on a CUDA GPU against the CPU, in the same process.

Usage::

    python benchmarks/bench_gpu.py [--size 512] [--n 4] [--steps 20] [--encode-n 64]
                                   [--pipeline DIR] [--encoder NAME_OR_DIR] [--markdown]

Without a CUDA device the script says so and exits with status 0 (nothing to
measure). With one it times, best of ``--repeats`` after a warm-up:

- sampling ``n`` images at ``size`` px, ``steps`` denoising steps, from a
  Stable Diffusion pipeline folder (``--pipeline``, e.g. RoentGen; default a
  random-weight pipeline in the published layout, written here, with a
  larger UNet than the tests' so that the arithmetic, not the overhead, is
  timed) on the CPU in float32, and on CUDA in float32, float16 and bfloat16;
- encoding ``encode-n`` images with a feature encoder (``--encoder``, e.g.
  ``rad-dino`` with ``$MEDSYNTH_MODELS`` set; default a random-weight Dinov2
  at 518 px, RAD-DINO's shape) on the CPU and on CUDA.

Each row prints seconds, images per second and the speed-up over the CPU row,
and how far the CUDA output is from the CPU output (max absolute difference
of the images, cosine of the features), so a precision that breaks a model
shows up next to its speed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _best(fn, repeats: int, sync) -> tuple:
    out = fn()  # warm-up: kernels, allocations, cuDNN autotune
    sync()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best, out


def _bench_pipeline(folder: Path, size: int, n: int, steps: int, repeats: int, torch, runs) -> list:
    from medsynth_explore.generators import load_generator

    rows = []
    ref = None
    for device, dtype in runs:
        gen = load_generator(folder, device=device, dtype=dtype)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        secs, out = _best(lambda g=gen: g.sample(n, seed=0, steps=steps, prompt="frontal chest radiograph"), repeats, sync)
        images = out.images
        diff = float(abs(images - ref).max()) if ref is not None else 0.0
        if ref is None:
            ref = images
        rows.append((f"sample {n} x {size}px, {steps} steps", f"{device} {dtype or 'float32'}", secs, n / secs, diff))
        del gen
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


def _bench_encoder(spec: str, n: int, repeats: int, torch, runs) -> list:
    import numpy as np

    from medsynth_explore.features import get_encoder

    x = np.random.default_rng(0).random((n, 1, 512, 512)).astype(np.float32)
    rows = []
    ref = None
    for device, dtype in runs:
        if dtype == "float16":
            continue  # encoders: float32 and bfloat16 (float16 overflows in some ViT layers)
        enc = get_encoder(spec, device=device, dtype=dtype)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        secs, feats = _best(lambda: enc.encode(x, batch_size=32), repeats, sync)
        cos = 1.0
        if ref is None:
            ref = feats
        else:
            cos = float(((feats * ref).sum(1) / (np.linalg.norm(feats, axis=1) * np.linalg.norm(ref, axis=1))).min())
        rows.append((f"encode {n} x 512px ({enc.id.split('-')[1]})", f"{device} {dtype or 'float32'}", secs, n / secs, cos))
    return rows


def _write_default_pipeline(folder: Path, size: int, tiny: bool = False) -> Path:
    """A random-weight SD pipeline with a mid-sized UNet (channels 64, 128, 256), so the GPU has work to do."""
    import torch
    from diffusers import UNet2DConditionModel

    from medsynth_explore.generators.tiny import write_stable_diffusion

    write_stable_diffusion(folder, size=size)
    if tiny:
        return folder
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=size // 8,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(64, 128, 256),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    unet.save_pretrained(str(folder / "unet"))
    return folder


def _write_default_encoder(folder: Path, tiny: bool = False) -> Path:
    from transformers import Dinov2Config, Dinov2Model

    from medsynth_explore.features.tiny import write_rad_dino

    if tiny:
        return write_rad_dino(folder, image_size=56)
    write_rad_dino(folder, image_size=518)  # the layout and RAD-DINO's preprocessing; then its width and depth
    cfg = Dinov2Config(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, image_size=518)
    Dinov2Model(cfg).save_pretrained(str(folder))
    return folder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--encode-n", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--pipeline", type=Path, help="a diffusers Stable Diffusion folder (default: random weights)")
    ap.add_argument("--encoder", help="encoder name or folder (default: random-weight Dinov2 at 518 px)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument(
        "--cpu-only",
        action="store_true",
        help="CPU float32 vs bfloat16 on the tests' tiny models (checks the script without a GPU)",
    )
    args = ap.parse_args()

    import torch

    if args.cpu_only:
        runs = (("cpu", None), ("cpu", "bfloat16"))
        print(f"CPU only; torch {torch.__version__}; CPU threads {torch.get_num_threads()}")
    elif not torch.cuda.is_available():
        print("bench_gpu: no CUDA device on this machine (torch.cuda.is_available() is False); nothing to measure.")
        return 0
    else:
        runs = (("cpu", None), ("cuda", None), ("cuda", "float16"), ("cuda", "bfloat16"))
        print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; CPU threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        pipe = args.pipeline or _write_default_pipeline(Path(tmp) / "sd", args.size, tiny=args.cpu_only)
        enc = args.encoder or str(_write_default_encoder(Path(tmp) / "rad-dino-shaped", tiny=args.cpu_only))
        rows = _bench_pipeline(pipe, args.size, args.n, args.steps, args.repeats, torch, runs)
        rows += _bench_encoder(enc, args.encode_n, args.repeats, torch, runs)
    base: dict = {}
    head = ("what", "where", "seconds", "images/s", "x CPU", "vs CPU")
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
    else:
        print(f"{head[0]:40s} {head[1]:16s} {head[2]:>9s} {head[3]:>9s} {head[4]:>7s}  {head[5]}")
    for what, where, secs, rate, agree in rows:
        base.setdefault(what, secs)
        speed = base[what] / secs
        how = f"max |diff| {agree:.3g}" if what.startswith("sample") else f"min cos {agree:.5f}"
        if args.markdown:
            print(f"| {what} | {where} | {secs:.3f} | {rate:.2f} | {speed:.1f} | {how} |")
        else:
            print(f"{what:40s} {where:16s} {secs:9.3f} {rate:9.2f} {speed:7.1f}  {how}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
