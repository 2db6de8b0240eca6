"""PhantomCXR: a physics-informed simulator of frontal (PA) chest radiographs.

A cohort is drawn from a :class:`Population` (:func:`sample_patients`), each
patient's 3-D anatomy is built from simple solids (body, lungs with vessels,
heart, aorta, diaphragm domes, spine, ribs, clavicles, scapulae, breasts) and
projected with analytic line integrals and Beer-Lambert attenuation
(:func:`render`), and a report is written from the labels
(:func:`write_reports`). :func:`simulate` does all three. Ground truth masks
and measurements come from :func:`anatomy`. :func:`load_phantomcxr` is the
built-in data set ``"phantomcxr"`` of
:func:`medsynth_explore.data.load_dataset`: a seeded cohort cached on disk
(this package registers it).

Examples
--------
>>> from medsynth_explore.phantom import simulate
>>> ds = simulate(4, seed=0, size=32)
>>> ds.images.shape, ds.provenance["source"]
((4, 1, 32, 32), 'phantomcxr')
"""

from __future__ import annotations

from .dataset import load_phantomcxr  # registers the built-in data set "phantomcxr"
from .population import FINDINGS, FOV_MM, SITES, Population, _as_population, _check_n, complete_patients, sample_patients  # noqa: F401 - used by generators/physics.py
from .render import MASK_NAMES, MU, Anatomy, _check_size, anatomy, lesion_weights, render  # noqa: F401
from .reports import write_reports
from .simulator import __version__, simulate

__all__ = [
    "__version__",
    "FINDINGS",
    "FOV_MM",
    "MASK_NAMES",
    "MU",
    "SITES",
    "Anatomy",
    "Population",
    "anatomy",
    "complete_patients",
    "lesion_weights",
    "load_phantomcxr",
    "render",
    "sample_patients",
    "simulate",
    "write_reports",
]
