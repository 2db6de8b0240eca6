"""The registry of named data sets behind :func:`~medsynth_explore.data.load_dataset`.

A data set name (``"phantomcxr"``) maps to a loader: a function taking
keyword arguments and returning an :class:`~medsynth_explore.data.ImageSet`.
The data layer knows no loader of a lower layer: each registers itself with
:func:`register_dataset` when its module is imported, and the registry finds
those modules through the ``medsynth_explore.datasets`` entry-point group of
the installed distributions, imported on the first lookup by name. That is
how the built-in PhantomCXR is found (``medsynth_explore/phantom/dataset.py``,
declared in this package's ``pyproject.toml``) without ``data`` importing
``phantom``, and how another package adds its own data sets::

    # pyproject.toml of the package that brings the data set
    [project.entry-points."medsynth_explore.datasets"]
    mydata = "mypackage.medsynth_data"          # a module that calls register_dataset(...)
    # or: mydata = "mypackage.loaders:load_mydata"  (a loader, registered under the entry point's name)

    # mypackage/medsynth_data.py
    from medsynth_explore.data import register_dataset

    def load_mydata(n=100, seed=0): ...         # returns an ImageSet

    register_dataset("mydata", load_mydata, "My chest X-rays, resized to 64x64", aliases=("my",))

Names are case-insensitive. Entry points are read from the installed
package metadata: after adding one, reinstall (``pip install -e .``).

Examples
--------
>>> import numpy as np
>>> from medsynth_explore.data import ImageSet, load_dataset
>>> def flat(n=2):
...     return ImageSet(np.full((n, 1, 4, 4), 0.5, np.float32))
>>> _ = register_dataset("flat-demo", flat, "A flat grey image set, for the docs", aliases=("flat",))
>>> load_dataset("FLAT", n=3).shape
(3, 1, 4, 4)
>>> "flat-demo" in list_datasets()["name"].tolist()
True
>>> unregister_dataset("flat-demo")
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..errors import DataError

__all__ = [
    "ENTRY_POINT_GROUP",
    "dataset_loader",
    "is_registered",
    "list_datasets",
    "register_dataset",
    "registered_names_hint",
    "unregister_dataset",
]

#: Entry-point group naming modules (or loaders) that register data sets.
ENTRY_POINT_GROUP = "medsynth_explore.datasets"


@dataclass(frozen=True)
class _Entry:
    name: str
    loader: Callable[..., Any]
    description: str
    aliases: tuple[str, ...]

    @property
    def target(self) -> str:
        return f"{getattr(self.loader, '__module__', '?')}:{getattr(self.loader, '__qualname__', repr(self.loader))}"


_ENTRIES: dict[str, _Entry] = {}  # canonical name -> entry
_NAMES: dict[str, str] = {}  # name or alias, lower case -> canonical name
_LOCK = threading.RLock()  # guards the two tables; never held while importing
_DISCOVERY_LOCK = threading.RLock()  # held while the entry-point modules are imported
_DISCOVERED = False


def _key(name: Any, what: str = "name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"a data set {what} must be a non-empty string, got {name!r}.")
    return name.strip().lower()


def register_dataset(
    name: str,
    loader: Callable[..., Any],
    description: str = "",
    aliases: Sequence[str] = (),
    replace: bool = False,
) -> Callable[..., Any]:
    """Make ``load_dataset(name, **kwargs)`` call ``loader(**kwargs)``.

    Parameters
    ----------
    name : str
        The data set's name (case-insensitive), e.g. ``"phantomcxr"``.
    loader : callable
        Takes keyword arguments only and returns an
        :class:`~medsynth_explore.data.ImageSet`.
    description : str
        One line for :func:`list_datasets`; default the first line of the
        loader's docstring.
    aliases : sequence of str
        Other names for the same data set (e.g. ``"phantom"``).
    replace : bool
        Take over names held by another loader: a data set registered under
        ``name`` or an alias is removed, an alias of another data set is
        moved to this one. Registering the same loader again (the same
        ``module:function``, e.g. after a reload) is always allowed.

    Returns
    -------
    callable
        ``loader``, unchanged.

    Raises
    ------
    DataError
        Bad name, a loader that is not callable, or a name taken by another
        loader (without ``replace``).
    """
    canonical = _key(name)
    names = [canonical, *(_key(a, "alias") for a in aliases)]
    if not callable(loader):
        raise DataError(f"the loader of data set {name!r} must be callable, got {type(loader).__name__}.")
    if not description:
        doc = (getattr(loader, "__doc__", None) or "").strip()
        description = doc.splitlines()[0] if doc else ""
    entry = _Entry(canonical, loader, str(description), tuple(dict.fromkeys(names[1:])))
    with _LOCK:
        for n in names:
            owner = _ENTRIES.get(_NAMES.get(n, ""))
            if owner is not None and not replace and owner.target != entry.target:
                raise DataError(
                    f"data set name {n!r} is taken by {owner.name!r} ({owner.target}); choose another name or pass replace=True."
                )
        if canonical in _ENTRIES:  # registered again: its old aliases go, the new ones come
            _drop(canonical)
        for n in names:
            other = _NAMES.get(n)
            if other is None:
                continue
            if other == n:  # the canonical name of another data set: that data set goes
                _drop(other)
            else:  # an alias of another data set moves to this one
                kept = tuple(a for a in _ENTRIES[other].aliases if a != n)
                _ENTRIES[other] = dataclasses.replace(_ENTRIES[other], aliases=kept)
                del _NAMES[n]
        _ENTRIES[canonical] = entry
        for n in names:
            _NAMES[n] = canonical
    return loader


def _drop(canonical: str) -> None:
    entry = _ENTRIES.pop(canonical)
    for n in (entry.name, *entry.aliases):
        _NAMES.pop(n, None)


def unregister_dataset(name: str) -> None:
    """Remove a data set (by its name or an alias) with its aliases; unknown names are ignored."""
    with _LOCK:
        canonical = _NAMES.get(_key(name))
        if canonical is not None:
            _drop(canonical)


def _discover() -> None:
    """Import every module named in the ``medsynth_explore.datasets`` entry points, once per process."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    with _DISCOVERY_LOCK:
        if _DISCOVERED:
            return
        _DISCOVERED = True  # set first: a plugin that looks a name up while it is imported must not recurse
        from importlib.metadata import entry_points

        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            try:
                if ep.attr:  # "module:loader": register the loader under the entry point's name
                    loader = getattr(importlib.import_module(ep.module), ep.attr)
                    if _key(ep.name) not in _NAMES:
                        register_dataset(ep.name, loader)
                else:  # "module": importing it registers its data sets
                    importlib.import_module(ep.module)
            except Exception as exc:  # a broken plugin must not break loading folders and the other data sets
                warnings.warn(
                    f"could not load data set plugin {ep.name!r} ({ep.value}): {type(exc).__name__}: {exc}",
                    RuntimeWarning,
                    stacklevel=3,
                )


