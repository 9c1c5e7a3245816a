"""Retention: what finished longer ago than the retention period is deleted in small
batches, as the purge's own role; nothing active, nothing still owed, and no request-log
entry a redriven request could still need (tests/integration/test_redrive.py redrives
one); a dry run deletes nothing; a purge never waits on, or holds up, a claim."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from devstack.peers.postgres import query
from escalator.config import DatabaseSettings
from escalator.database import Database, UnitOfWork
from escalator.lifecycle import NotificationState, ProcessState
from escalator.retention import REQUEST_LOG_HORIZON, Purged, purge, purgeable, statistics
from escalator_cli.main import main
from tests.support.lifecycle import insert_notification, insert_process

N = NotificationState
P = ProcessState
DAYS_30 = timedelta(days=30)


def aged(days: float) -> sql.Composable:
    return sql.SQL("now() - {} * interval '1 day'").format(sql.Literal(days))


class Rows:
    """Rows written as the repository leaves them, then aged (``ended`` days ago)."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.count = 0

    def process(self, state: ProcessState, ended: float, *notifications: NotificationState) -> int:
        self.count += 1
        ref = insert_process(self.cursor, f"restaurant-{self.count}", state)
        for position, notification in enumerate(notifications):
            insert_notification(self.cursor, ref, position, notification)
        self.age(ref, ended)
        return ref

    def age(self, ref: int, days: float) -> None:
        self.cursor.execute(
            sql.SQL(
                "UPDATE process SET started_at = {then},"
                " ended_at = CASE WHEN state = 'active' THEN NULL ELSE {then} END WHERE id = %s"
            ).format(then=aged(days)),
            (ref,),
        )

    def request(self, message_id: str, days: float, process_ref: int | None = None) -> None:
        self.cursor.execute(
            sql.SQL(
                "INSERT INTO request_log (message_id, received_at, process_id, action, outcome,"
                " process_ref) VALUES (%s, {then}, 'restaurant', 'start', 'started', %s)"
            ).format(then=aged(days)),
            (message_id, process_ref),
        )


@pytest.fixture
def rows(database_url: str) -> Iterator[Rows]:
    with closing(psycopg2.connect(database_url)) as connection, connection.cursor() as cursor:
        yield Rows(cursor)
        connection.commit()


def database(url: str) -> Database:
    return Database(DatabaseSettings.from_url(url))


def processes(dsn: str) -> list[str]:
    return [row[0] for row in query(dsn, "SELECT process_id FROM process ORDER BY id")]


def requests(dsn: str) -> list[str]:
    return [row[0] for row in query(dsn, "SELECT message_id FROM request_log ORDER BY 1")]


def a_month_of_rows(rows: Rows) -> dict[str, int]:
    """Processes of every kind, old and new; request-log entries around the horizon."""
    refs = {
        "old completed": rows.process(P.COMPLETED, 40, N.SENT, N.FAILED, N.EXPIRED),
        "old stopped": rows.process(P.STOPPED, 31, N.SENT, N.CANCELLED, N.REJECTED),
        "old unknown": rows.process(P.COMPLETED, 45, N.UNKNOWN),
        "recent completed": rows.process(P.COMPLETED, 29, N.SENT),
        "old active": rows.process(P.ACTIVE, 40, N.SENT, N.PENDING),
        # a stopped process whose call was being placed when the stop came: still owed
        "old stopped, sending": rows.process(P.STOPPED, 40, N.CANCELLED, N.SENDING),
    }
    rows.request("old", 40, refs["old completed"])
    rows.request("inside the horizon", REQUEST_LOG_HORIZON.days - 1, refs["old stopped"])
    rows.request("recent", 1)
    return refs


def test_a_purge_deletes_what_finished_before_the_retention_period_and_nothing_else(
    rows: Rows, database_url: str, purger_url: str
) -> None:
    # GIVEN processes of every kind, some ended more than 30 days ago
    a_month_of_rows(rows)
    rows.cursor.connection.commit()

    # WHEN the purge's role purges what is older than 30 days
    result = purge(database(purger_url), DAYS_30)

    # THEN the processes that ended before and owe nothing went, with their notifications
    assert result.purged == Purged(processes=3, notifications=7, requests=1)
    assert result.complete
    assert processes(database_url) == [
        "restaurant-4",  # ended 29 days ago
        "restaurant-5",  # active, however old
        "restaurant-6",  # stopped, but its call is still being placed
    ]
    assert query(database_url, "SELECT count(*) FROM notification") == [(5,)]
    # AND the request log went only where it is older than both the period and the horizon,
    # its entry for a purged process kept (without the reference)
    assert requests(database_url) == ["inside the horizon", "recent"]
    assert query(
        database_url, "SELECT process_ref FROM request_log WHERE message_id = 'inside the horizon'"
    ) == [(None,)]


