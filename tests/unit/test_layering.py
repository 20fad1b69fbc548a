"""The package's layers, read from the source (every import, at module level or in a function).

    policy (pure core)      imports nothing of Airflow and nothing of the package outside it
    wire, urls              the contract between a task and the api-server: imports no layer above
    db (server side)        records, queries, propagation, verification: never the HTTP edge (api),
                            the pages (ui), the command line (cli) or the task side (enforcement)
    enforcement (task side) never the HTTP edge or the pages
    api (HTTP edge)         never the pages or the CLI; webapp assembles api and ui

no cycle among module-level imports anywhere in the package, and none among its layers. (Imports
inside a function, which defer an import's cost to the code that needs it, may close a loop within
one layer.)
See docs/architecture.md.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "airflow_policyzones"
ROOT = "airflow_policyzones"

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "policy": ("airflow", "airflow_policyzones"),
    "wire": (
        "airflow_policyzones.api",
        "airflow_policyzones.ui",
        "airflow_policyzones.cli",
        "airflow_policyzones.db",
        "airflow_policyzones.enforcement",
    ),
    "urls": ("airflow_policyzones",),
    "db": (
        "airflow_policyzones.api",
        "airflow_policyzones.ui",
        "airflow_policyzones.cli",
        "airflow_policyzones.enforcement",
    ),
    "enforcement": ("airflow_policyzones.api", "airflow_policyzones.ui", "airflow_policyzones.cli"),
    "api": ("airflow_policyzones.ui", "airflow_policyzones.cli", "airflow_policyzones.webapp"),
    "ui": ("airflow_policyzones.cli", "airflow_policyzones.webapp", "airflow_policyzones.plugin"),
}
"""Layer (top-level module or package below the root) -> prefixes its modules may not import.
The core's own modules are allowed within it (checked separately below)."""


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path) -> Iterator[tuple[str, bool]]:
    """``(imported module, at module level)`` for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top_level = {id(node) for node in tree.body} | {
        id(child) for node in tree.body if isinstance(node, ast.If) for child in node.body
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in top_level
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield f"{base}.{alias.name}", id(node) in top_level


def owner(target: str, known: dict[str, Path]) -> str | None:
    """The package module ``target`` (``module`` or ``module.attribute``) is, if any."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_layer_imports_only_what_it_may() -> None:
    known = modules()
    breaches = []
    for name, path in known.items():
        forbidden = FORBIDDEN.get(layer(name), ())
        for target, _ in imports(name, path):
            if layer(name) == "policy" and target.startswith(f"{ROOT}.policy"):
                continue
            if any(target == prefix or target.startswith(prefix + ".") for prefix in forbidden):
                breaches.append(f"{name} imports {target}")
    assert breaches == []


def test_no_module_level_import_cycle() -> None:
    known = modules()
    graph = {
        name: {
            found
            for target, top in imports(name, path)
            if top and target.startswith(ROOT) and (found := owner(target, known)) not in (None, name)
        }
        for name, path in known.items()
    }
    assert _cycles(graph) == []


def test_no_cycle_among_layers() -> None:
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        for target, _ in imports(name, path):
            found = owner(target, known) if target.startswith(ROOT) else None
            if found is not None and layer(found) != layer(name):
                graph.setdefault(layer(name), set()).add(layer(found))
    assert _cycles(graph) == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_the_cycle_finder_finds_cycles(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert _cycles(graph) == expected


def test_the_layer_check_sees_a_breach(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text(
        "from airflow_policyzones.api.relay import DecisionRelay\ndef f():\n    import airflow.models\n"
    )
    assert list(imports("airflow_policyzones.db.x", source)) == [
        ("airflow_policyzones.api.relay.DecisionRelay", True),
        ("airflow.models", False),
    ]
