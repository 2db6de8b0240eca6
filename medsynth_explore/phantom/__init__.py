"""PhantomCXR: a physics-informed simulator of frontal (PA) chest radiographs.

A cohort is drawn from a :class:`Population` (:func:`sample_patients`), each
patient's 3-D anatomy is built from simple solids (body, lungs with vessels,
heart, aorta, diaphragm domes, spine, ribs, clavicles, scapulae, breasts) and
projected with analytic line integrals and Beer-Lambert attenuation
(:func:`render`), and a report is written from the labels
(:func:`write_reports`). :func:`simulate` does all three. Ground truth masks
and measurements come from :func:`anatomy`.

Examples
--------
>>> from medsynth_explore.phantom import simulate
>>> ds = simulate(4, seed=0, size=32)
>>> ds.images.shape, ds.provenance["source"]
((4, 1, 32, 32), 'phantomcxr')
"""

from __future__ import annotations


from ..data import ImageSet
from .population import FINDINGS, FOV_MM, SITES, Population, complete_patients, sample_patients
from .population import _as_population, _check_n
from .render import MASK_NAMES, MU, Anatomy, _check_size, anatomy, lesion_weights, render
from .reports import write_reports

__version__ = "1.1.0"

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
    "render",
    "sample_patients",
    "simulate",
    "write_reports",
]


def simulate(n: int, seed: int = 0, size: int = 64, population: Population | dict | None = None) -> ImageSet:
    """Simulate a PhantomCXR cohort: labels, images and reports.

    Equivalent to :func:`sample_patients` then :func:`render` then
    :func:`write_reports`, all with ``seed``.

    Parameters
    ----------
    n : int
        Number of images (one per patient).
    seed : int
        Same seed, same images and metadata.
    size : int
        Image side in pixels, 32 to 256 (field of view 400 mm).
    population : Population, dict or None
        Cohort spec; the default :class:`Population` when None.

    Returns
    -------
    ImageSet
        Images (N, 1, size, size) in 16-bit levels; metadata with
        ``patient_id``, ``age``, ``sex``, ``bmi``, ``site``, the finding
        labels and ``chest_tube`` (0/1), the finding parameters (``ctr``,
        ``nodule_x``, ``nodule_y`` as image fractions, ``nodule_diameter_mm``,
        ``nodule_side``, ``effusion_side``, ``effusion_volume_ml``,
        ``pneumothorax_side``, ``pneumothorax_size``, ``chest_tube_side``;
        NaN or ``"none"`` when absent), positioning and ``report``.
        Provenance: ``source``, ``version``, ``seed``, ``size``, ``population``.

    Examples
    --------
    >>> ds = simulate(8, seed=1, size=32)
    >>> int(ds.metadata["nodule"].isin([0, 1]).sum())
    8
    """
    n = _check_n(n)
    size = _check_size(size)
    pop = _as_population(population)
    patients = sample_patients(n, pop, seed=seed)
    images = render(patients, size=size, seed=seed)
    meta = patients.copy()
    meta["report"] = write_reports(patients, seed=seed)
    prov = {"source": "phantomcxr", "version": __version__, "seed": int(seed), "size": size, "population": pop.to_dict()}
    return ImageSet(images, meta, prov)
