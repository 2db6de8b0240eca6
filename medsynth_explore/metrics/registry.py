"""The metric registry: every metric declared once, and every caller dispatching through it.

A :class:`Metric` says what a metric is called, which pure function computes
it (its functional form), which values it returns (its :class:`Output` keys,
each with its direction: higher or lower is better), what it needs (real,
synthetic or training-set features, images, labels, a classifier, text),
its streaming accumulator if it has one, and how it behaves under subgroups
and the bootstrap. :func:`~medsynth_explore.evaluate`, the
:class:`~medsynth_explore.session.Session`, the Explorer panels and
:mod:`medsynth_explore.scale` look metrics up here, so a new metric is one
:func:`register_metric` call.

Kinds of metric:

``"set"``
    A value from two feature sets (real and synthetic), e.g. FID. Subgroups
    and bootstrap replicates recompute it on the chosen rows.
``"row"``
    The mean over synthetic samples of a per-sample score computed once
    against fixed sets (e.g. a copy flag against the whole training set):
    subgroups and replicates only average other rows.
``"whole"``
    Defined for the whole sets only (C_T, FID-infinity): not computed per
    subgroup or per bootstrap replicate.
``"external"``
    Computed from inputs other than the three feature sets (paired images,
    text embeddings, class probabilities, labels): listed here for its
    direction and needs, called directly through its function.

Examples
--------
>>> table = list_metrics()
>>> row = table.set_index("name").loc["coverage"]
>>> row["metric"], bool(row["higher_is_better"]), bool(row["streaming"]), row["needs"]
('prdc', True, True, ('real', 'synthetic'))
>>> [o for _, o in resolve(["prdc"])[0:1]]
[('precision', 'recall', 'density', 'coverage')]
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(200, 3))
>>> round(compute_metrics(["fid"], x, x + 1.0)["fid"], 6)
3.0
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from ..errors import MetricError

__all__ = [
    "NEEDS",
    "KINDS",
    "Output",
    "Metric",
    "MetricInputs",
    "MetricEngine",
    "register_metric",
    "unregister_metric",
    "get_metric",
    "list_metrics",
    "resolve",
    "output",
    "higher_is_better",
    "default_outputs",
    "with_spreads",
    "compute_metrics",
    "warnings_once",
    "streaming_state",
    "streaming_class",
]

#: What a metric can need, and what each word means.
NEEDS = {
    "real": "features of the real (reference) images",
    "synthetic": "features of the synthetic images",
    "train": "features of the generator's training images",
    "images": "paired images (before / after), not features",
    "labels": "one label per image (e.g. a finding)",
    "classifier": "a classifier, given or trained by the metric",
    "text": "text embeddings paired with the image embeddings",
    "probabilities": "class probabilities of a classifier for each image",
}

#: Kinds of metric (see the module docstring).
KINDS = ("set", "row", "whole", "external")


@dataclass(frozen=True)
class Output:
    """One value a metric returns.

    Parameters
    ----------
    name : str
        The key it is reported under (e.g. ``"coverage"``); unique across the registry.
    higher_is_better : bool or None
        ``True``/``False``; ``None`` when neither extreme is good (C_T is best near 0).
    label : str
        Short display name (``"Coverage"``).
    hint : str
        What it tells, in a word or two (``"diversity"``); panels show it beside the value.
    default : bool
        Part of the default set of :func:`~medsynth_explore.evaluate` (when its needs are met).
    spread : str, optional
        The output that gives this value's spread (``"kid_std"`` for ``"kid"``), reported beside it.
    """

    name: str
    higher_is_better: Optional[bool]
    label: str = ""
    hint: str = ""
    default: bool = False
    spread: Optional[str] = None

    @property
    def direction(self) -> str:
        """``"higher is better"``, ``"lower is better"`` or ``"closest to 0 is best"``."""
        if self.higher_is_better is None:
            return "closest to 0 is best"
        return "higher is better" if self.higher_is_better else "lower is better"


@dataclass
class MetricInputs:
    """What a metric's compute function receives.

    Attributes
    ----------
    real, synthetic, train : ndarray (N, D) or None
        Features (rows already chosen for a subgroup or a bootstrap replicate).
    seed : int
        Seed of any randomness inside the metric (KID subsets, k-means).
    bootstrap : bool
        True inside a bootstrap replicate: a metric may use a cheaper
        estimate there (KID uses a twentieth of its subsets).
    settings : dict
        Metric settings by name (``k``, ``kid_subsets``, ``kid_subset_size``, ``q``,
        ``knn_route``: ``"auto"``, ``"exact"`` or ``"approximate"`` neighbour search
        for the k-NN metrics, see :mod:`~medsynth_explore.metrics.knn`, ...).
    """

    real: Optional[np.ndarray] = None
    synthetic: Optional[np.ndarray] = None
    train: Optional[np.ndarray] = None
    seed: int = 0
    bootstrap: bool = False
    settings: dict = field(default_factory=dict)

    def setting(self, name: str, default: Any) -> Any:
        """A setting, or ``default`` when it was not given."""
        value = self.settings.get(name)
        return default if value is None else value


@dataclass(frozen=True)
class Metric:
    """A registered metric (see :func:`register_metric` for the fields)."""

    name: str
    function: Callable
    outputs: tuple[Output, ...]
    needs: tuple[str, ...]
    kind: str = "set"
    compute: Optional[Callable[[MetricInputs], Mapping[str, float]]] = None
    row_scores: Optional[Callable[[MetricInputs], Mapping[str, np.ndarray]]] = None
    streaming: Optional[type] = None
    neighbours: bool = False
    description: str = ""

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    def external_message(self) -> str:
        """Why an ``"external"`` metric is not computed from feature sets, and what to call instead."""
        return (
            f"{self.name} needs {', '.join(NEEDS[n] for n in self.needs)}, not only feature sets; "
            f"call {_public_module(self.function)}.{self.function.__name__}(...) directly."
        )

    def run(self, inputs: MetricInputs) -> dict:
        """Compute every output of this metric on ``inputs`` (raises :class:`MetricError`)."""
        if self.kind == "external":
            raise MetricError(self.external_message())
        if self.compute is not None:
            result = self.compute(inputs)
        else:
            result = _default_adapter(self, inputs)
        return {k: float(v) for k, v in dict(result).items()}


_REGISTRY: dict[str, Metric] = {}
_OUTPUTS: dict[str, str] = {}  # output name -> metric name


def _public_module(function: Callable) -> str:
    """``medsynth_explore.metrics`` for the package's own metric functions, else the function's module."""
    module = getattr(function, "__module__", "") or ""
    return "medsynth_explore.metrics" if module.startswith("medsynth_explore.metrics.") else module


def _default_adapter(metric: Metric, x: MetricInputs) -> dict:
    """Call ``function(real, synthetic)`` and name what it returns after the metric's outputs."""
    value = metric.function(x.real, x.synthetic)
    names = metric.output_names
    if isinstance(value, Mapping):
        return {n: value[n] for n in names}
    if isinstance(value, tuple):
        return dict(zip(names, value))
    return {names[0]: value}


