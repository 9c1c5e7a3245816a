"""Autovacuum of the notification table: ``--count`` deliveries (1,000,000 by default)
through the statements the functions run, once with PostgreSQL's default autovacuum
settings for the table (or ``--baseline-options``) and once with those of
``sql/0012_notification_autovacuum.sql`` (or ``--options``), each on a database of its
own on one embedded server.

Each delivery is a phone call: inserted pending (``ProcessRepository.start``, four
notifications to a process), claimed by the activator's whole transaction
(``delivery.claim_due``, 200 to a claim as in production), moved to sending
(``start_sending``), recorded (``finish``: one in twenty failed), its process completed
(``ProcessRepository.complete_finished``, once for a claim's processes) and, when sent,
updated by its provider's final status callback (``ProviderStatusRepository.lock`` and
``set_status``: completed, with the call's duration; ``--callbacks 4``: each of the four a
call makes, initiated, ringing, in-progress, completed).

The table is in its steady state, as with the hourly purge: a purger beside the
deliveries runs ``escalator.retention.purge`` (the purge function's own batches) each
time the deliveries have moved on by 1/720 of ``--retain`` (an hour of 30 days), deleting
the processes completed before the last ``--retain`` deliveries (a quarter of ``--count``
by default) with their notifications. Deletes leave dead rows too, at the table's oldest
end. ``--no-purge`` keeps every row, as before retention. Every row is updated by a
statement of its own in a transaction of its own, as the functions update it; the
statements of one step of one claim go to the server together, prepared once
(``StatementBatch``), which saves round trips and planning, not the work on the table.
(One transaction for a whole step of a claim would not do: a page's earlier versions
would still be alive when its later rows are updated, and the callbacks' HOT updates, a
third of them here, would nearly vanish.)

For each run it prints the table's and its indexes' sizes, live and dead rows (and the
most dead rows seen while the deliveries ran), updates and HOT updates, autovacuum runs
and how much of the run a vacuum of the table was under way (pg_stat_user_tables,
pg_stat_progress_vacuum), and the claim's latency: while the deliveries ran, and at the
end (claims of fresh due notifications over what the run left).

The run compresses months into minutes. Autovacuum looks at each database every
``autovacuum_naptime`` (60 s by default): at 1,000,000 deliveries in minutes, every
threshold would be crossed within one nap, whatever the table's settings, and both runs
would be vacuumed alike, once a minute. The server therefore looks every second
(``--naptime``; the same for both runs), so that it finds a threshold crossed about as
soon as it is, relative to the churn, as a production server does."""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import os
import re
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg2
import psycopg2.extensions
from common import percentile, progress, quiet_logs, report
from psycopg2 import sql

if TYPE_CHECKING:
    from escalator.config import DeliveryConfig
    from escalator.database import Database

COUNT = 1_000_000
# The activator's batch (CLAIM_BATCH_SIZE's default) and a process's notifications.
BATCH = 200
PER_PROCESS = 4
# What Twilio reports about a call the project subscribes to (escalator.channels.phone),
# in order; each is a callback of its own.
CALL_STATUSES = ("initiated", "ringing", "in-progress", "completed")
FAILED_EVERY = 20
# Claims timed at the end, each of a fresh batch of due notifications.
PROBES = 100
SAMPLE_SECONDS = 0.5
PROGRESS_SECONDS = 20.0
# The hourly purge at the default 30 days' retention: 720 runs to a retention period.
PURGES_PER_RETENTION = 30 * 24
PURGE_POLL_SECONDS = 0.05
_OPTION = re.compile(r"[a-z_]+=[0-9.]+")


