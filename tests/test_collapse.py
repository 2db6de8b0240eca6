"""Model collapse across generations: what each generation is trained on, that its numbers are what an independent
computation gives, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from medsynth_explore.collapse import model_collapse
from medsynth_explore.data import ImageSet
from medsynth_explore.errors import DataError
from medsynth_explore.features import PixelEncoder
from medsynth_explore.generators import load_generator
from medsynth_explore.generators.vae import train_vae
from medsynth_explore.phantom import simulate

GENERATIONS = 2


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    seen = []

    def recording_trainer(data, out, **kwargs):
        seen.append(data)
        return train_vae(data, out, batch_size=16, width=4, latent_dim=4, weights_dtype="float32", **kwargs)

    train, held = simulate(48, seed=61), simulate(40, seed=62)
    folder = tmp_path_factory.mktemp("collapse")
    enc = PixelEncoder(size=4)  # 16 features: fewer than the 40 samples, so FID is well defined
    result = model_collapse(
        train, held, generations=GENERATIONS, epochs=1, trainer=recording_trainer, encoder=enc, judge="reference",
        n_eval=40, seed=3, out_dir=folder,
    )  # fmt: skip
    return result, seen, train, held, enc


def test_each_generation_is_trained_on_what_its_chain_says(run):
    result, seen, train, _, _ = run
    t = result.table
    assert list(zip(t["chain"], t["generation"])) == [("self-consuming", g) for g in range(GENERATIONS + 1)] + [
        ("fresh real", g) for g in range(1, GENERATIONS + 1)
    ]
    assert len(seen) == len(t) and seen[0] is train
    cond = ["age", "sex", "cardiomegaly", "nodule", "effusion", "pneumothorax"]
    for g in range(1, GENERATIONS + 1):
        samples = seen[g]  # self-consuming: the previous generation's samples, with the real training set's labels
        assert samples.provenance.get("source") != "phantomcxr" and len(samples) == len(train)
        assert (samples.metadata[cond].to_numpy() == train.metadata[cond].to_numpy()).all()
        fresh = seen[GENERATIONS + g]  # fresh real: newly simulated patients, as many, none of them the training set
        assert fresh.provenance["source"] == "phantomcxr" and len(fresh) == len(train)
        assert fresh.content_hash != train.content_hash
    hashes = {s.content_hash for s in seen}
    assert len(hashes) == len(seen)
    assert t["trained_on"].tolist()[:2] == ["real", "samples of generation 0"]
    assert result.settings["n_train"] == 48 and result.settings["generations"] == GENERATIONS
    assert result.pivot("fid").shape == (GENERATIONS + 1, 2)


def _fid(a, b):
    mu = a.mean(0) - b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(c1 @ c2).real
    return float(mu @ mu + np.trace(c1 + c2 - 2 * covmean))


def _coverage_recall(real, fake, k):
    d_rr = np.linalg.norm(real[:, None] - real[None], axis=2)
    d_ff = np.linalg.norm(fake[:, None] - fake[None], axis=2)
    d_rf = np.linalg.norm(real[:, None] - fake[None], axis=2)
    r_real = np.sort(d_rr, 1)[:, k]
    r_fake = np.sort(d_ff, 1)[:, k]
    coverage = float((d_rf.min(1) < r_real).mean())
    recall = float((d_rf < r_fake[None, :]).any(1).mean())
    return coverage, recall


def test_generation_numbers_equal_an_independent_computation(run):
    """Reload a generation's checkpoint, draw its samples the same way, and recompute FID, coverage and recall."""
    from sklearn.metrics import roc_auc_score

    from medsynth_explore.features.reference_classifier import ReferenceClassifier

    result, _, _, held, enc = run
    row = result.table.iloc[1]
    gen = load_generator(result.checkpoints[("self-consuming", 1)])
    cond = held.metadata[["age", "sex", "cardiomegaly", "nodule", "effusion", "pneumothorax"]].reset_index(drop=True)
    out = gen.sample(len(cond), conditions=cond, seed=3 + 500)
    real, fake = enc.encode(held.images).astype(float), enc.encode(out.images).astype(float)
    assert row["fid"] == pytest.approx(_fid(real, fake), rel=1e-3, abs=1e-6)
    coverage, recall = _coverage_recall(real, fake, k=5)
    assert row["coverage"] == pytest.approx(coverage) and row["recall"] == pytest.approx(recall)
    p = ReferenceClassifier().predict(out.images)
    y = out.metadata["cardiomegaly"].to_numpy()
    if 0 < y.sum() < len(y):
        assert row["auroc_cardiomegaly"] == pytest.approx(roc_auc_score(y, p["p_cardiomegaly"]))
    assert row["pixel_std"] == pytest.approx(float(out.images.std(0).mean()), rel=1e-5)


def test_bad_input_is_refused():
    train, held = simulate(16, seed=1), simulate(6, seed=2)
    with pytest.raises(DataError, match="generations"):
        model_collapse(train, held, generations=0)
    with pytest.raises(DataError, match="at least 8"):
        model_collapse(train, held, generations=1, encoder=PixelEncoder(size=8), judge=None)
    no_labels = ImageSet(train.images, train.metadata.drop(columns=["age"]), train.provenance)
    with pytest.raises(DataError, match="condition columns"):
        model_collapse(no_labels, simulate(10, seed=3), generations=1, encoder=PixelEncoder(size=8), judge=None)
