"""The notification table's autovacuum settings (``sql/0012_notification_autovacuum.sql``,
chosen from ``bench/vacuum.py``'s figures: docs/database.md): the migrated table has
them. And what the choice of no fillfactor rests on: with room on its page, a provider's
status callback rewrites its row without new index entries (a HOT update), while a move of
the lifecycle never does, room or not: the state it changes is named by the partial
indexes' predicates, and the lease and the provider's reference are indexed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2.extras import NamedTupleCursor

from devstack.peers.postgres import query
from escalator.model import StatusReport
from escalator.repository import NotificationRepository, ProviderStatusRepository

# What the migration sets, as pg_class.reloptions lists it.
SETTINGS = {"autovacuum_vacuum_scale_factor": "0.01", "autovacuum_vacuum_threshold": "1000"}
OWNER = "arn:aws:states:eu-central-1:123456789012:execution:EscalatorTick:tick-1"
# A few notifications of one process, in one state: the table's first page, mostly empty.
INSERT = """
    WITH p AS (INSERT INTO process (process_id) VALUES ('restaurant-42') RETURNING id)
    INSERT INTO notification
        (process_ref, position, channel, target, recipient, due_at, state, attempts,
         claim_owner, lease_until, sending_at, provider_ref, finished_at)
    SELECT p.id, n, 'phone', '+385911234567', '+385911234567', now(), s.state, 1,
           %s, now() + interval '10 minutes', now(),
           CASE WHEN s.state = 'sent' THEN 'CA' || lpad(n::text, 32, '0') END,
           CASE WHEN s.state = 'sent' THEN now() END
    FROM p, (SELECT %s::text AS state) AS s, generate_series(1, 10) AS n
    RETURNING id
"""


@pytest.fixture
def session(application_url: str) -> Iterator[psycopg2.extensions.connection]:
    """The functions' role's session, rows read by column name as the repositories do."""
    connection = psycopg2.connect(application_url, cursor_factory=NamedTupleCursor)
    try:
        yield connection
    finally:
        connection.close()


def notifications(dsn: str, state: str) -> list[int]:
    """A few notifications in ``state``, on the table's first page: their ids."""
    ids = [int(row[0]) for row in query(dsn, INSERT, (OWNER, state))]
    assert query(dsn, "SELECT DISTINCT (ctid::text::point)[0] FROM notification") == [(0.0,)]
    return ids


def updates_so_far(cursor: psycopg2.extensions.cursor) -> tuple[int, int]:
    """The notification rows this transaction updated, and how many of those updates
    were HOT."""
    cursor.execute(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables"
        " WHERE relid = 'notification'::regclass"
    )
    row = cursor.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def page_of(cursor: psycopg2.extensions.cursor, notification_id: int) -> int:
    """The page of the table holding the notification's current version."""
    cursor.execute(
        "SELECT (ctid::text::point)[0]::int FROM notification WHERE id = %s", (notification_id,)
    )
    row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def test_the_migrated_notification_table_has_the_chosen_autovacuum_settings(
    database_url: str,
) -> None:
    ((options,),) = query(
        database_url, "SELECT reloptions FROM pg_class WHERE oid = 'notification'::regclass"
    )

    assert dict(option.split("=", 1) for option in options or ()) == SETTINGS


def test_a_status_callback_with_room_on_its_page_is_a_hot_update(
    database_url: str, session: psycopg2.extensions.connection
) -> None:
    # GIVEN calls recorded sent, on a page with room
    notification_id, *_ = notifications(database_url, "sent")

    # WHEN the provider reports on one of them (the call is ringing)
    with session, session.cursor() as cursor:
        report = StatusReport(
            "phone", f"CA{notification_id:032d}", "ringing", time.time(), notification_id
        )
        ProviderStatusRepository(cursor).set_status(notification_id, report, settle=False)

        # THEN its row was rewritten on its page, without new index entries: a HOT update
        assert page_of(cursor, notification_id) == 0
        assert updates_so_far(cursor) == (1, 1)


def test_a_move_of_the_lifecycle_is_never_a_hot_update_even_with_room_on_its_page(
    database_url: str, session: psycopg2.extensions.connection
) -> None:
    # GIVEN notifications being sent, on a page with room
    notification_id, *_ = notifications(database_url, "sending")

    # WHEN the outcome of one of them is recorded
    with session, session.cursor() as cursor:
        finished = NotificationRepository(cursor).finish(
            notification_id,
            owner=OWNER,
            state="sent",
            provider_ref=f"CA{notification_id:032d}",
            error=None,
        )
        assert finished is not None

        # THEN its new version went on its page, but with new index entries: not HOT
        assert page_of(cursor, notification_id) == 0
        assert updates_so_far(cursor) == (1, 0)
