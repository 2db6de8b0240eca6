"""Responsiveness of the Explorer, measured on its Python side (the browser adds rendering only).

Prints, each next to a peer measured in the same run:

* condition change -> 8 images shown (GeneratePanel click to grid filled), per
  installed generator, as a ratio to the physics simulator;
* UMAP of 2,000 real + 1,000 synthetic features, cold, and placing 64 new
  points with ``transform`` (peer: refitting the map with them);
* metric panel refresh once features exist (peer: re-encoding the samples);
* peak RSS after 20 generate rounds of 8 images (bounded by ``max_samples``).

Run: ``python benchmarks/bench_explorer.py``.
"""

from __future__ import annotations

import resource
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
    from medsynth_explore.session import warm_up_umap

    t_warm, _ = timed(lambda: warm_up_umap(background=False))
    print(f"  one-time numba compilation (the Explorer runs it in the background when it opens): {t_warm:.1f} s")
    real = session.reference_features()
    syn = np.concatenate([session.generate(500, generator=names[-1], seed=s, keep=False).images for s in (1, 2)])
    syn_f = session.encoder.encode(syn)
    t_fit, emb = timed(lambda: Embedding(np.concatenate([real, syn_f[:0]]), seed=0))
    t_place, _ = timed(lambda: emb.place("x", syn_f))
    new = syn_f[:64]
    t64, _ = timed(lambda: emb.place("y", new), repeat=3)
    t_refit, _ = timed(lambda: Embedding(np.concatenate([real, new]), seed=0))
    print(f"  fit on {len(real)} real + place {len(syn_f)} synthetic, after the warm-up: {t_fit + t_place:.2f} s "
          f"(cold process: {t_warm + t_fit + t_place:.2f} s)")
    print(f"  place 64 new points: {t64 * 1000:.0f} ms; refit peer {t_refit:.2f} s (ratio {t_refit / t64:.0f}x)")

    print("\nmetric panel refresh (features exist)")
    session.clear_samples()
    session.add_samples(session.generate(512, generator=names[-1], seed=3, keep=False), names[-1])
    session.set_active(names[-1])
    mp = MetricsPanel(session, runner=runner)
    t_ref, _ = timed(lambda: mp.refresh(), repeat=3)
    t_enc, _ = timed(lambda: session.encoder.encode(session.synthetic[names[-1]].images))
    print(f"  refresh FID/KID/PRDC at N=512 vs 2000 real: {t_ref * 1000:.0f} ms; re-encoding peer {t_enc * 1000:.0f} ms "
          f"(ratio {t_enc / t_ref:.1f}x)")

    print("\nmemory over 20 generate rounds of 8 images")
    rss = []
    for k in range(20):
        panel.seed.value += 1
        panel.generate_button.click()
        rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"  peak RSS after round 1: {rss[0]:.0f} MB, after round 20: {rss[-1]:.0f} MB "
          f"(kept samples bounded at {session.max_samples} per generator)")


if __name__ == "__main__":
    main()