def register_metric(
    name: str,
    function: Callable,
    outputs: Sequence[Output | str],
    needs: Sequence[str] = ("real", "synthetic"),
    *,
    kind: str = "set",
    compute: Optional[Callable[[MetricInputs], Mapping[str, float]]] = None,
    row_scores: Optional[Callable[[MetricInputs], Mapping[str, np.ndarray]]] = None,
    streaming: Optional[type] = None,
    neighbours: bool = False,
    description: str = "",
    higher_is_better: Optional[bool] = None,
    replace: bool = False,
) -> Metric:
    """Declare a metric once; every caller then finds it by name.

    Parameters
    ----------
    name : str
        The metric's name (``"prdc"``); asking for it selects all its outputs.
    function : callable
        The pure function users can call directly (its functional form).
    outputs : sequence of Output or str
        The values it returns. A plain string takes ``higher_is_better`` as its direction.
    needs : sequence of str
        Keys of :data:`NEEDS`.
    kind : {"set", "row", "whole", "external"}
        See the module docstring.
    compute : callable(MetricInputs) -> mapping, optional
        Output name -> value. Default: ``function(real, synthetic)``, whose
        float, tuple or dict result is named after ``outputs``.
    row_scores : callable(MetricInputs) -> mapping, required for ``kind="row"``
        Output name -> one score per synthetic row, computed once on the whole sets.
    streaming : class, optional
        Its :class:`~medsynth_explore.metrics.StreamingMetric` accumulator.
    neighbours : bool
        A nearest-neighbour metric: bootstrap replicates keep each resampled
        row once (a duplicated row would be its own neighbour).
    description : str
        One sentence for :func:`list_metrics`.
    replace : bool
        Allow replacing a metric of the same name.

    Returns
    -------
    Metric

    Examples
    --------
    >>> import numpy as np
    >>> m = register_metric("mean_gap", lambda r, s: float(abs(r.mean() - s.mean())), ["mean_gap"],
    ...                     higher_is_better=False, description="Distance between the feature means.")
    >>> compute_metrics(["mean_gap"], np.zeros((4, 2)), np.ones((4, 2)))
    {'mean_gap': 1.0}
    >>> unregister_metric("mean_gap")
    """
    if not isinstance(name, str) or not name:
        raise MetricError(f"a metric needs a non-empty name, got {name!r}.")
    if kind not in KINDS:
        raise MetricError(f"kind must be one of {KINDS}, got {kind!r}.")
    if not callable(function):
        raise MetricError(f"function of metric {name!r} must be callable, got {type(function).__name__}.")
    outs = tuple(o if isinstance(o, Output) else Output(str(o), higher_is_better) for o in outputs)
    if not outs:
        raise MetricError(f"metric {name!r} must declare at least one output.")
    unknown = sorted(set(needs) - set(NEEDS))
    if unknown:
        raise MetricError(f"metric {name!r} needs unknown inputs {unknown}; known: {sorted(NEEDS)}.")
    if kind == "row" and row_scores is None:
        raise MetricError(f"metric {name!r} is of kind 'row' and must give row_scores.")
    if name in _REGISTRY and not replace:
        raise MetricError(f"a metric called {name!r} is already registered; pass replace=True to replace it.")
    old = _REGISTRY.get(name)
    taken = {o.name: _OUTPUTS[o.name] for o in outs if o.name in _OUTPUTS and _OUTPUTS[o.name] != name}
    if taken:
        raise MetricError(f"output name(s) {sorted(taken)} already belong to metric(s) {sorted(set(taken.values()))}.")
    metric = Metric(name, function, outs, tuple(needs), kind, compute, row_scores, streaming, bool(neighbours), description)
    if old is not None:
        for o in old.outputs:
            _OUTPUTS.pop(o.name, None)
    _REGISTRY[name] = metric
    for o in outs:
        _OUTPUTS[o.name] = name
    return metric


