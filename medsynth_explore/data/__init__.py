"""Data sets: :class:`ImageSet`, the loaders behind :func:`load_dataset`, and the registry of named data sets.

A named data set (the built-in ``"phantomcxr"``, or one a plugin adds)
registers itself with :func:`register_dataset`; :func:`list_datasets` shows
them all. See :mod:`medsynth_explore.data.registry` for how a package adds one.
"""

from .imageset import ImageSet, as_image_array, hash_array, image_keys
from .io import load_dataset, write_folder
from .registry import list_datasets, register_dataset, unregister_dataset

__all__ = [
    "ImageSet",
    "as_image_array",
    "hash_array",
    "image_keys",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "unregister_dataset",
    "write_folder",
]
