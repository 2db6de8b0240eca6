"""The package's import structure: no import cycles, the layer order of DESIGN.md, no widget libraries in the core.

Every module of ``medsynth_explore`` is parsed with :mod:`ast` (nothing is
imported), so these tests see whatever modules exist when they run. Imports
count wherever they are written (module level, inside functions and
methods), except under ``if TYPE_CHECKING:``. Relative imports are resolved:
``from . import x`` where ``x`` is a submodule is an edge to that submodule,
``from .mod import name`` an edge to ``mod``. Importing a submodule also runs
its parent packages' ``__init__``; those implicit child -> parent edges are
not counted (every module would otherwise be in a cycle with its package).
Imports by string (``importlib.import_module``, entry points) are not seen.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

import pytest

PKG = "medsynth_explore"
PKG_DIR = Path(__file__).resolve().parents[1] / PKG

#: Third-party widget libraries only ``medsynth_explore.widgets`` may import (DESIGN.md: the core never imports them).
WIDGET_LIBRARIES = ("ipywidgets", "plotly", "anywidget")

#: The core layers of DESIGN.md, top to bottom: a module may import from its own layer and the layers above it.
CORE_LAYERS = {
    "data": 0,
    "phantom": 1,
    "checkpoint": 2,
    "generators": 3,
    "features": 4,
    "metrics": 5,
    "anatomy": 6,
    "provenance": 6,
}
#: Layer violations known when the layer test was written: (importing module, imported module) -> where it was
#: found. Each must be fixed in its own file and then removed here (the test fails on entries that no longer occur).
KNOWN_LAYER_VIOLATIONS = {
    # DiffusionGenerator builds, loads and saves its text encoder (DomainCLIP); the encoder model would
    # belong above generators (e.g. a shared text-encoder module), or be injected by the caller.
    (f"{PKG}.generators.diffusion", f"{PKG}.features.domain_clip"): "generators/diffusion.py: the diffusion model's text encoder",
}

#: Import cycles known when the cycle test was written, as the set of their modules -> the fix. Each lies in a
#: file outside the change that added this test; the test fails on any other cycle, and on entries that are gone.
KNOWN_CYCLES: dict = {}


# --------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class Import:
    """One import statement's edge: ``source`` imports ``target`` at ``file:line`` (inside ``scope``)."""

    source: str
    target: str
    file: str
    line: int
    scope: str
    text: str

    def where(self) -> str:
        return f"{self.file}:{self.line}  {self.text}  (in {self.scope})"


