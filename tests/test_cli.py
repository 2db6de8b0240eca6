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
    assert (
        main(["generate", "phantomcxr-physics", "--n", "40", "--out", str(syn), "--conditions", cond, "--shard-size", "20"]) == 0
    )
    fake = load_dataset(syn)
    assert len(fake) == 40 and (fake.metadata.sex == "F").all() and (fake.metadata.effusion == 1).all()
    assert main(["verify", str(syn)]) == 0
    first = sorted(syn.glob("images/*.png"))[0]
    first.write_bytes(first.read_bytes()[:-20])
    assert main(["verify", str(syn)]) == 1  # an altered file is reported

    out = tmp_path / "report.json"
    assert main(["simulate", "--n", "40", "--size", "64", "--seed", "4", "--out", str(tmp_path / "real64")]) == 0
    assert main(["generate", "phantomcxr-physics", "--n", "40", "--out", str(tmp_path / "syn64"), "--seed", "1"]) == 0
    assert (
        main(
            [
                "evaluate",
                "--real",
                str(tmp_path / "real64"),
                "--synthetic",
                str(tmp_path / "syn64"),
                "--encoder",
                "pixels",
                "--metrics",
                "fid,precision,recall,coverage",
                "--by",
                "sex",
                "--out",
                str(out),
            ]
        )
        == 0
    )
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
    assert (
        main(
            [
                "train",
                "--model",
                "vae",
                "--data",
                "phantomcxr",
                "--n",
                "8",
                "--out",
                str(out),
                "--lr",
                "0.1",
                "--lesion-weights",
                "nodule=30",
            ]
        )
        == 2
    )
    assert "apply to --model diffusion only" in capsys.readouterr().err
    assert main(["train", "--model", "vae", "--data", "phantomcxr", "--n", "8", "--out", str(out), "--init-from", "x"]) == 2
    assert "--init-from applies to --model diffusion or gan only" in capsys.readouterr().err
    assert main(["train", "--model", "diffusion", "--data", "phantomcxr", "--n", "8", "--out", str(out), "--epochs", "2"]) == 2
    assert "--epochs does not apply to --model diffusion" in capsys.readouterr().err
    assert main(["train", "--model", "vae", "--data", "phantomcxr", "--n", "8", "--out", str(out), "--batch-size", "0"]) == 2
    assert "--batch-size must be a positive" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--model",
                "diffusion",
                "--data",
                "phantomcxr",
                "--n",
                "8",
                "--out",
                str(out),
                "--lesion-weights",
                "nodule:30",
            ]
        )
        == 2
    )
    assert "name=number" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--model",
                "diffusion",
                "--data",
                "phantomcxr",
                "--n",
                "8",
                "--out",
                str(out),
                "--init-from",
                "phantomcxr-vae",
            ]
        )
        == 2
    )
    assert "wants a diffusion checkpoint" in capsys.readouterr().err
    if not DEFAULT_DIFFUSION_PATH.is_file():
        pytest.skip("shipped diffusion checkpoint not present")
    assert (
        main(
            [
                "train",
                "--model",
                "diffusion",
                "--data",
                "phantomcxr",
                "--n",
                "16",
                "--out",
                str(out),
                "--init-from",
                "phantomcxr-diffusion",
                "--minutes",
                "0.02",
                "--lesion-weights",
                "nodule=30,effusion=8",
                "--batch-size",
                "8",
            ]
        )
        == 0
    )
    card = load_checkpoint(out).card
    assert card["training"]["batch_size"] == 8
    shipped = load_checkpoint(DEFAULT_DIFFUSION_PATH).card
    assert card["training"]["pixel_weights"]["max"] > 1
    assert card["training"]["total_steps"] == card["training"]["steps"] + shipped["training"]["total_steps"]


