"""Greyscale JPEGs through libjpeg-turbo (``simplejpeg``) against PIL, in one process: speed, same pixels.

``decode_image`` takes an 8-bit greyscale JPEG through ``simplejpeg`` (one read
of the file, one decoder call that releases the interpreter lock once) and
anything else, or any machine without ``simplejpeg``, through PIL. This
benchmark runs both routes on the same files, alternating, in cycles of
``--chunk`` distinct files each, so that the machine's drift falls on both:

* **decode alone**: ``decode_image`` on each file in turn, in this thread;
* **streamed encode**: ``E.encode(file_backed_set)`` with the default encoder,
  decoding and resizing in a background thread while the network runs, as
  ``evaluate`` does.

It prints the median rate of each route and their ratio, and checks that both
routes give identical pixels on every file and identical features on a sample.
The PIL route is the one a machine without ``simplejpeg`` takes. The files are
the 512 x 512 JPEGs of ``bench_real_data.py`` (written once into ``--data``).

Usage::

    python benchmarks/bench_jpeg_decode.py                 # 6 cycles of 512 files
    python benchmarks/bench_jpeg_decode.py --n 8192 --chunk 1024 --cycles 8
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_real_data import data_root, ensure_folder  # noqa: E402  (the same images as the real-data benchmark)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=8192, help="files in the folder (written once)")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--chunk", type=int, default=512, help="distinct files per route per cycle")
    p.add_argument("--cycles", type=int, default=6)
    p.add_argument(
        "--data", type=Path, default=None, help="default $MEDSYNTH_BENCH_DATA or ~/.cache/medsynth_explore/bench_real_data"
    )
    a = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from medsynth_explore import load_dataset
    from medsynth_explore.data import decode as D
    from medsynth_explore.features import get_encoder

    turbo = D._simplejpeg
    if turbo() is None:
        raise SystemExit("simplejpeg is not installed: there is nothing to compare (pip install simplejpeg)")
    routes = {"PIL": lambda: None, "simplejpeg": turbo}

    root = data_root(a.data)
    folder, took = ensure_folder(root, "real", a.n, a.size, 1, processes=max(1, os.cpu_count() or 1))
    print(f"{folder}: " + (f"written in {took:.0f} s" if took else "reused"), flush=True)
    data = load_dataset(str(folder), lazy=True)
    paths = [str(x) for x in data._source.paths]
    settings = D.DecodeSettings()
    enc = get_encoder("phantomcxr-clip")
    enc.encode(data[:8])  # warm-up
    need = 4 * a.chunk  # per cycle: each route decodes one chunk and streams another
    if len(data) < need:
        raise SystemExit(f"--chunk {a.chunk} needs at least {need} files; the folder has {len(data)}")

    rates: dict = {r: {"decode": [], "stream": []} for r in routes}
    offset = 0
    for k in range(a.cycles):
        for route in routes if k % 2 == 0 else reversed(list(routes)):
            if offset + 2 * a.chunk > len(data):
                offset = 0
            D._simplejpeg = routes[route]
            try:
                files = paths[offset : offset + a.chunk]
                t0 = time.perf_counter()
                for f in files:
                    D.decode_image(f, settings)
                t1 = time.perf_counter()
                enc.encode(data[offset + a.chunk : offset + 2 * a.chunk])
                t2 = time.perf_counter()
            finally:
                D._simplejpeg = turbo
            offset += 2 * a.chunk
            rates[route]["decode"].append(a.chunk / (t1 - t0))
            rates[route]["stream"].append(a.chunk / (t2 - t1))
            print(
                f"  cycle {k}  {route:10s} decode {rates[route]['decode'][-1]:8.1f} img/s   "
                f"streamed encode {rates[route]['stream'][-1]:8.1f} img/s",
                flush=True,
            )

    # the same pixels on every file decoded above, the same features on a sample
    mismatched = 0
    checked = paths[: min(len(paths), 2 * a.chunk)]
    for f in checked:
        fast = D.decode_image(f, settings)
        D._simplejpeg = routes["PIL"]
        try:
            slow = D.decode_image(f, settings)
        finally:
            D._simplejpeg = turbo
        mismatched += not np.array_equal(fast, slow)
    sample = data[: min(len(data), 256)]
    feats = enc.encode(sample)
    D._simplejpeg = routes["PIL"]
    try:
        feats_pil = enc.encode(sample)
    finally:
        D._simplejpeg = turbo

    med = {r: {s: float(np.median(v)) for s, v in rates[r].items()} for r in routes}
    print(f"\n{a.cycles} cycles of {a.chunk} distinct {a.size} px greyscale JPEGs per route, torch 1 thread")
    for stage, label in (("decode", "decode_image alone"), ("stream", "streamed encode (default encoder)")):
        pil, fast = med["PIL"][stage], med["simplejpeg"][stage]
        print(f"{label:36s} PIL {pil:8.1f} img/s   simplejpeg {fast:8.1f} img/s   ratio {fast / pil:.2f}x")
    print(
        f"pixels identical on {len(checked) - mismatched} of {len(checked)} files; "
        f"features identical on {len(sample)} files: {bool(np.array_equal(feats, feats_pil))}"
    )
    return 1 if mismatched or not np.array_equal(feats, feats_pil) else 0


if __name__ == "__main__":
    raise SystemExit(main())
