"""What every layout loader shares: the file-set keywords it passes on, and the error for keywords it does not take."""

from __future__ import annotations

from ...errors import DataError

__all__ = ["FILE_KEYWORDS", "split_file_keywords", "reject_unknown"]


#: Keywords every file loader takes (passed on to :func:`medsynth_explore.data.files.build_file_set`).
FILE_KEYWORDS = ("size", "aspect", "channels", "lazy", "on_error", "pixel_limit", "workers", "verify")


def split_file_keywords(kwargs: dict) -> tuple[dict, dict]:
    """(file-set keywords, the rest) of a loader's keyword arguments."""
    files = {k: v for k, v in kwargs.items() if k in FILE_KEYWORDS}
    rest = {k: v for k, v in kwargs.items() if k not in FILE_KEYWORDS}
    return files, rest


def reject_unknown(rest: dict, layout: str, known: tuple) -> None:
    """A ``DataError`` naming keywords a layout does not take."""
    unknown = sorted(set(rest) - set(known))
    if unknown:
        raise DataError(
            f"the {layout} layout does not take {', '.join(map(repr, unknown))}; it takes "
            f"{', '.join(FILE_KEYWORDS + tuple(known))}."
        )