def test_training_progress_prints_a_line_every_interval(capsys):
    from medsynth_explore.cli import _TrainingProgress
    from medsynth_explore.generators._training import TrainingLoop

    now = [0.0]
    clock = lambda: now[0]  # noqa: E731
    at = {50: 5.0, 100: 20.0, 150: 36.0, 200: 50.0, 250: 70.0}  # seconds into the run at these steps

    def step():
        now[0] = at.get(loop.step + 1, now[0])
        return 0.05

    cb = _TrainingProgress("training diffusion", every_s=30, clock=clock)
    loop = TrainingLoop(250, callback=cb, log=cb.log, clock=clock)
    loop.run_steps(step, every=50, summary=lambda s, m: ([s, m["loss"]], f"loss {m['loss']:.4f}"))
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "training diffusion: step 50, loss 0.0500, 5 s",
        "training diffusion: step 150, loss 0.0500, 36 s",
        "training diffusion: step 250, loss 0.0500, 70 s",
    ]
    cb = _TrainingProgress("training clip", every_s=1e9, clock=clock)
    loop = TrainingLoop(4, callback=cb, log=cb.log, clock=clock)
    loop.run_epochs(2, lambda epoch: [0, 1], lambda batch: 1.0, lambda e, m: (m["loss"], f"loss {m['loss']:.4f}"))
    assert capsys.readouterr().err.count("epoch") == 2  # the first and the last epoch always print


def test_train_gan_continues_a_checkpoint_with_a_mismatch_weight(tmp_path, capsys):
    from medsynth_explore.checkpoint import load_checkpoint

    first, second = tmp_path / "run1.safetensors", tmp_path / "run2.safetensors"
    common = [
        "train",
        "--model",
        "gan",
        "--data",
        "phantomcxr",
        "--n",
        "24",
        "--split",
        "train",
        "--epochs",
        "1",
        "--batch-size",
        "8",
    ]
    assert main([*common, "--out", str(first)]) == 0
    run1 = load_checkpoint(first)
    assert "(weight 0.5)" in run1.card["training"]["loss"] and run1.card["training_data"]["split"] == "train"
    assert run1.sha256 in capsys.readouterr().out
    assert main([*common, "--out", str(second), "--init-from", str(first), "--mismatch-weight", "1.0", "--seed", "1"]) == 0
    tr = load_checkpoint(second).card["training"]
    assert tr["initialised_from"] == run1.sha256 and "(weight 1.0)" in tr["loss"] and tr["seed"] == 1
    assert tr["previous_runs"][0]["sha256"] == run1.sha256 and tr["previous_runs"][0]["steps"] == run1.card["training"]["steps"]
    assert main([*common, "--out", str(second), "--init-from", "phantomcxr-physics"]) == 2
    assert "wants a gan checkpoint" in capsys.readouterr().err
    assert (
        main(["train", "--model", "vae", "--data", "phantomcxr", "--n", "8", "--out", str(second), "--mismatch-weight", "1"]) == 2
    )
    assert "--mismatch-weight applies to --model gan only" in capsys.readouterr().err


def test_evaluate_of_streamed_folders_gives_torch_half_the_cores_and_puts_it_back(tmp_path, capsys, monkeypatch):
    import os

    import torch

    import medsynth_explore.evaluate as evaluate_module

    for name, seed in (("real", 1), ("syn", 2)):
        assert main(["simulate", "--n", "24", "--size", "32", "--seed", str(seed), "--out", str(tmp_path / name)]) == 0
    seen = []
    real_evaluate = evaluate_module.evaluate

    def spy(real, synthetic, **kw):
        seen.append((torch.get_num_threads(), real.file_backed))
        return real_evaluate(real, synthetic, **kw)

    monkeypatch.setattr(evaluate_module, "evaluate", spy)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    monkeypatch.setattr(os, "cpu_count", lambda: 2 * before + 2)  # half of it differs from torch's setting now
    args = ["evaluate", "--real", str(tmp_path / "real"), "--synthetic", str(tmp_path / "syn"), "--encoder", "pixels"]
    args += ["--metrics", "fid", "--out", str(tmp_path / "r.json")]

    monkeypatch.setenv("MEDSYNTH_MEMORY_LIMIT", "16KB")  # both folders stream from disk
    assert main(args) == 0
    assert f"streaming 48 images from disk: torch on {before + 1} thread(s)" in capsys.readouterr().out
    assert seen[-1] == (before + 1, True) and torch.get_num_threads() == before

    monkeypatch.setenv("OMP_NUM_THREADS", str(before))  # the user's own setting is kept
    assert main(args) == 0
    assert "streaming" not in capsys.readouterr().out and seen[-1] == (before, True)

    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("MEDSYNTH_MEMORY_LIMIT")  # in memory: nothing to share, nothing changed
    assert main(args) == 0
    assert "streaming" not in capsys.readouterr().out and seen[-1] == (before, False)
