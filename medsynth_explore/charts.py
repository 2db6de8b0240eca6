"""Small charts as inline SVG text: forest plots of values with intervals, and overlaid histograms.

No plotting library is needed: the charts are a few kB of SVG that a browser
shows offline, embedded in the HTML report of
:func:`medsynth_explore.evaluate` and shown in notebooks (an :class:`SVG`
object displays itself). Every label is escaped.

Examples
--------
>>> svg = forest_svg([{"label": "all", "value": 0.5, "low": 0.4, "high": 0.6}], title="coverage")
>>> svg.startswith("<svg") and "coverage" in svg
True
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import MetricError

__all__ = ["SVG", "forest_svg", "histogram_svg", "nice_ticks"]

#: Colours of the series in a chart (the Explorer's palette), then the highlight of the worst group.
SERIES_COLORS = ("#4C78A8", "#F58518", "#54A24B", "#B279A2", "#72B7B2", "#EECA3B")
WORST = "#E45756"
FONT = "font-family='sans-serif'"


@dataclass
class SVG:
    """SVG text that displays itself in a notebook (``_repr_svg_``) and can be saved."""

    text: str

    def _repr_svg_(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text

    def save(self, path: Any) -> Any:
        """Write the SVG to ``path`` (a ``.svg`` file) and return the path."""
        from pathlib import Path

        p = Path(path)
        p.write_text(self.text, encoding="utf-8")
        return p


def nice_ticks(low: float, high: float, target: int = 5) -> list[float]:
    """Round tick positions covering [low, high], about ``target`` of them (steps of 1, 2 or 5 x 10^k).

    Examples
    --------
    >>> nice_ticks(0.13, 0.87)
    [0.2, 0.4, 0.6, 0.8]
    >>> nice_ticks(3.0, 3.0)
    [2.8, 3.0, 3.2]
    """
    lo, hi = float(low), float(high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise MetricError(f"tick range must be finite, got {low!r} to {high!r}.")
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12) + 0.0)
        t += step
    return ticks


def _fmt(v: float) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _text_width(s: str, size: float = 12) -> float:
    return 0.58 * size * len(s)


def _clip_label(s: str, limit: int = 38) -> str:
    return s if len(s) <= limit else s[: limit - 1] + "…"


def forest_svg(
    rows: Sequence[Mapping[str, Any]],
    title: str = "",
    reference: float | None = None,
    reference_label: str = "all",
    higher_is_better: bool | None = None,
    xlabel: str = "",
    width: int = 620,
    series: Sequence[str] | None = None,
    overall: str | None = None,
) -> str:
    """A forest plot: one line per row with its value and interval, a dashed line at ``reference``.

    Parameters
    ----------
    rows : list of mappings
        Each with ``label``, ``value``, ``low``, ``high`` and optionally ``n``
        (a count or a short text such as ``"40/38"``, shown beside the label) and ``series`` (rows sharing a label and
        differing in series are drawn as one group of lines, e.g. before and
        after), and ``note``, the words shown instead of a value that is not
        finite (default "no value"): such a row (e.g. a group too small to
        measure) is listed, never drawn as a number. A value outside its own
        interval is marked with a dagger.
    title : str
        Chart title.
    reference : float, optional
        A vertical dashed line, e.g. the value over all rows.
    reference_label : str
        What the reference line is.
    higher_is_better : bool or None
        When given (and there is one series), the worst group (lowest or
        highest value) is drawn in red.
    xlabel : str
        Axis caption.
    width : int
        Width in pixels.
    series : list of str, optional
        Series order and legend (default: order of first appearance).
    overall : str, optional
        The label of a row that summarises the others (e.g. ``"all"``): drawn
        in dark grey and never marked as the worst group.

    Returns
    -------
    str
        ``<svg>`` text with a ``<title>`` per line giving the exact numbers.

    Raises
    ------
    MetricError
        When no row is given.

    Examples
    --------
    >>> rows = [{"label": "sex=F", "value": 0.7, "low": 0.6, "high": 0.8, "n": 40},
    ...         {"label": "sex=M", "value": 0.9, "low": 0.85, "high": 0.95, "n": 40}]
    >>> svg = forest_svg(rows, title="AUROC", reference=0.8, higher_is_better=True)
    >>> svg.count("<line class='ci'"), "#E45756" in svg
    (2, True)
    """
    rows = [dict(r) for r in rows]
    if not rows:
        raise MetricError("a forest plot needs at least one row.")
    names = list(series) if series else list(dict.fromkeys(str(r.get("series", "")) for r in rows))
    colors = {s: SERIES_COLORS[i % len(SERIES_COLORS)] for i, s in enumerate(names)}
    labels = list(dict.fromkeys(str(r["label"]) for r in rows))
    per_label = {lab: [r for r in rows if str(r["label"]) == lab] for lab in labels}
    worst: set[int] = set()
    if higher_is_better is not None and len(names) == 1:  # with several series, colour says which series
        for s in names:
            cand = [
                (float(r["value"]), id(r))
                for r in rows
                if str(r.get("series", "")) == s and _finite(r.get("value")) and str(r["label"]) != overall
            ]
            values = [v for v, _ in cand]
            if len(cand) > 1 and min(values) < max(values):  # all equal: no group is worse than another
                extreme = min(values) if higher_is_better else max(values)
                worst.update(i for v, i in cand if v == extreme)

    vals: list[float] = []
    for r in rows:
        for k in ("value", "low", "high"):
            if _finite(r.get(k)):
                vals.append(float(r[k]))
    if reference is not None and _finite(reference):
        vals.append(float(reference))

    def label_text(lab: str) -> str:
        n = per_label[lab][0].get("n")
        if isinstance(n, str):
            return _clip_label(lab) + (f"  (n={n})" if n else "")
        return _clip_label(lab) + (f"  (n={int(n):,})" if _finite(n) else "")

    def value_text(r: Mapping[str, Any]) -> str:
        v, lo, hi = r.get("value"), r.get("low"), r.get("high")
        if not _finite(v):
            return str(r.get("note") or "no value")
        text = _fmt(float(v))
        if _finite(lo) and _finite(hi):
            text += f" [{_fmt(float(lo))}, {_fmt(float(hi))}]"
            if not float(lo) <= float(v) <= float(hi):
                text += " †"
        return text

    left = min(300.0, max(60.0, max(_text_width(label_text(lab)) for lab in labels) + 14))
    right_text = min(260.0, max(_text_width(value_text(r)) for r in rows) + 16)
    plot_w = max(120.0, width - left - right_text - 10)
    # about one tick per 50 pixels of axis (long group labels leave a narrow axis), and at least two ticks
    target = int(max(2, min(5, plot_w // 50)))
    ticks = nice_ticks(min(vals), max(vals), target) if vals else [0.0, 1.0]
    while len(ticks) < 2 and vals and target < 10:
        target += 1
        ticks = nice_ticks(min(vals), max(vals), target)
    x0, x1 = min(ticks[0], min(vals) if vals else 0.0), max(ticks[-1], max(vals) if vals else 1.0)
    pad = 0.04 * ((x1 - x0) or 1.0)
    x0, x1 = x0 - pad, x1 + pad
    line_h = 14.0
    pad_row = 8.0
    top = 28.0 if title else 10.0
    legend_h = 18.0 if len(names) > 1 else 0.0
    top += legend_h
    heights = [len(per_label[lab]) * line_h + pad_row for lab in labels]
    height = top + sum(heights) + (36.0 if xlabel else 22.0)

    def sx(v: float) -> float:
        return left + (float(v) - x0) / ((x1 - x0) or 1.0) * plot_w

    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height:.0f}' viewBox='0 0 {width} {height:.0f}' "
        f"{FONT} font-size='12' role='img'>"
    ]
    if title:
        out.append(f"<text x='4' y='16' font-size='13' font-weight='bold'>{html.escape(title)}</text>")
    if len(names) > 1:
        lx = left
        for s in names:
            out.append(f"<circle cx='{lx + 5:.1f}' cy='{top - 10:.1f}' r='4' fill='{colors[s]}'/>")
            out.append(f"<text x='{lx + 13:.1f}' y='{top - 6:.1f}'>{html.escape(s)}</text>")
            lx += 24 + _text_width(s)
    bottom = top + sum(heights)
    for t in ticks:
        if x0 - 1e-12 <= t <= x1 + 1e-12:
            out.append(f"<line x1='{sx(t):.1f}' x2='{sx(t):.1f}' y1='{top - 2:.1f}' y2='{bottom:.1f}' stroke='#eee'/>")
            out.append(f"<text x='{sx(t):.1f}' y='{bottom + 14:.1f}' text-anchor='middle' fill='#555'>{_fmt(t)}</text>")
    out.append(f"<line x1='{left:.1f}' x2='{left + plot_w:.1f}' y1='{bottom:.1f}' y2='{bottom:.1f}' stroke='#999'/>")
    if xlabel:
        out.append(
            f"<text x='{left + plot_w / 2:.1f}' y='{bottom + 29:.1f}' text-anchor='middle' fill='#555'>"
            f"{html.escape(xlabel)}</text>"
        )
    if reference is not None and _finite(reference):
        rx = sx(float(reference))
        out.append(
            f"<line class='reference' x1='{rx:.1f}' x2='{rx:.1f}' y1='{top - 2:.1f}' y2='{bottom:.1f}' stroke='#333' "
            f"stroke-dasharray='4 3'><title>{html.escape(reference_label)}: {_fmt(float(reference))}</title></line>"
        )
    y = top
    for lab, h in zip(labels, heights):
        group = per_label[lab]
        mid = y + pad_row / 2 + len(group) * line_h / 2
        out.append(f"<text x='{left - 8:.1f}' y='{mid + 4:.1f}' text-anchor='end'><title>{html.escape(lab)}</title>")
        out.append(f"{html.escape(label_text(lab))}</text>")
        for i, r in enumerate(group):
            cy = y + pad_row / 2 + (i + 0.5) * line_h
            s = str(r.get("series", ""))
            color = WORST if id(r) in worst else colors.get(s, SERIES_COLORS[0])
            if lab == overall and len(names) == 1:
                color = "#333"
            v, lo, hi = r.get("value"), r.get("low"), r.get("high")
            tip = f"{lab}{' · ' + s if s else ''}: {_fmt(float(v)) if _finite(v) else 'no value'}"
            if _finite(lo) and _finite(hi):
                tip += f" [{_fmt(float(lo))}, {_fmt(float(hi))}]"
                out.append(
                    f"<line class='ci' x1='{sx(float(lo)):.1f}' x2='{sx(float(hi)):.1f}' y1='{cy:.1f}' y2='{cy:.1f}' "
                    f"stroke='{color}' stroke-width='2'><title>{html.escape(tip)}</title></line>"
                )
            if _finite(v):
                out.append(
                    f"<circle class='point' cx='{sx(float(v)):.1f}' cy='{cy:.1f}' r='4' fill='{color}'>"
                    f"<title>{html.escape(tip)}</title></circle>"
                )
            text = value_text(r)
            out.append(
                f"<text x='{left + plot_w + 8:.1f}' y='{cy + 4:.1f}' fill='{color if _finite(v) else '#999'}'>"
                f"{html.escape(text)}</text>"
            )
        y += h
    out.append("</svg>")
    return "".join(out)


def histogram_svg(
    edges: Sequence[float],
    counts: Mapping[str, Sequence[float]],
    title: str = "",
    marker: float | None = None,
    marker_label: str = "",
    xlabel: str = "",
    width: int = 620,
    height: int = 220,
) -> str:
    """Overlaid step histograms (each normalised to a share of its own total) and an optional marker line.

    Parameters
    ----------
    edges : sequence of float
        Bin edges shared by every series (length = bins + 1).
    counts : mapping name -> counts
        Counts per bin of each series, in legend order.
    title, xlabel : str
    marker : float, optional
        A vertical line, e.g. a threshold, labelled ``marker_label``.

    Notes
    -----
    When one series' highest bin is more than 2.5 times any other series'
    highest, the axis stops at 1.3 times the latter and each bin cut off
    carries its true share (``↑ 0.97``), so the other series stay readable.

    Raises
    ------
    MetricError
        When a series does not have one count per bin, or the edges are not increasing.

    Examples
    --------
    >>> svg = histogram_svg([0, 1, 2], {"a": [3, 1], "b": [0, 4]}, marker=0.5, marker_label="t")
    >>> svg.count("<path"), "t" in svg
    (2, True)
    """
    e = np.asarray(edges, float)
    if e.ndim != 1 or len(e) < 2 or not np.all(np.isfinite(e)) or not np.all(np.diff(e) > 0):
        raise MetricError("histogram edges must be at least two finite, increasing numbers.")
    series = {}
    for name, c in counts.items():
        c = np.asarray(c, float)
        if c.shape != (len(e) - 1,):
            raise MetricError(f"series {name!r} has {c.size} counts for {len(e) - 1} bins.")
        total = c.sum()
        series[name] = c / total if total > 0 else c
    left, right, top, bottom = 46.0, 16.0, 28.0 if title else 12.0, 40.0
    legend_h = 18.0
    top += legend_h
    pw, ph = width - left - right, height - top - bottom
    peaks = sorted((float(s.max()) for s in series.values() if s.size), reverse=True)
    ymax = (peaks[0] if peaks else 1.0) or 1.0
    if len(peaks) > 1 and peaks[1] > 0 and peaks[0] > 2.5 * peaks[1]:
        # one series piles into a few bins (e.g. copies at distance ~0): cut the axis so the others stay
        # readable, and write the true share above each cut bin
        ymax = 1.3 * peaks[1]
    x0, x1 = float(e[0]), float(e[-1])

    def sx(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * pw

    def sy(v: float) -> float:
        return top + ph - v / ymax * ph

    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
        f"{FONT} font-size='12' role='img'>"
    ]
    if title:
        out.append(f"<text x='4' y='16' font-size='13' font-weight='bold'>{html.escape(title)}</text>")
    for t in nice_ticks(x0, x1):
        if x0 <= t <= x1:
            out.append(f"<line x1='{sx(t):.1f}' x2='{sx(t):.1f}' y1='{top:.1f}' y2='{top + ph:.1f}' stroke='#eee'/>")
            out.append(f"<text x='{sx(t):.1f}' y='{top + ph + 14:.1f}' text-anchor='middle' fill='#555'>{_fmt(t)}</text>")
    for t in nice_ticks(0.0, ymax, 3):
        if 0 <= t <= ymax:
            out.append(f"<text x='{left - 6:.1f}' y='{sy(t) + 4:.1f}' text-anchor='end' fill='#555'>{_fmt(t)}</text>")
    out.append(f"<line x1='{left:.1f}' x2='{left + pw:.1f}' y1='{top + ph:.1f}' y2='{top + ph:.1f}' stroke='#999'/>")
    lx = left
    for i, (name, s) in enumerate(series.items()):
        color = SERIES_COLORS[i % len(SERIES_COLORS)]
        pts = [f"M{sx(x0):.1f},{sy(0):.1f}"]
        cut = []
        for j, v in enumerate(s):
            shown = min(float(v), ymax)
            pts.append(f"L{sx(e[j]):.1f},{sy(shown):.1f}L{sx(e[j + 1]):.1f},{sy(shown):.1f}")
            if v > ymax:
                cut.append((0.5 * (e[j] + e[j + 1]), float(v)))
        pts.append(f"L{sx(x1):.1f},{sy(0):.1f}")
        for xc, v in cut:
            out.append(f"<text class='cut' x='{sx(xc) + 3:.1f}' y='{sy(ymax) + 11:.1f}' fill='{color}'>↑ {_fmt(v)}</text>")
        out.append(
            f"<path d='{''.join(pts)}' fill='{color}' fill-opacity='0.18' stroke='{color}' stroke-width='1.5'>"
            f"<title>{html.escape(str(name))}</title></path>"
        )
        out.append(f"<rect x='{lx:.1f}' y='{top - 16:.1f}' width='10' height='10' fill='{color}'/>")
        out.append(f"<text x='{lx + 14:.1f}' y='{top - 7:.1f}'>{html.escape(str(name))}</text>")
        lx += 30 + _text_width(str(name))
    if marker is not None and _finite(marker) and x0 <= float(marker) <= x1:
        mx = sx(float(marker))
        out.append(f"<line class='marker' x1='{mx:.1f}' x2='{mx:.1f}' y1='{top:.1f}' y2='{top + ph:.1f}' stroke='{WORST}' ")
        out.append("stroke-dasharray='4 3' stroke-width='1.5'/>")
        if marker_label:
            out.append(f"<text x='{mx + 4:.1f}' y='{top + 12:.1f}' fill='{WORST}'>{html.escape(marker_label)}</text>")
    if xlabel:
        out.append(
            f"<text x='{left + pw / 2:.1f}' y='{height - 6:.1f}' text-anchor='middle' fill='#555'>{html.escape(xlabel)}</text>"
        )
    out.append(f"<text x='12' y='{top + ph / 2:.1f}' fill='#555' transform='rotate(-90 12 {top + ph / 2:.1f})' ")
    out.append("text-anchor='middle'>share</text></svg>")
    return "".join(out)
