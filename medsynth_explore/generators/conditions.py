"""Conditions a generator accepts, their validation and their encoding.

A :class:`ConditionSchema` lists :class:`Condition` objects of four kinds:

``"continuous"``
    A number inside ``range`` (inclusive), e.g. age 18..90.
``"categorical"``
    One of ``values``, e.g. sex F/M.
``"findings"``
    A multi-label set of ``names``; each name becomes a 0/1 column.
``"text"``
    A free-text prompt of at most ``max_tokens`` whitespace-separated tokens.

Validation rules (:meth:`ConditionSchema.validate`): an unknown condition name,
category or finding raises :class:`~medsynth_explore.errors.ConditionError`
naming the allowed values; a continuous value outside its range (the range the
model was trained on) raises ``ConditionError`` stating the range; NaN is
refused. Values are either one scalar for every image or one value per image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..errors import ConditionError

__all__ = [
    "Condition",
    "ConditionSchema",
    "encode_conditions",
    "phantomcxr_schema",
    "condition_distribution",
    "draw_conditions",
    "chexpert_schema",
    "as_schema",
    "read_conditions_file",
    "conditions_to_prompt",
    "CONDITIONS_FILE",
    "RACES",
]

KINDS = ("continuous", "categorical", "findings", "text")


@dataclass(frozen=True)
class Condition:
    """One condition a generator accepts.

    Parameters
    ----------
    name : str
    kind : {"continuous", "categorical", "findings", "text"}
    range : (float, float), for continuous conditions
    values : tuple of str, for categorical conditions
    names : tuple of str, for findings (multi-label)
    max_tokens : int, for text
    description : str

    Examples
    --------
    >>> Condition("age", "continuous", range=(18, 90)).range
    (18.0, 90.0)
    """

    name: str
    kind: str
    range: tuple | None = None
    values: tuple | None = None
    names: tuple | None = None
    max_tokens: int | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConditionError(f"condition {self.name!r} has unknown kind {self.kind!r}; use one of {', '.join(KINDS)}.")
        if self.kind == "continuous":
            if self.range is None or len(self.range) != 2 or not float(self.range[0]) < float(self.range[1]):
                raise ConditionError(f"continuous condition {self.name!r} needs range=(low, high) with low < high.")
            object.__setattr__(self, "range", (float(self.range[0]), float(self.range[1])))
        if self.kind == "categorical":
            if not self.values:
                raise ConditionError(f"categorical condition {self.name!r} needs a non-empty values list.")
            object.__setattr__(self, "values", tuple(str(v) for v in self.values))
        if self.kind == "findings":
            if not self.names:
                raise ConditionError(f"findings condition {self.name!r} needs a non-empty names list.")
            object.__setattr__(self, "names", tuple(str(v) for v in self.names))
        if self.kind == "text" and self.max_tokens is None:
            object.__setattr__(self, "max_tokens", 77)

    @property
    def width(self) -> int:
        """Number of columns this condition takes in :func:`encode_conditions`."""
        return {"continuous": 1, "categorical": len(self.values or ()), "findings": len(self.names or ()), "text": 0}[self.kind]

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.range is not None:
            d["range"] = list(self.range)
        if self.values is not None:
            d["values"] = list(self.values)
        if self.names is not None:
            d["names"] = list(self.names)
        if self.max_tokens is not None:
            d["max_tokens"] = int(self.max_tokens)
        if self.description:
            d["description"] = self.description
        return d


@dataclass(frozen=True)
class ConditionSchema:
    """The set of conditions a generator understands.

    Examples
    --------
    >>> s = ConditionSchema([Condition("age", "continuous", range=(18, 90)),
    ...                      Condition("sex", "categorical", values=("F", "M")),
    ...                      Condition("findings", "findings", names=("effusion", "nodule"))])
    >>> s.validate({"age": 40, "sex": "F", "findings": ["effusion"]})
    {'age': 40.0, 'sex': 'F', 'effusion': 1, 'nodule': 0}
    >>> s.validate({"age": 12})
    Traceback (most recent call last):
    ...
    medsynth_explore.errors.ConditionError: age=12 is outside the range the model was trained on, 18 to 90; ...
    """

    conditions: tuple = field(default_factory=tuple)

    def __post_init__(self) -> None:
        conds = tuple(self.conditions)
        names = [c.name for c in conds]
        if len(set(names)) != len(names):
            raise ConditionError(f"condition names must be unique, got {names}.")
        object.__setattr__(self, "conditions", conds)

    # -- introspection -------------------------------------------------------------
    def __iter__(self):
        return iter(self.conditions)

    def __len__(self) -> int:
        return len(self.conditions)

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.conditions)

    def __getitem__(self, name: str) -> Condition:
        for c in self.conditions:
            if c.name == name:
                return c
        raise ConditionError(f"unknown condition {name!r}; this model accepts {', '.join(self.names) or 'no conditions'}.")

    @property
    def names(self) -> list[str]:
        """Names of the conditions, in order."""
        return [c.name for c in self.conditions]

    @property
    def finding_names(self) -> list[str]:
        """All finding labels (of every ``findings`` condition), in order."""
        return [n for c in self.conditions if c.kind == "findings" for n in c.names]

    @property
    def columns(self) -> list[str]:
        """Metadata columns a resolved condition table has (text as ``prompt``)."""
        cols = []
        for c in self.conditions:
            if c.kind == "findings":
                cols += list(c.names)
            elif c.kind == "text":
                cols.append("prompt")
            else:
                cols.append(c.name)
        return cols

    @property
    def width(self) -> int:
        """Length K of the vectors made by :func:`encode_conditions`."""
        return sum(c.width for c in self.conditions)

    @property
    def has_text(self) -> bool:
        return any(c.kind == "text" for c in self.conditions)

    def to_dict(self) -> dict:
        """JSON-serialisable form, stored in model cards."""
        return {"conditions": [c.to_dict() for c in self.conditions]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "ConditionSchema":
        """Rebuild a schema from :meth:`to_dict` output (``None`` gives an empty schema).

        Examples
        --------
        >>> s = ConditionSchema([Condition("sex", "categorical", values=("F", "M"))])
        >>> ConditionSchema.from_dict(s.to_dict()) == s
        True
        """
        if not d:
            return cls(())
        items = d.get("conditions") if isinstance(d, Mapping) else None
        if not isinstance(items, list):
            raise ConditionError("a condition schema must be a mapping with a 'conditions' list.")
        out = []
        for it in items:
            kw = dict(it)
            for k in ("range", "values", "names"):
                if kw.get(k) is not None:
                    kw[k] = tuple(kw[k])
            out.append(Condition(**kw))
        return cls(tuple(out))

    # -- validation -----------------------------------------------------------------
    def _check_continuous(self, c: Condition, v: Any) -> Any:
        arr = np.asarray(v)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or arr.dtype == bool:
            raise ConditionError(f"{c.name} must be a number in {c.range[0]:g} to {c.range[1]:g}, got {v!r}.")
        arr = arr.astype(float)
        if not np.isfinite(arr).all():
            raise ConditionError(f"{c.name} contains NaN or infinite values; give numbers in {c.range[0]:g} to {c.range[1]:g}.")
        lo, hi = c.range
        bad = arr[(arr < lo) | (arr > hi)]
        if bad.size:
            raise ConditionError(
                f"{c.name}={bad.reshape(-1)[0]:g} is outside the range the model was trained on, {lo:g} to {hi:g}; "
                "choose a value in that range."
            )
        return float(arr) if arr.ndim == 0 else arr

    def _check_categorical(self, c: Condition, v: Any) -> Any:
        vals = [v] if isinstance(v, str) or np.ndim(v) == 0 else list(v)
        for x in vals:
            if str(x) not in c.values:
                raise ConditionError(f"{c.name}={x!r} is not allowed; choose one of {', '.join(c.values)}.")
        return str(v) if isinstance(v, str) or np.ndim(v) == 0 else np.array([str(x) for x in vals], dtype=object)

    def _check_flag(self, name: str, v: Any) -> Any:
        arr = np.asarray(v)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise ConditionError(f"finding {name!r} must be 0/1 (or True/False), got {v!r}.")
        if not np.isin(arr.astype(float), (0.0, 1.0)).all():
            raise ConditionError(f"finding {name!r} must be 0/1 (or True/False), got {v!r}.")
        arr = arr.astype(int)
        return int(arr) if arr.ndim == 0 else arr

    def _findings_from_list(self, c: Condition, v: Any) -> dict[str, Any]:
        allowed = ", ".join(c.names)
        if isinstance(v, str):
            v = [x.strip() for x in v.replace(";", ",").split(",") if x.strip()]
        if isinstance(v, Mapping):
            out = {n: 0 for n in c.names}
            for k, flag in v.items():
                if k not in c.names:
                    raise ConditionError(f"unknown finding {k!r}; allowed findings are {allowed}.")
                out[k] = self._check_flag(k, flag)
            return out
        v = list(v)
        if v and all(isinstance(x, (list, tuple, set, frozenset)) for x in v):
            # one list of findings per image
            for row in v:
                for x in row:
                    if x not in c.names:
                        raise ConditionError(f"unknown finding {x!r}; allowed findings are {allowed}.")
            return {n: np.array([int(n in row) for row in v]) for n in c.names}
        for x in v:
            if not isinstance(x, str) or x not in c.names:
                raise ConditionError(f"unknown finding {x!r}; allowed findings are {allowed}.")
        return {n: int(n in v) for n in c.names}

    def validate(self, conditions: Mapping[str, Any] | pd.DataFrame | None) -> dict:
        """Check requested conditions and return them in canonical form.

        Parameters
        ----------
        conditions : mapping or DataFrame or None
            Keys are condition names (``age``, ``sex``, ``findings``,
            ``prompt``/the text condition's name) or finding names used as
            0/1 flags. A value is one scalar for every image or a sequence with
            one value per image. ``findings`` takes a list of names (those
            not listed are set to 0), a comma-separated string, a mapping
            name -> 0/1, or one list per image. A DataFrame is read column by
            column.

        Returns
        -------
        dict
            Keys are metadata columns (continuous/categorical names, one key
            per finding, ``prompt``); values are scalars or 1-D arrays.

        Raises
        ------
        ConditionError
            Unknown names, categories or findings (the message lists the
            allowed values), out-of-range or NaN continuous values (the message
            gives the range), or text longer than ``max_tokens``.

        Examples
        --------
        >>> s = ConditionSchema([Condition("findings", "findings", names=("effusion", "nodule"))])
        >>> s.validate({"findings": ["fracture"]})
        Traceback (most recent call last):
        ...
        medsynth_explore.errors.ConditionError: unknown finding 'fracture'; allowed findings are effusion, nodule.
        """
        if conditions is None:
            return {}
        if isinstance(conditions, pd.DataFrame):
            conditions = {k: conditions[k].to_numpy() for k in conditions.columns}
        if not isinstance(conditions, Mapping):
            raise ConditionError(
                f"conditions must be a dict (e.g. {{'age': 60, 'sex': 'F', 'findings': ['effusion']}}) or a DataFrame, "
                f"got {type(conditions).__name__}."
            )
        by_name = {c.name: c for c in self.conditions}
        finding_of = {n: c for c in self.conditions if c.kind == "findings" for n in c.names}
        text = next((c for c in self.conditions if c.kind == "text"), None)
        out: dict[str, Any] = {}
        for key, value in conditions.items():
            if key in by_name:
                c = by_name[key]
                if c.kind == "continuous":
                    out[key] = self._check_continuous(c, value)
                elif c.kind == "categorical":
                    out[key] = self._check_categorical(c, value)
                elif c.kind == "findings":
                    for n, flag in self._findings_from_list(c, value).items():
                        out.setdefault(n, flag)
                else:
                    out["prompt"] = self._check_text(c, value)
            elif key in finding_of:
                out[key] = self._check_flag(key, value)
            elif key == "prompt" and text is not None:
                out["prompt"] = self._check_text(text, value)
            else:
                allowed = self.names + self.finding_names
                raise ConditionError(f"unknown condition {key!r}; this model accepts {', '.join(allowed) or 'no conditions'}.")
        # explicit per-finding keys override the list form
        for key, value in conditions.items():
            if key in finding_of:
                out[key] = self._check_flag(key, value)
        return out

    def _check_text(self, c: Condition, value: Any) -> Any:
        vals = [value] if isinstance(value, str) else list(value)
        for v in vals:
            if not isinstance(v, str):
                raise ConditionError(f"{c.name} must be text, got {v!r}.")
            if c.max_tokens and len(v.split()) > c.max_tokens:
                raise ConditionError(f"{c.name} has {len(v.split())} words; this model reads at most {c.max_tokens}. Shorten it.")
        return value if isinstance(value, str) else np.array(vals, dtype=object)


def phantomcxr_schema(text: bool = False, max_tokens: int = 77) -> ConditionSchema:
    """The standard PhantomCXR condition schema.

    age continuous 18..90, sex categorical F/M, findings multi-label from
    :data:`medsynth_explore.phantom.FINDINGS`, and optionally a text prompt.

    Examples
    --------
    >>> phantomcxr_schema().names
    ['age', 'sex', 'findings']
    """
    from ..phantom import FINDINGS

    conds = [
        Condition("age", "continuous", range=(18, 90), description="patient age in years"),
        Condition("sex", "categorical", values=("F", "M"), description="patient sex"),
        Condition("findings", "findings", names=tuple(FINDINGS), description="radiological findings (multi-label)"),
    ]
    if text:
        conds.append(Condition("prompt", "text", max_tokens=max_tokens, description="free-text report or prompt"))
    return ConditionSchema(tuple(conds))


def encode_conditions(table: pd.DataFrame | Mapping[str, Any], schema: ConditionSchema):
    """Encode a resolved condition table as a float tensor (N, K).

    Continuous conditions are scaled to [0, 1] by their range, categorical
    ones one-hot encoded, findings multi-hot; text is skipped (text models
    encode prompts themselves). Column order follows the schema.

    Parameters
    ----------
    table : DataFrame or mapping
        One row per image with the columns of :attr:`ConditionSchema.columns`.
    schema : ConditionSchema

    Returns
    -------
    torch.FloatTensor, shape (N, schema.width)

    Examples
    --------
    >>> s = ConditionSchema([Condition("age", "continuous", range=(20, 80)),
    ...                      Condition("sex", "categorical", values=("F", "M"))])
    >>> encode_conditions(pd.DataFrame({"age": [20, 50], "sex": ["M", "F"]}), s).tolist()
    [[0.0, 0.0, 1.0], [0.5, 1.0, 0.0]]
    """
    import torch

    if not isinstance(table, pd.DataFrame):
        table = pd.DataFrame(dict(table))
    n = len(table)
    parts = []
    for c in schema.conditions:
        if c.kind == "continuous":
            if c.name not in table:
                raise ConditionError(f"condition table lacks column {c.name!r}.")
            v = table[c.name].to_numpy(dtype=float)
            lo, hi = c.range
            parts.append(((v - lo) / (hi - lo))[:, None])
        elif c.kind == "categorical":
            if c.name not in table:
                raise ConditionError(f"condition table lacks column {c.name!r}.")
            vals = table[c.name].astype(str).to_numpy()
            unknown = sorted(set(vals) - set(c.values))
            if unknown:
                raise ConditionError(f"{c.name} values {unknown} are not allowed; choose from {', '.join(c.values)}.")
            parts.append(np.stack([(vals == v).astype(float) for v in c.values], 1))
        elif c.kind == "findings":
            cols = []
            for name in c.names:
                if name not in table:
                    raise ConditionError(f"condition table lacks finding column {name!r}.")
                cols.append(table[name].to_numpy(dtype=float))
            parts.append(np.stack(cols, 1))
    if not parts:
        return torch.zeros((n, 0), dtype=torch.float32)
    return torch.from_numpy(np.concatenate(parts, 1).astype(np.float32))


def condition_distribution(metadata: pd.DataFrame, schema: ConditionSchema, bins: int = 18) -> dict:
    """Summarise the training distribution of the conditions (for model cards).

    Records a histogram of each continuous condition, the proportions of
    each category, and the prevalence of each finding within each category
    of the first categorical condition (e.g. per sex). Generators draw the
    conditions a user leaves out from this summary (:func:`draw_conditions`).

    Examples
    --------
    >>> s = ConditionSchema([Condition("sex", "categorical", values=("F", "M"))])
    >>> condition_distribution(pd.DataFrame({"sex": ["F", "F", "M", "F"]}), s)["sex"]
    {'F': 0.75, 'M': 0.25}
    """
    out: dict[str, Any] = {"n": int(len(metadata))}
    first_cat = next((c for c in schema.conditions if c.kind == "categorical" and c.name in metadata), None)
    for c in schema.conditions:
        if c.name not in metadata and c.kind != "findings":
            continue
        if c.kind == "continuous":
            v = metadata[c.name].to_numpy(dtype=float)
            counts, edges = np.histogram(np.clip(v, *c.range), bins=bins, range=c.range)
            out[c.name] = {"hist": counts.astype(int).tolist(), "edges": [float(e) for e in edges]}
        elif c.kind == "categorical":
            vc = metadata[c.name].astype(str).value_counts()
            total = max(int(vc.sum()), 1)
            out[c.name] = {v: float(vc.get(v, 0)) / total for v in c.values}
        elif c.kind == "findings":
            prev: dict[str, Any] = {}
            for name in c.names:
                if name not in metadata:
                    continue
                col = metadata[name].astype(float)
                entry = {"all": float(col.mean()) if len(col) else 0.0}
                if first_cat is not None:
                    for v in first_cat.values:
                        sel = metadata[first_cat.name].astype(str) == v
                        entry[v] = float(col[sel].mean()) if sel.any() else entry["all"]
                prev[name] = entry
            out["findings"] = prev
            if first_cat is not None:
                out["findings_by"] = first_cat.name
    return out


def draw_conditions(
    n: int,
    schema: ConditionSchema,
    distribution: Mapping[str, Any],
    rng: np.random.Generator,
    given: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Build a condition table of ``n`` rows: given values, the rest drawn.

    Conditions not in ``given`` are drawn from ``distribution`` (the output of
    :func:`condition_distribution` stored in a model card): continuous values
    from the histogram (uniform within a bin), categories by their
    proportions, findings as independent Bernoulli draws with the prevalence
    of the image's category (e.g. its sex). Joint structure beyond that
    (e.g. findings that depend on age) is not reproduced.

    Raises
    ------
    ConditionError
        If a condition must be drawn but the distribution does not describe it,
        or a per-image value has the wrong length.

    Examples
    --------
    >>> s = ConditionSchema([Condition("sex", "categorical", values=("F", "M"))])
    >>> t = draw_conditions(3, s, {"sex": {"F": 1.0, "M": 0.0}}, np.random.default_rng(0))
    >>> t["sex"].tolist()
    ['F', 'F', 'F']
    """
    given = dict(given or {})
    table: dict[str, Any] = {}
    for k, v in given.items():
        if isinstance(v, np.ndarray) and v.ndim > 0:
            if len(v) != n:
                raise ConditionError(f"condition {k!r} has {len(v)} values but {n} images were requested; give one value or {n}.")
            table[k] = v
        else:
            table[k] = [v] * n

    def need(what: str) -> None:
        raise ConditionError(
            f"condition {what!r} was not given and the model card records no training distribution to draw it from; "
            f"pass it explicitly, e.g. conditions={{{what!r}: ...}}."
        )

    cat_first = None
    for c in schema.conditions:
        if c.kind == "continuous" and c.name not in table:
            d = distribution.get(c.name)
            if not d:
                need(c.name)
            counts = np.asarray(d["hist"], float)
            edges = np.asarray(d["edges"], float)
            p = counts / counts.sum() if counts.sum() > 0 else np.full(len(counts), 1 / len(counts))
            b = rng.choice(len(counts), size=n, p=p)
            table[c.name] = np.round(rng.uniform(edges[b], edges[b + 1]), 1)
        elif c.kind == "categorical":
            if cat_first is None:
                cat_first = c.name
            if c.name not in table:
                d = distribution.get(c.name)
                if not d:
                    need(c.name)
                p = np.array([float(d.get(v, 0.0)) for v in c.values])
                p = p / p.sum() if p.sum() > 0 else np.full(len(p), 1 / len(p))
                table[c.name] = np.array(c.values, dtype=object)[rng.choice(len(c.values), size=n, p=p)]
    by = distribution.get("findings_by", cat_first)
    for c in schema.conditions:
        if c.kind != "findings":
            continue
        for name in c.names:
            if name in table:
                continue
            prev = (distribution.get("findings") or {}).get(name)
            if prev is None:
                need(name)
            if by is not None and by in table:
                keys = [str(x) for x in table[by]]
                p = np.array([float(prev.get(k, prev["all"])) for k in keys])
            else:
                p = np.full(n, float(prev["all"]))
            table[name] = (rng.random(n) < p).astype(int)
    if schema.has_text and "prompt" not in table:
        table["prompt"] = [""] * n
    df = pd.DataFrame({k: list(v) for k, v in table.items()}, index=pd.RangeIndex(n))
    cols = [c for c in schema.columns if c in df] + [c for c in df if c not in schema.columns]
    df = df[cols]
    for c in schema.conditions:
        if c.kind == "continuous":
            df[c.name] = df[c.name].astype(float)
        elif c.kind == "findings":
            for name in c.names:
                df[name] = df[name].astype(int)
        elif c.kind == "categorical":
            df[c.name] = df[c.name].astype(str)
    return df


# ------------------------------------------------------------------ real-data schemas and prompts
#: File beside a diffusers pipeline folder or MONAI bundle that declares the model's own condition schema.
CONDITIONS_FILE = "conditions.json"

#: Self-reported race groups of the ready CheXpert schema (the groups CheXpert and MIMIC-CXR demographics are
#: usually reduced to when text-to-image models are conditioned on race). Pass ``races=`` for another coding.
RACES = ("Asian", "Black", "White", "Other")

#: PhantomCXR's findings, the default vocabulary of :func:`conditions_to_prompt`.
_PHANTOM_FINDINGS = ("cardiomegaly", "nodule", "effusion", "pneumothorax")

#: Words for findings in prompts; any other finding name is written with spaces for underscores.
_FINDING_WORDS = {
    "nodule": "a pulmonary nodule",
    "effusion": "pleural effusion",
    "lung_lesion": "a lung lesion",
    "enlarged_cardiomediastinum": "an enlarged cardiomediastinum",
    "pleural_other": "another pleural abnormality",
    "fracture": "a fracture",
    "mass": "a mass",
    "support_devices": "support devices",
    "chest_tube": "a chest tube",
}
_SEX_WORDS = {"F": "woman", "M": "man"}
_UNSTATED_RACE = ("other", "unknown", "")


def chexpert_schema(
    text: bool = True, max_tokens: int = 77, age_range: tuple = (18, 90), races: tuple | None = RACES
) -> ConditionSchema:
    """The ready schema of CheXpert-conditioned text-to-image models (RoentGen-v2 style).

    Age (continuous, ``age_range``), sex ``F``/``M``, race (categorical,
    :data:`RACES` unless ``races`` says otherwise; ``races=None`` leaves it
    out), the 14 CheXpert observations of :data:`medsynth_explore.data.labels.CHEXPERT_FINDINGS`
    (``no_finding`` ... ``support_devices``, the names real-data loaders use),
    and a free-text prompt when ``text``.

    Examples
    --------
    >>> s = chexpert_schema()
    >>> s.names, len(s.finding_names)
    (['age', 'sex', 'race', 'findings', 'prompt'], 14)
    >>> s.validate({"findings": ["pleural_effusion"], "race": "Black"})["pleural_effusion"]
    1
    """
    from ..data.labels import CHEXPERT_FINDINGS

    conds = [
        Condition("age", "continuous", range=tuple(age_range), description="patient age in years"),
        Condition("sex", "categorical", values=("F", "M"), description="patient sex"),
    ]
    if races:
        conds.append(Condition("race", "categorical", values=tuple(races), description="self-reported race"))
    conds.append(
        Condition("findings", "findings", names=tuple(CHEXPERT_FINDINGS), description="CheXpert observations (multi-label)")
    )
    if text:
        conds.append(Condition("prompt", "text", max_tokens=max_tokens, description="free-text report or prompt"))
    return ConditionSchema(tuple(conds))


_READY = {"chexpert": chexpert_schema, "phantomcxr": lambda **kw: phantomcxr_schema(text=kw.pop("text", True), **kw)}


def as_schema(schema: Any) -> ConditionSchema | None:
    """A :class:`ConditionSchema` from a schema, its ``to_dict()`` form, or a ready schema's name.

    Accepted: a ``ConditionSchema``; a mapping ``{"conditions": [...]}``
    (as model cards store it); a mapping ``{"schema": "chexpert", ...}`` whose
    other keys go to the ready schema's function; ``"chexpert"`` or
    ``"phantomcxr"``; ``None`` (returned as is).

    Raises
    ------
    ConditionError
        For anything else, or a malformed mapping.

    Examples
    --------
    >>> as_schema("chexpert").names[:3]
    ['age', 'sex', 'race']
    >>> as_schema({"schema": "chexpert", "races": None, "text": False}).names
    ['age', 'sex', 'findings']
    >>> as_schema({"conditions": [{"name": "sex", "kind": "categorical", "values": ["F", "M"]}]}).names
    ['sex']
    """
    if schema is None or isinstance(schema, ConditionSchema):
        return schema
    if isinstance(schema, str):
        schema = {"schema": schema}
    if not isinstance(schema, Mapping):
        raise ConditionError(
            f"schema must be a ConditionSchema, a dict {{'conditions': [...]}}, or one of {sorted(_READY)}; "
            f"got {type(schema).__name__}."
        )
    if "schema" in schema:
        options = {k: v for k, v in schema.items() if k not in ("schema", "prompt_template")}
        name = str(schema["schema"]).lower()
        if name not in _READY:
            raise ConditionError(f"unknown ready schema {schema['schema']!r}; choose one of {sorted(_READY)}.")
        if isinstance(options.get("races"), list):
            options["races"] = tuple(options["races"])
        try:
            return _READY[name](**options)
        except TypeError as exc:
            raise ConditionError(f"the {name} schema does not take these options {sorted(options)}: {exc}") from exc
    try:
        return ConditionSchema.from_dict(schema)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConditionError):
            raise
        raise ConditionError(f"malformed condition schema: {exc}") from exc


