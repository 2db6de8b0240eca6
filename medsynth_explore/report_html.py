"""The HTML view of an :class:`~medsynth_explore.evaluate.Report`: the evidence first, the numbers beside it.

One page, in this order:

1. what was compared (encoder, sample counts, grouping) and any warnings raised while computing;
2. a grid of real and a grid of synthetic samples (thumbnails the report carries);
3. a chart of each metric with its bootstrap interval; with ``by=``, a forest
   plot per metric (every subgroup, the overall value as a dashed line, the
   worst group in red);
4. when privacy metrics were computed, the distance histograms
   (synthetic-to-train against held-out-to-train, with the copy threshold) and
   the synthetic images nearest to a training image, side by side;
5. the table of every value, then the provenance, folded.

:func:`write_report` writes a self-contained file: images are data URIs,
charts inline SVG, the style inline; nothing is fetched when it is opened.
:func:`report_fragment` is the same content for a notebook cell (its style
is scoped to the report's own classes).

Examples
--------
>>> import numpy as np, pandas as pd
>>> from medsynth_explore.evaluate import Report
>>> t = pd.DataFrame({"metric": ["fid"], "group": ["all"], "value": [1.5], "ci_low": [1.2],
...                   "ci_high": [1.9], "n_real": [10], "n_synthetic": [10]})
>>> page = report_page(Report(t, {"encoder": {"id": "pixels-16x16"}}))
>>> page.startswith("<!DOCTYPE html>"), page.count("<svg"), "http" in page.replace("http://www.w3.org/2000/svg", "")
(True, 1, False)
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["report_fragment", "report_page", "write_report"]

STYLE = """
.msx-report { font-family: sans-serif; font-size: 13px; color: #222; line-height: 1.4; max-width: 1280px; }
.msx-report h1 { font-size: 22px; margin: 0 0 6px 0; }
.msx-report h2 { font-size: 17px; margin: 22px 0 6px 0; border-bottom: 1px solid #ddd; padding-bottom: 3px; }
.msx-report h3 { font-size: 14px; margin: 8px 0 4px 0; }
.msx-report .msx-facts { margin: 0; padding-left: 18px; }
.msx-report .msx-warn { background: #fff6e0; border-left: 4px solid #e0a000; padding: 6px 10px; margin: 8px 0; }
.msx-report .msx-sides { display: flex; flex-wrap: wrap; gap: 24px; }
.msx-report .msx-side { flex: 1 1 420px; }
.msx-report .msx-grid { display: flex; flex-wrap: wrap; gap: 6px; }
.msx-report figure { margin: 0; text-align: center; }
.msx-report figure img { display: block; background: #000; }
.msx-report figcaption { color: #555; font-size: 11px; line-height: 1.25; margin-top: 2px; overflow-wrap: anywhere; }
.msx-report .msx-charts { display: flex; flex-wrap: wrap; gap: 10px 24px; }
.msx-report .msx-chart { flex: 0 0 auto; }
.msx-report .msx-hint { color: #666; font-size: 12px; margin: 0 0 2px 0; }
.msx-report .msx-pair { display: inline-block; margin: 0 14px 10px 0; vertical-align: top; }
.msx-report .msx-pair .msx-grid { flex-wrap: nowrap; }
.msx-report .msx-copy { color: #b00020; font-weight: bold; }
.msx-report table.msx-values { border-collapse: collapse; font-size: 12px; }
.msx-report table.msx-values td, .msx-report table.msx-values th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
.msx-report table.msx-values th { background: #eee; }
.msx-report table.msx-values td:nth-child(-n+2) { text-align: left; }
.msx-report details pre { font-size: 11px; background: #f6f6f6; padding: 8px; overflow-x: auto; }
.msx-report .msx-muted { color: #777; }
"""

CELL = 96


def _esc(v: Any) -> str:
    return html.escape(str(v))


def _num(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return _esc(v)
    if math.isnan(f):
        return ""
    return f"{f:.4g}"


def _figure(png_b64: str | None, caption: str, width: int = CELL) -> str:
    cap = _esc(caption)
    if not png_b64:
        return f"<figure><div class='msx-muted' style='width:{width}px'>no image</div><figcaption>{cap}</figcaption></figure>"
    return (
        f"<figure><img src='data:image/png;base64,{png_b64}' width='{width}' alt='{cap}'>"
        f"<figcaption style='max-width:{width}px'>{cap}</figcaption></figure>"
    )


# --------------------------------------------------------------------------- sections
def _facts(report: Any) -> str:
    p = report.provenance or {}
    enc = p.get("encoder") or {}
    items = [
        ("encoder", enc.get("id")),
        ("preparation", enc.get("normalisation")),
        ("real / synthetic", f"{p.get('n_real')} / {p.get('n_synthetic')}" if p.get("n_real") is not None else None),
        ("training set (privacy)", p.get("n_train")),
        ("real source", (p.get("real") or {}).get("source")),
        ("synthetic source", (p.get("synthetic") or {}).get("source") or (p.get("synthetic") or {}).get("generator")),
        ("grouped by", " & ".join(p.get("by") or []) or None),
        (
            "bootstrap",
            f"{p.get('n_boot')} replicates, {100 * float(p.get('ci_level', 0.95)):.0f}% intervals" if p.get("n_boot") else None,
        ),
        ("seed", p.get("seed")),
        ("created", p.get("created")),
        ("versions", ", ".join(f"{k} {v}" for k, v in (p.get("versions") or {}).items()) or None),
    ]
    lis = "".join(f"<li><b>{_esc(k)}</b>: {_esc(v)}</li>" for k, v in items if v not in (None, ""))
    out = f"<ul class='msx-facts'>{lis}</ul>"
    warns = p.get("warnings") or []
    if warns:
        out += (
            "<div class='msx-warn'><b>Warnings while computing</b><ul>"
            + "".join(f"<li>{_esc(w)}</li>" for w in warns)
            + "</ul></div>"
        )
    return out


def _samples(report: Any) -> str:
    samples = (report.evidence or {}).get("samples") or {}
    if not samples:
        return "<p class='msx-muted'>This report carries no samples (it was made from a table alone).</p>"
    cols = []
    for side, title in (("real", "Real"), ("synthetic", "Synthetic")):
        e = samples.get(side) or {}
        shown = e.get("shown") or []
        if not e.get("given", False):
            body = "<p class='msx-muted'>No images: this side was given as feature arrays.</p>"
        elif not shown:
            body = "<p class='msx-muted'>No thumbnails kept (thumbnails=0).</p>"
        else:
            body = "<div class='msx-grid'>" + "".join(_figure(x.get("png"), x.get("caption", "")) for x in shown) + "</div>"
        n = e.get("n")
        head = f"{title}: {len(shown)} of {n:,} images, chosen at random" if isinstance(n, int) and shown else title
        cols.append(f"<div class='msx-side'><h3>{_esc(head)}</h3>{body}</div>")
    return f"<div class='msx-sides'>{''.join(cols)}</div>"


def _metric_info(metric: str) -> tuple[str, Any, str, str]:
    """(label, higher_is_better, hint, kind) from the registry; a name the registry does not know keeps its name."""
    from .metrics.registry import get_metric, output

    try:
        o, kind = output(metric), get_metric(metric).kind
    except Exception:  # a report read from JSON may name a metric this installation lacks
        return metric, None, "", ""
    return (o.label or metric), o.higher_is_better, o.direction, kind


def _charts(report: Any) -> str:
    from .charts import forest_svg

    t = report.table
    if t is None or t.empty:
        return "<p class='msx-muted'>No metric values.</p>"
    prov = report.provenance or {}
    grouped = bool((t["group"] != "all").any())
    level = float(prov.get("ci_level", 0.95))
    min_group = (prov.get("settings") or {}).get("min_group_size")
    cards, outside = [], []
    for m in dict.fromkeys(t["metric"]):
        rows_t = t[t["metric"] == m]
        label, hib, hint, kind = _metric_info(m)
        whole = kind == "whole"
        if whole:  # computed on the whole sets only: the group rows are empty by design
            rows_t = rows_t[rows_t["group"] == "all"]
        overall = rows_t[rows_t["group"] == "all"]
        ref = float(overall["value"].iloc[0]) if len(overall) and np.isfinite(overall["value"].iloc[0]) else None
        rows = []
        for r in rows_t.itertuples(index=False):
            known = not (pd.isna(r.n_real) or pd.isna(r.n_synthetic))
            n = min(int(r.n_real), int(r.n_synthetic)) if known else None
            small = n is not None and min_group is not None and r.group != "all" and n < int(min_group)
            note = f"no value: under {int(min_group)} images on a side" if small else "no value"
            count = f"{int(r.n_real)}/{int(r.n_synthetic)}" if known else None
            rows.append({"label": r.group, "value": r.value, "low": r.ci_low, "high": r.ci_high, "n": count, "note": note})
            if all(np.isfinite([r.value, r.ci_low, r.ci_high])) and not r.ci_low <= r.value <= r.ci_high:
                outside.append(f"{m} ({r.group})")
        title = label if label.lower() == m.lower() else f"{label} ({m})"
        many = grouped and not whole
        svg = forest_svg(
            rows,
            title=title,
            reference=ref if many else None,
            reference_label="all",
            higher_is_better=hib if many else None,
            width=600 if many else 420,
            overall="all",
        )
        note = f"{hint}; " if hint else ""
        note += f"{100 * level:.0f}% bootstrap interval; n = real/synthetic images"
        note += "; dashed line: all; red: worst group" if many else ""
        note += "; whole sets only" if whole and grouped else ""
        cards.append(f"<div class='msx-chart' data-metric='{_esc(m)}'>{svg}<p class='msx-hint'>{_esc(note)}</p></div>")
    foot = ""
    if outside:
        foot = (
            "<p class='msx-hint'>† The value lies outside its own bootstrap interval ("
            + _esc(", ".join(outside[:8]) + (", …" if len(outside) > 8 else ""))
            + "): resampling with replacement shifts this metric (duplicated rows change distances and covariances), "
            "so read that interval as the spread of the estimate, not as a confidence interval around the value.</p>"
        )
    return f"<div class='msx-charts'>{''.join(cards)}</div>{foot}"


def _percentile(q: float) -> str:
    """``0.01`` -> ``"1st percentile"``; a share that is not a whole percent stays a quantile."""
    pct = 100 * q
    if abs(pct - round(pct)) > 1e-9:
        return f"{q:g} quantile"
    k = int(round(pct))
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix} percentile"


def _privacy(report: Any) -> str:
    from .charts import histogram_svg

    pv = (report.evidence or {}).get("privacy")
    if not pv:
        return ""
    h = pv.get("histogram") or {}
    q = float(pv.get("quantile", 0.01))
    parts = ["<h2>Privacy: are synthetic images copies of training images?</h2>"]
    parts.append(
        "<p>Distance from each synthetic image to its nearest training image, against the same distance for real "
        "held-out images (never trained on). A memorising model puts a synthetic peak left of the held-out one. "
        f"The copy threshold is the {_percentile(q)} of held-out distances: "
        f"{pv.get('n_below', 0)} of {pv.get('n_synthetic', 0)} synthetic images lie below it "
        f"(about {100 * q:g}% expected without copying). Median distances: "
        f"synthetic {_num(pv.get('median_synthetic_to_train'))}, held-out {_num(pv.get('median_heldout_to_train'))}.</p>"
    )
    if h.get("edges"):
        parts.append(
            histogram_svg(
                h["edges"],
                {"held-out real to train": h.get("heldout_to_train", []), "synthetic to train": h.get("synthetic_to_train", [])},
                title="Nearest-training-image distances",
                marker=pv.get("threshold"),
                marker_label="copy threshold",
                xlabel="distance in feature space",
            )
        )
    pairs = pv.get("pairs") or []
    if pairs:
        parts.append("<h3>The synthetic images closest to a training image</h3>")
        if not pv.get("images"):
            parts.append("<p class='msx-muted'>No images: the inputs were feature arrays; the rows are listed.</p>")
        cells = []
        for p in pairs:
            flag = " <span class='msx-copy'>below the copy threshold</span>" if p.get("below_threshold") else ""
            cells.append(
                "<div class='msx-pair'><div class='msx-grid'>"
                + _figure(p.get("synthetic_png"), "synthetic " + str(p.get("synthetic_caption", "")))
                + _figure(p.get("train_png"), "training " + str(p.get("train_caption", "")))
                + f"</div><div>distance {_num(p.get('distance'))}{flag}</div></div>"
            )
        parts.append("".join(cells))
    return "".join(parts)


def _table(report: Any) -> str:
    t = report.table
    head = "".join(f"<th>{_esc(c)}</th>" for c in t.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_num(v) if isinstance(v, (float, np.floating)) else _esc(v)}</td>" for v in row) + "</tr>"
        for row in t.itertuples(index=False)
    )
    return f"<table class='msx-values'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _provenance(report: Any) -> str:
    text = json.dumps(report.to_dict()["provenance"], indent=2)
    return (
        f"<details><summary>Provenance (encoder, settings, seeds, sources, versions)</summary><pre>{_esc(text)}</pre></details>"
    )


def _body(report: Any, heading: str = "h1") -> str:
    parts = [
        f"<{heading}>medsynth-explore report</{heading}>",
        _facts(report),
        "<h2>Samples</h2>",
        _samples(report),
        "<h2>Metrics with their intervals</h2>",
        _charts(report),
        _privacy(report),
        "<h2>All values</h2>",
        _table(report),
        "<h2>Provenance</h2>",
        _provenance(report),
    ]
    return "".join(parts)


def report_fragment(report: Any) -> str:
    """The report as an HTML fragment for a notebook cell (style scoped to ``.msx-report``)."""
    return f"<style>{STYLE}</style><div class='msx-report'>{_body(report, 'h1')}</div>"


def report_page(report: Any) -> str:
    """The report as one standalone HTML page (no external resources)."""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>medsynth-explore report</title><style>body{{margin:2em}}{STYLE}</style></head>"
        f"<body><div class='msx-report'>{_body(report)}</div></body></html>"
    )


def write_report(report: Any, path: str | Path) -> Path:
    """Write :func:`report_page` to ``path`` (folders are made) and return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(report_page(report), encoding="utf-8")
    return p