def _modules(root: Path, package: str) -> dict[str, Path]:
    """Module name -> file for every ``.py`` file of the package under ``root`` (packages: their ``__init__``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = [package, *rel.parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(not p.isidentifier() for p in parts):  # not importable (e.g. a stray "x-1.py")
            continue
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST):
    """Yield ``(node, scope)`` for every Import/ImportFrom, skipping the body of ``if TYPE_CHECKING:`` blocks."""
    stack: list[tuple[ast.AST, str]] = [(tree, "<module>")]
    while stack:
        node, scope = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, scope
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children = list(node.orelse)
        else:
            children = list(ast.iter_child_nodes(node))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scope = node.name if scope == "<module>" else f"{scope}.{node.name}"
        stack.extend((c, scope) for c in reversed(children))


def _resolve(name: str, known: set[str], package: str) -> str | None:
    """The package module ``name`` refers to: itself, or its longest known prefix; None outside the package."""
    if name != package and not name.startswith(package + "."):
        return None
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in known else None


def collect_imports(root: Path = PKG_DIR, package: str = PKG) -> tuple[dict[str, Path], list[Import]]:
    """Every module of the package and every import edge in it (intra-package targets and third-party names).

    Third-party imports are kept with their top-level name as ``target`` (e.g. ``"plotly"``), so one parse
    serves the cycle, layer and widget-library checks.
    """
    modules = _modules(root, package)
    known = set(modules)
    edges: list[Import] = []
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
        lines = source.splitlines()
        file = path.relative_to(root.parent).as_posix()
        for node, scope in _import_nodes(tree):
            text = " ".join((ast.get_source_segment(source, node) or lines[node.lineno - 1]).split())
            text = text if len(text) <= 110 else text[:107] + "..."
            targets: list[str] = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    targets.append(_resolve(alias.name, known, package) or alias.name.split(".")[0])
            else:
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                inside = _resolve(target, known, package)
                if inside is None:
                    targets.append(target.split(".")[0])
                else:
                    for alias in node.names:
                        sub = f"{target}.{alias.name}"
                        targets.append(sub if sub in known else inside)
            for t in dict.fromkeys(targets):
                if t != mod:
                    edges.append(Import(mod, t, file, node.lineno, scope, text))
    return modules, edges


def _internal(edges: list[Import], modules: dict[str, Path]) -> list[Import]:
    return [e for e in edges if e.target in modules]


# --------------------------------------------------------------------------- cycles
def find_cycles(modules: dict[str, Path], edges: list[Import]) -> list[list[Import]]:
    """One shortest cycle (as its edges) per strongly connected component of the import graph."""
    graph: dict[str, dict[str, Import]] = defaultdict(dict)
    for e in _internal(edges, modules):
        graph[e.source].setdefault(e.target, e)
    # Tarjan's strongly connected components, iterative
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    components.append(sorted(comp))
    cycles, seen = [], set()
    for comp in sorted(components):
        for first in comp:  # the shortest cycle through each member, so one component's several loops all show
            cyc = _shortest_cycle(graph, set(comp), first)
            key = frozenset((e.source, e.target) for e in cyc)
            if key not in seen:
                seen.add(key)
                cycles.append(cyc)
    return cycles


def _shortest_cycle(graph: dict[str, dict[str, Import]], members: set[str], first: str) -> list[Import]:
    """The edges of a shortest cycle from ``first`` back to itself inside ``members`` (breadth-first)."""
    previous: dict[str, str] = {}
    queue = deque([first])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node]):
            if child not in members:
                continue
            if child == first:
                path = [node]
                while path[-1] != first:
                    path.append(previous[path[-1]])
                path.reverse()
                path.append(first)
                return [graph[a][b] for a, b in zip(path, path[1:])]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"{first} is in a strongly connected component but on no cycle")  # pragma: no cover


def _format_cycles(cycles: list[list[Import]]) -> str:
    out = []
    for cyc in cycles:
        out.append("import cycle: " + " -> ".join([cyc[0].source] + [e.target for e in cyc]))
        out.extend(f"    {e.where()}" for e in cyc)
    return "\n".join(out)


def layer_violations(modules: dict[str, Path], edges: list[Import], package: str = PKG) -> list[Import]:
    """Imports from a core-layer module into a lower core layer or into a module outside the core.

    Every layer may import the package root (version, lazy names) and ``errors`` (the exception types).
    """

    def layer(mod: str):
        parts = mod.split(".")
        return CORE_LAYERS.get(parts[1]) if len(parts) > 1 else None

    allowed = {package, f"{package}.errors"}
    bad = []
    for e in _internal(edges, modules):
        src = layer(e.source)
        if src is None or e.target in allowed or e.target.split(".")[:2] == e.source.split(".")[:2]:
            continue
        dst = layer(e.target)
        if dst is None or dst > src:
            bad.append(e)
    return bad


# --------------------------------------------------------------------------- the package's tests
@pytest.fixture(scope="module")
def graph():
    return collect_imports()


def test_the_parser_sees_the_package(graph):
    modules, edges = graph
    assert {f"{PKG}.data", f"{PKG}.data.registry", f"{PKG}.phantom", f"{PKG}.phantom.dataset", f"{PKG}.errors"} <= set(modules)
    internal = {(e.source, e.target) for e in _internal(edges, modules)}
    assert (f"{PKG}.phantom.dataset", f"{PKG}.data.registry") in internal  # phantom registers its data set
    assert (f"{PKG}.export", f"{PKG}.shards") in internal and (f"{PKG}.scale", f"{PKG}.shards") in internal


def test_no_import_cycles(graph):
    cycles = find_cycles(*graph)
    new = [c for c in cycles if frozenset(e.source for e in c) not in KNOWN_CYCLES]
    assert not new, (
        f"{len(new)} import cycle(s) in {PKG} (function-level imports count too; break each by moving the shared "
        f"code into a module that both sides import, or by registering instead of importing):\n{_format_cycles(new)}"
    )
    stale = [sorted(k) for k in KNOWN_CYCLES if k not in {frozenset(e.source for e in c) for c in cycles}]
    assert not stale, f"these import cycles are gone: remove them from KNOWN_CYCLES in {__file__}: {stale}"


def test_core_never_imports_widget_libraries(graph):
    _, edges = graph
    bad = [
        e
        for e in edges
        if e.target in WIDGET_LIBRARIES and not (e.source == f"{PKG}.widgets" or e.source.startswith(f"{PKG}.widgets."))
    ]
    assert not bad, (
        f"only {PKG}.widgets may import {', '.join(WIDGET_LIBRARIES)} (DESIGN.md: the views live in widgets; "
        "everything else must run without them):\n" + "\n".join(f"    {e.where()}" for e in bad)
    )


def test_core_layers_import_only_from_the_layers_above(graph):
    modules, edges = graph
    found = layer_violations(modules, edges)
    new = [e for e in found if (e.source, e.target) not in KNOWN_LAYER_VIOLATIONS]
    ranks = sorted(set(CORE_LAYERS.values()))
    order = " > ".join("/".join(n for n, r in CORE_LAYERS.items() if r == rank) for rank in ranks)
    assert not new, (
        f"core modules import from a lower layer or from outside the core (DESIGN.md order: errors > {order}; "
        "move the shared piece up, or pass it in):\n" + "\n".join(f"    {e.where()}" for e in new)
    )
    stale = sorted(set(KNOWN_LAYER_VIOLATIONS) - {(e.source, e.target) for e in found})
    assert not stale, f"these layer violations are gone: remove them from KNOWN_LAYER_VIOLATIONS in {__file__}: {stale}"


# --------------------------------------------------------------------------- the checker on a made-up package
def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / "fake" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return root / "fake"


def test_checker_finds_function_level_cycles_and_skips_type_checking(tmp_path):
    root = _write(
        tmp_path,
        {
            "__init__.py": "from .errors import E\n",
            "errors.py": "class E(Exception): ...\n",
            "data/__init__.py": "from .io import load\n",
            "data/io.py": """\
            from typing import TYPE_CHECKING
            from ..errors import E
            if TYPE_CHECKING:
                from ..phantom import simulate      # annotation only: not an edge
            def load():
                from .. import phantom              # function level: an edge to fake.phantom
                return phantom
            """,
            "phantom/__init__.py": "from ..data import load\nimport plotly.graph_objects as go\n",
            "a.py": "import fake.b\n",
            "b.py": "from fake.a import x\n",
        },
    )
    modules, edges = collect_imports(root, "fake")
    assert {"fake", "fake.errors", "fake.data", "fake.data.io", "fake.phantom", "fake.a", "fake.b"} == set(modules)
    internal = {(e.source, e.target) for e in _internal(edges, modules)}
    assert ("fake.data.io", "fake.phantom") in internal and ("fake.data.io", "fake.errors") in internal
    assert [e.line for e in edges if e.source == "fake.data.io" and e.target == "fake.phantom"] == [6]
    assert ("fake.data", "fake.data.io") in internal and ("fake.data.io", "fake.data") not in internal  # no child -> parent
    cycles = find_cycles(modules, edges)
    text = _format_cycles(cycles)
    assert len(cycles) == 2, text
    assert "import cycle: fake.a -> fake.b -> fake.a" in text
    assert "import cycle: fake.data -> fake.data.io -> fake.phantom -> fake.data" in text
    assert "fake/data/io.py:6  from .. import phantom  (in load)" in text
    assert [e.target for e in edges if e.source == "fake.phantom" and e.target not in modules] == ["plotly"]


def test_checker_layer_rule_on_a_made_up_package(tmp_path):
    root = _write(
        tmp_path,
        {
            "__init__.py": "",
            "errors.py": "",
            "data/__init__.py": "from ..errors import E\n",
            "phantom/__init__.py": "from ..data import x\n",
            "generators/__init__.py": "def f():\n    from ..features import enc\n    from ..phantom import p\n",
            "features/__init__.py": "from ..generators import base\nfrom .. import session\n",
            "session.py": "from .data import x\n",
        },
    )
    modules, edges = collect_imports(root, "fake")
    bad = {(e.source, e.target) for e in layer_violations(modules, edges, "fake")}
    assert bad == {("fake.generators", "fake.features"), ("fake.features", "fake.session")}


# --------------------------------------------------------------------------- the package root
SUBPACKAGES = ("phantom", "metrics", "features", "generators", "data", "export", "scale", "session", "checkpoint", "widgets")


def _run(code: str) -> str:
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300, cwd=PKG_DIR.parent
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_import_is_light_and_subpackages_are_attributes():
    out = _run(f"""
        import sys, types
        import {PKG} as mx
        heavy = sorted(m for m in ("torch", "pandas", "numpy", "ipywidgets", "plotly") if m in sys.modules)
        print("heavy", heavy)
        print("late", sorted(m for m in sys.modules if m.startswith("{PKG}.") and m != "{PKG}.errors"))
        for name in {SUBPACKAGES!r}:
            mod = getattr(mx, name)
            assert isinstance(mod, types.ModuleType) and mod.__name__ == "{PKG}." + name, (name, mod)
        assert set({SUBPACKAGES!r}) <= set(dir(mx))
        """)
    assert "heavy []" in out, f"`import {PKG}` must not import these (keep module-level imports in its __init__ lazy): {out}"
    assert "late []" in out, f"`import {PKG}` must import no submodule but errors: {out}"


@pytest.mark.parametrize(
    "first",
    [
        "",
        "import medsynth_explore.export, medsynth_explore.evaluate",
        "from medsynth_explore.export import export, verify",
        "from medsynth_explore import evaluate, export",
    ],
)
def test_export_and_evaluate_are_callable_in_any_import_order(first):
    out = _run(f"""
        import tempfile, numpy as np
        {first}
        import medsynth_explore as mx
        from medsynth_explore.data import ImageSet
        import medsynth_explore.export, medsynth_explore.evaluate
        assert mx.export is medsynth_explore.export and mx.evaluate is medsynth_explore.evaluate
        class Flat:
            name, sha256, card = "flat", "0" * 64, {{}}
            def sample(self, n, **kw): return ImageSet(np.full((n, 1, 4, 4), 0.5, np.float32))
        out = mx.export(Flat(), 2, tempfile.mkdtemp() + "/x", shard_size=1)
        print("verified", mx.export.verify(out).ok, mx.export.export is not mx.export)
        x = np.random.default_rng(0).random((20, 4))
        print("fid", round(mx.evaluate(x, x + 1.0, metrics=["fid"], n_boot=0).value("fid"), 3))
        import inspect
        print("signature", list(inspect.signature(mx.export).parameters)[:3])
        """)
    assert "verified True True" in out and "fid 4.0" in out and "signature ['generator', 'n', 'out']" in out, out
