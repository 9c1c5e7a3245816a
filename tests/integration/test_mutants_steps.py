"""What the claim, confirm and record steps decide, as an operator sees it: how much is
claimed and whether more is due, the caller id a call is placed from, when a process
completes, and the metric and log line of each decision. Each step is called through
its handler, on a real PostgreSQL. Written for mutants that survived ``make mutate``
(docs/mutation.md)."""

from __future__ import annotations

import json
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
from escalator.service import store_caller_id_registry
from tests.support.contract_cases import PHONE, phone, pubnub, start, stop
from tests.support.steps import (
    ENTERED,
    EXECUTION,
    PAST_THE_EXPIRY_LIMIT,
    Steps,
    claimed_ids,
    make_late,
    state_of,
)

REGISTRY = {"default": "+12025550123", "+385": "+38512345678", "+38591": "+38591000000"}


def emitted(capsys: pytest.CaptureFixture[str]) -> Counter[str]:
    """The counters the handlers wrote since the last look (embedded metric format)."""
    return Counter(
        {name: count for (name, dimensions), count in series(capsys).items() if not dimensions}
    )


def series(capsys: pytest.CaptureFixture[str]) -> Counter[tuple[str, tuple[str, ...]]]:
    """The counters the handlers wrote since the last look, by series: the metric and its
    dimensions other than ``service`` (``("Channel=phone",)``), as CloudWatch stores them."""
    counts: Counter[tuple[str, tuple[str, ...]]] = Counter()
    for line in capsys.readouterr().out.splitlines():
        if '"_aws"' not in line:
            continue
        document = json.loads(line)
        for definition in document["_aws"]["CloudWatchMetrics"]:
            for dimension_set in definition["Dimensions"]:
                assert "service" in dimension_set  # the series the alarms watch
                others = tuple(
                    f"{key}={document[key]}" for key in dimension_set if key != "service"
                )
                for metric in definition["Metrics"]:
                    if metric["Unit"] == "Count":
                        values = document[metric["Name"]]
                        total = sum(values) if isinstance(values, list) else values
                        counts[(metric["Name"], others)] += total
    return counts


def messages(log_lines: Callable[[], list[dict[str, Any]]], text: str) -> list[dict[str, Any]]:
    return [line for line in log_lines() if line["message"] == text]


def store_registry(database_url: str, registry: dict[str, str]) -> None:
    """As the migration stores it (administrator: the functions' role may only read it)."""
    database = Database(DatabaseSettings(dsn=database_url))
    try:
        store_caller_id_registry(UnitOfWork(database), json.dumps(registry))
    finally:
        database.discard()


# The claim


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
    after_first = emitted(capsys)
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
    assert (after_first, emitted(capsys)) == (Counter({"TicksHandedOver": 1}), Counter())


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
    assert emitted(capsys) == Counter({"NotificationsExpired": 1})
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
    *_, line = messages(log_lines, "notifications claimed")
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
    assert emitted(capsys) == Counter({"NotificationsUnknown": 1})
    assert claim_report(log_lines) == {
        "claimed": 1,
        "more": False,
        "released": 1,
        "unknown": 1,
        "expired": 0,
        "completed": 1,
    }


# The confirm


def test_a_call_is_confirmed_with_the_caller_id_of_the_longest_prefix_of_its_number(
    steps: Steps, database_url: str
) -> None:
    # GIVEN a registry that replaced an earlier one, and a call due now
    store_registry(database_url, {"default": "+10000000000"})
    store_registry(database_url, REGISTRY)
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
        },
    }
    assert state_of(database_url, notification_id)[0] == "sending"


def test_a_retried_confirm_of_a_call_answers_the_same_caller_id(
    steps: Steps, database_url: str, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    store_registry(database_url, REGISTRY)
    steps.submit(start("restaurant-1", phone("+38512345678", at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())
    first = steps.confirm(notification_id, entered=ENTERED)

    retried = steps.confirm(notification_id, retry_count=1, entered=ENTERED)

    assert retried == first
    assert retried["delivery"]["caller_id"] == "+38512345678"
    (line,) = messages(log_lines, "delivery resumed: a retry after a lost answer")
    assert (line["notification_id"], line["outcome"]) == (notification_id, "resumed")
    assert line["process_id"] == "restaurant-1"


def test_a_retried_confirm_of_a_message_is_logged_as_resumed(
    steps: Steps, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    steps.submit(start("restaurant-1", pubnub(at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())
    first = steps.confirm(notification_id, entered=ENTERED)

    assert steps.confirm(notification_id, retry_count=1, entered=ENTERED) == first
    (line,) = messages(log_lines, "delivery resumed: a retry after a lost answer")
    assert (line["notification_id"], line["outcome"]) == (notification_id, "resumed")


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
    assert series(capsys) == {
        ("NotificationsFailed", ()): 1,
        ("NotificationsFailed", ("Channel=phone",)): 1,
    }
    (line,) = messages(log_lines, "delivery failed")
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

    assert emitted(capsys)["NotificationsExpired"] == 1
    (line,) = messages(log_lines, "notification expired")
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

    assert emitted(capsys) == Counter()
    (line,) = messages(log_lines, "delivery skipped")
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


def test_a_retried_confirm_that_never_moved_its_notification_says_why(
    steps: Steps, initiator_env: str, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    # GIVEN a claimed notification whose process ended before its first confirm committed
    steps.submit(start("restaurant-1", pubnub(at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())
    query(initiator_env, "UPDATE process SET state = 'stopped', ended_at = now()")

    # WHEN Step Functions retries the confirm
    answer = steps.confirm(notification_id, retry_count=1, entered=ENTERED)

    # THEN it delivers nothing, and says why
    assert answer == {"deliver": False, "reason": "process is stopped"}
    (line,) = messages(log_lines, "delivery skipped")
    assert (line["outcome"], line["reason"]) == ("skipped", "process is stopped")


# The record


def sending(steps: Steps, *notifications: dict[str, Any]) -> list[int]:
    """Start one process with these notifications, claim them, confirm each."""
    steps.submit(start("restaurant-1", *notifications))
    ids = claimed_ids(steps.claim())
    for notification_id in ids:
        assert steps.confirm(notification_id)["deliver"] is True
    return ids


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
    assert series(capsys) == {
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
    (line,) = messages(log_lines, "outcome recorded")
    assert (line["outcome"], line["process_completed"]) == ("sent", False)


def test_an_unknown_outcome_is_counted_and_a_stale_one_changes_nothing(
    steps: Steps, initiator_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (notification_id,) = sending(steps, pubnub(at=int(time.time())))
    capsys.readouterr()

    unknown = {"Error": "AmbiguousDeliveryError", "Cause": "no answer"}
    assert steps.record(notification_id, unknown=unknown)["outcome"] == "unknown"
    stale_answer = steps.record(
        notification_id, execution=EXECUTION + "-other", receipt={"provider_ref": "x"}
    )

    assert series(capsys) == {
        ("NotificationsUnknown", ()): 1,
        ("NotificationsUnknown", ("Channel=pubnub",)): 1,
    }
    assert stale_answer == {"notification_id": notification_id, "outcome": "stale"}
    assert state_of(initiator_env, notification_id) == (
        "unknown",
        None,
        "AmbiguousDeliveryError: no answer",
    )
