"""Metrics on features and images: pure functions, streaming accumulators and one registry.

Distribution metrics take feature arrays (N, D) (see
:mod:`medsynth_explore.features`); paired image metrics take images.
Every function raises :class:`~medsynth_explore.errors.MetricError` for input
it cannot be computed on. Each metric is declared once in
:mod:`~medsynth_explore.metrics.registry` (name, function, outputs and their
direction, needs, streaming state); :func:`list_metrics` shows them all.
"""

from .cas import cas
from .counterfactual import edit_effect
from .fid import feature_stats, fid, fid_infinity, frechet_distance, relative_fd, sqrt_trace_product
from .image import psnr, ssim, ssim_map
from .kernel import cmmd, kid, kid_subset_indices, mmd2_biased, mmd2_unbiased, poly_kernel, rbf_kernel
from .membership import attack_roc, membership_inference
from .prdc import knn_radii, prdc
from .privacy import authenticity, copy_rate, ct_test, nn_distances, privacy_report
from .registry import (
    Metric,
    MetricEngine,
    MetricInputs,
    Output,
    compute_metrics,
    get_metric,
    higher_is_better,
    list_metrics,
    register_metric,
    resolve,
    streaming_state,
    unregister_metric,
)
from .scores import clip_score, inception_score
from .segmentation import anatomy_summary, ctr_error, dice
from .streaming import StreamingCMMD, StreamingFID, StreamingKID, StreamingMetric, StreamingPRDC
from .subgroups import AGE_BINS, GroupResult, age_group, bootstrap_ci, by_group, group_labels

__all__ = [
    "fid",
    "fid_infinity",
    "relative_fd",
    "feature_stats",
    "frechet_distance",
    "sqrt_trace_product",
    "kid",
    "kid_subset_indices",
    "cmmd",
    "mmd2_unbiased",
    "mmd2_biased",
    "poly_kernel",
    "rbf_kernel",
    "prdc",
    "knn_radii",
    "inception_score",
    "clip_score",
    "ssim",
    "ssim_map",
    "psnr",
    "cas",
    "nn_distances",
    "authenticity",
    "copy_rate",
    "ct_test",
    "privacy_report",
    "membership_inference",
    "attack_roc",
    "edit_effect",
    "dice",
    "ctr_error",
    "anatomy_summary",
    "StreamingMetric",
    "StreamingFID",
    "StreamingKID",
    "StreamingCMMD",
    "StreamingPRDC",
    "list_metrics",
    "register_metric",
    "unregister_metric",
    "get_metric",
    "resolve",
    "higher_is_better",
    "compute_metrics",
    "streaming_state",
    "Metric",
    "MetricEngine",
    "MetricInputs",
    "Output",
    "GroupResult",
    "by_group",
    "group_labels",
    "age_group",
    "bootstrap_ci",
    "AGE_BINS",
]
