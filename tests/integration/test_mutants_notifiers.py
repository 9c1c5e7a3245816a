"""How each notifier classifies what its provider did, at the edges the other notifier
tests leave open: the exact status codes where transient, permanent and ambiguous meet,
when an SMTP message counts as handed over, a server that never answers, an untrusted
certificate, and what each receipt and reason says. Against real protocol peers on
loopback. Written for mutants that survived ``make mutate`` (docs/mutation.md)."""

from __future__ import annotations

import datetime
import email.utils
import json
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devstack.loopback import LoopbackServer
from devstack.peers.providers import DROP, Peers, running_peers
from escalator.channels import email as smtp
from escalator.channels import phone, pubnub
from escalator.channels.email import SmtpMailer
from escalator.channels.phone import TwilioCalls
from escalator.channels.pubnub import PubNubPublisher, message_for
from escalator.errors import (
    AmbiguousDeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from escalator.model import Delivery, Receipt
from tests.support.contract_cases import EMAIL, PHONE

MAIL = Delivery(8, "restaurant-42", "email", EMAIL, 1_800_000_000)
PUBLISH = Delivery(9, "restaurant-42", "pubnub", "ch13234", 1_800_000_000)


@pytest.fixture
def peers() -> Iterator[Peers]:
    with running_peers() as running:
        yield running


def mailer(peers: Peers, **overrides: str) -> SmtpMailer:
    return SmtpMailer(smtp.load_settings({**peers.environment(), **overrides}))


def publisher(peers: Peers, origin: str) -> PubNubPublisher:
    return PubNubPublisher(pubnub.load_settings({**peers.environment(), "PUBNUB_ORIGIN": origin}))


@contextmanager
def listening(serve: Callable[[socket.socket], None] | None = None) -> Iterator[int]:
    """A TCP port on loopback: each connection is handed to ``serve``; without it, none
    is ever accepted (the kernel completes the handshake, nothing more is said)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        stop = threading.Event()

        def accept() -> None:
            server.settimeout(0.1)
            while not stop.is_set():
                try:
                    connection, _ = server.accept()
                except TimeoutError:
                    continue
                with connection:
                    assert serve is not None
                    serve(connection)

        thread = threading.Thread(target=accept, daemon=True)
        if serve is not None:
            thread.start()
        try:
            yield server.getsockname()[1]
        finally:
            stop.set()
            if serve is not None:
                thread.join(5)


def within(seconds: float, call: Callable[[], object]) -> BaseException | object:
    """``call()``'s result or error, failing the test if it has not ended in time."""
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"still waiting after {seconds} s"
    return outcome[0]


# E-mail


def test_an_email_carries_its_subject_and_date_and_its_receipt_names_the_subject(
    peers: Peers,
) -> None:
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)

    receipt = mailer(peers).deliver(MAIL)

    (mail,) = peers.smtp.mails
    assert mail.message["Subject"] == "Order waiting"
    assert (mail.message["From"], mail.message["To"]) == (
        "escalator@roomorders.example.com",
        EMAIL,
    )
    sent_at = email.utils.parsedate_to_datetime(str(mail.message["Date"]))
    assert before <= sent_at <= datetime.datetime.now(datetime.UTC)
    assert receipt.detail == {"subject": "Order waiting"}


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("400 4.0.0 Try again later", TransientDeliveryError),
        ("499 4.9.9 Try again later", TransientDeliveryError),
        ("500 5.0.0 Not like this", PermanentDeliveryError),
        ("550 5.1.1 No such user", PermanentDeliveryError),
    ],
)
def test_a_refused_recipient_is_transient_for_a_4xx_reply_and_permanent_otherwise(
    peers: Peers, reply: str, error: type[Exception]
) -> None:
    peers.smtp.handler.rcpt_reply = reply
    with pytest.raises(error) as refused:
        mailer(peers).deliver(MAIL)
    assert str(refused.value) == f"SMTP refused the recipient ({reply})"


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("400 4.0.0 Try again later", TransientDeliveryError),
        ("451 4.3.0 Try again later", TransientDeliveryError),
        # RFC 5321 4.2.2: 421 "may be a reply to any command": a 4yz, not accepted
        ("421 4.3.2 Service shutting down", TransientDeliveryError),
        ("500 5.0.0 Not like this", PermanentDeliveryError),
        ("554 5.7.1 Message refused", PermanentDeliveryError),
    ],
)
def test_a_refused_message_is_transient_for_a_4xx_reply_and_permanent_otherwise(
    peers: Peers, reply: str, error: type[Exception]
) -> None:
    # GIVEN a server that takes the message and then answers it with ``reply``
    async def refuse(server: Any, session: Any, envelope: Any) -> str:
        return reply

    peers.smtp.handler.handle_DATA = refuse  # type: ignore[method-assign]

    with pytest.raises(error) as refused:
        mailer(peers).deliver(MAIL)
    assert str(refused.value) == f"SMTP answered {reply[:3]}: {reply[4:]}"


