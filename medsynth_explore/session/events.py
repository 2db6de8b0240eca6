"""An event bus whose subscriptions can be removed: panels hear what changed and stop when closed.

>>> bus = EventBus(("samples",))
>>> seen = []
>>> sub = bus.on("samples", lambda **kw: seen.append(kw["n_new"]))
>>> bus.emit("samples", n_new=3)
>>> sub.remove()
>>> bus.emit("samples", n_new=4)
>>> seen, bus.count("samples")
([3], 0)
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable

from ..errors import MedsynthError

__all__ = ["EVENTS", "EventBus", "Subscription"]

#: What a session announces, and with which keyword arguments.
EVENTS = {
    "samples": "synthetic images were added or cleared: generator=, n_new=, evicted=",
    "active": "another generator became the active one: name=",
    "generators": "a generator was added: names=",
    "features": "the encoder or the reference features changed",
}


class Subscription:
    """A handle on one subscription; :meth:`remove` (or leaving a ``with`` block) ends it."""

    def __init__(self, bus: "EventBus", event: str, fn: Callable[..., Any]) -> None:
        self.bus, self.event, self.fn = bus, event, fn

    @property
    def active(self) -> bool:
        """Whether ``fn`` is still called on the event."""
        return self.bus._has(self)

    def remove(self) -> None:
        """Stop calling ``fn`` (removing twice is harmless)."""
        self.bus._remove(self)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> bool:
        self.remove()
        return False

    def __repr__(self) -> str:
        return f"Subscription({self.event!r}, {getattr(self.fn, '__qualname__', self.fn)!r}, active={self.active})"


class EventBus:
    """Named events; each subscriber is called as ``fn(**payload)`` in the order it subscribed.

    Parameters
    ----------
    events : iterable of str
        The events that may be emitted or subscribed to; any other name is a
        :class:`~medsynth_explore.errors.MedsynthError` (a typo would otherwise
        subscribe to nothing, silently).
    """

    def __init__(self, events: Iterable[str] = tuple(EVENTS)) -> None:
        self.events = tuple(events)
        self._subs: dict[str, list[Subscription]] = {e: [] for e in self.events}
        self._lock = threading.Lock()

    def _check(self, event: str) -> None:
        if event not in self._subs:
            raise MedsynthError(f"unknown event {event!r}; events are {', '.join(self.events)}.")

    def on(self, event: str, fn: Callable[..., Any]) -> Subscription:
        """Call ``fn(**payload)`` whenever ``event`` is emitted; returns the subscription."""
        self._check(event)
        if not callable(fn):
            raise MedsynthError(f"the subscriber to {event!r} must be callable, got {type(fn).__name__}.")
        sub = Subscription(self, event, fn)
        with self._lock:
            self._subs[event].append(sub)
        return sub

    def emit(self, event: str, **payload: Any) -> None:
        """Call every current subscriber of ``event`` (a subscriber removed meanwhile is skipped)."""
        self._check(event)
        with self._lock:
            subs = list(self._subs[event])
        for sub in subs:
            if self._has(sub):
                sub.fn(**payload)

    def count(self, event: str) -> int:
        """Number of current subscribers of ``event``."""
        self._check(event)
        return len(self._subs[event])

    def _has(self, sub: Subscription) -> bool:
        with self._lock:
            return any(s is sub for s in self._subs.get(sub.event, ()))

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.event, [])
            subs[:] = [s for s in subs if s is not sub]