class StatementBatch(psycopg2.extensions.cursor):
    """A cursor for the repositories that keeps each statement they execute until
    ``send``, which sends everything kept in one round trip (on a connection in autocommit
    mode); ``commit`` closes a transaction of the statements kept since the last one. The
    server runs the repositories' own statements, one by one, in their order, each
    notification's step in a transaction of its own as in the functions; each statement's
    text is prepared once (``PREPARE``, then ``EXECUTE`` with the parameters as psycopg2
    binds them). What is saved is the round trips and the planning, not the work on the
    table. What a statement returns is not read (``fetchone`` answers ``None``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.statements: list[bytes] = []
        self.transactions: list[bytes] = []
        # each statement's text -> its prepared name, and its parameters in $n order
        self.prepared: dict[str, tuple[bytes, list[int | str]]] = {}

    def execute(self, query: Any, vars: Any = None) -> None:
        if query not in self.prepared:
            self.prepared[query] = self.prepare(str(query))
        name, order = self.prepared[query]
        bound = self.mogrify(", ".join(["%s"] * len(order)), [vars[key] for key in order])
        self.statements.append(b"EXECUTE %s(%s)" % (name, bound))

    def prepare(self, query: str) -> tuple[bytes, list[int | str]]:
        """``PREPARE`` the statement (psycopg2's placeholders numbered ``$n``, in their
        order; a named one used twice is one number): its name and its parameters' keys."""
        order: list[int | str] = []

        def number(placeholder: re.Match[str]) -> str:
            if placeholder.group(0) == "%%":
                return "%"
            key: int | str = placeholder.group(1) or len(order)
            if key not in order:
                order.append(key)
            return f"${order.index(key) + 1}"

        name = f"step_{len(self.prepared) + 1}".encode()
        text = re.sub(r"%\((\w+)\)s|%s|%%", number, query)
        self.statements.append(b"PREPARE %s AS %s" % (name, text.encode()))
        return name, order

    def fetchone(self) -> None:
        return None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return []

    def commit(self) -> None:
        if self.statements:
            self.transactions.append(b";\n".join([b"BEGIN", *self.statements, b"COMMIT;"]))
            self.statements = []

    def send(self) -> None:
        assert self.connection.autocommit, "the server would see one transaction"
        assert not self.statements, "a transaction left open"
        if self.transactions:
            transactions, self.transactions = b"\n".join(self.transactions), []
            super().execute(transactions)


@dataclass
class Figures:
    """What one run measured."""

    name: str
    options: list[str]
    delivered: int = 0
    seconds: float = 0.0
    claims: list[float] = field(default_factory=list)
    probes: list[float] = field(default_factory=list)
    samples: int = 0
    vacuuming: int = 0
    peak_dead: int = 0
    # deliveries kept by the purge (None: no purge), notifications it deleted, its runs
    retain: int | None = None
    purged: int = 0
    purges: int = 0
    # the run was stopped (Ctrl-C) before the end: what it measured is partial
    interrupted: bool = False
    table: dict[str, int] = field(default_factory=dict)
    indexes: dict[str, int] = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)
    # CPU seconds the deliveries took: this process's, the server's (autovacuum included)
    cpu: tuple[float, float] = (0.0, 0.0)

    @property
    def index_bytes(self) -> int:
        return sum(self.indexes.values())

    @property
    def heap(self) -> int:
        return self.stat("heap")

    @property
    def kept(self) -> int:
        """The notifications in the table at the end (exact, where ``live`` is
        PostgreSQL's estimate)."""
        return sum(self.states.values())

    @property
    def bytes_per_row(self) -> float:
        """The table's and its indexes' bytes for each notification kept."""
        return (self.stat("table") + self.index_bytes) / max(1, self.kept)

    def stat(self, key: str) -> int:
        """A figure of the table's (``measure``), 0 before it was measured."""
        return self.table.get(key, 0)


