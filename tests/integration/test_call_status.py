"""Call outcomes from Twilio and partial acceptance, through the synthesized state
machine: the Twilio stub places the call and posts signed status callbacks to the
status-callback function URL, whose receiver hands them to the recorder in the VPC. Then
the recorder's rules, each on its own, through its handler."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from devstack.peers.postgres import query
from devstack.peers.providers import Call
from escalator.channels.twilio import status_callback_for
from escalator.handlers import record_call_status
from escalator_cli.main import main
from tests.support.callbacks import (
    REPORTED_AT,
    SID,
    call_record,
    call_row,
    calling,
    lease_over,
    placed_but_not_recorded,
    placed_call,
    report,
)
from tests.support.contract_cases import EMAIL, email, phone, start
from tests.support.emf import emf_lines, metric_values
from tests.support.pipeline import Pipeline
from tests.support.steps import Steps


@pytest.mark.long
def test_an_impossible_number_is_rejected_and_the_email_of_the_same_start_delivered(
    pipeline: Pipeline,
) -> None:
    # GIVEN a start with a number no country can have and a valid e-mail, both due now
    now = int(time.time())
    pipeline.submit(start("restaurant-42", phone("+38500000", at=now), email(at=now)))

    # WHEN the state machine runs
    pipeline.machine.run()

    # THEN the e-mail went out, the call was never attempted, and the reason is on record
    assert [mail.recipients for mail in pipeline.peers.smtp.mails] == [[EMAIL]]
    assert pipeline.peers.twilio.calls == []
    assert [
        (channel, state, error) for channel, state, _, error in pipeline.notification_states()
    ] == [
        (
            "phone",
            "rejected",
            "notifications[0].phone-number is not a possible phone number"
            " (wrong length for its country)",
        ),
        ("email", "sent", None),
    ]


@pytest.mark.long
@pytest.mark.parametrize("number", ["+38591111111", "+3851111111"])
def test_the_original_components_example_numbers_are_called(
    pipeline: Pipeline, number: str
) -> None:
    pipeline.submit(start("restaurant-42", phone(number, at=int(time.time()))))
    pipeline.machine.run()
    assert [call.form["To"] for call in pipeline.peers.twilio.calls] == [number]


@pytest.mark.long
def test_calls_fetch_their_twiml_with_get_and_ask_for_status_callbacks(pipeline: Pipeline) -> None:
    call, notification_id = placed_call(pipeline)

    assert call.form["Method"] == "GET"
    assert call.form["StatusCallback"] == status_callback_for(
        pipeline.status_callback_url, notification_id, pipeline.peers.twilio.auth_token
    )
    assert call.form["StatusCallback"].startswith(
        f"{pipeline.status_callback_url}?notification={notification_id}&token="
    )
    assert call.form["StatusCallbackMethod"] == "POST"
    assert call.status_callback_events == ["initiated", "ringing", "answered", "completed"]


@pytest.mark.long
def test_a_final_status_is_never_replaced_by_an_earlier_one(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a call that was placed and recorded sent
    call, _ = placed_call(pipeline)
    sid = call.sid
    assert call_row(pipeline.database_url) == ("sent", sid, None, None)

    # WHEN Twilio reports it ringing, then unanswered, then the ringing again (a replay)
    twilio = pipeline.peers.twilio
    assert twilio.report(call, "ringing") == 200
    assert call_row(pipeline.database_url) == ("sent", sid, "ringing", None)
    assert twilio.report(call, "no-answer", duration=0) == 200
    assert twilio.report(call, "ringing") == 200
    assert twilio.report(call, "completed", duration=30) == 200  # another final: too late

    # THEN the call stays unanswered, as the provider first said it ended
    assert call_row(pipeline.database_url) == ("sent", sid, "no-answer", 0)
    # AND the metrics count one unanswered call, once
    metrics = emf_lines(capsys)
    assert [m["CallsNoAnswer"] for m in metrics if "CallsNoAnswer" in m] == [[1.0]]
    assert [m["CallsUnansweredPercent"] for m in metrics if "CallsUnansweredPercent" in m] == [
        [100.0]
    ]
    assert not any("CallsCompleted" in m for m in metrics)
    # AND the operator sees it beside the notification's state
    assert main(["status", "restaurant-42", "--json", "--database-url", pipeline.database_url]) == 0
    (process,) = json.loads(capsys.readouterr().out)
    ((notification),) = process["notifications"]
    assert (notification["state"], notification["provider_status"]) == ("sent", "no-answer")
    assert notification["call_duration_seconds"] == 0
    assert notification["provider_status_at"].endswith("Z")


@pytest.mark.long
def test_a_callback_with_a_bad_or_missing_signature_is_refused_and_changes_nothing(
    pipeline: Pipeline,
) -> None:
    call, _ = placed_call(pipeline)
    before = call_row(pipeline.database_url)
    form = {"CallSid": call.sid, "CallStatus": "completed"}
    url = call.form["StatusCallback"]

    forged = requests.post(url, data=form, headers={"X-Twilio-Signature": "bm90IGl0"}, timeout=30)
    unsigned = requests.post(url, data=form, timeout=30)
    # signed, but with another account's auth token
    pipeline.peers.twilio.auth_token = "another-accounts-token"
    other_account = pipeline.peers.twilio.report(call, "completed")

    assert (forged.status_code, unsigned.status_code, other_account) == (403, 403, 403)
    assert call_row(pipeline.database_url) == before


@pytest.mark.long
def test_a_callback_for_a_call_nobody_knows_is_answered_and_changes_nothing(
    pipeline: Pipeline, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    call, _ = placed_call(pipeline)
    before = call_row(pipeline.database_url)
    # GIVEN a signed callback naming a notification that does not exist
    stranger = Call(
        form={
            **call.form,
            "StatusCallback": status_callback_for(
                pipeline.status_callback_url, 999999, pipeline.peers.twilio.auth_token
            ),
        },
        account_sid=call.account_sid,
        auth=call.auth,
        received_at=call.received_at,
        sid="CAnobody",
    )

    # THEN it is answered 200 (Twilio would otherwise log an error) and nothing changes
    assert pipeline.peers.twilio.report(stranger, "completed") == 200
    assert call_row(pipeline.database_url) == before
    # AND the operator learns of it
    (line,) = [line for line in log_lines() if line.get("outcome") == "unknown-delivery"]
    assert (line["level"], line["provider_ref"], line["notification_id"]) == (
        "WARNING",
        "CAnobody",
        999999,
    )


@pytest.mark.long
def test_a_callback_settles_a_call_whose_request_timed_out(pipeline: Pipeline) -> None:
    # GIVEN Twilio took the call but answered later than the notifier waits: recorded
    # unknown, without a call SID (the request is never retried: the call may be ringing)
    pipeline.configure(TWILIO_TIMEOUT_SECONDS="1")
    pipeline.peers.twilio.delay = 2
    pipeline.submit(start("restaurant-42", phone(at=int(time.time()))))
    pipeline.machine.run()
    pipeline.wait_for(lambda: pipeline.peers.twilio.calls)  # the stub answers late
    (call,) = pipeline.peers.twilio.calls
    assert call_row(pipeline.database_url)[:2] == ("unknown", None)

    # WHEN Twilio reports the call
    assert pipeline.peers.twilio.report(call, "completed", duration=12) == 200

    # THEN it was sent after all, with its SID and what became of it
    assert call_row(pipeline.database_url) == ("sent", call.sid, "completed", 12)


@pytest.mark.long
def test_a_callback_settles_a_notification_whose_outcome_was_lost(pipeline: Pipeline) -> None:
    # GIVEN the call was placed but its outcome could not be recorded
    call = placed_but_not_recorded(pipeline)
    # AND its sending lease (3 s) ran out, so the next execution made it unknown
    pipeline.wait_for(lambda: lease_over(pipeline.database_url), timeout=10)
    pipeline.machine.run()
    assert call_row(pipeline.database_url) == ("unknown", None, None, None)

    # WHEN Twilio reports the call completed
    assert pipeline.peers.twilio.report(call, "completed", duration=42) == 200

    # THEN the notification is sent, with the call's SID and what became of the call
    sid = call.sid
    assert call_row(pipeline.database_url) == ("sent", sid, "completed", 42)
    ((error,),) = query(pipeline.database_url, "SELECT error FROM notification")
    assert error is None


@pytest.mark.long
def test_twilio_reporting_on_its_own_lands_the_final_status(pipeline: Pipeline) -> None:
    # As Twilio does: each accepted call is reported through its statuses, unprompted.
    pipeline.peers.twilio.auto_report = ("initiated", "ringing", "in-progress", "completed")
    call, _ = placed_call(pipeline)
    # (the status lands before the stub hears its answer: wait for both)
    pipeline.wait_for(
        lambda: (
            call_row(pipeline.database_url)[2] == "completed"
            and len(pipeline.peers.twilio.callbacks) == 4
        ),
        timeout=30,
    )
    assert call_row(pipeline.database_url) == ("sent", call.sid, "completed", 7)
    assert [callback.answer for callback in pipeline.peers.twilio.callbacks] == [200] * 4


# ---- The recorder's rules, each on its own, through its handler on a real PostgreSQL: a
# final status is recorded and counted once and never replaced, a status without a
# duration keeps the one on record, an unknown outcome becomes sent once its call is
# reported, a report of the release before is read, a status another channel has is
# refused (``make mutate`` found these untested: docs/mutation.md).


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
    assert call_record(database_url, notification_id) == (
        "sent",
        SID,
        "completed",
        42,
        None,
        REPORTED_AT,
    )
    # AND the call is counted once, as answered
    assert metric_values(capsys, "Calls", "Messages") == {
        "CallsCompleted": [1.0],
        "CallsUnansweredPercent": [0.0],
    }


def test_an_unanswered_call_is_counted_as_unanswered(
    steps: Steps, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    notification_id = calling(steps, database_url)
    capsys.readouterr()

    report(steps, "no-answer", notification_id=notification_id, duration=0)
    report(steps, "completed", notification_id=notification_id, duration=5)  # too late

    assert metric_values(capsys, "Calls", "Messages") == {
        "CallsNoAnswer": [1.0],
        "CallsUnansweredPercent": [100.0],
    }
    assert call_record(database_url, notification_id)[2:] == ("no-answer", 0, None, REPORTED_AT)


def test_an_undelivered_text_message_is_recorded_and_counted_as_failed(
    steps: Steps, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    notification_id = calling(steps, database_url, channel="sms")
    capsys.readouterr()

    report(steps, "sent", notification_id=notification_id, channel="sms")
    report(steps, "undelivered", notification_id=notification_id, channel="sms")
    report(steps, "delivered", notification_id=notification_id, channel="sms")  # too late

    assert metric_values(capsys, "Calls", "Messages") == {
        "MessagesUndelivered": [1.0],
        "MessagesUndeliveredPercent": [100.0],
    }
    assert call_record(database_url, notification_id)[1:3] == (SID, "undelivered")


def test_a_status_without_a_duration_keeps_the_one_on_record(
    steps: Steps, database_url: str
) -> None:
    notification_id = calling(steps, database_url)
    report(steps, "in-progress", notification_id=notification_id, duration=3)

    report(steps, "completed", notification_id=notification_id)

    assert call_record(database_url, notification_id)[2:] == ("completed", 3, None, REPORTED_AT)


def test_a_callback_settles_a_call_whose_outcome_is_unknown(
    steps: Steps, database_url: str
) -> None:
    # GIVEN a call whose notifier's answer never came: recorded unknown, without a SID
    notification_id = calling(steps, database_url)
    steps.record(notification_id, unknown={"Error": "AmbiguousDeliveryError", "Cause": "?"})
    assert call_record(database_url, notification_id)[:2] == ("unknown", None)

    answer = report(steps, "completed", notification_id=notification_id, duration=7)

    assert answer["outcome"] == "settled"
    assert call_record(database_url, notification_id) == (
        "sent",
        SID,
        "completed",
        7,
        None,
        REPORTED_AT,
    )


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
    assert call_record(database_url, notification_id)[:3] == ("sending", SID, "ringing")


def test_a_status_of_another_channel_is_refused_and_changes_nothing(
    steps: Steps, database_url: str
) -> None:
    # GIVEN a call being placed
    notification_id = calling(steps, database_url)
    before = call_record(database_url, notification_id)

    # WHEN a report names it with a status calls do not have, or as a PubNub message's
    for status, channel in (("delivered", "phone"), ("completed", "pubnub")):
        with pytest.raises(ValueError, match="reports no status"):
            report(steps, status, notification_id=notification_id, channel=channel)

    # THEN nothing was written
    assert call_record(database_url, notification_id) == before
