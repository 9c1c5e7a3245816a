"""Real protocol peers on loopback: Twilio's Calls and Messages APIs, an SMTP server,
PubNub publish.

Each records what it received and how many requests it was serving at once, and can be
told how to answer next.
"""

from __future__ import annotations

import base64
import email
import email.policy
import email.utils
import errno
import json
import socket
import threading
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler
from typing import Any

import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from devstack.loopback import LoopbackServer


class InFlight:
    """Counts concurrent requests and remembers the highest count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = 0
        self.peak = 0

    @contextmanager
    def request(self) -> Iterator[None]:
        with self._lock:
            self.current += 1
            self.peak = max(self.peak, self.current)
        try:
            yield
        finally:
            with self._lock:
                self.current -= 1


@dataclass
class Call:
    """One request to the Calls API: its form fields, credentials and arrival time."""

    form: dict[str, str]
    account_sid: str
    auth: str
    received_at: float
    status_callback_events: list[str] = field(default_factory=list)
    sid: str = ""  # the call SID the stub answered with (none for a refused call)


# What a peer's ``answer`` returns, instead of a payload, to take the request and hang up
# without answering (as a provider whose connection drops after it acted).
DROP = "drop"


class _HttpPeer(LoopbackServer):
    """A loopback HTTP server answering JSON from ``self.answer``, after ``delay``; an
    answer of ``DROP`` closes the connection without a response. With ``trickle`` set,
    the answer's body goes out one byte every ``trickle`` seconds (each read of the
    client gets a byte in time, so no per-read timeout ever trips)."""

    def __init__(self) -> None:
        super().__init__(self._serve)
        self.in_flight = InFlight()
        self.delay = 0.0
        self.trickle = 0.0

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        with self.in_flight.request():
            if self.delay:
                time.sleep(self.delay)  # a slow provider: the behaviour under test
            status, payload = self.answer(request)
        if payload == DROP:
            request.close_connection = True
            return
        body = json.dumps(payload).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if not self.trickle:
            request.wfile.write(body)
            return
        for byte in range(len(body)):
            request.wfile.write(body[byte : byte + 1])
            request.wfile.flush()
            time.sleep(self.trickle)  # a provider trickling its answer: under test too

    def answer(self, request: BaseHTTPRequestHandler) -> tuple[int, Any]:
        raise NotImplementedError


ACCOUNT_SID = "AC00000000000000000000000000000001"
AUTH_TOKEN = "test-token"  # noqa: S105 - the stub's own, for signing callbacks


@dataclass
class Message:
    """One request to the Messages API: its form fields, credentials and arrival time."""

    form: dict[str, str]
    account_sid: str
    auth: str
    received_at: float
    sid: str = ""  # the message SID the stub answered with (none for a refused message)


@dataclass
class StatusCallback:
    """One status callback the stub posted, and what the endpoint answered (0: none)."""

    sid: str
    status: str
    url: str
    answer: int


class TwilioStub(_HttpPeer):
    """``POST /2010-04-01/Accounts/{sid}/Calls.json`` and ``.../Messages.json``, as the
    ``twilio`` client calls them.

    Answers 201 with a call (message) SID unless ``script`` (``message_script``) holds
    planned answers: ``201``, an HTTP error status (``429``, ``500``, ``503``, ...: the
    request is answered with it and nothing is placed or sent), ``21211`` (HTTP 400,
    invalid 'To' number), or ``DROP`` (the call is placed, the message sent, and the
    connection closes before the answer). ``call_scripts`` holds planned answers for the
    calls to one number (its key), taken before ``script``. A call or message with a
    ``StatusCallback`` can be reported on (``report``, ``report_message``), signed with
    the account's auth token as Twilio signs; with ``auto_report`` set, each accepted
    call is reported through those statuses in the background, as Twilio would, and each
    accepted message is, through ``message_reports`` (``sent``, then ``delivered``).
    """

    def __init__(self, auth_token: str = AUTH_TOKEN) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self.refused: list[Call] = []
        self.script: deque[int | str] = deque()
        self.call_scripts: dict[str, deque[int | str]] = {}
        self.callbacks: list[StatusCallback] = []
        self.auto_report: tuple[str, ...] = ()
        self.messages: list[Message] = []
        self.refused_messages: list[Message] = []
        self.message_script: deque[int | str] = deque()
        self.message_callbacks: list[StatusCallback] = []
        self.message_reports: tuple[str, ...] = ("sent", "delivered")
        self.auth_token = auth_token
        self._lock = threading.Lock()

    def environment(self) -> dict[str, str]:
        """The Twilio channels' settings pointing at this stub."""
        return {
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": self.auth_token,
            "TWILIO_URL": "https://restaurant.example.com/twiml/escalation.xml",
            "TWILIO_API_BASE_URL": self.url,
            "SMS_BODY": "An order is waiting for your confirmation.",
        }

    def report(self, call: Call, status: str, *, duration: int | None = None) -> int:
        """Post a signed status callback for ``call``; the endpoint's HTTP status."""
        url, params, signature = self.signed_callback(call, status, duration=duration)
        answer = self.post_callback(url, params, signature)
        with self._lock:
            self.callbacks.append(StatusCallback(call.sid, status, url, answer))
        return answer

    def report_message(self, message: Message, status: str) -> int:
        """Post a signed status callback for ``message``; the endpoint's HTTP status."""
        url, params, signature = self.signed_message_callback(message, status)
        answer = self.post_callback(url, params, signature)
        with self._lock:
            self.message_callbacks.append(StatusCallback(message.sid, status, url, answer))
        return answer

    def post_callback(self, url: str, params: dict[str, str], signature: str) -> int:
        """Post a status callback as Twilio does; the endpoint's HTTP status (0 when it
        could not be reached: the endpoint is gone)."""
        try:
            return requests.post(
                url, data=params, headers={"X-Twilio-Signature": signature}, timeout=30
            ).status_code
        except requests.ConnectionError:
            return 0

    def signed_callback(
        self, call: Call, status: str, *, duration: int | None = None, url: str | None = None
    ) -> tuple[str, dict[str, str], str]:
        """The URL, form and signature of a status callback for ``call`` (to
        ``StatusCallback`` unless ``url`` is given), signed as Twilio signs."""
        url = url or call.form["StatusCallback"]
        params = {
            "AccountSid": call.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": call.sid,
            "CallStatus": status,
            "CallbackSource": "call-progress-events",
            "Direction": "outbound-api",
            "From": call.form.get("From", ""),
            "To": call.form.get("To", ""),
            "Timestamp": email.utils.formatdate(usegmt=True),
        }
        if duration is not None:
            params["CallDuration"] = str(duration)
        return url, params, self.signature(url, params)

    def signed_message_callback(
        self, message: Message, status: str, *, url: str | None = None
    ) -> tuple[str, dict[str, str], str]:
        """The URL, form and signature of a status callback for ``message``, as Twilio
        posts it: a carrier's receipt date once delivered or not, an error code once it
        failed."""
        url = url or message.form["StatusCallback"]
        params = {
            "AccountSid": message.account_sid,
            "ApiVersion": "2010-04-01",
            "MessageSid": message.sid,
            "MessageStatus": status,
            "SmsSid": message.sid,
            "SmsStatus": status,
            "From": message.form.get("From", ""),
            "To": message.form.get("To", ""),
        }
        if status in ("delivered", "undelivered"):
            params["RawDlrDoneDate"] = time.strftime("%y%m%d%H%M", time.gmtime())
        if status in ("undelivered", "failed"):
            params["ErrorCode"] = "30003"
        return url, params, self.signature(url, params)

    def signature(self, url: str, params: dict[str, str]) -> str:
        """``X-Twilio-Signature`` of a request, computed with the account's auth token."""
        from twilio.request_validator import RequestValidator

        return str(RequestValidator(self.auth_token).compute_signature(url, params))

    def _plan(
        self, script: deque[int | str], taken: list[Any], refused: list[Any], item: Any
    ) -> Any:
        """The next planned answer (201 unless ``script`` says otherwise); ``item`` is
        kept among those taken or those refused."""
        with self._lock:
            plan = script.popleft() if script else 201
            (taken if plan in (201, DROP) else refused).append(item)
        return plan

    @staticmethod
    def _in_background(report: Callable[[str], int], statuses: tuple[str, ...]) -> None:
        """Report each of ``statuses`` in turn, unprompted, as Twilio does."""

        def report_all() -> None:
            for status in statuses:
                report(status)

        threading.Thread(target=report_all, daemon=True).start()

    def answer(self, request: BaseHTTPRequestHandler) -> tuple[int, Any]:
        parts = request.path.split("/")
        if request.command != "POST" or len(parts) != 5:
            return 404, {"code": 20404, "message": "not found", "status": 404}
        if parts[4] == "Calls.json":
            return self._call(request, parts[3])
        if parts[4] == "Messages.json":
            return self._message(request, parts[3])
        return 404, {"code": 20404, "message": "not found", "status": 404}

    def _call(self, request: BaseHTTPRequestHandler, account_sid: str) -> tuple[int, Any]:
        pairs, auth = _form_and_auth(request)
        form = {key: value for key, value in pairs if key != "StatusCallbackEvent"}
        call = Call(
            form=form,
            account_sid=account_sid,
            auth=auth,
            received_at=time.time(),
            status_callback_events=[value for key, value in pairs if key == "StatusCallbackEvent"],
        )
        script = self.call_scripts.get(form.get("To", "")) or self.script
        plan = self._plan(script, self.calls, self.refused, call)
        if plan not in (201, DROP):
            return _refusal(plan, form)
        sid = call.sid = f"CA{uuid.uuid4().hex}"
        if self.auto_report and "StatusCallback" in form:
            self._in_background(
                lambda status: self.report(
                    call, status, duration=7 if status == "completed" else None
                ),
                self.auto_report,
            )
        if plan == DROP:
            return 0, DROP
        return 201, {"sid": sid, "status": "queued", "to": form.get("To"), "from": form.get("From")}

    def _message(self, request: BaseHTTPRequestHandler, account_sid: str) -> tuple[int, Any]:
        pairs, auth = _form_and_auth(request)
        form = dict(pairs)
        message = Message(form=form, account_sid=account_sid, auth=auth, received_at=time.time())
        plan = self._plan(self.message_script, self.messages, self.refused_messages, message)
        if plan not in (201, DROP):
            return _refusal(plan, form)
        sid = message.sid = f"SM{uuid.uuid4().hex}"
        if self.message_reports and "StatusCallback" in form:
            self._in_background(
                lambda status: self.report_message(message, status), self.message_reports
            )
        if plan == DROP:
            return 0, DROP
        return 201, {
            "sid": sid,
            "account_sid": account_sid,
            "api_version": "2010-04-01",
            "status": "queued",
            "direction": "outbound-api",
            "to": form.get("To"),
            "from": form.get("From"),
            "body": form.get("Body"),
            "num_segments": "1",
            "error_code": None,
            "error_message": None,
        }