class Worker:
    """One activator's session: claims, then each claimed notification's later steps."""

    def __init__(self, number: int, config: DeliveryConfig, callbacks: int) -> None:
        from escalator.database import Database

        self.number = number
        self.config = config
        self.callbacks = CALL_STATUSES[len(CALL_STATUSES) - callbacks :]
        self.database: Database = Database(config.database)
        self._steps: StatementBatch | None = None
        self.claims: list[float] = []
        self.delivered = 0
        # seconds spent in each step, all claims together
        self.steps: dict[str, float] = defaultdict(float)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.steps[name] += time.perf_counter() - started

    def ingest(self, tick: int, count: int) -> None:
        """``count`` notifications due now, four to a process (``ProcessRepository.start``)."""
        from psycopg2.extras import NamedTupleCursor

        from escalator.contract import Notification
        from escalator.repository import ProcessRepository

        with self.step("insert"):
            connection = self.database.connection()
            processes = ProcessRepository(connection.cursor(cursor_factory=NamedTupleCursor))
            now = int(time.time())
            for first in range(0, count, PER_PROCESS):
                targets = [
                    f"+38591{self.number}{tick:07d}{n:03d}"
                    for n in range(first, min(count, first + PER_PROCESS))
                ]
                processes.start(
                    f"restaurant-{self.number}-{tick}-{first}",
                    [Notification("phone", target, now, recipient=target) for target in targets],
                )
            connection.commit()

    def claim(self) -> tuple[str, list[int]]:
        """The activator's transaction (housekeeping, then the claim), timed."""
        from escalator.database import UnitOfWork
        from escalator.delivery import claim_due
        from escalator.metrics import metrics

        execution = (
            "arn:aws:states:eu-central-1:123456789012:execution:"
            f"EscalatorTick4F1A2B3C-Ab12Cd34Ef56:{uuid.uuid4()}"
        )
        with self.step("claim"):
            started = time.perf_counter()
            claim = claim_due(UnitOfWork(self.database), execution=execution, config=self.config)
            self.claims.append((time.perf_counter() - started) * 1000)
        metrics.clear_metrics()  # (a claim that hands over counts it: not printed here)
        return execution, [item.id for item in claim.notifications]

    def deliver(self, execution: str, ids: Sequence[int]) -> None:
        """Confirm, record and report each claimed notification: a step of all of them at
        a time, each notification's in a transaction of its own."""
        batch = self.steps_session()
        sent = [notification_id for notification_id in ids if notification_id % FAILED_EVERY]
        with self.step("confirm"):
            self.confirm(batch, execution, ids)
        with self.step("record"):
            self.record(batch, execution, ids)
        with self.step("complete"):
            self.complete(ids)
        for status in self.callbacks:
            with self.step("callbacks"):
                self.report_status(batch, status, sent)
        self.delivered += len(ids)

    def steps_session(self) -> StatementBatch:
        """The state machine's steps' session (beside the activator's), in autocommit mode:
        each notification's statements are a transaction of their own."""
        if self._steps is None:
            from escalator.database import connect

            connection = connect(self.config.database)
            connection.autocommit = True
            self._steps = connection.cursor(cursor_factory=StatementBatch)
        return self._steps

    def close(self) -> None:
        self.database.discard()
        if self._steps is not None:
            self._steps.connection.close()
            self._steps = None

    def confirm(self, batch: StatementBatch, execution: str, ids: Sequence[int]) -> None:
        """The confirm step's move to sending (``start_sending``)."""
        from escalator.model import CONFIRM_TOKEN_SEPARATOR
        from escalator.repository import NotificationRepository

        notifications = NotificationRepository(batch)
        entered = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        for notification_id in ids:
            notifications.start_sending(
                notification_id,
                owner=execution,
                lease=self.config.sending_lease_seconds,
                token=f"{entered}{CONFIRM_TOKEN_SEPARATOR}{uuid.uuid4()}",
            )
            batch.commit()
        batch.send()

    def record(self, batch: StatementBatch, execution: str, ids: Sequence[int]) -> None:
        """The record step's outcome (``finish``): sent, or failed with the reason."""
        from escalator.repository import NotificationRepository

        notifications = NotificationRepository(batch)
        for notification_id in ids:
            failed = notification_id % FAILED_EVERY == 0
            notifications.finish(
                notification_id,
                owner=execution,
                state="failed" if failed else "sent",
                provider_ref=None if failed else call_sid(notification_id),
                error="Twilio refused the call: 21215 (geo permission)" if failed else None,
            )
            batch.commit()
        batch.send()

    def complete(self, ids: Sequence[int]) -> None:
        """The record step's completion of the processes with nothing left to deliver
        (``complete_finished``), once for the claim's processes: the process table's
        work, which the purge needs (it deletes completed processes only)."""
        from psycopg2.extras import NamedTupleCursor

        from escalator.repository import ProcessRepository

        connection = self.database.connection()
        cursor: Any = connection.cursor(cursor_factory=NamedTupleCursor)
        with cursor:
            cursor.execute(
                "SELECT DISTINCT process_ref FROM notification WHERE id = ANY(%s)", (list(ids),)
            )
            refs = [int(row.process_ref) for row in cursor.fetchall()]
            ProcessRepository(cursor).complete_finished(refs)
        connection.commit()

    def report_status(self, batch: StatementBatch, status: str, sent: Sequence[int]) -> None:
        """One status callback for each call (``lock``, then ``set_status``)."""
        from escalator.model import StatusReport
        from escalator.repository import ProviderStatusRepository

        statuses = ProviderStatusRepository(batch)
        duration = 27 if status == CALL_STATUSES[-1] else None
        for notification_id in sent:
            sid = call_sid(notification_id)
            statuses.lock(channel="phone", notification_id=notification_id, provider_ref=sid)
            report = StatusReport("phone", sid, status, time.time(), notification_id, duration)
            statuses.set_status(notification_id, report, settle=False)
            batch.commit()
        batch.send()


