"""Each HTTP status a provider may answer a delivery with, read as its provider documents
it: "not acted on" (``TransientDeliveryError``: retried) or "may have acted on it"
(``AmbiguousDeliveryError``: recorded unknown, never retried). The rules, and the
documentation each one cites, are in ``lambdas/escalator/channels/twilio.py`` and
``pubnub.py``. One test per status: Twilio's through the real ``twilio`` client against
the Twilio peer on loopback, a call and a text message each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.peers.providers import TwilioStub
from escalator.channels import phone, sms
from escalator.channels.phone import TwilioCalls
from escalator.channels.sms import TwilioMessages
from escalator.errors import AmbiguousDeliveryError, TransientDeliveryError
from escalator.model import Delivery
from tests.support.contract_cases import PHONE

CALL = Delivery(7, "restaurant-42", "phone", PHONE, 1_800_000_000, caller_id="+38512345678")
MESSAGE = Delivery(8, "restaurant-42", "sms", PHONE, 1_800_000_000, caller_id="+38512345678")


@pytest.fixture
def twilio() -> Iterator[TwilioStub]:
    stub = TwilioStub()
    stub.start()
    yield stub
    stub.stop()


def calls(twilio: TwilioStub) -> TwilioCalls:
    return TwilioCalls(phone.load_settings(twilio.environment()))


def messages(twilio: TwilioStub) -> TwilioMessages:
    return TwilioMessages(sms.load_settings(twilio.environment()))


# "An API Request that receives an error 429 response is never processed and is always
# safe to retry." (Twilio, error 20429)
@pytest.mark.parametrize("status", [429], ids=str)
def test_a_twilio_status_documented_as_never_processed_is_retried(
    twilio: TwilioStub, status: int
) -> None:
    # GIVEN Twilio answers the next call and the next message with ``status``
    twilio.script.append(status)
    twilio.message_script.append(status)

    # WHEN each is asked for, THEN each is "not acted on": transient, naming the status
    with pytest.raises(TransientDeliveryError, match=f"^Twilio answered HTTP {status} "):
        calls(twilio).deliver(CALL)
    with pytest.raises(TransientDeliveryError, match=f"^Twilio answered HTTP {status} "):
        messages(twilio).deliver(MESSAGE)
    # AND each request reached Twilio once, nothing was placed or sent
    assert (len(twilio.refused), twilio.calls) == (1, [])
    assert (len(twilio.refused_messages), twilio.messages) == (1, [])

    # AND the retry goes through
    assert calls(twilio).deliver(CALL).provider_ref == twilio.calls[0].sid
    assert messages(twilio).deliver(MESSAGE).provider_ref == twilio.messages[0].sid


# Every 5xx, 503 included: Twilio documents none as "not processed" (20500 says a retried
# call or message may reach the customer twice; 20503 only says to try again).
@pytest.mark.parametrize("status", [500, 501, 502, 503, 504], ids=str)
def test_a_twilio_server_or_gateway_error_is_ambiguous_and_never_retried(
    twilio: TwilioStub, status: int
) -> None:
    # GIVEN Twilio answers the next call and the next message with ``status``
    twilio.script.append(status)
    twilio.message_script.append(status)

    # WHEN each is asked for, THEN Twilio may have acted on it: ambiguous, not retried
    with pytest.raises(AmbiguousDeliveryError) as call:
        calls(twilio).deliver(CALL)
    with pytest.raises(AmbiguousDeliveryError) as message:
        messages(twilio).deliver(MESSAGE)
    assert str(call.value).startswith(f"Twilio answered HTTP {status} ")
    assert str(call.value).endswith("; the call may have been placed: not retried")
    assert str(message.value).startswith(f"Twilio answered HTTP {status} ")
    assert str(message.value).endswith("; the message may have been sent: not retried")
    # AND the client asked once each: nothing retried the request on its own
    assert len(twilio.refused) + len(twilio.calls) == 1
    assert len(twilio.refused_messages) + len(twilio.messages) == 1
