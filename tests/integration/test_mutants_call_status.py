"""The call-status recorder's rules, each on its own, through its handler on a real
PostgreSQL (``test_call_status.py`` and ``test_callback_binding.py`` show them through
the whole pipeline): a callback settles only its own call, a final status is never
replaced, an unknown outcome becomes sent once the call is reported. Written for
mutants that ``make mutate`` found untested (docs/mutation.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from devstack.peers.postgres import query
from escalator.handlers import record_call_status
from tests.support.contract_cases import PHONE, phone, pubnub, start
from tests.support.steps import Steps, claimed_ids

REGISTRY = {"default": "+12025550123"}
SID = "CA0123456789abcdef0123456789abcdef"
OTHER_SID = "CAfedcba9876543210fedcba9876543210"
REPORTED_AT = 1_800_000_000.0


def report(
    steps: Steps,
    status: str,
    *,
    notification_id: int | None,
    sid: str = SID,
    duration: int | None = None,
    channel: str = "phone",
) -> dict[str, Any]:
    """What the recorder answers to the receiver's report of one callback."""
    event = {
        "channel": channel,
        "provider_ref": sid,
        "status": status,
        "reported_at": REPORTED_AT,
        "notification_id": notification_id,
        "duration_seconds": duration,
    }
    answer: dict[str, Any] = record_call_status.handler(event, steps.context)
    return answer


def row(dsn: str, notification_id: int) -> tuple[Any, ...]:
    """(state, provider_ref, provider_status, reported epoch, duration, error)"""
    ((found),) = query(
        dsn,
        "SELECT state, provider_ref, provider_status,"
        " extract(epoch FROM provider_status_at)::bigint, call_duration_seconds, error"
        " FROM notification WHERE id = %s",
        (notification_id,),
    )
    return tuple(found)


def calling(steps: Steps, database_url: str, channel: str = "phone") -> int:
    """A call (or a text message) being placed: claimed and confirmed, no outcome yet."""
    query(
        database_url,
        "INSERT INTO property (property_key, property_value) VALUES ('caller-id-registry', %s)",
        (json.dumps(REGISTRY),),
    )
    steps.submit(start("restaurant-1", phone(PHONE, at=int(time.time()), channel=channel)))
    (notification_id,) = claimed_ids(steps.claim())
    assert steps.confirm(notification_id)["deliver"] is True
    return notification_id


def metrics(capsys: pytest.CaptureFixture[str]) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for line in capsys.readouterr().out.splitlines():
        if '"_aws"' in line:
            document = json.loads(line)
            for name, value in document.items():
                if name.startswith(("Calls", "Messages")):
                    found.setdefault(name, []).extend(value if isinstance(value, list) else [value])
    return found


