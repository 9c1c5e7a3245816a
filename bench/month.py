"""A month of traffic, compressed: what the database holds after a month of the seed's use,
what the hourly purge keeps it at, how the claim fares beside millions of finished rows,
and what the month costs on AWS.

Rows are written as the real code leaves them: a sample of each kind of process (stopped
before its first call, after it, after its SMS, or delivered to the end) goes through the
initiator handler (start and stop requests, request log included) and the repository's
own statements (claim_due, start_sending, finish, a provider's status callback,
complete_finished); their rows are read back, and the month is bulk-written (COPY) with
the same column values (strings of the same length, the same columns NULL), only ids and
times moved. Timestamps are spread over ``--days`` days with the profile's daily shape.

Measured on a real embedded PostgreSQL with the project's migrations:

- bytes per notification: the three tables with their indexes (pg_total_relation_size)
  after the month, divided by the notifications stored; and per day of the full profile,
  so the days until the default disk (db_allocated_storage_gib) is full without retention;
- with retention: ``--after-days`` more days, each followed by ``retention.purge`` at the
  default retention, as the hourly purge leaves it by the end of each day (and a VACUUM,
  as autovacuum would), its rows per second; the size then against the size without
  retention on the same day (the month's size plus the measured bytes per day);
- the claim: p99 of ``NotificationRepository.claim_due`` (200 of ``PENDING`` pending, each
  rolled back) on the empty table, then beside the month's finished rows (topped up to
  ``--finished`` by the same bulk rows);
- the month's AWS bill by component at the list prices of bench/cost.py and
  bench/idle_cost.py, from the profile's counts (ticks, windows, invocations, log bytes)
  and the figures measured here (the initiator's time and log bytes per request, the
  storage the database needs).
"""

from __future__ import annotations

import argparse
import io
import math
import random
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from common import counted_logs, database, percentile, progress, report
from cost import EXPRESS_BASE_MB, EXPRESS_CHUNK_MB, usd
from idle_cost import (
    ALARM_MONTH,
    FREE_TRANSITIONS,
    GP3_GB_MONTH,
    HOURS,
    LAMBDA_GB_SECOND,
    LAMBDA_REQUEST,
    LOG_GB,
    PRICES_DATE,
    RDS_HOURLY,
    SECRET_MONTH,
    SQS_FIFO_REQUEST,
    TRANSITION,
)

# The workload: the seed's use, a restaurant-ordering platform. Each order starts a process
# for its restaurant with three notifications (a call 2 minutes out, an SMS, a repeat
# call); the restaurant accepts most orders within minutes (the order system sends a
# stop, which cancels what is still to come), the rest escalate to the end.
RESTAURANTS = 3_000
ORDERS_PER_RESTAURANT_DAY = 40
# Share of a day's orders in each hour (UTC = local): lunch, and the dinner peak.
HOURLY_WEIGHTS = (
    0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 7, 10, 9, 5, 3, 4, 7, 12, 14, 10, 5, 2, 1,
)  # fmt: skip
# (channel, seconds after the start the notification falls due)
NOTIFICATIONS = (("phone", 120), ("sms", 240), ("phone", 420))
STOPPED_SHARE = 0.9
# A stop arrives this many seconds after its start (uniformly): often before the first
# call, sometimes after it or after the SMS.
STOP_AFTER = (30, 400)
# A delivery is handed to its provider this long after due, recorded this long after.
SENT_AFTER_DUE = 0.5
RECORDED_AFTER_SENT = 1.0
# A call's status callback (completed) arrives after the call, which lasts this long.
CALL_SECONDS = 25
STATUS_AFTER_SENT = 30.0
RESTAURANT_PHONE = "+38591{:07d}"

# What is measured on the claim.
PENDING = 10_000  # pending notifications beside the finished ones (200 of them due)
CLAIM_BATCH = 200
CLAIM_REPEATS = 300
CLAIM_TARGET_RATIO = 1.5
FULL_FINISHED = 10_000_000

# Defaults: a month at 10 % of the profile's volume (1.08 M notifications), then a day
# with the hourly purge (at most DEFAULT_PURGE_SECONDS): about 8 minutes on two cores.
# --scale 1 --finished 10000000 is the whole month and the 10 M finished rows.
DEFAULT_DAYS = 30
DEFAULT_SCALE = 0.1
DEFAULT_AFTER_DAYS = 1
# The purges' time in all: at the default scale they do not finish within it (each
# deleted row's foreign keys are checked by a scan: see docs/performance.md).
DEFAULT_PURGE_SECONDS = 180.0
SAMPLE_PER_KIND = 5
COPY_CHUNK = 200_000

