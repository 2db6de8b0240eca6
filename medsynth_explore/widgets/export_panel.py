"""Export panel: write what the active generator makes to a folder with provenance, then verify it.

A thin view over :func:`medsynth_explore.export.export` and
:func:`medsynth_explore.export.verify`: every field is one of their
arguments, so what the panel does is ``export(session.generator(), n, folder,
conditions=..., seed=..., shard_size=..., client=..., watermark=...,
signer=...)`` followed by ``verify(folder)``.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import ipywidgets as W

from ..errors import DataError
from .common import BasePanel, html_table

__all__ = ["ExportPanel", "parse_conditions"]


def parse_conditions(text: str) -> dict | None:
    """Conditions typed in the panel: JSON object (one set for every image), or empty for none.

    Examples
    --------
    >>> parse_conditions('{"sex": "F", "findings": ["effusion"]}'), parse_conditions("  ")
    ({'sex': 'F', 'findings': ['effusion']}, None)
    """
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f'conditions must be a JSON object such as {{"sex": "F", "findings": ["effusion"]}}: {exc}') from None
    if not isinstance(value, dict):
        raise DataError(f"conditions must be a JSON object (one set for every image), got {type(value).__name__}.")
    return value


class ExportPanel(BasePanel):
    """Export a synthetic data set from the active generator, with progress, cancel, resume and verification.

    Running again with the same settings resumes an interrupted export (the
    finished shards are kept); the folder must be empty or hold this export
    unless *Overwrite* is ticked. Images carry the invisible watermark; with
    a certificate chain and key (PEM files) they are also C2PA-signed.

    Attributes
    ----------
    last_folder : pathlib.Path or None
    last_result : VerifyResult or None
        What :func:`~medsynth_explore.export.verify` said about the last export.
    """

    title = "Export"
    lane = "export"

    def __init__(self, session: Any, runner: Any = None, folder: str = "synthetic-export", **kwargs: Any) -> None:
        super().__init__(session, runner, **kwargs)
        self.last_folder: Path | None = None
        self.last_result = None
        wide = W.Layout(width="420px")
        self.generator_label = W.HTML()
        self.n = W.BoundedIntText(value=256, min=1, max=10_000_000, description="Images")
        self.seed = W.BoundedIntText(value=0, min=0, max=2**31 - 1, description="Seed")
        self.shard_size = W.BoundedIntText(value=64, min=1, max=1_000_000, description="Shard size")
        self.conditions = W.Textarea(
            placeholder='{"sex": "F", "findings": ["effusion"]}  (empty: drawn from the training data)',
            description="Conditions",
            layout=W.Layout(width="420px", height="48px"),
        )
        self.folder = W.Text(value=folder, description="Folder", layout=wide)
        self.scheduler = W.Text(placeholder="tcp://host:8786  (empty: this kernel)", description="Dask", layout=wide)
        self.watermark = W.Checkbox(value=True, description="invisible watermark", indent=False)
        self.cert = W.Text(placeholder="signer-chain.pem (optional)", description="C2PA cert", layout=wide)
        self.key = W.Text(placeholder="signer-key.pem", description="C2PA key", layout=wide)
        self.overwrite = W.Checkbox(value=False, description="overwrite the folder", indent=False)
        self.read_watermarks = W.Checkbox(value=True, description="verify reads every watermark", indent=False)
        self.export_button = W.Button(
            description="Export / resume", button_style="primary", icon="download", layout=W.Layout(width="170px")
        )
        self.export_button.on_click(self.guard(lambda _b: self.export()))
        self.verify_button = W.Button(description="Verify folder", icon="check", layout=W.Layout(width="150px"))
        self.verify_button.on_click(self.guard(lambda _b: self.verify()))
        self.summary = W.HTML()
        self.subscribe("active", lambda **_: self._show_generator())
        self.subscribe("generators", lambda **_: self._show_generator())
        self._show_generator()
        self.children = [
            self.generator_label,
            W.HBox([self.n, self.seed, self.shard_size]),
            self.conditions,
            self.folder,
            self.scheduler,
            W.HBox([self.cert, self.watermark]),
            W.HBox([self.key, self.overwrite]),
            W.HBox([W.HTML(layout=W.Layout(width="420px")), self.read_watermarks]),
            W.HBox([self.export_button, self.verify_button]),
            self.job_bar(),
            W.HTML(
                "<div class='msx-caption'>Cancel keeps the finished shards: Export / resume with the same settings "
                "goes on where it stopped.</div>"
            ),
            self.error,
            self.summary,
        ]

    def _show_generator(self) -> None:
        gen = self.session.generator()
        sha = str(getattr(gen, "sha256", "") or "")
        self.generator_label.value = (
            f"<div class='msx-caption'>Exports from the active generator <b>{html.escape(str(self.session.active))}</b>"
            + (f" (model id {html.escape(sha[:16])}…)" if sha else "")
            + "; choose it in the Generate tab.</div>"
        )

    def _signer(self) -> Any:
        cert, key = self.cert.value.strip(), self.key.value.strip()
        if bool(cert) != bool(key):
            raise DataError("C2PA signing needs both the certificate chain and the private key (PEM files), or neither.")
        if not cert:
            return None
        from ..provenance import C2PASigner

        return C2PASigner.from_files(cert, key)

    def settings(self) -> dict:
        """The keyword arguments of :func:`~medsynth_explore.export.export` the fields describe (checked)."""
        folder = self.folder.value.strip()
        if not folder:
            raise DataError("give an output folder for the export.")
        return {
            "n": int(self.n.value),
            "out": Path(folder).expanduser(),
            "conditions": parse_conditions(self.conditions.value),
            "seed": int(self.seed.value),
            "shard_size": int(self.shard_size.value),
            "client": self.scheduler.value.strip() or None,
            "watermark": bool(self.watermark.value),
            "signer": self._signer(),
            "overwrite": bool(self.overwrite.value),
        }

    def export(self) -> Any:
        """Start (or resume) the export in the background; the verify summary shows when it ends."""
        from ..export import export, verify

        kw = self.settings()
        gen = self.session.generator()
        check = bool(self.read_watermarks.value)
        self.summary.value = ""

        def work(job: Any) -> Any:
            out = export(gen, callback=job.progress, **kw)
            return out, verify(out, check_watermark=check)

        return self.run_job(work, self._show, label=f"exporting {kw['n']} images to {kw['out']}")

    def verify(self) -> Any:
        """Verify the folder named in the panel (no export)."""
        from ..export import verify

        folder = Path(self.folder.value.strip() or ".").expanduser()
        check = bool(self.read_watermarks.value)
        return self.run_job(lambda job: (folder, verify(folder, check_watermark=check)), self._show, label=f"verifying {folder}")

    def _show(self, result: Any) -> None:
        folder, res = result
        self.last_folder, self.last_result = Path(folder), res
        colour = "#54A24B" if res.ok else "#b00020"
        table = res.table()
        shown = ""
        if len(table):
            bad = table[
                (table["bytes"] != "ok")
                | (table["label"] != "ok")
                | ~table["c2pa"].isin(["valid", "valid, trusted", "not signed"])
            ]
            rows = bad if len(bad) else table.head(5)
            caption = f"{len(bad)} files with problems" if len(bad) else f"first {len(rows)} of {len(table)} files"
            shown = f"<div class='msx-caption'>{caption}</div>" + html_table(rows)
        self.summary.value = (
            f"<pre style='border-left: 4px solid {colour}; padding: 4px 8px; white-space: pre-wrap'>"
            f"{html.escape(str(res))}</pre>{shown}"
        )
