"""Schema migrations: the ordered ``NNNN_name.sql`` files of ``sql/``, applied once each.

``migrate`` takes a session advisory lock, so concurrent runners (two deployments, a
deploy and a developer) apply each file exactly once; it records every applied file
with its checksum, applies each pending file in its own transaction, and stops at the
first one that fails, leaving the database at the last good version.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.extensions

from escalator.config import DatabaseSettings
from escalator.database import connect, connection_failure
from escalator.errors import EscalatorError

# The role the runtime functions connect as, created by sql/0002_application_role.sql.
APPLICATION_ROLE = "escalator_app"
# The role the purge connects as (deletes what has finished), sql/0011_retention.sql.
PURGE_ROLE = "escalator_purger"
# pg_advisory_lock key: "escalat" in ASCII, so it is recognisable in pg_locks.
ADVISORY_LOCK_KEY = 0x657363616C6174
_FILE_NAME = re.compile(r"(?P<version>[0-9]{4})_(?P<name>[a-z0-9_]+)\.sql")


class MigrationError(EscalatorError):
    """The migrations cannot be applied; the message says which file and why."""


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    filename: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def default_sql_dir() -> Path:
    """``sql/`` of the checkout, or the copy bundled next to the package on Lambda."""
    here = Path(__file__).resolve().parent
    candidates = (here.parent.parent / "sql", here / "sql")
    return next((path for path in candidates if path.is_dir()), candidates[0])


def discover(directory: Path) -> list[Migration]:
    """The migrations in ``directory``, in version order."""
    if not directory.is_dir():
        raise MigrationError(f"migration directory {directory} does not exist")
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lowercase_name.sql")
        version = int(match["version"])
        if version in migrations:
            raise MigrationError(
                f"{path.name}: version {version} is also {migrations[version].filename}"
            )
        migrations[version] = Migration(version, path.name, path.read_text(encoding="utf-8"))
    return [migrations[version] for version in sorted(migrations)]


def migrate(
    database: DatabaseSettings | str,
    directory: Path,
    *,
    progress: Callable[[str], None] = lambda _line: None,
) -> list[Migration]:
    """Apply the pending migrations in order and return them (empty when up to date).
    ``database`` is the settings of the master connection, or its URL."""
    migrations = discover(directory)
    settings = DatabaseSettings.from_url(database) if isinstance(database, str) else database
    try:
        connection = connect(settings)
    except psycopg2.Error as exc:
        raise MigrationError(connection_failure(exc, settings)) from exc
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        try:
            return _apply_pending(connection, migrations, progress)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    except psycopg2.Error as exc:
        raise MigrationError(f"database failure while migrating: {exc}".strip()) from exc
    finally:
        connection.close()


def _apply_pending(
    connection: psycopg2.extensions.connection,
    migrations: list[Migration],
    progress: Callable[[str], None],
) -> list[Migration]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migration (
                version    integer PRIMARY KEY,
                filename   text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        cursor.execute("SELECT version, filename, checksum FROM schema_migration")
        applied = {version: (filename, checksum) for version, filename, checksum in cursor}
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded[1] != migration.checksum:
            raise MigrationError(
                f"{migration.filename} was changed after it was applied (as {recorded[0]}); "
                "add a new migration instead of editing an applied one"
            )
    pending = [migration for migration in migrations if migration.version not in applied]
    if not pending:
        progress(f"database is up to date ({len(applied)} migrations applied)")
        return []
    connection.autocommit = False
    for number, migration in enumerate(pending, start=1):
        started = time.monotonic()
        progress(f"[{number}/{len(pending)}] applying {migration.filename} ...")
        try:
            with connection.cursor() as cursor:
                cursor.execute(migration.sql)
                cursor.execute(
                    "INSERT INTO schema_migration (version, filename, checksum)"
                    " VALUES (%s, %s, %s)",
                    (migration.version, migration.filename, migration.checksum),
                )
            connection.commit()
        except psycopg2.Error as exc:
            connection.rollback()
            connection.autocommit = True
            detail = (exc.pgerror or str(exc)).strip()
            raise MigrationError(
                f"migration {migration.filename} failed and was rolled back: {detail}"
            ) from exc
        elapsed_ms = (time.monotonic() - started) * 1000
        progress(f"[{number}/{len(pending)}] applied {migration.filename} in {elapsed_ms:.0f} ms")
    connection.autocommit = True
    return pending
