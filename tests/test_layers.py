"""The layout holds: four packages with a public face, data flowing one way, no circle of imports.

Read from the code's own import statements (ast), never by running it:
- ``stats/`` imports nothing else of the harness (pure statistics on arrays);
- ``study/`` imports only itself and ``errors``; ``data/`` only itself, ``study``, ``errors`` and the
  record format's codec (``records``: labels are stored as digits, like predictions);
- ``report/`` never imports ``run/`` (nor torch): it reads the store and never trains;
- the store and its bridge to the statistics (records, store, kept, evidence, waves) never import
  ``run/`` or ``report/``; ``run/`` never imports ``report/``;
- no module reaches itself through its imports; the top level holds at most a dozen modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1] / "harness"
MODULES = {".".join(("harness", *p.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__"): p
           for p in ROOT.rglob("*.py")}
BRIDGE = {"harness.records", "harness.store", "harness.kept", "harness.evidence", "harness.waves"}


def imports(name: str) -> set[str]:
    """Modules of the harness (and torch) that module ``name`` imports, as dotted names."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this module is in
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
    return {m for m in out if m.startswith("harness") or m.split(".")[0] == "torch"}


RULES = [  # (which modules, what they may not import: a predicate on the imported name, why)
    ("harness.stats", lambda m: m.startswith("harness") and not m.startswith("harness.stats"),
     "stats imports nothing else of the harness"),
    ("harness.study", lambda m: m.startswith("harness") and not m.startswith(("harness.study", "harness.errors")),
     "study imports only itself and errors"),
    ("harness.data", lambda m: m.startswith("harness")
     and not m.startswith(("harness.data", "harness.study", "harness.errors", "harness.records")),
     "data imports only itself, study, errors and records"),
    ("harness.report", lambda m: m.startswith("harness.run") or m.split(".")[0] == "torch",
     "the report never imports the run layer or torch"),
    ("harness.run", lambda m: m.startswith("harness.report"), "run never imports the report"),
]


@pytest.mark.parametrize("where, banned, why", RULES, ids=[r[0] for r in RULES])
def test_each_package_imports_only_the_layers_below_it(where, banned, why):
    found = {(m, i) for m in MODULES if m == where or m.startswith(where + ".") for i in imports(m) if banned(i)}
    assert not found, f"{why}: {sorted(found)}"


def test_the_store_and_its_bridge_never_import_run_or_report():
    found = {(m, i) for m in BRIDGE for i in imports(m) if i.startswith(("harness.run", "harness.report"))}
    assert not found, sorted(found)


def test_no_module_reaches_itself_through_its_imports():
    graph = {m: {i for i in imports(m) if i in MODULES and i != m} for m in MODULES}
    graph = {m: {i for i in deps if not (MODULES[i].name == "__init__.py" and m.startswith(i + "."))}
             for m, deps in graph.items()}  # a module importing its own package's face is not a circle
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for i in sorted(graph[m]):
            if state.get(i) == 1:
                raise AssertionError("circle: " + " -> ".join(path[path.index(i):] + [m, i]) if i in path
                                     else f"circle through {m} -> {i}")
            if i not in state:
                visit(i, path + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_the_top_level_holds_at_most_a_dozen_modules_and_four_packages_with_a_face():
    top = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(top) <= 12, top
    for package in ("study", "data", "run", "stats", "report"):
        face = ROOT / package / "__init__.py"
        assert face.exists() and ast.get_docstring(ast.parse(face.read_text())), package
