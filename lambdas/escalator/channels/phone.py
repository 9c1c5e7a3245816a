"""Phone calls through Twilio; the destination is an E.164 number."""

from __future__ import annotations

import email.utils
import functools
import hashlib
import hmac
import os
import re
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

import phonenumbers

from escalator.channels.base import (
    Channel,
    Notifier,
    ProviderSecret,
    exception_chain,
    failed_tls_handshake,
    innermost,
)
from escalator.config import integer, present, require, with_secret
from escalator.errors import (
    AmbiguousDeliveryError,
    CallbackRefused,
    ConfigError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from escalator.model import (
    CALL_STATUSES,
    CallStatusReport,
    Delivery,
    Receipt,
    SignedCallback,
)

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
NOTIFICATION_PARAMETER = "notification"
TOKEN_PARAMETER = "token"  # noqa: S105 - a query parameter's name
# What Twilio posts to a call's status callback (its request parameters, the status
# callback's own and those of answering machine detection): anything else is refused.
CALLBACK_PARAMETERS = frozenset(
    {
        *("AccountSid", "ApiVersion", "CallSid", "CallStatus", "CallToken", "Direction"),
        *("ForwardedFrom", "CallerName", "ParentCallSid", "StirVerstat", "StirStatus"),
        *("From", "FromCity", "FromState", "FromZip", "FromCountry"),
        *("To", "ToCity", "ToState", "ToZip", "ToCountry"),
        *("Caller", "CallerCity", "CallerState", "CallerZip", "CallerCountry"),
        *("Called", "CalledCity", "CalledState", "CalledZip", "CalledCountry"),
        *("CallDuration", "Duration", "Timestamp", "CallbackSource", "SequenceNumber"),
        *("SipResponseCode", "RecordingUrl", "RecordingSid", "RecordingDuration"),
        *("AnsweredBy", "MachineDetectionDuration", "QueueTime", "ErrorCode", "ErrorMessage"),
    }
)
# Twilio answers these when it did not take the request: worth another try.
_TRANSIENT_STATUS = frozenset({429, 503})
# A server or gateway error: Twilio (or whatever stands before it) may have placed the call.
_AMBIGUOUS_STATUS = frozenset({500, 502, 504})

# The notifier's environment.
TWILIO_ACCOUNT_SID = "TWILIO_ACCOUNT_SID"
TWILIO_AUTH_TOKEN = "TWILIO_AUTH_TOKEN"  # noqa: S105 - the name of a variable
TWILIO_URL = "TWILIO_URL"
TWILIO_API_BASE_URL = "TWILIO_API_BASE_URL"
TWILIO_TIMEOUT_SECONDS = "TWILIO_TIMEOUT_SECONDS"
TWILIO_METHOD = "TWILIO_METHOD"
TWILIO_STATUS_CALLBACK_URL = "TWILIO_STATUS_CALLBACK_URL"
TWIML_METHODS = ("GET", "POST")
# Every status change Twilio can report (queued is implied): each one is a callback.
STATUS_CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")
SECRET = ProviderSecret(
    name="Twilio",
    variable="TWILIO_SECRET_ARN",
    fields={TWILIO_ACCOUNT_SID: "account_sid", TWILIO_AUTH_TOKEN: "auth_token"},
    generated="auth_token",
)


@dataclass(frozen=True)
class TwilioSettings:
    """Phone calls: ``Client.calls.create(to, from_=caller id, url=TWILIO_URL)``.

    Twilio fetches the TwiML with ``twiml_method`` (GET, as the original asked: a static
    file on S3 or a CDN refuses POST) and reports the call's progress to
    ``status_callback_url`` when one is set.
    """

    account_sid: str
    auth_token: str = field(repr=False)
    twiml_url: str
    api_base_url: str = "https://api.twilio.com"
    timeout_seconds: int = 10
    twiml_method: str = "GET"
    status_callback_url: str | None = None

    def __post_init__(self) -> None:
        if self.twiml_method not in TWIML_METHODS:
            raise ConfigError(f"{TWILIO_METHOD} must be GET or POST, not {self.twiml_method!r}")


def load_settings(environ: Mapping[str, str] | None = None) -> TwilioSettings:
    """Twilio settings; the account SID and token may come from ``TWILIO_SECRET_ARN``."""
    env = with_secret(os.environ if environ is None else environ, SECRET.variable, SECRET.fields)
    require(env, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_URL)
    return TwilioSettings(
        account_sid=env[TWILIO_ACCOUNT_SID],
        auth_token=env[TWILIO_AUTH_TOKEN],
        twiml_url=env[TWILIO_URL],
        **present(
            api_base_url=env.get(TWILIO_API_BASE_URL) or None,
            timeout_seconds=integer(env, TWILIO_TIMEOUT_SECONDS),
            twiml_method=(env.get(TWILIO_METHOD) or "").upper() or None,
            status_callback_url=env.get(TWILIO_STATUS_CALLBACK_URL) or None,
        ),
    )


def status_callback_for(base_url: str, notification_id: int, auth_token: str) -> str:
    """The callback URL of one call: the notification travels in the (signed) URL, so a
    callback finds its notification even when the call's SID was never recorded, with a
    token of ours that binds the id: no re-split of a signed callback (Twilio's signature
    has no separator between the URL and the form) yields another valid id."""
    separator = "&" if "?" in base_url else "?"
    return (
        f"{base_url}{separator}{NOTIFICATION_PARAMETER}={notification_id}"
        f"&{TOKEN_PARAMETER}={callback_token(auth_token, notification_id)}"
    )


def callback_token(auth_token: str, notification_id: int) -> str:
    """An HMAC of the notification id, keyed with the account's auth token (which the
    notifier and the receiver hold, and nobody who only saw a callback does)."""
    message = f"escalator-status-callback:{notification_id}".encode()
    return hmac.new(auth_token.encode(), message, hashlib.sha256).hexdigest()[:32]


# Pure, and restaurants send the same destinations order after order.
@functools.lru_cache(maxsize=4096)
def target_problem(number: str) -> str | None:
    """Why ``number`` cannot be an E.164 phone number, or ``None``.

    Only what no number can be is refused here: number plans change faster than any
    library's metadata, so whether a possible number exists is Twilio's to say.
    """
    if not _E164.fullmatch(number):
        return "is not an E.164 phone number (+ and up to 15 digits)"
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return "is not a possible phone number (no such country code)"
    if not phonenumbers.is_possible_number(parsed):
        return "is not a possible phone number (wrong length for its country)"
    return None


class TwilioCalls:
    """Places calls with the ``twilio`` client; the call plays the TwiML at ``TWILIO_URL``."""

    def __init__(self, settings: TwilioSettings) -> None:
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        self._settings = settings
        # A fresh connection for every call (no pool): a kept-alive connection the server
        # has since closed fails as the request is written, which could not be told from
        # a call Twilio took; on a fresh one, only connecting can fail before the request.
        self._client = Client(
            settings.account_sid,
            settings.auth_token,
            http_client=TwilioHttpClient(timeout=settings.timeout_seconds, pool_connections=False),
        )
        self._client.api.base_url = settings.api_base_url

    def deliver(self, delivery: Delivery) -> Receipt:
        """Place the call. Raises ``TransientDeliveryError`` (the request never reached
        Twilio, or Twilio did not take it), ``PermanentDeliveryError`` (Twilio refused it),
        ``AmbiguousDeliveryError`` (Twilio may have placed it: never retried)."""
        import requests
        from twilio.base.exceptions import TwilioRestException

        if not delivery.caller_id:
            raise PermanentDeliveryError("no caller id to call from")
        try:
            call = self._client.calls.create(
                to=delivery.target,
                from_=delivery.caller_id,
                url=self._settings.twiml_url,
                method=self._settings.twiml_method,
                **self._status_callback(delivery),
            )
        except TwilioRestException as exc:
            problem = f"Twilio answered HTTP {exc.status} (error {exc.code}): {exc.msg}"
            if exc.status in _TRANSIENT_STATUS:
                raise TransientDeliveryError(problem) from exc
            if exc.status in _AMBIGUOUS_STATUS:
                raise AmbiguousDeliveryError(f"{problem}; the call may have been placed") from exc
            raise PermanentDeliveryError(problem) from exc
        except requests.RequestException as exc:
            if never_sent(exc):
                raise TransientDeliveryError(f"cannot reach Twilio: {innermost(exc)}") from exc
            raise AmbiguousDeliveryError(
                f"no answer from Twilio after the request was sent ({innermost(exc)}); "
                "the call may have been placed: not retried"
            ) from exc
        return Receipt(
            provider_ref=str(call.sid),
            detail={"from": delivery.caller_id, "url": self._settings.twiml_url},
        )

    def _status_callback(self, delivery: Delivery) -> dict[str, object]:
        base_url = self._settings.status_callback_url
        if base_url is None:
            return {}
        return {
            "status_callback": status_callback_for(
                base_url, delivery.notification_id, self._settings.auth_token
            ),
            "status_callback_method": "POST",
            "status_callback_event": list(STATUS_CALLBACK_EVENTS),
        }


@dataclass(frozen=True)
class TwilioCallbackSettings:
    """What checking Twilio's signatures takes: the account's auth token."""

    auth_token: str = field(repr=False)


def load_callback_settings(environ: Mapping[str, str] | None = None) -> TwilioCallbackSettings:
    """The auth token, from ``TWILIO_SECRET_ARN`` on AWS."""
    env = with_secret(os.environ if environ is None else environ, SECRET.variable, SECRET.fields)
    require(env, TWILIO_AUTH_TOKEN)
    return TwilioCallbackSettings(auth_token=env[TWILIO_AUTH_TOKEN])


class TwilioStatusCallbacks:
    """Twilio's status callbacks: checked against ``X-Twilio-Signature`` with the
    ``twilio`` library's request validator, then read into a ``CallStatusReport``."""

    def __init__(self, settings: TwilioCallbackSettings) -> None:
        from twilio.request_validator import RequestValidator

        self._auth_token = settings.auth_token
        self._validator = RequestValidator(settings.auth_token)

    def verify(self, callback: SignedCallback) -> CallStatusReport:
        """The report the callback carries. Raises ``CallbackRefused`` when the signature
        is missing or wrong, a parameter is not one Twilio sends, the URL's notification
        does not carry its token, or the fields are not a call status."""
        if not callback.signature or not self._validator.validate(
            callback.url, callback.params, callback.signature
        ):
            raise CallbackRefused("X-Twilio-Signature is missing or does not match")
        params = callback.params
        unknown = sorted(set(params) - CALLBACK_PARAMETERS)
        if unknown:
            raise CallbackRefused(
                f"parameters Twilio does not send: {', '.join(name[:40] for name in unknown[:5])}"
            )
        sid, status = params.get("CallSid"), params.get("CallStatus")
        if not sid or status not in CALL_STATUSES:
            raise CallbackRefused("a signed callback that is not a call status")
        duration = params.get("CallDuration", "")
        return CallStatusReport(
            call_sid=sid,
            status=status,
            reported_at=_reported_at(params.get("Timestamp")),
            notification_id=self._notification_of(callback.url),
            duration_seconds=int(duration) if duration.isdigit() else None,
        )

    def _notification_of(self, url: str) -> int | None:
        """The notification the URL names, checked against its token; ``None`` when it
        names none (the call's SID then finds it)."""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query, keep_blank_values=True)
        ids, tokens = query.get(NOTIFICATION_PARAMETER, []), query.get(TOKEN_PARAMETER, [])
        if not ids and not tokens:
            return None
        if len(ids) != 1 or len(tokens) != 1 or not ids[0].isdigit():
            raise CallbackRefused("the callback URL names its notification wrongly")
        notification_id = int(ids[0])
        if not hmac.compare_digest(tokens[0], callback_token(self._auth_token, notification_id)):
            raise CallbackRefused("the callback URL's token does not match its notification")
        return notification_id


