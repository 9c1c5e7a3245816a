"""The runtime package's dependencies point one way: no import cycle among its modules,
and no path from it to the development harness, the CDK app or the tests."""

from __future__ import annotations

import ast
from pathlib import Path

import escalator

PACKAGE = Path(escalator.__file__).resolve().parent
OUTSIDE_THE_RUNTIME = ("devstack", "infra", "tests", "bench")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path, known: set[str]) -> set[str]:
    """Every module named by an import anywhere in ``path``: at the top, inside functions
    and under ``TYPE_CHECKING`` alike. ``from a import b`` names ``a.b`` when that is a
    module, else ``a``."""
    names: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".rstrip(".")
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                names.add(candidate if candidate in known else base)
    return names


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imported(path, known) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles among the package's own modules (each found once)."""
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            found.append([*path[path.index(name) :], name])
            return
        if name in done:
            return
        for target in sorted(edges.get(name, set()) & set(edges)):
            visit(target, [*path, name])
        done.add(name)

    for name in sorted(edges):
        visit(name, [])
    return found


def test_the_import_graph_reads_every_module_and_import() -> None:
    edges = graph()
    assert "escalator.config" in edges
    assert "escalator.errors" in edges["escalator.config"]
    assert "escalator.channels.phone" in edges["escalator.channels"]


def test_there_is_no_import_cycle_among_the_runtime_modules() -> None:
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c", "a"]]


def test_configuration_is_a_leaf() -> None:
    own = {name for name in graph()["escalator.config"] if name.startswith("escalator")}
    assert own == {"escalator.errors", "escalator.limits"}
    assert {name for name in graph()["escalator.limits"] if name.startswith("escalator")} == set()


def test_nothing_in_the_runtime_imports_the_harness_the_cdk_app_or_the_tests() -> None:
    offending = {
        (module, name)
        for module, names in graph().items()
        for name in names
        if name.split(".")[0] in OUTSIDE_THE_RUNTIME
    }
    assert offending == set()