def call_sid(notification_id: int) -> str:
    return f"CA{notification_id:032x}"


class Sampler(threading.Thread):
    """Watches the table while the deliveries run: the most dead rows seen, how often a
    vacuum of it was under way; and says how far the run is."""

    def __init__(self, dsn: str, figures: Figures, workers: Sequence[Worker], count: int) -> None:
        super().__init__(name="sampler", daemon=True)
        self.dsn = dsn
        self.figures = figures
        self.workers = workers
        self.count = count
        self.stop = threading.Event()

    def run(self) -> None:
        connection = psycopg2.connect(self.dsn)
        connection.autocommit = True
        started = last = time.monotonic()
        try:
            with connection.cursor() as cursor:
                while not self.stop.wait(SAMPLE_SECONDS):
                    cursor.execute(
                        """
                        SELECT n_dead_tup, autovacuum_count,
                               EXISTS (SELECT FROM pg_stat_progress_vacuum p
                                       WHERE p.relid = s.relid) AS vacuuming
                        FROM pg_stat_user_tables s WHERE relid = 'notification'::regclass
                        """
                    )
                    dead, vacuums, vacuuming = cursor.fetchone() or (0, 0, False)
                    self.figures.samples += 1
                    self.figures.vacuuming += bool(vacuuming)
                    self.figures.peak_dead = max(self.figures.peak_dead, int(dead))
                    if time.monotonic() - last >= PROGRESS_SECONDS:
                        last = time.monotonic()
                        done = sum(worker.delivered for worker in self.workers)
                        purged = (
                            ""
                            if self.figures.retain is None
                            else f", {self.figures.purged:,} purged"
                        )
                        progress(
                            f"{self.figures.name}: {done:,} of {self.count:,} delivered"
                            f" ({last - started:.0f} s){purged}, {dead:,} dead rows,"
                            f" {vacuums} autovacuums"
                        )
        finally:
            connection.close()


