"""Does the invisible watermark survive, does it stay silent on real images, and what does it cost?

Run: ``python benchmarks/bench_watermark.py [--marked 500] [--unmarked 500] [--markdown]``

Marked: images exported with :func:`medsynth_explore.export.export` (the real
PNG files, 16-bit grey, 64 x 64) from the four shipped generators (physics
simulator, VAE, GAN, diffusion; shares 20/30/30/20 %). Unmarked: PhantomCXR
images simulated with another seed and written as 16-bit PNG, never marked,
plus unmarked exports (``watermark=False``) of the VAE and GAN.

Each file is read with :func:`medsynth_explore.provenance.detect` as is and
after each attack:

* metadata stripped: pixels re-encoded as a 16-bit PNG with no chunk but the image;
* 8-bit: ``round(x16 / 257)`` written as an 8-bit PNG;
* JPEG q90: the 8-bit image as JPEG, quality 90 (Pillow, libjpeg);
* resize 0.9 / 1.1: the 8-bit image resized by Pillow's bicubic filter to
  58 x 58 / 70 x 70, written as PNG.

Peers in the same run: the PSNR of the same images marked through the
library's own ``WatermarkEncoder.encode`` (dwtDctSvd, same strength and
bits, on the 8-bit image replicated to BGR and upsampled to its 256 x 256
minimum), which shows the band swap this package avoids; and the export
throughput without the watermark and without signing.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ATTACKS = ("as exported", "metadata stripped", "8-bit", "JPEG q90", "resize 0.9", "resize 1.1")


def _png(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def _attacks(data: bytes) -> dict[str, bytes]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        x16 = np.asarray(im, dtype=np.uint16)
    x8 = np.rint(x16.astype(np.float64) / 257.0).astype(np.uint8)
    h, w = x8.shape
    jpg = io.BytesIO()
    Image.fromarray(x8).save(jpg, "JPEG", quality=90)
    out = {"as exported": data, "metadata stripped": _png(x16), "8-bit": _png(x8), "JPEG q90": jpg.getvalue()}
    for f in (0.9, 1.1):
        out[f"resize {f}"] = _png(np.asarray(Image.fromarray(x8).resize((round(w * f), round(h * f)), Image.BICUBIC)))
    return out


def _psnr16(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(65535.0**2 / mse))


def _read16(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im, dtype=np.uint16)


def _library_peer_psnr(images16: list[np.ndarray], prefix: str) -> list[float]:
    """PSNR (8-bit) of invisible-watermark's own encode() on the 8-bit image, upsampled to 256 (its minimum)."""
    import cv2
    from imwatermark import WatermarkEncoder

    from medsynth_explore.provenance import watermark as wm

    enc = WatermarkEncoder()
    enc.set_watermark("bits", wm._library_bits(prefix, wm.DEFAULT_KEY))
    out = []
    for x16 in images16:
        x8 = np.rint(x16 / 257.0).astype(np.uint8)
        big = cv2.resize(x8, (256, 256), interpolation=cv2.INTER_CUBIC)
        bgr = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
        marked = enc.encode(bgr, "dwtDctSvd", scales=[wm.STRENGTH, 0, 0], block=wm.BLOCK)
        mse = np.mean((marked[:, :, 1].astype(np.float64) - big.astype(np.float64)) ** 2)
        out.append(float(10 * np.log10(255.0**2 / mse)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--marked", type=int, default=500)
    p.add_argument("--unmarked", type=int, default=500, help="never-marked simulated images (plus VAE/GAN exports)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", action="store_true")
    a = p.parse_args()

    import torch

    from medsynth_explore.export import export
    from medsynth_explore.phantom import simulate
    from medsynth_explore.provenance import detect, make_test_signer
    from medsynth_explore.shards import resolve_generator

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-watermark-"))
    shares = {"phantomcxr-physics": 0.2, "phantomcxr-vae": 0.3, "phantomcxr-gan": 0.3, "phantomcxr-diffusion": 0.2}
    counts = {g: int(round(a.marked * s)) for g, s in shares.items()}
    counts["phantomcxr-vae"] += a.marked - sum(counts.values())
    marked_files, psnr, plain16, timing = [], [], [], {}
    signer = make_test_signer(seed=0)
    for g, n in counts.items():
        resolve_generator(g).sample(2, seed=0)  # load once, so that the export rates do not include it
        for label, kw in (("plain", {"watermark": False}), ("marked", {}), ("signed", {"signer": signer})):
            if label == "signed" and g != "phantomcxr-physics":
                continue
            t = time.perf_counter()
            out = export(g, n, work / f"{g}-{label}", seed=a.seed, shard_size=64, **kw)
            timing.setdefault(g, {})[label] = n / (time.perf_counter() - t)
        for f in sorted((work / f"{g}-marked" / "images").iterdir()):
            ref = _read16(work / f"{g}-plain" / "images" / f.name)
            psnr.append(_psnr16(ref, _read16(f)))
            marked_files.append((g, f))
            plain16.append(ref)
        print(f"exported {n} images of {g}", flush=True)
    sim = simulate(a.unmarked, seed=a.seed + 12345, size=64).images
    unmarked = [("PhantomCXR (simulated, never marked)", _png(np.rint(x[0] * 65535).astype(np.uint16))) for x in sim]
    for g in ("phantomcxr-vae", "phantomcxr-gan"):
        unmarked += [(f"{g} export, watermark=False", f.read_bytes()) for f in sorted((work / f"{g}-plain" / "images").iterdir())]
    _ = out

    hits = {k: [] for k in ATTACKS}
    prefix_ok = {k: [] for k in ATTACKS}
    t_detect, n_detect = 0.0, 0
    for g, f in marked_files:
        data = f.read_bytes()
        expected = None
        for k, d in _attacks(data).items():
            t = time.perf_counter()
            r = detect(d)
            t_detect += time.perf_counter() - t
            n_detect += 1
            if k == "as exported":
                expected = r["payload"]["model_sha256_prefix"] if r["payload"] else None
            hits[k].append(r["watermark"])
            prefix_ok[k].append(r["watermark"] and r["payload"]["model_sha256_prefix"] == expected)
    false = {k: [] for k in ATTACKS}
    scores = []
    for _, data in unmarked:
        for k, d in _attacks(data).items():
            r = detect(d)
            false[k].append(r["watermark"])
            scores.append(r["watermark_score"])
    peer = _library_peer_psnr(plain16[:100], "ab12")
    shutil.rmtree(work, ignore_errors=True)

    pct = lambda v: 100.0 * float(np.mean(v))  # noqa: E731
    rows = []
    for k in ATTACKS:
        rows.append((f"detected after: {k}", f"{pct(hits[k]):.1f}% ({sum(hits[k])}/{len(hits[k])})", ">= 95%"))
    rows.append(("model prefix read correctly, worst attack", f"{min(pct(v) for v in prefix_ok.values()):.1f}%", ""))
    all_false = [x for v in false.values() for x in v]
    rows.append(
        (
            f"false positives on {len(unmarked)} never-marked images x {len(ATTACKS)} versions",
            f"{pct(all_false):.2f}% ({sum(all_false)}/{len(all_false)}; "
            f"worst version {max(pct(v) for v in false.values()):.2f}%)",
            "<= 1%",
        )
    )
    rows.append(("highest score of an unmarked image (threshold 0.75)", f"{max(scores):.3f}", ""))
    p = np.array(psnr)
    rows.append(
        (
            "PSNR cost at 16 bits: mean / 5th percentile / worst",
            f"{p.mean():.1f} / {np.percentile(p, 5):.1f} / {p.min():.1f} dB",
            ">= 40 dB",
        )
    )
    rows.append(("peer: the library's own encode() (8-bit, 256 px), mean PSNR", f"{np.mean(peer):.1f} dB", ""))
    thr = {g: v for g, v in timing.items()}
    phys = thr["phantomcxr-physics"]
    rows.append(
        (
            "export, physics: images/s plain / watermarked / watermarked + C2PA",
            f"{phys['plain']:.0f} / {phys['marked']:.0f} / {phys['signed']:.0f}",
            "",
        )
    )
    rows.append(("detect(): mean time per file", f"{1000 * t_detect / n_detect:.1f} ms", ""))
    width = max(len(r[0]) for r in rows)
    if a.markdown:
        print("| measure | measured | target |\n|---|---|---|")
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]} |")
    else:
        for r in rows:
            print(f"{r[0]:<{width}}  {r[1]:<44} {r[2]}")
    print(f"marked images by generator: {counts}")


if __name__ == "__main__":
    main()
