"""The metric registry: one declaration per metric, and every caller dispatching through it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medsynth_explore import metrics as M
from medsynth_explore.errors import MetricError
from medsynth_explore.evaluate import DEFAULT_METRICS, KNOWN_METRICS, PRIVACY_METRICS, evaluate
from medsynth_explore.metrics import registry as R


def _sets(seed=0, n=160, d=5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(n - 20, d)) + 0.3, rng.normal(size=(n + 10, d))


def test_list_metrics_columns_and_one_row_per_value():
    t = M.list_metrics()
    assert {"name", "higher_is_better", "streaming", "needs", "metric", "kind", "label"} <= set(t.columns)
    assert t["name"].is_unique
    rows = t.set_index("name")
    assert rows.loc["fid", "higher_is_better"] is False
    assert bool(rows.loc["coverage", "higher_is_better"]) and rows.loc["coverage", "metric"] == "prdc"
    assert rows.loc["ct", "higher_is_better"] is None  # best near 0: neither extreme
    assert rows.loc["copy_rate", "needs"] == ("real", "synthetic", "train")
    assert rows.loc["fid", "state"] == "StreamingFID" and not rows.loc["copy_rate", "streaming"]
    assert set(rows.index[rows["streaming"]]) == {"fid", "kid", "kid_std", "cmmd", "precision", "recall", "density", "coverage"}


def test_evaluate_constants_come_from_the_registry():
    assert DEFAULT_METRICS == ("fid", "kid", "precision", "recall", "density", "coverage")
    assert PRIVACY_METRICS == ("authenticity", "copy_rate", "ct")
    assert set(DEFAULT_METRICS + PRIVACY_METRICS + ("kid_std", "cmmd", "fid_inf", "relative_fd")) == set(KNOWN_METRICS)


def test_resolve_outputs_and_metric_names():
    plan = [(m.name, outs) for m, outs in R.resolve(["density", "fid", "prdc", "kid"])]
    assert plan == [("prdc", ("density", "precision", "recall", "coverage")), ("fid", ("fid",)), ("kid", ("kid",))]
    with pytest.raises(MetricError, match="unknown metric 'fdi'"):
        R.resolve(["fdi"])
    with pytest.raises(MetricError, match="strings"):
        R.resolve([3])


@pytest.mark.parametrize("name", ["fid", "kid", "cmmd", "prdc", "fid_infinity", "relative_fd"])
def test_registry_values_equal_the_functions_called_directly(name):
    real, syn, _ = _sets(1)
    got = R.compute_metrics(R.get_metric(name).output_names, real, syn, seed=3, k=4, kid_subsets=7, kid_subset_size=50)
    direct = {
        "fid": lambda: {"fid": M.fid(real, syn)},
        "kid": lambda: dict(zip(("kid", "kid_std"), M.kid(real, syn, subsets=7, subset_size=50, seed=3))),
        "cmmd": lambda: {"cmmd": M.cmmd(real, syn)},
        "prdc": lambda: M.prdc(real, syn, k=4),
        "fid_infinity": lambda: {"fid_inf": M.fid_infinity(real, syn, seed=3)["fid_inf"]},
        "relative_fd": lambda: {"relative_fd": M.relative_fd(real, syn, seed=3)["relative"]},
    }[name]()
    assert got.keys() == direct.keys()
    for k in got:
        assert got[k] == pytest.approx(direct[k], rel=1e-12)


def test_row_metrics_average_per_sample_scores_of_the_whole_sets():
    real, syn, train = _sets(2)
    syn = np.concatenate([syn, train[:15] + 1e-6])  # 15 near-copies
    eng = R.MetricEngine(["authenticity", "copy_rate"], real, syn, train)
    whole = eng.run()
    assert whole["copy_rate"] == pytest.approx(M.copy_rate(train, syn, real)["copy_rate"])
    assert whole["authenticity"] == pytest.approx(M.authenticity(train, syn)["authenticity"])
    rows = np.arange(len(syn) - 15, len(syn))  # only the copies: every one of them is flagged
    part = eng.run(None, rows)
    assert part["copy_rate"] == 1.0 and part["authenticity"] == 0.0
    assert np.isnan(eng.run(None, np.arange(0))["copy_rate"])


def test_whole_set_metrics_skip_subgroups_and_bootstrap():
    real, syn, train = _sets(3, n=300)
    eng = R.MetricEngine(["ct", "fid"], real, syn, train, errors="nan")
    assert "ct" not in eng.run(np.arange(100), np.arange(100))
    assert "ct" not in eng.run(whole=True, bootstrap=True)
    ct = eng.run(whole=True)["ct"]
    assert ct == pytest.approx(M.ct_test(train, real, syn, n_cells=10, seed=0)["ct"])


def test_missing_needs_and_external_metrics_are_refused_clearly():
    real, syn, _ = _sets(4)
    with pytest.raises(MetricError, match=r"copy_rate needs .*train=\.\.\."):
        R.compute_metrics(["copy_rate"], real, syn)
    with pytest.raises(MetricError, match=r"psnr needs paired images.*medsynth_explore\.metrics\.psnr"):
        R.compute_metrics(["psnr"], real, syn)
    with pytest.raises(MetricError, match="clip_score needs"):
        evaluate(real, syn, metrics=["clip_score"])


def test_errors_nan_turns_an_uncomputable_metric_into_nan():
    real, syn, _ = _sets(5)
    eng = R.MetricEngine(["prdc", "fid"], real, syn, errors="nan", k=5)
    small = eng.run(np.arange(3), np.arange(3))  # PRDC needs more than k rows per side
    assert np.isnan(small["coverage"]) and np.isfinite(small["fid"])
    with pytest.raises(MetricError, match="at least 6"):
        R.MetricEngine(["prdc"], real, syn, k=5).run(np.arange(3), np.arange(3))


def test_a_registered_metric_reaches_evaluate_and_the_session(tmp_path):
    from medsynth_explore.data import ImageSet
    from medsynth_explore.session import Session

    def mean_gap(real, syn):
        return float(np.abs(np.asarray(real).mean(0) - np.asarray(syn).mean(0)).sum())

    R.register_metric(
        "mean_gap",
        mean_gap,
        [R.Output("mean_gap", False, "Mean gap", "lower is better")],
        description="Summed absolute difference of the feature means.",
    )
    try:
        assert "mean_gap" in set(M.list_metrics()["name"])
        real, syn, _ = _sets(6)
        md = pd.DataFrame({"sex": ["F", "M"] * 80})
        rep = evaluate(real, syn, metrics=["mean_gap"], by="sex", real_metadata=md, synthetic_metadata=md.iloc[:140], n_boot=3)
        assert rep.value("mean_gap") == pytest.approx(mean_gap(real, syn))
        assert rep.group_result("mean_gap").higher_is_better is False
        rng = np.random.default_rng(0)
        ref = ImageSet(rng.random((20, 1, 8, 8)).astype(np.float32))
        s = Session(reference=ref, generators=[], encoder="pixels")
        s.add_samples(ImageSet(rng.random((6, 1, 8, 8)).astype(np.float32)), "mine")
        got = s.metrics("mine", ["mean_gap"])
        assert got == {"mean_gap": pytest.approx(mean_gap(s.reference_features(), s.synthetic_features("mine")))}
        with pytest.raises(MetricError, match="already registered"):
            R.register_metric("mean_gap", mean_gap, ["mean_gap"])
        with pytest.raises(MetricError, match="already belong"):
            R.register_metric("other", mean_gap, ["fid"])
    finally:
        R.unregister_metric("mean_gap")
    assert "mean_gap" not in set(M.list_metrics()["name"])


def test_registration_is_checked():
    with pytest.raises(MetricError, match="kind"):
        R.register_metric("x", len, ["x"], kind="bogus")
    with pytest.raises(MetricError, match="unknown inputs"):
        R.register_metric("x", len, ["x"], needs=("pixels",))
    with pytest.raises(MetricError, match="row_scores"):
        R.register_metric("x", len, ["x"], kind="row")
    with pytest.raises(MetricError, match="at least one output"):
        R.register_metric("x", len, [])
    assert "x" not in set(M.list_metrics()["metric"])


def test_evaluate_accepts_prdc_as_the_four_values():
    real, syn, _ = _sets(7)
    rep = evaluate(real, syn, metrics="prdc", n_boot=0)
    assert rep.metrics == ["precision", "recall", "density", "coverage"]
    assert rep.value("coverage") == pytest.approx(M.prdc(real, syn)["coverage"])


def test_streaming_states_come_from_the_registry():
    real, syn, _ = _sets(8)
    for name in ("fid", "kid", "cmmd", "prdc"):
        state = R.streaming_state(name)
        assert isinstance(state, M.StreamingMetric) and state is not R.streaming_state(name)
        state.update(real, real=True)
        state.update(syn, real=False)
        values = state.values()
        assert set(values) == set(R.get_metric(name).output_names)
    with pytest.raises(MetricError, match="no streaming accumulator"):
        R.streaming_state("copy_rate")


def test_directions_drive_the_worst_group():
    from medsynth_explore.metrics.subgroups import GroupResult

    frame = pd.DataFrame({"value": [-4.0, 0.5, 2.0], "ci_low": np.nan, "ci_high": np.nan, "n": 10}, index=["a", "b", "c"])
    assert GroupResult("ct", 0.0, frame, R.higher_is_better("ct")).worst() == "a"  # farthest from 0
    assert GroupResult("ct", 0.0, frame, R.higher_is_better("ct")).best() == "b"
    assert GroupResult("fid", 0.0, frame, R.higher_is_better("fid")).worst() == "c"
    assert GroupResult("coverage", 0.0, frame, R.higher_is_better("coverage")).worst() == "a"
    assert R.with_spreads(["kid", "fid"]) == ["kid", "kid_std", "fid"]


def test_warnings_once_shows_each_caveat_once_even_when_the_block_raises():
    import warnings

    rng = np.random.default_rng(0)
    real, syn = rng.normal(size=(20, 30)), rng.normal(size=(20, 30))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with R.warnings_once():
            for _ in range(3):
                R.compute_metrics(["fid"], real, syn)  # 20 samples in 30 dimensions: rank-deficient
    assert [str(w.message).split(":")[0] for w in seen] == ["FID from 20 samples in 30 dimensions"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(MetricError), R.warnings_once():
            R.compute_metrics(["fid"], real, syn)
            R.compute_metrics(["fid"], real, syn[:1])
    assert len(seen) == 1
