"""A process completes when its last outcome is recorded, even when the last outcomes of
its notifications are recorded by concurrent transactions (the record steps of one Map)."""

from __future__ import annotations

import threading

from devstack.peers.postgres import query
from escalator.config import DatabaseSettings
from escalator.database import Database, UnitOfWork
from tests.support.state import wait_until_ended_or_blocked

OWNER = "execution-1"


def sending_process(dsn: str) -> tuple[int, int, int]:
    """A process whose two notifications are both being sent by ``OWNER``."""
    ((process_ref,),) = query(
        dsn, "INSERT INTO process (process_id) VALUES ('restaurant-42') RETURNING id"
    )
    rows = query(
        dsn,
        """
        INSERT INTO notification
            (process_ref, position, channel, target, due_at, state, claim_owner, lease_until)
        SELECT %s, position, 'console', 'label', now(), 'sending', %s, now() + interval '1 hour'
        FROM generate_series(0, 1) AS position
        RETURNING id
        """,
        (process_ref, OWNER),
    )
    return process_ref, rows[0][0], rows[1][0]


def test_two_last_outcomes_recorded_concurrently_complete_the_process(database_url: str) -> None:
    process_ref, first, second = sending_process(database_url)
    settings = DatabaseSettings(dsn=database_url)
    recorded, go = threading.Event(), threading.Event()
    completed_by_second: list[int] = []

    def record_second() -> None:
        with UnitOfWork(Database(settings)) as uow:
            uow.notifications.finish(
                second, owner=OWNER, state="sent", provider_ref="ref-2", error=None
            )
            recorded.set()
            go.wait(10)
            completed_by_second.append(len(uow.processes.complete_finished([process_ref])))
            uow.commit()

    # GIVEN both outcomes written, each in its own open transaction
    with UnitOfWork(Database(settings)) as uow:
        uow.notifications.finish(first, owner=OWNER, state="sent", provider_ref="ref-1", error=None)
        other = threading.Thread(target=record_second)
        other.start()
        assert recorded.wait(10)

        # WHEN both look for what is left, the second while the first has not committed
        completed_by_first = len(uow.processes.complete_finished([process_ref]))
        go.set()
        wait_until_ended_or_blocked(
            other, database_url, what="the second transaction ending or waiting for the first"
        )
        uow.commit()
    other.join(10)

    # THEN exactly one of them completed the process
    assert completed_by_first + sum(completed_by_second) == 1
    assert query(database_url, "SELECT state FROM process") == [("completed",)]
