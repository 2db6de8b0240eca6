"""The notebook display of a generator: its card in brief, what it can do, and the conditions it takes.

:func:`generator_html` is what ``Generator._repr_html_`` shows when a
generator is the last value of a notebook cell: name, family, image size and
checkpoint hash, the card's description, each capability (offered or not),
the condition schema (what each condition accepts), where the training data
came from, and the card's intended use and known limitations. It reads the
card only; it never samples. ``generator.describe()`` gives the whole card
as Markdown, and the Explorer's *Model card* tab shows all of it.

Examples
--------
>>> from medsynth_explore.generators import Generator
>>> g = Generator({"name": "flat", "family": "physics", "architecture": {"image_size": 8}})
>>> out = generator_html(g)
>>> "flat" in out, "Unconditional" in out
(True, True)
"""

from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

from .conditions import ConditionSchema

__all__ = ["generator_html", "schema_html", "CAPABILITY_TEXT"]

#: What each capability lets a caller do, in words (one entry per name in ``generators.base.CAPABILITIES``).
CAPABILITY_TEXT = {
    "conditions": "steer age, sex, findings (conditions=...)",
    "text": "free-text prompts (prompt=...)",
    "inpaint": "regenerate a masked region (inpaint)",
    "guidance": "classifier-free guidance strength (guidance=...)",
    "steps": "number of sampling steps (steps=...)",
}

_STYLE = """<style>
.msx-gen { font-family: sans-serif; font-size: 13px; line-height: 1.4; max-width: 900px; color: #222; }
.msx-gen h3 { margin: 2px 0 4px 0; font-size: 16px; }
.msx-gen .msx-badge { display: inline-block; padding: 1px 8px; border-radius: 10px; background: #eef3f8; color: #2b5b84;
                      font-size: 12px; margin: 0 4px 2px 0; }
.msx-gen .msx-off { background: #f2f2f2; color: #999; text-decoration: line-through; }
.msx-gen table { border-collapse: collapse; margin: 4px 0; font-size: 12px; }
.msx-gen td, .msx-gen th { border-bottom: 1px solid #e3e3e3; padding: 2px 8px 2px 0; text-align: left; vertical-align: top; }
.msx-gen code { font-size: 12px; }
.msx-gen ul { margin: 2px 0 2px 18px; padding: 0; }
.msx-gen .msx-muted { color: #666; }
</style>"""


def _accepted(c: Any) -> str:
    """What one condition accepts, in words."""
    if c.kind == "continuous":
        return f"a number from {c.range[0]:g} to {c.range[1]:g}"
    if c.kind == "categorical":
        return "one of " + ", ".join(c.values)
    if c.kind == "findings":
        return "any of " + ", ".join(c.names) + " (a list; [] for none)"
    return f"free text, up to {c.max_tokens} tokens"


def schema_html(schema: ConditionSchema | Mapping[str, Any] | None) -> str:
    """An HTML table of a condition schema: each condition, its kind, what it accepts and what it means.

    Examples
    --------
    >>> from medsynth_explore.generators.conditions import phantomcxr_schema
    >>> out = schema_html(phantomcxr_schema())
    >>> "a number from 18 to 90" in out, "one of F, M" in out
    (True, True)
    """
    if not isinstance(schema, ConditionSchema):
        schema = ConditionSchema.from_dict(schema)
    if not len(schema):
        return "<p>Unconditional: the model takes no conditions.</p>"
    left = "style='text-align:left'"  # inline: notebook front ends right-align table cells in their own style sheets
    rows = "".join(
        f"<tr><td {left}><code>{html.escape(c.name)}</code></td><td {left}>{html.escape(c.kind)}</td>"
        f"<td {left}>{html.escape(_accepted(c))}</td><td {left}>{html.escape(c.description)}</td></tr>"
        for c in schema
    )
    head = "<tr>" + "".join(f"<th {left}>{h}</th>" for h in ("condition", "kind", "accepts", "meaning")) + "</tr>"
    return f"<table><thead>{head}</thead><tbody>{rows}</tbody></table>"


