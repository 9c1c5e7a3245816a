"""Rows put in a state of their lifecycle directly (an insert is not a transition), or
moved there along the lifecycle's own transitions (as PostgreSQL allows), with the columns
each state needs to pass the table's checks."""

from __future__ import annotations

from collections import deque
from typing import Any

import psycopg2
from psycopg2 import sql

from escalator.lifecycle import NOTIFICATION, NotificationState, ProcessState

N = NotificationState
OWNER = "test-execution"
TOKEN = "test-confirm-token"
NOW = sql.SQL("now()")
NULL = sql.SQL("NULL")
LATER = sql.SQL("now() + interval '1 hour'")
# A notification's states that carry a claim (and its lease), and those finished.
_HELD = (N.CLAIMED, N.SENDING)
_RECORDED = (N.SENT, N.FAILED, N.UNKNOWN)
_FINISHED = (*_RECORDED, N.CANCELLED, N.EXPIRED, N.REJECTED)
_HANDED_OVER = (N.SENDING, N.SENT, N.FAILED, N.UNKNOWN)


def notification_columns(
    state: NotificationState, *, owner: str = OWNER, cover: int | None = None
) -> dict[str, sql.Composable]:
    """What a notification in ``state`` holds, as the repository leaves it: a claim and its
    lease while claimed or sending (the owner kept once recorded), its confirm token while
    sending, a provider's reference once sent, a reason when rejected, its cover when
    coalesced (waiting for it: unfinished)."""
    return {
        "state": sql.Literal(state.value),
        "claim_owner": sql.Literal(owner) if state in (*_HELD, *_RECORDED) else NULL,
        "lease_until": LATER if state in _HELD else NULL,
        "confirm_token": sql.Literal(TOKEN) if state == N.SENDING else NULL,
        "sending_at": NOW if state in _HANDED_OVER else NULL,
        "finished_at": NOW if state in _FINISHED else NULL,
        "provider_ref": sql.Literal("provider-ref") if state == N.SENT else NULL,
        "error": sql.Literal("unusable target") if state == N.REJECTED else NULL,
        "covered_by": sql.Literal(cover) if state == N.COALESCED else NULL,
    }


def process_columns(state: ProcessState) -> dict[str, sql.Composable]:
    """What a process in ``state`` holds: an end unless it is active."""
    return {
        "state": sql.Literal(state.value),
        "ended_at": NULL if state == ProcessState.ACTIVE else NOW,
    }


def insert_process(cursor: Any, process_id: str, state: ProcessState = ProcessState.ACTIVE) -> int:
    """A process in ``state``; its id."""
    return _insert(
        cursor, "process", {"process_id": sql.Literal(process_id)}, process_columns(state)
    )


def insert_notification(
    cursor: Any,
    process_ref: int,
    position: int,
    state: NotificationState,
    *,
    channel: str = "console",
    target: str = "label",
    due_at: sql.Composable = NOW,
    owner: str = OWNER,
    cover: int | None = None,
    **overrides: sql.Composable,
) -> int:
    """A notification of ``process_ref`` in ``state`` (``overrides``: other values of its
    columns, as SQL); its id."""
    given: dict[str, sql.Composable] = {
        "process_ref": sql.Literal(process_ref),
        "position": sql.Literal(position),
        "channel": sql.Literal(channel),
        "target": sql.Literal(target),
        "due_at": due_at,
    }
    return _insert(
        cursor,
        "notification",
        given,
        {**notification_columns(state, owner=owner, cover=cover), **overrides},
    )


def set_columns(cursor: Any, table: str, row_id: int, columns: dict[str, sql.Composable]) -> None:
    """``UPDATE table SET columns WHERE id = row_id``."""
    cursor.execute(
        sql.SQL("UPDATE {} SET {} WHERE id = %s").format(
            sql.Identifier(table), _assignments(columns)
        ),
        (row_id,),
    )


def path_to(state: NotificationState) -> list[NotificationState]:
    """The states a pending notification passes on its shortest way to ``state``, the
    first after pending to ``state`` itself."""
    came_from: dict[NotificationState, NotificationState | None] = {N.PENDING: None}
    waiting = deque([N.PENDING])
    allowed = NOTIFICATION.allowed()
    while waiting:
        here = waiting.popleft()
        for source, target in sorted(allowed):
            if source == here and target not in came_from:
                came_from[target] = here
                waiting.append(target)
    if state not in came_from:
        raise ValueError(f"{state} cannot be reached from pending")
    path: list[NotificationState] = []
    step: NotificationState | None = state
    while step is not None and step != N.PENDING:
        path.append(step)
        step = came_from[step]
    return path[::-1]


def bring_to(
    dsn: str, state: NotificationState, where: str, params: tuple[Any, ...] = (), **columns: Any
) -> None:
    """Move the pending notifications matching ``where`` to ``state`` along the
    lifecycle's transitions, with what each state holds (and ``columns``: values of the
    last), in one transaction."""
    connection = psycopg2.connect(dsn)
    try:
        with connection, connection.cursor() as cursor:
            for step in path_to(state):
                values = notification_columns(step)
                if step == state:
                    values.update({name: sql.Literal(value) for name, value in columns.items()})
                cursor.execute(
                    sql.SQL("UPDATE notification SET {} WHERE {}").format(
                        _assignments(values), sql.SQL(where)
                    ),
                    params,
                )
    finally:
        connection.close()


def _assignments(columns: dict[str, sql.Composable]) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(name), value) for name, value in columns.items()
    )


def _insert(
    cursor: Any, table: str, given: dict[str, sql.Composable], state: dict[str, sql.Composable]
) -> int:
    columns = {**given, **state}
    cursor.execute(
        sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(columns.values()),
        )
    )
    row_id: int = cursor.fetchone()[0]
    return row_id