def unregister_metric(name: str) -> None:
    """Remove a metric (and its outputs) from the registry."""
    metric = _REGISTRY.pop(name, None)
    if metric is None:
        raise MetricError(f"no metric called {name!r} is registered.")
    for o in metric.outputs:
        _OUTPUTS.pop(o.name, None)


def _known() -> str:
    return ", ".join(sorted(set(_OUTPUTS) | set(_REGISTRY)))


def get_metric(name: str) -> Metric:
    """The metric called ``name``, or the one that returns the output ``name``.

    Examples
    --------
    >>> get_metric("coverage").name
    'prdc'
    """
    if name in _OUTPUTS:
        return _REGISTRY[_OUTPUTS[name]]
    if name in _REGISTRY:
        return _REGISTRY[name]
    raise MetricError(f"unknown metric {name!r}; choose from {_known()}.")


def output(name: str) -> Output:
    """The :class:`Output` called ``name`` (its direction, label and hint).

    Examples
    --------
    >>> output("fid").direction
    'lower is better'
    """
    if name not in _OUTPUTS:
        raise MetricError(f"unknown metric value {name!r}; choose from {', '.join(sorted(_OUTPUTS))}.")
    return next(o for o in _REGISTRY[_OUTPUTS[name]].outputs if o.name == name)


