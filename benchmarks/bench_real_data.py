"""Real data at real scale: ``evaluate`` of a folder of N distinct 512 x 512 JPEGs, memory and throughput.

What it measures, each in a fresh process (peak RSS is that process's
``ru_maxrss``; the peers' DataLoader worker processes are reported apart):

* **ours**: ``evaluate(real_folder, synthetic_folder, encoder=E, metrics=["fid"], n_boot=0)``
  with the folders loaded by ``load_dataset`` (file-backed above the memory
  limit: decoded in worker threads, streamed through the encoder);
* **decode alone**: iterating the real set's batches as ``E.encode`` reads them: decoded, and
  resized to E's input size in the same threads (``E.decode_transform()``);
* **encoder alone**: ``E.encode`` on those pre-decoded, pre-resized tensors (a subset held in
  memory): the network and the normalisation, as E's own thread does them in ours;
* **ours, cached**: the same ``evaluate`` again with the feature cache the
  first run filled (file identity keys: no pixel is decoded);
* **clean-fid**: ``cleanfid.fid.compute_fid(real_folder, synthetic_folder, mode="clean",
  custom_feat_extractor=E)`` (its folder route: a torch DataLoader with worker
  processes, its own 299 x 299 bicubic resize);
* **torchmetrics**: ``FrechetInceptionDistance(feature=E, normalize=True)``
  fed in batches from a torch DataLoader with worker processes.

Encoders: the default one (``phantomcxr-clip``) and a ViT-B/16-sized random
network (``timm`` ``vit_base_patch16_224``, no weights), on a smaller set
(``--heavy-n``) because every route takes minutes per thousand images on a CPU.
The pipeline target: ours at least 90% of the slower stage measured alone. ``--rounds`` (default
3) rounds each run decode alone, encoder alone and ours one after the other; each round's ratio
compares runs made minutes apart at most, and the median and best-against-best are printed.

The images are written once (PhantomCXR cohorts upscaled to 512 px with
per-image noise, as 8-bit JPEGs) into ``--data`` (default
``$MEDSYNTH_BENCH_DATA`` or ``~/.cache/medsynth_explore/bench_real_data``) and
reused by later runs; the time writing took is printed.

Usage::

    python benchmarks/bench_real_data.py --n 50000            # torch on half the CPUs, decoding on the other half
    python benchmarks/bench_real_data.py --n 2000 --heavy-n 256 --skip-peers   # a quick run
    python benchmarks/bench_real_data.py --n 1000 --n-synthetic 500 --memory-limit 64MB   # small, but streamed
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()


# --------------------------------------------------------------------------- the images
def _write_chunk(args):
    """Write images start..stop of one folder (a worker process)."""
    folder, start, stop, size, seed = args
    from PIL import Image

    from medsynth_explore.phantom import simulate

    ds = simulate(stop - start, seed=seed * 1_000_003 + start, size=64)
    rng = np.random.default_rng([seed, start])
    rows = []
    for j, im in enumerate(ds.images):
        big = Image.fromarray(np.rint(im[0] * 255).astype(np.uint8), mode="L").resize((size, size), Image.BICUBIC)
        a = np.asarray(big, np.float32) + rng.standard_normal((size, size), dtype=np.float32) * 4.0  # per-image noise
        name = f"{start + j:06d}.jpg"
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), mode="L").save(Path(folder) / name, quality=90)
        m = ds.metadata.iloc[j]
        rows.append({"filename": name, "sex": m["sex"], "age": int(m["age"]), "effusion": int(m["effusion"])})
    return rows


def data_root(given: Path | None) -> Path:
    """Where the images are written once: ``given``, else ``$MEDSYNTH_BENCH_DATA``, else a folder in ~/.cache."""
    default = Path.home() / ".cache" / "medsynth_explore" / "bench_real_data"
    root = given or Path(os.environ.get("MEDSYNTH_BENCH_DATA") or default)
    root.mkdir(parents=True, exist_ok=True)
    return root


def ensure_folder(root: Path, name: str, n: int, size: int, seed: int, processes: int) -> tuple[Path, float | None]:
    """A folder of ``n`` distinct images (written once; reused when its marker says it is complete)."""
    import pandas as pd

    folder = root / f"{name}_{n}_{size}"
    marker = folder / "COMPLETE"
    if marker.exists():
        return folder, None
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    step = 500
    jobs = [(str(folder), s, min(s + step, n), size, seed) for s in range(0, n, step)]
    if processes > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(processes) as pool:
            parts = pool.map(_write_chunk, jobs)
    else:
        parts = [_write_chunk(j) for j in jobs]
    pd.DataFrame([r for p in parts for r in p]).to_csv(folder / "metadata.csv", index=False)
    marker.write_text(json.dumps({"n": n, "size": size, "seed": seed}))
    return folder, time.perf_counter() - t0


# --------------------------------------------------------------------------- encoders
def build_encoder(name: str):
    """The default encoder, or a ViT-B/16-sized random network as an Encoder."""
    if name == "default":
        from medsynth_explore.features import get_encoder

        return get_encoder(None)
    if name == "vit-b16-random":
        import timm
        import torch

        from medsynth_explore.features import Encoder

        class RandomViTB16(Encoder):
            channels, input_size, mean, std, dim = 3, (224, 224), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 768

            def __init__(self):
                torch.manual_seed(0)
                self.model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0).eval()
                self.id = "vit-b16-random-seed0"

            def _forward(self, x):
                return self.model(x)

        return RandomViTB16()
    raise SystemExit(f"unknown encoder {name!r}")


def _torch_module(enc):
    """The encoder as a torch module over (B, C, H, W) float images in [0, 1] (clean-fid gives 0-255)."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self, scale):
            super().__init__()
            self.scale, self.num_features = scale, enc.dim

        def forward(self, x):
            with torch.no_grad():
                return enc._forward(enc.prepare(x.float() / self.scale)).float()

    return Wrapped


