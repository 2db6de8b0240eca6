"""Exception family of medsynth-explore.

Every error a user can cause with ordinary input (a wrong path, a malformed
file, an out-of-range condition) is raised as a :class:`MedsynthError`
subclass whose message says what was wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "MedsynthError",
    "DataError",
    "CheckpointError",
    "ConditionError",
    "CapabilityError",
    "FeatureError",
    "MetricError",
    "OfflineError",
    "CancelledError",
]


class MedsynthError(Exception):
    """Base class of every error raised on purpose by medsynth-explore."""


class DataError(MedsynthError, ValueError):
    """A data set, image or metadata table is missing, malformed or inconsistent."""


class CheckpointError(MedsynthError, ValueError):
    """A checkpoint file is missing, corrupt, untrusted or does not match its card."""


class ConditionError(MedsynthError, ValueError):
    """A requested condition is unknown or outside the range the model was trained on."""


class CapabilityError(MedsynthError, NotImplementedError):
    """The model cannot do what was asked (for example, inpainting with a GAN)."""


class FeatureError(MedsynthError, ValueError):
    """A feature encoder cannot be built or was given input it cannot encode."""


class MetricError(MedsynthError, ValueError):
    """A metric was given input it cannot be computed on (shapes, NaNs, too few samples)."""


class OfflineError(MedsynthError, RuntimeError):
    """Something needs the network or files that are not on this machine.

    The message says which file to fetch and where to put it.
    """


class CancelledError(MedsynthError):
    """Long work was cancelled through its progress callback."""
