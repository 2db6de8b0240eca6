"""Throughput of the PhantomCXR simulator next to writing the same images as PNG.

Run: ``python benchmarks/bench_simulator.py [--n 2000] [--size 64]``

Prints images per second of :func:`medsynth_explore.phantom.simulate` on one
core and of saving the resulting images as 16-bit PNG files with PIL (into
memory), and the ratio of the two. A ratio above 1 means simulating an image
is faster than writing it to disk as PNG.
"""

from __future__ import annotations

import argparse
import io
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from medsynth_explore.phantom import render, sample_patients, simulate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    simulate(16, seed=0, size=args.size)  # warm caches (vessel maps, blur matrices)

    t0 = time.perf_counter()
    ds = simulate(args.n, seed=1, size=args.size)
    t_sim = time.perf_counter() - t0

    patients = sample_patients(args.n, seed=1)
    t0 = time.perf_counter()
    render(patients, size=args.size, seed=1)
    t_render = time.perf_counter() - t0

    t0 = time.perf_counter()
    total = 0
    for im in ds.images:
        buf = io.BytesIO()
        Image.fromarray(np.rint(im[0] * 65535).astype(np.uint16)).save(buf, format="PNG")
        total += buf.tell()
    t_png = time.perf_counter() - t0

    sim_rate, render_rate, png_rate = args.n / t_sim, args.n / t_render, args.n / t_png
    print(f"{args.n} images at {args.size}x{args.size}, one thread")
    print(f"simulate (labels + images + reports): {sim_rate:8.1f} images/s")
    print(f"render only:                          {render_rate:8.1f} images/s")
    print(f"PNG-16 encode (PIL, in memory):       {png_rate:8.1f} images/s  ({total / args.n / 1024:.1f} KiB/image)")
    print(f"ratio simulate / PNG write:           {sim_rate / png_rate:8.2f}")


if __name__ == "__main__":
    main()
