"""The map and the neighbour metrics at 100,000 points, with peers measured in the same run.

Sections (all by default; ``--only umap,placement,metrics,error``):

umap       UMAP fit of 100,000 x 768 reference features (medsynth's Embedding: graph from metrics/knn.py)
           next to umap-learn's own fit (pynndescent graph, low_memory) on the same features; reload from the
           map cache; placing 64 new points in the same process.
placement  The first placement of 64 points in a fresh process that loads the cached map: with an empty numba
           cache directory (a new installation that skipped the warm-up) and with one warmed by warm_up_umap.
metrics    precision, recall, density, coverage, authenticity and copy rate of 100,000 synthetic against
           100,000 real (held-out) and 100,000 training features at 768 dimensions (route "auto"), in a fresh
           process (peak RSS), cold and with the reference's radii cached; the exact route's time at this size
           estimated from its time at 20,000 (it scales with N^2).
error      exact vs approximate route at 20,000 x 20,000 x 768, where both run: every value and its difference
           in percentage points, and both times.

The features: a mixture of 40 clusters in a 24-dimensional latent space mapped non-linearly to 768 dimensions
plus noise (encoder features have such low intrinsic dimension; i.i.d. Gaussian features in 768 dimensions
have no neighbourhood structure to measure). The synthetic side is drawn from a shifted, wider mixture.

    python benchmarks/bench_map_scale.py            # about 15 minutes on 2 cores
    python benchmarks/bench_map_scale.py --n 20000  # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

D = 768


def features(n: int, seed: int, shift: float = 0.0, d: int = D, clusters: int = 40, latent: int = 24) -> np.ndarray:
    """Structured features (see the module docstring), float32."""
    base = np.random.default_rng(1234)
    centres = base.normal(size=(clusters, latent)).astype(np.float32) * 2.0
    w1 = (base.normal(size=(latent, d)) / np.sqrt(latent)).astype(np.float32)
    w2 = (base.normal(size=(latent, d)) / np.sqrt(latent)).astype(np.float32)
    rng = np.random.default_rng(seed)
    weights = np.linspace(1, 3, clusters)
    z = centres[rng.choice(clusters, n, p=weights / weights.sum())]
    z += rng.standard_normal((n, latent), dtype=np.float32) * (1.0 + shift)
    z[:, 0] += 2.0 * shift
    x = np.tanh(z @ w1)
    x += 0.3 * (z @ w2)
    x += 0.05 * rng.standard_normal((n, d), dtype=np.float32)
    return x


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def row(what: str, ours: str, peer: str = "", ratio: str = "") -> None:
    print(f"| {what} | {ours} | {peer} | {ratio} |", flush=True)


# ------------------------------------------------------------------ sections
def bench_umap(n: int, work: Path, peer: bool) -> None:
    import warnings

    import umap

    from medsynth_explore.session import Embedding, warm_up_umap

    warm_up_umap(background=False)  # an installation that ran the set-up step
    x = features(n, seed=0)
    np.save(work / "reference.npy", x)
    emb, t_fit = timed(lambda: Embedding(x, cache=work / "maps"))
    _, t_load = timed(lambda: Embedding(x, cache=work / "maps"))
    q = features(64, seed=7, shift=0.2)
    emb.transform(q[:8])
    _, t_place = timed(lambda: emb.transform(q))
    if peer:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=0, n_epochs=200, low_memory=True)
            _, t_peer = timed(lambda: model.fit(x))
            model.transform(q[:8])
            _, t_peer_place = timed(lambda: model.transform(q))
        row(
            f"UMAP fit, {n:,} x {D}",
            f"{t_fit:.1f} s (graph route: {emb.route})",
            f"umap-learn's own fit {t_peer:.1f} s",
            f"{t_peer / t_fit:.2f}x",
        )
        row(
            "place 64 points, same process, warm",
            f"{t_place * 1000:.0f} ms",
            f"umap-learn transform {t_peer_place * 1000:.0f} ms",
            f"{t_peer_place / t_place:.1f}x",
        )
    else:
        row(f"UMAP fit, {n:,} x {D}", f"{t_fit:.1f} s (graph route: {emb.route})")
        row("place 64 points, same process, warm", f"{t_place * 1000:.0f} ms")
    row("reopen: map loaded from the disk cache", f"{t_load:.2f} s", f"refit {t_fit:.1f} s", f"{t_fit / t_load:.0f}x")


_PLACE_CHILD = """
import time, json, sys, numpy as np
t0 = time.perf_counter()
from medsynth_explore.session import Embedding
x = np.load(sys.argv[1])
emb = Embedding(x, cache=sys.argv[2])
assert emb.from_cache, "the map was not in the cache"
q = np.load(sys.argv[3])
t1 = time.perf_counter()
emb.transform(q)
t2 = time.perf_counter()
print(json.dumps({"load": t1 - t0, "first_place": t2 - t1}))
"""


def bench_placement(work: Path) -> None:
    if not (work / "reference.npy").exists():
        raise SystemExit("run the umap section first (it writes the map the fresh processes load)")
    np.save(work / "query.npy", features(64, seed=8, shift=0.2))
    results = {}
    for label in ("empty numba cache", "warmed numba cache"):
        cache = Path(tempfile.mkdtemp(dir=work, prefix="numba-"))
        env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
        if label.startswith("warmed"):
            subprocess.run(
                [sys.executable, "-c", "from medsynth_explore.session import warm_up_umap; warm_up_umap(background=False)"],
                env=env,
                check=True,
            )
        out = subprocess.run(
            [sys.executable, "-c", _PLACE_CHILD, str(work / "reference.npy"), str(work / "maps"), str(work / "query.npy")],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        results[label] = json.loads(out.stdout.strip().splitlines()[-1])
    cold, warm = results["empty numba cache"], results["warmed numba cache"]
    row(
        "first placement of 64 points in a fresh process",
        f"{warm['first_place']:.2f} s (warmed cache)",
        f"{cold['first_place']:.2f} s (empty cache)",
        f"{cold['first_place'] / warm['first_place']:.1f}x",
    )
    row("fresh process: import and load the cached map", f"{warm['load']:.2f} s", f"{cold['load']:.2f} s")


_METRICS_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[2])
from bench_map_scale import features, peak_rss_mb
from medsynth_explore.metrics.knn import record_routes
from medsynth_explore.metrics.registry import compute_metrics
n = int(sys.argv[1])
real, train, syn = features(n, seed=1), features(n, seed=2), features(n, seed=3, shift=0.25)
base = peak_rss_mb()
names = ["prdc", "authenticity", "copy_rate"]
t = time.perf_counter()
with record_routes() as log:
    cold = compute_metrics(names, real, syn, train)
t_cold = time.perf_counter() - t
syn2 = features(n, seed=4, shift=0.25)
t = time.perf_counter()
warm = compute_metrics(names, real, syn2, train)
t_warm = time.perf_counter() - t
print(json.dumps({"cold": t_cold, "warm": t_warm, "values": cold, "peak_mb": peak_rss_mb(), "data_mb": base,
                  "routes": sorted({e["route"] for e in log})}))
"""


