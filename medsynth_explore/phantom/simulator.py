"""PhantomCXR in one call: :func:`simulate` draws a cohort, renders it and writes the reports.

Examples
--------
>>> ds = simulate(2, seed=0, size=32)
>>> ds.provenance["version"] == __version__
True
"""

from __future__ import annotations

from ..data import ImageSet
from .population import Population, _as_population, _check_n, sample_patients
from .render import _check_size, render
from .reports import write_reports

#: Version of the simulator; part of every image set's provenance and of the data set cache key.
__version__ = "1.1.0"

__all__ = ["__version__", "simulate"]


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
