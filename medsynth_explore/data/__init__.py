"""Data sets: :class:`ImageSet` and the loaders behind :func:`load_dataset`."""

from .imageset import ImageSet, as_image_array, hash_array, image_keys
from .io import load_dataset, write_folder

__all__ = ["ImageSet", "as_image_array", "hash_array", "image_keys", "load_dataset", "write_folder"]
