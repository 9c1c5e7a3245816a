"""Mutation testing of the safety-critical modules (``make mutate``; docs/mutation.md).

    python -m devstack.mutation.mutate [--max-children N] [MUTANT ...]

Runs mutmut (pinned in requirements-dev.txt, configured in pyproject.toml's
``[tool.mutmut]``): each mutant of the modules named there is run against the selected
tests that executed the function it changes, and is killed when one of them fails.
Without mutant names a run is fresh (the previous ``mutants/`` is removed, so every
mutant is judged by today's tests); with names (or globs: ``'escalator.contract.*'``)
those mutants are tested again and the other results are kept. Ends with a table per
module and the survivors' names; ``.venv/bin/mutmut show NAME`` shows a mutant's diff.

What this adds to mutmut:

- The package lives in ``lambdas/escalator`` and is imported as ``escalator``. mutmut
  names a mutant after its file's path (``lambdas.escalator.contract.x_…``), while the
  trampoline it compiles into the mutated module activates the mutant only under the
  module's own name (``escalator.contract``): the names are taken without ``lambdas.``,
  and ``mutants/lambdas`` goes first on ``sys.path``, ahead of the editable install's
  finder (a meta path finder, asked after ``sys.path``). mutmut runs in a child process
  (``python -m devstack.mutation.mutate mutmut run ...``) that never imports the original package.
- One embedded PostgreSQL for the whole run (``DATABASE_URL``); every mutant's test
  session would start one of its own otherwise. Always a private one: concurrent
  sessions each give the application role a password of their own, which only a server
  that trusts local connections (as the embedded one does) ignores.
- As a pytest plugin in every session (``-p devstack.mutation.mutate``): each session gets a
  temporary directory of its own, removed at its end (sessions run side by side, forked,
  and never reach pytest's own clean-up); the package's log handler writes to the
  session's output (its stream was closed by the first session of the process); the
  sessions set up their PostgreSQL one at a time (``POSTGRES_LOCK``); and the
  template synthesis the root conftest starts is ended at once: no selected test needs
  the template, and it would take a core for seconds in every mutant's session.
"""

from __future__ import annotations

import argparse
import ast
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from devstack import PROJECT

ROOT = PROJECT
# Where mutmut keeps the mutated copy of the sources, its results and its stats.
MUTANTS = "mutants"
# The directory that holds the package, as mutmut sees its path (not a package itself).
PACKAGE_PARENT = "lambdas"
STATUSES = ("killed", "survived", "no tests", "timeout")

# What is mutated: every function and method of the modules pyproject.toml names
# (only_mutate), but these, which decide nothing a delivery depends on...
LEFT_OUT = {
    # the operator's read-only account of a process (`escalator history`)
    "escalator.repository": ("ProcessRepository.history", "_iso"),
}
# ...and of the notifiers only what classifies a provider's answer or error (settings,
# the TwiML request, the status callbacks' signatures are not part of it).
ONLY = {
    "escalator.channels.phone": ("TwilioCalls.deliver",),
    "escalator.channels.twilio": ("create", "never_sent"),
    "escalator.channels.email": ("SmtpMailer.deliver", "_Session.getreply", "_quit", "_text"),
    # target_problem: the contract's check of a PubNub channel name
    "escalator.channels.pubnub": ("PubNubPublisher.deliver", "target_problem"),
}


def main(argv: list[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["mutmut"]:  # the child this process starts: mutmut itself
        return _mutmut(arguments[1:])
    parser = argparse.ArgumentParser(prog="python -m devstack.mutation.mutate", description=__doc__)
    parser.add_argument(
        "--max-children", type=int, default=os.cpu_count() or 2, help="mutants tested at once"
    )
    parser.add_argument("mutants", nargs="*", help="test these again (names or globs)")
    options = parser.parse_args(arguments)

    os.chdir(ROOT)
    if not options.mutants:
        shutil.rmtree(MUTANTS, ignore_errors=True)
    from devstack.peers.postgres import embedded_postgres

    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="escalator-mutate-") as scratch,
        embedded_postgres(Path(scratch) / "pgdata") as url,
    ):
        unsafe_and_fast(url)
        command = [sys.executable, "-m", "devstack.mutation.mutate", "mutmut", "run"]
        command += ["--max-children", str(options.max_children)]
        command += options.mutants or scope()
        environment = {
            **os.environ,
            "DATABASE_URL": url,
            POSTGRES_LOCK: str(Path(scratch) / "postgres.lock"),
            "TZ": "UTC",
            # mutmut's progress line goes out as it changes, not in blocks
            "PYTHONUNBUFFERED": "1",
        }
        code = _run_until_its_listing(command, env=environment)
    elapsed = time.monotonic() - started
    results = read_results(Path(MUTANTS), scope())
    print(report(results, elapsed))
    return code