def read_conditions_file(folder: Any) -> tuple:
    """The schema and prompt template declared in ``<folder>/conditions.json``, or ``(None, None)`` without one.

    The file holds either a schema in model-card form (``{"conditions": [...]}``)
    or a ready schema by name (``{"schema": "chexpert", "races": [...]}``),
    optionally with ``"prompt_template"``: a :meth:`str.format` template over
    the fields of :func:`conditions_to_prompt`, e.g.
    ``"chest x-ray, {patient}, {findings}"``.

    Raises
    ------
    ConditionError
        When the file is not valid JSON or does not describe a schema.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "conditions.json").write_text(json.dumps({"schema": "chexpert", "prompt_template": "{findings}"}))
    >>> schema, template = read_conditions_file(d)
    >>> len(schema.finding_names), template
    (14, '{findings}')
    """
    import json
    from pathlib import Path

    path = Path(folder) / CONDITIONS_FILE
    if not path.is_file():
        return None, None
    if path.stat().st_size > 1 << 20:
        raise ConditionError(f"{path} is larger than 1 MB; a condition schema is a short JSON file.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConditionError(f"{path} is not valid JSON ({exc}); see the conditions.json format in the README.") from exc
    if not isinstance(data, dict):
        raise ConditionError(f"{path} must hold a JSON object with 'conditions' or 'schema'.")
    template = data.get("prompt_template")
    if template is not None and not isinstance(template, str):
        raise ConditionError(f"'prompt_template' in {path} must be a string.")
    try:
        schema = as_schema({k: v for k, v in data.items() if k != "prompt_template"})
    except ConditionError as exc:
        raise ConditionError(f"{path}: {exc}") from exc
    return schema, template


def _known(v: Any) -> bool:
    if v is None or v is pd.NA:
        return False
    try:
        return not (isinstance(v, (float, np.floating)) and np.isnan(v))
    except TypeError:
        return True


def _finding_word(name: str) -> str:
    return _FINDING_WORDS.get(name, name.replace("_", " "))


def _article(phrase: str) -> str:
    """ "an" before a vowel sound (an 80 year old, an 18 year old, an Asian man), else "a"."""
    head = phrase.split()[0] if phrase.split() else ""
    vowel = head[:1].lower() in "aeiou" or head.startswith("8") or head in ("11", "18")
    return "an" if vowel else "a"


def _join(words: list) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def conditions_to_prompt(row: Any, finding_names: Any = None, template: Any = None) -> str:
    """Describe one row of conditions in words: the one conditions-to-prompt conversion of the package.

    Diffusers text pipelines and text-conditioned MONAI bundles turn their
    condition tables into prompts with this function. Unknown (missing or NA)
    values are left out of the text.

    Parameters
    ----------
    row : mapping
        One row of a condition table (``age``, ``sex``, ``race``, one 0/1
        column per finding).
    finding_names : sequence of str, optional
        The findings the model knows (default: PhantomCXR's four).
    template : str or callable, optional
        ``None`` gives the sentence shown below. A string is filled with
        :meth:`str.format` from the fields ``age`` (whole years), ``sex``
        (woman / man), ``race``, ``patient`` (e.g. "70 year old Black
        woman"), ``findings`` (e.g. "pleural effusion and cardiomegaly", or
        "no acute findings") and every column of the row; unknown fields are
        empty and runs of spaces are collapsed. A callable gets the row and
        returns the text.

    Examples
    --------
    >>> conditions_to_prompt({"age": 70, "sex": "F", "effusion": 1, "nodule": 0})
    'frontal chest radiograph of a 70 year old woman with pleural effusion'
    >>> conditions_to_prompt(dict.fromkeys(["cardiomegaly", "nodule", "effusion", "pneumothorax"], 0))
    'frontal chest radiograph, no acute findings'
    >>> row = {"age": 54.4, "sex": "M", "race": "Asian", "pleural_effusion": 1, "edema": 1}
    >>> conditions_to_prompt(row, ["edema", "pleural_effusion"])
    'frontal chest radiograph of a 54 year old Asian man with edema and pleural effusion'
    >>> conditions_to_prompt(row, ["edema", "pleural_effusion"], template="chest x-ray, {patient}: {findings}")
    'chest x-ray, 54 year old Asian man: edema and pleural effusion'
    """
    get = row.get if hasattr(row, "get") else (lambda k, d=None: d)
    if callable(template):
        return str(template(row))
    names = tuple(_PHANTOM_FINDINGS if finding_names is None else finding_names)
    age, sex, race = get("age"), get("sex"), get("race")
    years = f"{int(round(float(age)))}" if _known(age) else ""
    noun = _SEX_WORDS.get(str(sex), "patient") if _known(sex) else "patient"
    race_word = str(race) if _known(race) and str(race).lower() not in _UNSTATED_RACE else ""
    parts = [f"{years} year old" if years else "", race_word, noun]
    patient = " ".join(p for p in parts if p)
    stated = {f: get(f) for f in names if _known(get(f))}
    positive = [f for f, v in stated.items() if int(v) == 1 and f != "no_finding"]
    if positive:
        findings = _join([_finding_word(f) for f in positive])
    elif stated.get("no_finding") == 1:
        findings = "no finding"
    elif stated and len(stated) == len(names):
        findings = "no acute findings"
    else:
        findings = ""
    if template is not None:
        fields = {k: (v if _known(v) else "") for k, v in dict(row).items()} if hasattr(row, "items") else {}
        fields.update(age=years, sex=noun if _known(sex) else "", race=str(race) if _known(race) else "")
        fields.update(patient=patient if patient != "patient" else "", findings=findings)
        try:
            text = str(template).format_map(_Blank(fields))
        except (ValueError, IndexError) as exc:
            raise ConditionError(f"prompt template {template!r} cannot be filled: {exc}") from exc
        return " ".join(text.split())
    text = "frontal chest radiograph" + ("" if patient == "patient" else f" of {_article(patient)} {patient}")
    if positive:
        text += " with " + findings
    elif findings:
        text += ", " + findings
    return text


class _Blank(dict):
    """Format mapping that leaves unknown fields empty."""

    def __missing__(self, key: str) -> str:
        return ""
