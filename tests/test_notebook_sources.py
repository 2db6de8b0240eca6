"""Each tutorial's jupytext source (notebooks/NN_name.py) and its notebook (NN_name.ipynb) agree.

The ``.py`` is the file people edit; ``scripts/make_notebooks.py`` builds the
``.ipynb`` from it. These tests fail when the two have drifted apart (an edit
to one side only) and say which notebook, which cell and the command that fixes it.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
CHECK = "# NBVAL_CHECK_OUTPUT"
SOURCES = sorted(p for p in NB_DIR.glob("*.py") if p.name != "conftest.py")
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
STEMS = sorted({p.stem for p in SOURCES} | {p.stem for p in NOTEBOOKS})


def fix(stem: str, run: bool = False) -> str:
    return f"python scripts/make_notebooks.py {stem[:2]}" + ("" if run else " --no-exec")


def source_cells(stem: str) -> list[tuple[str, str]]:
    nb = jupytext.read(NB_DIR / f"{stem}.py", fmt="py:percent")
    return [(c.cell_type, c.source) for c in nb.cells]


def notebook(stem: str) -> dict:
    return json.loads((NB_DIR / f"{stem}.ipynb").read_text(encoding="utf-8"))


def text(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def checked(cell: dict) -> bool:
    return cell["cell_type"] == "code" and CHECK in text(cell)


def first_line(source: str) -> str:
    line = next((ln for ln in source.splitlines() if ln.strip()), "")
    return repr(line[:70])


def short_diff(a: str, b: str, a_name: str, b_name: str, lines: int = 30) -> str:
    diff = difflib.unified_diff(a.splitlines(True), b.splitlines(True), a_name, b_name, n=1)
    return "".join(list(diff)[:lines])


def test_sources_and_notebooks_come_in_pairs():
    assert len(SOURCES) >= 9, [p.name for p in SOURCES]
    no_notebook = [p.name for p in SOURCES if not p.with_suffix(".ipynb").exists()]
    no_source = [p.name for p in NOTEBOOKS if not p.with_suffix(".py").exists()]
    assert not no_notebook, f"sources without a notebook: {no_notebook}; build them with `python scripts/make_notebooks.py NN`"
    assert not no_source, (
        f"notebooks without a jupytext source: {no_source}; the .py is the file to edit: write it with "
        "`jupytext --to py:percent --opt notebook_metadata_filter=-all --opt cell_metadata_filter=-all "
        "notebooks/NAME.ipynb`"
    )


@pytest.mark.parametrize("stem", STEMS)
def test_notebook_cells_match_the_source(stem):
    if not (NB_DIR / f"{stem}.py").exists() or not (NB_DIR / f"{stem}.ipynb").exists():
        pytest.skip("not a pair (test_sources_and_notebooks_come_in_pairs reports it)")
    want = source_cells(stem)
    have = [(c["cell_type"], text(c)) for c in notebook(stem)["cells"]]
    where = f"notebooks/{stem}.ipynb differs from its source notebooks/{stem}.py"
    hint = f"The .py is the file to edit; rebuild the .ipynb from it with `{fix(stem)}`"
    for i, (w, h) in enumerate(zip(want, have)):
        if w != h:
            kind = f"a {h[0]} cell in the notebook, {w[0]} in the source" if w[0] != h[0] else "source"
            pytest.fail(
                f"{where} at cell {stem[:2]}-{i:02d} ({kind}). {hint}.\n" + short_diff(w[1], h[1], f"{stem}.py", f"{stem}.ipynb")
            )
    assert len(want) == len(have), f"{where}: {len(want)} cells in the source, {len(have)} in the notebook. {hint}."


@pytest.mark.parametrize("stem", [p.stem for p in NOTEBOOKS])
def test_only_checked_cells_store_outputs(stem):
    for i, cell in enumerate(notebook(stem)["cells"]):
        if cell["cell_type"] != "code":
            continue
        where = f"notebooks/{stem}.ipynb cell {stem[:2]}-{i:02d} ({first_line(text(cell))})"
        if checked(cell):
            assert cell["outputs"], (
                f"{where} is marked {CHECK} but stores no output, so nbval has nothing to compare; run `{fix(stem, run=True)}`"
            )
        else:
            assert not cell["outputs"] and cell["execution_count"] is None, (
                f"{where} is not marked {CHECK} but stores outputs or an execution count; run `{fix(stem)}`"
            )


@pytest.mark.parametrize("stem", [p.stem for p in NOTEBOOKS])
def test_notebook_is_saved_tidy(stem):
    nb = notebook(stem)
    hint = f"run `{fix(stem)}`"
    assert set(nb["metadata"]) == {"kernelspec", "language_info"}, f"notebooks/{stem}.ipynb has extra metadata; {hint}"
    assert nb["metadata"]["language_info"] == {"name": "python"}, f"notebooks/{stem}.ipynb stores run metadata; {hint}"
    ids = [c.get("id") for c in nb["cells"]]
    assert ids == [f"{stem[:2]}-{i:02d}" for i in range(len(ids))], f"notebooks/{stem}.ipynb cell ids are not NN-KK; {hint}"
    assert all(not c["metadata"] for c in nb["cells"]), f"notebooks/{stem}.ipynb stores cell metadata; {hint}"
    counts = [c["execution_count"] for c in nb["cells"] if checked(c)]
    assert counts == list(range(1, len(counts) + 1)), f"notebooks/{stem}.ipynb: checked cells are not counted 1, 2, ...; {hint}"


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_source_round_trips_through_jupytext(source):
    """The .py is exactly what jupytext writes back, so jupytext keeps no hidden state (header, cell metadata) in it."""
    original = source.read_text(encoding="utf-8")
    nb = jupytext.reads(original, fmt="py:percent")
    assert set(nb.metadata) <= {"jupytext"}, (
        f"{source.name} starts with a jupytext header; remove it (make_notebooks.py sets the notebook metadata)"
    )
    assert not any(c.metadata for c in nb.cells if set(c.metadata) - {"lines_to_next_cell"}), (
        f"{source.name}: a cell marker carries metadata, which the built notebook drops; write a plain `# %%`"
    )
    again = jupytext.writes(nb, fmt="py:percent")
    if again != original:
        diff = short_diff(original, again, f"{source.name} as stored", "as jupytext writes it", lines=40)
        pytest.fail(f"{source.name} does not round-trip through jupytext's percent format; make it read as below:\n{diff}")


# --------------------------------------------------------------------------- the builder itself
def _load_builder():
    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "scripts" / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


builder = _load_builder()


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_notebook_is_exactly_what_the_builder_writes(source):
    """Byte for byte: the same cells, ids, metadata and layout as ``make_notebooks.py --no-exec`` writes."""
    target = source.with_suffix(".ipynb")
    if not target.exists():
        pytest.skip("no notebook (test_sources_and_notebooks_come_in_pairs reports it)")
    nb = builder.read_source(source)
    builder.keep_stored_outputs(nb, target)
    assert builder.to_text(nb) == target.read_text(encoding="utf-8"), (
        f"notebooks/{target.name} is not what the builder writes from {source.name}; run `{fix(source.stem)}`"
    )


SMALL_SOURCE = """# %% [markdown]
# # A title
#
# Some prose.