# mutmut ends a run of named mutants (the scope is named) with one line per mutant:
# the report below says the same in a table, and lists the survivors.
_LISTING = b"Mutant results"


def _run_until_its_listing(command: list[str], env: dict[str, str]) -> int:
    """Run ``command``, passing its output through (mutmut's progress line included) up
    to mutmut's listing of every mutant; return its exit status."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE)  # noqa: S603
    assert process.stdout is not None
    out = sys.stdout.buffer
    held = b""
    listing = False
    while chunk := os.read(process.stdout.fileno(), 65536):
        if listing:
            continue
        held += chunk
        found = held.find(_LISTING)
        if found >= 0:
            listing = True
            out.write(held[:found])
        else:
            keep = len(_LISTING) - 1
            out.write(held[:-keep])
            held = held[-keep:]
        out.flush()
    if not listing:
        out.write(held)
        out.flush()
    return process.wait()


def unsafe_and_fast(url: str) -> None:
    """A throwaway server need not survive a crash: without flushing to disk, creating
    each test's database (a copy of the migrated template) takes a third of the time."""
    import psycopg2

    connection = psycopg2.connect(url)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("ALTER SYSTEM SET fsync = off")
            cursor.execute("ALTER SYSTEM SET synchronous_commit = off")
            cursor.execute("ALTER SYSTEM SET full_page_writes = off")
            cursor.execute("SELECT pg_reload_conf()")
    finally:
        connection.close()


def _mutmut(arguments: list[str]) -> int:
    """mutmut's command line, with the package's modules named as they are imported."""
    import mutmut.__main__ as mutmut_main
    from mutmut.mutation import file_mutation
    from mutmut.utils import format_utils

    path_name = format_utils.get_mutant_name

    def get_mutant_name(relative_source_path: Path, mutant_method_name: str) -> str:
        path = Path(relative_source_path)
        if path.parts[:1] == (PACKAGE_PARENT,):
            path = Path(*path.parts[1:])
        return path_name(path, mutant_method_name)

    for module in (format_utils, file_mutation, mutmut_main):
        module.get_mutant_name = get_mutant_name  # type: ignore[attr-defined]
    # Before anything imports the package: an absent directory would be remembered as
    # holding nothing (sys.path_importer_cache).
    package_parent = Path(MUTANTS, PACKAGE_PARENT).resolve()
    package_parent.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(package_parent))
    try:
        mutmut_main.cli(args=arguments, prog_name="mutmut")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 1
    return 0


def scope() -> list[str]:
    """The mutants to test, as mutmut's name patterns: one per module, or one per
    function where some of the module is left out."""
    from mutmut.configuration import config
    from mutmut.utils.format_utils import make_mutant_key

    patterns = []
    for file in sorted(config().only_mutate):
        path = Path(file)
        module = ".".join(path.relative_to(PACKAGE_PARENT).with_suffix("").parts)
        left_out, only = LEFT_OUT.get(module, ()), ONLY.get(module)
        if not left_out and only is None:
            patterns.append(f"{module}.*")
            continue
        functions = _functions(ast.parse(path.read_text(encoding="utf-8")))
        unknown = (set(left_out) | set(only or ())) - set(functions)
        if unknown:
            raise SystemExit(f"{file} has no function {', '.join(sorted(unknown))}")
        chosen = [name for name in functions if (name in only if only else name not in left_out)]
        for name in chosen:
            owner, _, function = name.rpartition(".")
            patterns.append(f"{module}.{make_mutant_key(function, owner or None)}__mutmut_*")
    return patterns


def _functions(tree: ast.Module) -> list[str]:
    """The module's functions and its classes' methods (``Class.method``): what mutmut
    mutates."""
    names = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            names.append(node.name)
        elif isinstance(node, ast.ClassDef):
            names += [
                f"{node.name}.{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef)
            ]
    return names


