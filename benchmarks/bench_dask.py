"""Images per second of synthetic-data export: in process, and on a Dask LocalCluster of 1 and 2 workers.

Run: ``python benchmarks/bench_dask.py [--n 96] [--shard-size 16] [--generator phantomcxr-physics]``

Peers, all measured in this run on the same generator and seed:

* ``sample``: one ``generator.sample`` call in this process, nothing written;
* ``sample shards``: the same, one call per shard (what export runs);
* ``export local``: :func:`medsynth_explore.export.export` without a client;
* ``export dask-1`` / ``dask-2``: the same export on a LocalCluster with 1 and
  2 single-threaded worker processes. Cluster start-up and each worker's
  first load of the generator are timed apart (``warm-up``), as a long
  run pays them once.

Printed ratios: export overhead over bare sampling, Dask overhead over the
local export (1 worker), and the speed-up of 2 workers over 1. On a machine
with 2 cores shared with other work, expect the speed-up below 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _load(name: str) -> None:
    from medsynth_explore.scale import resolve_generator

    resolve_generator(name).sample(1, seed=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=192)
    p.add_argument("--shard-size", type=int, default=48)
    p.add_argument("--generator", default="phantomcxr-physics")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    import torch
    from distributed import Client, LocalCluster

    from medsynth_explore.export import export, verify
    from medsynth_explore.generators import load_generator

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    gen = load_generator(a.generator)
    gen.sample(2, seed=a.seed)  # warm caches
    rates: dict[str, float] = {}
    warm: dict[int, float] = {}

    t = time.perf_counter()
    gen.sample(a.n, seed=a.seed)
    rates["sample"] = a.n / (time.perf_counter() - t)

    from medsynth_explore.scale import plan_shards, shard_seed

    t = time.perf_counter()
    for k, (_, c) in enumerate(plan_shards(a.n, a.shard_size)):
        gen.sample(c, seed=shard_seed(a.seed, k))
    rates["sample shards"] = a.n / (time.perf_counter() - t)

    t = time.perf_counter()
    export(a.generator, a.n, work / "local", seed=a.seed, shard_size=a.shard_size)
    rates["export local"] = a.n / (time.perf_counter() - t)
    reference = {q.relative_to(work / "local"): q.read_bytes() for q in (work / "local" / "images").iterdir()}

    for workers in (1, 2):
        with (
            LocalCluster(
                n_workers=workers,
                processes=True,
                threads_per_worker=1,
                dashboard_address=None,
                env={"OMP_NUM_THREADS": "1"},
                silence_logs=40,
            ) as lc,
            Client(lc) as client,
        ):
            out = work / f"dask{workers}"
            t = time.perf_counter()
            client.run(_load, a.generator)
            warm[workers] = time.perf_counter() - t
            t = time.perf_counter()
            export(a.generator, a.n, out, seed=a.seed, shard_size=a.shard_size, client=client)
            rates[f"export dask-{workers}"] = a.n / (time.perf_counter() - t)
            same = {q.relative_to(out): q.read_bytes() for q in (out / "images").iterdir()} == reference
            if not same:
                raise SystemExit(
                    f"dask-{workers} images differ from the local export: is the generator deterministic, "
                    "and did its code change while this ran?"
                )
            res = verify(out)
            if not res.ok:
                raise SystemExit(str(res))

    print(f"{a.n} images from {a.generator}, shard size {a.shard_size}, {os.cpu_count()} CPU(s)")
    for k, v in rates.items():
        print(f"  {k:15s} {v:8.1f} images/s")
    for w, sec in warm.items():
        print(f"  warm-up dask-{w}: {sec:.2f} s (workers import and load the generator once)")
    print("ratios (higher is faster):")
    print(f"  sample shards / sample       {rates['sample shards'] / rates['sample']:.2f}")
    print(f"  export local / sample shards {rates['export local'] / rates['sample shards']:.2f}")
    print(f"  dask-1 / export local        {rates['export dask-1'] / rates['export local']:.2f}")
    print(f"  dask-2 / export local        {rates['export dask-2'] / rates['export local']:.2f}")
    print(f"  dask-2 / dask-1              {rates['export dask-2'] / rates['export dask-1']:.2f}")
    print("  (all Dask exports byte-identical to the local one)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