def test_a_process_holding_a_notification_that_waits_for_its_cover_stays(
    rows: Rows, database_url: str, purger_url: str
) -> None:
    # GIVEN an old process whose call was coalesced into another process's call still
    # being placed (it waits for that outcome), and an old process that covered a
    # notification of a recent one
    cover_process = rows.process(P.ACTIVE, 40)
    cover = insert_notification(rows.cursor, cover_process, 0, N.SENDING)
    waiting = rows.process(P.COMPLETED, 40)
    insert_notification(rows.cursor, waiting, 0, N.COALESCED, cover=cover)
    old_cover_process = rows.process(P.COMPLETED, 40)
    old_cover = insert_notification(rows.cursor, old_cover_process, 0, N.SENT)
    recent = rows.process(P.COMPLETED, 1)
    insert_notification(
        rows.cursor, recent, 0, N.COALESCED, cover=old_cover,
        finished_at=sql.SQL("now()"), error=sql.Literal("covered by notification 3"),
    )  # fmt: skip
    rows.cursor.connection.commit()

    # WHEN everything finished is purged, however recent
    result = purge(database(purger_url), timedelta(0))

    # THEN the waiting one stays (it is owed), the old cover went, and the notification it
    # covered keeps its reason, without the reference
    assert result.purged.processes == 2
    assert processes(database_url) == ["restaurant-1", "restaurant-2"]
    assert query(
        database_url, "SELECT state, covered_by, error FROM notification WHERE process_ref = %s",
        (waiting,),
    ) == [("coalesced", cover, None)]  # fmt: skip
    assert query(database_url, "SELECT count(*) FROM process WHERE id = %s", (recent,)) == [(0,)]


def test_a_dry_run_counts_what_the_purge_then_deletes_and_deletes_nothing(
    rows: Rows, database_url: str, purger_url: str
) -> None:
    a_month_of_rows(rows)
    rows.cursor.connection.commit()
    before = query(database_url, "SELECT count(*) FROM notification")

    would = purgeable(database(purger_url), DAYS_30)

    assert query(database_url, "SELECT count(*) FROM notification") == before
    assert len(processes(database_url)) == 6
    assert would.purged == purge(database(purger_url), DAYS_30).purged


def test_small_batches_delete_everything_and_report_each(
    rows: Rows, database_url: str, purger_url: str
) -> None:
    for _ in range(5):
        rows.process(P.COMPLETED, 40, N.SENT, N.SENT)
    rows.cursor.connection.commit()
    seen: list[Purged] = []

    result = purge(database(purger_url), DAYS_30, batch=2, progress=seen.append)

    assert [report.processes for report in seen] == [2, 4, 5]
    assert result.purged == Purged(processes=5, notifications=10, requests=0)
    assert processes(database_url) == []


def test_a_purge_out_of_time_stops_between_batches_and_says_so(
    rows: Rows, database_url: str, purger_url: str
) -> None:
    for _ in range(5):
        rows.process(P.COMPLETED, 40, N.SENT)
    rows.cursor.connection.commit()
    budget = iter([100.0, 0.0])

    result = purge(database(purger_url), DAYS_30, batch=2, time_left=lambda: next(budget))

    assert (result.complete, result.stopped) == (False, "its time ran out")
    assert result.purged.processes == 2
    assert len(processes(database_url)) == 3


@pytest.mark.parametrize("first", ["claim", "purge"])
def test_a_purge_never_waits_for_a_claim_and_a_claim_never_waits_for_a_purge(
    rows: Rows, database_url: str, application_url: str, purger_url: str, first: str
) -> None:
    # GIVEN an old finished process, and an active one with a notification due
    rows.process(P.COMPLETED, 40, N.SENT)
    active = rows.process(P.ACTIVE, 0)
    insert_notification(rows.cursor, active, 0, N.PENDING, due_at=sql.SQL("now()"))
    rows.cursor.connection.commit()
    # WHEN a tick's claim (the activator's statement, as the application role) and a purge
    # batch each hold their transaction open while the other runs; neither may wait
    # longer than 200 ms for a lock (a wait fails the statement)
    with UnitOfWork(database(application_url)) as tick, UnitOfWork(database(purger_url)) as purge:
        tick.retention.limit_lock_waits(200)
        purge.retention.limit_lock_waits(200)

        def claim() -> list[int]:
            claimed = tick.notifications.claim_due(owner="tick", lookahead=60, limit=10, grace=60)
            return [notification.id for notification in claimed]

        def purge_batch() -> tuple[int, int]:
            return purge.retention.purge_finished(before=_now_minus(DAYS_30), limit=10)

        if first == "claim":
            claimed, purged = claim(), purge_batch()
        else:
            purged, claimed = purge_batch(), claim()
        # (and the tick goes on: a new process of the purged one's id starts)
        tick.processes.start("restaurant-1", [])
        tick.commit()
        purge.commit()

    # THEN each did its work
    assert len(claimed) == 1
    assert purged == (1, 1)
    assert processes(database_url) == ["restaurant-2", "restaurant-1"]


