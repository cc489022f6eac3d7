"""The package's import graph follows the layer order of ARCHITECTURE.md, by construction.

Every module is parsed with ``ast``; an import that points up the layer order, an import
between two service packages, an ember import inside a function, or any import cycle
fails here, naming the file and line. Importing a lower layer must load nothing above it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PKG = SRC / "ember"

# (layer, module prefixes), lowest first; a module belongs to its longest matching prefix
LAYERS: list[tuple[int, tuple[str, ...]]] = [
    (0, ("ember.errors", "ember.config", "ember.uri", "ember.context")),
    (1, ("ember.serializers",)),
    (2, ("ember.protocol",)),
    (3, ("ember.transport",)),
    (4, ("ember.client",)),
    (5, ("ember.server",)),
    (6, ("ember.naming", "ember.services", "ember.observability")),
    (7, ("ember", "ember.aio", "ember.events", "ember.tools", "ember.mobile", "ember.cli", "ember.nsc",
         "ember.otel", "ember.pytest_plugin", "ember.compat")),
]
# run as programs, never imported: they may start the command line from any layer
ENTRY_POINTS = {"ember.naming.__main__", "ember.__main__"}
# layers whose members are single modules of the root package: they may import each other (acyclically)
FLAT_LAYERS = {0, 7}
# the one way a service may use another L6 package: finding the name server
L6_SHARED = ("ember.naming.locate",)
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def layer_of(module: str) -> tuple[int, str]:
    """(layer, package) of a module: its longest matching prefix."""
    if module in ENTRY_POINTS:
        return 7, module
    best = ("", -1)
    for layer, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best[0]):
                best = (prefix, layer)
    assert best[1] >= 0, f"{module} is in no layer: add it to LAYERS"
    return best[1], best[0]


def resolve_import(module: str, node: ast.ImportFrom | ast.Import, is_package: bool) -> list[str]:
    """The ember modules an import statement loads (submodules named in ``from . import x`` included)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name == "ember" or a.name.startswith("ember.")]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if not (target == "ember" or target.startswith("ember.")):
        return []
    found = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        found.append(sub if sub in MODULES else target)
    return found


def imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported ember module, line, at module level) for every import in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    out: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                out.extend((t, child.lineno, top) for t in resolve_import(module, child, is_package))
            nested = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
            visit(child, nested)

    visit(tree, True)
    return out


GRAPH = {m: imports(m) for m in MODULES}


def test_every_module_is_in_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_ember_import_inside_a_function():
    bad = [f"{MODULES[m]}:{line}: imports {t} inside a function or class"
           for m, edges in GRAPH.items() for t, line, top in edges if not top]
    assert not bad, "\n".join(bad)


def test_imports_point_down_the_layers():
    bad = []
    for module, edges in GRAPH.items():
        layer, package = layer_of(module)
        for target, line, _top in edges:
            if target == module or target not in MODULES and target != "ember":
                continue
            tlayer, tpackage = layer_of(target)
            if tlayer < layer or tpackage == package:
                continue
            if tlayer == layer and layer in FLAT_LAYERS:
                continue
            if tlayer == layer == 6 and target.startswith(L6_SHARED):
                continue
            bad.append(f"{MODULES[module]}:{line}: {module} (layer {layer}) imports {target} (layer {tlayer})")
    assert not bad, "\n".join(bad)


def test_import_graph_has_no_cycle():
    edges = {m: sorted({t for t, _l, _top in GRAPH[m] if t in MODULES and t != m}) for m in MODULES}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[str] = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                walk(nxt, path + [nxt])
        state[node] = 2

    for module in MODULES:
        if module not in state:
            walk(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_module_holds_two_jobs():
    long = [f"{p} ({n} lines)" for p in MODULES.values() if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not long, "modules over ~600 lines:\n" + "\n".join(long)


@pytest.mark.parametrize(("module", "forbidden"), [
    ("ember.protocol", ("ember.client", "ember.server", "ember.naming", "ember.transport", "sqlite3", "ssl",
                        "asyncio")),
    ("ember.serializers", ("ember.protocol", "ember.client", "ember.server", "ember.naming", "sqlite3", "ssl",
                           "asyncio")),
    ("ember.transport", ("ember.client", "ember.server", "ember.naming", "sqlite3")),
    ("ember.client", ("ember.server", "ember.naming", "ember.tools", "sqlite3")),
    ("ember.server", ("ember.naming", "ember.services", "ember.tools", "sqlite3")),
])
def test_importing_a_layer_loads_nothing_above_it(module, forbidden):
    code = (f"import sys, {module}\n"
            f"print(sorted(m for m in sys.modules for f in {forbidden!r} if m == f or m.startswith(f + '.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"import {module} loaded {out.strip()}"
