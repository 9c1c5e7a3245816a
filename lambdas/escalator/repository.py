"""All of Escalator's SQL: processes, notifications and the request log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import execute_values

from escalator.contract import Notification
from escalator.model import RequestMessage, RequestOutcome


@dataclass(frozen=True)
class StoppedProcess:
    """A process a stop request ended, with how many notifications it cancelled."""

    process_ref: int
    cancelled: int


class ProcessRepository:
    """Escalation processes and their notifications."""

    def __init__(self, cursor: Cursor) -> None:
        self._cursor = cursor

    def start(self, process_id: str, notifications: Sequence[Notification]) -> int | None:
        """Create an active process with its pending notifications; ``None`` if one is active."""
        self._cursor.execute(
            """
            INSERT INTO process (process_id) VALUES (%s)
            ON CONFLICT (process_id) WHERE state = 'active' DO NOTHING
            RETURNING id
            """,
            (process_id,),
        )
        row = self._cursor.fetchone()
        if row is None:
            return None
        process_ref: int = row[0]
        execute_values(
            self._cursor,
            "INSERT INTO notification (process_ref, position, channel, target, due_at) VALUES %s",
            [
                (process_ref, position, item.channel, item.target, item.at)
                for position, item in enumerate(notifications)
            ],
            template="(%s, %s, %s, %s, to_timestamp(%s))",
        )
        return process_ref

    def stop(self, process_id: str) -> StoppedProcess | None:
        """Stop the active process and cancel its undelivered notifications; ``None`` if none.

        Notifications already being sent are left to record their outcome.
        """
        self._cursor.execute(
            """
            WITH stopped AS (
                UPDATE process SET state = 'stopped', ended_at = now()
                WHERE process_id = %s AND state = 'active'
                RETURNING id
            ), cancelled AS (
                UPDATE notification AS n
                SET state = 'cancelled', finished_at = now(), updated_at = now(),
                    claim_owner = NULL, lease_until = NULL
                FROM stopped
                WHERE n.process_ref = stopped.id AND n.state IN ('pending', 'claimed')
                RETURNING n.id
            )
            SELECT stopped.id, (SELECT count(*) FROM cancelled) FROM stopped
            """,
            (process_id,),
        )
        row = self._cursor.fetchone()
        return None if row is None else StoppedProcess(process_ref=row[0], cancelled=row[1])


class RequestLog:
    """Every request seen, by SQS message id, with what it did or why it was refused."""

    def __init__(self, cursor: Cursor) -> None:
        self._cursor = cursor

    def seen(self, message_id: str) -> bool:
        """Whether this message was already applied (an SQS redelivery)."""
        self._cursor.execute(
            "SELECT 1 FROM request_log WHERE message_id = %s", (_storable(message_id),)
        )
        return self._cursor.fetchone() is not None

    def record(self, message: RequestMessage, outcome: RequestOutcome) -> bool:
        """Record the outcome; ``False`` if a concurrent delivery recorded this message first."""
        rejected = outcome.kind == "rejected"
        self._cursor.execute(
            """
            INSERT INTO request_log
                (message_id, group_id, process_id, action, outcome, reason, process_ref, body)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (message_id) DO NOTHING
            RETURNING 1
            """,
            (
                _storable(message.message_id),
                _storable(message.group_id),
                outcome.process_id,
                outcome.action,
                outcome.kind,
                outcome.reason,
                outcome.process_ref,
                _storable(message.body) if rejected else None,
            ),
        )
        return self._cursor.fetchone() is not None


def _storable(text: str | None) -> str | None:
    """Text PostgreSQL accepts: NUL characters and lone surrogates escaped, not refused."""
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
