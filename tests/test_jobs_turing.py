"""Background jobs (supersede, cancel) and the visual Turing test."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from medsynth_explore import CancelledError, DataError
from medsynth_explore.data import ImageSet
from medsynth_explore.jobs import JobRunner
from medsynth_explore.turing import TuringStudy, load_answers, proportion_ci, score_answers


def _slow(started: threading.Event):
    def fn(job):
        started.set()
        for i in range(1000):
            if not job.progress(i, 1000):
                raise CancelledError("stopped")
            threading.Event().wait(0.005)
        return "finished"

    return fn


def test_newer_request_supersedes_older():
    runner = JobRunner()
    started = threading.Event()
    ended = []
    first = runner.submit("generate", _slow(started), on_done=lambda j, r, e: ended.append(type(e).__name__))
    started.wait(5)
    second = runner.submit("generate", lambda job: "second")
    assert second.result(10) == "second"
    with pytest.raises(CancelledError):
        first.result(10)
    assert first.cancelled and ended == ["CancelledError"]
    assert runner.current("generate") is None
    runner.shutdown()


def test_cancel_and_progress_reports():
    runner = JobRunner()
    started = threading.Event()
    seen = []
    job = runner.submit("umap", _slow(started), on_progress=lambda j: seen.append(j.done))
    started.wait(5)
    runner.cancel("umap")
    with pytest.raises(CancelledError):
        job.result(10)
    assert seen and seen == sorted(seen)
    runner.shutdown()


def test_synchronous_runner_reraises_errors():
    runner = JobRunner(synchronous=True)
    job = runner.submit("x", lambda job: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        job.result()


def test_proportion_ci_matches_wilson_formula():
    k, n, z = 13, 40, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo, hi = proportion_ci(k, n)
    assert lo == pytest.approx(centre - half, rel=1e-9) and hi == pytest.approx(centre + half, rel=1e-9)


def _sets():
    real = ImageSet(np.zeros((10, 1, 4, 4)), pd.DataFrame({"sex": list("FM" * 5), "age": range(10)}))
    syn = ImageSet(np.ones((10, 1, 4, 4)), pd.DataFrame({"sex": list("FFFFFMMMMM"), "age": range(10)}))
    return real, syn


def test_turing_study_is_seeded_scores_and_saves(tmp_path):
    real, syn = _sets()
    a = TuringStudy(real, syn, n=6, seed=1, reader="ann", out_dir=tmp_path)
    b = TuringStudy(real, syn, n=6, seed=1, reader="bob", out_dir=tmp_path)
    pd.testing.assert_frame_equal(a.items, b.items)
    assert len(a) == 12 and sorted(a.items.truth.value_counts().tolist()) == [6, 6]
    # ann sees through every image; bob calls everything real
    while not a.finished:
        a.answer("synthetic" if a.current_image().mean() > 0.5 else "real", confidence=0.9)
    while not b.finished:
        b.answer("real")
    ra = a.results().set_index("measure")["value"]
    assert ra["accuracy"] == 1.0 and ra["sensitivity"] == 1.0 and ra["specificity"] == 1.0
    rb = b.results().set_index("measure")["value"]
    assert rb["accuracy"] == 0.5 and rb["sensitivity"] == 0.0 and rb["specificity"] == 1.0
    pooled = load_answers(tmp_path)
    assert len(pooled) == 24 and set(pooled.reader) == {"ann", "bob"}
    by_sex = score_answers(pooled, by=["sex"])
    pd.testing.assert_frame_equal(score_answers(pooled, by="sex"), by_sex)  # a single column may be a string
    assert {"overall", "sex=F", "sex=M"} == set(by_sex.group)
    assert (by_sex.n > 0).all()
    with pytest.raises(DataError, match="finished"):
        a.answer("real")


def test_turing_study_resumes_and_validates(tmp_path):
    real, syn = _sets()
    s = TuringStudy(real, syn, n=3, seed=0, reader="cy", out_dir=tmp_path)
    s.answer("real")
    s.answer("synthetic")
    again = TuringStudy(real, syn, n=3, seed=0, reader="cy", out_dir=tmp_path)
    assert again.position == 2
    with pytest.raises(DataError, match="'real' or 'synthetic'"):
        again.answer("fake")
    with pytest.raises(DataError, match="confidence"):
        again.answer("real", confidence=1.5)
    with pytest.raises(DataError, match="path separators"):
        TuringStudy(real, syn, reader="../x")
    with pytest.raises(DataError, match="'truth'"):
        score_answers(pd.DataFrame({"answer": ["real"]}))
