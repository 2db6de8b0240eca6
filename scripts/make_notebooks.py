"""Build the tutorial notebooks in notebooks/ from their jupytext sources.

Each tutorial is written as ``notebooks/NN_name.py`` in jupytext's percent
format (``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell whose
lines start with ``# ``); that file is the one to edit. This script turns it
into ``notebooks/NN_name.ipynb``, the file nbval runs and Binder opens:

1. read the ``.py`` with jupytext; cell ids are ``NN-KK`` (tutorial number,
   cell position), so they stay the same as long as no cell is added or removed
   before them,
2. execute the notebook top to bottom with nbclient in the notebooks/ folder
   (as ``pytest --nbval-lax notebooks/`` does), to refresh the outputs of the
   cells marked ``# NBVAL_CHECK_OUTPUT``: with ``--nbval-lax`` nbval compares
   exactly those cells' outputs with the stored ones,
3. tidy: keep outputs and execution counts (1, 2, ...) only in checked cells,
   drop widget state, run metadata and cell metadata, and write the ``.ipynb``.

With ``--no-exec`` nothing is run: each checked cell whose source is unchanged
keeps the outputs already stored in the existing ``.ipynb``, so editing prose or
unchecked code needs no re-run. A checked cell whose source changed is left
without outputs (the script says so): run without ``--no-exec`` then. When code
that a checked cell depends on changes, its stored output may be stale; nbval
finds that, and a run without ``--no-exec`` refreshes it.

``tests/test_notebook_sources.py`` fails when a ``.py`` and its ``.ipynb``
disagree and names the command that fixes it.

No jupytext pairing metadata
----------------------------
The notebooks carry no ``jupytext: formats: ipynb,py:percent`` metadata, and
the ``.py`` files no jupytext header. The pairing is by file name, one way
(``.py`` -> ``.ipynb``), done by this script and checked by the test. With
pairing metadata, JupyterLab's jupytext extension (the test extra installs it)
and ``jupytext --sync`` would write the ``.ipynb`` each time a tutorial is saved
from a live session, with every output, execution count and widget state of that
session, which the tidy rules above keep out of the repository; ``--sync`` also
decides which side wins by file time, which a git checkout does not preserve. Binder, where
jupytext is not installed, would only carry the metadata around, and the
header's ``jupytext_version`` would change the sources whenever jupytext is
upgraded. To carry edits made in an ``.ipynb`` back to its source, convert it
without metadata, check the diff, then rebuild::

    jupytext --to py:percent --opt notebook_metadata_filter=-all --opt cell_metadata_filter=-all notebooks/NN_name.ipynb
    python scripts/make_notebooks.py NN --no-exec

Usage::

    python scripts/make_notebooks.py            # all tutorials, executed
    python scripts/make_notebooks.py 03 05      # only those whose name starts so
    python scripts/make_notebooks.py --no-exec  # write without running, keeping the stored checked outputs
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
CHECK = "# NBVAL_CHECK_OUTPUT"
METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}
NEW_CELL = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell, "raw": nbformat.v4.new_raw_cell}


def sources() -> list[Path]:
    """The tutorial sources: every ``notebooks/*.py`` except pytest's conftest.py."""
    return sorted(p for p in NB_DIR.glob("*.py") if p.name != "conftest.py")


def read_source(path: Path) -> nbformat.NotebookNode:
    """The notebook of a percent-format source: its cells, ``NN-KK`` ids, fixed metadata, no outputs."""
    text_nb = jupytext.read(path, fmt="py:percent")
    nb = nbformat.v4.new_notebook(metadata=nbformat.from_dict(METADATA))
    for i, cell in enumerate(text_nb.cells):
        new = NEW_CELL[cell.cell_type](cell.source)
        new["id"] = f"{path.stem[:2]}-{i:02d}"
        nb.cells.append(new)
    return nb


def is_checked(cell) -> bool:
    return cell.cell_type == "code" and CHECK in cell.source


def keep_stored_outputs(nb: nbformat.NotebookNode, path: Path) -> list[str]:
    """Copy the outputs of checked cells from the ``.ipynb`` at ``path`` where the source is unchanged.

    Returns the ids of checked cells that found no stored cell with the same source.
    """
    stored: dict[str, list] = {}
    if path.exists():
        for cell in nbformat.read(path, as_version=4).cells:
            if is_checked(cell) and cell.get("outputs"):
                stored.setdefault(cell.source, []).append(cell.outputs)
    missing = []
    for cell in nb.cells:
        if is_checked(cell):
            if stored.get(cell.source):
                cell.outputs = stored[cell.source].pop(0)
            else:
                missing.append(cell.id)
    return missing


def execute(nb: nbformat.NotebookNode, name: str, cwd: Path = NB_DIR, timeout: int = 600) -> float:
    """Run ``nb`` in ``cwd`` and return the seconds it took; stop if a checked cell wrote to stderr."""
    from nbclient import NotebookClient

    t0 = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    seconds = time.perf_counter() - t0
    for cell in nb.cells:
        if is_checked(cell):
            for o in cell.outputs:
                if o.get("output_type") == "stream" and o.get("name") == "stderr":
                    raise SystemExit(f"{name}: checked cell {cell.id} wrote to stderr, which nbval would compare:\n{o['text']}")
    return seconds


def tidy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Keep outputs only in NBVAL_CHECK_OUTPUT cells; drop widget state and run metadata."""
    nb.metadata.pop("widgets", None)
    for key in list(nb.metadata.get("language_info", {})):
        if key != "name":
            nb.metadata["language_info"].pop(key)
    count = 0
    for c in nb.cells:
        c.metadata = {}
        if c.cell_type != "code":
            continue
        if is_checked(c):
            count += 1
            c.execution_count = count
            for o in c.outputs:
                if "execution_count" in o:
                    o["execution_count"] = count
                if o.get("output_type") == "stream":
                    o.pop("metadata", None)
                elif "metadata" in o:
                    o["metadata"] = {}
        else:
            c.outputs = []
            c.execution_count = None
    return nb


def to_text(nb: nbformat.NotebookNode) -> str:
    """The file text of a tidied notebook (nbformat's JSON layout, ending in a newline)."""
    text = nbformat.writes(tidy(nb))
    return text if text.endswith("\n") else text + "\n"


def build(source: Path, run: bool = True) -> str:
    """Write the ``.ipynb`` of one source; return a line saying what happened."""
    target = source.with_suffix(".ipynb")
    nb = read_source(source)
    if run:
        note = f"executed in {execute(nb, source.stem, cwd=source.parent):.1f} s"
    else:
        missing = keep_stored_outputs(nb, target)
        note = "not executed" + (
            f"; checked cells without stored outputs: {', '.join(missing)} (run without --no-exec)" if missing else ""
        )
    text = to_text(nb)
    if target.exists() and target.read_text(encoding="utf-8") == text:
        return f"{target.name} unchanged ({note})"
    target.write_text(text, encoding="utf-8")
    return f"wrote {target.name} ({note})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("only", nargs="*", help="name prefixes of the tutorials to build, e.g. 03 (default: all)")
    ap.add_argument(
        "--no-exec", action="store_true", help="write without executing; keep the stored outputs of unchanged checked cells"
    )
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    prefixes = [Path(p).stem for p in args.only]
    chosen = [s for s in sources() if not prefixes or any(s.stem.startswith(p) for p in prefixes)]
    if not chosen:
        raise SystemExit(
            f"no tutorial source in {NB_DIR} starts with {' or '.join(prefixes)}; sources: {', '.join(s.name for s in sources())}"
        )
    for source in chosen:
        print(build(source, run=not args.no_exec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
