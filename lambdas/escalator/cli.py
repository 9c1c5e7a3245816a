"""The ``escalator`` command.

escalator db migrate [--database-url URL] [--sql-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from escalator.config import ConfigError, database_settings
from escalator.migrations import MigrationError, default_sql_dir, migrate


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.run(args)
    except (ConfigError, MigrationError) as exc:
        print(f"escalator: error: {exc}", file=sys.stderr)
        return 1
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="escalator", description="Escalator: escalation notifications on AWS."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="database administration")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    migrate_parser = db_commands.add_parser(
        "migrate", help="apply the pending schema migrations, in order"
    )
    migrate_parser.add_argument(
        "--database-url", help="PostgreSQL URL (default: $DATABASE_URL, or the DB_* variables)"
    )
    migrate_parser.add_argument(
        "--sql-dir",
        type=Path,
        default=default_sql_dir(),
        help="migration files (default: %(default)s)",
    )
    migrate_parser.set_defaults(run=_migrate)
    return parser


def _migrate(args: argparse.Namespace) -> int:
    settings = database_settings(url=args.database_url)
    applied = migrate(
        settings.dsn, args.sql_dir, progress=lambda line: print(line, file=sys.stderr)
    )
    print(f"applied {len(applied)} migration(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