# Usage of the parts this bench does not run, with where each figure comes from.
TICKS_PER_HOUR = 60  # the schedule: one tick a minute (docs/cost.md, 43,800 a month)
IDLE_TICK_TRANSITIONS = 4  # bench/idle_cost.py's idle tick (start and three states)
BUSY_TICK_EXTRA_TRANSITIONS = 3  # docs/cost.md: a busy tick, about three more
WINDOW_SECONDS = 90  # docs/cost.md: a window waits about 90 s at a 60 s schedule
DELIVERY_INVOCATIONS = 3  # docs/cost.md: confirm, notifier, record per delivery
# Per delivered notification, from bench/cost.py's run (docs/cost.md, 2026-11-30): its
# Lambda duration 0.22 and its log lines 1.31 USD per million (JSON 0.52, START/END/REPORT
# 0.54, EMF 0.24, window errors 0.10 less the ticks' 0.01), of which EMF 0.24.
DELIVERY_LAMBDA_USD_PER_MILLION = 0.22
DELIVERY_LOG_USD_PER_MILLION = 1.31
DELIVERY_EMF_USD_PER_MILLION = 0.24
IDLE_TICK_LOG_BYTES = 1_500  # bench/idle_cost.py: ~1.5 KB per idle execution
ACTIVATOR_SECONDS = 0.1  # bench/idle_cost.py: an activator run, ~100 ms
ALARMS = 16  # docs/cost.md: the template's alarms
SECRETS = 4  # docs/cost.md: Secrets Manager, 4 secrets
SQS_REQUESTS_PER_MESSAGE = 3  # send, receive, delete (a batch of one at this rate)
GIB = 2**30
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Kind:
    """A kind of process: how many of its notifications went out before it ended, and
    whether a stop ended it (else it completed)."""

    name: str
    sent: int
    stopped: bool


KINDS = (
    Kind("stopped before its first call", 0, True),
    Kind("stopped after its first call", 1, True),
    Kind("stopped after its SMS", 2, True),
    Kind("delivered", len(NOTIFICATIONS), False),
)


def kind_of(stop_after: float | None) -> Kind:
    if stop_after is None:
        return KINDS[-1]
    sent = sum(1 for _, due in NOTIFICATIONS if due + SENT_AFTER_DUE < stop_after)
    return KINDS[sent]


@dataclass
class Shapes:
    """The rows the real code left for each kind: column -> value, times as given."""

    process: dict[str, dict[str, Any]] = field(default_factory=dict)
    notifications: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


# ---------------------------------------------------------------- the sample, real code