def higher_is_better(name: str) -> Optional[bool]:
    """Whether a larger value of output ``name`` is better (None: nearest 0 is best).

    Examples
    --------
    >>> higher_is_better("coverage"), higher_is_better("kid")
    (True, False)
    """
    return output(name).higher_is_better


def resolve(names: Iterable[str] | str) -> list[tuple[Metric, tuple[str, ...]]]:
    """Metrics to run and the outputs wanted of each, in the order asked, without repeats.

    A name is an output (``"coverage"``: that value) or a metric (``"prdc"``:
    all its values); where both exist the output wins (``"kid"`` gives KID,
    ``"kid_std"`` its spread).

    Examples
    --------
    >>> [(m.name, outs) for m, outs in resolve(["coverage", "fid", "precision"])]
    [('prdc', ('coverage', 'precision')), ('fid', ('fid',))]
    """
    names = [names] if isinstance(names, str) else list(names)
    plan: dict[str, list[str]] = {}
    for n in names:
        if not isinstance(n, str):
            raise MetricError(f"metric names must be strings, got {n!r}.")
        metric = get_metric(n)
        wanted = [n] if n in _OUTPUTS else list(metric.output_names)
        got = plan.setdefault(metric.name, [])
        got.extend(o for o in wanted if o not in got)
    return [(_REGISTRY[m], tuple(outs)) for m, outs in plan.items()]


def with_spreads(names: Iterable[str] | str) -> list[str]:
    """``names`` with, after each value that has one, its spread (unless already named).

    Examples
    --------
    >>> with_spreads(["fid", "kid", "prdc"])
    ['fid', 'kid', 'kid_std', 'prdc']
    """
    names = [names] if isinstance(names, str) else list(names)
    out: list[str] = []
    for n in names:
        out.append(n)
        spread = output(n).spread if n in _OUTPUTS else None
        if spread and spread not in names:
            out.append(spread)
    return out


def default_outputs(available: Iterable[str] = ("real", "synthetic")) -> tuple[str, ...]:
    """Outputs marked default whose metric's needs are all in ``available``.

    Examples
    --------
    >>> default_outputs()
    ('fid', 'kid', 'precision', 'recall', 'density', 'coverage')
    >>> default_outputs(("real", "synthetic", "train"))[-3:]
    ('authenticity', 'copy_rate', 'ct')
    """
    have = set(available)
    return tuple(o.name for m in _REGISTRY.values() if set(m.needs) <= have for o in m.outputs if o.default)


def list_metrics() -> pd.DataFrame:
    """Every registered metric value, one row each.

    Returns
    -------
    DataFrame
        Columns ``name`` (the output key to ask for), ``metric`` (the
        registered metric it comes from; asking for it gives all its values),
        ``higher_is_better``, ``streaming`` (an accumulator exists), ``state``
        (its class), ``needs``, ``kind``, ``label``, ``hint``, ``default``,
        ``function`` and ``description``.

    Examples
    --------
    >>> t = list_metrics()
    >>> {"name", "higher_is_better", "streaming", "needs"} <= set(t.columns)
    True
    """
    rows = []
    for m in _REGISTRY.values():
        fn = f"{_public_module(m.function)}.{getattr(m.function, '__qualname__', m.function.__name__)}"
        for o in m.outputs:
            rows.append(
                {
                    "name": o.name,
                    "metric": m.name,
                    "higher_is_better": o.higher_is_better,
                    "streaming": m.streaming is not None,
                    "state": m.streaming.__name__ if m.streaming is not None else None,
                    "needs": m.needs,
                    "kind": m.kind,
                    "label": o.label or o.name,
                    "hint": o.hint,
                    "default": o.default,
                    "function": fn,
                    "description": m.description,
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "name",
            "metric",
            "higher_is_better",
            "streaming",
            "state",
            "needs",
            "kind",
            "label",
            "hint",
            "default",
            "function",
            "description",
        ],
    )