def read_results(mutants: Path, patterns: list[str]) -> dict[str, dict[str, list[str]]]:
    """The mutants in scope by module and status, from mutmut's ``.meta`` files."""
    from fnmatch import fnmatchcase

    from mutmut.stats import status_by_exit_code

    results: dict[str, dict[str, list[str]]] = {}
    for meta in sorted((mutants / PACKAGE_PARENT).rglob("*.py.meta")):
        module = ".".join(
            meta.relative_to(mutants / PACKAGE_PARENT).with_suffix("").with_suffix("").parts
        )
        codes: dict[str, Any] = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        by_status: dict[str, list[str]] = {}
        for name, code in sorted(codes.items()):
            if any(fnmatchcase(name, pattern) for pattern in patterns):
                by_status.setdefault(status_by_exit_code[code], []).append(name)
        results[module] = by_status
    return results


def report(results: dict[str, dict[str, list[str]]], elapsed: float) -> str:
    """A table per module (killed, survived, no tests, timeout, other: not checked,
    suspicious, crashed), the survivors' names, and a JSON last line."""
    columns = (*STATUSES, "other")
    width = max([len(module) for module in results] + [6])
    lines = [f"{'module':<{width}}" + "".join(f"{column:>10}" for column in columns)]
    summary: dict[str, dict[str, int]] = {}
    for module, by_status in results.items():
        row = {status: len(by_status.get(status, [])) for status in STATUSES}
        row["other"] = sum(len(names) for status, names in by_status.items() if status not in row)
        summary[module] = row
        lines.append(f"{module:<{width}}" + "".join(f"{row[column]:>10}" for column in columns))
    totals = {column: sum(row[column] for row in summary.values()) for column in columns}
    lines.append(f"{'total':<{width}}" + "".join(f"{totals[column]:>10}" for column in columns))
    survivors = [name for by_status in results.values() for name in by_status.get("survived", [])]
    lines.append(f"{len(survivors)} survivors{':' if survivors else ''}")
    lines += [f"  {name}" for name in survivors]
    lines.append(f"wall time: {elapsed:.0f} s")
    outcome = {"modules": summary, "survivors": survivors, "seconds": round(elapsed)}
    lines.append(json.dumps(outcome, ensure_ascii=False))
    return "\n".join(lines)


# The pytest plugin of every session mutmut runs (pyproject.toml: pytest_add_cli_args).

_OWN_BASETEMP = pytest.StashKey[Path]()
# A file the sessions of one run lock while they set up their PostgreSQL (the
# ``postgres`` fixture): each gives the application role a new password, and PostgreSQL
# fails one of two concurrent ALTER ROLEs ("tuple concurrently updated"), which would
# fail that session's first test and count its mutant killed.
POSTGRES_LOCK = "ESCALATOR_MUTATE_POSTGRES_LOCK"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """A temporary directory of this session's own (before pytest's is made)."""
    if config.option.basetemp is None:
        basetemp = Path(tempfile.gettempdir(), "escalator-mutate", str(os.getpid()))
        basetemp.parent.mkdir(exist_ok=True)
        config.option.basetemp = str(basetemp)
        config.stash[_OWN_BASETEMP] = basetemp


def pytest_sessionstart(session: pytest.Session) -> None:
    """Point the package's log handler at this session's output: it kept the stream that
    was ``sys.stdout`` when the package was first imported, in an earlier session of
    this process (the first run collects the stats, and every mutant's session is forked
    from it), and pytest closed that stream when that session ended. Then end the
    template synthesis the root conftest started for this session."""
    logs = sys.modules.get("escalator.logs")
    if logs is not None:
        handler = logs.logger.registered_handler
        if isinstance(handler, logging.StreamHandler):
            handler.stream = sys.stdout  # not setStream: it flushes the closed stream
    conftest = sys.modules.get("tests.conftest")
    end_synthesis = getattr(conftest, "end_synthesis", None)
    if end_synthesis is not None:
        end_synthesis(session.config)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: Any) -> Any:
    lock = os.environ.get(POSTGRES_LOCK)
    if fixturedef.argname != "postgres" or not lock:
        return (yield)
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        return (yield)


def pytest_unconfigure(config: pytest.Config) -> None:
    basetemp = config.stash.get(_OWN_BASETEMP, None)
    if basetemp is not None:
        shutil.rmtree(basetemp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