def apply_requests(documents: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply requests through the initiator handler, one to a batch (at this rate the
    event source hands over one message at a time)."""
    from devstack.emulation.events import lambda_context, sqs_event, sqs_record
    from escalator.handlers import initiator

    context = lambda_context()
    records = [sqs_record(document) for document in documents]
    for record in records:
        response: Any = initiator.handler(sqs_event(record), context)
        assert response == {"batchItemFailures": []}, response
    return records


@dataclass
class Sample:
    shapes: Shapes
    handler_seconds_per_request: float
    log_bytes_per_request: float


def run_sample(dsn: str) -> Sample:
    """``SAMPLE_PER_KIND`` processes of each kind through the real code; their rows."""
    from devstack.peers.postgres import query
    from escalator.config import DatabaseSettings
    from escalator.database import Database, UnitOfWork
    from escalator.model import StatusReport

    logs = counted_logs()
    db = Database(DatabaseSettings.from_url(dsn))
    now = int(time.time())
    names: dict[str, Kind] = {}
    starts: list[dict[str, Any]] = []
    for kind in KINDS:
        for _ in range(SAMPLE_PER_KIND):
            process_id = f"restaurant-{len(names):05d}"
            names[process_id] = kind
            phone = RESTAURANT_PHONE.format(len(names))
            starts.append(
                {
                    "process-id": process_id,
                    "action": "start",
                    "notifications": [
                        {
                            "channel": channel,
                            # what goes out is due now, the rest later (cancelled)
                            "at": now if position < kind.sent else now + 3600,
                            "phone-number": phone,
                        }
                        for position, (channel, _) in enumerate(NOTIFICATIONS)
                    ],
                }
            )
    started = time.perf_counter()
    before = logs.bytes
    apply_requests(starts)
    owner = (
        "arn:aws:states:eu-central-1:123456789012:execution:TickStateMachine8A1C2B3D-x9Y8z7W6v5U4:"
    )
    with UnitOfWork(db) as uow:
        claimed = uow.notifications.claim_due(
            owner=owner + str(uuid.uuid4()), lookahead=60, limit=10_000, grace=60
        )
        uow.commit()
    for item in claimed:
        with UnitOfWork(db) as uow:
            entered = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            delivery = uow.notifications.start_sending(
                item.id, owner=item.owner, lease=60, token=f"{entered} {uuid.uuid4()}"
            )
            assert delivery is not None, item
            prefix = "CA" if item.channel == "phone" else "SM"
            finished = uow.notifications.finish(
                item.id,
                owner=item.owner,
                state="sent",
                provider_ref=prefix + uuid.uuid4().hex,
                error=None,
            )
            assert finished is not None
            uow.processes.complete_finished([finished.process_ref])
            uow.commit()
        with UnitOfWork(db) as uow:
            (row,) = query(dsn, "SELECT provider_ref FROM notification WHERE id = %s", (item.id,))
            call = item.channel == "phone"
            uow.provider_statuses.set_status(
                item.id,
                StatusReport(
                    channel=item.channel,
                    provider_ref=str(row[0]),
                    status="completed" if call else "delivered",
                    reported_at=time.time(),
                    notification_id=item.id,
                    duration_seconds=CALL_SECONDS if call else None,
                ),
                settle=False,
            )
            uow.commit()
    stops = [
        {"process-id": process_id, "action": "stop"}
        for process_id, kind in names.items()
        if kind.stopped
    ]
    apply_requests(stops)
    seconds = time.perf_counter() - started
    requests = len(starts) + len(stops)
    shapes = read_shapes(dsn, names)
    return Sample(shapes, seconds / requests, (logs.bytes - before) / requests)


def read_shapes(dsn: str, names: dict[str, Kind]) -> Shapes:
    """One process of each kind as the real code left it, checked against the others."""
    import psycopg2
    from psycopg2.extras import RealDictCursor

    shapes = Shapes()
    connection = psycopg2.connect(dsn)
    with connection.cursor(cursor_factory=RealDictCursor) as cursor:
        for process_id, kind in names.items():
            cursor.execute("SELECT * FROM process WHERE process_id = %s", (process_id,))
            (process,) = cursor.fetchall()
            cursor.execute(
                "SELECT * FROM notification WHERE process_ref = %s ORDER BY position",
                (process["id"],),
            )
            notifications = [dict(row) for row in cursor.fetchall()]
            cursor.execute(
                "SELECT * FROM request_log WHERE process_id = %s ORDER BY received_at",
                (process_id,),
            )
            requests = [dict(row) for row in cursor.fetchall()]
            states = [row["state"] for row in notifications]
            expected = ["sent"] * kind.sent + ["cancelled"] * (len(NOTIFICATIONS) - kind.sent)
            assert states == expected, (kind, states)
            assert process["state"] == ("stopped" if kind.stopped else "completed"), process
            assert len(requests) == (2 if kind.stopped else 1), requests
            if kind.name not in shapes.process:
                shapes.process[kind.name] = dict(process)
                shapes.notifications[kind.name] = notifications
                shapes.requests[kind.name] = requests
    connection.close()
    return shapes


# ---------------------------------------------------------------- the bulk rows


TIMES = {
    "process": ("started_at", "ended_at"),
    "notification": (
        "due_at",
        "lease_until",
        "created_at",
        "updated_at",
        "finished_at",
        "provider_status_at",
        "sending_at",
    ),
    "request_log": ("received_at",),
}
# Strings that differ from row to row (the rest is copied): their last characters are
# replaced by a counter, keeping their length.
VARIED = {"claim_owner", "provider_ref", "confirm_token", "message_id"}


def vary(text: str, counter: int) -> str:
    tail = f"{counter:x}"
    return text[: len(text) - len(tail)] + tail if len(text) >= len(tail) else text


def copy_value(value: Any) -> str:
    """A value as COPY's text format writes it."""
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "t" if value else "f"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


@dataclass
class Counts:
    """What the bulk writer wrote, and what the purge should find."""

    processes: int = 0
    notifications: int = 0
    sent: int = 0
    requests: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class Writer:
    """Writes days of the profile (at ``scale``) as bulk rows shaped like the sample's."""

    def __init__(self, dsn: str, shapes: Shapes, scale: float, seed: int = 28) -> None:
        import psycopg2

        self.connection = psycopg2.connect(dsn)
        self.shapes = shapes
        self.scale = scale
        self.random = random.Random(seed)  # noqa: S311 - a workload, not a secret
        self.counter = 0
        self.columns = {
            "process": list(next(iter(shapes.process.values()))),
            "notification": list(next(iter(shapes.notifications.values()))[0]),
            "request_log": list(next(iter(shapes.requests.values()))[0]),
        }
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT coalesce(max(id), 0) FROM process")
            self.process_id = int((cursor.fetchone() or (0,))[0])
            cursor.execute("SELECT coalesce(max(id), 0) FROM notification")
            self.notification_id = int((cursor.fetchone() or (0,))[0])
        self.connection.commit()

    def close(self) -> None:
        with self.connection.cursor() as cursor:
            for table in ("process", "notification"):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"  # noqa: S608
                    f" (SELECT max(id) FROM {table}))"
                )
        self.connection.commit()
        self.connection.close()

    def starts(self, day: datetime) -> list[datetime]:
        """The day's starts, in order."""
        per_day = RESTAURANTS * ORDERS_PER_RESTAURANT_DAY * self.scale
        total = sum(HOURLY_WEIGHTS)
        moments: list[datetime] = []
        for hour, weight in enumerate(HOURLY_WEIGHTS):
            expected = per_day * weight / total
            count = int(expected) + (self.random.random() < expected - int(expected))
            for _ in range(count):
                moments.append(day + timedelta(hours=hour, seconds=self.random.random() * 3600))
        moments.sort()
        return moments

    def write_day(self, day: datetime, counts: Counts) -> None:
        """One day of history, committed."""
        processes, notifications, requests = io.StringIO(), io.StringIO(), io.StringIO()
        for start in self.starts(day):
            stopped = self.random.random() < STOPPED_SHARE
            stop_after = self.random.uniform(*STOP_AFTER) if stopped else None
            kind = kind_of(stop_after)
            self.process_id += 1
            restaurant = self.random.randrange(RESTAURANTS)
            process_id = f"restaurant-{restaurant:05d}"
            phone = RESTAURANT_PHONE.format(restaurant)
            self.counter += 1
            last = start
            rows: list[dict[str, Any]] = []
            for shape, (_, due_after) in zip(
                self.shapes.notifications[kind.name], NOTIFICATIONS, strict=True
            ):
                self.notification_id += 1
                due = start + timedelta(seconds=due_after)
                row = dict(shape)
                row.update(
                    id=self.notification_id,
                    process_ref=self.process_id,
                    target=phone,
                    recipient=phone if shape["recipient"] is not None else None,
                )
                for name in VARIED:
                    if row.get(name) is not None:
                        row[name] = vary(row[name], self.counter)
                if shape["state"] == "sent":
                    sending = due + timedelta(seconds=SENT_AFTER_DUE)
                    finished = sending + timedelta(seconds=RECORDED_AFTER_SENT)
                    status = sending + timedelta(seconds=STATUS_AFTER_SENT)
                    last = max(last, finished)
                    times = {
                        "due_at": due,
                        "created_at": start,
                        "sending_at": sending,
                        "finished_at": finished,
                        "provider_status_at": status,
                        "updated_at": status if shape["provider_status"] else finished,
                    }
                else:
                    stop = start + timedelta(seconds=stop_after or 0)
                    times = {
                        "due_at": due,
                        "created_at": start,
                        "finished_at": stop,
                        "updated_at": stop,
                    }
                for name in TIMES["notification"]:
                    row[name] = times.get(name) if shape[name] is not None else None
                rows.append(row)
                counts.sent += shape["state"] == "sent"
            ended = start + timedelta(seconds=stop_after) if stop_after else last
            process = dict(self.shapes.process[kind.name])
            process.update(
                id=self.process_id, process_id=process_id, started_at=start, ended_at=ended
            )
            processes.write(self.line("process", process))
            for row in rows:
                notifications.write(self.line("notification", row))
            for index, shape in enumerate(self.shapes.requests[kind.name]):
                request = dict(shape)
                request.update(
                    message_id=str(uuid.UUID(int=self.random.getrandbits(128))),
                    received_at=start if index == 0 else ended,
                    group_id=process_id,
                    process_id=process_id,
                    process_ref=self.process_id,
                )
                requests.write(self.line("request_log", request))
                counts.requests += 1
            counts.processes += 1
            counts.notifications += len(rows)
            counts.by_kind[kind.name] = counts.by_kind.get(kind.name, 0) + 1
        with self.connection.cursor() as cursor:
            for table, buffer in (
                ("process", processes),
                ("notification", notifications),
                ("request_log", requests),
            ):
                buffer.seek(0)
                cursor.copy_expert(
                    f"COPY {table} ({', '.join(self.columns[table])}) FROM STDIN", buffer
                )
        self.connection.commit()

    def line(self, table: str, row: dict[str, Any]) -> str:
        return "\t".join(copy_value(row[name]) for name in self.columns[table]) + "\n"

    def finished_filler(self, count: int, before: datetime) -> None:
        """``count`` more finished notifications (delivered processes' rows, as the month's),
        ended before ``before``, for the claim beside many finished rows."""
        written = 0
        shapes = self.shapes.notifications[KINDS[-1].name]
        while written < count:
            buffer = io.StringIO()
            chunk = min(COPY_CHUNK, count - written)
            processes = io.StringIO()
            for _ in range(0, chunk, len(shapes)):
                self.process_id += 1
                self.counter += 1
                start = before - timedelta(seconds=self.random.random() * 86_400)
                process = dict(self.shapes.process[KINDS[-1].name])
                process.update(
                    id=self.process_id,
                    process_id=f"filler-{self.counter}",
                    started_at=start,
                    ended_at=start + timedelta(seconds=600),
                )
                processes.write(self.line("process", process))
                for shape in shapes:
                    self.notification_id += 1
                    row = dict(shape)
                    row.update(id=self.notification_id, process_ref=self.process_id)
                    for name in VARIED:
                        if row.get(name) is not None:
                            row[name] = vary(row[name], self.counter)
                    for name in TIMES["notification"]:
                        if row[name] is not None:
                            row[name] = start + timedelta(seconds=300)
                    buffer.write(self.line("notification", row))
                    written += 1
            with self.connection.cursor() as cursor:
                processes.seek(0)
                cursor.copy_expert(
                    f"COPY process ({', '.join(self.columns['process'])}) FROM STDIN", processes
                )
                buffer.seek(0)
                cursor.copy_expert(
                    f"COPY notification ({', '.join(self.columns['notification'])}) FROM STDIN",
                    buffer,
                )
            self.connection.commit()
            progress(f"finished rows for the claim: {written:,} of {count:,}")