def streaming_class(name: str) -> type:
    """The streaming accumulator class of a metric, an output, or an accumulator's own class name.

    Examples
    --------
    >>> streaming_class("kid_std").__name__, streaming_class("StreamingPRDC").__name__
    ('StreamingKID', 'StreamingPRDC')
    """
    by_class = {m.streaming.__name__.lower(): m.streaming for m in _REGISTRY.values() if m.streaming is not None}
    if isinstance(name, str) and name.lower() in by_class:
        return by_class[name.lower()]
    metric = get_metric(name)
    if metric.streaming is None:
        streaming = [m.name for m in _REGISTRY.values() if m.streaming is not None]
        raise MetricError(f"{metric.name} has no streaming accumulator; metrics that stream: {', '.join(streaming)}.")
    return metric.streaming


def streaming_state(name: str, **settings: Any):
    """A fresh streaming accumulator for metric (or output) ``name``.

    Examples
    --------
    >>> type(streaming_state("coverage", k=3)).__name__
    'StreamingPRDC'
    """
    return streaming_class(name)(**settings)


# ------------------------------------------------------------------------------------ engine
class MetricEngine:
    """Chosen metrics on row subsets of fixed feature sets (the whole sets, subgroups, bootstrap replicates).

    Parameters
    ----------
    names : str or sequence of str
        Outputs or metrics (see :func:`resolve`).
    real, synthetic : ndarray (N, D)
    train : ndarray (N, D), optional
        The generator's training features, for metrics that need them.
    seed : int
    errors : {"raise", "nan"}
        What a metric that cannot be computed on some rows gives: its
        :class:`MetricError`, or NaN for its values (a small subgroup).
    **settings
        Metric settings (``k``, ``kid_subsets``, ``kid_subset_size``, ``q``, ...).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> eng = MetricEngine(["fid", "coverage"], rng.normal(size=(100, 2)), rng.normal(size=(80, 2)), k=3)
    >>> sorted(eng.run(np.arange(50), np.arange(40)))
    ['coverage', 'density', 'fid', 'precision', 'recall']
    """

    def __init__(
        self,
        names,
        real: np.ndarray,
        synthetic: np.ndarray,
        train: Optional[np.ndarray] = None,
        *,
        seed: int = 0,
        errors: str = "raise",
        **settings: Any,
    ) -> None:
        if errors not in ("raise", "nan"):
            raise MetricError(f"errors must be 'raise' or 'nan', got {errors!r}.")
        self.plan = resolve(names)
        self.outputs = [o for _, outs in self.plan for o in outs]
        self.real, self.synthetic, self.train = real, synthetic, train
        self.seed, self.errors, self.settings = int(seed), errors, dict(settings)
        have = {"real", "synthetic"} | ({"train"} if train is not None else set())
        for metric, outs in self.plan:
            if metric.kind == "external":
                raise MetricError(metric.external_message())
            missing = [n for n in metric.needs if n not in have]
            if missing:
                raise MetricError(
                    f"{', '.join(outs)} need{'s' if len(outs) == 1 else ''} "
                    + ", ".join(f"{NEEDS[n]} ({n}=...)" for n in missing)
                    + "."
                )
        self._rows: dict[str, np.ndarray] = {}
        for metric, _ in self.plan:
            if metric.kind == "row":
                whole = MetricInputs(real, synthetic, train, self.seed, False, self.settings)
                self._rows.update({k: np.asarray(v, float) for k, v in metric.row_scores(whole).items()})

    def run(
        self,
        real_rows: Optional[np.ndarray] = None,
        synthetic_rows: Optional[np.ndarray] = None,
        bootstrap: bool = False,
        whole: bool = False,
    ) -> dict:
        """Values of every planned metric on the given rows (None: all rows).

        ``bootstrap`` marks a bootstrap replicate (cheaper estimates, distinct
        rows for nearest-neighbour metrics, RuntimeWarnings silenced);
        metrics of kind ``"whole"`` run only with ``whole=True``.
        """
        r = self.real if real_rows is None else self.real[real_rows]
        s = self.synthetic if synthetic_rows is None else self.synthetic[synthetic_rows]
        n_syn = len(self.synthetic) if synthetic_rows is None else len(synthetic_rows)
        out: dict = {}
        with warnings.catch_warnings():
            if bootstrap:
                warnings.simplefilter("ignore", RuntimeWarning)
            for metric, _ in self.plan:
                if metric.kind == "whole" and (not whole or bootstrap):
                    continue
                if metric.kind == "row":
                    for k in metric.output_names:
                        v = self._rows[k] if synthetic_rows is None else self._rows[k][synthetic_rows]
                        out[k] = float(v.mean()) if n_syn else float("nan")
                    continue
                rr, ss = (np.unique(r, axis=0), np.unique(s, axis=0)) if bootstrap and metric.neighbours else (r, s)
                inputs = MetricInputs(rr, ss, self.train, self.seed, bootstrap, self.settings)
                try:
                    out.update(metric.run(inputs))
                except MetricError:
                    if self.errors == "raise":
                        raise
                    out.update({k: float("nan") for k in metric.output_names})
        return out


