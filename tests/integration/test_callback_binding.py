"""A status callback settles only its own call.

Twilio's signature is an HMAC over the URL followed by each form key and value, with no
separator: whoever has seen one signed callback can move characters between the end of
the URL and the first key and keep the signature valid. None of those re-splits, and no
replay of a callback against another notification's URL, may change anything. And once a
notification is bound to its call's SID, a callback of any other call changes nothing,
whether the notification is still being sent or its outcome is unknown. Then the
recorder's side of it, through its handler: what a callback binds, and what it leaves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from devstack.peers.postgres import query
from devstack.peers.providers import ACCOUNT_SID, Call
from escalator.channels.twilio import status_callback_for
from tests.support.callbacks import (
    OTHER_SID,
    REPORTED_AT,
    SID,
    call_record,
    call_row,
    calling,
    lease_over,
    placed_but_not_recorded,
    report,
)
from tests.support.contract_cases import PHONE, phone, pubnub, start
from tests.support.emf import metric_values
from tests.support.pipeline import Pipeline
from tests.support.steps import Steps


def rows(pipeline: Pipeline) -> list[tuple[Any, ...]]:
    """(id, state, provider_ref, provider_status, error) of every notification."""
    return query(
        pipeline.database_url,
        "SELECT id, state, provider_ref, provider_status, error FROM notification ORDER BY id",
    )


def resplits(url: str, params: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """Every request that signs like (``url``, ``params``) by moving up to eight
    characters between the end of the URL and the first key (in signing order)."""
    first = min(params)
    rest = {key: value for key, value in params.items() if key != first}
    forged = []
    for size in range(1, 9):
        # the URL's last characters become the start of the first key
        moved_in = {url[-size:] + first: params[first], **rest}
        if min(moved_in) == url[-size:] + first:
            forged.append((url[:-size], moved_in))
        # the first key's first characters become the end of the URL
        if size < len(first):
            moved_out = {first[size:]: params[first], **rest}
            if min(moved_out) == first[size:]:
                forged.append((url + first[:size], moved_out))
    return forged


def refused_then_placed(pipeline: Pipeline) -> tuple[int, Call]:
    """Notification 1 is a call Twilio refused (no call exists), notifications 2 to 10
    PubNub messages, notification 11 a call Twilio placed."""
    now = int(time.time())
    pipeline.peers.twilio.script.append(21211)
    pipeline.submit(
        start("restaurant-1", phone(at=now), *[pubnub(f"ch-{n}", at=now) for n in range(9)])
    )
    pipeline.machine.run()
    pipeline.submit(start("restaurant-11", phone("+385911234511", at=int(time.time()))))
    pipeline.machine.run()
    (call,) = pipeline.peers.twilio.calls
    assert [row[:2] for row in rows(pipeline)] == [
        (1, "failed"),
        *[(n, "sent") for n in range(2, 12)],
    ]
    return 11, call


@pytest.mark.long
def test_no_resplit_of_a_signed_callback_settles_another_notification(
    pipeline: Pipeline,
) -> None:
    # GIVEN a signed callback of call 11, as anyone who saw it in a log has it
    _, call = refused_then_placed(pipeline)
    url, params, signature = pipeline.peers.twilio.signed_callback(call, "completed", duration=9)
    before = rows(pipeline)
    forgeries = resplits(url, params)
    assert forgeries

    # WHEN each re-split is posted with the same signature
    answers = [
        pipeline.peers.twilio.post_callback(forged_url, forged_params, signature)
        for forged_url, forged_params in forgeries
    ]

    # THEN every one is refused and nothing changed (notification 1 stays failed)
    assert set(answers) == {403}
    assert rows(pipeline) == before


@pytest.mark.long
def test_a_callback_replayed_against_every_other_notifications_url_changes_nothing(
    pipeline: Pipeline,
) -> None:
    notification_id, call = refused_then_placed(pipeline)
    _, params, signature = pipeline.peers.twilio.signed_callback(call, "completed")
    before = rows(pipeline)

    base = pipeline.status_callback_url
    answers = [
        pipeline.peers.twilio.post_callback(
            status_callback_for(base, other, pipeline.peers.twilio.auth_token), params, signature
        )
        for other in range(1, 12)
        if other != notification_id
    ]

    assert set(answers) == {403}
    assert rows(pipeline) == before


@pytest.mark.long
def test_a_notification_without_a_call_is_never_settled_by_a_callback(
    pipeline: Pipeline,
) -> None:
    # GIVEN a callback signed for notification 1's own URL (whose call Twilio refused),
    # reporting another call
    _, call = refused_then_placed(pipeline)
    own_url = status_callback_for(pipeline.status_callback_url, 1, pipeline.peers.twilio.auth_token)
    before = rows(pipeline)

    answer = pipeline.peers.twilio.report(
        Call(
            form={**call.form, "StatusCallback": own_url},
            account_sid=ACCOUNT_SID,
            auth=call.auth,
            received_at=time.time(),
            sid=call.sid,
        ),
        "completed",
    )

    # THEN it is answered (Twilio must not retry) and notification 1 stays failed
    assert answer == 200
    assert rows(pipeline) == before


@pytest.mark.long
def test_a_callback_with_a_parameter_twilio_does_not_send_is_refused(pipeline: Pipeline) -> None:
    _, call = refused_then_placed(pipeline)
    url, params, _ = pipeline.peers.twilio.signed_callback(call, "completed")
    before = rows(pipeline)

    extra = {**params, "Injected": "1"}
    signature = RequestValidator(pipeline.peers.twilio.auth_token).compute_signature(url, extra)

    assert pipeline.peers.twilio.post_callback(url, extra, signature) == 403
    assert rows(pipeline) == before
    # while the callback as Twilio sends it is recorded
    assert pipeline.peers.twilio.report(call, "completed") == 200
    assert rows(pipeline)[-1][3] == "completed"


def bound_but_not_recorded(pipeline: Pipeline) -> Call:
    """A call Twilio placed whose outcome was never recorded (the record step crashed):
    its notification stays ``sending``. Twilio then reports it ringing, which binds the
    notification to the call's SID."""
    call = placed_but_not_recorded(pipeline)
    assert pipeline.peers.twilio.report(call, "ringing") == 200
    assert call_row(pipeline.database_url) == ("sending", call.sid, "ringing", None)
    return call