class Purger(threading.Thread):
    """The hourly purge, compressed: each time the deliveries have moved on by
    ``1/PURGES_PER_RETENTION`` of ``figures.retain``, ``retention.purge`` deletes the
    processes completed before the last ``retain`` deliveries, with their notifications."""

    def __init__(self, figures: Figures, workers: Sequence[Worker]) -> None:
        super().__init__(name="purger", daemon=True)
        assert figures.retain is not None
        self.figures = figures
        self.retain = figures.retain
        self.workers = workers
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        from escalator.config import load_delivery_config
        from escalator.database import Database
        from escalator.retention import purge

        database = Database(load_delivery_config().database)
        every = max(1, self.retain // PURGES_PER_RETENTION)
        # (when, deliveries done by then), oldest first
        seen: collections.deque[tuple[datetime, int]] = collections.deque()
        last = 0
        try:
            while not self.stop.wait(PURGE_POLL_SECONDS):
                done = sum(worker.delivered for worker in self.workers)
                seen.append((datetime.now(UTC), done))
                if done - last < every:
                    continue
                keep_after = done - self.retain
                while len(seen) > 1 and seen[1][1] <= keep_after:
                    seen.popleft()
                if seen[0][1] > keep_after:
                    continue  # (fewer than ``retain`` delivered yet)
                result = purge(database, timedelta(0), now=seen[0][0])
                self.figures.purged += result.purged.notifications
                self.figures.purges += 1
                last = done
        except BaseException as exc:  # raised again in the main thread
            self.errors.append(exc)
        finally:
            database.discard()


def churn(dsn: str, figures: Figures, count: int, workers: int, callbacks: int) -> None:
    """``count`` deliveries from ``workers`` sessions, each taking the next claim's worth
    until all are inserted, then claiming until nothing is left; with the purge beside
    them (``figures.retain``). Ctrl-C stops them after the claims under way: the figures
    are then partial (``figures.interrupted``)."""
    from escalator.config import load_delivery_config

    config = load_delivery_config()
    team = [Worker(number, config, callbacks) for number in range(workers)]
    ticks = itertools.count()
    lock = threading.Lock()
    errors: list[BaseException] = []
    stop = threading.Event()

    def work(worker: Worker) -> None:
        try:
            while not stop.is_set():
                with lock:
                    tick = next(ticks)
                left = count - tick * BATCH
                if left > 0:
                    worker.ingest(tick, min(BATCH, left))
                execution, ids = worker.claim()
                if not ids and left <= 0:
                    return
                worker.deliver(execution, ids)
        except BaseException as exc:  # raised again in the main thread
            errors.append(exc)
            stop.set()
        finally:
            worker.close()

    sampler = Sampler(dsn, figures, team, count)
    sampler.start()
    purger = None if figures.retain is None else Purger(figures, team)
    if purger is not None:
        purger.start()
    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(worker,)) for worker in team]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():  # (a timeout: Ctrl-C reaches the main thread)
                thread.join(1.0)
                if purger is not None and purger.errors:
                    stop.set()
    except KeyboardInterrupt:
        figures.interrupted = True
        progress(f"{figures.name}: interrupted; the claims under way finish, then a partial report")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for watcher in (sampler, purger):
            if watcher is not None:
                watcher.stop.set()
                watcher.join()
    figures.seconds = time.perf_counter() - started
    if purger is not None:
        errors.extend(purger.errors)
    if errors:
        raise errors[0]
    figures.delivered = sum(worker.delivered for worker in team)
    figures.claims = [timing for worker in team for timing in worker.claims]
    figures.steps = {
        name: sum(worker.steps.get(name, 0.0) for worker in team) for name in _STEP_NAMES
    }


def probe(figures: Figures) -> None:
    """``PROBES`` claims, each of ``BATCH`` fresh due notifications, over what the run left."""
    from escalator.config import load_delivery_config

    worker = Worker(9, load_delivery_config(), callbacks=0)
    try:
        for tick in range(PROBES):
            worker.ingest(tick, BATCH)
        for _ in range(PROBES):
            _, ids = worker.claim()
            assert len(ids) == BATCH, len(ids)
    finally:
        worker.close()
    figures.probes = worker.claims


def measure(dsn: str, figures: Figures) -> None:
    """The table's sizes and statistics, and its rows by state."""
    rows = _query(
        dsn,
        """
        SELECT pg_relation_size(relid), pg_table_size(relid), n_live_tup, n_dead_tup,
               n_tup_upd, n_tup_hot_upd, n_tup_del, autovacuum_count, autoanalyze_count
        FROM pg_stat_user_tables WHERE relid = 'notification'::regclass
        """,
    )
    keys = (
        "heap",
        "table",
        "live",
        "dead",
        "updates",
        "hot",
        "deletes",
        "autovacuums",
        "autoanalyzes",
    )
    figures.table = dict(zip(keys, (int(value) for value in rows[0]), strict=True))
    figures.indexes = {
        str(name): int(size)
        for name, size in _query(
            dsn,
            """
            SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index
            WHERE indrelid = 'notification'::regclass ORDER BY 1
            """,
        )
    }
    figures.states = {
        str(state): int(n)
        for state, n in _query(dsn, "SELECT state, count(*) FROM notification GROUP BY 1")
    }


