"""The claim and confirm steps' rules, each on its own: overlapping claims take disjoint
rows without waiting for each other, confirm checks the process itself, and each of the
two expiry paths (at the claim, at the confirm) expires on its own, by one rule."""

from __future__ import annotations

import threading
import time

from devstack.peers.postgres import query
from devstack.polling import wait_until
from escalator.config import DatabaseSettings
from escalator.database import Database, UnitOfWork
from tests.support.contract_cases import pubnub, start
from tests.support.state import waiting_for_a_lock
from tests.support.steps import (
    EXECUTION,
    EXPIRE_AFTER,
    PAST_THE_EXPIRY_LIMIT,
    Steps,
    claimed_ids,
    make_late,
    state_of,
)

OTHER = EXECUTION + "-other"


def test_overlapping_claims_take_disjoint_rows_without_waiting_for_each_other(
    steps: Steps, initiator_env: str
) -> None:
    # GIVEN six notifications due, and a claim of four holding its rows (not committed)
    now = int(time.time())
    steps.submit(start("restaurant-1", *[pubnub(f"ch-{n}", at=now) for n in range(6)]))
    settings = DatabaseSettings(dsn=initiator_env)
    with UnitOfWork(Database(settings)) as first:
        held = first.notifications.claim_due(owner=EXECUTION, lookahead=60, limit=4, grace=60)
        assert len(held) == 4

        # WHEN another execution claims at the same time
        other: list[list[int]] = []

        def claim_other() -> None:
            with UnitOfWork(Database(settings)) as uow:
                claimed = uow.notifications.claim_due(owner=OTHER, lookahead=60, limit=4, grace=60)
                uow.commit()
            other.append([item.id for item in claimed])

        thread = threading.Thread(target=claim_other)
        thread.start()
        wait_until(
            lambda: other or waiting_for_a_lock(initiator_env),
            timeout=10,
            interval=0.01,
            what="the second claim to end or to wait for the first",
        )

        # THEN it did not wait for the first: it took the two rows the first does not hold
        assert other, "the second claim waits for the first one's rows"
        assert sorted(other[0]) == sorted(set(range(1, 7)) - {item.id for item in held}), other
        first.commit()
    thread.join(10)

    # AND in the database each row has exactly one owner: four the first's, two the other's
    owners = query(
        initiator_env,
        "SELECT claim_owner, count(*) FROM notification WHERE state = 'claimed'"
        " GROUP BY claim_owner ORDER BY claim_owner",
    )
    assert owners == [(EXECUTION, 4), (OTHER, 2)]


def test_a_claim_never_takes_rows_another_execution_holds(steps: Steps, initiator_env: str) -> None:
    now = int(time.time())
    steps.submit(start("restaurant-1", *[pubnub(f"ch-{n}", at=now) for n in range(3)]))
    first = claimed_ids(steps.claim())

    second = claimed_ids(steps.claim(execution=OTHER))

    assert (len(first), second) == (3, [])
    owners = query(initiator_env, "SELECT DISTINCT claim_owner FROM notification")
    assert owners == [(EXECUTION,)]


def test_confirm_never_delivers_for_a_process_that_is_not_active(
    steps: Steps, initiator_env: str
) -> None:
    # GIVEN a claimed notification whose process has ended without cancelling it (the
    # process check is confirm's own, not only the stop's cancellation)
    steps.submit(start("restaurant-1", pubnub(at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())
    query(initiator_env, "UPDATE process SET state = 'stopped', ended_at = now()")
    assert state_of(initiator_env, notification_id)[0] == "claimed"

    # WHEN the confirm step runs
    answer = steps.confirm(notification_id)

    # THEN nothing is delivered
    assert answer == {"deliver": False, "reason": "process is stopped"}
    assert state_of(initiator_env, notification_id)[0] == "claimed"


def test_the_claim_expires_what_is_too_late_by_itself(steps: Steps, initiator_env: str) -> None:
    # GIVEN a pending notification that became later than the confirm step would deliver
    steps.submit(start("restaurant-1", pubnub("late", at=int(time.time())), pubnub("fine")))
    query(
        initiator_env,
        "UPDATE notification SET due_at = now() - make_interval(secs => %s) WHERE id = 1",
        (PAST_THE_EXPIRY_LIMIT,),
    )
    query(initiator_env, "UPDATE notification SET due_at = now() WHERE id = 2")

    # WHEN the activator claims
    claimed = claimed_ids(steps.claim())

    # THEN the late one expired there, unclaimed; the other was claimed
    assert claimed == [2]
    assert state_of(initiator_env, 1)[0] == "expired"
    assert state_of(initiator_env, 1)[2] == f"more than {EXPIRE_AFTER} seconds late"


def test_the_claim_leaves_to_the_confirm_step_what_it_would_still_deliver(
    steps: Steps, initiator_env: str
) -> None:
    # GIVEN a pending notification far past the lateness limit (900 s), yet a little
    # earlier than the confirm step expires one: say, one accepted at that limit, whose own
    # window did not start, that waited up to two periods for the next tick
    steps.submit(start("restaurant-1", pubnub(at=int(time.time()))))
    make_late(initiator_env, EXPIRE_AFTER - 10)

    # WHEN the activator claims, and the confirm step runs
    claimed = claimed_ids(steps.claim())
    answer = steps.confirm(1)

    # THEN one rule holds for both: claimed, not expired, and delivered
    assert claimed == [1], state_of(initiator_env, 1)
    assert answer["deliver"] is True
    assert state_of(initiator_env, 1)[:1] == ("sending",)


def test_the_confirm_still_delivers_what_was_accepted_at_the_limit_of_lateness(
    steps: Steps, initiator_env: str
) -> None:
    # GIVEN a notification claimed in time, a little more than 900 s late at its confirm
    steps.submit(start("restaurant-1", pubnub(at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())
    query(initiator_env, "UPDATE notification SET due_at = now() - interval '905 seconds'")

    # WHEN the confirm step runs
    answer = steps.confirm(notification_id)

    # THEN it is delivered: accepted, then expired would be a notification never tried
    assert answer["deliver"] is True
    assert state_of(initiator_env, notification_id)[:1] == ("sending",)


def test_the_confirm_expires_what_became_too_late_after_its_claim(
    steps: Steps, initiator_env: str
) -> None:
    # GIVEN a notification claimed in time, which became too late before its confirm
    steps.submit(start("restaurant-1", pubnub(at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())
    make_late(initiator_env, PAST_THE_EXPIRY_LIMIT)

    # WHEN the confirm step runs
    answer = steps.confirm(notification_id)

    # THEN it expired there, undelivered
    assert answer == {"deliver": False, "reason": "too late: expired"}
    assert state_of(initiator_env, notification_id)[:1] == ("expired",)
