"""Pictures of images: small PNG thumbnails, data URIs and HTML grids with captions.

This module is the package's one image encoder for display: the notebook
display of an :class:`~medsynth_explore.data.ImageSet` (``_repr_html_`` and
:meth:`~medsynth_explore.data.ImageSet.show`), the HTML report of
:func:`medsynth_explore.evaluate` and the Explorer's panels
(``widgets.common.png_bytes``) all encode through :func:`png_bytes`.

Thumbnails are small on the Python side: an image is shrunk by area
averaging (never enlarged) so that its longer side is at most ``max_side``
pixels, quantised to 8 bits and stored as an optimised PNG, a few kB for a
chest radiograph; the browser scales it to the displayed width. A grid only
ever reads the images it shows: from an ``ImageSet`` it takes
``read(positions)`` of those rows, never the whole set.

Examples
--------
>>> import numpy as np
>>> png = png_bytes(np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(1, 64, 64))
>>> png[:4], len(png) < 5000
(b'\\x89PNG', True)
>>> data_uri(png)[:22]
'data:image/png;base64,'
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import DataError

__all__ = [
    "STYLE",
    "THUMB_SIDE",
    "Gallery",
    "caption_columns",
    "captions",
    "data_uri",
    "finding_columns",
    "grid_html",
    "image_table",
    "imageset_html",
    "png_bytes",
    "read_rows",
    "show",
    "thumbnail",
    "to_uint8",
]

#: Longest side, in pixels, of a stored thumbnail (images are shrunk to it, never enlarged).
THUMB_SIDE = 96
#: Width in CSS pixels at which grids show a thumbnail.
CELL_WIDTH = 96
#: At most this many groups are drawn by :func:`show`; the rest are named in a note.
MAX_GROUPS = 24

#: The grids' small style block (classes prefixed ``msx-``).
STYLE = """<style>
.msx-gallery { font-family: sans-serif; font-size: 12px; color: #222; }
.msx-gallery .msx-summary { margin: 2px 0 6px 0; color: #444; }
.msx-gallery .msx-group { margin: 8px 0 2px 0; font-weight: bold; }
.msx-gallery .msx-grid { display: flex; flex-wrap: wrap; gap: 6px; }
.msx-gallery figure { margin: 0; text-align: center; }
.msx-gallery figure img { display: block; background: #000; outline: 1px solid #ccc; }
.msx-gallery figcaption { color: #555; font-size: 11px; line-height: 1.25; margin-top: 2px; overflow-wrap: anywhere; }
.msx-gallery .msx-note { color: #666; font-style: italic; margin: 4px 0; }
</style>"""


# ------------------------------------------------------------------------- one image
def _as_hwc(image: Any) -> np.ndarray:
    """(H, W) or (H, W, 3) float32 view of one image given as (H, W), (1, H, W), (3, H, W) or (C, H, W)."""
    if hasattr(image, "detach"):  # a torch tensor, without importing torch here
        image = image.detach().cpu().numpy()
    a = np.asarray(image)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise DataError(f"an image to display must be numeric, got dtype {a.dtype}.")
    a = a.astype(np.float32, copy=False)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        if a.shape[0] == 3:
            a = a.transpose(1, 2, 0)
        else:  # one channel, or a multi-channel image of which the first channel is shown
            a = a[0]
    if a.ndim != 2 and not (a.ndim == 3 and a.shape[2] == 3):
        raise DataError(f"an image to display must have shape (H, W) or (C, H, W); got {np.shape(image)}.")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise DataError(f"an image to display must have at least one pixel; got shape {np.shape(image)}.")
    if not np.isfinite(a).all():
        raise DataError("an image to display contains NaN or infinite values; clean it first.")
    return a


def _shrink(a: np.ndarray, max_side: int | None) -> np.ndarray:
    """Area-average ``a`` (H, W[, 3]) so that its longer side is at most ``max_side`` (never enlarges)."""
    if max_side is None:
        return a
    if isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer)) or max_side < 1:
        raise DataError(f"max_side must be a positive number of pixels, got {max_side!r}.")
    h, w = a.shape[:2]
    if max(h, w) <= max_side:
        return a
    from PIL import Image

    f = max_side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    chans = [a] if a.ndim == 2 else [a[..., c] for c in range(a.shape[2])]
    out = [np.asarray(Image.fromarray(np.ascontiguousarray(c, np.float32)).resize(size, Image.BOX)) for c in chans]
    return out[0] if a.ndim == 2 else np.stack(out, -1)


def to_uint8(image: Any, vmin: float = 0.0, vmax: float = 1.0, cmap: str | None = None) -> np.ndarray:
    """8-bit pixels of one image: grey (H, W), or RGB (H, W, 3) for colour images and ``cmap="diverging"``.

    Values in [``vmin``, ``vmax``] map to 0..255 (clipped outside). With
    ``cmap="diverging"`` the image is a signed difference in [-1, 1], shown
    blue (negative), white (0) and red (positive).

    Raises
    ------
    DataError
        For a shape that is not one image, non-numeric or non-finite values,
        ``vmax <= vmin``, or an unknown ``cmap``.

    Examples
    --------
    >>> to_uint8(np.array([[0.0, 0.5, 1.0]])).tolist()
    [[0, 128, 255]]
    >>> to_uint8(np.array([[-1.0, 0.0, 1.0]]), cmap="diverging")[0].tolist()
    [[0, 0, 255], [255, 255, 255], [255, 0, 0]]
    """
    a = _as_hwc(image)
    return _quantise(a, vmin, vmax, cmap)


def _quantise(a: np.ndarray, vmin: float, vmax: float, cmap: str | None) -> np.ndarray:
    if cmap == "diverging":
        t = np.clip(a if a.ndim == 2 else a[..., 0], -1, 1)
        rgb = np.stack([1 - np.clip(-t, 0, 1), 1 - np.abs(t), 1 - np.clip(t, 0, 1)], -1)
        return (rgb * 255).round().astype(np.uint8)
    if cmap is not None:
        raise DataError(f"unknown cmap {cmap!r}; use None (grey or colour) or 'diverging'.")
    if not (np.isfinite(vmin) and np.isfinite(vmax)) or vmax <= vmin:
        raise DataError(f"vmax must be greater than vmin, got vmin={vmin!r}, vmax={vmax!r}.")
    t = np.clip((a - vmin) / (vmax - vmin), 0, 1)
    return (t * 255).round().astype(np.uint8)


def thumbnail(image: Any, max_side: int | None = THUMB_SIDE, vmin: float = 0.0, vmax: float = 1.0, cmap: str | None = None):
    """8-bit pixels of one image shrunk by area averaging to at most ``max_side`` on its longer side.

    The shrinking happens on the float values, before quantisation, so fine
    texture averages instead of aliasing. Images already small enough keep
    their size (the browser enlarges them for display).

    Parameters
    ----------
    image : array (H, W) or (C, H, W)
        One image; values in [``vmin``, ``vmax``] (the package's [0, 1] by
        default). Three channels are shown in colour; any other number of
        channels shows the first one.
    max_side : int or None
        Longest side of the result in pixels; None keeps the size.
    vmin, vmax, cmap : see :func:`to_uint8`.

    Returns
    -------
    ndarray of uint8, (h, w) or (h, w, 3)

    Examples
    --------
    >>> thumbnail(np.zeros((1, 512, 256), np.float32), max_side=96).shape
    (96, 48)
    >>> thumbnail(np.zeros((1, 64, 64), np.float32)).shape
    (64, 64)
    """
    return _quantise(_shrink(_as_hwc(image), max_side), vmin, vmax, cmap)


def png_bytes(
    image: Any,
    scale: int = 1,
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str | None = None,
    max_side: int | None = None,
) -> bytes:
    """PNG bytes of one image, optionally shrunk to ``max_side`` or enlarged ``scale`` times (nearest neighbour).

    The one PNG encoder of the package (notebook grids, the HTML report and
    the Explorer's panels). ``cmap="diverging"`` maps [-1, 1] to
    blue-white-red, for difference images. The PNG is written with
    ``optimize=True``.

    Examples
    --------
    >>> from PIL import Image
    >>> im = Image.open(io.BytesIO(png_bytes(np.zeros((1, 4, 4)), scale=3)))
    >>> im.size, im.mode
    ((12, 12), 'L')
    """
    from PIL import Image

    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise DataError(f"scale must be a positive integer, got {scale!r}.")
    img = Image.fromarray(thumbnail(image, max_side, vmin, vmax, cmap))
    if scale != 1:
        img = img.resize((img.width * int(scale), img.height * int(scale)), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI of PNG bytes, to embed an image in HTML with no file beside it.

    Examples
    --------
    >>> data_uri(b"\\x89PNG")
    'data:image/png;base64,iVBORw=='
    """
    return "data:image/png;base64," + base64.b64encode(bytes(png)).decode("ascii")


# ------------------------------------------------------------------------- captions
def finding_columns(metadata: pd.DataFrame) -> list[str]:
    """The metadata columns that hold finding labels (0/1), in the vocabulary of :mod:`medsynth_explore.data.labels`.

    PhantomCXR's own names (``effusion``) are preferred; a harmonised column
    that only repeats one of them (``pleural_effusion``) is left out.

    Examples
    --------
    >>> md = pd.DataFrame({"age": [40], "effusion": [1], "pleural_effusion": [1.0], "edema": [0.0]})
    >>> finding_columns(md)
    ['effusion', 'edema']
    """
    from .labels import FINDINGS, PHANTOMCXR_FINDINGS

    cols = [c for c in metadata.columns if c in PHANTOMCXR_FINDINGS]
    covered = {v for c in cols for v in PHANTOMCXR_FINDINGS[c]}
    cols += [c for c in metadata.columns if c in FINDINGS and c not in covered and c not in cols and c != "no_finding"]
    return [c for c in cols if _is_binary(metadata[c])]


def _is_binary(col: pd.Series) -> bool:
    vals = pd.unique(col.dropna())
    try:
        return len(vals) > 0 and set(np.asarray(vals, float).tolist()) <= {0.0, 1.0}
    except (TypeError, ValueError):
        return False


def caption_columns(metadata: pd.DataFrame) -> list[str]:
    """The columns a default caption shows: ``sex``, ``age`` and the finding columns that exist.

    Examples
    --------
    >>> caption_columns(pd.DataFrame({"age": [40], "sex": ["F"], "nodule": [0], "site": ["A"]}))
    ['sex', 'age', 'nodule']
    """
    return [c for c in ("sex", "age") if c in metadata.columns] + finding_columns(metadata)


def captions(metadata: pd.DataFrame, columns: Sequence[str] | str | None = None) -> list[str]:
    """One short caption per row: ``"F 61 · effusion"`` by default, ``"col=value · ..."`` for chosen columns.

    By default (``columns=None``) a caption reads sex, age and the names of
    the findings present (``"no finding"`` when none is); ``columns`` names
    the metadata columns to show instead (a string or a list), each as
    ``name=value``; ``columns=[]`` gives empty captions.

    Raises
    ------
    DataError
        When a named column is not in the metadata.

    Examples
    --------
    >>> md = pd.DataFrame({"sex": ["F", "M"], "age": [61.4, 30], "effusion": [1, 0], "site": ["A", "B"]})
    >>> captions(md)
    ['F 61 · effusion', 'M 30 · no finding']
    >>> captions(md, "site")
    ['site=A', 'site=B']
    """
    if columns is None:
        findings = finding_columns(metadata)
        out = []
        for _, row in metadata.iterrows():
            parts = []
            if "sex" in metadata.columns and pd.notna(row["sex"]):
                parts.append(str(row["sex"]))
            if "age" in metadata.columns and pd.notna(row["age"]):
                try:
                    parts.append(f"{float(row['age']):.0f}")
                except (TypeError, ValueError):
                    parts.append(str(row["age"]))
            head = " ".join(parts)
            if findings:
                present = [c.replace("_", " ") for c in findings if pd.notna(row[c]) and float(row[c]) == 1.0]
                head = " · ".join(p for p in (head, ", ".join(present) or "no finding") if p)
            out.append(head)
        return out
    cols = [columns] if isinstance(columns, str) else list(columns)
    missing = [c for c in cols if c not in metadata.columns]
    if missing:
        raise DataError(f"cannot caption by {missing}: the metadata has columns {list(metadata.columns)}.")
    return [" · ".join(f"{c}={_short(row[c])}" for c in cols) for _, row in metadata[cols].iterrows()]


def _short(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return "NA" if np.isnan(v) else f"{v:.4g}"
    return str(v)


# ------------------------------------------------------------------------- grids
def grid_html(
    images: Any,
    labels: Sequence[str] | None = None,
    width: int = CELL_WIDTH,
    max_side: int | None = THUMB_SIDE,
    title: str | None = None,
    style: bool = True,
) -> str:
    """An HTML grid of thumbnails (embedded as data URIs) with a caption under each.

    Parameters
    ----------
    images : array (N, C, H, W) or a sequence of images, or a sequence of PNG bytes
        The images to show (every one given is encoded; pass only those to show).
    labels : list of str, optional
        One caption per image (escaped).
    width : int
        Display width of each thumbnail in CSS pixels.
    max_side : int or None
        Longest stored side of each thumbnail (see :func:`thumbnail`).
    title : str, optional
        A line above the grid.
    style : bool
        Include the grid's small ``<style>`` block (leave it out when the page has it).

    Returns
    -------
    str
        Self-contained HTML: no file or network access is needed to show it.

    Examples
    --------
    >>> out = grid_html(np.zeros((2, 1, 8, 8), np.float32), ["a", "b<"])
    >>> out.count("<img"), "b&lt;" in out
    (2, True)
    """
    items = list(images) if not isinstance(images, np.ndarray) else list(images)
    if labels is not None and len(labels) != len(items):
        raise DataError(f"got {len(labels)} captions for {len(items)} images; give one caption per image.")
    cells = []
    for i, im in enumerate(items):
        png = im if isinstance(im, (bytes, bytearray)) else png_bytes(im, max_side=max_side)
        cap = html.escape(str(labels[i])) if labels is not None else ""
        cells.append(
            f'<figure><img src="{data_uri(png)}" width="{int(width)}" alt="{cap or "image"}">'
            + (f"<figcaption style='max-width:{int(width)}px'>{cap}</figcaption>" if cap else "")
            + "</figure>"
        )
    head = f"<div class='msx-group'>{html.escape(title)}</div>" if title else ""
    body = f"{head}<div class='msx-grid'>{''.join(cells)}</div>"
    return f"{STYLE}<div class='msx-gallery'>{body}</div>" if style else body


def read_rows(imageset: Any, positions: Sequence[int]) -> np.ndarray:
    """The pixels (k, C, H, W) of the rows at ``positions`` only: ``imageset.read(positions)``.

    Displays read their images this way, so that a set whose pixels stay on
    disk decodes only the images shown, never the whole set. An object
    without ``read`` is read through ``subset(positions).images``.

    Examples
    --------
    >>> from medsynth_explore.data import ImageSet
    >>> read_rows(ImageSet(np.zeros((10, 1, 4, 4), np.float32)), [2, 5]).shape
    (2, 1, 4, 4)
    """
    pos = np.asarray(positions, dtype=np.int64).reshape(-1)
    if not len(pos):
        return np.zeros((0, 1, 1, 1), np.float32)
    reader = getattr(imageset, "read", None)
    if callable(reader):
        return np.asarray(reader(pos))
    return np.asarray(imageset.subset(pos).images)


def _summary(imageset: Any) -> str:
    n = len(imageset)
    shape = tuple(getattr(imageset, "shape", ()) or ())
    size = f"{shape[1]} channel{'s' if shape[1] != 1 else ''}, {shape[2]}×{shape[3]} px" if len(shape) == 4 else ""
    prov = getattr(imageset, "provenance", {}) or {}
    src = prov.get("source") or prov.get("generator")
    cols = list(imageset.metadata.columns)
    col_text = ", ".join(map(str, cols[:12])) + (f", … ({len(cols)} in all)" if len(cols) > 12 else "")
    parts = [f"<b>ImageSet</b>: {n:,} image{'s' if n != 1 else ''}"]
    if size:
        parts.append(size)
    if src:
        parts.append(f"source {html.escape(str(src))}")
    line = ", ".join(parts)
    cols_line = f"<br>columns: {html.escape(col_text)}" if cols else "<br>no metadata columns"
    return f"<div class='msx-summary'>{line}{cols_line}</div>"


def imageset_html(imageset: Any, n: int = 16, columns: Sequence[str] | str | None = None, width: int = CELL_WIDTH) -> str:
    """The notebook display of an ImageSet: a summary line and a grid of its first ``n`` images.

    Only the first ``n`` images are read (``imageset.read(range(n))``).

    Examples
    --------
    >>> from medsynth_explore.data import ImageSet
    >>> out = imageset_html(ImageSet(np.zeros((40, 1, 8, 8), np.float32)), n=4)
    >>> out.count("<img"), "40 images" in out
    (4, True)
    """
    n = _check_count(n)
    k = min(n, len(imageset))
    md = imageset.metadata.iloc[:k]
    grid = grid_html(read_rows(imageset, range(k)), captions(md, columns), width=width, style=False) if k else ""
    more = f"<div class='msx-note'>first {k} of {len(imageset):,} shown; <code>.show(n, by=...)</code> shows more</div>"
    note = more if k < len(imageset) else ""
    return f"{STYLE}<div class='msx-gallery'>{_summary(imageset)}{grid}{note}</div>"


def _check_count(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise DataError(f"n must be a non-negative number of images, got {n!r}.")
    return int(n)


@dataclass
class Gallery:
    """Thumbnails grouped under headings: what :meth:`ImageSet.show` returns.

    Shows itself in a notebook (``_repr_html_``); :meth:`save` writes a
    standalone HTML page.

    Attributes
    ----------
    groups : list of (heading, positions)
        Each group's heading and the row positions (in the set) of the images shown.
    html : str
        The rendered HTML (images embedded as data URIs).
    note : str
        What was left out, in words ("" when nothing was).
    """

    groups: list = field(default_factory=list)
    html: str = ""
    note: str = ""

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        shown = ", ".join(f"{h or 'all'}: {len(p)}" for h, p in self.groups)
        return f"Gallery({shown})" + (f" [{self.note}]" if self.note else "")

    def save(self, path: str | Path) -> Path:
        """Write the gallery as one self-contained HTML page."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>images</title></head><body>{self.html}</body></html>"
        p.write_text(page, encoding="utf-8")
        return p


def _group_rows(metadata: pd.DataFrame, by: Sequence[str] | str) -> list[tuple[str, np.ndarray]]:
    """(heading, positions) per group; ``by="findings"`` puts each image under every finding it has."""
    cols = [by] if isinstance(by, str) else list(by)
    if not cols:
        raise DataError("give a metadata column to group by, e.g. by='sex' (or by='findings').")
    if cols == ["findings"] and "findings" not in metadata.columns:
        fcols = finding_columns(metadata)
        if not fcols:
            raise DataError(
                "by='findings' needs finding columns (0/1) such as effusion or nodule; "
                f"the metadata has {list(metadata.columns)}."
            )
        flags = metadata[fcols].fillna(0).astype(float).to_numpy() == 1.0
        out = [("no finding", np.flatnonzero(~flags.any(1)))]
        out += [(c.replace("_", " "), np.flatnonzero(flags[:, j])) for j, c in enumerate(fcols)]
        return [(h, p) for h, p in out if len(p)]
    missing = [c for c in cols if c not in metadata.columns]
    if missing:
        hint = (
            " Add it first, e.g. s.metadata['age_group'] = medsynth_explore.metrics.age_group(s.metadata['age'])."
            if "age_group" in missing and "age" in metadata.columns
            else ""
        )
        raise DataError(f"cannot group by {missing}: the metadata has columns {list(metadata.columns)}.{hint}")
    labels = metadata[cols[0]].astype(str).radd(f"{cols[0]}=").reset_index(drop=True)
    for c in cols[1:]:
        labels = labels + " & " + metadata[c].astype(str).radd(f"{c}=").reset_index(drop=True)
    labels = labels.to_numpy()
    return [(g, np.flatnonzero(labels == g)) for g in sorted(set(labels.tolist()))]


def show(
    imageset: Any,
    n: int = 16,
    by: Sequence[str] | str | None = None,
    columns: Sequence[str] | str | None = None,
    width: int = CELL_WIDTH,
) -> Gallery:
    """Thumbnails of an ImageSet, optionally one group (row of the display) per value of ``by``.

    Parameters
    ----------
    imageset : ImageSet
    n : int
        Images shown: in all when ``by`` is None, otherwise per group (the
        first ``n`` rows of each group, in set order).
    by : str or list of str, optional
        Metadata column(s) to group by (several give their intersections),
        or ``"findings"``: one group per finding column, each image under
        every finding it has, plus ``"no finding"``. At most
        :data:`MAX_GROUPS` groups are drawn (bin a continuous column first).
    columns : str or list of str, optional
        Metadata columns for the captions (default: sex, age and findings).
    width : int
        Display width of each thumbnail in CSS pixels.

    Returns
    -------
    Gallery
        Displays itself in a notebook; ``.groups`` lists what is shown.

    Raises
    ------
    DataError
        For a missing column (``by`` or ``columns``) or a negative ``n``.

    Examples
    --------
    >>> from medsynth_explore.data import ImageSet
    >>> s = ImageSet(np.zeros((6, 1, 8, 8), np.float32), pd.DataFrame({"sex": list("FMFMFF")}))
    >>> [(h, p.tolist()) for h, p in show(s, n=2, by="sex").groups]
    [('sex=F', [0, 2]), ('sex=M', [1, 3])]
    """
    n = _check_count(n)
    md = imageset.metadata
    if by is None:
        groups = [("", np.arange(min(n, len(imageset))))]
        totals = [len(imageset)]
        note = f"first {min(n, len(imageset))} of {len(imageset):,} shown" if n < len(imageset) else ""
    else:
        all_groups = _group_rows(md, by)
        groups = [(h, p[:n]) for h, p in all_groups[:MAX_GROUPS]]
        totals = [len(p) for _, p in all_groups[:MAX_GROUPS]]
        left = all_groups[MAX_GROUPS:]
        note = f"{len(left)} more groups not shown: {', '.join(h for h, _ in left[:10])}" if left else ""
    wanted = np.unique(np.concatenate([p for _, p in groups])) if groups else np.zeros(0, np.int64)
    pixels = read_rows(imageset, wanted)  # each image once, even when it belongs to several groups
    where = {int(r): i for i, r in enumerate(wanted)}
    parts = [_summary(imageset)]
    for (heading, pos), total in zip(groups, totals):
        if by is not None:
            heading = f"{heading}: {len(pos)} of {total:,} image{'s' if total != 1 else ''}"
        if len(pos):
            ims = pixels[[where[int(r)] for r in pos]]
            parts.append(grid_html(ims, captions(md.iloc[pos], columns), width=width, title=heading or None, style=False))
    if note:
        parts.append(f"<div class='msx-note'>{html.escape(note)}</div>")
    return Gallery(groups=groups, html=f"{STYLE}<div class='msx-gallery'>{''.join(parts)}</div>", note=note)


def image_table(
    cells: Mapping[str, Mapping[str, Any]],
    captions: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    width: int = 72,
    max_side: int | None = THUMB_SIDE,
    corner: str = "",
) -> Gallery:
    """A table of thumbnail strips: one row per key of ``cells``, one column per key of its rows.

    Made for side-by-side comparisons, e.g. rows = requested findings,
    columns = generators, each cell the images those made with the same seeds.

    Parameters
    ----------
    cells : mapping row -> (mapping column -> images)
        Each cell: an array (k, C, H, W), an ImageSet (all its images are
        read: pass small ones), or a list of PNG bytes (e.g. difference images
        from ``png_bytes(d, cmap="diverging")``). Missing cells stay empty.
    captions : mapping row -> (mapping column -> list of str), optional
        A caption per image.
    width : int
        Display width of each thumbnail in CSS pixels.
    corner : str
        Text of the top-left header cell.

    Returns
    -------
    Gallery
        ``groups`` holds ``(row, column)`` headings with the image counts.

    Examples
    --------
    >>> t = image_table({"effusion": {"vae": np.zeros((2, 1, 8, 8)), "gan": np.zeros((2, 1, 8, 8))}})
    >>> t.html.count("<img"), [h for h, _ in t.groups]
    (4, ['effusion | vae', 'effusion | gan'])
    """
    if not isinstance(cells, Mapping) or not cells:
        raise DataError("image_table needs a non-empty mapping of rows, each a mapping of columns to images.")
    columns = list(dict.fromkeys(c for row in cells.values() for c in row))
    # explicit alignment: notebook front ends right-align table headers, which would put a column's name
    # over the end of its strip instead of over the strip
    head = f"<th style='text-align:right;padding-right:8px'>{html.escape(corner)}</th>" + "".join(
        f"<th style='text-align:left;padding:2px 10px 4px 0'>{html.escape(str(c))}</th>" for c in columns
    )
    body, groups = [], []
    for r, row in cells.items():
        tds = [f"<th style='text-align:right;padding-right:8px'>{html.escape(str(r))}</th>"]
        for c in columns:
            if c not in row or row[c] is None:
                tds.append("<td></td>")
                continue
            ims = row[c]
            if hasattr(ims, "metadata") and hasattr(ims, "shape"):
                ims = read_rows(ims, range(len(ims)))
            ims = list(ims)
            caps = (captions or {}).get(r, {}).get(c)
            tds.append(
                f"<td style='vertical-align:top;padding:2px 10px 6px 0'>{grid_html(ims, caps, width, max_side, style=False)}</td>"
            )
            groups.append((f"{r} | {c}", np.arange(len(ims))))
        body.append("<tr>" + "".join(tds) + "</tr>")
    table = f"<table style='border-collapse:collapse'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return Gallery(groups=groups, html=f"{STYLE}<div class='msx-gallery'>{table}</div>")