def check(dsn: str, figures: Figures, callbacks: int) -> None:
    """Every statement did what the functions' would: each delivery recorded (or purged),
    one in ``FAILED_EVERY`` failed, each call with the last status reported, every
    process completed, and the purge kept about ``retain`` deliveries."""
    states = figures.states
    kept = figures.delivered - figures.purged
    assert sum(states.values()) == kept, (states, figures.purged)
    assert set(states) <= {"sent", "failed"}, states
    assert abs(states.get("failed", 0) - kept / FAILED_EVERY) <= BATCH, states
    ((active,),) = _query(dsn, "SELECT count(*) FROM process WHERE state = 'active'")
    assert active == 0, active
    if figures.retain is not None and figures.delivered > 2 * figures.retain:
        # (a process counts as delivered after its callbacks, and goes by when it completed)
        assert 0.9 * figures.retain <= kept <= 1.5 * figures.retain, (kept, figures.retain)
    ((reported,),) = _query(
        dsn, "SELECT count(*) FROM notification WHERE provider_status = %s", (CALL_STATUSES[-1],)
    )
    assert reported == (states.get("sent", 0) if callbacks else 0), reported


def table_options(dsn: str) -> list[str]:
    rows = _query(dsn, "SELECT reloptions FROM pg_class WHERE oid = 'notification'::regclass")
    return list(rows[0][0] or [])


def set_options(dsn: str, options: Sequence[str]) -> None:
    """The table's storage parameters: ``options`` (``name=value``) and no others."""
    for option in options:
        if not _OPTION.fullmatch(option):
            raise SystemExit(f"not a storage parameter: {option!r} (name=number)")
    present = [option.split("=")[0] for option in table_options(dsn)]
    if present:
        _query(dsn, f"ALTER TABLE notification RESET ({', '.join(present)})")
    if options:
        _query(dsn, f"ALTER TABLE notification SET ({', '.join(options)})")


def _query(dsn: str, statement: Any, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """One statement in a session of its own, outside any transaction; its rows."""
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, params or None)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


@dataclass(frozen=True)
class Server:
    """The bench's embedded server: its databases, and where it keeps its data."""

    postgres: Any
    data: Path

    def cpu(self) -> tuple[float, float]:
        """CPU seconds used so far by this process, and by the server (its postmaster and
        every process it started: backends, autovacuum, ...)."""
        import psutil

        postmaster = psutil.Process(int((self.data / "postmaster.pid").read_text().split()[0]))
        used = postmaster.cpu_times()
        server = used.user + used.system + used.children_user + used.children_system
        for child in postmaster.children():
            with contextlib.suppress(psutil.Error):  # (it ended meanwhile: counted above)
                server += sum(child.cpu_times()[:2])
        return time.process_time(), server


@contextmanager
def server(naptime: int) -> Iterator[Server]:
    """An embedded server of the bench's own (it changes server settings), migrated."""
    from devstack.peers.postgres import PostgresServer, embedded_postgres

    with (
        tempfile.TemporaryDirectory(prefix="escalator-bench-") as scratch,
        embedded_postgres(Path(scratch)) as url,
    ):
        _query(url, f"ALTER SYSTEM SET autovacuum_naptime = '{naptime}s'")
        _query(url, "SELECT pg_reload_conf()")
        yield Server(PostgresServer(url), Path(scratch))


def run(
    bench: Server, figures: Figures, options: Sequence[str] | None, arguments: argparse.Namespace
) -> None:
    """One run on a database of its own, into ``figures``: ``options`` for the table
    (``None``: the migration's), then the deliveries, the measurement and the claims at the
    end (not after Ctrl-C: the measurement only)."""
    from escalator import bootstrap

    postgres = bench.postgres
    database = postgres.create_database(template=postgres.template)
    dsn = postgres.dsn(database)
    try:
        # (durability is not measured: the commits do not wait for the disk)
        _query(
            dsn,
            sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(
                sql.Identifier(database)
            ),
        )
        if options is not None:
            set_options(dsn, options)
        figures.options = table_options(dsn)
        name = figures.name
        kept = "no purge" if figures.retain is None else f"the last {figures.retain:,} kept"
        progress(f"{name}: {', '.join(figures.options) or 'no storage parameters'}; {kept}")
        os.environ["DATABASE_URL"] = dsn
        os.environ["CLAIM_BATCH_SIZE"] = str(BATCH)
        bootstrap.reset()
        before = bench.cpu()
        churn(dsn, figures, arguments.count, arguments.workers, arguments.callbacks)
        after = bench.cpu()
        figures.cpu = (after[0] - before[0], after[1] - before[1])
        time.sleep(1.5)  # (the sessions' last statistics reach the server)
        measure(dsn, figures)
        if figures.interrupted:
            return
        check(dsn, figures, arguments.callbacks)
        progress(f"{name}: {figures.delivered:,} delivered in {figures.seconds:.0f} s; probing")
        probe(figures)
    finally:
        postgres.drop_database(database)


