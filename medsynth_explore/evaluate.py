"""``evaluate``: every chosen metric, overall and per subgroup, in one :class:`Report`.

>>> import numpy as np, pandas as pd
>>> from medsynth_explore.evaluate import evaluate
>>> rng = np.random.default_rng(0)
>>> real, syn = rng.normal(size=(200, 8)), rng.normal(size=(150, 8)) + 0.5
>>> rep = evaluate(real, syn, metrics=["fid", "coverage"])
>>> rep.table[["metric", "group", "n_real", "n_synthetic"]].values.tolist()
[['fid', 'all', 200, 150], ['coverage', 'all', 200, 150]]
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from .errors import MetricError
from .metrics.registry import MetricEngine, default_outputs, higher_is_better, list_metrics
from .metrics.subgroups import AGE_BINS, GroupResult, bootstrap_ci, group_labels

__all__ = ["evaluate", "Report", "DEFAULT_METRICS", "PRIVACY_METRICS", "KNOWN_METRICS"]

#: Metrics computed when none are named (from the registry's defaults).
DEFAULT_METRICS = default_outputs(("real", "synthetic"))
#: Added to the defaults when the training set is given.
PRIVACY_METRICS = tuple(m for m in default_outputs(("real", "synthetic", "train")) if m not in DEFAULT_METRICS)
#: Metric values evaluate can compute from feature sets (the registry's, at import; see list_metrics()).
KNOWN_METRICS = tuple(list_metrics().query("kind != 'external'")["name"])
TABLE_COLUMNS = ["metric", "group", "value", "ci_low", "ci_high", "n_real", "n_synthetic"]


# ---------------------------------------------------------------------------------- inputs
def _as_side(x: Any, name: str, metadata: Optional[pd.DataFrame]):
    """(images or None, features or None, metadata, provenance) of one input."""
    from .data import ImageSet, load_dataset

    if isinstance(x, (str, os.PathLike)):
        x = load_dataset(x)  # a folder may come back file-backed: it is then streamed through the encoder
    if isinstance(x, ImageSet):
        md = metadata if metadata is not None else x.metadata
        prov = dict(x.provenance)
        if prov.get("skipped"):
            prov["n_skipped"] = len(prov["skipped"])  # the list itself stays with the ImageSet
        return x, None, md, prov
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if arr.ndim == 2:
        md = metadata if metadata is not None else pd.DataFrame(index=pd.RangeIndex(len(arr)))
        return None, arr, md, {"source": "precomputed features"}
    if arr.ndim == 4:
        s = ImageSet(arr, metadata)
        return s, None, s.metadata, dict(s.provenance)
    raise MetricError(
        f"{name} must be an ImageSet, a folder path, images (N, C, H, W) or features (N, D); got an array of shape {arr.shape}."
    )


def _versions() -> dict:
    from importlib import metadata as md

    out = {"python": platform.python_version()}
    for pkg, dist in (("numpy", "numpy"), ("torch", "torch"), ("medsynth_explore", "medsynth-explore")):
        try:
            out[pkg] = md.version(dist)
        except md.PackageNotFoundError:
            out[pkg] = None
    if out["medsynth_explore"] is None:
        import medsynth_explore

        out["medsynth_explore"] = getattr(medsynth_explore, "__version__", None)
    return out


# ---------------------------------------------------------------------------------- report
def _json_value(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if isinstance(v, np.ndarray):
        return [_json_value(x) for x in v.tolist()]
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    return str(v)


def _from_json_value(v: Any) -> Any:
    if v is None:
        return float("nan")
    if v == "inf":
        return float("inf")
    if v == "-inf":
        return float("-inf")
    return v


@dataclass
class Report:
    """Metric values per group with their provenance.

    Attributes
    ----------
    table : DataFrame
        Columns ``metric, group, value, ci_low, ci_high, n_real, n_synthetic``;
        ``group`` is ``"all"`` for the whole sets, otherwise labels such as
        ``"sex=F & age_group=40-59"``.
    provenance : dict
        Encoder (id, normalisation), sample counts, seeds, settings, package versions.
    evidence : dict
        What to look at besides the numbers (see :mod:`medsynth_explore.report_evidence`):
        thumbnails of real and synthetic samples and, when privacy metrics
        were computed, the synthetic images nearest to a training image with
        their distances. Empty for a report made from a table alone. The
        HTML report (:meth:`to_html`, :mod:`medsynth_explore.report_html`)
        shows it with a chart of each metric and its interval.

    Examples
    --------
    >>> t = pd.DataFrame({"metric": ["fid"], "group": ["all"], "value": [1.5], "ci_low": [np.nan],
    ...                   "ci_high": [np.nan], "n_real": [10], "n_synthetic": [10]})
    >>> Report(t, {"encoder": {"id": "pixels-16x16"}}).value("fid")
    1.5
    """

    table: pd.DataFrame
    provenance: dict = field(default_factory=dict)
    evidence: dict = field(default_factory=dict)

    def value(self, metric: str, group: str = "all") -> float:
        """The value of one metric for one group (``"all"`` by default)."""
        rows = self.table[(self.table["metric"] == metric) & (self.table["group"] == group)]
        if rows.empty:
            raise MetricError(f"no {metric!r} value for group {group!r}; metrics: {sorted(self.table['metric'].unique())}.")
        return float(rows["value"].iloc[0])

    @property
    def metrics(self) -> list[str]:
        """Metric names in table order."""
        return list(dict.fromkeys(self.table["metric"]))

    def group_result(self, metric: str) -> GroupResult:
        """The per-group values of ``metric`` as a :class:`GroupResult` (gaps, worst group)."""
        t = self.table[self.table["metric"] == metric]
        if t.empty:
            raise MetricError(f"no metric {metric!r} in this report.")
        overall = t[t["group"] == "all"]
        groups = t[t["group"] != "all"].set_index("group")
        bg = groups[["value", "ci_low", "ci_high", "n_synthetic", "n_real"]].rename(columns={"n_synthetic": "n"})
        ov = overall.iloc[0] if not overall.empty else None
        return GroupResult(
            metric,
            float(ov["value"]) if ov is not None else float("nan"),
            bg,
            higher_is_better(metric),
            (float(ov["ci_low"]), float(ov["ci_high"])) if ov is not None else (float("nan"), float("nan")),
        )

    # -- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready dict (NaN as null, infinities as "inf")."""
        rows = [{c: _json_value(r[c]) for c in self.table.columns} for _, r in self.table.iterrows()]
        return {
            "format": "medsynth-explore-report",
            "version": 1,
            "provenance": _json_value(self.provenance),
            "table": rows,
            "evidence": _json_value(self.evidence),
        }

    def to_json(self, path: str | Path) -> Path:
        """Write the report as JSON; :meth:`from_json` reads it back."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2))
        return p

    @classmethod
    def from_json(cls, path: str | Path) -> "Report":
        """Read a report written by :meth:`to_json`."""
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise MetricError(f"cannot read report {p}: {exc}") from exc
        if d.get("format") != "medsynth-explore-report":
            raise MetricError(f"{p} is not a medsynth-explore report (no 'format' marker).")
        rows = [{k: _from_json_value(v) for k, v in r.items()} for r in d["table"]]
        table = pd.DataFrame(rows, columns=list(rows[0]) if rows else TABLE_COLUMNS)
        for c in ("value", "ci_low", "ci_high"):
            table[c] = table[c].astype(float)
        for c in ("n_real", "n_synthetic"):
            table[c] = table[c].astype("Int64") if table[c].isna().any() else table[c].astype(int)
        return cls(table, d.get("provenance", {}), d.get("evidence") or {})

    # -- display (medsynth_explore.report_html) ----------------------------------------------
    def _repr_html_(self) -> str:
        """The report in a notebook: samples, a chart per metric with its interval, privacy pairs, the table."""
        from .report_html import report_fragment

        return report_fragment(self)

    def to_html(self, path: str | Path) -> Path:
        """Write one self-contained HTML page: the evidence, the charts, the table and the provenance.

        Images are embedded as data URIs and charts as inline SVG, so the file
        opens offline and can be attached or sent on its own.
        """
        from .report_html import write_report

        return write_report(self, path)

    def __repr__(self) -> str:
        enc = (self.provenance.get("encoder") or {}).get("id")
        return f"Report(encoder={enc!r}, rows={len(self.table)})\n{self.table.to_string(index=False)}"


def _neighbour_summary(routes: list) -> dict:
    """Which neighbour route the k-NN metrics took (see metrics/knn.py), from the searches recorded."""
    taken = sorted({r["route"] for r in routes})
    largest = max(routes, key=lambda r: r["n_query"] * r["n_data"], default=None)
    return {
        "route": taken[0] if len(taken) == 1 else ("mixed" if taken else None),
        "searches": {t: sum(r["route"] == t for r in routes) for t in taken},
        "largest": largest,
    }


# ---------------------------------------------------------------------------------- groups
def _run_groups(eng, groups, chosen, n_boot, ci_level, min_group_size, rng, rows) -> None:
    """Fill ``rows`` with each metric's value and bootstrap interval for each group."""
    for g, ir, is_ in groups:
        overall = g == "all"
        small = len(ir) < (2 if overall else min_group_size) or len(is_) < (2 if overall else min_group_size)
        vals = {} if small else eng.run(ir, is_, whole=overall)
        reps: dict = {m: [] for m in chosen}
        if n_boot and not small:
            for _ in range(n_boot):
                br = rng.choice(ir, len(ir), replace=True)
                bs = rng.choice(is_, len(is_), replace=True)
                rv = eng.run(br, bs, bootstrap=True)
                for m in chosen:
                    reps[m].append(rv.get(m, float("nan")))
        for m in chosen:
            lo, hi = bootstrap_ci(reps[m], ci_level) if reps[m] else (float("nan"), float("nan"))
            rows.append(
                {
                    "metric": m,
                    "group": g,
                    "value": float(vals.get(m, float("nan"))),
                    "ci_low": lo,
                    "ci_high": hi,
                    "n_real": int(len(ir)),
                    "n_synthetic": int(len(is_)),
                }
            )