# ---------------------------------------------------------------- measurements


def execute(
    dsn: str, statement: str, params: tuple[Any, ...] | None = None
) -> list[tuple[Any, ...]]:
    """One statement outside a transaction (VACUUM may not run in one)."""
    import psycopg2

    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return list(cursor.fetchall()) if cursor.description else []
    finally:
        connection.close()


def database_bytes(dsn: str) -> int:
    """The three tables with their indexes (and TOAST)."""
    (row,) = execute(
        dsn,
        "SELECT pg_total_relation_size('process') + pg_total_relation_size('notification')"
        " + pg_total_relation_size('request_log')",
    )
    return int(row[0])


def table_bytes(dsn: str) -> dict[str, int]:
    rows = execute(
        dsn,
        "SELECT relname::text, pg_total_relation_size(oid) FROM pg_class"
        " WHERE relname IN ('process', 'notification', 'request_log') ORDER BY relname",
    )
    return {str(name): int(size) for name, size in rows}


def row_bytes(dsn: str, where: str) -> dict[str, float]:
    """The average bytes of a row's values in each table and state (a notification's with
    its channel, the request log's by outcome), as "table state" (``where``: which
    processes): the sum of its columns' stored sizes (a whole row's size depends on how
    the query forms it)."""
    found: dict[str, float] = {}
    for table, state, join in (
        ("process", "state", "process t"),
        (
            "notification",
            "state || ' ' || t.channel",
            "notification t JOIN process p ON p.id = t.process_ref",
        ),
        ("request_log", "outcome", "request_log t JOIN process p ON p.id = t.process_ref"),
    ):
        columns = execute(
            dsn,
            "SELECT column_name::text FROM information_schema.columns WHERE table_name = %s",
            (table,),
        )
        size = " + ".join(f"coalesce(pg_column_size(t.{name}), 0)" for (name,) in columns)
        alias = "t" if table == "process" else "p"
        rows = execute(
            dsn,
            f"SELECT t.{state}, avg({size}) FROM {join}"  # noqa: S608 - the bench's own text
            f" WHERE {where.format(p=alias)} GROUP BY 1 ORDER BY 1",
        )
        found.update({f"{table} {name}": float(size) for name, size in rows})
    return found