def never_sent(exc: BaseException) -> bool:
    """Whether a ``requests`` error provably happened before the request was written:
    connecting failed (refused, unreachable, DNS, a connect timeout) or the TLS handshake
    did. A connection that dropped or timed out later (the request may have arrived)
    does not count, nor does a TLS error while reading the answer."""
    from requests.exceptions import ConnectTimeout
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    before_the_request = (ConnectTimeout, NewConnectionError, ConnectTimeoutError)
    return failed_tls_handshake(exc) or any(
        isinstance(cause, before_the_request) for cause in exception_chain(exc)
    )


def _reported_at(timestamp: str | None) -> float:
    """Twilio's ``Timestamp`` (RFC 2822) in epoch seconds; now when absent or unreadable."""
    if timestamp:
        try:
            return email.utils.parsedate_to_datetime(timestamp).timestamp()
        except (TypeError, ValueError):
            pass
    return time.time()


def _notifier() -> Notifier:
    return TwilioCalls(load_settings())


CHANNEL = Channel(
    name="phone",
    target_field="phone-number",
    target_problem=target_problem,
    task_name="Call phone",
    notifier=_notifier,
    calls_from_caller_id=True,
    secret=SECRET,
    settings={"twilio_url": TWILIO_URL, "twilio_method": TWILIO_METHOD},
)