@contextlib.contextmanager
def warnings_once():
    """Within the block, each distinct warning (category and text) is shown once, at the end.

    A loop that measures several generators with the same settings (the
    trilemma) would otherwise repeat the same caveat, such as FID's
    rank-deficiency warning, once per generator: the metrics' own
    ``catch_warnings`` blocks reset Python's once-per-place memory.

    Examples
    --------
    >>> with warnings.catch_warnings(record=True) as seen:
    ...     warnings.simplefilter("always")
    ...     with warnings_once():
    ...         for _ in range(3):
    ...             warnings.warn("same caveat", RuntimeWarning)
    >>> len(seen)
    1
    """
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:  # shown under the caller's filters, also when the block raised
        seen = set()
        for w in caught:
            key = (w.category, str(w.message))
            if key not in seen:
                seen.add(key)
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, module=w.filename)


def compute_metrics(names, real: Any, synthetic: Any, train: Any = None, seed: int = 0, **settings: Any) -> dict:
    """Values of the named metrics on whole feature sets, in the order asked.

    Raises :class:`MetricError` when one cannot be computed.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sorted(compute_metrics("prdc", rng.normal(size=(50, 2)), rng.normal(size=(50, 2)), k=3))
    ['coverage', 'density', 'precision', 'recall']
    """
    eng = MetricEngine(
        names, np.asarray(real), np.asarray(synthetic), None if train is None else np.asarray(train), seed=seed, **settings
    )
    values = eng.run(whole=True)
    return {k: values[k] for k in eng.outputs if k in values}


