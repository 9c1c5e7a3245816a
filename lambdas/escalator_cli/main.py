"""The ``escalator`` command line: its parser, the commands of the extensions installed
beside it, and one error message per failure instead of a traceback.

escalator db migrate [--database-url URL] [--sql-dir DIR]
escalator send start PROCESS_ID --notification 'channel=phone,at=+90,phone-number=+385...'
escalator send stop PROCESS_ID
escalator send --file request.json
escalator status PROCESS_ID [--database-url URL] [--json]
escalator executions [--state-machine-arn ARN] [--max N] [--json]
escalator dlq redrive [--queue-url URL] [--dead-letter-queue-url URL]
escalator verify --stack NAME [--region R] [--timeout SECONDS] [--json]
escalator verify --endpoint-url URL (the local stack's)

and, with the development harness installed: ``escalator local`` and ``escalator demo``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any, NoReturn

from escalator.contract import InvalidRequest
from escalator.errors import ConfigError, DatabaseError
from escalator.migrations import MigrationError
from escalator_cli import commands

# An extension is a function ``register(commands)`` that adds its commands to the parser.
EXTENSIONS = "escalator.commands"

Register = Callable[["argparse._SubParsersAction[Any]"], None]


class CommandError(Exception):
    """A command cannot run, for a reason its user can fix (what an extension raises)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    import psycopg2
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    words = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = _parser(_extensions(words))
    except CommandError as exc:
        print(f"escalator: error: {exc}", file=sys.stderr)
        return 1
    args = parser.parse_args(words)
    try:
        status: int = args.run(args)
    except (ConfigError, MigrationError, CommandError) as exc:
        print(f"escalator: error: {exc}", file=sys.stderr)
        return 1
    except (DatabaseError, psycopg2.OperationalError) as exc:
        # (libpq's message names the host and port, never the password; its first line
        # says what failed)
        reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        print(f"escalator: error: {reason}", file=sys.stderr)
        return 1
    except (NoRegionError, NoCredentialsError) as exc:
        print(
            f"escalator: error: {exc} (give --region, or set AWS_REGION and credentials)",
            file=sys.stderr,
        )
        return 1
    except InvalidRequest as exc:
        print(f"escalator: invalid request: {exc.reason}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as exc:
        # (an endpoint that does not answer, or AWS's refusal: its code and message)
        print(f"escalator: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:
        # (a port in use, a directory it may not write: what the system said)
        print(f"escalator: error: {one_line(exc)}", file=sys.stderr)
        return 1
    return status


def one_line(exc: BaseException) -> str:
    """An error's message on one line."""
    return " ".join((str(exc).strip() or type(exc).__name__).split())


def _extensions(words: Sequence[str]) -> list[Register]:
    """The installed extensions' ``register`` functions; none when the words name one of
    the operator's commands (so that those never import the development harness)."""
    if words and words[0] in commands.NAMES:
        return []
    found = []
    for entry in sorted(entry_points(group=EXTENSIONS), key=lambda entry: entry.name):
        try:
            found.append(entry.load())
        except ImportError as exc:
            raise CommandError(
                f"the commands of {entry.value} cannot be loaded ({exc}); they need the "
                "development requirements (make install)"
            ) from exc
    return found


class _Parser(argparse.ArgumentParser):
    """An argument parser whose complaint is one line (and where to read more)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def _parser(extensions: Sequence[Register]) -> argparse.ArgumentParser:
    parser = _Parser(prog="escalator", description="Escalator: escalation notifications on AWS.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.register(subparsers)
    for register in extensions:
        register(subparsers)
    return parser
