"""The runtime package's dependencies point one way: no import cycle among its modules,
and no path from it to the development harness, the CDK app or the tests; and no import
cycle anywhere in the project."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import escalator

PACKAGE = Path(escalator.__file__).resolve().parent
OUTSIDE_THE_RUNTIME = ("escalator_cli", "devstack", "infra", "tests", "bench")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(
    name: str,
    path: Path,
    known: set[str],
    statements: list[tuple[str, str | None, int, list[str]]],
) -> set[str]:
    """Every module named by an import anywhere in module ``name`` (``path``): at the top,
    inside functions and under ``TYPE_CHECKING`` alike. ``from a import b`` names ``a.b``
    when that is a module, else ``a``."""
    names: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for statement, module, level, aliases in statements:
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
def import_statements(
    paths: tuple[Path, ...],
) -> dict[Path, list[tuple[str, str | None, int, list[str]]]]:
    """Each module's import statements: (``import`` or ``from``, module, level, names)."""
    child = subprocess.run(
        [sys.executable, "-c", _LIST_IMPORTS],
        input=json.dumps([str(path) for path in paths]),
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(child.stdout)
    return {path: [tuple(statement) for statement in found[str(path)]] for path in paths}


def graph(found: dict[str, Path] | None = None) -> dict[str, set[str]]:
    """Which modules each of ``found`` (the runtime package's by default) imports."""
    found = modules() if found is None else found
    known = set(found)
    statements = import_statements(tuple(sorted(found.values())))
    return {name: imported(name, path, known, statements[path]) for name, path in found.items()}


# The whole project: each root and the top-level packages and modules found there.
PROJECT = PACKAGE.parents[1]
PROJECT_ROOTS = {
    PROJECT / "lambdas": ("escalator", "escalator_cli"),
    PROJECT: ("devstack", "infra", "tests", "app.py"),
    PROJECT / "bench": None,  # every module there (mypy_path: imported by bare name)
}


def project_modules() -> dict[str, Path]:
    """Every module of the project, by the name it is imported as."""
    found: dict[str, Path] = {}
    for root, tops in PROJECT_ROOTS.items():
        entries = [root / top for top in tops] if tops else sorted(root.glob("*.py"))
        for entry in entries:
            for path in sorted(entry.rglob("*.py")) if entry.is_dir() else [entry]:
                parts = path.relative_to(root).with_suffix("").parts
                found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


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


def test_there_is_no_import_cycle_anywhere_in_the_project() -> None:
    edges = graph(project_modules())
    # (what it reads: the harness, the CDK app, the tests and the benches too)
    assert {"devstack.docs.__main__", "infra.stack", "tests.conftest", "common", "app"} <= set(
        edges
    )
    assert "devstack.docs.dashboard" in edges["devstack.docs.__main__"]
    assert cycles(edges) == []


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


def test_the_operators_command_imports_only_the_runtime() -> None:
    edges = graph(project_modules())
    own = {name: targets for name, targets in edges.items() if name.startswith("escalator_cli")}
    assert "escalator_cli.commands" in own  # (it is read)
    offending = {
        (module, name)
        for module, names in own.items()
        for name in names
        if name.split(".")[0] in ("moto", *OUTSIDE_THE_RUNTIME[1:])
    }
    assert offending == set()


# The development harness's floor plan (devstack/__init__.py): each subpackage, and the
# modules at its root, on a floor; an import goes to a lower floor or stays in its own
# subpackage, never sideways or up.
HARNESS_FLOORS = {
    "devstack": 0,
    "devstack.polling": 0,
    "devstack.loopback": 0,
    "devstack.emulation": 1,
    "devstack.peers": 1,
    "devstack.build": 1,
    "devstack.local": 2,
    "devstack.docs": 2,
    "devstack.mutation": 2,
    "devstack.rehearsal": 3,
}


def room(module: str) -> str | None:
    """The subpackage (or root module) of the harness that ``module`` is in, if any."""
    candidates = [
        name for name in HARNESS_FLOORS if module == name or module.startswith(name + ".")
    ]
    return max(candidates, key=len, default=None)


def wrong_way(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """The imports from one room of the harness to another that do not go down a floor."""
    found = []
    for module, targets in sorted(edges.items()):
        here = room(module)
        for target in sorted(targets):
            there = room(target)
            if here is None or there is None or there == here:
                continue
            if HARNESS_FLOORS[there] >= HARNESS_FLOORS[here]:
                found.append((module, target))
    return found


def test_every_module_of_the_harness_is_on_a_floor() -> None:
    harness = [name for name in project_modules() if name.split(".")[0] == "devstack"]
    assert len(harness) > 30
    assert [name for name in harness if room(name) is None] == []
    # (a new folder is placed on the plan: a module directly in devstack/ is floor 0)
    assert sorted(name for name in harness if room(name) == "devstack") == ["devstack"]


def test_the_harness_imports_only_down_its_floors() -> None:
    edges = graph(project_modules())
    assert "devstack.emulation.iam" in edges["devstack.emulation.moto_services.base"]  # (read)
    assert wrong_way(edges) == []


def test_the_floor_check_finds_an_import_up_or_sideways() -> None:
    edges = {
        "devstack.emulation.iam": {"devstack.local.stack", "devstack.polling"},
        "devstack.peers.postgres": {"devstack.emulation.template"},
        "devstack.local.stack": {"devstack.peers.postgres", "devstack.local.outbox"},
    }
    assert wrong_way(edges) == [
        ("devstack.emulation.iam", "devstack.local.stack"),
        ("devstack.peers.postgres", "devstack.emulation.template"),
    ]


def test_every_folder_of_modules_is_a_package_in_git() -> None:
    # (an ignore rule once kept devstack/build/__init__.py out of git: a fresh clone had
    # devstack.build as a namespace package, unlike the checkout that made the commit)
    tracked = subprocess.run(
        ["git", "ls-files", "--", "lambdas", "devstack", "infra"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    folders = {str(Path(name).parent) for name in tracked if name.endswith(".py")}
    assert {"devstack/build", "lambdas/escalator", "infra"} <= folders
    assert sorted(f for f in folders if f"{f}/__init__.py" not in tracked) == []
