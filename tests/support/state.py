"""Read what the database holds, in a form two runs can be compared by."""

from __future__ import annotations

import threading
from typing import Any

from devstack.peers.postgres import query
from devstack.polling import wait_until


def processes(dsn: str) -> list[tuple[Any, ...]]:
    """(process_id, generation, state): generation 1 is the first process of that id."""
    return query(
        dsn,
        """
        SELECT process_id, row_number() OVER (PARTITION BY process_id ORDER BY id), state
        FROM process ORDER BY process_id, id
        """,
    )


def notifications(dsn: str) -> list[tuple[Any, ...]]:
    """(process_id, generation, position, channel, target, due epoch, state)."""
    return query(
        dsn,
        """
        WITH p AS (
            SELECT id, process_id,
                   row_number() OVER (PARTITION BY process_id ORDER BY id) AS generation
            FROM process
        )
        SELECT p.process_id, p.generation, n.position, n.channel, n.target,
               extract(epoch FROM n.due_at)::bigint, n.state
        FROM notification n JOIN p ON p.id = n.process_ref
        ORDER BY p.process_id, p.generation, n.position
        """,
    )


def requests(dsn: str) -> list[tuple[Any, ...]]:
    """(message_id, outcome, process_id, action, reason) of every recorded request."""
    return query(
        dsn,
        "SELECT message_id, outcome, process_id, action, reason FROM request_log ORDER BY 1",
    )


def snapshot(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "processes": processes(dsn),
        "notifications": notifications(dsn),
        "requests": requests(dsn),
    }


def waiting_for_a_lock(dsn: str) -> bool:
    """Whether a session of this database waits for a lock (another's transaction)."""
    rows = query(
        dsn,
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    return int(rows[0][0]) > 0


def wait_until_ended_or_blocked(thread: threading.Thread, dsn: str, *, what: str) -> None:
    """Wait until ``thread`` has ended or a session of this database waits for a lock
    (the thread's transaction, blocked by the caller's)."""
    wait_until(
        lambda: not thread.is_alive() or waiting_for_a_lock(dsn),
        timeout=10,
        interval=0.01,
        what=what,
    )