def test_a_connection_dropped_before_the_message_was_sent_is_transient() -> None:
    # GIVEN a server that greets, and hangs up when the client says who it is
    def greet_then_hang_up(connection: socket.socket) -> None:
        connection.sendall(b"220 mail.example.com ESMTP\r\n")
        connection.recv(1024)

    with listening(greet_then_hang_up) as port:
        notifier = SmtpMailer(smtp.SmtpSettings(host="127.0.0.1", port=port, mail_from="a@b.c"))
        with pytest.raises(TransientDeliveryError, match="cannot talk to the SMTP server"):
            notifier.deliver(MAIL)


def test_a_reply_that_is_not_utf8_is_still_read_and_classified() -> None:
    # GIVEN a server answering the recipient in Latin-1, as some still do
    def refuse_in_latin1(connection: socket.socket) -> None:
        connection.sendall(b"220 mail.example.com ESMTP\r\n")
        for line in connection.makefile("rb"):
            command = line[:4].upper()
            if command == b"RCPT":
                connection.sendall(b"550 5.1.1 Empf\xe4nger unbekannt\r\n")
            elif command == b"QUIT":
                connection.sendall(b"221 Bye\r\n")
                return
            else:
                connection.sendall(b"250 OK\r\n")

    with listening(refuse_in_latin1) as port:
        settings = smtp.SmtpSettings(host="127.0.0.1", port=port, mail_from="a@b.c", starttls=False)
        with pytest.raises(PermanentDeliveryError) as refused:
            SmtpMailer(settings).deliver(MAIL)

    assert str(refused.value) == "SMTP refused the recipient (550 5.1.1 Empf\ufffdnger unbekannt)"


def test_a_server_that_never_greets_is_given_up_after_the_timeout_as_transient() -> None:
    with listening() as port:
        settings = smtp.SmtpSettings(
            host="127.0.0.1", port=port, mail_from="a@b.c", timeout_seconds=1
        )
        outcome = within(10, lambda: SmtpMailer(settings).deliver(MAIL))
        assert isinstance(outcome, TransientDeliveryError), outcome
        assert str(outcome).startswith("cannot talk to the SMTP server")
        assert str(outcome).endswith("timed out")


def test_a_message_dropped_after_it_was_sent_says_it_may_have_been_accepted(
    peers: Peers,
) -> None:
    peers.smtp.handler.drop_after_data = True
    with pytest.raises(AmbiguousDeliveryError) as dropped:
        mailer(peers).deliver(MAIL)
    assert str(dropped.value).endswith("; it may have been accepted: not retried")


def self_signed(directory: Path) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 that nobody trusts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


