"""PostgreSQL connections and the unit of work (one transaction, rolled back unless committed)."""

from __future__ import annotations

import contextlib
import threading
import time
from types import TracebackType

import psycopg2
import psycopg2.extensions
from psycopg2.extensions import parse_dsn
from psycopg2.extras import NamedTupleCursor

from escalator.config import DatabaseSettings
from escalator.errors import DatabaseError
from escalator.repository import (
    NotificationRepository,
    ProcessRepository,
    PropertyRepository,
    ProviderStatusRepository,
    RequestLog,
    RetentionRepository,
)


class Database(threading.local):
    """One connection per thread, reused across invocations of a warm Lambda and reopened
    when lost. (Lambda runs one invocation per sandbox at a time; the local stack and the
    tests run concurrent invocations on threads, each with its own connection.)"""

    def __init__(self, settings: DatabaseSettings) -> None:
        self._settings = settings
        self._connection: psycopg2.extensions.connection | None = None
        self._last_used = 0.0

    @property
    def settings(self) -> DatabaseSettings:
        return self._settings

    def connection(self) -> psycopg2.extensions.connection:
        """An open connection, checking one that sat idle long enough to have been dropped."""
        connection = self._connection
        idle = time.monotonic() - self._last_used
        if (
            connection is not None
            and not connection.closed
            and idle >= self._settings.idle_check_seconds
            and not _alive(connection)
        ):
            self.discard()
        if self._connection is None or self._connection.closed:
            self._connection = connect(self._settings)
        self._last_used = time.monotonic()
        return self._connection

    def discard(self) -> None:
        """Drop the current connection; the next ``connection()`` opens a new one."""
        if self._connection is not None:
            with contextlib.suppress(psycopg2.Error):
                self._connection.close()
        self._connection = None


def connect(settings: DatabaseSettings) -> psycopg2.extensions.connection:
    """A new connection, with the password given now (a fresh IAM token on AWS)."""
    if settings.password is None:
        return psycopg2.connect(settings.dsn)
    return psycopg2.connect(settings.dsn, password=settings.password())


# What libpq says when TLS stops a connection, and what it means for an operator.
_TLS_FAILURES = (
    ("certificate verify failed", "its certificate does not chain to a root certificate given"),
    ("does not match host name", "its certificate does not name the host connected to"),
    ("root certificate file", "the root certificates file cannot be read"),
    ("server does not support SSL", "the server does not offer TLS"),
)


def connection_failure(exc: psycopg2.Error, settings: DatabaseSettings) -> str:
    """What a failed connection says: libpq's reason, led, when TLS refused the server,
    by what that means and where the root certificates came from. (libpq's messages
    name the host, port and user, never the password.)"""
    detail = " ".join(str(exc).split())
    for marker, meaning in _TLS_FAILURES:
        if marker in detail:
            options = parse_dsn(settings.dsn)
            mode = options.get("sslmode", "prefer")
            root = options.get("sslrootcert", "libpq's default")
            return (
                f"cannot connect to the database: TLS verification of the server failed: "
                f"{meaning} (sslmode={mode}, sslrootcert={root}); libpq: {detail}"
            )
    return f"cannot connect to the database: {detail}".strip()


def _alive(connection: psycopg2.extensions.connection) -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        connection.rollback()
    except psycopg2.Error:
        return False
    return True


class UnitOfWork:
    """One transaction over the repositories; it rolls back unless ``commit()`` was called.

    Raises ``DatabaseError`` for any failure of PostgreSQL, after dropping a connection
    that is no longer usable.
    """

    processes: ProcessRepository
    notifications: NotificationRepository
    provider_statuses: ProviderStatusRepository
    properties: PropertyRepository
    requests: RequestLog
    retention: RetentionRepository

    def __init__(self, database: Database) -> None:
        self._database = database
        self._connection: psycopg2.extensions.connection | None = None
        self._committed = False

    def __enter__(self) -> UnitOfWork:
        try:
            self._connection = self._database.connection()
            # Rows are read by column name (``row.due_at``), never by position.
            cursor = self._connection.cursor(cursor_factory=NamedTupleCursor)
        except psycopg2.Error as exc:
            self._database.discard()
            raise DatabaseError(connection_failure(exc, self._database.settings)) from exc
        self._committed = False
        self.processes = ProcessRepository(cursor)
        self.notifications = NotificationRepository(cursor)
        self.provider_statuses = ProviderStatusRepository(cursor)
        self.properties = PropertyRepository(cursor)
        self.requests = RequestLog(cursor)
        self.retention = RetentionRepository(cursor)
        return self

    def commit(self) -> None:
        """Make the work of this unit durable."""
        assert self._connection is not None, "commit() outside 'with'"
        self._connection.commit()
        self._committed = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not self._committed:
            try:
                connection.rollback()
            except psycopg2.Error:
                self._database.discard()
        if isinstance(exc, psycopg2.Error):
            if isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
                self._database.discard()
            raise DatabaseError(f"database failure: {exc}".strip()) from exc