def test_a_notification_a_callback_holds_stops_the_purge_for_now_not_for_good(
    rows: Rows, database_url: str, purger_url: str
) -> None:
    # GIVEN an old finished process whose call a provider's callback is recording
    held = rows.process(P.COMPLETED, 40, N.SENT)
    rows.cursor.connection.commit()
    with closing(psycopg2.connect(database_url)) as callback:
        callback.cursor().execute(
            "UPDATE notification SET provider_status = 'completed' WHERE process_ref = %s",
            (held,),
        )

        # WHEN the purge comes to it, it waits a moment and stops, deleting nothing
        result = purge(database(purger_url), DAYS_30)
        assert (result.complete, result.stopped) == (False, "a row stayed held")
        assert processes(database_url) == ["restaurant-1"]
        callback.commit()

    # THEN the next purge deletes it
    assert purge(database(purger_url), DAYS_30).purged.processes == 1
    assert processes(database_url) == []


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO process (process_id) VALUES ('x')",
        "UPDATE notification SET state = 'pending'",
        "UPDATE property SET property_value = 'x'",
        "SELECT * FROM schema_migration",
        "CREATE TABLE intruder (id int)",
    ],
)
def test_the_purges_role_deletes_and_does_nothing_else(purger_url: str, statement: str) -> None:
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        query(purger_url, statement)


def test_the_operator_purges_by_hand_with_a_dry_run_first(
    rows: Rows, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    a_month_of_rows(rows)
    rows.cursor.connection.commit()

    # a dry run says what would go and deletes nothing
    assert (
        main(["db", "purge", "--older-than", "30d", "--dry-run", "--database-url", database_url])
        == 0
    )
    said = capsys.readouterr().out
    assert "would delete 3 processes, 7 notifications, 1 request-log entries" in said
    assert len(processes(database_url)) == 6

    # then it deletes, with 0s everything finished, the request log kept for its horizon
    assert main(["db", "purge", "--older-than", "0s", "--database-url", database_url]) == 0
    said = capsys.readouterr().out
    assert "deleted 4 processes, 8 notifications, 1 request-log entries" in said
    assert f"the request log is kept {REQUEST_LOG_HORIZON.days} days" in said
    assert processes(database_url) == ["restaurant-5", "restaurant-6"]
    assert requests(database_url) == ["inside the horizon", "recent"]


@pytest.mark.parametrize("duration", ["30", "d", "-1d", "1.5d", "30 days", "1w"])
def test_a_duration_that_is_not_one_is_refused_in_one_line(
    duration: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_status:
        main(["db", "purge", f"--older-than={duration}", "--database-url", database_url])
    assert exit_status.value.code == 2
    assert "is not a duration" in capsys.readouterr().err


def test_stats_show_sizes_rows_by_state_and_the_oldest_row(
    rows: Rows, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    a_month_of_rows(rows)
    rows.cursor.connection.commit()
    query(database_url, "ANALYZE")

    found = statistics(database(database_url))

    tables = {table["table"]: table for table in found["tables"]}
    assert sorted(tables) == ["notification", "process", "request_log"]
    assert tables["notification"]["estimated_rows"] == 12
    assert all(table["table_bytes"] > 0 and table["index_bytes"] > 0 for table in tables.values())
    by_state = {(row["table"], row["state"]): row["rows"] for row in found["rows"]}
    assert by_state[("process", "completed")] == 3
    assert by_state[("notification", "sent")] == 4
    assert by_state[("request_log", "started")] == 3
    oldest = {row["table"]: row["oldest"] for row in found["rows"] if row["state"] == "completed"}
    assert oldest["process"] < _now_minus(timedelta(days=44))

    assert main(["db", "stats", "--database-url", database_url]) == 0
    printed = capsys.readouterr().out
    assert "notification" in printed
    assert "completed" in printed


def _now_minus(period: timedelta) -> datetime:
    return datetime.now(UTC) - period


@pytest.mark.parametrize(
    "lookup",
    [
        # what PostgreSQL runs for each row the purge deletes (ON DELETE SET NULL, and the
        # check that no notification still belongs to a deleted process)
        "SELECT 1 FROM request_log WHERE process_ref = 1",
        "SELECT 1 FROM notification WHERE covered_by = 1",
        "SELECT 1 FROM notification WHERE process_ref = 1",
    ],
)
def test_each_reference_to_a_deleted_row_is_found_by_an_index(
    database_url: str, lookup: str
) -> None:
    # (without one, each deleted row scans the whole table: a month's purge took hours)
    with closing(psycopg2.connect(database_url)) as connection, connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(f"EXPLAIN {lookup}")
        plan = " ".join(row[0] for row in cursor.fetchall())
    assert "Index" in plan, plan
    assert "Seq Scan" not in plan, plan