# %%
x = 6 * 7
print("not compared")

# %%
# NBVAL_CHECK_OUTPUT
print(x)

# %%
# NBVAL_CHECK_OUTPUT
x
"""


def test_builder_executes_keeps_checked_outputs_and_ids(tmp_path):
    source = tmp_path / "42_small.py"
    source.write_text(SMALL_SOURCE)
    assert builder.build(source, run=True).startswith("wrote 42_small.ipynb (executed")
    nb = json.loads(source.with_suffix(".ipynb").read_text())
    assert [c["id"] for c in nb["cells"]] == ["42-00", "42-01", "42-02", "42-03"]
    assert nb["cells"][0]["source"][0] == "# A title\n"
    assert nb["cells"][1]["outputs"] == [] and nb["cells"][1]["execution_count"] is None
    assert nb["cells"][2]["outputs"] == [{"name": "stdout", "output_type": "stream", "text": ["42\n"]}]
    assert [nb["cells"][i]["execution_count"] for i in (2, 3)] == [1, 2]
    assert nb["cells"][3]["outputs"][0]["data"] == {"text/plain": ["42"]}
    assert nb["cells"][3]["outputs"][0]["execution_count"] == 2
    assert nb["metadata"] == builder.METADATA

    # prose edited: --no-exec keeps the stored outputs of the unchanged checked cells
    stored = nb["cells"][2]["outputs"]
    source.write_text(SMALL_SOURCE.replace("Some prose.", "Other prose."))
    assert "without stored outputs" not in builder.build(source, run=False)
    nb = json.loads(source.with_suffix(".ipynb").read_text())
    assert nb["cells"][0]["source"][-1] == "Other prose." and nb["cells"][2]["outputs"] == stored
    assert builder.build(source, run=False).startswith("42_small.ipynb unchanged")

    # a checked cell edited: its old output no longer applies, so it is dropped and reported
    source.write_text(SMALL_SOURCE.replace("print(x)", "print(x + 1)"))
    assert "checked cells without stored outputs: 42-02" in builder.build(source, run=False)
    nb = json.loads(source.with_suffix(".ipynb").read_text())
    assert nb["cells"][2]["outputs"] == [] and nb["cells"][3]["outputs"]