def is_registered(name: Any) -> bool:
    """Whether ``name`` is a registered data set name or alias (case-insensitive).

    Examples
    --------
    >>> is_registered("PhantomCXR"), is_registered("no-such-set"), is_registered(3)
    (True, False, False)
    """
    if not isinstance(name, str) or not name.strip():
        return False
    _discover()
    return name.strip().lower() in _NAMES


def dataset_loader(name: str) -> Callable[..., Any]:
    """The loader registered under ``name`` (or one of its aliases).

    Raises
    ------
    DataError
        When no data set has that name; the message lists the registered ones.

    Examples
    --------
    >>> dataset_loader("phantom").__name__
    'load_phantomcxr'
    """
    _discover()
    key = _key(name)
    with _LOCK:
        canonical = _NAMES.get(key)
        if canonical is None:
            raise DataError(f"unknown data set {name!r}. {registered_names_hint()}")
        return _ENTRIES[canonical].loader


def registered_names_hint() -> str:
    """The registered names, for error messages.

    Examples
    --------
    >>> print(registered_names_hint())  # doctest: +ELLIPSIS
    Built-in and plugin data sets: ...'phantomcxr' (alias 'phantom')...
    """
    _discover()
    with _LOCK:
        entries = sorted(_ENTRIES.values(), key=lambda e: e.name)
    if not entries:
        return (
            f"No data sets are registered: no installed package declares the {ENTRY_POINT_GROUP!r} entry points "
            "(in a source checkout, run `pip install -e .` once)."
        )
    parts = []
    for e in entries:
        alias = f" (alias {', '.join(repr(a) for a in e.aliases)})" if e.aliases else ""
        parts.append(f"{e.name!r}{alias}")
    return f"Built-in and plugin data sets: {', '.join(parts)} (medsynth_explore.data.list_datasets() describes them)."


def list_datasets():
    """The registered data sets, one row each: ``name``, ``aliases``, ``description``, ``loader``.

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> table = list_datasets()
    >>> table.set_index("name").loc["phantomcxr", "loader"]
    'medsynth_explore.phantom.dataset:load_phantomcxr'
    """
    import pandas as pd

    _discover()
    with _LOCK:
        entries = sorted(_ENTRIES.values(), key=lambda e: e.name)
    return pd.DataFrame(
        [{"name": e.name, "aliases": ", ".join(e.aliases), "description": e.description, "loader": e.target} for e in entries],
        columns=["name", "aliases", "description", "loader"],
    )