def _training_line(card: Mapping[str, Any]) -> str:
    td = card.get("training_data") or {}
    bits = []
    for key in ("dataset", "source", "version", "size", "n", "split", "seed"):
        if td.get(key) not in (None, "", {}, []):
            bits.append(f"{key} {td[key]}")
    counts = td.get("finding_counts")
    if isinstance(counts, Mapping) and counts:
        bits.append("findings " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    tr = card.get("training") or {}
    secs = tr.get("seconds", tr.get("time_seconds"))
    if isinstance(secs, (int, float)) and secs > 0:
        bits.append(f"trained {secs / 60:.1f} min" if secs >= 60 else f"trained {secs:.0f} s")
    return ", ".join(map(str, bits))


def generator_html(generator: Any, capabilities: Sequence[str] | None = None) -> str:
    """HTML summary of a generator for a notebook: card in brief, capabilities, condition schema.

    Parameters
    ----------
    generator : Generator
        Anything with ``name``, ``family``, ``card``, ``sha256``, ``capabilities``,
        ``conditions`` and ``image_shape`` (every :class:`~medsynth_explore.generators.Generator`).
    capabilities : list of str, optional
        Every capability a generator may have, each shown as offered or not
        (``Generator._repr_html_`` passes ``generators.base.CAPABILITIES``;
        default: the names of :data:`CAPABILITY_TEXT`).

    Returns
    -------
    str
        Self-contained HTML; every value from the card is escaped.
    """
    card = generator.card
    c, h, w = generator.image_shape
    sha = str(generator.sha256)
    is_hash = len(sha) == 64 and all(ch in "0123456789abcdef" for ch in sha.lower())
    ident = f"SHA-256 <code title='{html.escape(sha)}'>{html.escape(sha[:16])}…</code>" if is_hash else html.escape(sha)
    head = (
        f"<h3>{html.escape(generator.name)}</h3>"
        f"<span class='msx-badge'>{html.escape(generator.family)}</span>"
        f"<span class='msx-muted'>{h}×{w} px, {c} channel{'s' if c != 1 else ''} · {ident} · "
        f"{html.escape(type(generator).__name__)}</span>"
    )
    parts = [_STYLE, "<div class='msx-gen'>", head]
    if card.get("description"):
        parts.append(f"<p>{html.escape(str(card['description']))}</p>")
    caps = generator.capabilities
    known = list(capabilities) if capabilities is not None else list(CAPABILITY_TEXT)
    known += sorted(set(caps) - set(known))
    chips = "".join(
        f"<span class='msx-badge{'' if k in caps else ' msx-off'}' title='{html.escape(CAPABILITY_TEXT.get(k, k))}'>"
        f"{'✓' if k in caps else '✗'} {html.escape(k)}</span>"
        for k in known
    )
    offered = [CAPABILITY_TEXT.get(k, k) for k in known if k in caps]
    parts.append(
        f"<div><b>Can</b>: {chips}</div>" + (f"<div class='msx-muted'>{html.escape('; '.join(offered))}</div>" if offered else "")
    )
    parts.append("<div><b>Conditions</b></div>" + schema_html(generator.conditions))
    defaults = card.get("sampler_defaults") or {}
    shown = {k: v for k, v in defaults.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    if shown:
        parts.append("<div><b>Sampler defaults</b>: " + html.escape(", ".join(f"{k}={v}" for k, v in shown.items())) + "</div>")
    line = _training_line(card)
    if line:
        parts.append(f"<div><b>Trained on</b>: {html.escape(line)}</div>")
    if card.get("intended_use"):
        parts.append(f"<div><b>Intended use</b>: {html.escape(str(card['intended_use']))}</div>")
    lims = list(card.get("limitations") or [])
    if lims:
        items = "".join(f"<li>{html.escape(str(x))}</li>" for x in lims)
        parts.append(f"<details><summary><b>Known limitations</b> ({len(lims)})</summary><ul>{items}</ul></details>")
    parts.append(
        "<div class='msx-muted'>The whole card: <code>print(gen.describe())</code>; "
        "draw images: <code>gen.sample(16, seed=0)</code>.</div></div>"
    )
    return "".join(parts)