def mib(size: int) -> str:
    return f"{size / 1024 / 1024:,.1f} MiB"


def latency(timings: Sequence[float]) -> str:
    if not timings:
        return "-"
    return f"p50 {percentile(timings, 0.5):.1f} ms, p99 {percentile(timings, 0.99):.1f} ms"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=COUNT, help="deliveries per run")
    parser.add_argument("--workers", type=int, default=2, help="sessions delivering at once")
    parser.add_argument(
        "--callbacks",
        type=int,
        default=1,
        choices=range(len(CALL_STATUSES) + 1),
        help="status callbacks for each call (the last ones of a call's four)",
    )
    parser.add_argument(
        "--retain",
        type=int,
        help="deliveries the purge keeps (the retention period's; default: a quarter of --count)",
    )
    parser.add_argument(
        "--no-purge", action="store_true", help="keep every row (no retention, as before it)"
    )
    parser.add_argument("--naptime", type=int, default=1, help="autovacuum_naptime, seconds")
    parser.add_argument(
        "--options",
        help="the second run's storage parameters instead of the migration's"
        " (comma-separated name=value)",
    )
    parser.add_argument(
        "--baseline-options",
        help="the first run's storage parameters instead of PostgreSQL's (none)",
    )
    arguments = parser.parse_args(argv)
    retain = None if arguments.no_purge else (arguments.retain or arguments.count // 4)
    quiet_logs()
    tuned = None if arguments.options is None else arguments.options.split(",")
    baseline = [] if arguments.baseline_options is None else arguments.baseline_options.split(",")
    plan: list[tuple[Figures, list[str] | None]] = [
        (Figures("default", [], retain=retain), baseline),
        (Figures("tuned", [], retain=retain), tuned),
    ]
    runs: list[Figures] = []
    interrupted = False
    try:
        with server(arguments.naptime) as bench:
            for figures, options in plan:
                runs.append(figures)
                run(bench, figures, options, arguments)
                if figures.interrupted:
                    interrupted = True
                    break
    except KeyboardInterrupt:
        interrupted = True
        progress("interrupted: a partial report")
    print_report(runs, arguments.count, retain, interrupted)
    if interrupted:
        raise SystemExit(130)


def print_report(
    runs: Sequence[Figures], count: int, retain: int | None, interrupted: bool
) -> None:
    """The table and the JSON line, of both runs or (stopped early) of those under way."""
    kept = "no purge" if retain is None else f"the purge keeping the last {retain:,}"
    rows = [("machine", f"{os.cpu_count()} cores; {count:,} deliveries a run, {kept}")]
    if interrupted:
        rows.append(("stopped", "interrupted (Ctrl-C): partial figures"))
    rows += [(label, " | ".join(f"{shown(f):>32}" for f in runs)) for label, shown in _ROWS]
    for index in runs[0].indexes if runs else ():
        shown = " | ".join(f"{mib(f.indexes.get(index, 0)):>32}" for f in runs)
        rows.append((f"  {index.removeprefix('notification_')}", shown))
    extra: dict[str, Any] = {
        "count": count,
        "retain": retain,
        "interrupted": interrupted,
        **{figures.name: _summary(figures) for figures in runs},
    }
    complete = len(runs) == 2 and not interrupted
    default, chosen = (runs[0], runs[-1]) if runs else (Figures("none", []), Figures("none", []))
    # The headline: the most dead rows seen while delivering, with the migration's
    # settings against PostgreSQL's; and no more bytes for the rows kept. (At the bench's
    # rate the 1 s nap, not the settings, bounds the tuned run's dead rows: half is what
    # it can show. The claim's latency is in the table: it hardly depends on them, see
    # docs/database.md.)
    report(
        "vacuum",
        rows=rows,
        value=chosen.peak_dead,
        unit="dead rows",
        baseline=default.peak_dead if complete else None,
        target="the migration's settings: at most half the dead rows at their most, and no"
        " more bytes (table and indexes) for each row kept",
        met=complete
        and chosen.peak_dead <= default.peak_dead / 2
        and chosen.bytes_per_row <= default.bytes_per_row,
        extra=extra,
    )


_ROWS: list[tuple[str, Any]] = [
    ("settings", lambda f: ", ".join(f.options) or "(PostgreSQL's)"),
    ("deliveries", lambda f: f"{f.delivered:,} in {f.seconds:.0f} s"),
    ("session time a delivery", lambda f: _steps(f)),
    ("CPU (bench, PostgreSQL)", lambda f: f"{f.cpu[0]:,.0f} s, {f.cpu[1]:,.0f} s"),
    ("purged (runs)", lambda f: f"{f.purged:,} ({f.purges:,})"),
    ("table (heap, all forks)", lambda f: f"{mib(f.heap)}, {mib(f.table.get('table', 0))}"),
    ("indexes", lambda f: mib(f.index_bytes)),
    ("rows kept (estimated live)", lambda f: f"{f.kept:,} ({f.stat('live'):,})"),
    ("bytes a row kept, with indexes", lambda f: f"{f.bytes_per_row:,.0f}"),
    ("dead rows at the end", lambda f: f"{f.stat('dead'):,}"),
    ("dead rows, most seen", lambda f: f"{f.peak_dead:,}"),
    (
        "updates (HOT), deletes",
        lambda f: f"{f.stat('updates'):,} ({f.stat('hot'):,}), {f.stat('deletes'):,}",
    ),
    ("autovacuums (analyzes)", lambda f: f"{f.stat('autovacuums')} ({f.stat('autoanalyzes')})"),
    ("vacuum under way", lambda f: f"{f.vacuuming / max(1, f.samples):.0%} of the run"),
    ("claim while delivering", lambda f: latency(f.claims)),
    ("claim at the end", lambda f: latency(f.probes)),
]


def _steps(figures: Figures) -> str:
    """Microseconds of a session's time for each delivery, by step."""
    each = {
        name: seconds / max(1, figures.delivered) * 1e6 for name, seconds in figures.steps.items()
    }
    return " ".join(f"{name} {each[name]:.0f}" for name in _STEP_NAMES if name in each) + " µs"


_STEP_NAMES = ("insert", "claim", "confirm", "record", "complete", "callbacks")


def _summary(figures: Figures) -> dict[str, Any]:
    return {
        "options": figures.options,
        "delivered": figures.delivered,
        "seconds": round(figures.seconds, 1),
        "cpu_bench_seconds": round(figures.cpu[0], 1),
        "cpu_server_seconds": round(figures.cpu[1], 1),
        **figures.table,
        "indexes": figures.index_bytes,
        "kept": figures.kept,
        "bytes_per_row": round(figures.bytes_per_row),
        "peak_dead": figures.peak_dead,
        "vacuum_share": round(figures.vacuuming / max(1, figures.samples), 3),
        "purged": figures.purged,
        "purges": figures.purges,
        "interrupted": figures.interrupted,
        "claim_p50_ms": _ms(figures.claims, 0.5),
        "claim_p99_ms": _ms(figures.claims, 0.99),
        "end_claim_p50_ms": _ms(figures.probes, 0.5),
        "end_claim_p99_ms": _ms(figures.probes, 0.99),
    }


def _ms(timings: Sequence[float], fraction: float) -> float | None:
    """A percentile of ``timings``, ``None`` when there are none (a run stopped early)."""
    return round(percentile(timings, fraction), 2) if timings else None


if __name__ == "__main__":
    main()