def add_pending(dsn: str) -> None:
    """``PENDING`` pending notifications of one process: ``CLAIM_BATCH`` due now, the rest
    over the next hours (as claim.py fills them)."""
    execute(
        dsn,
        """
        WITH p AS (INSERT INTO process (process_id) VALUES ('bench-pending') RETURNING id)
        INSERT INTO notification (process_ref, position, channel, target, due_at)
        SELECT p.id, n, 'phone', '+385911234567',
               CASE WHEN n < %s THEN now() - interval '1 second'
                    ELSE now() + interval '1 hour' + n * interval '1 second' END
        FROM p, generate_series(0, %s - 1) AS n
        """,
        (CLAIM_BATCH, PENDING),
    )
    execute(dsn, "VACUUM ANALYZE notification")


def claim_p99(dsn: str, repeats: int) -> tuple[float, float]:
    """p99 and median of ``claim_due`` in ms, each claim rolled back (``repeats``)."""
    from escalator.config import DatabaseSettings
    from escalator.database import Database, UnitOfWork

    db = Database(DatabaseSettings.from_url(dsn))
    timings: list[float] = []
    for repeat in range(repeats + 10):
        with UnitOfWork(db) as uow:
            started = time.perf_counter()
            claimed = uow.notifications.claim_due(
                owner=f"bench-{repeat}", lookahead=0, limit=CLAIM_BATCH, grace=60
            )
            elapsed = (time.perf_counter() - started) * 1000
        assert len(claimed) == CLAIM_BATCH, len(claimed)
        if repeat >= 10:  # (the first ones warm the caches)
            timings.append(elapsed)
    db.discard()
    return percentile(timings, 0.99), percentile(timings, 0.5)


@dataclass
class PurgeRun:
    processes: int = 0
    notifications: int = 0
    requests: int = 0
    seconds: float = 0.0
    expected_processes: int = 0
    complete: bool = True

    @property
    def rows(self) -> int:
        return self.processes + self.notifications + self.requests


def purge_day(dsn: str, retention_days: int, now: datetime, run: PurgeRun, budget: float) -> None:
    """The hourly purge's work for a day, at the day's end; then what autovacuum does. The
    purges have ``budget`` seconds in all: a batch still running then is cancelled (its
    transaction rolled back) and the purge counted unfinished."""
    import psycopg2.errors

    from escalator import retention
    from escalator.config import DatabaseSettings
    from escalator.database import Database
    from escalator.errors import DatabaseError

    (expected,) = execute(
        dsn,
        "SELECT count(*) FROM process WHERE state <> 'active' AND ended_at < %s",
        (now - timedelta(days=retention_days),),
    )
    run.expected_processes += int(expected[0])
    left = budget - run.seconds
    if left <= 0:
        run.complete = run.complete and int(expected[0]) == run.processes
        return
    timeout = f"-c statement_timeout={max(1, int(left * 1000))}"
    db = Database(DatabaseSettings.from_url(f"{dsn} options='{timeout}'"))
    done = [retention.Purged()]
    started = time.perf_counter()
    try:
        result = retention.purge(
            db,
            timedelta(days=retention_days),
            now=now,
            time_left=lambda: left - (time.perf_counter() - started),
            progress=done.append,
        )
        complete = result.complete
    except DatabaseError as exc:
        if not isinstance(exc.__cause__, psycopg2.errors.QueryCanceled):
            raise
        complete = False
    run.seconds += time.perf_counter() - started
    db.discard()
    run.complete = run.complete and complete
    run.processes += done[-1].processes
    run.notifications += done[-1].notifications
    run.requests += done[-1].requests
    execute(dsn, "VACUUM process, notification, request_log")


