"""Save sample grids of PhantomCXR to docs/images/ (one per finding, normal, per site).

Run: ``python scripts/make_phantom_grids.py [--size 128]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from medsynth_explore.phantom import FINDINGS, render, sample_patients


def grid(images: np.ndarray, rows: int = 4, cols: int = 4) -> Image.Image:
    n, _, h, w = images.shape
    g = np.ones((rows * h + (rows - 1) * 2, cols * w + (cols - 1) * 2), np.float32)
    for i in range(min(n, rows * cols)):
        r, c = divmod(i, cols)
        g[r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = images[i, 0]
    return Image.fromarray(np.rint(g * 255).astype(np.uint8))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "images"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = sample_patients(16, seed=11)
    for f in (*FINDINGS, "chest_tube"):
        t = base.copy()
        for g in (*FINDINGS, "chest_tube"):
            t[g] = 0
        t[f] = 1
        if f == "chest_tube":
            t["pneumothorax"] = 1
        grid(render(t, size=args.size, seed=0)).save(out / f"phantom_{f}.png")
    t = base.copy()
    for g in (*FINDINGS, "chest_tube"):
        t[g] = 0
    grid(render(t, size=args.size, seed=0)).save(out / "phantom_normal.png")
    # per site: the same four patients (rows) at each site (columns)
    rows = []
    for site in ("A", "B", "C"):
        s = t.iloc[:4].copy()
        s["site"] = site
        rows.append(s)
    ts = __import__("pandas").concat([rows[j].iloc[[i]] for i in range(4) for j in range(3)], ignore_index=True)
    grid(render(ts, size=args.size, seed=0), rows=4, cols=3).save(out / "phantom_sites.png")
    # sizes: one patient from 32 to 256 pixels, upscaled to 256 for viewing
    ims = [
        Image.fromarray(np.rint(render(t.iloc[:1], size=s, seed=0)[0, 0] * 255).astype(np.uint8)).resize(
            (256, 256), Image.NEAREST
        )
        for s in (32, 64, 128, 256)
    ]
    strip = Image.new("L", (4 * 256 + 6, 256), 255)
    for i, im in enumerate(ims):
        strip.paste(im, (i * 258, 0))
    strip.save(out / "phantom_sizes.png")
    print(f"wrote grids to {out}")


if __name__ == "__main__":
    main()
