"""The operator's ``escalator`` commands run without the development harness: they never
import moto or ``devstack``, which add ``local`` and ``demo`` only when those are asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMAND = Path(sys.executable).with_name("escalator")  # (the installed console script)
HARNESS = ("moto", "devstack")


def imported_by(*words: str) -> tuple[set[str], str]:
    """The modules ``escalator WORDS`` imports (Python's own import-time report), and what
    it printed."""
    run = subprocess.run(
        [str(COMMAND), *words],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in run.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return modules, run.stdout


@pytest.mark.parametrize("command", ["status", "send", "executions", "dlq", "db", "verify"])
def test_an_operator_command_imports_nothing_of_the_harness(command: str) -> None:
    modules, shown = imported_by(command, "--help")

    assert f"usage: escalator {command}" in shown
    assert "escalator_cli.commands" in modules  # (the report is read: it names what ran)
    assert sorted(name for name in modules if name.split(".")[0] in HARNESS) == []


def test_the_harness_adds_its_commands_when_they_are_asked_for() -> None:
    modules, shown = imported_by("--help")
    assert "local" in shown
    assert "demo" in shown
    # (importlib loads the extension itself, which the report leaves out; not what it imports)
    assert "devstack.local.stack" in modules

    _, shown = imported_by("local", "--help")
    assert "--lambda-faults" in shown
