"""The synthetic images of one generator, kept in step with everything derived from them.

A :class:`SampleStore` holds, row for row, the images a generator made in a
session, their features under the session's encoder, their coordinates in
the session's map (once there is one) and the streaming metric states over
them. :meth:`SampleStore.append` is the one way in: it evicts the oldest
rows beyond ``max_samples`` from all of these together and reports what it
evicted, so memory stays bounded and nothing drifts out of step.

>>> import numpy as np
>>> from medsynth_explore.data import ImageSet
>>> store = SampleStore("g", max_samples=5)
>>> store.append(ImageSet(np.zeros((4, 1, 8, 8), np.float32)), np.zeros((4, 3)))
Appended(n_new=4, evicted=0)
>>> store.append(ImageSet(np.ones((3, 1, 8, 8), np.float32)), np.ones((3, 3)))
Appended(n_new=3, evicted=2)
>>> len(store), store.features.shape, float(store.images.images[0].max())
(5, (5, 3), 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

from ..data import ImageSet
from ..errors import DataError

__all__ = ["SampleStore", "Appended"]


@dataclass(frozen=True)
class Appended:
    """What one :meth:`SampleStore.append` did.

    ``n_new`` new rows are kept (all of the batch unless it alone exceeds
    ``max_samples``); ``evicted`` rows were dropped, oldest first.
    """

    n_new: int
    evicted: int

    def __repr__(self) -> str:
        return f"Appended(n_new={self.n_new}, evicted={self.evicted})"


class SampleStore:
    """Images, features, map coordinates and streaming metric states of one generator's samples.

    Parameters
    ----------
    name : str
        The generator's name in the session.
    max_samples : int
        Rows kept; the oldest go first.

    Attributes
    ----------
    images : ImageSet
        The kept images (an empty set before the first append).
    features : ndarray (N, D) or None
        Their features, row for row.
    coords : ndarray (N, 2) or None
        Their places in the session's map; None until a map exists.
    """

    def __init__(self, name: str, max_samples: int = 2048) -> None:
        if isinstance(max_samples, bool) or not isinstance(max_samples, (int, np.integer)) or max_samples < 1:
            raise DataError(f"max_samples must be a positive integer, got {max_samples!r}.")
        self.name = str(name)
        self.max_samples = int(max_samples)
        self.images: ImageSet | None = None
        self.features: np.ndarray | None = None
        self.coords: np.ndarray | None = None
        self._states: dict | None = None
        self._state_key: Any = None

    def __len__(self) -> int:
        return 0 if self.images is None else len(self.images)

    def __repr__(self) -> str:
        return f"SampleStore({self.name!r}, n={len(self)}, max_samples={self.max_samples}, mapped={self.coords is not None})"

    # ------------------------------------------------------------------ changing the rows
    def append(self, samples: ImageSet, features: np.ndarray, coords: Optional[np.ndarray] = None) -> Appended:
        """Add images with their features (and map coordinates when the store has a map); evict the oldest beyond bounds.

        ``coords`` is required once the store has coordinates (:meth:`set_coords`)
        and ignored before. Streaming states take the new rows incrementally;
        after an eviction they are dropped and rebuilt from the kept rows on
        the next :meth:`states` call (a state cannot forget samples).
        """
        if not isinstance(samples, ImageSet):
            raise DataError(f"samples must be an ImageSet, got {type(samples).__name__}.")
        feats = np.asarray(features)
        if feats.ndim != 2 or len(feats) != len(samples):
            raise DataError(f"got {len(samples)} images but features of shape {feats.shape}; give one feature row per image.")
        if self.features is not None and len(self) and feats.shape[1] != self.features.shape[1]:
            raise DataError(
                f"features have {feats.shape[1]} dimensions; this store holds {self.features.shape[1]}-dimensional ones."
            )
        if self.images is not None and len(self) and samples.images.shape[1:] != self.images.images.shape[1:]:
            raise DataError(
                f"images of shape {samples.images.shape[1:]} cannot join stored images of shape {self.images.images.shape[1:]}."
            )
        if self.coords is not None:
            if coords is None or np.shape(coords) != (len(samples), 2):
                raise DataError("this store has map coordinates: give coords of shape (n, 2) for the new samples.")
            new_xy = np.asarray(coords, np.float32)
        n_new = len(samples)
        if n_new == 0:
            return Appended(0, 0)
        merged = samples if not len(self) else ImageSet.concat([self.images, samples], source=f"session:{self.name}")
        all_feats = feats if not len(self) else np.concatenate([self.features, feats])
        drop = max(0, len(merged) - self.max_samples)
        if drop:
            merged = merged.subset(slice(drop, None))
            all_feats = all_feats[drop:]
        if self.coords is not None:
            self.coords = np.concatenate([self.coords, new_xy])[drop:]
        self.images, self.features = merged, all_feats
        if drop:
            self._states = None
        elif self._states is not None:
            for state in self._states.values():
                state.update(feats, real=False)
        return Appended(min(n_new, len(self.images)), drop)

    def clear(self) -> None:
        """Forget every row (the map, if any, stays: new rows still get coordinates)."""
        if self.images is not None:
            self.images = self.images.subset([])
        if self.features is not None:
            self.features = self.features[:0]
        if self.coords is not None:
            self.coords = self.coords[:0]
        self._states = None

    def set_coords(self, coords: np.ndarray) -> None:
        """Coordinates of every kept row in a (new) map; from now on each append needs coordinates."""
        xy = np.asarray(coords, np.float32)
        if xy.shape != (len(self), 2):
            raise DataError(f"coords must have shape ({len(self)}, 2), one row per kept sample; got {xy.shape}.")
        self.coords = xy

    # ------------------------------------------------------------------ streaming metric states
    def states(self, real_features: np.ndarray, factories: Mapping[str, Any], key: Any = None) -> dict:
        """Streaming states over the kept features against ``real_features``, built once and then kept up to date.

        ``factories`` maps a name to a zero-argument callable returning a fresh
        accumulator; ``key`` identifies the settings (and reference) they were
        built for: a different key rebuilds them.
        """
        if self._states is None or self._state_key != key:
            if self.features is None or not len(self):
                raise DataError(f"no synthetic images of {self.name!r} yet; generate some first.")
            states = {}
            for name, make in factories.items():
                state = make()
                state.update(real_features, real=True)
                state.update(self.features, real=False)
                states[name] = state
            self._states, self._state_key = states, key
        return self._states