def _form_and_auth(request: BaseHTTPRequestHandler) -> tuple[list[tuple[str, str]], str]:
    """The form fields of a request to Twilio's API, in order, and its Basic credentials."""
    length = int(request.headers.get("Content-Length", "0"))
    pairs = urllib.parse.parse_qsl(request.rfile.read(length).decode())
    auth = base64.b64decode(request.headers.get("Authorization", "Basic ").split()[1]).decode()
    return pairs, auth


def _refusal(plan: int | str, form: dict[str, str]) -> tuple[int, Any]:
    """Twilio's answer to a request it did not take: an invalid 'To' number (21211), or
    the HTTP status ``plan`` names."""
    if plan == 21211:
        message = f"The 'To' number {form.get('To')} is not a valid phone number."
        return 400, {"code": 21211, "message": message, "status": 400}
    status = int(plan)
    # Twilio's error codes for these statuses: 20429 Too Many Requests, 20503 Service
    # unavailable, 20500 Internal Server Error.
    code = {429: 20429, 503: 20503}.get(status, 20500)
    return status, {"code": code, "message": "try later", "status": status}


@dataclass
class Publication:
    channel: str
    message: Any
    publish_key: str
    subscribe_key: str
    uuid: str
    received_at: float


class PubNubStub(_HttpPeer):
    """``GET /publish/{pub}/{sub}/0/{channel}/0/{message}?uuid=...``, answering a timetoken;
    ``script`` may plan a ``DROP`` (published, then the connection closes unanswered)."""

    def __init__(self) -> None:
        super().__init__()
        self.publications: list[Publication] = []
        self.script: deque[str] = deque()
        self._lock = threading.Lock()

    def answer(self, request: BaseHTTPRequestHandler) -> tuple[int, Any]:
        path, _, query = request.path.partition("?")
        parts = [urllib.parse.unquote(part) for part in path.split("/")]
        if len(parts) != 8 or parts[1] != "publish":
            return 400, [0, "Invalid", "0"]
        publication = Publication(
            channel=parts[5],
            message=json.loads(parts[7]),
            publish_key=parts[2],
            subscribe_key=parts[3],
            uuid=dict(urllib.parse.parse_qsl(query)).get("uuid", ""),
            received_at=time.time(),
        )
        with self._lock:
            self.publications.append(publication)
            plan = self.script.popleft() if self.script else None
        if plan == DROP:
            return 0, DROP
        return 200, [1, "Sent", str(time.time_ns() // 100)]


@dataclass
class Mail:
    mail_from: str
    recipients: list[str]
    message: EmailMessage
    received_at: float


@dataclass
class _MailHandler:
    mails: list[Mail] = field(default_factory=list)
    in_flight: InFlight = field(default_factory=InFlight)
    rcpt_reply: str | None = None  # e.g. "450 4.2.1 Mailbox busy" to refuse recipients
    # Keep the next message, then hang up instead of answering it (the reply to DATA
    # never comes); hang up when the client says QUIT.
    drop_after_data: bool = False
    drop_on_quit: bool = False

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.in_flight.request():
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            self.mails.append(
                Mail(envelope.mail_from, list(envelope.rcpt_tos), message, time.time())
            )
        if self.drop_after_data:
            self.drop_after_data = False
            server.transport.abort()
        return "250 Message accepted for delivery"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        if self.drop_on_quit:
            server.transport.abort()
        return "221 Bye"


# How many free ports the SMTP peer tries before it gives up.
PORT_ATTEMPTS = 5


class SmtpPeer:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it accepts.

    With ``login=(user, password)`` it offers AUTH (without TLS) and refuses other logins.
    """

    def __init__(self, login: tuple[str, str] | None = None) -> None:
        self._handler = _MailHandler()
        self._options: dict[str, Any] = {}
        if login is not None:

            def authenticate(
                server: Any, session: Any, envelope: Any, mechanism: str, data: Any
            ) -> AuthResult:
                ok = (data.login.decode(), data.password.decode()) == login
                return AuthResult(success=ok, handled=False)

            self._options = {"authenticator": authenticate, "auth_require_tls": False}
        self._controller = self._on_a_free_port()

    def _on_a_free_port(self) -> Controller:
        # (aiosmtpd needs the port before it listens: a free one, which another socket
        # of this machine may take before it binds; ``start`` then tries another)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        return Controller(self._handler, hostname="127.0.0.1", port=self.port, **self._options)

    @property
    def handler(self) -> _MailHandler:
        return self._handler

    @property
    def mails(self) -> list[Mail]:
        return self._handler.mails

    @property
    def in_flight(self) -> InFlight:
        return self._handler.in_flight

    def start(self) -> None:
        for _ in range(PORT_ATTEMPTS - 1):
            try:
                self._controller.start()
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                self._controller = self._on_a_free_port()
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


@dataclass
class Peers:
    twilio: TwilioStub
    smtp: SmtpPeer
    pubnub: PubNubStub

    def environment(self) -> dict[str, str]:
        """The notifiers' settings pointing at these peers."""
        return {
            **self.twilio.environment(),
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.smtp.port),
            "SMTP_STARTTLS": "false",
            "MAIL_FROM": "escalator@roomorders.example.com",
            "MAIL_SUBJECT": "Order waiting",
            "MAIL_BODY": "An order is waiting for your confirmation.",
            "PUBNUB_PUB_KEY": "pub-c-test",
            "PUBNUB_SUB_KEY": "sub-c-test",
            "PUBNUB_UUID": "escalator-test",
            "PUBNUB_ORIGIN": self.pubnub.url,
        }


@contextmanager
def running_peers() -> Iterator[Peers]:
    peers = Peers(twilio=TwilioStub(), smtp=SmtpPeer(), pubnub=PubNubStub())
    for peer in (peers.twilio, peers.smtp, peers.pubnub):
        peer.start()
    try:
        yield peers
    finally:
        for peer in (peers.twilio, peers.smtp, peers.pubnub):
            peer.stop()
