"""Anatomical accuracy by segmentation: are lungs and heart where a chest has them?

A small segmentation network trained on PhantomCXR's ground-truth masks
(:mod:`~medsynth_explore.anatomy.segmenter`, trained by
:mod:`~medsynth_explore.anatomy.training`, shipped as
``assets/phantomcxr-segmenter.safetensors``, reproducible with
``medsynth train --model segmenter``) finds the right lung, the left lung
and the heart. :func:`measure` turns its masks into the cardiothoracic ratio,
lung and heart areas and a ``plausible`` flag per image
(:mod:`~medsynth_explore.anatomy.measure`); :mod:`~medsynth_explore.anatomy.checks`
applies it to generators: the CTR per requested condition, the rate of
implausible anatomy, and whether inpainting keeps the structures outside its
mask. A researcher's own segmentation model stands in through
:func:`load_segmenter`.

Examples
--------
>>> from medsynth_explore.anatomy import measure
>>> from medsynth_explore.phantom import simulate
>>> measure(simulate(2, seed=0))[["ctr", "plausible"]].shape
(2, 2)
"""

from __future__ import annotations

from .checks import anatomy_report, ctr_by_condition, inpainting_anatomy
from .measure import RANGED, check_plausible, measure, measure_masks, reference_ranges
from .segmenter import SEGMENTER_ASSET, ModuleSegmenter, Segmenter, load_segmenter
from .training import heldout_metrics, train_segmenter
from .truth import STRUCTURES, label_map, truth_masks

__all__ = [
    "STRUCTURES",
    "RANGED",
    "SEGMENTER_ASSET",
    "Segmenter",
    "ModuleSegmenter",
    "load_segmenter",
    "train_segmenter",
    "heldout_metrics",
    "measure",
    "measure_masks",
    "check_plausible",
    "reference_ranges",
    "truth_masks",
    "label_map",
    "anatomy_report",
    "ctr_by_condition",
    "inpainting_anatomy",
]