def test_starttls_with_a_certificate_nobody_trusts_sends_nothing(
    peers: Peers, tmp_path: Path
) -> None:
    # GIVEN an SMTP server offering STARTTLS with a self-signed certificate
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = Controller(
        peers.smtp.handler, hostname="127.0.0.1", port=port, tls_context=self_signed(tmp_path)
    )
    server.start()
    try:
        # WHEN an e-mail goes out through it with STARTTLS
        with pytest.raises(TransientDeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            mailer(peers, SMTP_PORT=str(port), SMTP_STARTTLS="true").deliver(MAIL)
    finally:
        server.stop()

    # THEN the certificate was checked, and the message never handed over
    assert peers.smtp.mails == []


# PubNub


class RecordingPubNub(LoopbackServer):
    """A PubNub origin that keeps each request's path and answers ``body``."""

    def __init__(self, status: int = 200, body: bytes = b'[1,"Sent","17000000000000000"]'):
        super().__init__(self._serve)
        self.status, self.body = status, body
        self.paths: list[str] = []

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        self.paths.append(request.path)
        request.send_response(self.status)
        request.send_header("Content-Length", str(len(self.body)))
        request.end_headers()
        request.wfile.write(self.body)


@pytest.fixture
def origin() -> Iterator[Callable[..., RecordingPubNub]]:
    started: list[RecordingPubNub] = []

    def start(status: int = 200, body: bytes = b'[1,"Sent","17000000000000000"]') -> Any:
        started.append(RecordingPubNub(status, body))
        started[-1].start()
        return started[-1]

    yield start
    for server in started:
        server.stop()


def test_a_publish_escapes_every_part_of_its_path_and_keeps_the_origins_path(
    peers: Peers, origin: Callable[..., RecordingPubNub]
) -> None:
    # GIVEN an origin behind a path, and a process id with characters a URL path reserves
    server = origin()
    delivery = Delivery(9, "restaurant/42?#%", "pubnub", "ch13234", 1_800_000_000)

    receipt = publisher(peers, server.url + "/pubnub/").deliver(delivery)

    # THEN the request is /pubnub/publish/{pub}/{sub}/0/{channel}/0/{message}, each part
    # one path segment, and the message arrives intact
    (path,) = server.paths
    route, _, query = path.partition("?")
    *segments, message = route.split("/")
    keys = ["pub-c-test", "sub-c-test"]
    assert segments == ["", "pubnub", "publish", *keys, "0", "ch13234", "0"]
    assert json.loads(urllib.parse.unquote(message)) == message_for(delivery)
    assert query == "uuid=escalator-test"
    # AND the receipt is the timetoken, with the message published
    assert receipt == Receipt("17000000000000000", {"message": json.dumps(message_for(delivery))})


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, AmbiguousDeliveryError),  # PubNub documents no 429 as "not published"
        (499, PermanentDeliveryError),
        (500, AmbiguousDeliveryError),
        (501, AmbiguousDeliveryError),
    ],
)
def test_a_publish_answered_with_an_error_status_is_classified_by_it(
    peers: Peers, origin: Callable[..., RecordingPubNub], status: int, error: type[Exception]
) -> None:
    server = origin(status, b'[0,"Error","0"]')
    with pytest.raises(error, match=f"PubNub answered HTTP {status}"):
        publisher(peers, server.url).deliver(PUBLISH)


def test_a_publish_answered_with_something_that_is_not_json_is_ambiguous(
    peers: Peers, origin: Callable[..., RecordingPubNub]
) -> None:
    server = origin(200, b"<html>published, maybe</html>")
    with pytest.raises(AmbiguousDeliveryError) as unreadable:
        publisher(peers, server.url).deliver(PUBLISH)
    assert str(unreadable.value) == "PubNub answered something that is not JSON"


@pytest.mark.parametrize("answer", [[0, "Invalid", "17000000000000000"], [1, "Sent"], {"a": 1}])
def test_a_publish_answered_with_anything_but_sent_is_permanent(
    peers: Peers, origin: Callable[..., RecordingPubNub], answer: object
) -> None:
    server = origin(200, json.dumps(answer).encode())
    with pytest.raises(PermanentDeliveryError) as refused:
        publisher(peers, server.url).deliver(PUBLISH)
    assert str(refused.value) == f"PubNub did not publish: {answer!r}"


def test_a_publish_dropped_after_it_was_sent_says_it_may_have_been_published(
    peers: Peers,
) -> None:
    peers.pubnub.script.append(DROP)
    with pytest.raises(AmbiguousDeliveryError) as dropped:
        publisher(peers, peers.pubnub.url).deliver(PUBLISH)
    assert str(dropped.value).endswith("; it may have been published: not retried")


# Twilio


def test_a_call_without_a_caller_id_is_permanent_and_never_placed(peers: Peers) -> None:
    notifier = TwilioCalls(phone.load_settings(peers.environment()))
    anonymous = Delivery(7, "restaurant-42", "phone", PHONE, 1_800_000_000)

    with pytest.raises(PermanentDeliveryError) as refused:
        notifier.deliver(anonymous)

    assert str(refused.value) == "no caller id to call from"
    assert peers.twilio.calls == []


def test_a_call_whose_answer_never_came_says_it_may_have_been_placed(peers: Peers) -> None:
    peers.twilio.script.append(DROP)  # the call is placed, the connection drops
    notifier = TwilioCalls(phone.load_settings(peers.environment()))
    call = Delivery(7, "restaurant-42", "phone", PHONE, 1_800_000_000, caller_id="+38512345678")

    with pytest.raises(AmbiguousDeliveryError) as dropped:
        notifier.deliver(call)

    assert str(dropped.value).endswith("the call may have been placed: not retried")
