"""Model card panel: the active generator's card, rendered readable.

:func:`card_html` turns a model card (see :mod:`medsynth_explore.checkpoint`)
into HTML: name and family, SHA-256, conditions schema, training data
provenance, training time and machine, sampler defaults, licence, intended
use, limitations and the metrics recorded at release. The panel follows the
session's active generator.
"""

from __future__ import annotations

import html
import json
from typing import Any, Mapping

import ipywidgets as W

from ..checkpoint import validate_card
from ..checkpoint.card import weights_summary
from ..errors import DataError
from .common import BasePanel

__all__ = ["CardPanel", "card_html", "format_duration"]

_STYLE = """
<style>
.msx-card { max-width: 1050px; font-size: 13px; line-height: 1.4; }
.msx-card h3 { margin: 4px 0 2px 0; }
.msx-card h4 { margin: 14px 0 4px 0; border-bottom: 1px solid #ddd; padding-bottom: 2px; }
.msx-card .msx-badge { display: inline-block; padding: 1px 8px; border-radius: 10px; background: #eef3f8; color: #2b5b84;
                       font-size: 12px; margin-right: 4px; }
.msx-card code { font-size: 12px; word-break: break-all; }
.msx-card table.msx-kv td:first-child { color: #555; white-space: nowrap; text-align: left; }
.msx-card table.msx-kv td, .msx-card table.msx-kv th { text-align: left; vertical-align: top; }
.msx-card ul { margin: 2px 0 2px 18px; padding: 0; }
</style>
"""


def format_duration(seconds: Any) -> str:
    """A duration in words: ``"45 s"``, ``"12 min 3 s"``, ``"2 h 5 min"``.

    Examples
    --------
    >>> format_duration(45.2), format_duration(723), format_duration(7500)
    ('45 s', '12 min 3 s', '2 h 5 min')
    """
    s = float(seconds)
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(round(s % 60))} s"
    return f"{int(s // 3600)} h {int(round((s % 3600) / 60))} min"


def _value(v: Any, limit: int = 160) -> str:
    """HTML of one card value: numbers compact, short structures inline, long ones folded."""
    if isinstance(v, bool) or v is None:
        return html.escape(str(v))
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (int, str)):
        return html.escape(str(v))
    text = json.dumps(v, sort_keys=True, default=str)
    if len(text) <= limit:
        return f"<code>{html.escape(text)}</code>"
    pretty = json.dumps(v, sort_keys=True, indent=1, default=str)
    return f"<details><summary>{len(text):,} characters (show)</summary><pre>{html.escape(pretty)}</pre></details>"


def _metric_value(v: Any) -> str:
    """A metric: a flat mapping of numbers and words (e.g. a benchmark row) becomes a small table."""
    flat = (
        isinstance(v, Mapping)
        and 0 < len(v) <= 40
        and all(x is None or isinstance(x, (bool, int, float, str)) for x in v.values())
    )
    if not flat:
        return _value(v)
    return _kv_table({str(k): _value(x) for k, x in v.items()})


