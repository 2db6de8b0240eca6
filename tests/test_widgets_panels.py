"""Fairness, Trilemma, Privacy, Model card and Turing panels, driven as the browser would (no browser).

Each test builds a panel on a tiny session (a seeded toy generator, the pixel
encoder), sets widget values, clicks buttons, and checks the session and what
the panel shows. A synchronous job runner makes results ready after a click.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from medsynth_explore.checkpoint import new_card
from medsynth_explore.errors import CancelledError, DataError
from medsynth_explore.generators.conditions import phantomcxr_schema
from medsynth_explore.jobs import JobRunner
from medsynth_explore.session import Session

from doubles import Broken, Copier, Rings, toy_card, toy_reference

SIZE = 16
pytestmark = pytest.mark.filterwarnings("ignore:FID from .* samples")


def _card(name="rings", family="physics", **extra):
    return toy_card(name, family, size=SIZE, **extra)


def _reference(n=80, seed=0):
    return toy_reference(Rings(_card()), n, seed=seed, draw_seed=99 + seed, site=True)


@pytest.fixture
def session():
    return Session(reference=_reference(), generators=[Rings(_card())], encoder="pixels")


def sync():
    return JobRunner(synchronous=True)


# ---------------------------------------------------------------------------- fairness


def test_fairness_columns_offers_shared_low_cardinality_columns():
    from medsynth_explore.widgets.fairness import fairness_columns

    real = _reference().metadata
    assert fairness_columns(real) == ["age", "sex", "site", "effusion"]  # constant findings are no groups
    syn = real[["age", "sex", "effusion"]].assign(seed=1, prompt="x")
    assert fairness_columns(real, syn) == ["age", "sex", "effusion"]
    many = pd.DataFrame({"ward": [f"w{i}" for i in range(30)], "sex": ["F", "M"] * 15})
    assert fairness_columns(many) == ["sex"]
    assert fairness_columns(many, max_levels=40) == ["ward", "sex"]


def test_fairness_panel_bars_match_session_and_mark_the_worst_group(session):
    from medsynth_explore.widgets.fairness import FairnessPanel

    panel = FairnessPanel(session, runner=sync())
    assert [v for _, v in panel.by.options] == ["age", "sex", "site", "effusion"]  # reference's columns before samples
    session.generate(60, seed=3)
    assert [v for _, v in panel.by.options] == ["age", "sex", "effusion"]  # site: the generator does not record it
    assert panel.by.value == ("sex",)
    panel.metric.value = "coverage"
    panel.n_boot.value = 20
    panel.compute_button.click()
    assert panel.last_error is None, panel.last_error
    direct = session.fairness(by=["sex"], metric="coverage", n_boot=20)
    pd.testing.assert_frame_equal(panel.result, direct)  # same seed inside the session: same intervals
    bars = [d for d in panel.figure.data if d.type == "bar"]
    shown = {x: y for d in bars for x, y in zip(d.x, d.y)}
    assert shown == dict(zip(direct.group, direct.value))
    worst_trace = next(d for d in bars if d.name == "worst subgroup")
    assert list(worst_trace.x) == [direct.attrs["worst"]]
    assert worst_trace.marker.color != next(d for d in bars if d.name == "subgroup").marker.color
    ci = next(d for d in panel.figure.data if d.name == "95% bootstrap interval")
    lo = np.asarray(ci.y) - np.asarray(ci.error_y.array)
    hi = np.asarray(ci.y) + np.asarray(ci.error_y.array)
    np.testing.assert_allclose(lo, direct.ci_low)
    np.testing.assert_allclose(hi, direct.ci_high)
    assert list(ci.x) == direct.group.tolist()
    assert panel.figure.layout.annotations[0].text == f"worst: {direct.attrs['worst']}"
    assert f"ratio min/max {direct.attrs['ratio']:.3g}" in panel.summary.value
    assert f"difference {direct.attrs['difference']:.3g}" in panel.summary.value
    line = next(d for d in panel.figure.data if d.name == "all images")
    assert line.y[0] == pytest.approx(session.metrics(names=["coverage"])["coverage"])


def test_fairness_panel_intersections_and_lower_is_better(session):
    from medsynth_explore.widgets.fairness import FairnessPanel

    session.generate(80, seed=4)
    panel = FairnessPanel(session, runner=sync())
    panel.by.value = ("sex", "effusion")
    panel.metric.value = "fid"
    panel.n_boot.value = 10
    panel.min_group.value = 5
    panel.compute_button.click()
    assert panel.last_error is None, panel.last_error
    groups = set(panel.result.group)
    assert groups and all(" & " in g for g in groups)
    worst = panel.result.loc[panel.result.worst, "group"].item()
    assert panel.result.set_index("group").value.idxmax() == worst  # FID: the highest is the worst
    assert "lower is better" in panel.figure.layout.yaxis.title.text


def test_fairness_panel_errors_in_words(session):
    from medsynth_explore.widgets.fairness import FairnessPanel

    panel = FairnessPanel(session, runner=sync())
    panel.compute_button.click()  # no samples yet: must not raise
    assert "no synthetic images" in panel.last_error and "msx-error" in panel.error.value
    session.generate(20, seed=5)
    panel.by.value = ()
    panel.compute_button.click()
    assert "choose at least one column" in panel.last_error
    panel.by.value = ("age",)
    panel.min_group.value = 100
    panel.compute_button.click()  # raised inside the background job
    assert "no subgroup" in panel.last_error and panel.result is None


# ---------------------------------------------------------------------------- trilemma


def test_trilemma_panel_measures_every_generator(session):
    from medsynth_explore.widgets.trilemma import TrilemmaPanel

    session.add_generator(Rings(_card("rings-b", family="vae")))
    panel = TrilemmaPanel(session, runner=sync())
    panel.n.value, panel.seed.value = 32, 7
    panel.run_button.click()
    assert panel.last_error is None, panel.last_error
    t = panel.result
    assert t.generator.tolist() == ["rings", "rings-b"] and (t.n == 32).all()
    assert (t.images_per_s > 0).all() and np.isfinite(t.fid).all()
    # same generator class, same seed: same images, so the quality numbers agree; speed is measured separately
    assert t.fid.iloc[0] == pytest.approx(t.fid.iloc[1]) and t.coverage.iloc[0] == pytest.approx(t.coverage.iloc[1])
    assert [d.name for d in panel.figure.data] == ["rings", "rings-b"]
    assert panel.figure.layout.xaxis.type == "log"
    assert [d.y[0] for d in panel.figure.data] == pytest.approx(t.fid.tolist())
    assert [d.x[0] for d in panel.figure.data] == pytest.approx(t.images_per_s.tolist())
    panel.y_axis.value = "coverage"  # redraws from the stored result, no new measurement
    assert [d.y[0] for d in panel.figure.data] == pytest.approx(t.coverage.tolist())
    assert "Coverage" in panel.figure.layout.yaxis.title.text
    assert "rings-b" in panel.table.value and "Speed (images/s)" in panel.table.value
    assert "images per generator" in panel.note.value


def test_trilemma_table_bolds_the_best_of_each_column():
    from medsynth_explore.widgets.trilemma import trilemma_table_html

    t = pd.DataFrame(
        {
            "generator": ["slow", "fast"],
            "family": ["diffusion", "gan"],
            "images_per_s": [2.0, 500.0],
            "fid": [1.5, 9.0],
            "precision": [0.9, 0.8],
            "recall": [0.7, 0.1],
            "coverage": [0.8, 0.3],
            "n": 64,
        }
    )
    html = trilemma_table_html(t)
    rows = html.split("<tr>")[2:]
    assert "<b>1.5</b>" in rows[0] and "<b>0.9</b>" in rows[0] and "<b>0.7</b>" in rows[0] and "<b>0.8</b>" in rows[0]
    assert "<b>500</b>" in rows[1] and rows[1].count("<b>") == 1
    assert "<b>" not in trilemma_table_html(t.iloc[:1])  # one generator: nothing to compare


def test_trilemma_panel_error_from_a_generator_shows_in_the_panel(session):
    from medsynth_explore.widgets.trilemma import TrilemmaPanel

    session.add_generator(Broken(_card("broken")))
    panel = TrilemmaPanel(session, runner=sync())
    panel.n.value = 16
    panel.run_button.click()  # must not raise
    assert "broken generator" in panel.last_error and "msx-error" in panel.error.value
    assert panel.result is None and len(panel.figure.data) == 0
    assert panel.progress.layout.visibility == "hidden"


# ---------------------------------------------------------------------------- privacy


def test_privacy_panel_histograms_pairs_and_copy_rate(session):
    from medsynth_explore.widgets.privacy import PrivacyPanel

    session.generate(40, seed=6)
    panel = PrivacyPanel(session, runner=sync())
    panel.quantile.value = 0.05
    panel.compute_button.click()
    assert panel.last_error is None, panel.last_error
    direct = session.privacy(quantile=0.05)
    hold, syn = panel.figure.data[0], panel.figure.data[1]
    np.testing.assert_allclose(hold.x, direct["holdout_to_train"])
    np.testing.assert_allclose(syn.x, direct["synthetic_to_train"])
    assert hold.xbins.size == syn.xbins.size and hold.histnorm == "probability"
    assert panel.figure.layout.shapes[0].x0 == pytest.approx(direct["threshold"])
    assert f"{100 * direct['copy_rate']:.1f}%" in panel.summary.value and "Fisher p" in panel.summary.value
    assert "No training set was given" in panel.source.value
    assert len(panel.pairs.children) == 6
    first = panel.pairs.children[0]
    j, i, d = direct["closest"][0]
    assert f"distance <b>{d:.3g}</b>" in first.children[1].value and f"synthetic #{j}" in first.children[1].value
    from medsynth_explore.widgets.common import png_bytes

    assert first.children[0].children[0].value == png_bytes(session.synthetic["rings"].images[j])
    assert first.children[0].children[1].value == png_bytes(direct["train"].images[i])
    panel.n_pairs.value = 2
    assert len(panel.pairs.children) == 2


def test_privacy_panel_flags_a_memorising_generator():
    from medsynth_explore.widgets.privacy import PrivacyPanel, privacy_summary

    ref = _reference(120)
    parts = ref.split({"train": 0.5, "holdout": 0.5}, seed=0)
    gen = Copier(_card("copier"), parts["train"].images)
    s = Session(reference=ref, generators=[gen], encoder="pixels", train=parts["train"], holdout=parts["holdout"])
    s.generate(30, seed=0)
    panel = PrivacyPanel(s, runner=sync())
    panel.compute_button.click()
    assert panel.last_error is None, panel.last_error
    summary = privacy_summary(panel.result)
    assert summary["copy_rate"] == 1.0 and summary["p_value"] < 1e-6 and summary["flag"]
    assert "100.0%" in panel.summary.value and "inspect the closest pairs" in panel.summary.value
    assert "training images given to the session" in panel.source.value
    assert all(d == pytest.approx(0, abs=1e-5) for _, _, d in panel.result["closest"])
    assert "below threshold" in panel.pairs.children[0].children[1].value


def test_privacy_summary_expected_rate_and_errors():
    from medsynth_explore.widgets.privacy import privacy_summary

    hold = np.linspace(1, 2, 1001)
    res = {
        "synthetic_to_train": np.linspace(1, 2, 500),
        "holdout_to_train": hold,
        "quantile": 0.05,
        "threshold": float(np.quantile(hold, 0.05)),
    }
    s = privacy_summary(res)
    assert s["n_close"] == 25 and s["holdout_close"] == 50
    assert s["ratio"] == pytest.approx(1.0, rel=0.02) and s["p_value"] > 0.3 and not s["flag"]  # same distribution
    assert s["n"] == 500 and s["median_holdout"] == pytest.approx(1.5) and not s["few_holdout"]
    near = privacy_summary(dict(res, synthetic_to_train=np.r_[np.full(50, 0.5), np.linspace(1, 2, 450)]))
    assert near["n_close"] == 50 + 23 and near["ratio"] > 2 and near["p_value"] < 1e-6 and near["flag"]
    # a 1% threshold from 100 held-out images rests on one image: a few close samples are no evidence
    few = {
        "synthetic_to_train": np.r_[np.full(3, 0.1), np.linspace(1, 2, 117)],
        "holdout_to_train": np.linspace(0.5, 2, 100),
        "quantile": 0.01,
        "threshold": 0.51,
    }
    f = privacy_summary(few)
    assert f["n_close"] == 3 and f["holdout_close"] == 1 and f["few_holdout"] and not f["flag"]
    assert "rests on only 1 held-out image" in f["text"]
    with pytest.raises(DataError, match="no synthetic distances"):
        privacy_summary(dict(res, synthetic_to_train=np.array([])))


def test_privacy_panel_without_samples_says_so(session):
    from medsynth_explore.widgets.privacy import PrivacyPanel

    panel = PrivacyPanel(session, runner=sync())
    panel.compute_button.click()
    assert "no synthetic images of rings yet" in panel.last_error and panel.result is None


# ---------------------------------------------------------------------------- model card


def _full_card(name="rings-vae"):
    schema = phantomcxr_schema()
    return new_card(
        name,
        "vae",
        {"image_size": SIZE, "channels": 1, "latent_dim": 8},
        description="A toy conditional model for tests.",
        conditions=schema.to_dict(),
        capabilities=["conditions", "inpaint"],
        training_data={
            "dataset": "PhantomCXR",
            "version": "1.0.0",
            "size": 5600,
            "seed": 3,
            "content_hash": "c0ffee" * 4,
            "condition_distribution": _card()["training_data"]["condition_distribution"],
        },
        training={
            "epochs": 12,
            "lr": 0.002,
            "time_seconds": 723.4,
            "machine": "Linux x86_64, 2 CPU(s)",
            "history": [{"epoch": 11, "loss": 0.25}, {"epoch": 12, "loss": 0.24}],
        },
        sampler_defaults={"sampler": "vae-prior", "temperature": 1.0},
        intended_use="Teaching <only>.",
        limitations=["Blurry samples.", "Never saw a real radiograph."],
        metrics={"fid_pixels": 12.3456, "coverage": 0.71},
        license="BSD-3-Clause",
    )


def test_card_html_renders_every_section():
    from medsynth_explore.widgets.card import card_html

    out = card_html(_full_card(), sha256="ab12" * 16, path="/models/rings-vae.safetensors")
    for text in (
        "<h3>rings-vae</h3>",
        ">vae</span>",
        "<td>SHA-256</td><td><code>" + "ab12" * 16,
        "/models/rings-vae.safetensors",
        "BSD-3-Clause",
        "1 × 16 × 16 (C × H × W)",
        "Teaching &lt;only&gt;.",
        "<li>Blurry samples.</li>",
        "<li>Never saw a real radiograph.</li>",
        "18 to 90",
        "F, M",
        "any of cardiomegaly, nodule, effusion, pneumothorax",
        "<td>training time</td><td>12 min 3 s</td>",
        "Linux x86_64, 2 CPU(s)",
        "<td>dataset</td><td>PhantomCXR</td>",
        "<td>size</td><td>5600</td>",
        "<td>sampler</td><td>vae-prior</td>",
        "<td>fid_pixels</td><td>12.35</td>",
        "<td>coverage</td><td>0.71</td>",
        "<td>latent_dim</td><td>8</td>",
    ):
        assert text in out, text
    assert "findings_by" not in out and "training distribution of the conditions" in out  # summarised, not dumped
    bare = card_html({"name": "x<y>", "family": "gan", "architecture": {}})
    assert "<h3>x&lt;y&gt;</h3>" in bare and "Unconditional" in bare and "no metrics recorded" in bare


def test_card_html_of_the_physics_simulator():
    from medsynth_explore.generators.physics import PhysicsGenerator
    from medsynth_explore.widgets.card import card_html

    gen = PhysicsGenerator(size=32)
    out = card_html(gen.card, sha256=gen.sha256)
    assert "phantomcxr-physics" in out and gen.sha256 in out and "Reference data and ground truth" in out
    assert "<td>identity</td>" in out and "SHA-256" not in out  # no file, so no file hash to claim
    assert "1 × 32 × 32" in out and "<h4>Known limitations</h4><ul><li>" in out


def test_card_panel_follows_the_active_generator(session):
    from medsynth_explore.widgets.card import CardPanel

    other = _full_card()
    session.add_generator(Rings(other, sha256="f00d" * 16))
    panel = CardPanel(session, runner=sync())
    assert panel.last_error is None and "<h3>rings</h3>" in panel.body.value
    assert panel.generator.options == ("rings", "rings-vae") and panel.activate_button.disabled
    session.set_active("rings-vae")  # e.g. from another panel
    assert panel.generator.value == "rings-vae" and "<h3>rings-vae</h3>" in panel.body.value and "f00d" * 16 in panel.body.value
    panel.generator.value = "rings"  # view only
    assert session.active == "rings-vae" and "<h3>rings</h3>" in panel.body.value and "Viewing rings" in panel.body.value
    panel.activate_button.click()
    assert session.active == "rings" and "Viewing" not in panel.body.value


def test_card_panel_without_generators_says_what_to_do():
    from medsynth_explore.widgets.card import CardPanel

    s = Session(reference=_reference(20), generators=[], encoder="pixels")
    panel = CardPanel(s, runner=sync())  # must not raise
    assert "no generator is loaded" in panel.last_error and "msx-error" in panel.error.value
    s.add_generator(Rings(_card()))
    assert panel.last_error is None and "<h3>rings</h3>" in panel.body.value


# ---------------------------------------------------------------------------- Turing test


def test_turing_panel_runs_a_study_and_saves_answers(session, tmp_path):
    from medsynth_explore.turing import load_answers
    from medsynth_explore.widgets.common import png_bytes
    from medsynth_explore.widgets.turing import TuringPanel

    panel = TuringPanel(session, runner=sync())
    assert panel.real_button.disabled
    panel.reader.value, panel.out_dir.value = "ana", str(tmp_path / "answers")
    panel.n.value, panel.seed.value = 6, 3
    panel.ask_confidence.value = True
    assert panel.confidence.layout.display == ""
    panel.start_button.click()
    assert panel.last_error is None, panel.last_error
    assert len(session.synthetic["rings"]) == 6  # drawn in the background because there were none
    study = panel.study
    assert len(study) == 12 and not panel.real_button.disabled
    assert panel.position.value == "<b>Image 1 of 12</b>"
    assert panel.image.value == png_bytes(study.current_image(), scale=panel.display_px // SIZE)
    panel.confidence.value = 0.9
    for k in range(12):  # a perfect reader (the test knows the truth)
        truth = study.items.truth.iloc[k]
        (panel.synthetic_button if truth == "synthetic" else panel.real_button).click()
        if k == 0:
            assert panel.position.value == "<b>Image 2 of 12</b>"
    assert panel.last_error is None, panel.last_error
    assert study.finished and panel.real_button.disabled and panel.synthetic_button.disabled
    saved = load_answers(tmp_path / "answers" / "ana.jsonl")
    assert len(saved) == 12 and (saved.truth == saved.answer).all() and (saved.confidence == 0.9).all()
    overall = panel.scores[panel.scores.group == "overall"].set_index("measure")
    assert overall.loc["accuracy", "value"] == 1.0 and overall.loc["accuracy", "n"] == 12
    assert "better than chance" in panel.results.value and "sex=F" in panel.results.value
    assert "ana.jsonl" in panel.results.value


def test_turing_panel_resumes_a_reader_and_uses_existing_samples(session, tmp_path):
    from medsynth_explore.widgets.turing import TuringPanel

    session.generate(8, seed=1)
    first = TuringPanel(session, runner=sync())
    first.reader.value, first.out_dir.value, first.n.value = "ben", str(tmp_path), 4
    first.start_button.click()
    assert len(session.synthetic["rings"]) == 8  # enough samples: nothing drawn
    for _ in range(3):
        first.real_button.click()
    again = TuringPanel(session, runner=sync())
    again.reader.value, again.out_dir.value, again.n.value = "ben", str(tmp_path), 4
    again.start_button.click()
    assert again.study.position == 3 and "resuming after 3" in again.status.value
    assert again.position.value == "<b>Image 4 of 8</b>"
    assert again.study.items.equals(first.study.items)  # same seed: same sequence
    for _ in range(5):
        again.synthetic_button.click()
    assert again.study.finished and again.scores is not None
    acc = again.scores.set_index(["group", "measure"]).loc[("overall", "accuracy")]
    truth = again.study.items.truth.tolist()
    expected = (sum(t == "real" for t in truth[:3]) + sum(t == "synthetic" for t in truth[3:])) / 8
    assert acc["value"] == pytest.approx(expected)


def test_turing_report_bins_age_and_pivots():
    from medsynth_explore.widgets.turing import subgroup_table, turing_report

    a = pd.DataFrame(
        {
            "truth": ["real", "synthetic"] * 6,
            "answer": ["real", "synthetic", "synthetic", "real"] * 3,
            "age": [25, 25, 45, 45, 65, 65, 80, 80, 25, 45, 65, 80],
            "sex": ["F"] * 12,
            "effusion": [0, 1] * 6,
        }
    )
    r = turing_report(a)
    assert "sex=F" not in set(r.group)  # one level: no subgroup
    assert {"age_group=18-39", "age_group=40-59", "age_group=60-79", "age_group=80+", "effusion=0"} <= set(r.group)
    table = subgroup_table(r)
    assert table.columns.tolist() == ["group", "accuracy", "sensitivity", "specificity"]
    assert table.group.iloc[0] == "overall" and table.accuracy.iloc[0].startswith("0.50 [")
    eff0 = table.set_index("group").loc["effusion=0"]
    assert eff0.sensitivity == "n=0"  # every effusion=0 row is real


def test_turing_panel_errors_in_words(session, tmp_path):
    from medsynth_explore.widgets.turing import TuringPanel

    panel = TuringPanel(session, runner=sync())
    panel.real_button.disabled = False  # as if the browser sent a click anyway
    panel.real_button.click()
    assert "press Start first" in panel.last_error
    panel.reader.value = "  "
    panel.start_button.click()
    assert "enter a reader name" in panel.last_error and len(session.synthetic["rings"]) == 0
    panel.reader.value, panel.out_dir.value, panel.n.value = "a/b", str(tmp_path), 3
    panel.start_button.click()  # rejected by TuringStudy inside the job
    assert "path separators" in panel.last_error and panel.study is None
    assert panel.real_button.disabled


# ---------------------------------------------------------------------------- background runner


class Gated(Rings):
    """Rings that wait for a signal before drawing (to cancel a job while it runs)."""

    def __init__(self, card, gate):
        super().__init__(card)
        self.gate = gate

    def _generate(self, cond_table, rng_seed, steps, guidance, prompts):
        assert self.gate.wait(30), "the test never opened the gate"
        return super()._generate(cond_table, rng_seed, steps, guidance, prompts)


def test_panels_work_on_the_background_thread_and_can_be_cancelled(session):
    from medsynth_explore.widgets.fairness import FairnessPanel
    from medsynth_explore.widgets.trilemma import TrilemmaPanel

    runner = JobRunner()  # the real, threaded runner the app uses
    try:
        session.generate(40, seed=8)
        fair = FairnessPanel(session, runner=runner)
        fair.n_boot.value = 10
        job = fair.compute()
        job.result(timeout=60)
        assert fair.last_error is None and fair.result is not None and len(fair.figure.data) >= 2
        gate = threading.Event()
        session.add_generator(Gated(_card("gated"), gate))
        tri = TrilemmaPanel(session, runner=runner)
        tri.n.value = 16
        job = tri.run()
        tri.cancel_button.click()  # while the gated generator is still sampling
        gate.set()
        with pytest.raises(CancelledError):
            job.result(timeout=60)
        assert tri.result is None and "cancelled" in tri.status.value and tri.last_error is None
    finally:
        runner.shutdown()


def test_card_html_shows_a_benchmark_row_as_a_table():
    from medsynth_explore.widgets.card import card_html

    row = {"auroc_nodule": 0.99812, "age_mae": 15.58, "inpaint_psnr_outside_db": "inf", "training_set": "exact <hash>"}
    out = card_html(
        {"name": "m", "family": "vae", "architecture": {}, "metrics": {"fidelity_benchmark": row, "history": [[1, 2.0]] * 80}}
    )
    assert "auroc nodule</td><td>0.9981" in out and "age mae</td><td>15.58" in out
    assert "exact &lt;hash&gt;" in out  # escaped
    assert "characters (show)" in out  # a long non-flat value is still folded
