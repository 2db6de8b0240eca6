"""Population spec of PhantomCXR and the patient/label table drawn from it.

A :class:`Population` says who is in a cohort (age, sex, body habitus, which
site scanned them) and how often each finding and device occurs.
:func:`sample_patients` draws a table with one row per patient from it;
:func:`complete_patients` makes such a table self-consistent (labels win over
parameters) and is what :func:`~medsynth_explore.phantom.render` applies
before drawing anything.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..errors import ConditionError, DataError

__all__ = [
    "FINDINGS",
    "SITES",
    "Population",
    "sample_patients",
    "complete_patients",
]

#: Findings the simulator can draw, in the order of the label columns.
FINDINGS = ("cardiomegaly", "nodule", "effusion", "pneumothorax")

#: Acquisition sites. Each scanner differs in exposure (photons per mm^2 at the
#: detector without a patient), detector blur (Gaussian PSF sigma in mm),
#: scatter-to-primary ratio, display gamma and window.
SITES: dict[str, dict[str, float]] = {
    "A": {"photons_per_mm2": 30000.0, "blur_mm": 0.9, "scatter": 0.10, "gamma": 1.00, "window_lo": 0.02, "window_hi": 0.995},
    "B": {"photons_per_mm2": 6000.0, "blur_mm": 1.7, "scatter": 0.25, "gamma": 0.80, "window_lo": 0.00, "window_hi": 0.985},
    "C": {"photons_per_mm2": 14000.0, "blur_mm": 1.2, "scatter": 0.15, "gamma": 1.30, "window_lo": 0.05, "window_hi": 1.000},
}

_SIDES = ("left", "right")

#: Field of view of every image, in mm (square, whatever the pixel size).
FOV_MM = 400.0
_NONE = "none"

# Parameter columns filled in for each finding (NaN / "none" when absent).
_FINDING_PARAMS = {
    "nodule": ("nodule_x", "nodule_y", "nodule_diameter_mm", "nodule_side"),
    "effusion": ("effusion_side", "effusion_volume_ml"),
    "pneumothorax": ("pneumothorax_side", "pneumothorax_size"),
    "chest_tube": ("chest_tube_side",),
}


@dataclass
class Population:
    """Who is in a PhantomCXR cohort and how often each finding occurs.

    Parameters
    ----------
    prevalence : dict
        Probability of each finding in :data:`FINDINGS`, drawn independently
        (several may co-occur). Missing keys keep their default.
    age_mean, age_sd : float
        Ages follow a normal distribution with these moments truncated to
        ``[age_min, age_max]`` (the simulator covers 18 to 90 years).
    age_min, age_max : int
        Bounds of the age range, within 18..90.
    female_fraction : float
        Share of women.
    bmi_mean, bmi_sd : float
        Body-mass index, log-normal with roughly these moments, clipped to 16..45.
        It sets the thickness of the soft tissue (and so the exposure).
    site_mix : dict
        Share of each acquisition site (keys of :data:`SITES`); normalised.
    chest_tube_given_pneumothorax, chest_tube_given_no_pneumothorax : float
        Rate of a chest tube among patients with and without a pneumothorax.
        A high first rate with a low second one is the classic shortcut: a
        classifier can detect the tube instead of the pneumothorax.
    subgroup_shares : dict
        ``{pandas query expression: share}``. The cohort is built so that the
        rows matching each expression make up exactly that share (rounded to
        whole patients), e.g. ``{"sex == 'F' and age > 70": 0.02}`` for a
        cohort in which old women are rare. Expressions may use any column of
        :func:`sample_patients` (``age``, ``sex``, ``bmi``, ``site``, the
        finding labels, ``chest_tube``). A row matching several expressions
        counts for the first one. Shares must sum to at most 1; the rest of
        the cohort is drawn from rows matching none of them. Inside each part
        everything else follows the population.

    Examples
    --------
    >>> pop = Population(prevalence={"nodule": 0.3}, subgroup_shares={"sex == 'F' and age > 70": 0.02})
    >>> pop.prevalence["nodule"], pop.prevalence["effusion"]
    (0.3, 0.12)
    >>> Population.from_dict(pop.to_dict()) == pop
    True
    """

    prevalence: dict = field(default_factory=dict)
    age_mean: float = 55.0
    age_sd: float = 17.0
    age_min: int = 18
    age_max: int = 90
    female_fraction: float = 0.5
    bmi_mean: float = 26.0
    bmi_sd: float = 4.5
    site_mix: dict = field(default_factory=lambda: {"A": 0.4, "B": 0.35, "C": 0.25})
    chest_tube_given_pneumothorax: float = 0.6
    chest_tube_given_no_pneumothorax: float = 0.02
    subgroup_shares: dict = field(default_factory=dict)

    _DEFAULT_PREVALENCE = {"cardiomegaly": 0.15, "nodule": 0.10, "effusion": 0.12, "pneumothorax": 0.08}

    def __post_init__(self) -> None:
        prev = dict(self._DEFAULT_PREVALENCE)
        if not isinstance(self.prevalence, Mapping):
            raise ConditionError(f"prevalence must be a dict finding -> probability, got {type(self.prevalence).__name__}.")
        for k, v in self.prevalence.items():
            if k not in FINDINGS:
                raise ConditionError(f"unknown finding {k!r} in prevalence; known findings: {', '.join(FINDINGS)}.")
            prev[k] = _prob(v, f"prevalence[{k!r}]")
        self.prevalence = prev
        for name in ("age_mean", "age_sd", "bmi_mean", "bmi_sd"):
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
                raise ConditionError(f"{name} must be a finite number, got {v!r}.")
        if not (18 <= self.age_min < self.age_max <= 90):
            raise ConditionError(
                f"age range must satisfy 18 <= age_min < age_max <= 90 (the range the simulator covers); "
                f"got age_min={self.age_min}, age_max={self.age_max}."
            )
        if self.age_sd <= 0 or self.bmi_sd <= 0:
            raise ConditionError("age_sd and bmi_sd must be positive.")
        if not (16 <= self.bmi_mean <= 45):
            raise ConditionError(f"bmi_mean must lie in 16..45, got {self.bmi_mean}.")
        self.female_fraction = _prob(self.female_fraction, "female_fraction")
        self.chest_tube_given_pneumothorax = _prob(self.chest_tube_given_pneumothorax, "chest_tube_given_pneumothorax")
        self.chest_tube_given_no_pneumothorax = _prob(self.chest_tube_given_no_pneumothorax, "chest_tube_given_no_pneumothorax")
        if not isinstance(self.site_mix, Mapping) or not self.site_mix:
            raise ConditionError(f"site_mix must be a non-empty dict site -> share with sites from {sorted(SITES)}.")
        mix = {}
        for k, v in self.site_mix.items():
            if k not in SITES:
                raise ConditionError(f"unknown site {k!r} in site_mix; known sites: {', '.join(SITES)}.")
            if not isinstance(v, (int, float, np.number)) or not (v >= 0) or not math.isfinite(v):
                raise ConditionError(f"site_mix[{k!r}] must be a non-negative number, got {v!r}.")
            mix[k] = float(v)
        total = sum(mix.values())
        if total <= 0:
            raise ConditionError("site_mix shares must not all be zero.")
        self.site_mix = {k: v / total for k, v in mix.items()}
        if not isinstance(self.subgroup_shares, Mapping):
            raise ConditionError("subgroup_shares must be a dict {query expression: share}.")
        shares = {}
        for expr, v in self.subgroup_shares.items():
            if not isinstance(expr, str) or not expr.strip():
                raise ConditionError(f"subgroup_shares keys must be non-empty query strings, got {expr!r}.")
            shares[expr] = _prob(v, f"subgroup_shares[{expr!r}]")
        if sum(shares.values()) > 1 + 1e-9:
            raise ConditionError(f"subgroup_shares sum to {sum(shares.values()):.3f}; they must sum to at most 1.")
        self.subgroup_shares = shares

    def to_dict(self) -> dict:
        """A JSON-friendly dict of the spec (see :meth:`from_dict`)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "Population":
        """Rebuild a spec from :meth:`to_dict` output (unknown keys are an error)."""
        if d is None:
            return cls()
        if isinstance(d, Population):
            return d
        if not isinstance(d, Mapping):
            raise ConditionError(f"a population spec must be a dict or Population, got {type(d).__name__}.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConditionError(f"unknown population field(s) {sorted(unknown)}; known fields: {sorted(names)}.")
        return cls(**dict(d))


def _prob(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not (0.0 <= float(v) <= 1.0):
        raise ConditionError(f"{name} must be a probability in [0, 1], got {v!r}.")
    return float(v)


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def _as_population(population: Any) -> Population:
    if population is None:
        return Population()
    if isinstance(population, Population):
        return population
    if isinstance(population, Mapping):
        return Population.from_dict(population)
    raise ConditionError(f"population must be a Population, a dict or None, got {type(population).__name__}.")


def _check_n(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"n must be a positive whole number of images, got {n!r}.")
    return int(n)


# ---------------------------------------------------------------------------- drawing
def _draw(n: int, pop: Population, rng: np.random.Generator) -> pd.DataFrame:
    """Draw ``n`` independent patients (no subgroup control)."""
    # truncated normal ages by inverse-CDF
    from scipy.stats import norm

    lo = norm.cdf((pop.age_min - 0.5 - pop.age_mean) / pop.age_sd)
    hi = norm.cdf((pop.age_max + 0.5 - pop.age_mean) / pop.age_sd)
    u = rng.uniform(lo, hi, n)
    age = np.clip(np.rint(pop.age_mean + pop.age_sd * norm.ppf(u)), pop.age_min, pop.age_max).astype(int)
    female = rng.random(n) < pop.female_fraction
    sigma = math.sqrt(math.log(1 + (pop.bmi_sd / pop.bmi_mean) ** 2))
    mu = math.log(pop.bmi_mean) - sigma**2 / 2
    bmi = np.clip(np.exp(mu + sigma * rng.standard_normal(n)), 16.0, 45.0)
    sites = list(pop.site_mix)
    site = np.asarray(sites)[rng.choice(len(sites), n, p=np.array([pop.site_mix[s] for s in sites]))]
    df = pd.DataFrame(
        {
            "age": age,
            "sex": np.where(female, "F", "M"),
            "bmi": np.round(bmi, 1),
            "site": site,
        }
    )
    for f in FINDINGS:
        df[f] = (rng.random(n) < pop.prevalence[f]).astype(int)
    p_tube = np.where(df["pneumothorax"] == 1, pop.chest_tube_given_pneumothorax, pop.chest_tube_given_no_pneumothorax)
    df["chest_tube"] = (rng.random(n) < p_tube).astype(int)
    # positioning and anatomy variation, kept in the table so render is a pure function of it
    df["rotation_deg"] = np.round(np.clip(rng.normal(0, 2.0, n), -6, 6), 2)
    df["shift_x_mm"] = np.round(np.clip(rng.normal(0, 6.0, n), -18, 18), 1)
    df["shift_y_mm"] = np.round(np.clip(rng.normal(0, 6.0, n), -18, 18), 1)
    df["inspiration"] = np.round(np.clip(rng.normal(0, 1.0, n), -2.5, 2.5), 2)
    df["anatomy_seed"] = rng.integers(0, 2**31 - 1, n)
    return df


def sample_patients(n: int, population: Population | Mapping | None = None, seed: int = 0) -> pd.DataFrame:
    """Draw the patient/label table of a PhantomCXR cohort.

    Parameters
    ----------
    n : int
        Number of patients (one image each).
    population : Population, dict or None
        The spec; the default :class:`Population` when None.
    seed : int
        Seed; the same seed gives the same table.

    Returns
    -------
    pandas.DataFrame
        One row per patient: ``patient_id``, ``age``, ``sex``, ``bmi``,
        ``site``, the labels of :data:`FINDINGS` and ``chest_tube`` (0/1),
        positioning (``rotation_deg``, ``shift_x_mm``, ``shift_y_mm``,
        ``inspiration`` in standard deviations), ``anatomy_seed`` and the
        finding parameters filled in by :func:`complete_patients` (NaN or
        ``"none"`` where a finding is absent).

    Examples
    --------
    >>> t = sample_patients(5, seed=1)
    >>> t[["age", "sex", "nodule"]].shape
    (5, 3)
    >>> sample_patients(3, seed=1).equals(sample_patients(3, seed=1))
    True
    """
    n = _check_n(n)
    pop = _as_population(population)
    rng = np.random.default_rng([int(seed), 0x50484E54])
    if not pop.subgroup_shares:
        df = _draw(n, pop, rng)
    else:
        exprs = list(pop.subgroup_shares)
        counts = [int(round(pop.subgroup_shares[e] * n)) for e in exprs]
        if sum(counts) > n:  # rounding overflow
            counts[int(np.argmax(counts))] -= sum(counts) - n
        rest = n - sum(counts)
        need = counts + [rest]
        parts: list[list[pd.DataFrame]] = [[] for _ in need]
        have = [0] * len(need)
        drawn = 0
        batch = max(256, 2 * n)
        while any(h < k for h, k in zip(have, need)):
            cand = _draw(batch, pop, rng)
            drawn += batch
            assigned = np.full(batch, -1)
            for j, e in enumerate(exprs):
                try:
                    m = cand.eval(e)
                except Exception as exc:
                    raise ConditionError(
                        f"cannot evaluate subgroup expression {e!r} on patient columns {list(cand.columns)}: {exc}"
                    ) from exc
                m = np.asarray(m)
                if m.dtype != bool or m.shape != (batch,):
                    raise ConditionError(f"subgroup expression {e!r} must give one True/False per patient.")
                assigned[(assigned < 0) & m] = j
            assigned[assigned < 0] = len(exprs)
            for j in range(len(need)):
                if have[j] < need[j]:
                    rows = cand[assigned == j].iloc[: need[j] - have[j]]
                    parts[j].append(rows)
                    have[j] += len(rows)
            if drawn > 2000 * n + 200000 and any(h < k for h, k in zip(have, need)):
                bad = [
                    exprs[j] if j < len(exprs) else "(rows matching no subgroup)" for j in range(len(need)) if have[j] < need[j]
                ]
                raise ConditionError(
                    f"could not find enough patients for {bad} after drawing {drawn}; the subgroup is (almost) "
                    "impossible under this population. Widen the population (e.g. age range, prevalence) or lower its share."
                )
            batch = min(batch * 2, 200000)
        df = pd.concat([p for ps in parts for p in ps], ignore_index=True)
        df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
    df.insert(0, "patient_id", [f"phx{int(seed) % 100000:05d}-{i:06d}" for i in range(n)])
    return complete_patients(df)


# ---------------------------------------------------------------------------- completion
_CTR_NORMAL = (0.36, 0.495)
_CTR_ENLARGED = (0.53, 0.68)


def complete_patients(patients: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Make a patient table self-consistent; labels win over parameters.

    :func:`~medsynth_explore.phantom.render` calls this first, so a table whose
    labels were overridden (e.g. ``nodule`` set to 1 for conditional sampling)
    renders correctly. Rules:

    * Missing columns get defaults: ``age`` 55, ``sex`` "M", ``bmi`` 26,
      ``site`` "A", labels 0, positioning 0, ``anatomy_seed`` from ``seed``
      and the row number.
    * A finding whose label is 1 but whose parameters are NaN/"none" gets
      parameters drawn from the row's ``anatomy_seed`` (so the same row always
      gets the same ones): nodule position inside a lung and diameter 18-30 mm;
      effusion side and 150-1500 mL; pneumothorax side and size 0.25-0.65 (the
      fraction of the hemithorax's projected lung area taken by pleural air); chest tube on
      the pneumothorax side (else random).
    * A finding whose label is 0 has its parameters cleared (NaN / "none").
    * ``ctr`` (cardiothoracic ratio) must agree with ``cardiomegaly``: above
      0.5 exactly when the label is 1. A missing or disagreeing value is
      redrawn, in 0.36-0.495 (normal) or 0.53-0.68 (enlarged).

    Parameters
    ----------
    patients : pandas.DataFrame
        A table as from :func:`sample_patients`, possibly edited.
    seed : int
        Only used to derive ``anatomy_seed`` when that column is missing.

    Returns
    -------
    pandas.DataFrame
        A new table (the input is not modified).

    Examples
    --------
    >>> t = sample_patients(2, seed=0)
    >>> t["nodule"] = 1; t["nodule_diameter_mm"] = float("nan")
    >>> bool(complete_patients(t)["nodule_diameter_mm"].between(18, 30).all())
    True
    """
    if not isinstance(patients, pd.DataFrame):
        raise DataError(f"patients must be a pandas DataFrame (from sample_patients), got {type(patients).__name__}.")
    n = len(patients)
    if n < 1:
        raise DataError("the patient table is empty; give at least one row.")
    df = patients.copy().reset_index(drop=True)
    defaults = {
        "age": 55,
        "sex": "M",
        "bmi": 26.0,
        "site": "A",
        "rotation_deg": 0.0,
        "shift_x_mm": 0.0,
        "shift_y_mm": 0.0,
        "inspiration": 0.0,
    }
    for k, v in defaults.items():
        if k not in df.columns:
            df[k] = v
    if "patient_id" not in df.columns:
        df.insert(0, "patient_id", [f"phx{int(seed) % 100000:05d}-{i:06d}" for i in range(n)])
    if "anatomy_seed" not in df.columns:
        df["anatomy_seed"] = np.random.default_rng([int(seed), 7]).integers(0, 2**31 - 1, n)
    for f in (*FINDINGS, "chest_tube"):
        if f not in df.columns:
            df[f] = 0
        vals = pd.to_numeric(df[f], errors="coerce")
        if vals.isna().any() or not vals.isin([0, 1]).all():
            raise ConditionError(
                f"column {f!r} must hold 0 or 1 for every row, got values {sorted(pd.unique(df[f]).tolist())[:6]}."
            )
        df[f] = vals.astype(int)
    # validate demographics
    age = pd.to_numeric(df["age"], errors="coerce")
    if age.isna().any() or (age < 18).any() or (age > 90).any():
        raise ConditionError("age must be a number from 18 to 90 for every row (the range the simulator covers).")
    df["age"] = age.round().astype(int)
    sex = df["sex"].astype(str).str.upper().str[:1]
    if not sex.isin(["F", "M"]).all():
        raise ConditionError(f"sex must be 'F' or 'M', got {sorted(set(df['sex'].astype(str)) - {'F', 'M'})}.")
    df["sex"] = sex
    bmi = pd.to_numeric(df["bmi"], errors="coerce")
    if bmi.isna().any() or (bmi < 14).any() or (bmi > 60).any():
        raise ConditionError("bmi must be a number from 14 to 60 for every row.")
    df["bmi"] = bmi.astype(float)
    df["site"] = df["site"].astype(str)
    bad_sites = set(df["site"]) - set(SITES)
    if bad_sites:
        raise ConditionError(f"unknown site(s) {sorted(bad_sites)}; known sites: {', '.join(SITES)}.")
    for k in ("rotation_deg", "shift_x_mm", "shift_y_mm", "inspiration"):
        df[k] = pd.to_numeric(df[k], errors="coerce").fillna(0.0).astype(float)
    df["anatomy_seed"] = pd.to_numeric(df["anatomy_seed"], errors="coerce").fillna(0).astype(np.int64)

    # parameter columns, created when missing
    for cols in _FINDING_PARAMS.values():
        for c in cols:
            if c not in df.columns:
                df[c] = _NONE if c.endswith("_side") else np.nan
    for c in [c for cols in _FINDING_PARAMS.values() for c in cols]:
        if c.endswith("_side"):
            df[c] = df[c].where(df[c].notna(), _NONE).astype(str).str.lower()
            df.loc[df[c].isin(["nan", ""]), c] = _NONE
        else:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    if "ctr" not in df.columns:
        df["ctr"] = np.nan
    df["ctr"] = pd.to_numeric(df["ctr"], errors="coerce").astype(float)

    seeds = df["anatomy_seed"].to_numpy(np.int64)
    u = lambda salt: _hash_uniform(seeds, salt)  # noqa: E731
    side2 = np.where(u(20) < 0.5, "left", "right")

    # cardiothoracic ratio agrees with the label
    ctr = df["ctr"].to_numpy(float)
    cm = df["cardiomegaly"].to_numpy() == 1
    bad = ~np.isfinite(ctr) | ((ctr > 0.5) != cm) | ~((ctr >= 0.3) & (ctr <= 0.75))
    if bad.any():
        age_term = (df["age"].to_numpy(float) - 55) / 35 * 0.015
        z = np.sqrt(-2 * np.log(np.maximum(u(21), 1e-12))) * np.cos(2 * np.pi * u(22))
        normal = np.clip(0.445 + age_term + 0.025 * z, *_CTR_NORMAL)
        enlarged = _CTR_ENLARGED[0] + (_CTR_ENLARGED[1] - _CTR_ENLARGED[0]) * u(23)
        ctr = np.where(bad, np.round(np.where(cm, enlarged, normal), 4), ctr)
    df["ctr"] = ctr

    # nodule: side, image position (0..1, x to the image right = patient's left, y down)
    # inside the lung field of an average patient, 45-115 mm from the midline, and diameter
    has = df["nodule"].to_numpy() == 1
    nx, ny, nd = (df[c].to_numpy(float).copy() for c in ("nodule_x", "nodule_y", "nodule_diameter_mm"))
    side = df["nodule_side"].to_numpy(object).copy()
    side = np.where(np.isin(side, _SIDES), side, np.where(np.isfinite(nx), np.where(nx > 0.5, "left", "right"), side2))
    need_pos = ~np.isfinite(nx) | ~np.isfinite(ny)
    off = 45 + 70 * u(24)
    ylo = np.where(side == "right", -30.0, -5.0)
    y_mm = ylo + (100 - ylo) * u(25)
    x_mm = np.where(side == "left", off, -off)
    nx = np.where(need_pos, np.round(0.5 + x_mm / FOV_MM, 4), nx)
    ny = np.where(need_pos, np.round(0.5 - y_mm / FOV_MM, 4), ny)
    nd = np.where(np.isfinite(nd) & (nd > 0), nd, np.round(18 + 12 * u(26), 1))
    df["nodule_x"] = np.where(has, nx, np.nan)
    df["nodule_y"] = np.where(has, ny, np.nan)
    df["nodule_diameter_mm"] = np.where(has, nd, np.nan)
    df["nodule_side"] = np.where(has, side, _NONE)

    # effusion: side (left 40 %, right 40 %, both 20 %) and volume, log-uniform 150-1500 mL
    has = df["effusion"].to_numpy() == 1
    es = df["effusion_side"].to_numpy(object)
    ue = u(27)
    es = np.where(np.isin(es, (*_SIDES, "both")), es, np.where(ue < 0.4, "left", np.where(ue < 0.8, "right", "both")))
    ev = df["effusion_volume_ml"].to_numpy(float)
    ev = np.where(np.isfinite(ev) & (ev > 0), ev, np.round(np.exp(np.log(150) + (np.log(1500) - np.log(150)) * u(28)), -1))
    df["effusion_side"] = np.where(has, es, _NONE)
    df["effusion_volume_ml"] = np.where(has, ev, np.nan)

    # pneumothorax: side and size (fraction of the hemithorax's projected lung area)
    has = df["pneumothorax"].to_numpy() == 1
    ps = df["pneumothorax_side"].to_numpy(object)
    ps = np.where(np.isin(ps, _SIDES), ps, np.where(u(29) < 0.5, "left", "right"))
    pz = df["pneumothorax_size"].to_numpy(float)
    pz = np.where(np.isfinite(pz) & (pz > 0) & (pz < 1), pz, np.round(0.25 + 0.4 * u(30), 3))
    df["pneumothorax_side"] = np.where(has, ps, _NONE)
    df["pneumothorax_size"] = np.where(has, pz, np.nan)

    # chest tube: on the pneumothorax side, else the effusion side, else random
    has = df["chest_tube"].to_numpy() == 1
    ts = df["chest_tube_side"].to_numpy(object)
    fallback = np.where(
        df["pneumothorax"].to_numpy() == 1,
        df["pneumothorax_side"].to_numpy(object),
        np.where(
            np.isin(df["effusion_side"].to_numpy(object), _SIDES),
            df["effusion_side"].to_numpy(object),
            np.where(u(31) < 0.5, "left", "right"),
        ),
    )
    ts = np.where(np.isin(ts, _SIDES), ts, fallback)
    df["chest_tube_side"] = np.where(has, ts, _NONE)
    for c in ("nodule_side", "effusion_side", "pneumothorax_side", "chest_tube_side"):
        df[c] = df[c].astype(str)
    return df


def _hash_uniform(seeds: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic uniforms in [0, 1), one per integer seed (splitmix64 hash)."""
    with np.errstate(over="ignore"):
        z = np.asarray(seeds).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(
            (salt * 0x632BE59BD9B4E019 + 1) % 2**64
        )
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)