# --------------------------------------------------------------------------- one measurement (child process)
def _peak() -> dict:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"peak_rss_mb": self_kb / 1024, "worker_peak_rss_mb": kids_kb / 1024}


def _rss_now_mb() -> float:
    """Resident memory of this process now (``VmRSS``), in MB; NaN where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def child(a: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    from medsynth_explore import evaluate, load_dataset

    enc = build_encoder(a.encoder)
    a.batch_size = a.batch_size or enc.default_batch_size  # every route runs the encoder on batches of one size
    real, syn = Path(a.real), Path(a.synthetic)
    transform = enc.decode_transform()

    def decoded(ds):  # what the decoding threads hand over in ours: decoded, and resized to the encoder's size
        return ds.batches(a.batch_size, workers=a.workers, transform=transform)

    t0 = time.perf_counter()
    # what every route holds before it reads an image: Python, torch, the package and the encoder's weights
    out: dict = {"mode": a.mode, "baseline_rss_mb": _rss_now_mb(), "batch_size": a.batch_size}
    if a.mode in ("ours", "ours-cached"):
        cache = a.cache if a.cache else False
        rep = evaluate(
            str(real), str(syn), encoder=enc, metrics=["fid"], n_boot=0, cache=cache, thumbnails=0, batch_size=a.batch_size
        )
        out.update(fid=rep.value("fid"), images=rep.provenance["n_real"] + rep.provenance["n_synthetic"])
        out["file_backed"] = bool(rep.provenance["real"].get("file_backed", False))
    elif a.mode == "decode":
        data = load_dataset(str(real), lazy=True)[: a.stage_n]
        t0 = time.perf_counter()
        out["images"] = sum(len(b) for b in decoded(data))
    elif a.mode == "encode":  # what the encoder's thread does in ours: the network on images decoded and resized before
        data = load_dataset(str(real), lazy=True)[: a.stage_n]
        x = np.concatenate(list(decoded(data)))
        enc.encode(x[: min(8, len(x))])  # warm-up
        t0 = time.perf_counter()
        enc.encode(x, batch_size=a.batch_size)
        out["images"] = len(x)
    elif a.mode == "interleaved":  # the three, on short runs of distinct files in turn, so that drift cancels
        data = load_dataset(str(real), lazy=True)
        c = a.chunk
        if len(data) < 3 * c * a.cycles:
            raise SystemExit(f"--cycles {a.cycles} of --chunk {c} need {3 * c * a.cycles} real images; there are {len(data)}")
        enc.encode(data[:8])  # warm-up
        cycles = []
        t0 = time.perf_counter()
        for k in range(a.cycles):
            part = [data[(3 * k + j) * c : (3 * k + j + 1) * c] for j in range(3)]
            x = np.concatenate(list(decoded(part[1])))
            t1 = time.perf_counter()
            for _ in decoded(part[0]):
                pass
            t2 = time.perf_counter()
            enc.encode(x, batch_size=a.batch_size)
            t3 = time.perf_counter()
            enc.encode(part[2], batch_size=a.batch_size)
            t4 = time.perf_counter()
            cycles.append({"decode": c / (t2 - t1), "encode": c / (t3 - t2), "pipeline": c / (t4 - t3)})
        out["cycles"] = cycles
        out["images"] = 3 * c * a.cycles
    elif a.mode == "cleanfid":
        from cleanfid import fid as cfid

        model = _torch_module(enc)(255.0)
        score = cfid.compute_fid(
            str(real),
            str(syn),
            mode="clean",
            custom_feat_extractor=model,
            num_workers=a.workers,
            batch_size=a.batch_size,
            device=torch.device("cpu"),
            verbose=False,
        )
        out.update(fid=float(score), images=len(list(real.glob("*.jpg"))) + len(list(syn.glob("*.jpg"))))
    elif a.mode == "torchmetrics":
        from PIL import Image
        from torchmetrics.image.fid import FrechetInceptionDistance

        class Files(torch.utils.data.Dataset):
            def __init__(self, files):
                self.files = files

            def __len__(self):
                return len(self.files)

            def __getitem__(self, i):
                with Image.open(self.files[i]) as im:
                    return torch.from_numpy(np.asarray(im.convert("L"), np.float32)[None] / 255.0)

        metric = FrechetInceptionDistance(feature=_torch_module(enc)(1.0), normalize=True)
        n = 0
        for folder, is_real in ((real, True), (syn, False)):
            files = sorted(folder.glob("*.jpg"))
            loader = torch.utils.data.DataLoader(Files(files), batch_size=a.batch_size, num_workers=a.workers)
            for batch in loader:
                metric.update(batch, real=is_real)
                n += len(batch)
        out.update(fid=float(metric.compute()), images=n)
    else:
        raise SystemExit(f"unknown mode {a.mode}")
    out["seconds"] = time.perf_counter() - t0
    out["images_per_s"] = out["images"] / out["seconds"]
    out.update(_peak())
    return out


def run_child(mode: str, a: argparse.Namespace, encoder: str, real: Path, syn: Path, cache: str = "") -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads), MEDSYNTH_IO_WORKERS=str(a.workers))
    env.pop("MEDSYNTH_MEMORY_LIMIT", None)  # the default in-memory limit, as a user gets it ...
    if a.memory_limit:  # ... unless asked: a small run with a low limit streams as a 50,000-image run does
        env["MEDSYNTH_MEMORY_LIMIT"] = a.memory_limit
    cmd = [sys.executable, str(HERE), "--child", mode, "--encoder", encoder, "--real", str(real), "--synthetic", str(syn)]
    cmd += ["--threads", str(a.threads), "--workers", str(a.workers), "--batch-size", str(a.batch_size)]
    cmd += ["--stage-n", str(a.stage_n), "--cycles", str(a.cycles), "--chunk", str(a.chunk)]
    if cache:
        cmd += ["--cache", cache]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        print(res.stdout[-3000:], res.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{mode} ({encoder}) failed with status {res.returncode}")
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("{")][-1]
    out = json.loads(line)
    out["wall_s"] = time.perf_counter() - t0
    print(
        f"  {encoder:15s} {mode:13s} {out['images']:>7,} images (batches of {out['batch_size']})  {out['seconds']:8.1f} s  "
        f"{out['images_per_s']:7.1f} img/s  "
        f"peak {out['peak_rss_mb']:7.0f} MB (before the images {out['baseline_rss_mb']:5.0f} MB)"
        + (f"  fid {out['fid']:.5g}" if "fid" in out else ""),
        flush=True,
    )
    return out


def table(rows: dict, encoder: str, n_real: int, n_syn: int) -> str:
    ours, dec, enc = rows["ours"], rows["decode"], rows["encode"]
    slower = min(dec["images_per_s"], enc["images_per_s"])
    lines = [
        f"**{encoder}**: {n_real:,} real + {n_syn:,} synthetic images of 512 x 512",
        "",
        "| route | images / s | time (s) | peak RSS (MB) | RSS before the images (MB) | FID |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (
        ("ours", "medsynth `evaluate` (folders, streamed)"),
        ("ours-cached", "medsynth `evaluate` again (features cached)"),
        ("decode", "stage alone: decode + resize to the encoder's size (threads)"),
        ("encode", "stage alone: encoder on pre-decoded, pre-resized tensors"),
        ("cleanfid", "clean-fid folder route, same encoder"),
        ("torchmetrics", "torchmetrics FID in batches, same encoder"),
    ):
        r = rows.get(key)
        if r is None:
            continue
        peak = f"{r['peak_rss_mb']:,.0f}"
        if key in ("cleanfid", "torchmetrics"):  # DataLoader worker processes (forked: they share pages with the parent)
            peak += f" (+ {r['worker_peak_rss_mb']:,.0f} per worker)"
        fid = f"{r['fid']:.4g}" if "fid" in r else ""
        base = f"{r['baseline_rss_mb']:,.0f}"
        lines.append(f"| {label} | {r['images_per_s']:,.1f} | {r['seconds']:,.1f} | {peak} | {base} | {fid} |")
    lines.append("")
    lines.append(
        f"rates of every round (img/s): decode {dec.get('tries')}, encoder {enc.get('tries')}, ours {ours.get('tries')}; "
        "the best of each is shown"
    )
    ratios = ours.get("round_ratios") or [ours["images_per_s"] / slower]
    lines.append(
        f"pipeline / slower stage, each round: {', '.join(f'{r:.2f}' for r in ratios)}; median {float(np.median(ratios)):.2f}; "
        f"best against best {ours['images_per_s'] / slower:.2f} (target >= 0.90)"
    )
    lines.append(f"peak RSS {ours['peak_rss_mb']:,.0f} MB (target <= 2,048); load average at the end {os.getloadavg()[0]:.1f}")
    for peer in ("cleanfid", "torchmetrics"):
        if peer in rows:
            lines.append(f"ours / {peer}: {ours['images_per_s'] / rows[peer]['images_per_s']:.2f}x throughput")
    return "\n".join(lines)


def interleaved_table(cycles: list, encoder: str, chunk: int) -> str:
    """Each cycle's rates and ratio, their median and spread."""
    ratios = [cy["pipeline"] / min(cy["decode"], cy["encode"]) for cy in cycles]
    med = {k: float(np.median([cy[k] for cy in cycles])) for k in ("decode", "encode", "pipeline")}
    q1, q3 = np.percentile(ratios, [25, 75])
    return "\n".join(
        [
            f"**{encoder}**, {len(cycles)} cycles of {chunk} images each for decode alone, encoder alone and the streamed "
            "`encode` (distinct files, one after the other, one process)",
            "",
            f"median rates (img/s): decode + resize {med['decode']:,.1f}, encoder {med['encode']:,.1f}, "
            f"streamed encode {med['pipeline']:,.1f}",
            f"pipeline / slower stage per cycle: {', '.join(f'{r:.2f}' for r in ratios)}",
            f"median {float(np.median(ratios)):.2f} (quartiles {q1:.2f} - {q3:.2f}; target >= 0.90)",
        ]
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50_000, help="real images (default 50,000)")
    p.add_argument("--n-synthetic", type=int, default=2_000)
    p.add_argument("--heavy-n", type=int, default=1_000, help="real images for the ViT-B run (0: skip it)")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--data", type=Path, default=None, help="where the images are written once (default $MEDSYNTH_BENCH_DATA)")
    cpus = os.cpu_count() or 1
    p.add_argument("--threads", type=int, default=max(1, cpus // 2), help="torch threads (default: half the CPUs)")
    p.add_argument(
        "--workers", type=int, default=None, help="decoding threads / DataLoader workers (default: the other half of the CPUs)"
    )
    p.add_argument("--batch-size", type=int, default=0, help="images per batch (default: the encoder's default_batch_size)")
    p.add_argument("--stage-n", type=int, default=2048, help="images for the stage-alone rates")
    p.add_argument(
        "--rounds", type=int, default=3, help="rounds of (decode alone, encoder alone, ours); each round gives a pipeline ratio"
    )
    p.add_argument("--skip-peers", action="store_true")
    p.add_argument("--encoders", default="default,vit-b16-random", help="comma-separated: default, vit-b16-random")
    p.add_argument(
        "--memory-limit",
        default="",
        help="MEDSYNTH_MEMORY_LIMIT for the measured processes (default: unset, the package's 512 MiB); e.g. 64MB makes a "
        "small run stream from disk as a 50,000-image run does",
    )
    p.add_argument("--child")
    p.add_argument("--encoder", default="default")
    p.add_argument("--real")
    p.add_argument("--synthetic")
    p.add_argument("--cache", default="")
    p.add_argument(
        "--cycles",
        type=int,
        default=0,
        help="also run this many cycles of (decode alone, encoder alone, the streamed encode) on --chunk distinct images "
        "each, one after the other in one process: each cycle's ratio compares runs seconds apart",
    )
    p.add_argument("--chunk", type=int, default=512)
    a = p.parse_args(argv)
    a.workers = a.workers or max(1, (os.cpu_count() or 1) - a.threads)
    if a.child:
        a.mode = a.child
        print(json.dumps(child(a)))
        return 0
    root = data_root(a.data)
    print(
        f"torch threads {a.threads}, decoding workers {a.workers}, batch {a.batch_size or 'the encoder default'}, "
        f"{os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}; data in {root}"
    )
    chosen = {e.strip() for e in a.encoders.split(",") if e.strip()}
    if not a.heavy_n:
        chosen.discard("vit-b16-random")
    folders = {}
    for key, name, n, seed in (
        ("real", "real", a.n, 1),
        ("syn", "synthetic", a.n_synthetic, 2),
        ("real_heavy", "real", a.heavy_n, 3),
        ("syn_heavy", "synthetic", max(2, a.heavy_n // 2), 4),
    ):
        if ("vit-b16-random" if key.endswith("heavy") else "default") not in chosen:
            continue
        folder, took = ensure_folder(root, name, n, a.size, seed, processes=max(1, os.cpu_count() or 1))
        folders[key] = folder
        print(f"{folder}: " + (f"written in {took:.0f} s ({n / took:.0f} images/s)" if took else "reused"), flush=True)
    outputs = []
    for encoder, real, syn in (
        ("default", folders.get("real"), folders.get("syn")),
        ("vit-b16-random", folders.get("real_heavy"), folders.get("syn_heavy")),
    ):
        if encoder not in chosen:
            continue
        rows = {}
        a.stage_n = min(a.stage_n, len(list(real.glob("*.jpg"))))
        with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache:
            # rounds of (decode alone, encoder alone, ours), one after the other: this machine's speed drifts by up
            # to a third over minutes, so each round's ratio compares runs made next to each other; the first
            # round's "ours" fills the feature cache that "ours, cached" reads at the end
            tries: dict = {"decode": [], "encode": [], "ours": []}
            for i in range(max(1, a.rounds)):
                for stage in ("decode", "encode"):
                    tries[stage].append(run_child(stage, a, encoder, real, syn))
                tries["ours"].append(run_child("ours", a, encoder, real, syn, cache=cache if i == 0 else ""))
            for stage, runs in tries.items():
                rows[stage] = max(runs, key=lambda r: r["images_per_s"])
                rows[stage]["tries"] = [round(r["images_per_s"], 1) for r in runs]
            rows["ours"]["round_ratios"] = [
                o["images_per_s"] / min(d["images_per_s"], e["images_per_s"])
                for d, e, o in zip(tries["decode"], tries["encode"], tries["ours"])
            ]
            rows["ours-cached"] = run_child("ours-cached", a, encoder, real, syn, cache=cache)
        if a.cycles:
            inter = run_child("interleaved", a, encoder, real, syn)
            outputs.append(interleaved_table(inter["cycles"], encoder, a.chunk))
            print("\n" + outputs[-1] + "\n", flush=True)
        if not a.skip_peers:
            rows["cleanfid"] = run_child("cleanfid", a, encoder, real, syn)
            rows["torchmetrics"] = run_child("torchmetrics", a, encoder, real, syn)
        n_real = len(list(real.glob("*.jpg")))
        n_syn = len(list(syn.glob("*.jpg")))
        outputs.append(table(rows, encoder, n_real, n_syn))
        print("\n" + outputs[-1] + "\n", flush=True)
    print("\n\n".join(outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
