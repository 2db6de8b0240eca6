"""The reference classifier: training round trip, and the shipped one sees what the simulator drew."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medsynth_explore import CheckpointError, DataError
from medsynth_explore.features.reference_classifier import (
    CLASSIFIER_ASSET, TARGETS, ReferenceClassifier, train_reference_classifier)
from medsynth_explore.phantom import FINDINGS, Population, simulate


def test_train_save_load_round_trip(tmp_path):
    data = simulate(64, seed=1, size=32)
    card = train_reference_classifier(data, tmp_path / "c.safetensors", epochs=1, width=4, image_size=32, batch_size=16)
    assert card["family"] == "classifier" and card["training_data"]["size"] == 64
    clf = ReferenceClassifier(tmp_path / "c.safetensors")
    a, b = clf.predict(data.images[:5]), clf.predict(data.images[:5])
    assert list(a.columns) == list(TARGETS) and a.equals(b)
    assert ((a.drop(columns="age") >= 0) & (a.drop(columns="age") <= 1)).all().all()
    assert a["age"].between(18, 90).all()
    with pytest.raises(DataError, match="metadata columns"):
        train_reference_classifier(data.subset(np.arange(10)).__class__(data.images[:10]), tmp_path / "x.safetensors")


def test_missing_or_wrong_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="medsynth train --model classifier"):
        ReferenceClassifier(tmp_path / "nope.safetensors")


@pytest.mark.skipif(not CLASSIFIER_ASSET.exists(), reason="shipped classifier not installed")
def test_shipped_classifier_sees_findings_sex_and_age():
    pop = Population(prevalence={f: 0.3 for f in FINDINGS})
    data = simulate(300, seed=4242, population=pop)
    pred = ReferenceClassifier().predict(data)
    meta = data.metadata
    for f in FINDINGS:
        assert roc_auc_score(meta[f], pred[f"p_{f}"]) > 0.9, f
    assert ((pred.p_female > 0.5) == (meta.sex == "F")).mean() > 0.95
    assert np.abs(pred.age - meta.age).mean() < 10