# ---------------------------------------------------------------- the month's bill


def profile_month() -> dict[str, float]:
    """The full profile's month (30 days): requests, notifications sent, busy ticks."""
    per_day = RESTAURANTS * ORDERS_PER_RESTAURANT_DAY
    total = sum(HOURLY_WEIGHTS)
    # Expected sends of a process: each notification goes out unless a stop came first.
    low, high = STOP_AFTER
    sent_per_process = 0.0
    for _, due in NOTIFICATIONS:
        reached = min(1.0, max(0.0, (high - (due + SENT_AFTER_DUE)) / (high - low)))
        sent_per_process += (1 - STOPPED_SHARE) + STOPPED_SHARE * reached
    busy_minutes = 0.0
    for weight in HOURLY_WEIGHTS:
        per_minute = per_day * weight / total / 60 * sent_per_process
        busy_minutes += 60 * (1 - math.exp(-per_minute))
    days = 30
    return {
        "starts": per_day * days,
        "stops": per_day * days * STOPPED_SHARE,
        "notifications": per_day * days * len(NOTIFICATIONS),
        "sent": per_day * days * sent_per_process,
        "busy_ticks": busy_minutes * days,
        "ticks": HOURS * TICKS_PER_HOUR,
    }


def month_bill(
    month: dict[str, float], sample: Sample, database_gib: float, memory_mb: int
) -> dict[str, dict[str, float]]:
    """USD by component and item."""
    from infra.settings import StackSettings

    settings = StackSettings()
    requests = month["starts"] + month["stops"]
    sent, ticks, busy = month["sent"], month["ticks"], month["busy_ticks"]
    transitions = ticks * IDLE_TICK_TRANSITIONS + busy * BUSY_TICK_EXTRA_TRANSITIONS
    window_mb = math.ceil(EXPRESS_BASE_MB / EXPRESS_CHUNK_MB) * EXPRESS_CHUNK_MB
    gb_second = memory_mb / 1024
    platform = _platform_bytes(memory_mb)
    instance = f"db.{settings.db_instance_class}"
    storage_gib = max(settings.db_allocated_storage_gib, math.ceil(database_gib))
    purges = HOURS  # the hourly purge
    return {
        "Step Functions": {
            "Standard transitions (ticks)": max(0.0, transitions - FREE_TRANSITIONS) * TRANSITION,
            "Express requests (windows)": busy * usd("express_request"),
            "Express duration": busy * WINDOW_SECONDS * window_mb / 1024 * usd("express_gb_second"),
        },
        "Lambda": {
            "requests": (requests + sent * DELIVERY_INVOCATIONS + ticks + purges) * LAMBDA_REQUEST,
            "initiator duration (measured)": requests
            * sample.handler_seconds_per_request
            * gb_second
            * LAMBDA_GB_SECOND,
            "delivery duration": sent * DELIVERY_LAMBDA_USD_PER_MILLION / 1e6,
            "activator duration": ticks * ACTIVATOR_SECONDS * gb_second * LAMBDA_GB_SECOND,
        },
        "logs": {
            "initiator lines (measured) and START/END/REPORT": requests
            * (sample.log_bytes_per_request + platform)
            / 1e9
            * LOG_GB,
            "deliveries' lines": sent
            * (DELIVERY_LOG_USD_PER_MILLION - DELIVERY_EMF_USD_PER_MILLION)
            / 1e6,
            "ticks": ticks * IDLE_TICK_LOG_BYTES / 1e9 * LOG_GB,
        },
        "metrics": {
            f"{ALARMS} alarms": ALARMS * ALARM_MONTH,
            "EMF metric lines of the deliveries": sent * DELIVERY_EMF_USD_PER_MILLION / 1e6,
        },
        "database": {
            f"RDS {instance}, {HOURS} h": RDS_HOURLY[instance] * HOURS,
            f"storage {storage_gib} GiB gp3": storage_gib * GP3_GB_MONTH,
        },
        "other": {
            f"SQS FIFO: {SQS_REQUESTS_PER_MESSAGE} requests a message": requests
            * SQS_REQUESTS_PER_MESSAGE
            * SQS_FIFO_REQUEST,
            f"Secrets Manager, {SECRETS} secrets": SECRETS * SECRET_MONTH,
        },
    }


