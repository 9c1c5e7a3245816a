"""The claim and confirm steps' rules, each on its own: overlapping claims take disjoint
rows without waiting for each other, confirm checks the process itself, and each of the
two expiry paths (at the claim, at the confirm) expires on its own, by one rule."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from devstack.peers.postgres import query
from devstack.polling import wait_until
from escalator.config import DatabaseSettings
from escalator.database import Database, UnitOfWork
from escalator.handlers import activator, confirm
from tests.support.contract_cases import PHONE, phone, pubnub, start
from tests.support.emf import counts, counts_by_series
from tests.support.logs import logged
from tests.support.state import waiting_for_a_lock
from tests.support.steps import (
    CALLER_IDS,
    EXECUTION,
    EXPIRE_AFTER,
    PAST_THE_EXPIRY_LIMIT,
    Steps,
    claimed_ids,
    make_late,
    state_of,
    store_registry,
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


# ---- What the claim decides, as an operator sees it: how much it claims and whether
# more is due, how far ahead it looks, its housekeeping (lapsed claims taken back, lapsed
# sends unknown, processes left with nothing completed) and its counts (``make mutate``
# found these untested: docs/mutation.md).


def rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def test_a_claim_lists_what_it_claimed_oldest_first(
    steps: Steps, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    now = int(time.time())
    steps.submit(start("restaurant-1", pubnub("ch-1", at=now + 2), pubnub("ch-2", at=now)))

    assert claimed_ids(steps.claim()) == [2, 1]
    assert claim_report(log_lines) == {
        "claimed": 2,
        "more": False,
        "released": 0,
        "unknown": 0,
        "expired": 0,
        "completed": 0,
    }


def claim(steps: Steps, *, period: int | None = None, execution: str = EXECUTION) -> Any:
    event = {"execution": execution, "input": {} if period is None else {"period_seconds": period}}
    return activator.handler(event, steps.context)


def test_a_claim_of_a_full_batch_says_more_is_due_and_the_next_claim_takes_the_rest(
    steps: Steps, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN batches of two, and three notifications due
    monkeypatch.setenv("CLAIM_BATCH_SIZE", "2")
    now = int(time.time())
    steps.submit(start("restaurant-1", *[pubnub(f"ch-{n}", at=now + n) for n in range(3)]))
    capsys.readouterr()

    # WHEN the activator claims, then a fresh execution claims
    first = steps.claim()
    after_first = counts(capsys)
    second = steps.claim(execution=EXECUTION + "-next")

    # THEN the first claimed the oldest two and says more is due; the next took the rest
    assert (claimed_ids(first), first["more"], first["claimed"]) == ([1, 2], True, 2)
    assert first["notifications"][0] == {
        "id": 1,
        "channel": "pubnub",
        "due": rfc3339(now),
        "owner": EXECUTION,
    }
    assert (claimed_ids(second), second["more"], second["claimed"]) == ([3], False, 1)
    # AND the first tick (it hands over to a fresh one) is counted, the second is not
    assert (after_first, counts(capsys)) == (Counter({"TicksHandedOver": 1}), Counter())


def test_a_full_batch_with_nothing_left_due_says_no_more(
    steps: Steps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAIM_BATCH_SIZE", "2")
    now = int(time.time())
    steps.submit(start("restaurant-1", pubnub("ch-1", at=now), pubnub("ch-2", at=now + 3600)))
    steps.submit(start("restaurant-2", pubnub("ch-3", at=now)))

    answer = steps.claim()

    assert (claimed_ids(answer), answer["more"]) == ([1, 3], False)


def test_a_tick_claims_two_schedule_periods_ahead(
    steps: Steps, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a lookahead of 60 s by default, and notifications due in 2, 15 and 30 s
    monkeypatch.setenv("LOOKAHEAD_SECONDS", "60")
    now = int(time.time())
    steps.submit(
        start(
            "restaurant-1",
            pubnub("ch-1", at=now + 2),
            pubnub("ch-2", at=now + 15),
            pubnub("ch-3", at=now + 30),
        )
    )

    # WHEN a schedule of 10 s claims, and then one that names no period
    short = claimed_ids(claim(steps, period=10))
    default = claimed_ids(claim(steps, execution=EXECUTION + "-next"))

    # THEN the first took what falls due within two of its periods (the next tick may
    # come almost two periods later), the second the rest
    assert (short, default) == ([1, 2], [3])


def test_the_claim_counts_what_it_expired_and_completes_a_process_left_with_nothing(
    steps: Steps,
    initiator_env: str,
    capsys: pytest.CaptureFixture[str],
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    # GIVEN a process whose only notification became too late while pending
    steps.submit(start("restaurant-1", pubnub(at=int(time.time()))))
    make_late(initiator_env, PAST_THE_EXPIRY_LIMIT)
    capsys.readouterr()

    # WHEN the activator claims
    assert claimed_ids(steps.claim()) == []

    # THEN the notification expired, its process completed, and the metric counts it
    assert state_of(initiator_env, 1)[0] == "expired"
    assert query(initiator_env, "SELECT state FROM process") == [("completed",)]
    assert counts(capsys) == Counter({"NotificationsExpired": 1})
    assert claim_report(log_lines) == {
        "claimed": 0,
        "more": False,
        "released": 0,
        "unknown": 0,
        "expired": 1,
        "completed": 1,
    }


def claim_report(log_lines: Callable[[], list[dict[str, Any]]]) -> dict[str, Any]:
    """What the last claim said it did."""
    *_, line = logged(log_lines, "notifications claimed")
    keys = ("claimed", "more", "released", "unknown", "expired", "completed")
    return {key: line[key] for key in keys}


def test_the_claim_takes_back_lapsed_claims_and_makes_lapsed_sends_unknown(
    steps: Steps,
    initiator_env: str,
    capsys: pytest.CaptureFixture[str],
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    # GIVEN a claim whose lease lapsed, and a send whose lease lapsed (its process's last)
    now = int(time.time())
    steps.submit(start("restaurant-1", pubnub("ch-1", at=now)))
    steps.submit(start("restaurant-2", pubnub("ch-2", at=now)))
    claimed, sent = claimed_ids(steps.claim())
    assert steps.confirm(sent)["deliver"] is True
    query(initiator_env, "UPDATE notification SET lease_until = now() - interval '1 second'")
    capsys.readouterr()

    # WHEN the next execution claims
    answer = steps.claim(execution=EXECUTION + "-next")

    # THEN it took the lapsed claim back and claimed it, and the send became unknown
    assert claimed_ids(answer) == [claimed]
    assert state_of(initiator_env, sent) == (
        "unknown",
        None,
        "no outcome was recorded before the sending lease ran out",
    )
    assert query(initiator_env, "SELECT process_id, state FROM process ORDER BY id") == [
        ("restaurant-1", "active"),
        ("restaurant-2", "completed"),
    ]
    assert counts(capsys) == Counter({"NotificationsUnknown": 1})
    assert claim_report(log_lines) == {
        "claimed": 1,
        "more": False,
        "released": 1,
        "unknown": 1,
        "expired": 0,
        "completed": 1,
    }


# ---- What the confirm decides, as an operator sees it: the caller id a call is placed
# from, or its failure without one; how long it waits for the due second; why it does not
# deliver; the metric and log line of each decision (``make mutate`` found these
# untested: docs/mutation.md).


def test_a_call_is_confirmed_with_the_caller_id_of_the_longest_prefix_of_its_number(
    steps: Steps, database_url: str
) -> None:
    # GIVEN a registry that replaced an earlier one, and a call due now
    store_registry(database_url, {"default": "+10000000000"})
    store_registry(database_url, CALLER_IDS)
    at = int(time.time())
    steps.submit(start("restaurant-1", phone(PHONE, at=at)))
    (notification_id,) = claimed_ids(steps.claim())

    answer = steps.confirm(notification_id)

    assert answer == {
        "deliver": True,
        "delivery": {
            "notification_id": notification_id,
            "process_id": "restaurant-1",
            "channel": "phone",
            "target": PHONE,
            "due_at": at,
            "caller_id": "+38591000000",
            "owner": EXECUTION,
        },
    }
    assert state_of(database_url, notification_id)[0] == "sending"


@pytest.mark.parametrize("others", [0, 1])
def test_a_call_with_no_caller_id_fails_and_completes_its_process_if_it_was_the_last(
    steps: Steps,
    database_url: str,
    others: int,
    capsys: pytest.CaptureFixture[str],
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    # GIVEN a call to place and no caller-id registry (and maybe a later PubNub message)
    now = int(time.time())
    later = [pubnub(at=now + 3600)] * others
    steps.submit(start("restaurant-1", phone(PHONE, at=now), *later))
    (notification_id,) = claimed_ids(steps.claim())
    capsys.readouterr()

    # WHEN the confirm step runs
    answer = steps.confirm(notification_id)

    # THEN the call is not placed: it failed with the reason, counted and logged
    reason = "no caller id: there is no caller-id-registry property"
    assert answer == {"deliver": False, "reason": reason}
    assert state_of(database_url, notification_id) == ("failed", None, reason)
    assert counts_by_series(capsys) == {
        ("NotificationsFailed", ()): 1,
        ("NotificationsFailed", ("Channel=phone",)): 1,
    }
    (line,) = logged(log_lines, "delivery failed")
    assert (line["notification_id"], line["reason"]) == (notification_id, reason)
    # AND its process completed when nothing else was left to deliver
    process = query(database_url, "SELECT state FROM process")
    assert process == [("active",) if others else ("completed",)]


def test_a_confirm_that_expires_counts_it_and_says_so(
    steps: Steps,
    initiator_env: str,
    capsys: pytest.CaptureFixture[str],
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    steps.submit(start("restaurant-1", pubnub(at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())
    make_late(initiator_env, PAST_THE_EXPIRY_LIMIT)
    capsys.readouterr()

    steps.confirm(notification_id)

    assert counts(capsys)["NotificationsExpired"] == 1
    (line,) = logged(log_lines, "notification expired")
    assert (line["notification_id"], line["outcome"]) == (notification_id, "expired")
    assert line["execution"] == EXECUTION


def test_a_skipped_confirm_says_why_and_counts_nothing(
    steps: Steps,
    initiator_env: str,
    capsys: pytest.CaptureFixture[str],
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    steps.submit(start("restaurant-1", pubnub(at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())
    query(initiator_env, "UPDATE process SET state = 'stopped', ended_at = now()")
    capsys.readouterr()

    steps.confirm(notification_id)

    assert counts(capsys) == Counter()
    (line,) = logged(log_lines, "delivery skipped")
    assert (line["notification_id"], line["reason"]) == (notification_id, "process is stopped")
    assert "process_id" not in line


def confirm_at(steps: Steps, notification_id: int, **event: Any) -> dict[str, Any]:
    answer: dict[str, Any] = confirm.handler(
        {"notification_id": notification_id, "execution": EXECUTION, **event}, steps.context
    )
    return answer


def test_a_confirm_before_the_due_second_waits_for_it(steps: Steps) -> None:
    # GIVEN a notification due at the start of the next second, half a second or more away
    wait_until(lambda: time.time() % 1 < 0.5, timeout=2, interval=0.01)
    due = int(time.time()) + 1
    steps.submit(start("restaurant-1", pubnub(at=due)))
    (notification_id,) = claimed_ids(steps.claim())

    # WHEN the confirm step runs before that second
    answer = confirm_at(steps, notification_id, due=rfc3339(due))

    # THEN it answers only once the notification is due
    assert answer["deliver"] is True
    assert time.time() >= due


def test_a_confirm_waits_at_most_its_maximum(steps: Steps, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIRM_MAX_WAIT_SECONDS", "0.5")
    due = int(time.time()) + 30
    steps.submit(start("restaurant-1", pubnub(at=due)))
    (notification_id,) = claimed_ids(steps.claim())

    started = time.monotonic()
    assert confirm_at(steps, notification_id, due=rfc3339(due))["deliver"] is True

    assert 0.5 <= time.monotonic() - started < 2.5


def test_a_confirm_never_waits_for_a_due_time_gone_by(steps: Steps) -> None:
    # GIVEN the longest wait (5 s by default), and a notification due five seconds ago
    due = int(time.time()) - 5
    steps.submit(start("restaurant-1", pubnub(at=due)))
    (notification_id,) = claimed_ids(steps.claim())

    started = time.monotonic()
    assert confirm_at(steps, notification_id, due=rfc3339(due))["deliver"] is True

    assert time.monotonic() - started < 2.5


def test_a_confirm_says_why_it_will_not_deliver(steps: Steps, initiator_env: str) -> None:
    now = int(time.time())
    steps.submit(start("restaurant-1", pubnub(at=now)))
    (notification_id,) = claimed_ids(steps.claim())

    nobodys = confirm_at(steps, 999)
    others = confirm_at(steps, notification_id, execution=EXECUTION + "-other")

    assert nobodys == {"deliver": False, "reason": "no such notification"}
    assert others == {"deliver": False, "reason": "claimed by another execution"}
