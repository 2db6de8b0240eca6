"""Metrics per subgroup, with bootstrap confidence intervals and gaps between groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from ..errors import MetricError

__all__ = ["AGE_BINS", "age_group", "group_labels", "GroupResult", "by_group", "bootstrap_ci"]

#: Default age bins (years, left-closed) used by :func:`age_group`.
AGE_BINS = (0, 18, 40, 60, 80, 200)


def age_group(age: Any, bins: Sequence[float] = AGE_BINS) -> pd.Series:
    """Bin ages into labelled groups such as ``"40-59"`` and ``"80+"``.

    Examples
    --------
    >>> age_group([5, 45, 90]).tolist()
    ['0-17', '40-59', '80+']
    """
    a = pd.Series(np.asarray(age, dtype=float))
    b = list(bins)
    labels = [f"{int(lo)}-{int(hi) - 1}" for lo, hi in zip(b[:-2], b[1:-1])] + [f"{int(b[-2])}+"]
    out = pd.cut(a, b, right=False, labels=labels)
    return out.astype(str).where(out.notna(), "unknown")


def group_labels(metadata: pd.DataFrame, by: Sequence[str] | str, age_bins: Sequence[float] = AGE_BINS) -> pd.Series:
    """One group label per row: the values of ``by`` columns joined by ``" & "``.

    ``"age_group"`` is derived from an ``age`` column when the metadata lacks it.

    Examples
    --------
    >>> md = pd.DataFrame({"sex": ["F", "M"], "age": [30, 70]})
    >>> group_labels(md, ["sex", "age_group"]).tolist()
    ['sex=F & age_group=18-39', 'sex=M & age_group=60-79']
    """
    cols = [by] if isinstance(by, str) else list(by)
    if not cols:
        raise MetricError("give at least one metadata column to group by.")
    parts = []
    for c in cols:
        if c in metadata.columns:
            v = metadata[c].astype(str)
        elif c == "age_group" and "age" in metadata.columns:
            v = age_group(metadata["age"], age_bins)
        else:
            raise MetricError(f"cannot group by {c!r}: metadata has columns {list(metadata.columns)}.")
        parts.append(f"{c}=" + v.reset_index(drop=True))
    lab = parts[0]
    for p in parts[1:]:
        lab = lab + " & " + p
    return lab


def bootstrap_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (NaN when none are finite).

    Examples
    --------
    >>> [round(v, 6) for v in bootstrap_ci(np.arange(101), 0.9)]
    [5.0, 95.0]
    """
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan"), float("nan")
    lo, hi = np.quantile(v, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


@dataclass
class GroupResult:
    """A metric overall and per subgroup (a fairlearn-MetricFrame-like result).

    Attributes
    ----------
    metric : str
    overall : float
    by_group : DataFrame
        Index: group label; columns ``value``, ``ci_low``, ``ci_high``, ``n``
        (``n`` = rows of the group, on the synthetic side for two-set metrics)
        and ``n_real`` when there is a real side.
    higher_is_better : bool or None
        None for a statistic that is best near 0.

    Examples
    --------
    >>> g = GroupResult("acc", 0.8, pd.DataFrame({"value": [0.9, 0.6], "ci_low": np.nan,
    ...     "ci_high": np.nan, "n": [10, 5]}, index=["sex=F", "sex=M"]))
    >>> round(g.difference(), 6), round(g.ratio(), 6), g.worst()
    (0.3, 0.666667, 'sex=M')
    """

    metric: str
    overall: float
    by_group: pd.DataFrame
    higher_is_better: Optional[bool] = True
    overall_ci: tuple = (float("nan"), float("nan"))
    info: dict = field(default_factory=dict)

    def _values(self) -> pd.Series:
        v = self.by_group["value"].astype(float)
        v = v[np.isfinite(v)]
        if v.empty:
            raise MetricError(f"no subgroup has a finite {self.metric} value.")
        return v

    def difference(self) -> float:
        """Largest minus smallest group value (>= 0)."""
        v = self._values()
        return float(v.max() - v.min())

    def ratio(self) -> float:
        """Smallest over largest group value (in (0, 1] for positive values)."""
        v = self._values()
        return float(v.min() / v.max()) if v.max() != 0 else float("nan")

    def worst(self) -> str:
        """Label of the worst group: lowest value when higher is better, highest when lower is,
        farthest from 0 when ``higher_is_better`` is None (a statistic best near 0, such as C_T)."""
        v = self._values()
        if self.higher_is_better is None:
            return str(v.abs().idxmax())
        return str(v.idxmin() if self.higher_is_better else v.idxmax())

    def best(self) -> str:
        """Label of the best group (the opposite end from :meth:`worst`)."""
        v = self._values()
        if self.higher_is_better is None:
            return str(v.abs().idxmin())
        return str(v.idxmax() if self.higher_is_better else v.idxmin())

    def _repr_html_(self) -> str:
        return f"<b>{self.metric}</b>: overall {self.overall:.4g}<br>" + self.by_group.to_html(float_format=lambda x: f"{x:.4g}")


def by_group(
    metric: Callable[..., float],
    name: str,
    real: Optional[np.ndarray],
    real_meta: Optional[pd.DataFrame],
    synthetic: np.ndarray,
    synthetic_meta: pd.DataFrame,
    by: Sequence[str] | str,
    n_boot: int = 0,
    level: float = 0.95,
    seed: int = 0,
    higher_is_better: bool = True,
    min_n: int = 2,
    dedupe_bootstrap: bool = False,
) -> GroupResult:
    """Compute ``metric`` overall and for each subgroup, with bootstrap CIs.

    Parameters
    ----------
    metric : callable
        ``metric(real_rows, synthetic_rows) -> float`` for two-set metrics, or
        ``metric(synthetic_rows) -> float`` when ``real`` is None.
    real, synthetic : arrays whose first axis matches the metadata rows.
    by : column name(s); intersections when several (``"age_group"`` is derived from ``age``).
    n_boot : int
        Bootstrap replicates (rows resampled with replacement within each group,
        independently on both sides); 0 for no interval.
    dedupe_bootstrap : bool
        Keep each resampled row once (for nearest-neighbour metrics, where
        duplicated rows would be their own neighbours).
    min_n : int
        Groups with fewer rows on a side get NaN.

    Examples
    --------
    >>> md = pd.DataFrame({"sex": ["F"] * 6 + ["M"] * 4})
    >>> x = np.arange(10.0)
    >>> r = by_group(lambda s: float(s.mean()), "mean", None, None, x, md, "sex")
    >>> r.by_group["value"].tolist(), r.overall
    ([2.5, 7.5], 4.5)
    """
    rng = np.random.default_rng(seed)
    two = real is not None
    lab_s = group_labels(synthetic_meta, by).to_numpy()
    lab_r = group_labels(real_meta, by).to_numpy() if two else None
    groups = sorted(set(lab_s) | (set(lab_r) if two else set()))

    def run(ir, is_):
        return float(metric(real[ir], synthetic[is_])) if two else float(metric(synthetic[is_]))

    def boot(ir, is_):
        reps = []
        for _ in range(n_boot):
            bs = rng.choice(is_, len(is_), replace=True)
            br = rng.choice(ir, len(ir), replace=True) if two else None
            if dedupe_bootstrap:
                bs = np.unique(bs)
                br = np.unique(br) if two else None
            try:
                reps.append(run(br, bs))
            except MetricError:
                reps.append(np.nan)
        return bootstrap_ci(reps, level)

    all_s = np.arange(len(synthetic))
    all_r = np.arange(len(real)) if two else None
    overall = run(all_r, all_s)
    overall_ci = boot(all_r, all_s) if n_boot else (float("nan"), float("nan"))
    rows = []
    for g in groups:
        is_ = np.flatnonzero(lab_s == g)
        ir = np.flatnonzero(lab_r == g) if two else None
        row = {"group": g, "value": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": len(is_)}
        if two:
            row["n_real"] = len(ir)
        if len(is_) >= min_n and (not two or len(ir) >= min_n):
            try:
                row["value"] = run(ir, is_)
                if n_boot:
                    row["ci_low"], row["ci_high"] = boot(ir, is_)
            except MetricError as exc:
                row["note"] = str(exc)
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("group")
    return GroupResult(name, overall, frame, higher_is_better, overall_ci)
