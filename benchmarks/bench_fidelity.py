"""Quality of every installed generator, measured on ground truth the simulator knows.

For each generator: 10 condition cells (no finding or one of four findings,
times F/M), ``--per-cell`` images each (default 64), ages drawn uniformly in
20-85 and requested per image. Reported, with the physics simulator as the
peer measured in the same run:

* conditioning fidelity judged by the reference classifier (trained on real
  simulated images): AUROC of each requested finding, accuracy of the
  requested sex, MAE of the requested age;
* text fidelity: mean CLIPScore (100 max(cos, 0), domain CLIP) of each image
  with the report of its own conditions vs with a mismatched report (the
  report of a shuffled cell);
* inpainting (models that can): PSNR outside the mask and the change of the
  classifier's nodule probability when a nodule is asked for in a lung disc;
* memorization: share of samples nearer (domain CLIP features) to a training
  image than the 1st percentile of held-out-to-train distances (target <= 1%);
* realism and diversity: FID, precision and coverage against held-out real
  images (domain CLIP features), which show what a stronger guidance costs;
* speed: images per second at default settings.

Run: ``python benchmarks/bench_fidelity.py [--per-cell 64] [--markdown] [--generators a,b] [--guidance 2,5,8]
[--age-guidance 0,3]``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

FINDINGS = ("cardiomegaly", "nodule", "effusion", "pneumothorax")


def cells(per_cell: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for finding in ("none", *FINDINGS):
        for sex in ("F", "M"):
            for _ in range(per_cell):
                rows.append({"finding": finding, "sex": sex, "age": float(rng.integers(20, 86))})
    return pd.DataFrame(rows)


def reports_for(table: pd.DataFrame, seed: int = 0) -> list[str]:
    """Reports the simulator would write for these requested conditions."""
    from medsynth_explore.phantom import sample_patients, write_reports
    from medsynth_explore.phantom.population import complete_patients

    p = sample_patients(len(table), seed=seed)
    p["age"] = table["age"].round().astype(int).to_numpy()
    p["sex"] = table["sex"].to_numpy()
    for f in FINDINGS:
        p[f] = (table["finding"] == f).astype(int).to_numpy()
    p["chest_tube"] = 0
    return write_reports(complete_patients(p, seed=seed), seed=seed)


def measure(gen, table: pd.DataFrame, clf, clip, train_f, held_f, seed: int = 0, guidance=None) -> dict:
    from medsynth_explore.metrics import clip_score, copy_rate, fid, prdc, psnr

    conds = {
        "age": table["age"].to_numpy(),
        "sex": table["sex"].tolist(),
        "findings": [[] if f == "none" else [f] for f in table["finding"]],
    }
    gen.sample(8, seed=seed + 99)  # warm-up
    t0 = time.perf_counter()
    out = gen.sample(len(table), conditions=conds, seed=seed, guidance=guidance)
    seconds = time.perf_counter() - t0
    pred = clf.predict(out.images)
    first = out.metadata.iloc[0]
    res = {
        "generator": gen.name,
        "guidance": None if pd.isna(first["guidance"]) else float(first["guidance"]),
        "steps": None if pd.isna(first["steps"]) else int(first["steps"]),
        "condition_guidance": first.get("condition_guidance", ""),
        "images_per_s": len(table) / seconds,
    }
    for f in FINDINGS:
        y = (table["finding"] == f).to_numpy()
        res[f"auroc_{f}"] = roc_auc_score(y, pred[f"p_{f}"])
    res["sex_accuracy"] = float(((pred["p_female"] > 0.5) == (table["sex"] == "F")).mean())
    res["age_mae"] = float(np.abs(pred["age"] - table["age"]).mean())
    if clip is not None:
        texts = reports_for(table, seed)
        img = clip.encode_image(out.images)
        own = clip_score(img, clip.encode_text(texts, truncate=True))
        order = np.random.default_rng(seed).permutation(len(texts))
        # mismatched: a report of another cell (different finding or sex)
        other = [texts[j] for j in order]
        mis = clip_score(img, clip.encode_text(other, truncate=True))
        differ = (table["finding"].to_numpy()[order] != table["finding"].to_numpy()) | (
            table["sex"].to_numpy()[order] != table["sex"].to_numpy()
        )
        res["clipscore_matched"] = float(own[differ].mean())
        res["clipscore_mismatched"] = float(mis[differ].mean())
        res["copy_rate"] = copy_rate(train_f, img, held_f, q=0.01)["copy_rate"]
        # realism and diversity against held-out real images (domain CLIP features), to weigh guidance scales
        res["fid_vs_heldout"] = fid(held_f, img)
        pr = prdc(held_f, img, k=5)
        res["precision"], res["coverage"] = pr["precision"], pr["coverage"]
    if "inpaint" in gen.capabilities:
        from medsynth_explore.phantom import simulate

        base = simulate(32, seed=777).query("nodule == 0")
        mask = np.zeros((64, 64), np.float32)
        yy, xx = np.mgrid[:64, :64]
        mask[(yy - 26) ** 2 + (xx - 20) ** 2 <= 36] = 1  # a disc in the image-left (patient right) upper lung
        after = gen.inpaint(base, mask, conditions={"findings": ["nodule"]}, seed=seed, guidance=guidance)
        res["inpaint_psnr_outside_db"] = float(
            np.mean([psnr(a[0], b[0], mask=mask.astype(bool)) for a, b in zip(base.images, after.images)])
        )
        res["inpaint_delta_p_nodule"] = float(
            (clf.predict(after.images)["p_nodule"] - clf.predict(base.images)["p_nodule"]).mean()
        )
    return res


class TrainingSets:
    """Rebuild each generator's training set from its card, for the memorization measure.

    The shipped VAE and GAN were trained on the train split (70 %, split seed 0)
    of ``simulate(8000, seed=0)``; the diffusion model on ``simulate(6000,
    seed=1)`` with findings enriched to 25-30 %, the population its card records.
    The rebuilt set's content hash is compared with the card's: ``exact`` when
    they match, ``approximate`` when only the simulator version differs (same
    patients, some findings drawn differently). Held out: the test split of
    ``simulate(8000, seed=0)``, which no shipped model saw.
    """

    def __init__(self, clip) -> None:
        from medsynth_explore.phantom import simulate

        self.clip = clip
        parts = simulate(8000, seed=0).split((0.7, 0.15, 0.15), seed=0)
        self.held_f = clip.encode_image(parts["test"].images)
        self.cache = {("split", 0): (parts["train"], None)}

    def features(self, card: dict):
        from medsynth_explore.phantom import Population, simulate

        td = card.get("training_data") or {}
        if td.get("split") == "train" or card.get("family") == "physics":
            key = ("split", 0)
        else:  # the card records the simulated population (older cards: the enriched one of the training script)
            pop = td.get("population") or {
                "prevalence": {"cardiomegaly": 0.3, "nodule": 0.3, "effusion": 0.3, "pneumothorax": 0.25}
            }
            key = ("population", int(td.get("seed", 1)), int(td.get("size", 6000)), json.dumps(pop, sort_keys=True))
        if key not in self.cache:
            pop = Population.from_dict(json.loads(key[3]))
            self.cache[key] = (simulate(key[2], seed=key[1], population=pop), None)
        data, feats = self.cache[key]
        if feats is None:
            feats = self.clip.encode_image(data.images)
            self.cache[key] = (data, feats)
        if card.get("family") == "physics":
            how = "physics (no training set): the VAE/GAN one"
        elif td.get("content_hash") == data.content_hash:
            how = "exact"
        else:
            how = f"approximate (card: PhantomCXR {td.get('version')}, rebuilt: {data.provenance.get('version')})"
        return feats, self.held_f, how


def write_card(name: str, row: dict, per_cell: int) -> None:
    """Store a generator's measured row in its own checkpoint card (weights untouched)."""
    from pathlib import Path

    from medsynth_explore.checkpoint import load_checkpoint, save_checkpoint
    from medsynth_explore.checkpoint.card import machine_description
    from medsynth_explore.generators.registry import BUILTIN_GENERATORS, builtin_path

    path = builtin_path(name) if name in BUILTIN_GENERATORS else Path(name)
    if path is None or path.suffix != ".safetensors" or not path.is_file():
        return  # the physics simulator has no file
    ck = load_checkpoint(path)
    card = {k: v for k, v in ck.card.items() if k not in ("tensor_shapes", "tensor_dtypes", "weights_digest")}
    card["metrics"] = dict(card.get("metrics") or {})
    card["metrics"]["fidelity_benchmark"] = {
        "protocol": f"benchmarks/bench_fidelity.py: {per_cell} images per cell (no finding or one of four findings x F/M, "
        "ages 20-85) at default settings, judged by the shipped reference classifier; CLIPScore, copy rate, "
        "FID/precision/coverage vs held-out real images with domain-CLIP features",
        "machine": machine_description(),
        "date": time.strftime("%Y-%m-%d"),
        **{k: (str(v) if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items() if k != "generator"},
    }
    save_checkpoint(path, ck.tensors, card)
    print(f"wrote the measured row into the card of {path}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-cell", type=int, default=64)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--generators", help="comma-separated names or checkpoint paths (default: every installed one)")
    ap.add_argument(
        "--guidance",
        help="comma-separated classifier-free guidance scales to compare, for models that "
        "take one (default: each model's own default)",
    )
    ap.add_argument(
        "--age-guidance",
        help="comma-separated extra guidance scales for the age condition alone, for models "
        "with condition_guidance (default: the model's own)",
    )
    ap.add_argument(
        "--write-cards",
        action="store_true",
        help="store each learned model's row in its checkpoint card (metrics.fidelity_benchmark); only at default settings",
    )
    a = ap.parse_args()
    import medsynth_explore as mse
    from medsynth_explore.features.domain_clip import load_domain_clip
    from medsynth_explore.features.reference_classifier import ReferenceClassifier

    clf = ReferenceClassifier()
    clip = load_domain_clip()
    train_sets = TrainingSets(clip)
    table = cells(a.per_cell)
    names = a.generators.split(",") if a.generators else [r.name for r in mse.list_generators().itertuples() if r.available]
    names = ["phantomcxr-physics"] + [n for n in names if n != "phantomcxr-physics"]  # the peer first
    rows = []
    scales = [float(g) for g in a.guidance.split(",")] if a.guidance else [None]
    age_scales = [float(g) for g in a.age_guidance.split(",")] if a.age_guidance else [None]
    if a.write_cards and (a.guidance or a.age_guidance):
        raise SystemExit("--write-cards records default settings only; leave out --guidance and --age-guidance.")
    for name in names:
        gen = mse.load_generator(name)
        settings = [
            (g, ga)
            for g in (scales if "guidance" in gen.capabilities else [None])
            for ga in (age_scales if hasattr(gen, "condition_guidance") else [None])
        ]
        for g, ga in settings:
            if ga is not None:
                gen.condition_guidance = {**gen.condition_guidance, "age": ga}
            train_f, held_f, how = train_sets.features(gen.card)
            rows.append(measure(gen, table, clf, clip, train_f, held_f, guidance=g))
            rows[-1]["training_set"] = how
            label = ", ".join(x for x in (g is not None and f"guidance {g:g}", ga is not None and f"age guidance {ga:g}") if x)
            rows[-1]["generator"] = f"{name} ({label})" if label else name
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
    if a.write_cards:
        for name, row in zip(names, rows):
            write_card(name, row, a.per_cell)
    df = pd.DataFrame(rows).set_index("generator")
    df["speed_vs_physics"] = df["images_per_s"] / df.loc["phantomcxr-physics", "images_per_s"]
    print(f"\n{len(table)} images per generator ({a.per_cell} per cell)")
    t = df.T
    if a.markdown:
        print("| measure | " + " | ".join(t.columns) + " |")
        print("|---" * (len(t.columns) + 1) + "|")
        for k, row in t.iterrows():
            print(
                f"| {k} | "
                + " | ".join("–" if pd.isna(v) else f"{v:.3g}" if isinstance(v, float) else str(v) for v in row)
                + " |"
            )
    else:
        print(t.to_string(float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
