"""Path safety, in one place: every path read from a CSV must resolve inside the data root.

A metadata file is data, not code: a line ``../x.png`` or ``/etc/x.png`` must
not make the loader read files outside the folder the user pointed at. Each
loader resolves its listed paths with :func:`resolve_listed`, which

* rejects empty paths, NUL bytes and (unless ``allow_outside_root=True``)
  absolute paths;
* joins the path to the root and resolves it (``..`` and symbolic links
  followed), and rejects the result when it is not inside the resolved root;
* raises :class:`~medsynth_explore.errors.DataError` naming the first
  offending CSV line and the fix.

CheXpert's documented rule (paths relative to the folder *above*
``CheXpert-v1.0[-small]``) lives in :func:`strip_dataset_folder`: the layout
resolves a path against the CSV's own folder after dropping its leading
dataset-folder component, so a renamed dataset folder still loads and the
root stays the dataset folder itself.

Examples
--------
>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> [p.name for p in resolve_listed(root, ["a.png", "sub/b.png"])]
['a.png', 'b.png']
>>> resolve_listed(root, ["../x.png"])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
medsynth_explore.errors.DataError: ...'../x.png'...outside the data folder...
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import DataError

__all__ = ["resolve_listed", "strip_dataset_folder", "is_inside", "relative_name"]


def is_inside(path: "str | os.PathLike", root: "str | os.PathLike") -> bool:
    """Whether ``path`` is ``root`` or below it (both already resolved; paths or their strings).

    A comparison of the two texts, component by component, without
    building ``Path`` objects: it runs once per listed file.

    Examples
    --------
    >>> is_inside(Path("/a/b/c"), Path("/a/b")), is_inside(Path("/a/bc"), Path("/a/b")), is_inside("/a/b", "/a/b")
    (True, False, True)
    """
    p, r = os.fspath(path), os.fspath(root)
    return p == r or p.startswith(r.rstrip(os.sep) + os.sep)


def _parts(text: str) -> tuple[str, ...]:
    """The components of a listed path (``/`` or ``\\`` separators; empty and ``.`` components dropped, ``..`` kept)."""
    t = text.replace("\\", "/")
    rest = tuple(c for c in t.split("/") if c and c != ".")
    return ("/", *rest) if t.startswith("/") else rest


def resolve_listed(
    root: Any,
    paths: Iterable[Any],
    *,
    allow_outside_root: bool = False,
    where: str = "the metadata CSV",
    column: str = "filename",
) -> list[Path]:
    """Resolve paths listed in a table against ``root``, refusing any that lead outside it.

    Parameters
    ----------
    root : path-like
        The data root (the folder given, or the layout's documented root).
    paths : iterable of str
        Paths as written in the table (``/`` or ``\\`` separators).
    allow_outside_root : bool
        Accept absolute paths and paths that resolve outside ``root``
        (for a table that lists files on another disk on purpose).
    where, column : str
        Named in error messages.

    Returns
    -------
    list of pathlib.Path
        Resolved absolute paths, in order.

    Raises
    ------
    DataError
        Empty path, NUL byte, absolute path, or a path outside ``root``.
    """
    root_r = Path(root).expanduser().resolve()
    root_s = str(root_r)
    real_dirs: dict[str, str] = {}  # each folder is resolved once, not once per file in it
    out: list[Path] = []
    for line, raw in enumerate(paths):
        text = "" if raw is None or (isinstance(raw, float) and np.isnan(raw)) else str(raw)
        row = f"row {line + 1} of {where}"
        if not text.strip():
            raise DataError(f"{row} has an empty {column!r}; every row must name an image file.")
        if "\x00" in text:
            raise DataError(f"{row} has a {column!r} with a NUL byte ({text!r}); it cannot name a file.")
        rel = text.replace("\\", "/")
        absolute = rel.startswith("/") or (len(rel) > 1 and rel[1] == ":" and rel[0].isalpha())
        if absolute and not allow_outside_root:
            raise DataError(
                f"{row} lists an absolute path {text!r}; paths must be relative to the data folder {root_s!r}. "
                "Pass allow_outside_root=True to read it anyway."
            )
        joined = str(Path(rel)) if absolute else os.path.join(root_s, *_parts(rel))
        try:
            resolved = _resolve(joined, real_dirs)
        except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
            raise DataError(f"{row}: cannot resolve {text!r}: {exc}") from exc
        if not allow_outside_root and not is_inside(resolved, root_s):
            raise DataError(
                f"{row} lists {text!r}, which resolves to {resolved!r}, outside the data folder {root_s!r}. "
                "Paths in a CSV must stay inside the folder given; pass allow_outside_root=True to read it anyway."
            )
        out.append(Path(resolved))
    return out


def _resolve(joined: str, real_dirs: dict[str, str]) -> str:
    """``Path(joined).resolve()`` as a string, resolving each folder once (``real_dirs`` caches them).

    The file's own name is followed only when it is a symbolic link (one
    ``lstat``); ``..`` and links anywhere in the folder part are resolved
    by the folder's own resolution, so the result is the same as resolving
    the whole path.
    """
    head, name = os.path.split(joined)
    if name in ("", ".", ".."):
        return str(Path(joined).resolve())
    real = real_dirs.get(head)
    if real is None:
        real = real_dirs[head] = str(Path(head).resolve())
    full = os.path.join(real, name)
    try:
        link = stat.S_ISLNK(os.lstat(full).st_mode)
    except OSError:  # missing or unreadable: resolved as far as it exists, as Path.resolve does
        return full
    return str(Path(full).resolve()) if link else full


def strip_dataset_folder(paths: Sequence[str], root: Any, prefixes: Sequence[str] = ()) -> tuple[list[str], Path, str | None]:
    """Find where paths that start with a dataset-folder component really are (CheXpert's rule).

    CheXpert's CSVs list ``CheXpert-v1.0-small/train/patient00001/...``,
    relative to the folder *above* the dataset folder, and users rename that
    folder. For each distinct first component that is the root's own name or
    starts with one of ``prefixes``, the first path with it is looked up:

    1. under ``root`` without the component (the CSV in the dataset folder,
       whatever that folder is called now): the component is dropped;
    2. under ``root`` as written (the CSV one level up): kept;
    3. under ``root``'s parent as written (the documented parent rule, the
       CSV copied elsewhere next to the dataset folder): kept, and the parent
       becomes the data root;
    4. nowhere: dropped, so a missing file is reported where it should be.

    Returns
    -------
    (paths, base, dropped)
        The paths, the folder to resolve them against (the data root), and
        the component that was dropped (None if none).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp()) / "my-chexpert"
    >>> (root / "train").mkdir(parents=True)
    >>> _ = (root / "train" / "a.jpg").write_bytes(b"")
    >>> paths, base, dropped = strip_dataset_folder(["CheXpert-v1.0-small/train/a.jpg"], root, ("CheXpert-v1.0",))
    >>> paths, base == root, dropped
    (['train/a.jpg'], True, 'CheXpert-v1.0-small')
    """
    root = Path(root)
    paths = [str(p).replace("\\", "/") for p in paths]
    firsts: dict[str, int] = {}
    for i, p in enumerate(paths):
        parts = _parts(p)
        if len(parts) > 1:
            firsts.setdefault(parts[0], i)
    drop: set[str] = set()
    base = root
    for first, i in firsts.items():
        if first in ("..", ".") or not (first == root.name or any(first.startswith(x) for x in prefixes)):
            continue
        rest = _parts(paths[i])[1:]
        if root.joinpath(*rest).exists():
            drop.add(first)
        elif root.joinpath(*_parts(paths[i])).exists():
            continue
        elif root.parent.joinpath(*_parts(paths[i])).exists():
            base = root.parent
        else:
            drop.add(first)
    if not drop:
        return paths, base, None
    out = []
    for p in paths:
        parts = _parts(p)
        out.append("/".join(parts[1:]) if len(parts) > 1 and parts[0] in drop else p)
    return out, base, sorted(drop)[0]


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with ``/`` separators (the path itself when outside)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return os.fspath(path)
