"""The medsynth command line, end to end on small data."""

from __future__ import annotations

import json


from medsynth_explore import load_dataset
from medsynth_explore.cli import main


def test_simulate_generate_verify_evaluate(tmp_path, capsys):
    real = tmp_path / "real"
    assert main(["simulate", "--n", "40", "--size", "32", "--seed", "3", "--out", str(real)]) == 0
    ds = load_dataset(real)
    assert ds.shape == (40, 1, 32, 32) and ds.provenance["seed"] == 3
    assert main(["simulate", "--n", "5", "--out", str(real)]) == 2  # exists: refuses without --overwrite
    assert "overwrite" in capsys.readouterr().err

    syn = tmp_path / "syn"
    cond = json.dumps({"sex": "F", "findings": ["effusion"]})
    assert main(["generate", "phantomcxr-physics", "--n", "40", "--out", str(syn), "--conditions", cond, "--shard-size", "20"]) == 0
    fake = load_dataset(syn)
    assert len(fake) == 40 and (fake.metadata.sex == "F").all() and (fake.metadata.effusion == 1).all()
    assert main(["verify", str(syn)]) == 0
    first = sorted(syn.glob("images/*.png"))[0]
    first.write_bytes(first.read_bytes()[:-20])
    assert main(["verify", str(syn)]) == 1  # an altered file is reported

    out = tmp_path / "report.json"
    assert main(["simulate", "--n", "40", "--size", "64", "--seed", "4", "--out", str(tmp_path / "real64")]) == 0
    assert main(["generate", "phantomcxr-physics", "--n", "40", "--out", str(tmp_path / "syn64"), "--seed", "1"]) == 0
    assert main(["evaluate", "--real", str(tmp_path / "real64"), "--synthetic", str(tmp_path / "syn64"), "--encoder", "pixels",
                 "--metrics", "fid,precision,recall,coverage", "--by", "sex", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert out.with_suffix(".html").exists()
    text = json.dumps(report)
    assert "fid" in text and "sex=F" in text


def test_models_card_and_errors(capsys):
    assert main(["models"]) == 0
    assert "phantomcxr-physics" in capsys.readouterr().out
    assert main(["card", "phantomcxr-physics"]) == 0
    assert "physics" in capsys.readouterr().out
    assert main(["evaluate", "--real", "/no/such/folder", "--synthetic", "/no/either", "--out", "x.json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no such file" in err
    assert main(["generate", "phantomcxr-physics", "--n", "2", "--out", "/tmp/x", "--conditions", "{not json"]) == 2
    assert "must be JSON" in capsys.readouterr().err
    assert main([]) == 1


def test_train_diffusion_continues_a_checkpoint_with_lesion_weights(tmp_path, capsys):
    import pytest

    from medsynth_explore.checkpoint import load_checkpoint
    from medsynth_explore.generators.diffusion import DEFAULT_DIFFUSION_PATH

    out = tmp_path / "more.safetensors"
    assert main(["train", "--model", "vae", "--data", "phantomcxr", "--n", "8", "--out", str(out), "--init-from", "x"]) == 2
    assert "apply to --model diffusion only" in capsys.readouterr().err
    assert main(["train", "--model", "vae", "--data", "phantomcxr", "--n", "8", "--out", str(out), "--batch-size", "0"]) == 2
    assert "--batch-size must be a positive" in capsys.readouterr().err
    assert main(["train", "--model", "diffusion", "--data", "phantomcxr", "--n", "8", "--out", str(out),
                 "--lesion-weights", "nodule:30"]) == 2
    assert "name=number" in capsys.readouterr().err
    assert main(["train", "--model", "diffusion", "--data", "phantomcxr", "--n", "8", "--out", str(out),
                 "--init-from", "phantomcxr-vae"]) == 2
    assert "wants a diffusion checkpoint" in capsys.readouterr().err
    if not DEFAULT_DIFFUSION_PATH.is_file():
        pytest.skip("shipped diffusion checkpoint not present")
    assert main(["train", "--model", "diffusion", "--data", "phantomcxr", "--n", "16", "--out", str(out),
                 "--init-from", "phantomcxr-diffusion", "--minutes", "0.02", "--lesion-weights", "nodule=30,effusion=8",
                 "--batch-size", "8"]) == 0
    card = load_checkpoint(out).card
    assert card["training"]["batch_size"] == 8
    shipped = load_checkpoint(DEFAULT_DIFFUSION_PATH).card
    assert card["training"]["pixel_weights"]["max"] > 1
    assert card["training"]["total_steps"] == card["training"]["steps"] + shipped["training"]["total_steps"]


def test_dict_progress_prints_a_line_every_interval(capsys):
    from medsynth_explore.cli import _log_progress

    cb = _log_progress("training diffusion", every_s=30)
    for step, sec in ((50, 5.0), (100, 20.0), (150, 36.0), (200, 50.0), (250, 70.0)):
        assert cb({"step": step, "loss": 0.05, "seconds": sec}) is True
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["training diffusion: step 50, loss 0.0500, 5 s", "training diffusion: step 150, loss 0.0500, 36 s",
                     "training diffusion: step 250, loss 0.0500, 70 s"]
    cb = _log_progress("training clip", every_s=1e9)
    cb({"epoch": 1, "epochs": 2, "loss": 1.0, "seconds": 1.0})
    cb({"epoch": 2, "epochs": 2, "loss": 0.5, "seconds": 2.0})  # the last epoch always prints
    assert capsys.readouterr().err.count("epoch") == 2