def evaluate(
    real: Any,
    synthetic: Any,
    encoder: Any = None,
    metrics: Optional[Sequence[str]] = None,
    by: Optional[Sequence[str] | str] = None,
    seed: int = 0,
    train: Any = None,
    *,
    n_boot: int = 10,
    ci_level: float = 0.95,
    k: int = 5,
    knn_route: str = "auto",
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    min_group_size: int = 10,
    age_bins: Sequence[float] = AGE_BINS,
    real_metadata: Optional[pd.DataFrame] = None,
    synthetic_metadata: Optional[pd.DataFrame] = None,
    cache: Any = None,
    batch_size: Optional[int] = None,
    callback: Optional[Callable[[int, int], Any]] = None,
    thumbnails: int = 8,
) -> Report:
    """Compare synthetic with real data: metrics overall and per subgroup.

    Parameters
    ----------
    real, synthetic : ImageSet, path, images (N, C, H, W) or features (N, D)
        Images are encoded with ``encoder``; 2-D arrays are taken as features
        already computed (the encoder is then recorded as "precomputed"). A
        path (a folder in any layout :func:`~medsynth_explore.data.load_dataset`
        reads, a CSV, an ``.npz``) or a name is loaded with default settings;
        for ``size=``, ``layout=`` and the rest, pass the ImageSet
        ``load_dataset`` returns. A file-backed set is streamed in batches
        (decoded in worker threads while the encoder runs), so memory does not
        grow with its size, and with the feature cache a second evaluation of
        the same files reads only features.
    encoder : str or Encoder, optional
        See :func:`medsynth_explore.features.get_encoder`; default
        :func:`~medsynth_explore.features.default_encoder_name`. Always recorded
        in ``report.provenance["encoder"]``.
    metrics : str or list of str, optional
        Metric values or whole metrics from the registry
        (:func:`medsynth_explore.metrics.list_metrics`): ``fid, kid, kid_std,
        cmmd, precision, recall, density, coverage`` (or ``prdc`` for those
        four), ``fid_inf``, ``relative_fd``, ``authenticity, copy_rate, ct``.
        Default: fid, kid, precision, recall, density, coverage, plus
        authenticity, copy_rate and ct when ``train`` is given.
    by : str or list of str, optional
        Metadata columns to break results down by (intersections of several);
        ``"age_group"`` is derived from ``age`` with ``age_bins``. Both sides'
        metadata are harmonised first (:func:`medsynth_explore.data.harmonise`),
        so real and synthetic sets share ``sex``, ``age_group``, ``view``,
        ``race`` (where present) and the vocabulary's findings
        (``pleural_effusion``, ``lung_lesion``, ...) whatever their raw names.
    seed : int
        Seed of KID subsets, bootstrap resampling and k-means (C_T).
    train : same kinds as ``real``, optional
        The generator's training set, for privacy metrics. ``real`` then acts
        as the held-out set (it must not overlap ``train``): copy rate uses
        the 1st percentile of real-to-train distances, C_T compares real and
        synthetic distances to train. C_T is reported for the whole sets only.
    n_boot : int
        Bootstrap replicates for confidence intervals (0: none). Replicates
        resample both sides with replacement within each group; PRDC uses the
        distinct resampled rows and KID a twentieth of ``kid_subsets``
        (at least 2) to keep the cost down.
    k, kid_subsets, kid_subset_size : metric settings.
    knn_route : {"auto", "exact", "approximate"}
        Neighbour search of the k-NN metrics (PRDC, authenticity, copy rate):
        ``"auto"`` is exact unless the sets are large
        (:mod:`medsynth_explore.metrics.knn`). The routes taken are recorded in
        ``report.provenance["neighbours"]``.
    min_group_size : int
        Groups with fewer rows on a side get NaN values.
    real_metadata, synthetic_metadata : DataFrame, optional
        Metadata for feature-array inputs (or to replace an ImageSet's).
    cache : FeatureCache, path, None or False
        Feature cache (None: the default on-disk cache; False: none).
    batch_size, callback : passed to the encoder.
    thumbnails : int
        Images per side (seeded-random rows) kept as small thumbnails in
        ``report.evidence`` for the HTML report, and, when a privacy metric
        is computed, the 6 synthetic images nearest to a training image
        beside it (0: no pictures; the privacy distances are kept). Only
        these rows are read again (``ImageSet.read``); feature-array inputs have no pictures.

    Returns
    -------
    Report

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> md = pd.DataFrame({"sex": ["F", "M"] * 100})
    >>> rep = evaluate(rng.normal(size=(200, 4)), rng.normal(size=(200, 4)), metrics=["fid"], by="sex",
    ...                real_metadata=md, synthetic_metadata=md, n_boot=5)
    >>> rep.table["group"].tolist()
    ['all', 'sex=F', 'sex=M']
    """
    from .features import get_encoder
    from .features.cache import FeatureCache, encode_cached

    rs, rf, rmd, rprov = _as_side(real, "real", real_metadata)
    ss, sf, smd, sprov = _as_side(synthetic, "synthetic", synthetic_metadata)
    if train is not None:
        ts, tf, _, tprov = _as_side(train, "train", None)
    else:
        ts = tf = tprov = None
    need_encoding = any(v is not None for v in (rs, ss, ts))
    if need_encoding and any(v is not None for v in (rf, sf, tf)):
        raise MetricError("give all inputs as images (or ImageSets) or all as feature arrays, not a mix.")
    if need_encoding:
        enc = get_encoder(encoder)
        fc = None if cache is False else (cache if isinstance(cache, FeatureCache) else FeatureCache(cache))

        def encode(s):
            return (
                encode_cached(enc, s, cache=fc, batch_size=batch_size, callback=callback)
                if fc is not None
                else enc.encode(s, batch_size=batch_size, callback=callback)
            )

        rf, sf = encode(rs), encode(ss)
        tf = encode(ts) if ts is not None else None
        enc_info = enc.describe()
    else:
        if encoder is not None:
            warnings.warn("encoder is ignored: the inputs are already feature arrays.", RuntimeWarning, stacklevel=2)
        enc_info = {
            "id": "precomputed",
            "class": None,
            "dim": int(np.shape(rf)[1]) if np.ndim(rf) == 2 else None,
            "input_size": None,
            "normalisation": "features given by the caller",
        }
    from .metrics._validate import check_features, check_pair

    rf, sf = check_pair(rf, sf, min_n=2)
    if tf is not None:
        tf = check_features(tf, "train features", min_n=2)
        if tf.shape[1] != rf.shape[1]:
            raise MetricError("train features have a different dimension from real features.")
    if len(rmd) != len(rf) or len(smd) != len(sf):
        raise MetricError("metadata must have one row per sample on each side.")

    if metrics is None:
        metrics = default_outputs(("real", "synthetic", "train") if tf is not None else ("real", "synthetic"))
    from .metrics.knn import record_routes

    with record_routes() as routes:
        eng = MetricEngine(
            metrics,
            rf,
            sf,
            tf,
            seed=seed,
            errors="nan",
            k=k,
            knn_route=knn_route,
            kid_subsets=kid_subsets,
            kid_subset_size=kid_subset_size,
        )
    chosen = eng.outputs
    rng = np.random.default_rng(seed)

    groups = [("all", np.arange(len(rf)), np.arange(len(sf)))]
    if by:
        from .data.labels import for_grouping, harmonise

        # one vocabulary on both sides (real "Pleural Effusion" / synthetic "effusion" -> pleural_effusion), on copies;
        # a missing value (an uncertain label, an unknown sex) is its own group, "unknown"
        cols = [by] if isinstance(by, str) else list(by)
        rmd, smd = for_grouping(harmonise(rmd), cols), for_grouping(harmonise(smd), cols)
        lab_r = group_labels(rmd, by, age_bins).to_numpy()
        lab_s = group_labels(smd, by, age_bins).to_numpy()
        for g in sorted(set(lab_r) | set(lab_s)):
            groups.append((g, np.flatnonzero(lab_r == g), np.flatnonzero(lab_s == g)))

    rows = []
    with warnings.catch_warnings(record=True) as caught, record_routes() as more_routes:
        warnings.simplefilter("always")
        _run_groups(eng, groups, chosen, n_boot, ci_level, min_group_size, rng, rows)
    routes += more_routes
    notes = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    if notes:
        warnings.warn(
            f"{len(notes)} distinct warning(s) while computing metrics, kept in report.provenance['warnings']; first: {notes[0]}",
            RuntimeWarning,
            stacklevel=2,
        )
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    order = {m: i for i, m in enumerate(chosen)}
    table = table.sort_values(
        ["metric", "group"], key=lambda c: c.map(order) if c.name == "metric" else c.map(lambda v: (v != "all", v)), kind="stable"
    ).reset_index(drop=True)

    from .metrics.registry import get_metric
    from .report_evidence import collect_evidence

    evidence = collect_evidence(
        rs,
        ss,
        ts,
        features=(rf, sf, tf),
        metadata=(rmd, smd, ts.metadata if ts is not None else None),
        privacy=tf is not None and any("train" in get_metric(m).needs for m in chosen),
        n_samples=thumbnails,
        n_pairs=6 if thumbnails else 0,
        seed=seed,
    )
    provenance = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "encoder": enc_info,
        "n_real": int(len(rf)),
        "n_synthetic": int(len(sf)),
        "n_train": int(len(tf)) if tf is not None else None,
        "metrics": chosen,
        "by": ([by] if isinstance(by, str) else list(by)) if by else [],
        "age_bins": list(age_bins),
        "seed": seed,
        "seeds": {"kid_subsets": seed, "bootstrap": seed, "ct_kmeans": seed},
        "n_boot": n_boot,
        "ci_level": ci_level,
        "settings": {
            "k": k,
            "knn_route": knn_route,
            "kid_subsets": kid_subsets,
            "kid_subset_size": kid_subset_size,
            "min_group_size": min_group_size,
        },
        "neighbours": _neighbour_summary(routes),
        "real": {k_: v for k_, v in rprov.items() if isinstance(v, (str, int, float, bool)) or v is None},
        "synthetic": {k_: v for k_, v in sprov.items() if isinstance(v, (str, int, float, bool)) or v is None},
        "train": {k_: v for k_, v in tprov.items() if isinstance(v, (str, int, float, bool)) or v is None} if tprov else None,
        "versions": _versions(),
        "warnings": notes,
    }
    return Report(table, provenance, evidence)


# ``medsynth_explore.evaluate`` is this module, in every import order; calling it calls evaluate().
from ._callable import make_callable  # noqa: E402

make_callable(__name__, evaluate)
