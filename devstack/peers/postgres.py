"""A real PostgreSQL: ``DATABASE_URL`` when set, else an embedded server (pgserver).

Each test gets a database of its own, created from a template that was migrated once,
so tests never see each other's rows and never pay for the migrations again; given
back, it is emptied for the next test (or dropped, when the test changed its schema). The local
stack keeps its embedded server under its data directory.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql
from psycopg2.extensions import make_dsn

from devstack.polling import NotInTime, wait_until
from escalator.migrations import APPLICATION_ROLE, PURGE_ROLE, default_sql_dir, migrate


class PostgresServer:
    """Creates and drops scratch databases on one server (needs CREATEDB), and lets the
    application role log in with a password of this session's."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self._names = (f"escalator_test_{os.getpid()}_{n}" for n in itertools.count())
        self.template = self.create_database()
        migrate(self.dsn(self.template), default_sql_dir())
        self.application_password = allow_application_login(self.dsn(self.template))
        self.purger_password = allow_application_login(self.dsn(self.template), PURGE_ROLE)
        # (of a copy: a database's own grants are not copied from its template)
        self._emptied = [self.create_database(self.template)]
        with _admin_cursor(self.dsn(self._emptied[0])) as cursor:
            self._digest, self._tables = _schema_of(cursor)

    @contextmanager
    def scratch_database(self) -> Iterator[str]:
        """A migrated, empty database of the caller's own (its name). Given back, it is
        emptied for the next caller when its schema is still the template's (a new
        database costs a copy of the template and a cold catalog cache in every first
        connection), else dropped."""
        name = self._emptied.pop() if self._emptied else self.create_database(self.template)
        try:
            yield name
        finally:
            self._give_back(name)

    def _give_back(self, name: str) -> None:
        try:
            with _admin_cursor(self.dsn(name)) as cursor:
                cursor.execute("SET lock_timeout = '5s'")
                cursor.execute(_OTHERS.format("pg_terminate_backend(pid)"))
                # (as a drop would: the next test counts connections, and sees none of these)
                wait_until(
                    lambda: _no_other_session(cursor),
                    timeout=5,
                    interval=0.01,
                    what="the sessions of a database given back to end",
                )
                if _schema_of(cursor)[0] != self._digest:
                    raise _Changed
                _empty(cursor, self._tables)
        except (psycopg2.Error, _Changed, NotInTime):
            self.drop_database(name)
            return
        self._emptied.append(name)

    def close(self) -> None:
        """Drop the databases kept for reuse."""
        while self._emptied:
            self.drop_database(self._emptied.pop())

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

    def purger_dsn(self, database: str) -> str:
        """The purge's role's connection to ``database`` (it deletes what has finished)."""
        return make_dsn(
            self.admin_dsn, dbname=database, user=PURGE_ROLE, password=self.purger_password
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
        with _admin_cursor(self.admin_dsn) as cursor:
            cursor.execute(statement)


@contextmanager
def postgres_server(scratch: Path) -> Iterator[PostgresServer]:
    """``DATABASE_URL``'s server if set, else a throwaway embedded one under ``scratch``."""
    url = os.environ.get("DATABASE_URL")
    if url:
        server = PostgresServer(url)
        try:
            yield server
        finally:
            server.close()
            server.drop_database(server.template)
        return
    with embedded_postgres(scratch) as embedded_url:
        yield PostgresServer(embedded_url)


# The other sessions of the database a cursor is connected to.
_OTHERS = (
    "SELECT {} FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


# The sequences of these tables' columns (serial and identity), each back to its start.
_RESTART_SEQUENCES = """
    SELECT setval(d.objid::regclass, s.seqstart, false)
    FROM pg_depend d JOIN pg_sequence s ON s.seqrelid = d.objid
    WHERE d.classid = 'pg_class'::regclass AND d.refobjid = ANY(%s::regclass[])
      AND d.deptype IN ('a', 'i')
"""


def _empty(cursor: Any, tables: list[str]) -> None:
    """Empty ``tables`` as ``TRUNCATE ... RESTART IDENTITY`` would, for a tenth of the
    server's time: a truncate makes new files for every table, index and sequence (17 ms
    of CPU where this takes 2), and a test session gives back hundreds of databases."""
    names = [sql.Identifier(table) for table in tables]
    # One statement: the foreign keys are checked at its end, when every table is empty,
    # so the order is free and no privilege beyond the tables' is needed.
    deletes = sql.SQL(", ").join(
        sql.SQL("{} AS (DELETE FROM {})").format(sql.Identifier(f"emptied_{n}"), name)
        for n, name in enumerate(names)
    )
    cursor.execute(sql.SQL("WITH {} ").format(deletes) + sql.SQL(_RESTART_SEQUENCES), (tables,))
    # (the next test finds the tables as a truncate leaves them: no dead rows to step over)
    cursor.execute(sql.SQL("VACUUM {}").format(sql.SQL(", ").join(names)))


def _no_other_session(cursor: Any) -> bool:
    cursor.execute(_OTHERS.format("count(*)"))
    row = cursor.fetchone()
    return row is not None and row[0] == 0


class _Changed(Exception):
    """A database given back no longer has the template's schema."""


# Everything of a database's schema a test could change (its tables, columns, defaults,
# constraints, indexes, grants, functions, triggers, schemas, settings, the applied
# migrations) as one digest; and its tables but the migrations' record, to empty.
_SCHEMA = """
    SELECT md5(string_agg(item, E'\n' ORDER BY item)),
           array_agg(relname ORDER BY relname) FILTER (WHERE emptied)
    FROM (
        SELECT format('rel %s %s %s %s %s', c.oid::regclass, c.relkind, c.relacl,
                      c.reloptions, c.relrowsecurity) AS item,
               c.relkind IN ('r', 'p') AND n.nspname = 'public'
               AND c.relname <> 'schema_migration' AS emptied,
               c.relname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
        UNION ALL
        SELECT format('col %s %s %s %s %s', a.attrelid::regclass, a.attname,
                      format_type(a.atttypid, a.atttypmod), a.attnotnull,
                      pg_get_expr(d.adbin, d.adrelid)), false, NULL
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attnum > 0 AND NOT a.attisdropped
          AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
        UNION ALL
        SELECT format('con %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid)),
               false, NULL
        FROM pg_constraint WHERE connamespace NOT IN
            (SELECT oid FROM pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema'))
        UNION ALL
        SELECT pg_get_indexdef(i.indexrelid), false, NULL FROM pg_index i
        JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
        UNION ALL
        SELECT format('fn %s %s %s', p.oid::regprocedure, p.proacl, md5(p.prosrc)), false, NULL
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
        UNION ALL
        SELECT format('trigger %s', pg_get_triggerdef(oid)), false, NULL
        FROM pg_trigger WHERE NOT tgisinternal
        UNION ALL
        SELECT format('schema %s %s', nspname, nspacl), false, NULL FROM pg_namespace
        UNION ALL
        SELECT format('setting %s %s', setrole, setconfig), false, NULL
        FROM pg_db_role_setting
        WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
        UNION ALL
        SELECT format('extension %s %s', extname, extversion), false, NULL FROM pg_extension
        UNION ALL
        SELECT format('default acl %s %s %s', defaclrole, defaclobjtype, defaclacl), false, NULL
        FROM pg_default_acl
        UNION ALL
        SELECT format('database %s', datacl), false, NULL FROM pg_database
        WHERE datname = current_database()
        UNION ALL
        SELECT format('migration %s %s', version, checksum), false, NULL FROM schema_migration
    ) AS schema
"""


@contextmanager
def _admin_cursor(dsn: str) -> Iterator[Any]:
    connection = psycopg2.connect(dsn)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            yield cursor
    finally:
        connection.close()


def _schema_of(cursor: Any) -> tuple[str, list[str]]:
    """The digest of the schema of the database ``cursor`` is connected to, and the
    tables a given-back one is emptied of."""
    cursor.execute(_SCHEMA)
    digest, tables = cursor.fetchone()
    return str(digest), list(tables)


def allow_application_login(admin_dsn: str, role: str = APPLICATION_ROLE) -> str:
    """Give the application role (or another role the migrations create: the purge's) a
    new random password, as the development harness authenticates it (AWS uses IAM
    instead); return it."""
    password = secrets.token_urlsafe(24)
    with _admin_cursor(admin_dsn) as cursor:
        cursor.execute(
            sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD %s").format(sql.Identifier(role)),
            (password,),
        )
    return password


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """An embedded PostgreSQL (pgserver) keeping its data under ``data_dir``, stopped on
    exit; yields its URL."""
    with embedded_postgres_server(data_dir) as server:
        yield str(server.get_uri())


# A directory for a stopped, freshly initialized cluster that a new embedded server copies
# instead of running initdb (set by the test session: a run starts a dozen servers, and
# initdb costs each about 1.3 s of CPU, a copy a tenth of that).
PRISTINE_CLUSTER_VARIABLE = "ESCALATOR_PRISTINE_CLUSTER"
# The servers made from it are thrown away with their session: they need not survive the
# machine's crash, so nothing is flushed to disk (creating a database from a template
# flushes every file of it). Commits still write their WAL before they return, so a
# server that is killed (tests kill them) loses no committed transaction.
THROWAWAY_SETTINGS = "fsync = off\nfull_page_writes = off\n"
# What a copy leaves out: pgserver's list of the server's owners, the server's log and
# the command line it was last started with (they name the pristine cluster's owners and
# path).
_NOT_COPIED = (".handle_pids.json", "log", "postmaster.opts", "postmaster.pid")


def from_pristine_cluster(data_dir: Path) -> bool:
    """Fill an uninitialized ``data_dir`` with a copy of the pristine cluster that
    ``ESCALATOR_PRISTINE_CLUSTER`` names (made, by the first process that needs it, under
    a lock); whether it did."""
    pristine = os.environ.get(PRISTINE_CLUSTER_VARIABLE)
    if not pristine or (data_dir / "PG_VERSION").exists():
        return False
    from pgserver import postgres_server as embedded

    source = Path(pristine)
    source.parent.mkdir(parents=True, exist_ok=True)
    with open(source.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not source.exists():
            # (made beside and renamed into place: an initdb that dies half way leaves
            # no cluster for the next server to copy)
            partial = source.with_name(f"{source.name}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            embedded.get_server(partial, cleanup_mode="stop").cleanup()
            with open(partial / "postgresql.auto.conf", "a") as settings:
                settings.write(THROWAWAY_SETTINGS)
            partial.rename(source)
    # (cp -a keeps the owner: as root, pgserver runs the server as a user of its own)
    subprocess.run(["cp", "-a", f"{source}/.", str(data_dir)], check=True)  # noqa: S603, S607
    for name in _NOT_COPIED:
        (data_dir / name).unlink(missing_ok=True)
    return True


@contextmanager
def embedded_postgres_server(data_dir: Path) -> Iterator[Any]:
    """The pgserver server keeping its data under ``data_dir``, stopped on exit."""
    from pgserver import postgres_server as embedded

    data_dir.mkdir(parents=True, exist_ok=True)
    from_pristine_cluster(data_dir)
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
