"""A process completes when its last outcome is recorded, even when the last outcomes of
its notifications are recorded by concurrent transactions (the record steps of one Map)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from devstack.peers.postgres import query
from escalator.config import DatabaseSettings
from escalator.database import Database, UnitOfWork
from tests.support.contract_cases import pubnub, stop
from tests.support.emf import counts_by_series
from tests.support.logs import logged
from tests.support.state import wait_until_ended_or_blocked
from tests.support.steps import Steps, sending, state_of

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


# ---- The last outcome completes its process, once, and as the operator sees it; a stop
# is never turned into a completion (``make mutate`` found these untested:
# docs/mutation.md).


def test_the_last_outcome_completes_the_process_and_a_retry_answers_it_again(
    steps: Steps,
    initiator_env: str,
    capsys: pytest.CaptureFixture[str],
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    now = int(time.time())
    first, last = sending(steps, pubnub("ch-1", at=now), pubnub("ch-2", at=now))
    receipt = {"provider_ref": "17000000000000000"}
    capsys.readouterr()

    # WHEN the two outcomes are recorded, and the last one's record step is retried
    assert steps.record(first, receipt=receipt) == {"notification_id": first, "outcome": "sent"}
    processes_after_first = query(initiator_env, "SELECT state FROM process")
    assert steps.record(last, failure={"Error": "PermanentDeliveryError", "Cause": "no"}) == {
        "notification_id": last,
        "outcome": "failed",
    }
    retried = steps.record(last, receipt=receipt)

    # THEN the first left the process active, the last completed it
    assert processes_after_first == [("active",)]
    assert query(initiator_env, "SELECT state FROM process") == [("completed",)]
    # AND the retry answers what was recorded, changing nothing
    assert retried == {"notification_id": last, "outcome": "failed"}
    assert state_of(initiator_env, last)[0] == "failed"
    # AND the operator sees each outcome once, and which one completed the process
    # (each in its channel's series too: the dashboard's deliveries by channel)
    assert counts_by_series(capsys) == {
        ("NotificationsSent", ()): 1,
        ("NotificationsSent", ("Channel=pubnub",)): 1,
        ("NotificationsFailed", ()): 1,
        ("NotificationsFailed", ("Channel=pubnub",)): 1,
    }
    recorded = [
        (line["notification_id"], line["outcome"], line["process_completed"], line["repeated"])
        for line in log_lines()
        if line["message"] in ("outcome recorded", "outcome recorded before")
    ]
    assert recorded == [
        (first, "sent", False, False),
        (last, "failed", True, False),
        (last, "failed", True, True),
    ]


def test_an_outcome_recorded_after_a_stop_does_not_complete_the_stopped_process(
    steps: Steps, initiator_env: str, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    (notification_id,) = sending(steps, pubnub(at=int(time.time())))
    steps.submit(stop("restaurant-1"))  # what is being sent is left to record its outcome

    steps.record(notification_id, receipt={"provider_ref": "17000000000000000"})

    assert query(initiator_env, "SELECT state FROM process") == [("stopped",)]
    (line,) = logged(log_lines, "outcome recorded")
    assert (line["outcome"], line["process_completed"]) == ("sent", False)
