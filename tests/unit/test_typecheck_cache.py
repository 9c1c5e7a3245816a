"""What ``make install`` puts into mypy's cache: the types of every module the project
imports from outside itself, none of its own (those are ``make test``'s to check)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]

# (in a child interpreter: parsing here could collide with a traceback another test's
# thread is formatting, as tests/unit/test_dependencies.py explains)
_LIST = (
    "import json, sys; from pathlib import Path;"
    " from devstack.build.typecheck_cache import imported_modules;"
    " print(json.dumps(imported_modules(Path(sys.argv[1]))))"
)


def test_it_warms_what_the_project_imports_from_outside_and_nothing_of_its_own() -> None:
    child = subprocess.run(
        [sys.executable, "-c", _LIST, str(PROJECT)],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT,
    )
    modules = json.loads(child.stdout)

    # the installed packages and the standard library the code imports, submodules too
    assert {"aws_cdk", "boto3", "psycopg2.extras", "twilio.rest", "collections.abc"} <= set(modules)
    # never the project's own packages and modules (lambdas/, bench/ and the root's)
    own = {
        "escalator",
        "escalator_cli",
        "devstack",
        "infra",
        "tests",
        "app",
        "common",
        "__future__",
    }
    assert not [name for name in modules if name.split(".")[0] in own]
