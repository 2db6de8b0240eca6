"""The conda environments (top level and Binder) stay in step with pyproject.toml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
# pip name -> conda-forge name(s) where they differ
CONDA_NAMES = {"torch": {"pytorch", "pytorch-cpu"}, "open_clip_torch": {"open-clip-torch"}, "dask[distributed]": {"dask"}}
SKIP = {"medsynth-explore"}


def _pyproject_requirements(extras=("widgets", "dask")):
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"])
    for e in extras:
        reqs += meta["optional-dependencies"][e]
    return reqs


def _name(req: str) -> str:
    return re.split(r"[<>=!~ ]", req, maxsplit=1)[0].strip()


def _conda_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        m = re.match(r"\s+- ([A-Za-z0-9_.\-]+)", line)
        if m and not line.strip().startswith("- -e"):
            names.add(m.group(1).lower())
    return names


@pytest.mark.parametrize("env", ["environment.yml", "binder/environment.yml"])
def test_conda_environment_lists_every_runtime_dependency(env):
    names = _conda_names(ROOT / env)
    missing = []
    for req in _pyproject_requirements():
        n = _name(req)
        if n in SKIP:
            continue
        wanted = CONDA_NAMES.get(n, {n.lower().replace("_", "-")})
        if not wanted & names:
            missing.append(n)
    assert not missing, f"{env} lacks {missing} (listed in pyproject.toml)"


def test_binder_installs_the_package():
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "pip install" in post and " -e ." in post


def test_console_script_declared():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["scripts"]["medsynth"] == "medsynth_explore.cli:main"


def test_builtin_data_sets_are_declared_as_entry_points_and_installed():
    """``load_dataset("phantomcxr")`` finds the phantom package through this entry point (the data layer never imports it)."""
    from importlib.metadata import entry_points

    from medsynth_explore.data.registry import ENTRY_POINT_GROUP

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = meta["entry-points"][ENTRY_POINT_GROUP]
    assert declared == {"phantomcxr": "medsynth_explore.phantom.dataset"}
    for value in declared.values():
        assert (ROOT / (value.split(":")[0].replace(".", "/") + ".py")).is_file(), value
    installed = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert installed.items() >= declared.items(), (
        f"the installed package metadata declares {installed}, pyproject.toml {declared}: "
        "reinstall (pip install -e . --no-deps) after changing entry points"
    )