# ------------------------------------------------------------------------------------ built-ins
def _register_builtins() -> None:
    from .cas import cas
    from .fid import fid, fid_infinity, relative_fd
    from .image import psnr, ssim
    from .kernel import cmmd, kid
    from .prdc import prdc
    from .privacy import authenticity, ct_test, nn_distances
    from .scores import clip_score, inception_score
    from .streaming import StreamingCMMD, StreamingFID, StreamingKID, StreamingPRDC

    def kid_compute(x: MetricInputs) -> dict:
        subsets = int(x.setting("kid_subsets", 100))
        if x.bootstrap:
            subsets = max(2, subsets // 20)
        mean, std = kid(x.real, x.synthetic, subsets=subsets, subset_size=int(x.setting("kid_subset_size", 1000)), seed=x.seed)
        return {"kid": mean, "kid_std": std}

    def route(x: MetricInputs) -> dict:
        """Neighbour search settings of the k-NN metrics (see metrics/knn.py): ``knn_route`` and its seed."""
        return {"route": str(x.setting("knn_route", "auto")), "seed": x.seed}

    def authenticity_rows(x: MetricInputs) -> dict:
        a = authenticity(x.train, x.synthetic, **route(x))
        return {"authenticity": 1.0 - a["unauthentic"].astype(float)}

    def copy_rows(x: MetricInputs) -> dict:
        q = float(x.setting("q", 0.01))
        if not 0.0 < q < 1.0:
            raise MetricError(f"q must lie in (0, 1), got {q}.")
        d_syn, _ = nn_distances(x.synthetic, x.train, **route(x))
        d_held, _ = nn_distances(x.real, x.train, **route(x))
        return {"copy_rate": (d_syn < float(np.quantile(d_held, q))).astype(float)}

    def ct_compute(x: MetricInputs) -> dict:
        cells = int(max(1, min(int(x.setting("n_cells", 10)), len(x.real) // 20, len(x.synthetic) // 20)))
        return {"ct": ct_test(x.train, x.real, x.synthetic, n_cells=cells, seed=x.seed)["ct"]}

    lower, higher = False, True
    register_metric(
        "fid",
        fid,
        [Output("fid", lower, "FID", "lower is better", default=True)],
        streaming=StreamingFID,
        description="Frechet distance between Gaussians fitted to the real and synthetic features.",
    )
    register_metric(
        "kid",
        kid,
        [Output("kid", lower, "KID", "lower is better", default=True, spread="kid_std"), Output("kid_std", lower, "KID spread")],
        compute=kid_compute,
        streaming=StreamingKID,
        description="Unbiased MMD^2 with a cubic polynomial kernel, mean and spread over random subsets.",
    )
    register_metric(
        "cmmd",
        cmmd,
        [Output("cmmd", lower, "CMMD", "lower is better")],
        streaming=StreamingCMMD,
        compute=lambda x: {"cmmd": cmmd(x.real, x.synthetic)},
        description="MMD with a Gaussian kernel on CLIP-like embeddings (Jayasumana et al. 2024).",
    )
    register_metric(
        "prdc",
        prdc,
        [
            Output("precision", higher, "Precision", "fidelity", default=True),
            Output("recall", higher, "Recall", "diversity", default=True),
            Output("density", higher, "Density", "fidelity", default=True),
            Output("coverage", higher, "Coverage", "diversity", default=True),
        ],
        compute=lambda x: prdc(x.real, x.synthetic, k=int(x.setting("k", 5)), **route(x)),
        streaming=StreamingPRDC,
        neighbours=True,
        description="Precision, recall, density and coverage from k-nearest-neighbour balls (Naeem et al. 2020).",
    )
    register_metric(
        "fid_infinity",
        fid_infinity,
        [Output("fid_inf", lower, "FID-inf", "lower is better")],
        kind="whole",
        compute=lambda x: {"fid_inf": fid_infinity(x.real, x.synthetic, seed=x.seed)["fid_inf"]},
        description="FID extrapolated to infinitely many synthetic samples (Chong & Forsyth 2020).",
    )
    register_metric(
        "relative_fd",
        relative_fd,
        [Output("relative_fd", lower, "Relative FD", "about 1: as far as real from real")],
        kind="whole",
        compute=lambda x: {"relative_fd": relative_fd(x.real, x.synthetic, seed=x.seed)["relative"]},
        description="Frechet distance relative to the distance between two halves of the real set.",
    )
    register_metric(
        "authenticity",
        authenticity,
        [Output("authenticity", higher, "Authenticity", "privacy", default=True)],
        needs=("synthetic", "train"),
        kind="row",
        row_scores=authenticity_rows,
        neighbours=True,
        description="Share of synthetic samples farther from their nearest training image than its own neighbour is.",
    )
    from .privacy import copy_rate

    register_metric(
        "copy_rate",
        copy_rate,
        [Output("copy_rate", lower, "Copy rate", "memorisation", default=True)],
        needs=("real", "synthetic", "train"),
        kind="row",
        row_scores=copy_rows,
        neighbours=True,
        description="Share of synthetic samples nearer to a training image than the 1st percentile of "
        "held-out (real) to training distances.",
    )
    register_metric(
        "ct",
        ct_test,
        [Output("ct", None, "C_T", "below -3: copying", default=True)],
        needs=("real", "synthetic", "train"),
        kind="whole",
        compute=ct_compute,
        neighbours=True,
        description="C_T data-copying statistic (Meehan et al. 2020); real acts as the held-out set.",
    )
    register_metric(
        "clip_score",
        clip_score,
        [Output("clip_score", higher, "CLIPScore", "text match")],
        needs=("synthetic", "text"),
        kind="external",
        description="Cosine similarity of paired image and text embeddings, 100 max(cos, 0).",
    )
    register_metric(
        "inception_score",
        inception_score,
        [Output("inception_score", higher, "Inception score", "confident and diverse")],
        needs=("probabilities",),
        kind="external",
        description="exp(E KL(p(y|x) || p(y))) from a classifier's class probabilities.",
    )
    register_metric(
        "ssim",
        ssim,
        [Output("ssim", higher, "SSIM", "structure kept")],
        needs=("images",),
        kind="external",
        description="Structural similarity of paired images, optionally inside or outside a mask.",
    )
    register_metric(
        "psnr",
        psnr,
        [Output("psnr", higher, "PSNR", "pixels kept")],
        needs=("images",),
        kind="external",
        description="Peak signal-to-noise ratio of paired images, optionally inside or outside a mask.",
    )
    register_metric(
        "cas",
        cas,
        [Output("cas", higher, "CAS", "usefulness for training")],
        needs=("real", "synthetic", "labels", "classifier"),
        kind="external",
        description="Accuracy on real test data of a classifier trained on synthetic data, beside train-on-real.",
    )
    _register_clinical_checks()


def _register_clinical_checks() -> None:
    """Membership inference, the anatomy checks and the stress test: listed here, called through their functions."""
    from .counterfactual import edit_effect
    from .membership import membership_inference
    from .segmentation import anatomy_summary, ctr_error, dice

    lower, higher = False, True
    register_metric(
        "membership_inference",
        membership_inference,
        [
            Output("mia_auc", lower, "MIA AUC", "0.5: members not told apart"),
            Output("mia_tpr_at_1pct_fpr", lower, "MIA TPR at 1% FPR", "about 0.01: nothing leaks"),
        ],
        needs=("synthetic", "train", "real"),
        kind="external",
        description="Distance attack: training images (train) vs held-out ones (real) scored by their nearest synthetic "
        "sample; ROC AUC and TPR at 1% FPR with bootstrap intervals.",
    )
    register_metric(
        "membership_inference_loss",
        membership_inference,
        [
            Output("mia_loss_auc", lower, "Loss-attack AUC", "0.5: members not told apart"),
            Output("mia_loss_tpr_at_1pct_fpr", lower, "Loss-attack TPR at 1% FPR", "about 0.01: nothing leaks"),
        ],
        needs=("train", "real", "images"),
        kind="external",
        description="Loss attack (attack='loss', generator=...): the diffusion model's denoising error at chosen timesteps "
        "(or a VAE's negative ELBO) on training vs held-out images.",
    )
    register_metric(
        "dice",
        dice,
        [Output("dice", higher, "Dice", "structures overlap")],
        needs=("images",),
        kind="external",
        description="Dice overlap of paired segmentation masks, optionally in a region (e.g. outside an inpainting mask).",
    )
    register_metric(
        "ctr_error",
        ctr_error,
        [Output("ctr_mae", lower, "CTR error", "vs the true cardiothoracic ratio")],
        needs=("images", "labels"),
        kind="external",
        description="Mean absolute error of cardiothoracic ratios measured by segmentation (anatomy.measure) against "
        "the true ones.",
    )
    register_metric(
        "anatomy",
        anatomy_summary,
        [
            Output("implausible_rate", lower, "Implausible anatomy", "lungs and heart not where a chest has them"),
            Output("ctr_mean", None, "Mean CTR", "above 0.5: enlarged heart"),
            Output("ctr_above_half", None, "CTR > 0.5", "share with an enlarged heart"),
        ],
        needs=("images",),
        kind="external",
        description="Anatomy of images segmented by anatomy.measure: share of implausible lungs/heart and the CTR distribution.",
    )
    register_metric(
        "stress_test",
        edit_effect,
        [
            Output("effect", None, "Edit effect", "score moved by the edit, beyond a null edit"),
            Output("flipped", None, "Calls flipped", "share whose call changes"),
        ],
        needs=("images", "classifier"),
        kind="external",
        description="Classifier stress test (medsynth_explore.stress_test): counterfactual pairs by inpainting (add or remove "
        "a finding, remove a chest tube); mean score movement per edit beside a null edit, with bootstrap intervals.",
    )


_register_builtins()