def _platform_bytes(memory_mb: int) -> int:
    from cost import platform_line_bytes

    return platform_line_bytes(memory_mb)


# ---------------------------------------------------------------- the run


def options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="days of history")
    parser.add_argument(
        "--scale", type=float, default=DEFAULT_SCALE, help="share of the profile's volume"
    )
    parser.add_argument(
        "--after-days",
        type=int,
        default=DEFAULT_AFTER_DAYS,
        help="days after the month, each followed by the purge",
    )
    parser.add_argument(
        "--retention-days", type=int, default=None, help="the purge's retention (default: 30)"
    )
    parser.add_argument(
        "--repeats", type=int, default=CLAIM_REPEATS, help="claims timed on each table"
    )
    parser.add_argument(
        "--purge-seconds",
        type=float,
        default=DEFAULT_PURGE_SECONDS,
        help="how long the purges may take in all (the rest is left, and said)",
    )
    parser.add_argument(
        "--finished",
        type=int,
        default=0,
        help=f"finished notifications beside the pending for the claim ({FULL_FINISHED:,}"
        " for the full measure; default: the month's own)",
    )
    return parser.parse_args(argv)


def each_day(first: datetime, days: int) -> Iterator[tuple[int, datetime]]:
    for number in range(days):
        yield number, first + number * DAY


