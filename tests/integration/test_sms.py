"""Text messages through Twilio's Messages API: the SMS notifier with the real ``twilio``
client against the Twilio stub (what it sends, how Twilio's errors become the project's),
and one message through the whole pipeline, its signed status callbacks recorded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devstack.peers.postgres import query
from devstack.peers.providers import DROP, TwilioStub
from escalator.channels import sms
from escalator.channels.sms import TwilioMessages
from escalator.channels.twilio import status_callback_for
from escalator.errors import (
    AmbiguousDeliveryError,
    ConfigError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from escalator.model import Delivery
from tests.support.contract_cases import PHONE, start
from tests.support.contract_cases import sms as sms_notification
from tests.support.emf import emf_lines
from tests.support.pipeline import Pipeline

MESSAGE = Delivery(7, "restaurant-42", "sms", PHONE, 1_800_000_000, caller_id="+38512345678")
BODY = "An order is waiting for your confirmation."


@pytest.fixture
def twilio() -> Iterator[TwilioStub]:
    stub = TwilioStub()
    stub.start()
    yield stub
    stub.stop()


def notifier(twilio: TwilioStub, **overrides: str) -> TwilioMessages:
    return TwilioMessages(sms.load_settings({**twilio.environment(), **overrides}))


def test_a_message_is_sent_from_the_caller_id_with_the_configured_text(twilio: TwilioStub) -> None:
    receipt = notifier(twilio).deliver(MESSAGE)

    (message,) = twilio.messages
    assert message.form == {"To": PHONE, "From": "+38512345678", "Body": BODY}
    assert (receipt.provider_ref, receipt.detail) == (
        message.sid,
        {"from": "+38512345678", "body": BODY},
    )
    assert receipt.provider_ref.startswith("SM")


def test_a_message_asks_for_status_callbacks_naming_its_notification(twilio: TwilioStub) -> None:
    twilio.message_reports = ()  # (nobody listens at this URL)
    base = "https://callbacks.example.com/"
    notifier(twilio, TWILIO_STATUS_CALLBACK_URL=base).deliver(MESSAGE)

    (message,) = twilio.messages
    expected = status_callback_for(base, MESSAGE.notification_id, twilio.auth_token)
    assert message.form["StatusCallback"] == expected


def test_a_refused_number_is_permanent_and_its_message_masked(twilio: TwilioStub) -> None:
    twilio.message_script.append(21211)
    with pytest.raises(PermanentDeliveryError, match="error 21211") as refused:
        notifier(twilio).deliver(MESSAGE)
    assert PHONE not in str(refused.value)
    assert twilio.messages == []


def test_a_connection_dropped_after_the_request_is_ambiguous_and_never_sent_again(
    twilio: TwilioStub,
) -> None:
    # GIVEN Twilio takes the message and the connection drops before its answer
    twilio.message_script.append(DROP)

    # WHEN the message is sent, THEN the notifier says it may have been sent
    with pytest.raises(AmbiguousDeliveryError) as dropped:
        notifier(twilio).deliver(MESSAGE)
    assert str(dropped.value).endswith("the message may have been sent: not retried")
    # AND Twilio saw exactly one request
    assert (len(twilio.messages), twilio.refused_messages) == (1, [])


def test_twilio_not_taking_it_is_transient_and_the_retry_sends_it(twilio: TwilioStub) -> None:
    twilio.message_script.append(429)
    messages = notifier(twilio)
    with pytest.raises(TransientDeliveryError, match="HTTP 429"):
        messages.deliver(MESSAGE)

    receipt = messages.deliver(MESSAGE)

    assert [message.sid for message in twilio.messages] == [receipt.provider_ref]
    assert len(twilio.refused_messages) == 1


def test_a_message_without_a_caller_id_is_permanent_and_never_sent(twilio: TwilioStub) -> None:
    anonymous = Delivery(7, "restaurant-42", "sms", PHONE, 1_800_000_000)
    with pytest.raises(PermanentDeliveryError, match="no caller id to send from"):
        notifier(twilio).deliver(anonymous)
    assert twilio.messages == []


@pytest.mark.parametrize("body", [" ", "x" * 1601], ids=["blank", "too-long"])
def test_the_message_text_must_be_one_twilio_can_send(body: str) -> None:
    settings = {"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t", "SMS_BODY": body}
    with pytest.raises(ConfigError, match="SMS_BODY must be 1 to 1600 characters"):
        sms.load_settings(settings)
    assert sms.load_settings({**settings, "SMS_BODY": "x" * 1600}).body == "x" * 1600


def message_row(pipeline: Pipeline) -> tuple[Any, ...]:
    """(state, provider_ref, provider_status) of the one message."""
    (row,) = query(
        pipeline.database_url,
        "SELECT state, provider_ref, provider_status FROM notification WHERE channel = 'sms'",
    )
    return tuple(row)


@pytest.mark.long
def test_a_message_goes_out_and_its_signed_status_callbacks_are_recorded(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN a message falls due
    twilio = pipeline.peers.twilio
    pipeline.submit(start("restaurant-42", sms_notification(at=int(time.time()))))
    pipeline.machine.run()

    # THEN it was sent from the caller id of its number, asking for status callbacks
    (message,) = twilio.messages
    ((notification_id,),) = query(pipeline.database_url, "SELECT id FROM notification")
    assert message.form["From"] == "+38591000000"
    assert message.form["StatusCallback"] == status_callback_for(
        pipeline.status_callback_url, notification_id, twilio.auth_token
    )
    # AND Twilio's signed reports (sent, then delivered) landed through the receiver
    pipeline.wait_for(lambda: message_row(pipeline)[2] == "delivered", timeout=10)
    assert message_row(pipeline) == ("sent", message.sid, "delivered")
    assert [callback.answer for callback in twilio.message_callbacks] == [200, 200]

    # WHEN an earlier status comes again, and forged or unsigned callbacks arrive
    replayed = twilio.report_message(message, "sent")
    url, params, _ = twilio.signed_message_callback(message, "undelivered")
    forged = twilio.post_callback(url, params, "bm90IGl0")
    unsigned = requests.post(url, data=params, timeout=30).status_code

    # THEN the first is answered and changes nothing, the others are refused
    assert (replayed, forged, unsigned) == (200, 403, 403)
    assert message_row(pipeline) == ("sent", message.sid, "delivered")
    # AND the message is counted once, as delivered
    metrics = emf_lines(capsys)
    assert [m["MessagesDelivered"] for m in metrics if "MessagesDelivered" in m] == [[1.0]]
    share = [m["MessagesUndeliveredPercent"] for m in metrics if "MessagesUndeliveredPercent" in m]
    assert share == [[0.0]]
