"""The runtime package's dependencies point one way: no import cycle among its modules,
and no path from it to the development harness, the CDK app or the tests."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
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
    for statement, module, level, aliases in import_statements()[path]:
        if statement == "import":
            names.update(aliases)
            continue
        base = module or ""
        if level:
            anchor = package.rsplit(".", level - 1)[0] if level > 1 else package
            base = f"{anchor}.{base}".rstrip(".")
        for alias in aliases:
            candidate = f"{base}.{alias}"
            names.add(candidate if candidate in known else base)
    return names


# Run by a child interpreter: CPython 3.11 keeps one AST-conversion depth counter per
# interpreter, so parsing here could collide with a traceback another test's thread is
# formatting (which parses too) and fail with SystemError.
_LIST_IMPORTS = """
import ast, json, sys
found = {}
for path in json.load(sys.stdin):
    found[path] = [
        ["import", None, 0, [a.name for a in node.names]]
        if isinstance(node, ast.Import)
        else ["from", node.module, node.level, [a.name for a in node.names]]
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read()))
        if isinstance(node, (ast.Import, ast.ImportFrom))
    ]
print(json.dumps(found))
"""


@functools.cache
def import_statements() -> dict[Path, list[tuple[str, str | None, int, list[str]]]]:
    """Each module's import statements: (``import`` or ``from``, module, level, names)."""
    paths = sorted(modules().values())
    child = subprocess.run(
        [sys.executable, "-c", _LIST_IMPORTS],
        input=json.dumps([str(path) for path in paths]),
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(child.stdout)
    return {path: [tuple(statement) for statement in found[str(path)]] for path in paths}


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