def another_call_to_the_same_url(call: Call) -> Call:
    """A call of Twilio's other than ``call``, reporting to ``call``'s callback URL (so
    its callbacks are signed and name the same notification)."""
    return Call(
        form=call.form,
        account_sid=call.account_sid,
        auth=call.auth,
        received_at=time.time(),
        sid="CA" + "f" * 32,
    )


@pytest.mark.long
def test_a_callback_of_another_call_leaves_a_sending_notification_alone(
    pipeline: Pipeline,
) -> None:
    # GIVEN a notification being sent, bound to its call by that call's first callback
    call = bound_but_not_recorded(pipeline)

    # WHEN a signed callback of another call arrives at its URL
    answer = pipeline.peers.twilio.report(another_call_to_the_same_url(call), "completed")

    # THEN it is answered (Twilio must not retry) and changes nothing
    assert answer == 200
    assert call_row(pipeline.database_url) == ("sending", call.sid, "ringing", None)


@pytest.mark.long
def test_a_callback_of_another_call_never_settles_an_unknown_notification(
    pipeline: Pipeline,
) -> None:
    # GIVEN a notification bound to its call, whose sending lease ran out: unknown
    call = bound_but_not_recorded(pipeline)
    pipeline.wait_for(lambda: lease_over(pipeline.database_url), timeout=10)
    pipeline.machine.run()
    assert call_row(pipeline.database_url) == ("unknown", call.sid, "ringing", None)

    # WHEN a signed callback of another call reports to its URL that it completed
    answer = pipeline.peers.twilio.report(another_call_to_the_same_url(call), "completed")

    # THEN it is answered and settles nothing
    assert answer == 200
    assert call_row(pipeline.database_url) == ("unknown", call.sid, "ringing", None)
    # AND its own call's callback does
    assert pipeline.peers.twilio.report(call, "completed") == 200
    assert call_row(pipeline.database_url) == ("sent", call.sid, "completed", None)


# ---- The recorder's side, through its handler on a real PostgreSQL: a callback naming a
# call being placed binds it and records its status; a callback of another call, or for a
# notification without a call, changes nothing (``make mutate`` found these untested:
# docs/mutation.md).


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
    assert call_record(database_url, notification_id) == (
        "sending",
        SID,
        "ringing",
        None,
        None,
        REPORTED_AT,
    )
    assert metric_values(capsys, "Calls", "Messages") == {}  # not final: no call metric
    (line,) = [line for line in log_lines() if line["message"] == "provider status recorded"]
    assert (line["level"], line["provider_ref"], line["recorded_status"]) == (
        "INFO",
        SID,
        "ringing",
    )


def test_a_callback_of_another_call_changes_nothing_and_is_logged(
    steps: Steps, database_url: str, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    # GIVEN a notification bound to its call
    notification_id = calling(steps, database_url)
    steps.record(notification_id, receipt={"provider_ref": SID})
    before = call_record(database_url, notification_id)

    # WHEN a callback of another call names it
    answer = report(steps, "completed", notification_id=notification_id, sid=OTHER_SID)

    # THEN it is not recorded there, and the operator learns of it
    assert answer == {
        "outcome": "unknown-delivery",
        "notification_id": notification_id,
        "provider_status": None,
    }
    assert call_record(database_url, notification_id) == before
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
    before = call_record(database_url, notification_id)

    answer = report(steps, "completed", notification_id=notification_id)

    assert answer == {
        "outcome": "unknown-delivery",
        "notification_id": notification_id,
        "provider_status": None,
    }
    assert call_record(database_url, notification_id) == before