def bench_metrics(n: int, exact_20k: float | None) -> None:
    here = str(Path(__file__).resolve().parent)
    out = subprocess.run([sys.executable, "-c", _METRICS_CHILD, str(n), here], check=True, capture_output=True, text=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    est = f"exact route, estimated {exact_20k * (n / 20_000) ** 2 / 60:.0f} min" if exact_20k else ""
    ratio = f"{exact_20k * (n / 20_000) ** 2 / r['cold']:.0f}x" if exact_20k else ""
    row(
        f"PRDC + authenticity + copy rate, {n:,} x {n:,} x {D} (routes {', '.join(r['routes'])})",
        f"{r['cold']:.1f} s cold",
        est,
        ratio,
    )
    row("same, next synthetic set (reference radii and training neighbours cached)", f"{r['warm']:.1f} s")
    row("peak RSS of that process", f"{r['peak_mb']:,.0f} MB (of which {r['data_mb']:,.0f} MB the three feature sets)")
    print("values:", {k: round(v, 4) for k, v in r["values"].items()}, flush=True)


def bench_error(n: int) -> float:
    from medsynth_explore.metrics import knn as K
    from medsynth_explore.metrics.registry import compute_metrics

    real, train, syn = features(n, seed=11), features(n, seed=12), features(n, seed=13, shift=0.25)
    names = ["prdc", "authenticity", "copy_rate"]
    K.clear_cache()
    exact, t_exact = timed(lambda: compute_metrics(names, real, syn, train, knn_route="exact"))
    K.clear_cache()
    approx, t_approx = timed(lambda: compute_metrics(names, real, syn, train, knn_route="approximate"))
    print(
        f"\nexact vs approximate route at {n:,} x {n:,} x {D} (exact {t_exact:.1f} s, approximate {t_approx:.1f} s, "
        f"{t_exact / t_approx:.1f}x)\n"
    )
    print("| value | exact | approximate | difference (percentage points) |\n|---|---|---|---|")
    for k in exact:
        print(f"| {k} | {exact[k]:.4f} | {approx[k]:.4f} | {100 * (approx[k] - exact[k]):+.2f} |")
    print(flush=True)
    return t_exact


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="reference (and synthetic) points")
    ap.add_argument("--error-n", type=int, default=20_000, help="size of the exact vs approximate comparison")
    ap.add_argument("--only", default="umap,placement,error,metrics")
    ap.add_argument("--no-peer", action="store_true", help="skip umap-learn's own 100k fit")
    ap.add_argument("--work", default=None, help="folder for the map cache and feature files (default: a temporary one)")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="msx-map-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    parts = a.only.split(",")
    print(f"CPU threads: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}\n")
    print("| what | ours | peer | ratio |\n|---|---|---|---|")
    if "umap" in parts:
        bench_umap(a.n, work, not a.no_peer)
    if "placement" in parts:
        bench_placement(work)
    t_exact = bench_error(a.error_n) if "error" in parts else None
    if "metrics" in parts:
        if t_exact is not None:
            print("| what | ours | peer | ratio |\n|---|---|---|---|")
        bench_metrics(a.n, t_exact if a.error_n == 20_000 else None)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
