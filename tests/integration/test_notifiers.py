"""Each notifier against its real protocol peer: what it sends, and how provider errors
become the project's transient or permanent delivery errors."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from devstack.peers.providers import DROP, Peers, PubNubStub, SmtpPeer, running_peers
from escalator.channels import email, phone, pubnub
from escalator.channels.email import SmtpMailer
from escalator.channels.phone import TwilioCalls
from escalator.channels.pubnub import PubNubPublisher
from escalator.channels.twilio import callback_token
from escalator.errors import (
    AmbiguousDeliveryError,
    ConfigError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from escalator.model import Delivery
from tests.support.contract_cases import EMAIL, PHONE

CALL = Delivery(7, "restaurant-42", "phone", PHONE, 1_800_000_000, caller_id="+38512345678")
MAIL = Delivery(8, "restaurant-42", "email", EMAIL, 1_800_000_000)
PUBLISH = Delivery(9, "restaurant-42", "pubnub", "ch13234", 1_800_000_000)


@pytest.fixture
def peers() -> Iterator[Peers]:
    with running_peers() as running:
        yield running


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def twilio(peers: Peers, **overrides: str) -> TwilioCalls:
    return TwilioCalls(phone.load_settings({**peers.environment(), **overrides}))


def test_twilio_call_is_placed_with_caller_id_and_twiml_url(peers: Peers) -> None:
    receipt = twilio(peers).deliver(CALL)

    (call,) = peers.twilio.calls
    assert call.form == {
        "To": PHONE,
        "From": "+38512345678",
        "Url": "https://restaurant.example.com/twiml/escalation.xml",
        "Method": "GET",  # as the original asked: a static TwiML file refuses POST
    }
    assert receipt.provider_ref.startswith("CA")
    assert receipt.detail == {
        "from": "+38512345678",
        "url": "https://restaurant.example.com/twiml/escalation.xml",
    }


def test_twilio_invalid_number_is_permanent_and_its_message_masked(peers: Peers) -> None:
    peers.twilio.script.append(21211)
    with pytest.raises(PermanentDeliveryError, match="error 21211") as refused:
        twilio(peers).deliver(CALL)
    # Twilio quotes the number back; the message is masked before anyone sees it.
    assert PHONE not in str(refused.value)
    assert "+385*******67" in str(refused.value)


def test_twilio_method_may_be_post_and_nothing_else(peers: Peers) -> None:
    twilio(peers, TWILIO_METHOD="post").deliver(CALL)
    assert peers.twilio.calls[0].form["Method"] == "POST"
    with pytest.raises(ConfigError, match="TWILIO_METHOD must be GET or POST"):
        twilio(peers, TWILIO_METHOD="PUT")


def test_twilio_call_asks_for_status_callbacks_naming_its_notification(peers: Peers) -> None:
    base = "https://callbacks.example.com/"
    twilio(peers, TWILIO_STATUS_CALLBACK_URL=base).deliver(CALL)
    form = peers.twilio.calls[0].form
    token = callback_token(peers.twilio.auth_token, CALL.notification_id)
    assert form["StatusCallback"] == f"{base}?notification={CALL.notification_id}&token={token}"
    assert form["StatusCallbackMethod"] == "POST"
    assert peers.twilio.calls[0].status_callback_events == [
        "initiated",
        "ringing",
        "answered",
        "completed",
    ]


def test_twilio_unreachable_is_transient(peers: Peers) -> None:
    notifier = twilio(peers, TWILIO_API_BASE_URL=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(TransientDeliveryError, match="cannot reach Twilio"):
        notifier.deliver(CALL)


def test_twilio_silent_after_the_request_is_ambiguous(peers: Peers) -> None:
    # The request reached Twilio: retrying could place a second call.
    peers.twilio.delay = 2.5
    with pytest.raises(AmbiguousDeliveryError, match="may have been placed"):
        twilio(peers, TWILIO_TIMEOUT_SECONDS="1").deliver(CALL)
    peers.twilio.delay = 0


def test_twilio_dropping_the_connection_after_the_request_is_ambiguous(peers: Peers) -> None:
    # GIVEN Twilio takes the call and the connection drops before its answer
    peers.twilio.script.append(DROP)

    # WHEN the call is placed, THEN the notifier says it may have been placed
    with pytest.raises(AmbiguousDeliveryError, match="RemoteDisconnected"):
        twilio(peers).deliver(CALL)
    assert len(peers.twilio.calls) == 1


def test_twilio_unknown_host_is_transient(peers: Peers) -> None:
    notifier = twilio(peers, TWILIO_API_BASE_URL="http://twilio.invalid")
    with pytest.raises(TransientDeliveryError, match="cannot reach Twilio"):
        notifier.deliver(CALL)


def test_twilio_failing_tls_handshake_is_transient(peers: Peers) -> None:
    # A peer that does not speak TLS: the handshake fails, no request was ever written.
    notifier = twilio(peers, TWILIO_API_BASE_URL=peers.twilio.url.replace("http:", "https:"))
    with pytest.raises(TransientDeliveryError, match="cannot reach Twilio: SSLError"):
        notifier.deliver(CALL)
    assert peers.twilio.calls == []


def mailer(peers: Peers, smtp: SmtpPeer | None = None, **overrides: str) -> SmtpMailer:
    port = str((smtp or peers.smtp).port)
    return SmtpMailer(email.load_settings({**peers.environment(), "SMTP_PORT": port, **overrides}))


def test_email_is_sent_with_a_message_id(peers: Peers) -> None:
    receipt = mailer(peers).deliver(MAIL)

    (mail,) = peers.smtp.mails
    assert mail.recipients == [EMAIL]
    assert mail.mail_from == "escalator@roomorders.example.com"
    assert receipt.provider_ref == mail.message["Message-ID"]
    assert receipt.provider_ref.endswith("@roomorders.example.com>")


def test_email_recipient_busy_is_transient(peers: Peers) -> None:
    peers.smtp.handler.rcpt_reply = "450 4.2.1 Mailbox busy"
    with pytest.raises(TransientDeliveryError, match="450"):
        mailer(peers).deliver(MAIL)


def test_email_recipient_unknown_is_permanent_and_its_message_masked(peers: Peers) -> None:
    peers.smtp.handler.rcpt_reply = f"550 5.1.1 <{EMAIL}>: No such user"
    with pytest.raises(PermanentDeliveryError, match="550") as refused:
        mailer(peers).deliver(MAIL)
    assert EMAIL not in str(refused.value)
    assert "o***@example.com" in str(refused.value)


def test_email_login_is_used_and_a_refused_login_is_permanent(peers: Peers) -> None:
    server = SmtpPeer(login=("escalator", "right"))
    server.start()
    try:
        receipt = mailer(peers, server, SMTP_USERNAME="escalator", SMTP_PASSWORD="right").deliver(
            MAIL
        )
        assert [mail.message["Message-ID"] for mail in server.mails] == [receipt.provider_ref]
        with pytest.raises(PermanentDeliveryError, match="SMTP login refused"):
            mailer(peers, server, SMTP_USERNAME="escalator", SMTP_PASSWORD="wrong").deliver(MAIL)
    finally:
        server.stop()


def test_email_dropped_before_the_reply_to_data_is_ambiguous(peers: Peers) -> None:
    # GIVEN a server that keeps the message and hangs up instead of answering it
    peers.smtp.handler.drop_after_data = True

    # WHEN the e-mail is sent, THEN it may have been accepted: not retried
    with pytest.raises(AmbiguousDeliveryError, match="after the message was sent"):
        mailer(peers).deliver(MAIL)
    assert len(peers.smtp.mails) == 1


def test_email_accepted_then_a_failing_quit_is_delivered(peers: Peers) -> None:
    peers.smtp.handler.drop_on_quit = True

    receipt = mailer(peers).deliver(MAIL)

    (mail,) = peers.smtp.mails
    assert receipt.provider_ref == mail.message["Message-ID"]


def test_email_server_unreachable_is_transient(peers: Peers) -> None:
    notifier = SmtpMailer(
        email.load_settings({**peers.environment(), "SMTP_PORT": str(closed_port())})
    )
    with pytest.raises(TransientDeliveryError, match="cannot talk to the SMTP server"):
        notifier.deliver(MAIL)


def publisher(peers: Peers, origin: str | None = None) -> PubNubPublisher:
    env = {**peers.environment(), **({"PUBNUB_ORIGIN": origin} if origin else {})}
    return PubNubPublisher(pubnub.load_settings(env))


def test_pubnub_message_is_published_with_keys_and_uuid(peers: Peers) -> None:
    receipt = publisher(peers).deliver(PUBLISH)

    (publication,) = peers.pubnub.publications
    assert (publication.channel, publication.publish_key, publication.subscribe_key) == (
        "ch13234",
        "pub-c-test",
        "sub-c-test",
    )
    assert publication.uuid == "escalator-test"
    assert publication.message == {
        "type": "escalation",
        "process-id": "restaurant-42",
        "notification-id": 9,
        "at": 1_800_000_000,
    }
    assert receipt.provider_ref.isdigit()


class RefusingPubNub(PubNubStub):
    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status

    def answer(self, request: object) -> tuple[int, object]:
        return self.status, [0, "Refused", "0"]


@pytest.mark.parametrize(
    ("status", "error"), [(503, AmbiguousDeliveryError), (403, PermanentDeliveryError)]
)
def test_pubnub_errors_are_translated(peers: Peers, status: int, error: type[Exception]) -> None:
    stub = RefusingPubNub(status)
    stub.start()
    try:
        with pytest.raises(error, match=f"HTTP {status}"):
            publisher(peers, stub.url).deliver(PUBLISH)
    finally:
        stub.stop()


def test_pubnub_dropping_the_connection_after_the_publish_is_ambiguous(peers: Peers) -> None:
    peers.pubnub.script.append(DROP)

    with pytest.raises(AmbiguousDeliveryError, match="may have been published"):
        publisher(peers).deliver(PUBLISH)
    assert len(peers.pubnub.publications) == 1


def test_pubnub_server_error_is_ambiguous(peers: Peers) -> None:
    stub = RefusingPubNub(502)
    stub.start()
    try:
        with pytest.raises(AmbiguousDeliveryError, match="HTTP 502"):
            publisher(peers, stub.url).deliver(PUBLISH)
    finally:
        stub.stop()


def test_pubnub_origin_must_be_http(peers: Peers) -> None:
    with pytest.raises(ConfigError, match="PUBNUB_ORIGIN must be an http"):
        publisher(peers, "ftp://ps.pndsn.com")


def test_pubnub_unreachable_is_transient(peers: Peers) -> None:
    with pytest.raises(TransientDeliveryError, match="cannot reach PubNub"):
        publisher(peers, f"http://127.0.0.1:{closed_port()}").deliver(PUBLISH)


def test_the_smtp_peer_whose_port_was_taken_meanwhile_listens_on_another(peers: Peers) -> None:
    # GIVEN an SMTP peer, and another socket of this machine listening on the port it
    # picked before it starts (ports are probed first: aiosmtpd must know its port)
    server = SmtpPeer()
    taken = server.port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()

        # WHEN it starts
        server.start()
        try:
            # THEN it listens on another port, and takes mail there
            assert server.port != taken
            receipt = mailer(peers, server).deliver(MAIL)
            assert [mail.message["Message-ID"] for mail in server.mails] == [receipt.provider_ref]
        finally:
            server.stop()
