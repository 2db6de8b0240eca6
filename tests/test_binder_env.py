"""The Binder environment covers what the tutorials need.

The conda environment files list conda-forge names; these tests map them to
importable module names, check that each is importable here (so the pip-installed
development environment stands in for the Binder one), and check that every
module the notebooks import is provided by a package listed in
binder/environment.yml or by medsynth_explore itself.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BINDER_ENV = ROOT / "binder" / "environment.yml"
TOP_ENV = ROOT / "environment.yml"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# conda-forge package -> top-level modules it provides (where the name differs from the module)
CONDA_TO_MODULES = {
    "pytorch": ["torch"],
    "pytorch-cpu": ["torch"],
    "open-clip-torch": ["open_clip"],
    "scikit-learn": ["sklearn"],
    "scikit-image": ["skimage"],
    "pillow": ["PIL"],
    "umap-learn": ["umap"],
    "faiss-cpu": ["faiss"],
    "pyyaml": ["yaml"],
    "jupyterlab": ["jupyterlab"],
    "distributed": ["distributed"],
    "pytorch-fid": ["pytorch_fid"],
    "ipywidgets": ["ipywidgets"],
}
# entries that are not Python packages
NOT_MODULES = {"python", "pip", "cpuonly"}
# modules a package brings in with it (import name -> conda package listed that provides it)
PROVIDED_WITH = {
    "IPython": "jupyterlab",
    "ipykernel": "jupyterlab",
    "nbformat": "jupyterlab",
    "huggingface_hub": "diffusers",
}


def conda_dependencies(path: Path) -> list[str]:
    """Package names in the conda ``dependencies`` list (not the pip sub-list)."""
    names, in_deps, in_pip = [], False, False
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if re.match(r"^dependencies\s*:", line):
            in_deps = True
            continue
        if in_deps and re.match(r"^\S", line):
            break
        if not in_deps:
            continue
        m = re.match(r"^(\s*)-\s*(.+?)\s*$", line)
        if not m:
            continue
        indent, item = len(m.group(1)), m.group(2)
        if item.startswith("pip:"):
            in_pip = True
            continue
        if in_pip and indent > 2:
            continue
        in_pip = False
        names.append(re.split(r"[<>=!~ ]", item, maxsplit=1)[0].strip().lower())
    return names


def modules_for(conda_name: str) -> list[str]:
    return CONDA_TO_MODULES.get(conda_name, [conda_name.replace("-", "_")])


def notebook_imports(path: Path) -> set[str]:
    """Top-level module names imported by the code cells of a notebook."""
    nb = json.loads(path.read_text())
    found = set()
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        src = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
        tree = ast.parse(src, filename=f"{path.name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_environment_parser_reads_the_files():
    deps = conda_dependencies(BINDER_ENV)
    assert "python" in deps and "numpy" in deps and "pytorch-cpu" in deps
    assert "-e ." not in " ".join(conda_dependencies(TOP_ENV))


@pytest.mark.parametrize("env", [BINDER_ENV, TOP_ENV], ids=["binder", "top-level"])
def test_every_listed_package_is_importable(env):
    missing = []
    for name in conda_dependencies(env):
        if name in NOT_MODULES:
            continue
        for mod in modules_for(name):
            if importlib.util.find_spec(mod) is None:
                missing.append(f"{name} (module {mod})")
    assert not missing, f"{env.name} lists packages that are not importable here: {missing}"


def test_binder_environment_matches_the_top_level_one():
    strip = {"cpuonly"}
    binder = {n.replace("pytorch-cpu", "pytorch") for n in conda_dependencies(BINDER_ENV)} - strip
    top = {n.replace("pytorch-cpu", "pytorch") for n in conda_dependencies(TOP_ENV)} - strip
    assert binder == top, f"only in binder: {sorted(binder - top)}, only in top-level: {sorted(top - binder)}"


def test_there_are_tutorials():
    assert len(NOTEBOOKS) >= 9, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_imports_are_covered_by_binder(notebook):
    provided = {"medsynth_explore"} | set(sys.stdlib_module_names)
    deps = conda_dependencies(BINDER_ENV)
    for name in deps:
        provided.update(modules_for(name))
    provided.update(mod for mod, pkg in PROVIDED_WITH.items() if pkg in deps)
    imports = notebook_imports(notebook)
    assert "medsynth_explore" in imports
    uncovered = sorted(imports - provided)
    assert not uncovered, f"{notebook.name} imports {uncovered}, which binder/environment.yml does not provide"
    not_importable = sorted(m for m in imports if importlib.util.find_spec(m) is None)
    assert not not_importable, f"{notebook.name} imports modules missing here: {not_importable}"


def test_import_parser_finds_imports(tmp_path):
    nb = {
        "cells": [
            {"cell_type": "code", "source": ["import numpy as np\n", "from scipy.ndimage import x\n", "%matplotlib inline\n"]},
            {"cell_type": "markdown", "source": ["import not_code"]},
        ]
    }
    p = tmp_path / "t.ipynb"
    p.write_text(json.dumps(nb))
    assert notebook_imports(p) == {"numpy", "scipy"}


def test_notebooks_are_saved_clean():
    """Only cells marked for nbval keep outputs; no widget state is stored."""
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        assert "widgets" not in nb.get("metadata", {}), f"{path.name} stores widget state"
        for cell in nb["cells"]:
            if cell["cell_type"] == "code" and "# NBVAL_CHECK_OUTPUT" not in "".join(cell["source"]):
                assert not cell["outputs"], f"{path.name}: an unmarked cell has saved outputs"
        last = "".join(nb["cells"][-1]["source"])
        assert "Try this" in last, f"{path.name} does not end with a 'Try this' cell"
