"""Data sets: :class:`ImageSet`, the loaders behind :func:`load_dataset`, and the registry of named data sets.

An ImageSet holds its pixels in memory or on disk (file-backed, decoded in
batches: :mod:`~medsynth_explore.data.imageset`, :mod:`~medsynth_explore.data.sources`).
Loaders read folders with a metadata CSV, the public chest X-ray layouts
(CheXpert, MIMIC-CXR-JPG, NIH ChestX-ray14: :mod:`~medsynth_explore.data.layouts`),
DICOM trees (:mod:`~medsynth_explore.data.dicom`) and MedMNIST ``.npz``
files, with one size policy and one set of safety rules
(:mod:`~medsynth_explore.data.decode`, :mod:`~medsynth_explore.data.paths`,
:mod:`~medsynth_explore.data.files`), and map their labels into one
vocabulary (:mod:`~medsynth_explore.data.labels`).

A named data set (the built-in ``"phantomcxr"``, or one a plugin adds)
registers itself with :func:`register_dataset`; :func:`list_datasets` shows
them all. See :mod:`medsynth_explore.data.registry` for how a package adds one.
"""

from .imageset import ImageSet, as_image_array, hash_array, image_keys, memory_limit
from .io import load_dataset, write_folder
from .labels import FINDINGS, harmonise
from .layouts.chexpert import write_chexpert
from .registry import list_datasets, register_dataset, unregister_dataset

__all__ = [
    "FINDINGS",
    "ImageSet",
    "as_image_array",
    "harmonise",
    "hash_array",
    "image_keys",
    "memory_limit",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "unregister_dataset",
    "write_chexpert",
    "write_folder",
]