def _kv_table(items: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> str:
    labels = labels or {}
    rows = "".join(
        f"<tr><td>{html.escape(labels.get(k, str(k).replace('_', ' ')))}</td><td>{v}</td></tr>" for k, v in items.items()
    )
    return f"<table class='msx-table msx-kv'><tbody>{rows}</tbody></table>"


def _conditions(schema: Mapping[str, Any] | None) -> str:
    items = (schema or {}).get("conditions") or []
    if not items:
        return "<p>Unconditional: the model takes no conditions.</p>"
    rows = []
    for c in items:
        kind = c.get("kind", "?")
        if kind == "continuous":
            lo, hi = (c.get("range") or [None, None])[:2]
            accepted = f"{lo:g} to {hi:g}" if lo is not None and hi is not None else "any number"
        elif kind == "categorical":
            accepted = ", ".join(map(str, c.get("values") or []))
        elif kind == "findings":
            accepted = "any of " + ", ".join(map(str, c.get("names") or []))
        elif kind == "text":
            accepted = f"free text, up to {c.get('max_tokens', '?')} tokens"
        else:
            accepted = ""
        rows.append(
            f"<tr><td><code>{html.escape(str(c.get('name')))}</code></td><td>{html.escape(kind)}</td>"
            f"<td>{html.escape(accepted)}</td><td>{html.escape(str(c.get('description', '')))}</td></tr>"
        )
    head = "<tr><th>condition</th><th>kind</th><th>accepted values</th><th>meaning</th></tr>"
    return f"<table class='msx-table msx-kv'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def card_html(card: Mapping[str, Any], sha256: str | None = None, path: str | None = None) -> str:
    """Render a model card as readable HTML.

    Parameters
    ----------
    card : mapping
        A model card (validated here; see :func:`~medsynth_explore.checkpoint.validate_card`).
    sha256 : str, optional
        SHA-256 of the checkpoint file.
    path : str, optional
        Where the checkpoint was loaded from.

    Returns
    -------
    str
        Self-contained HTML (with its own small style block). Every value
        from the card is escaped.

    Examples
    --------
    >>> from medsynth_explore.checkpoint import new_card
    >>> card = new_card("tiny", "vae", {"latent_dim": 8}, metrics={"fid": 12.5}, limitations=["blurry"])
    >>> out = card_html(card, sha256="ab" * 32)
    >>> "<h3>tiny</h3>" in out, "abababab" in out, "<td>fid</td><td>12.5</td>" in out, "<li>blurry</li>" in out
    (True, True, True, True)
    """
    c = validate_card(card)
    parts = [
        _STYLE,
        "<div class='msx-card'>",
        f"<h3>{html.escape(c['name'])}</h3><span class='msx-badge'>{html.escape(c['family'])}</span>",
    ]
    parts += [f"<span class='msx-badge'>{html.escape(str(x))}</span>" for x in c.get("capabilities") or []]
    if c.get("description"):
        parts.append(f"<p>{html.escape(str(c['description']))}</p>")

    facts: dict[str, str] = {}
    if sha256:  # models without a file (the simulator) carry an identity string instead of a file hash
        is_hash = len(str(sha256)) == 64 and all(ch in "0123456789abcdef" for ch in str(sha256).lower())
        facts["SHA-256" if is_hash else "identity"] = f"<code>{html.escape(str(sha256))}</code>"
    if path:
        facts["file"] = f"<code>{html.escape(str(path))}</code>"
    facts["licence"] = html.escape(str(c.get("license") or "not stated"))
    if c.get("created"):
        facts["created"] = html.escape(str(c["created"]))
    arch = c.get("architecture") or {}
    if "image_size" in arch:
        facts["image size"] = (
            f"{int(arch.get('channels', 1))} × {int(arch['image_size'])} × {int(arch['image_size'])} (C × H × W)"
        )
    if arch.get("device") or arch.get("dtype"):  # external models loaded with device= / dtype=
        facts["runs on"] = html.escape(f"{arch.get('device', 'cpu')}, {arch.get('dtype', 'float32')}")
    if arch.get("format") or arch.get("pipeline_class"):
        facts["format"] = html.escape(str(arch.get("format") or f"diffusers {arch['pipeline_class']}"))
    parts.append(_kv_table(facts, labels={k: k for k in facts}))

    parts.append("<h4>Intended use</h4>")
    parts.append(
        f"<p>{html.escape(str(c['intended_use']))}</p>" if c.get("intended_use") else "<p><i>not stated in the card</i></p>"
    )
    parts.append("<h4>Known limitations</h4>")
    lims = c.get("limitations") or []
    parts.append(
        "<ul>" + "".join(f"<li>{html.escape(str(x))}</li>" for x in lims) + "</ul>"
        if lims
        else "<p><i>none stated in the card</i></p>"
    )

    parts.append("<h4>Conditions</h4>")
    parts.append(_conditions(c.get("conditions")))

    parts.append("<h4>Training data</h4>")
    td = dict(c.get("training_data") or {})
    dist = td.pop("condition_distribution", None)
    if td:
        parts.append(_kv_table({k: _value(v) for k, v in td.items()}))
    else:
        parts.append("<p><i>no provenance recorded</i></p>")
    if dist is not None:
        parts.append(
            "<p class='msx-caption'>The card records the training distribution of the conditions; "
            "conditions left out when sampling are drawn from it.</p>"
        )

    tr = dict(c.get("training") or {})
    if tr:
        parts.append("<h4>Training</h4>")
        shown: dict[str, str] = {}
        if "time_seconds" in tr:
            shown["training time"] = format_duration(tr.pop("time_seconds"))
        if "machine" in tr:
            shown["machine"] = html.escape(str(tr.pop("machine")))
        shown.update({k: _value(v) for k, v in tr.items()})
        parts.append(_kv_table(shown))

    parts.append("<h4>Sampler defaults</h4>")
    sd = c.get("sampler_defaults") or {}
    parts.append(_kv_table({k: _value(v) for k, v in sd.items()}, labels={k: k for k in sd}) if sd else "<p><i>none</i></p>")

    parts.append("<h4>Metrics at release</h4>")
    metrics = c.get("metrics") or {}
    if metrics:
        rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_metric_value(v)}</td></tr>" for k, v in metrics.items())
        parts.append(
            f"<table class='msx-table'><thead><tr><th>metric</th><th>value</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    else:
        parts.append("<p><i>no metrics recorded in the card</i></p>")

    arch_rows = {k: _value(v) for k, v in arch.items()}
    if c.get("tensor_shapes"):
        arch_rows["weights"] = weights_summary(c)
    parts.append(
        "<details><summary><b>Architecture</b></summary>" + _kv_table(arch_rows, labels={k: k for k in arch_rows}) + "</details>"
    )
    parts.append("</div>")
    return "".join(parts)


class CardPanel(BasePanel):
    """The model card of the active generator (or any loaded one), rendered readable.

    Follows the session: when the active generator changes, the card shown
    changes with it. The dropdown views another loaded generator's card;
    "Make active" makes it the generator every panel acts on.

    Parameters
    ----------
    session : Session
    runner : JobRunner, optional

    Attributes
    ----------
    generator : ipywidgets.Dropdown
        The generator whose card is shown.
    activate_button : ipywidgets.Button
    body : ipywidgets.HTML
        The rendered card.

    Examples
    --------
    >>> panel = CardPanel(session)  # doctest: +SKIP
    >>> "SHA-256" in panel.body.value  # doctest: +SKIP
    True
    """

    title = "Model card"
    lane = "card"

    def __init__(self, session: Any, runner: Any = None, **kwargs: Any) -> None:
        super().__init__(session, runner, **kwargs)
        self.generator = W.Dropdown(
            options=list(session.generators), value=session.active, description="Generator", layout=W.Layout(width="360px")
        )
        self.activate_button = W.Button(description="Make active", icon="check", tooltip="act on this generator in every panel")
        self.body = W.HTML()
        self.generator.observe(self.guard(lambda ch: self.show(ch["new"])), names="value")
        self.activate_button.on_click(self.guard(lambda _b: self.session.set_active(self.generator.value)))
        self.subscribe("active", self._follow)
        self.subscribe("generators", self._follow)
        self.children = [W.HBox([self.generator, self.activate_button]), self.error, self.body]
        self.guard(self.show)(session.active)

    def _follow(self, **_: Any) -> None:
        try:
            self.show_error(None)
            names = list(self.session.generators)
            if list(self.generator.options) != names:
                self.generator.options = names
            if self.generator.value != self.session.active:
                self.generator.value = self.session.active  # triggers show()
            else:
                self.show(self.session.active)
        except Exception as exc:  # never break the code that emitted the event
            self.show_error(exc)

    def show(self, name: str | None = None) -> str:
        """Render the card of generator ``name`` (default: the active one); returns the HTML."""
        name = name or self.session.active
        if name is None:
            self.body.value = ""
            raise DataError("no generator is loaded; add one with session.add_generator(...) to see its model card.")
        gen = self.session.generator(name)
        note = (
            ""
            if name == self.session.active
            else (
                f"<div class='msx-caption'>Viewing {html.escape(name)}; the active generator is "
                f"{html.escape(str(self.session.active))}.</div>"
            )
        )
        self.body.value = note + card_html(gen.card, sha256=getattr(gen, "sha256", None), path=getattr(gen, "path", None))
        self.activate_button.disabled = name == self.session.active
        return self.body.value