def main(argv: Sequence[str] | None = None) -> None:
    import os

    from escalator import bootstrap
    from escalator.retention import DEFAULT_RETENTION_DAYS
    from infra.settings import StackSettings

    args = options(argv)
    retention_days = args.retention_days or DEFAULT_RETENTION_DAYS
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    disk_gib = StackSettings().db_allocated_storage_gib
    with database() as dsn:
        os.environ["DATABASE_URL"] = dsn
        bootstrap.reset()
        progress(f"sample: {SAMPLE_PER_KIND} processes of each kind through the real code")
        sample = run_sample(dsn)
        real_rows = row_bytes(dsn, "{p}.process_id LIKE 'restaurant-%'")
        add_pending(dsn)
        progress(f"claim on the empty table: {args.repeats} claims of {CLAIM_BATCH}")
        empty_p99, empty_median = claim_p99(dsn, args.repeats)
        empty_bytes = database_bytes(dsn)

        total_days = args.days + args.after_days
        first = (datetime.now(UTC) - timedelta(days=total_days, hours=1)).replace(
            minute=0, second=0, microsecond=0
        )
        writer = Writer(dsn, sample.shapes, args.scale)
        first_bulk = writer.process_id
        counts = Counts()
        write_started = time.perf_counter()
        for number, day in each_day(first, args.days):
            writer.write_day(day, counts)
            if number % 5 == 4 or number == args.days - 1:
                progress(
                    f"day {number + 1}/{args.days}: {counts.notifications:,} notifications,"
                    f" {counts.processes:,} processes, {counts.requests:,} requests"
                )
        write_seconds = time.perf_counter() - write_started
        execute(dsn, "ANALYZE process, notification, request_log")
        month_bytes = database_bytes(dsn) - empty_bytes
        tables = table_bytes(dsn)
        bulk_rows = row_bytes(dsn, f"{{p}}.id > {first_bulk}")
        bytes_per_notification = month_bytes / counts.notifications
        month = profile_month()
        bytes_per_day = bytes_per_notification * month["notifications"] / 30
        days_to_full = (disk_gib * GIB - empty_bytes) / bytes_per_day

        # The days after the month, each ending with the purge.
        purge = PurgeRun()
        after_counts = Counts()
        before_after = database_bytes(dsn)
        for number, day in each_day(first + args.days * DAY, args.after_days):
            writer.write_day(day, after_counts)
            purge_day(dsn, retention_days, day + DAY, purge, args.purge_seconds)
            progress(
                f"day {args.days + number + 1}: purged {purge.processes:,} processes,"
                f" {purge.notifications:,} notifications, {purge.requests:,} requests"
                f" in {purge.seconds:.1f} s"
            )
        with_retention = database_bytes(dsn)
        # Without retention the same day: what was there, and the measured bytes per day
        # of the bench's own volume for each day after.
        without_retention = before_after + args.after_days * month_bytes / args.days
        purge_rate = purge.rows / purge.seconds if purge.seconds else 0.0

        # The claim beside the finished rows left (topped up, if asked).
        (row,) = execute(dsn, "SELECT count(*) FROM notification WHERE finished_at IS NOT NULL")
        finished_rows = int(row[0])
        if args.finished > finished_rows:
            writer.finished_filler(args.finished - finished_rows, first)
            finished_rows = args.finished
        execute(dsn, "VACUUM ANALYZE notification")
        progress(f"claim beside {finished_rows:,} finished: {args.repeats} claims")
        full_p99, full_median = claim_p99(dsn, args.repeats)
        claim_ratio = full_p99 / empty_p99
        writer.close()

    memory_mb = lambda_memory_mb()
    steady_gib = bytes_per_day * retention_days / GIB
    bill = month_bill(month, sample, steady_gib, memory_mb)
    by_component = {name: sum(items.values()) for name, items in bill.items()}
    usd_per_month = sum(by_component.values())
    filler_note = (
        "" if finished_rows >= FULL_FINISHED else f" (scaled: not {FULL_FINISHED:,}; --finished)"
    )
    rows: list[tuple[str, str]] = [
        ("profile", f"{RESTAURANTS:,} restaurants x {ORDERS_PER_RESTAURANT_DAY} orders a day,"
                    f" {len(NOTIFICATIONS)} notifications each,"
                    f" {STOPPED_SHARE:.0%} stopped {STOP_AFTER[0]}-{STOP_AFTER[1]} s in"),
        ("written", f"{args.days} days at scale {args.scale:g}: {counts.processes:,} processes,"
                    f" {counts.notifications:,} notifications ({counts.sent:,} sent),"
                    f" {counts.requests:,} request-log entries in {write_seconds:.0f} s"),
        ("kinds", ", ".join(f"{name} {n:,}" for name, n in counts.by_kind.items())),
        ("row bytes, real code / bulk", ", ".join(
            f"{key} {real_rows[key]:.0f} / {bulk_rows.get(key, 0):.0f}" for key in real_rows)),
        ("tables after the month",
         ", ".join(f"{t} {b / 2**20:,.1f} MiB" for t, b in tables.items())),
        ("bytes per notification", f"{bytes_per_notification:,.0f} (tables + indexes)"),
        ("bytes per day, full profile", f"{bytes_per_day / GIB:,.2f} GiB"),
        (f"days until {disk_gib} GiB is full, no retention", f"{days_to_full:,.1f}"),
        (f"size with {retention_days}-day retention, full profile",
         f"{steady_gib:,.1f} GiB (steady)"),
        (f"after {args.after_days} more days (bench volume)",
         f"with the purge {with_retention / 2**20:,.1f} MiB,"
         f" without {without_retention / 2**20:,.1f} MiB"),
        ("purge", f"{purge.rows:,} rows in {purge.seconds:.1f} s: {purge_rate:,.0f} rows/s"
                  f" ({purge.processes:,} processes of {purge.expected_processes:,} due to go"
                  + ("" if purge.complete else f"; unfinished in {args.purge_seconds:g} s")
                  + ")"),
        ("claim p99, empty table", f"{empty_p99:.2f} ms (median {empty_median:.2f})"),
        (f"claim p99 beside {finished_rows:,} finished{filler_note}",
         f"{full_p99:.2f} ms (median {full_median:.2f}), ratio {claim_ratio:.2f}"),
        (f"USD a month, full profile ({PRICES_DATE})", ""),
        *((f"  {name}", f"{cost:8.2f} USD") for name, cost in by_component.items()),
        *((f"    {name}: {item}", f"{cost:8.2f} USD")
          for name, items in bill.items() for item, cost in items.items()),
        ("  total", f"{usd_per_month:8.2f} USD"),
    ]  # fmt: skip
    report(
        "month",
        rows=rows,
        value=claim_ratio,
        unit="claim p99 ratio (finished rows / empty)",
        baseline=1.0,
        target=f"claim p99 beside the finished rows <= {CLAIM_TARGET_RATIO} x on the empty table",
        met=claim_ratio <= CLAIM_TARGET_RATIO,
        extra={
            "days": args.days,
            "scale": args.scale,
            "retention_days": retention_days,
            "processes": counts.processes,
            "notifications": counts.notifications,
            "sent": counts.sent,
            "requests": counts.requests,
            "month_bytes": month_bytes,
            "bytes_per_notification": round(bytes_per_notification, 1),
            "bytes_per_day_full_profile": round(bytes_per_day),
            "disk_gib": disk_gib,
            "days_to_full_without_retention": round(days_to_full, 2),
            "steady_gib_with_retention": round(steady_gib, 2),
            "after_days": args.after_days,
            "bytes_with_retention": with_retention,
            "bytes_without_retention": round(without_retention),
            "purged_processes": purge.processes,
            "purgeable_processes": purge.expected_processes,
            "purged_rows": purge.rows,
            "purge_complete": purge.complete,
            "purge_seconds": round(purge.seconds, 1),
            "purge_rows_per_second": round(purge_rate),
            "claim_p99_empty_ms": round(empty_p99, 3),
            "claim_p99_finished_ms": round(full_p99, 3),
            "claim_finished_rows": finished_rows,
            "claim_p99_ratio_10m_finished": round(claim_ratio, 3),
            "claim_full_10m": finished_rows >= FULL_FINISHED,
            "usd_by_component": {name: round(cost, 2) for name, cost in by_component.items()},
            "usd_per_month": round(usd_per_month, 2),
            "real_row_bytes": {t: round(b, 1) for t, b in real_rows.items()},
            "bulk_row_bytes": {t: round(b, 1) for t, b in bulk_rows.items()},
        },
    )


def lambda_memory_mb() -> int:
    """The functions' memory, as the template gives it."""
    from infra.functions import MEMORY_MB

    return MEMORY_MB


if __name__ == "__main__":
    main()
