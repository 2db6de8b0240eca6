"""Speed of the metrics engine against peers measured in the same process.

Run with one thread for a fair comparison::

    OMP_NUM_THREADS=1 python benchmarks/bench_metrics.py [--quick]

Prints wall-clock seconds (best of the repeats), the ratio peer / ours, and
the agreement of the values. Nothing here is asserted: see the tests for
correctness.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np


def best_time(fn, repeat=1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def inception_like(rng, n, d, shift=0.0):
    """Non-negative, correlated features (Inception pool features are post-ReLU averages)."""
    mix = np.random.default_rng(1).normal(size=(64, d)) / 8.0
    z = rng.normal(size=(n, 64)) @ mix + rng.normal(scale=0.3, size=(n, d)) + shift
    return np.maximum(z, 0).astype(np.float32)


def bench_fid(n, d, repeat):
    from pytorch_fid.fid_score import calculate_frechet_distance

    from medsynth_explore.metrics import fid
    from medsynth_explore.metrics.fid import feature_stats, frechet_distance

    rng = np.random.default_rng(0)
    a, b = inception_like(rng, n, d), inception_like(rng, n, d, shift=0.05)

    def peer():
        m1, s1 = np.mean(a, axis=0), np.cov(a, rowvar=False)
        m2, s2 = np.mean(b, axis=0), np.cov(b, rowvar=False)
        return calculate_frechet_distance(m1, s1, m2, s2)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_peer, v_peer = best_time(peer, repeat)
        t_ours, v_ours = best_time(lambda: fid(a, b), repeat)
        m1, s1 = feature_stats(a)
        m2, s2 = feature_stats(b)
        t_pd, _ = best_time(lambda: calculate_frechet_distance(m1, s1, m2, s2), repeat)
        t_od, _ = best_time(lambda: frechet_distance(m1, s1, m2, s2), repeat)
    print(f"FID {n} x {d} (both sets: mean/cov + distance)")
    print(f"  pytorch-fid  {t_peer:8.3f} s   value {v_peer:.10g}")
    print(f"  ours         {t_ours:8.3f} s   value {v_ours:.10g}   rel. diff {abs(v_ours - v_peer) / abs(v_peer):.2e}")
    print(f"  ratio peer/ours: {t_peer / t_ours:.1f}x")
    print(
        f"  distance only (pytorch-fid's calculate_frechet_distance), from the same statistics: "
        f"sqrtm {t_pd:.3f} s vs eigvalsh route {t_od:.3f} s -> {t_pd / t_od:.1f}x"
    )
    # what bounds the end-to-end ratio: both sides form two float64 covariances (a symmetric rank-N update
    # each, N D (D + 1) flops; numpy's X.T @ X inside np.cov takes the same BLAS route)
    t_cov, _ = best_time(lambda: (feature_stats(a), feature_stats(b)), repeat)
    gflops = 2 * n * d * (d + 1) / t_cov / 1e9
    print(
        f"  shared work: two float64 covariances {t_cov:.3f} s ({gflops:.0f} GFLOP/s); "
        f"with it, the end-to-end ratio cannot exceed {t_peer / t_cov:.1f}x"
    )


def bench_live(n_real, n_syn, d, batch):
    from medsynth_explore.metrics import StreamingFID, StreamingKID, StreamingPRDC, fid, kid, prdc

    rng = np.random.default_rng(1)
    real = rng.normal(size=(n_real, d))
    syn = rng.normal(size=(n_syn, d)) + 0.1
    new = rng.normal(size=(batch, d)) + 0.1
    sf, sk, sp = StreamingFID(), StreamingKID(n_blocks=10), StreamingPRDC(k=5)
    for s in (sf, sk, sp):
        s.update(real, real=True)
        s.update(syn, real=False)
    sf.compute()
    sk.compute()
    sp.coverage()  # caches built once (real-side factor, radii)

    def live():
        t0 = time.perf_counter()
        sf.update(new, real=False)
        v_f = sf.compute()
        t1 = time.perf_counter()
        sk.update(new, real=False)
        v_k = sk.compute()
        t2 = time.perf_counter()
        sp.update(new, real=False)
        v_c = sp.coverage()
        t3 = time.perf_counter()
        return (t1 - t0, t2 - t1, t3 - t2), (v_f, v_k, v_c)

    # three successive batches of 64 (each one really streams in); the best of them is reported
    runs = [live()[0] for _ in range(3)]
    tf, tk, tc = min(runs, key=sum)
    all_syn = np.concatenate([syn, new, new, new])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bf, _ = best_time(lambda: fid(real, all_syn))
        bk, _ = best_time(lambda: kid(real, all_syn, subsets=100, subset_size=1000))
        bc, _ = best_time(lambda: prdc(real, all_syn)["coverage"])
    print(f"Live update: +{batch} synthetic samples at D={d} ({n_real} real, {n_syn} synthetic held)")
    print(f"  FID      {tf * 1e3:7.1f} ms   (batch recompute {bf * 1e3:8.1f} ms, {bf / tf:.0f}x)")
    print(f"  KID      {tk * 1e3:7.1f} ms   (batch 100 x 1000 subsets {bk * 1e3:8.1f} ms, {bk / tk:.0f}x)")
    print(f"  coverage {tc * 1e3:7.1f} ms   (batch PRDC {bc * 1e3:8.1f} ms, {bc / tc:.0f}x)")
    print(f"  total    {(tf + tk + tc) * 1e3:7.1f} ms   (the first of the three batches: {sum(runs[0]) * 1e3:.1f} ms)")


def bench_prdc(n, d, repeat):
    import prdc as prdc_pkg

    from medsynth_explore.metrics import prdc

    rng = np.random.default_rng(2)
    real = rng.normal(size=(n, d)).astype(np.float32)
    fake = (rng.normal(size=(n, d)) * 1.05 + 0.05).astype(np.float32)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints the sample counts
        t_peer, v_peer = best_time(lambda: prdc_pkg.compute_prdc(real, fake, 5), repeat)
    t_ours, v_ours = best_time(lambda: prdc(real, fake, k=5), repeat)
    diff = max(abs(float(v_peer[k]) - v_ours[k]) for k in v_ours)
    print(f"PRDC {n} x {n}, D={d}, k=5")
    print(f"  prdc package {t_peer:8.3f} s   {', '.join(f'{k}={float(v):.4f}' for k, v in v_peer.items())}")
    print(f"  ours         {t_ours:8.3f} s   max abs diff {diff:.1e}")
    print(f"  ratio peer/ours: {t_peer / t_ours:.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes for a smoke run")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    if args.quick:
        bench_fid(2000, 512, args.repeat)
        bench_live(2000, 1000, 512, 64)
        bench_prdc(1000, 64, args.repeat)
    else:
        bench_fid(10_000, 2048, args.repeat)
        bench_live(5_000, 5_000, 512, 64)
        bench_prdc(5_000, 64, args.repeat)


if __name__ == "__main__":
    main()
