"""A real PostgreSQL: ``DATABASE_URL`` when set, else an embedded server (pgserver).

Each test gets a database of its own, created from a template that was migrated once,
so tests never see each other's rows and never pay for the migrations again. The local
stack keeps its embedded server under its data directory.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql
from psycopg2.extensions import make_dsn

from escalator.migrations import APPLICATION_ROLE, default_sql_dir, migrate


class PostgresServer:
    """Creates and drops scratch databases on one server (needs CREATEDB), and lets the
    application role log in with a password of this session's."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self._names = (f"escalator_test_{os.getpid()}_{n}" for n in itertools.count())
        self.template = self.create_database()
        migrate(self.dsn(self.template), default_sql_dir())
        self.application_password = allow_application_login(self.dsn(self.template))

    def dsn(self, database: str) -> str:
        """The administrator's connection to ``database``: for migrations and checks."""
        return make_dsn(self.admin_dsn, dbname=database)

    def application_dsn(self, database: str) -> str:
        """The application role's connection to ``database``: what the functions use."""
        return make_dsn(
            self.admin_dsn,
            dbname=database,
            user=APPLICATION_ROLE,
            password=self.application_password,
        )

    def create_database(self, template: str | None = None) -> str:
        name = next(self._names)
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        self._admin(statement)
        return name

    def drop_database(self, name: str) -> None:
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _admin(self, statement: sql.Composable) -> None:
        connection = psycopg2.connect(self.admin_dsn)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()


@contextmanager
def postgres_server(scratch: Path) -> Iterator[PostgresServer]:
    """``DATABASE_URL``'s server if set, else a throwaway embedded one under ``scratch``."""
    url = os.environ.get("DATABASE_URL")
    if url:
        server = PostgresServer(url)
        try:
            yield server
        finally:
            server.drop_database(server.template)
        return
    with embedded_postgres(scratch) as embedded_url:
        yield PostgresServer(embedded_url)


def allow_application_login(admin_dsn: str) -> str:
    """Give the application role (created by the migrations) a new random password, as
    the development harness authenticates it (AWS uses IAM instead); return it."""
    password = secrets.token_urlsafe(24)
    connection = psycopg2.connect(admin_dsn)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(
                sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD %s").format(
                    sql.Identifier(APPLICATION_ROLE)
                ),
                (password,),
            )
    finally:
        connection.close()
    return password


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """An embedded PostgreSQL (pgserver) keeping its data under ``data_dir``, stopped on
    exit; yields its URL."""
    with embedded_postgres_server(data_dir) as server:
        yield str(server.get_uri())


@contextmanager
def embedded_postgres_server(data_dir: Path) -> Iterator[Any]:
    """The pgserver server keeping its data under ``data_dir``, stopped on exit."""
    from pgserver import postgres_server as embedded

    data_dir.mkdir(parents=True, exist_ok=True)
    forget_dead_owners(data_dir)
    server: Any = embedded.get_server(data_dir, cleanup_mode="stop")
    try:
        yield server
    finally:
        server.cleanup()


class PostgresKeeper(threading.Thread):
    """Watches an embedded server and starts it again when it dies (a crash, a
    ``kill -9``), saying so through ``say``; ``restarts`` counts them."""

    def __init__(
        self,
        server: Any,
        stop: threading.Event,
        say: Callable[[str], None],
        interval: float = 1.0,
    ) -> None:
        super().__init__(name="postgres-keeper", daemon=True)
        self._server = server
        self._stop = stop
        self._say = say
        self._interval = interval
        self.restarts = 0

    def run(self) -> None:
        while not self._stop.wait(self._interval):
            info = self._server.get_postmaster_info()
            if info.is_running():
                continue
            self._say(f"PostgreSQL (pid {info.pid}) is gone; starting it again")
            try:
                self._server.ensure_postgres_running()
            except Exception as exc:  # its old backends may still be exiting: next look
                self._say(f"PostgreSQL did not start yet ({type(exc).__name__}); trying again")
                continue
            self.restarts += 1
            self._say(f"PostgreSQL restarted (pid {self._server.get_pid()}), same data")


def forget_dead_owners(data_dir: Path) -> list[int]:
    """Drop the processes that no longer exist from pgserver's list of the server's
    owners; return the ones dropped.

    pgserver stops the server when its last owner lets go. An owner killed with SIGKILL
    never lets go, so its server would outlive every later owner: with the dead removed,
    whoever adopts the orphan is its last owner and stops it on a clean shutdown.
    """
    import psutil  # pgserver's own dependency

    owners = data_dir / ".handle_pids.json"
    if not owners.exists():
        return []
    try:
        pids = [int(pid) for pid in json.loads(owners.read_text())]
    except (ValueError, TypeError):
        pids = []

    def alive(pid: int) -> bool:
        try:
            return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False

    living = [pid for pid in pids if alive(pid)]
    owners.write_text(json.dumps(living))
    return [pid for pid in pids if pid not in living]


def query(dsn: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement in its own committed transaction and return its rows."""
    connection = psycopg2.connect(dsn)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


class ConnectionSampler:
    """Samples how many client connections a database has, in the background; ``peak``."""

    def __init__(self, dsn: str, interval: float = 0.05) -> None:
        self._dsn = dsn
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak = 0

    def _run(self) -> None:
        connection = psycopg2.connect(self._dsn)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                while not self._stop.wait(self._interval):
                    cursor.execute(
                        """
                        SELECT count(*) FROM pg_stat_activity
                        WHERE datname = current_database() AND pid <> pg_backend_pid()
                          AND backend_type = 'client backend'
                        """
                    )
                    row = cursor.fetchone()
                    self.peak = max(self.peak, int(row[0]) if row else 0)
        finally:
            connection.close()

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
