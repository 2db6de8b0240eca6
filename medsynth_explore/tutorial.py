"""Small helpers that the tutorial notebooks share.

The tutorials in ``notebooks/`` import these instead of defining them in a
cell, so that they are linted, doctested and covered by
``tests/test_tutorial_helpers.py``. Each one is a few lines on top of the
package's core (the PhantomCXR simulator, the encoders, the metrics) plus numpy,
pandas and scikit-learn; none imports ipywidgets or plotly. The pictures
(:func:`forest_plot`, :func:`distance_histogram`, :func:`nearest_pairs`) are
SVG or HTML objects that display themselves in a notebook. In a notebook,
``helper??`` shows the source.

Examples
--------
>>> import numpy as np
>>> from medsynth_explore.tutorial import per_group_auroc
>>> y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
>>> per_group_auroc(y, y * 0.9, np.arange(8) < 4, n_boot=20)["AUROC"].tolist()
[1.0, 1.0]
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import DataError, MetricError
from .metrics import fid, kid, prdc
from .phantom import Population, render, sample_patients

__all__ = [
    "chest_tube_cohort",
    "distance_histogram",
    "fit_logistic",
    "forest_plot",
    "lower_zone_contrast",
    "metric_table",
    "nearest_pairs",
    "per_group_auroc",
]


def _images(x: Any, name: str) -> np.ndarray:
    """The (N, C, H, W) array of an ImageSet or of an array-like."""
    arr = np.asarray(getattr(x, "images", x))
    if arr.ndim != 4:
        raise DataError(f"{name} must be images of shape (N, C, H, W) or an ImageSet, got an array of shape {arr.shape}.")
    return arr


def lower_zone_contrast(images: Any) -> np.ndarray:
    """Brightness of the costophrenic angles minus the mid-lung zone, per image.

    A pleural effusion is fluid that collects at the bottom of the pleural space,
    so it makes the lower outer lung zones brighter. This measures it without any
    model: the mean of rows 58-75 % of the image height minus the mean of rows
    30-45 %, both over the outer columns of each lung (12-32 % and 68-88 % of the
    width), on the first channel.

    Parameters
    ----------
    images : array (N, C, H, W) or ImageSet
        Frontal chest radiographs in [0, 1], bright = attenuating.

    Returns
    -------
    ndarray (N,)
        Positive where the lower zone is brighter than the mid zone.

    Examples
    --------
    >>> x = np.zeros((2, 1, 100, 100), np.float32)
    >>> x[0, :, 50:80] = 0.5          # a brighter lower zone in the first image only
    >>> lower_zone_contrast(x).round(3).tolist()
    [0.5, 0.0]
    """
    x = _images(images, "images")
    h, w = x.shape[-2:]
    cols = np.r_[int(0.12 * w) : int(0.32 * w), int(0.68 * w) : int(0.88 * w)]
    low = x[:, 0, int(0.58 * h) : int(0.75 * h)][:, :, cols].mean(axis=(1, 2))
    mid = x[:, 0, int(0.30 * h) : int(0.45 * h)][:, :, cols].mean(axis=(1, 2))
    return low - mid


def chest_tube_cohort(
    n: int, *, seed: int, tube_rate: float, prevalence: float, pneumothorax_size: float = 0.10, size: int = 64
) -> tuple[pd.DataFrame, np.ndarray]:
    """A PhantomCXR cohort in which chest tubes go with pneumothorax (a shortcut).

    Patients are drawn from a :class:`~medsynth_explore.phantom.Population` with
    the given pneumothorax prevalence, a chest tube in ``tube_rate`` of the
    patients with a pneumothorax and in none of the others. Every pneumothorax
    is given the same ``pneumothorax_size``, so the strength of the real signal
    is one knob. Then the images are rendered.

    Parameters
    ----------
    n : int
        Number of patients.
    seed : int
        Seeds both the patient table and the image noise.
    tube_rate : float
        Share of pneumothorax patients with a chest tube, in [0, 1].
    prevalence : float
        Probability of a pneumothorax, in [0, 1].
    pneumothorax_size : float
        Fraction of the hemithorax's projected lung area taken by pleural air, in (0, 1).
    size : int
        Image side in pixels.

    Returns
    -------
    table : DataFrame
        One row per patient (as :func:`~medsynth_explore.phantom.sample_patients`).
    images : ndarray (n, 1, size, size)

    Examples
    --------
    >>> table, images = chest_tube_cohort(6, seed=0, tube_rate=1.0, prevalence=0.5, size=32)
    >>> images.shape, bool((table["chest_tube"] == table["pneumothorax"]).all())
    ((6, 1, 32, 32), True)
    """
    if not 0 < pneumothorax_size < 1:
        raise DataError(f"pneumothorax_size is a fraction of the lung area and must lie in (0, 1), got {pneumothorax_size}.")
    pop = Population(
        prevalence={"pneumothorax": prevalence}, chest_tube_given_pneumothorax=tube_rate, chest_tube_given_no_pneumothorax=0.0
    )
    table = sample_patients(n, pop, seed=seed)
    table.loc[table["pneumothorax"] == 1, "pneumothorax_size"] = pneumothorax_size
    return table, render(table, size=size, seed=seed)


def fit_logistic(encoder: Any, images: Any, labels: Any, C: float = 1.0, max_iter: int = 3000):
    """Fit a logistic regression on the features ``encoder`` gives ``images``.

    Parameters
    ----------
    encoder : Encoder
        Anything with ``encode(images) -> (N, D) features``, e.g. ``PixelEncoder(size=32)``.
    images : array (N, C, H, W) or ImageSet
    labels : array-like (N,)
        Binary labels.
    C, max_iter : passed to :class:`sklearn.linear_model.LogisticRegression`.

    Returns
    -------
    LogisticRegression
        The fitted model; score new images with ``model.predict_proba(encoder.encode(x))[:, 1]``.
    """
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=max_iter).fit(encoder.encode(_images(images, "images")), np.asarray(labels))


def per_group_auroc(
    labels: Any,
    scores: Any,
    in_group: Any,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
    names: Sequence[str] = ("group", "everyone else"),
) -> pd.DataFrame:
    """AUROC inside and outside a subgroup, each with a bootstrap interval.

    Within each part the test rows are resampled with replacement ``n_boot``
    times; resamples that hold only one class are skipped, and the interval is
    the central ``level`` share of the remaining AUROCs (percentile bootstrap).

    Parameters
    ----------
    labels : array-like (N,)
        True binary labels.
    scores : array-like (N,)
        Predicted scores or probabilities (higher = more likely positive).
    in_group : array-like of bool (N,)
        True for the rows of the subgroup.
    n_boot : int
        Bootstrap resamples per part.
    seed : int
        Seed of the resampling.
    level : float
        Coverage of the interval.
    names : (str, str)
        Row labels for the group and for everyone else.

    Returns
    -------
    DataFrame
        Index ``names``; columns ``AUROC``, ``low``, ``high`` and ``n`` (rows in the part).

    Raises
    ------
    MetricError
        When a part is empty or holds only one class (its AUROC is undefined).
    """
    from sklearn.metrics import roc_auc_score

    y, p, g = np.asarray(labels), np.asarray(scores, float), np.asarray(in_group, bool)
    if not (len(y) == len(p) == len(g)):
        raise MetricError(f"labels, scores and in_group must have the same length, got {len(y)}, {len(p)} and {len(g)}.")
    rng = np.random.default_rng(seed)
    rows = {}
    for name, sel in [(names[0], g), (names[1], ~g)]:
        yy, pp = y[sel], p[sel]
        if len(np.unique(yy)) < 2:
            raise MetricError(
                f"{name!r} has {len(yy)} rows with labels {sorted(set(yy.tolist()))}: AUROC needs both classes in each part."
            )
        boots = []
        for _ in range(n_boot):
            i = rng.integers(0, len(yy), len(yy))
            if 0 < yy[i].sum() < len(i):
                boots.append(roc_auc_score(yy[i], pp[i]))
        lo, hi = np.percentile(boots, [50 * (1 - level), 50 * (1 + level)]) if boots else (np.nan, np.nan)
        rows[name] = {"AUROC": roc_auc_score(yy, pp), "low": lo, "high": hi, "n": int(sel.sum())}
    return pd.DataFrame(rows).T


def metric_table(
    encoder: Any,
    real: Any,
    candidates: Mapping[str, Any],
    n: int = 200,
    k: int = 5,
    kid_subsets: int = 20,
    kid_subset_size: int = 100,
) -> pd.DataFrame:
    """FID, KID, precision, recall and coverage of several image sets against one real set.

    All sets are encoded with ``encoder``; the first ``n`` images of each
    candidate are compared with all of ``real``. FID and KID are multiplied by
    1000 (pixel features lie in [0, 1], so their raw values are small).

    Parameters
    ----------
    encoder : Encoder
        Anything with ``encode(images) -> (N, D) features``.
    real : ImageSet or array (N, C, H, W)
        The reference images.
    candidates : dict name -> ImageSet or array
        The sets to score, e.g. ``{"real vs real": other_real, "vae": vae}``; one row each, in this order.
    n : int
        Images used from each candidate.
    k : int
        Neighbourhood size of precision, recall and coverage (:func:`~medsynth_explore.metrics.prdc`).
    kid_subsets, kid_subset_size : int
        Subsets for :func:`~medsynth_explore.metrics.kid`.

    Returns
    -------
    DataFrame
        Index: the candidate names; columns ``FID x1000``, ``KID x1000``, ``precision``, ``recall``, ``coverage``.
    """
    f_real = encoder.encode(_images(real, "real"))
    rows = {}
    for name, s in candidates.items():
        f = encoder.encode(_images(s, name)[:n])
        res = prdc(f_real, f, k=k)
        rows[name] = {
            "FID x1000": 1000 * fid(f_real, f),
            "KID x1000": 1000 * kid(f_real, f, subsets=kid_subsets, subset_size=kid_subset_size)[0],
            "precision": res["precision"],
            "recall": res["recall"],
            "coverage": res["coverage"],
        }
    return pd.DataFrame(rows).T


def forest_plot(
    results: Mapping[str, pd.DataFrame] | pd.DataFrame,
    value: str = "AUROC",
    title: str | None = None,
    higher_is_better: bool | None = True,
):
    """A forest plot of per-group values with intervals, e.g. :func:`per_group_auroc` before and after a change.

    Parameters
    ----------
    results : DataFrame, or mapping name -> DataFrame
        Each frame indexed by group with columns ``value`` (default
        ``"AUROC"``), ``low``, ``high`` and optionally ``n``, as
        :func:`per_group_auroc` returns. Several frames (e.g. ``{"before":
        ..., "after": ...}``) are drawn as series, each group's lines together.
    value : str
        The column holding the values.
    title : str, optional
        Chart title (default: ``value`` by group with the interval level).
    higher_is_better : bool or None
        With a single table, marks the worst group in red (None: no marking);
        with several, colours tell the tables apart.

    Returns
    -------
    SVG
        Displays itself in a notebook; ``.text`` is the SVG, ``.save(path)`` writes it.

    Examples
    --------
    >>> t = pd.DataFrame({"AUROC": [0.7, 0.9], "low": [0.6, 0.85], "high": [0.8, 0.95], "n": [40, 60]},
    ...                  index=["group", "everyone else"])
    >>> svg = forest_plot({"before": t, "after": t + 0.02})
    >>> svg.text.count("class='point'")
    4
    """
    from .charts import SVG, forest_svg

    frames = {"": results} if isinstance(results, pd.DataFrame) else dict(results)
    if not frames:
        raise MetricError("forest_plot needs at least one table of results.")
    rows = []
    for name, df in frames.items():
        missing = [c for c in (value, "low", "high") if c not in df.columns]
        if missing:
            raise MetricError(f"the table {name!r} lacks columns {missing}; it has {list(df.columns)}.")
        for group, r in df.iterrows():
            n = r["n"] if "n" in df.columns else None
            rows.append({"label": str(group), "value": r[value], "low": r["low"], "high": r["high"], "n": n, "series": name})
    text = forest_svg(
        rows,
        title=title if title is not None else f"{value} by group, with 95% bootstrap intervals",
        higher_is_better=higher_is_better,
        series=list(frames),
        width=640,
    )
    return SVG(text)


def distance_histogram(distances: Mapping[str, Any], threshold: float | None = None, bins: int = 30, title: str = ""):
    """Overlaid histograms of nearest-neighbour distances (each a share of its own set), with a threshold line.

    Parameters
    ----------
    distances : mapping name -> array (N,)
        E.g. ``{"held-out real": d_held, "copier": d_copy}``, from :func:`medsynth_explore.metrics.nn_distances`.
    threshold : float, optional
        Drawn as a dashed line (e.g. the copy rate's threshold).
    bins : int
        Bins over [0, the largest distance].

    Returns
    -------
    SVG

    Examples
    --------
    >>> svg = distance_histogram({"a": np.array([0.1, 0.2]), "b": np.array([0.5, 0.6])}, threshold=0.15)
    >>> svg.text.count("<path")
    2
    """
    from .charts import SVG, histogram_svg

    arrays = {k: np.asarray(v, float).reshape(-1) for k, v in distances.items()}
    if not arrays or any(not len(a) or not np.isfinite(a).all() for a in arrays.values()):
        raise MetricError("distance_histogram needs one or more non-empty arrays of finite distances.")
    top = max(float(a.max()) for a in arrays.values()) or 1.0
    edges = np.linspace(0.0, top, int(bins) + 1)
    counts = {k: np.histogram(a, edges)[0] for k, a in arrays.items()}
    label = "threshold" if threshold is not None else ""
    return SVG(
        histogram_svg(
            edges, counts, title=title, marker=threshold, marker_label=label, xlabel="distance to the nearest training image"
        )
    )


def nearest_pairs(
    images: Any,
    train_images: Any,
    features: Any,
    train_features: Any,
    k: int = 6,
    threshold: float | None = None,
    title: str | None = None,
):
    """The ``k`` images closest to a training image, each beside that training image, with the distance.

    Parameters
    ----------
    images, train_images : array (N, C, H, W) or ImageSet
        The images to check (e.g. synthetic) and the training images.
    features, train_features : array (N, D)
        Their features (row for row), in which the distance is measured.
    k : int
        Pairs shown, closest first.
    threshold : float, optional
        Pairs nearer than this are marked "below threshold" (e.g. the copy rate's threshold).
    title : str, optional
        A line above the pairs.

    Returns
    -------
    Gallery
        Displays itself; ``.groups`` lists ``(caption, [query row, training row])`` per pair.

    Examples
    --------
    >>> x = np.random.default_rng(0).random((5, 1, 8, 8)).astype(np.float32)
    >>> g = nearest_pairs(x[:2], x, x[:2].reshape(2, -1), x.reshape(5, -1), k=2)
    >>> sorted(p.tolist() for _, p in g.groups)  # each image is its own nearest training image
    [[0, 0], [1, 1]]
    """
    import html

    from .data.display import STYLE, Gallery, grid_html
    from .metrics.privacy import nn_distances

    q, t = _images(images, "images"), _images(train_images, "train_images")
    d, j = nn_distances(features, train_features)
    if len(d) != len(q) or len(train_features) != len(t):
        raise DataError("features must have one row per image on each side.")
    order = np.argsort(d, kind="stable")[: max(0, int(k))]
    cells, groups = [], []
    for i in order:
        flag = " · below threshold" if threshold is not None and d[i] < threshold else ""
        caption = f"distance {d[i]:.3g}{flag}"
        cells.append(
            "<div style='display:inline-block;margin:0 14px 8px 0;vertical-align:top'>"
            + grid_html(np.stack([q[i], t[j[i]]]), [f"#{i}", f"training #{j[i]}"], width=80, style=False)
            + f"<div style='font-size:12px'>{caption}</div></div>"
        )
        groups.append((caption, np.array([int(i), int(j[i])])))
    head = f"<div class='msx-group'>{html.escape(title)}</div>" if title else ""
    return Gallery(groups=groups, html=f"{STYLE}<div class='msx-gallery'>{head}{''.join(cells)}</div>")
