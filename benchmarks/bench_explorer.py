"""Responsiveness of the Explorer, measured on its Python side (the browser adds rendering only).

Prints, each next to a peer measured in the same run:

* condition change -> 8 images shown (GeneratePanel click to grid filled), per
  installed generator, as a ratio to the physics simulator;
* UMAP of 2,000 real + 1,000 synthetic features in a new process, first
  ever (numba compiles; peer) and cold with numba's disk cache filled, and
  placing 64 new points with ``transform`` (peer: refitting the map with them);
* metric panel refresh once features exist (peer: re-encoding the samples);
* peak RSS after 20 generate rounds of 8 images (bounded by ``max_samples``).

Run: ``python benchmarks/bench_explorer.py``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def timed(fn, repeat=1):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


_COLD = """
import json, sys, time
t0 = time.perf_counter()
from medsynth_explore.session import Embedding
import numpy as np
t1 = time.perf_counter()
f = np.load(sys.argv[1])
emb = Embedding(f["real"], seed=0)
t2 = time.perf_counter()
emb.place("x", f["syn"])
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "fit": t2 - t1, "place": t3 - t2, "total": t3 - t0}))
"""


def _cold_umap(features: str, env: dict) -> dict:
    """Time import + fit + place in a fresh interpreter (what a new kernel pays)."""
    out = subprocess.run([sys.executable, "-c", _COLD, features], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import medsynth_explore as mse
    from medsynth_explore.jobs import JobRunner
    from medsynth_explore.session import Embedding, Session
    from medsynth_explore.widgets import GeneratePanel, MetricsPanel

    available = mse.list_generators()
    names = [r.name for r in available.itertuples() if r.available]
    print(f"generators installed: {names}")
    session = Session(reference="phantomcxr", generators=names, n_reference=2000)
    runner = JobRunner(synchronous=True)
    panel = GeneratePanel(session, runner=runner, n=8)
    times = {}
    for name in names:
        panel.generator_select.value = name
        panel.generate_button.click()  # warm-up (model load, first call)
        panel.seed.value += 1
        t, _ = timed(lambda: panel.generate_button.click(), repeat=3)
        assert panel.last_error is None, panel.last_error
        times[name] = t
    base = times.get("phantomcxr-physics")
    print("\ncondition change -> 8 images on screen (encode + classifier + CLIPScore included)")
    for name, t in times.items():
        ratio = f"  ({t / base:.2f}x physics)" if base else ""
        print(f"  {name:22s} {t:6.2f} s{ratio}")

    print("\nUMAP")
    real = session.reference_features()
    syn = np.concatenate([session.generate(500, generator=names[-1], seed=s, keep=False).images for s in (1, 2)])
    syn_f = session.encoder.encode(syn)
    with tempfile.TemporaryDirectory() as tmp:
        feats = os.path.join(tmp, "features.npz")
        np.savez(feats, real=real, syn=syn_f)
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(tmp, "numba"))  # an empty cache: a first-ever run
        first = _cold_umap(feats, env)
        cold = _cold_umap(feats, env)  # a new process that finds the kernels on disk
    print(f"  new process, fit on {len(real)} real + place {len(syn_f)} synthetic (import included):")
    print(
        f"    first ever on this installation (numba compiles, writes its cache): {first['total']:.2f} s "
        f"(import {first['import']:.1f}, fit {first['fit']:.1f}, place {first['place']:.1f})"
    )
    print(
        f"    cold process, kernels cached on disk:                               {cold['total']:.2f} s "
        f"(import {cold['import']:.1f}, fit {cold['fit']:.1f}, place {cold['place']:.1f}; "
        f"ratio {first['total'] / cold['total']:.1f}x)"
    )
    new = syn_f[:64]
    emb = Embedding(real, seed=0)
    emb.place("x", syn_f)
    t64, _ = timed(lambda: emb.place("y", new), repeat=3)
    t_refit, _ = timed(lambda: Embedding(np.concatenate([real, new]), seed=0))
    print(f"  place 64 new points: {t64 * 1000:.0f} ms; refit peer {t_refit:.2f} s (ratio {t_refit / t64:.0f}x)")

    print("\nmetric panel refresh (features exist)")
    session.clear_samples()
    session.add_samples(session.generate(512, generator=names[-1], seed=3, keep=False), names[-1])
    session.set_active(names[-1])
    mp = MetricsPanel(session, runner=runner)
    t_ref, _ = timed(lambda: mp.refresh(), repeat=3)
    t_enc, _ = timed(lambda: session.encoder.encode(session.synthetic[names[-1]].images))
    print(
        f"  refresh FID/KID/PRDC at N=512 vs 2000 real: {t_ref * 1000:.0f} ms; re-encoding peer {t_enc * 1000:.0f} ms "
        f"(ratio {t_enc / t_ref:.1f}x)"
    )

    print("\nmemory over 20 generate rounds of 8 images")
    rss = []
    for k in range(20):
        panel.seed.value += 1
        panel.generate_button.click()
        rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(
        f"  peak RSS after round 1: {rss[0]:.0f} MB, after round 20: {rss[-1]:.0f} MB "
        f"(kept samples bounded at {session.max_samples} per generator)"
    )


if __name__ == "__main__":
    main()