def test_a_callback_naming_a_call_being_placed_binds_it_and_records_its_status(
    steps: Steps,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    notification_id = calling(steps, database_url)
    capsys.readouterr()

    answer = report(steps, "ringing", notification_id=notification_id)

    assert answer == {
        "outcome": "recorded",
        "notification_id": notification_id,
        "provider_status": "ringing",
    }
    assert row(database_url, notification_id) == (
        "sending",
        SID,
        "ringing",
        REPORTED_AT,
        None,
        None,
    )
    assert metrics(capsys) == {}  # not final: no call metric
    (line,) = [line for line in log_lines() if line["message"] == "provider status recorded"]
    assert (line["level"], line["provider_ref"], line["recorded_status"]) == (
        "INFO",
        SID,
        "ringing",
    )


def test_a_final_status_is_recorded_with_its_duration_counted_and_never_replaced(
    steps: Steps, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    notification_id = calling(steps, database_url)
    steps.record(notification_id, receipt={"provider_ref": SID})
    capsys.readouterr()

    # WHEN the call is reported answered and over, then (late, out of order) ringing
    completed = report(steps, "completed", notification_id=None, duration=42)
    replayed = report(steps, "ringing", notification_id=notification_id)

    # THEN the final status stays, found by the call's SID alone
    assert completed == {
        "outcome": "recorded",
        "notification_id": notification_id,
        "provider_status": "completed",
    }
    assert replayed == {
        "outcome": "superseded",
        "notification_id": notification_id,
        "provider_status": "completed",
    }
    assert row(database_url, notification_id) == ("sent", SID, "completed", REPORTED_AT, 42, None)
    # AND the call is counted once, as answered
    assert metrics(capsys) == {"CallsCompleted": [1.0], "CallsUnansweredPercent": [0.0]}


def test_an_unanswered_call_is_counted_as_unanswered(
    steps: Steps, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    notification_id = calling(steps, database_url)
    capsys.readouterr()

    report(steps, "no-answer", notification_id=notification_id, duration=0)
    report(steps, "completed", notification_id=notification_id, duration=5)  # too late

    assert metrics(capsys) == {"CallsNoAnswer": [1.0], "CallsUnansweredPercent": [100.0]}
    assert row(database_url, notification_id)[2:5] == ("no-answer", REPORTED_AT, 0)


def test_an_undelivered_text_message_is_recorded_and_counted_as_failed(
    steps: Steps, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    notification_id = calling(steps, database_url, channel="sms")
    capsys.readouterr()

    report(steps, "sent", notification_id=notification_id, channel="sms")
    report(steps, "undelivered", notification_id=notification_id, channel="sms")
    report(steps, "delivered", notification_id=notification_id, channel="sms")  # too late

    assert metrics(capsys) == {"MessagesUndelivered": [1.0], "MessagesUndeliveredPercent": [100.0]}
    assert row(database_url, notification_id)[1:3] == (SID, "undelivered")


def test_a_status_without_a_duration_keeps_the_one_on_record(
    steps: Steps, database_url: str
) -> None:
    notification_id = calling(steps, database_url)
    report(steps, "in-progress", notification_id=notification_id, duration=3)

    report(steps, "completed", notification_id=notification_id)

    assert row(database_url, notification_id)[2:5] == ("completed", REPORTED_AT, 3)


def test_a_callback_settles_a_call_whose_outcome_is_unknown(
    steps: Steps, database_url: str
) -> None:
    # GIVEN a call whose notifier's answer never came: recorded unknown, without a SID
    notification_id = calling(steps, database_url)
    steps.record(notification_id, unknown={"Error": "AmbiguousDeliveryError", "Cause": "?"})
    assert row(database_url, notification_id)[:2] == ("unknown", None)

    answer = report(steps, "completed", notification_id=notification_id, duration=7)

    assert answer["outcome"] == "settled"
    assert row(database_url, notification_id) == ("sent", SID, "completed", REPORTED_AT, 7, None)


def test_a_callback_of_another_call_changes_nothing_and_is_logged(
    steps: Steps, database_url: str, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    # GIVEN a notification bound to its call
    notification_id = calling(steps, database_url)
    steps.record(notification_id, receipt={"provider_ref": SID})
    before = row(database_url, notification_id)

    # WHEN a callback of another call names it
    answer = report(steps, "completed", notification_id=notification_id, sid=OTHER_SID)

    # THEN it is not recorded there, and the operator learns of it
    assert answer == {
        "outcome": "unknown-delivery",
        "notification_id": notification_id,
        "provider_status": None,
    }
    assert row(database_url, notification_id) == before
    (line,) = [
        line for line in log_lines() if line["message"] == "provider status unknown delivery"
    ]
    assert (line["level"], line["provider_ref"], line["provider_status"]) == (
        "WARNING",
        OTHER_SID,
        "completed",
    )


@pytest.mark.parametrize("outcome", ["failed", "never attempted", "not a call"])
def test_a_notification_without_a_call_is_never_touched_by_a_callback(
    steps: Steps, database_url: str, outcome: str
) -> None:
    if outcome == "not a call":
        steps.submit(start("restaurant-1", pubnub(at=int(time.time()))))
        notification_id = 1
    elif outcome == "never attempted":
        steps.submit(start("restaurant-1", phone(PHONE, at=int(time.time()) + 3600)))
        notification_id = 1
    else:
        notification_id = calling(steps, database_url)
        steps.record(notification_id, failure={"Error": "PermanentDeliveryError", "Cause": "x"})
    before = row(database_url, notification_id)

    answer = report(steps, "completed", notification_id=notification_id)

    assert answer == {
        "outcome": "unknown-delivery",
        "notification_id": notification_id,
        "provider_status": None,
    }
    assert row(database_url, notification_id) == before


def test_a_report_of_the_receiver_of_the_release_before_is_recorded(
    steps: Steps, database_url: str
) -> None:
    # GIVEN a call being placed, and a receiver not yet replaced by a deploy: it names
    # no channel and the call's SID as call_sid
    notification_id = calling(steps, database_url)
    event = {
        "call_sid": SID,
        "status": "ringing",
        "reported_at": REPORTED_AT,
        "notification_id": notification_id,
    }

    answer = record_call_status.handler(event, steps.context)

    assert answer["outcome"] == "recorded"
    assert row(database_url, notification_id)[:3] == ("sending", SID, "ringing")


def test_a_status_of_another_channel_is_refused_and_changes_nothing(
    steps: Steps, database_url: str
) -> None:
    # GIVEN a call being placed
    notification_id = calling(steps, database_url)
    before = row(database_url, notification_id)

    # WHEN a report names it with a status calls do not have, or as a PubNub message's
    for status, channel in (("delivered", "phone"), ("completed", "pubnub")):
        with pytest.raises(ValueError, match="reports no status"):
            report(steps, status, notification_id=notification_id, channel=channel)

    # THEN nothing was written
    assert row(database_url, notification_id) == before
