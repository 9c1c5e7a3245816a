"""Warm mypy's cache with the types of what the project imports from outside itself (the
installed packages and the standard library), at ``make install``: the type check of
``make test`` then reads those from the cache and checks only the project's own modules
(a cold check costs three times as much). The modules are read from the sources mypy
checks, so the list follows the code; one it misses is only checked later, not wrongly.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# mypy's ``files`` and ``mypy_path`` (pyproject.toml): where the project's modules live.
SOURCES = ("lambdas", "devstack", "infra", "tests", "bench", "app.py")
ROOTS = (".", "lambdas", "bench")


def own_names(project: Path) -> set[str]:
    """The top-level names of the project's own packages and modules."""
    names: set[str] = set()
    for root in ROOTS:
        for entry in (project / root).iterdir():
            if entry.suffix == ".py" or (entry.is_dir() and not entry.name.startswith(".")):
                names.add(entry.stem)
    return names


def imported_modules(project: Path) -> list[str]:
    """Every module the sources import by absolute name that is not the project's own."""
    own = own_names(project) | {"__future__"}
    modules: set[str] = set()
    for source in SOURCES:
        path = project / source
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            for node in ast.walk(ast.parse(file.read_bytes(), str(file))):
                if isinstance(node, ast.Import):
                    modules.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module)
    return sorted(name for name in modules if name.split(".")[0] not in own)


def main() -> int:
    project = Path.cwd()
    modules = imported_modules(project)
    print(f"warming mypy's cache with {len(modules)} modules the project imports ...", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="escalator-mypy-") as scratch:
        imports = Path(scratch) / "imports.py"
        imports.write_text("".join(f"import {name}\n" for name in modules), encoding="utf-8")
        # (its verdict is not ours: the project's own check is make test's)
        subprocess.run(  # noqa: S603
            [sys.executable, "-m", "mypy", str(imports)],
            cwd=project,
            stdout=subprocess.DEVNULL,
            check=False,
        )
    print(f"mypy's cache warmed in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
