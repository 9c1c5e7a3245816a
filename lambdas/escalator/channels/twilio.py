"""Twilio, as every channel that goes through it shares it: the account and its secret,
the client, how a failed request is classified, and the status callbacks (their URL,
their signature, and how each channel's are read)."""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import os
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from escalator.channels.base import (
    CallbackReader,
    ProviderSecret,
    ProviderStatuses,
    StatusCallbacks,
    exception_chain,
    failed_tls_handshake,
    innermost,
)
from escalator.config import integer, present, require, with_secret
from escalator.errors import (
    AmbiguousDeliveryError,
    CallbackRefused,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from escalator.model import SignedCallback, StatusReport

if TYPE_CHECKING:
    from twilio.rest import Client

# The account's settings, in every Twilio notifier's environment.
TWILIO_ACCOUNT_SID = "TWILIO_ACCOUNT_SID"
TWILIO_AUTH_TOKEN = "TWILIO_AUTH_TOKEN"  # noqa: S105 - the name of a variable
TWILIO_API_BASE_URL = "TWILIO_API_BASE_URL"
TWILIO_TIMEOUT_SECONDS = "TWILIO_TIMEOUT_SECONDS"
TWILIO_STATUS_CALLBACK_URL = "TWILIO_STATUS_CALLBACK_URL"
SECRET = ProviderSecret(
    name="Twilio",
    variable="TWILIO_SECRET_ARN",
    fields={TWILIO_ACCOUNT_SID: "account_sid", TWILIO_AUTH_TOKEN: "auth_token"},
    generated="auth_token",
)
# What Twilio posts with every status callback, whatever it reports on (its request
# parameters: the account, the numbers and where they are, an error).
REQUEST_PARAMETERS = frozenset(
    {
        *("AccountSid", "ApiVersion", "ErrorCode", "ErrorMessage"),
        *("From", "FromCity", "FromState", "FromZip", "FromCountry"),
        *("To", "ToCity", "ToState", "ToZip", "ToCountry"),
    }
)
NOTIFICATION_PARAMETER = "notification"
TOKEN_PARAMETER = "token"  # noqa: S105 - a query parameter's name
SIGNATURE_HEADER = "x-twilio-signature"
# How an error status answering a request that asks Twilio to act (a POST to Calls or
# Messages) is read. Only a status Twilio documents as "not processed" is retried:
# - 429 is: "An API Request that receives an error 429 response is never processed and is
#   always safe to retry." (https://www.twilio.com/docs/api/errors/20429; the same in
#   https://support.twilio.com/hc/en-us/articles/360044308153).
# - Any other 4xx is a refusal of the request as it stands (400 invalid parameters, 401,
#   403, 404, ...): "No Retries for 4xx (except 429)" (https://support.twilio.com/hc/
#   en-us/articles/48916449686299): recorded failed.
# - A 5xx is not documented as "not processed", so Twilio may have acted on it:
#   500: "Other POST requests - sending an SMS or triggering an outbound call - are not
#   idempotent. If you get a 500 Server Error on these requests, and you retry the
#   request, it is possible for a customer to receive multiple messages or calls from your
#   application." (https://www.twilio.com/docs/api/errors/20500).
#   503: Twilio says only "The requested Twilio Service is temporarily unavailable." and
#   "Try again a few times with exponential back-off"
#   (https://www.twilio.com/docs/api/errors/20503); its retry guide lists 503 with 500,
#   502 and 504 as statuses "generally safe to retry" (the article above), 500 included,
#   which 20500 says may have placed the call: advice to retry, not a statement that the
#   request was not processed, as 20429 makes for 429.
#   502, 504: a gateway's answer; the request may have reached Twilio behind it.
#   So every 5xx (and any status Twilio does not document) is ambiguous: never retried,
#   recorded unknown, settled by the status callback if the call or message exists.
_NOT_ACTED_ON_STATUS = frozenset({429})

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class TwilioAccount:
    """The account a Twilio channel sends through, where its API is, how long a request
    may take, and where Twilio reports on what it was asked to do
    (``status_callback_url``: no reports without it)."""

    account_sid: str
    auth_token: str = field(repr=False)
    api_base_url: str = "https://api.twilio.com"
    timeout_seconds: int = 10
    status_callback_url: str | None = None

    def status_callback(self, notification_id: int) -> str | None:
        """Where Twilio reports on one notification's delivery (``status_callback_for``)."""
        if self.status_callback_url is None:
            return None
        return status_callback_for(self.status_callback_url, notification_id, self.auth_token)


def environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment with the account's SID and token from ``TWILIO_SECRET_ARN``."""
    return with_secret(os.environ if environ is None else environ, SECRET.variable, SECRET.fields)


def account_settings(env: Mapping[str, str], *also_required: str) -> dict[str, Any]:
    """The account's settings in ``env`` (see ``environment``), for a channel's settings
    class; ``ConfigError`` naming what is missing of them and of ``also_required``."""
    require(env, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, *also_required)
    return {
        "account_sid": env[TWILIO_ACCOUNT_SID],
        "auth_token": env[TWILIO_AUTH_TOKEN],
        **present(
            api_base_url=env.get(TWILIO_API_BASE_URL) or None,
            timeout_seconds=integer(env, TWILIO_TIMEOUT_SECONDS),
            status_callback_url=env.get(TWILIO_STATUS_CALLBACK_URL) or None,
        ),
    }


def client(account: TwilioAccount) -> Client:
    """The ``twilio`` client of ``account``, with a fresh connection for every request
    (no pool): a kept-alive connection the server has since closed fails as the request
    is written, which could not be told from a request Twilio took; on a fresh one, only
    connecting can fail before the request."""
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    made = Client(
        account.account_sid,
        account.auth_token,
        http_client=TwilioHttpClient(timeout=account.timeout_seconds, pool_connections=False),
    )
    made.api.base_url = account.api_base_url
    return made


def create(request: Callable[[], T], *, consequence: str) -> T:
    """Run ``request``, which asks Twilio to do something (place a call, send a message).
    Raises ``TransientDeliveryError`` (the request never reached Twilio, or Twilio did not
    take it), ``PermanentDeliveryError`` (Twilio refused it), ``AmbiguousDeliveryError``
    (Twilio may have done it: never retried); ``consequence`` says what it may have done
    (``the call may have been placed``)."""
    import requests
    from twilio.base.exceptions import TwilioRestException

    try:
        return request()
    except TwilioRestException as exc:
        problem = f"Twilio answered HTTP {exc.status} (error {exc.code}): {exc.msg}"
        if exc.status in _NOT_ACTED_ON_STATUS:
            raise TransientDeliveryError(problem) from exc
        if 400 <= exc.status < 500:
            raise PermanentDeliveryError(problem) from exc
        raise AmbiguousDeliveryError(f"{problem}; {consequence}: not retried") from exc
    except requests.RequestException as exc:
        if never_sent(exc):
            raise TransientDeliveryError(f"cannot reach Twilio: {innermost(exc)}") from exc
        raise AmbiguousDeliveryError(
            f"no answer from Twilio after the request was sent ({innermost(exc)}); "
            f"{consequence}: not retried"
        ) from exc


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


def status_callback_for(base_url: str, notification_id: int, auth_token: str) -> str:
    """The callback URL of one delivery: the notification travels in the (signed) URL, so
    a callback finds its notification even when the call's or message's SID was never
    recorded, with a token of ours that binds the id: no re-split of a signed callback
    (Twilio's signature has no separator between the URL and the form) yields another
    valid id."""
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


@dataclass(frozen=True)
class CallbackFormat:
    """How one channel's status callbacks read: ``sid`` and ``status`` name the
    parameters that hold the call's or message's SID and its status, ``duration`` the
    one that holds a call's length; ``parameters`` is what Twilio posts with them beside
    its ``REQUEST_PARAMETERS`` (anything else is refused)."""

    channel: str
    statuses: ProviderStatuses
    sid: str
    status: str
    parameters: frozenset[str]
    duration: str | None = None


def status_callbacks(callback_format: CallbackFormat) -> StatusCallbacks:
    """What a Twilio channel declares of its status callbacks: the receiver checks them
    with the account's auth token (from ``TWILIO_SECRET_ARN`` on AWS)."""

    def reader() -> CallbackReader:
        env = environment()
        require(env, TWILIO_AUTH_TOKEN)
        return TwilioStatusCallbacks(env[TWILIO_AUTH_TOKEN], callback_format)

    return StatusCallbacks(
        statuses=callback_format.statuses,
        url_variable=TWILIO_STATUS_CALLBACK_URL,
        reader=reader,
    )


class TwilioStatusCallbacks:
    """One channel's status callbacks: checked against ``X-Twilio-Signature`` with the
    ``twilio`` library's request validator, then read into a ``StatusReport``."""

    def __init__(self, auth_token: str, callback_format: CallbackFormat) -> None:
        from twilio.request_validator import RequestValidator

        self._auth_token = auth_token
        self._format = callback_format
        self._validator = RequestValidator(auth_token)

    def read(self, callback: SignedCallback) -> StatusReport | None:
        """The report the callback carries; ``None`` when it names no SID of this
        channel's. Raises ``CallbackRefused`` when the signature is missing or wrong, a
        parameter is not one Twilio sends, the URL's notification does not carry its
        token, or the fields are not one of the channel's statuses."""
        spec = self._format
        params = callback.params
        if spec.sid not in params:
            return None
        signature = callback.headers.get(SIGNATURE_HEADER)
        if not signature or not self._validator.validate(callback.url, params, signature):
            raise CallbackRefused("X-Twilio-Signature is missing or does not match")
        unknown = sorted(set(params) - spec.parameters - REQUEST_PARAMETERS)
        if unknown:
            raise CallbackRefused(
                f"parameters Twilio does not send: {', '.join(name[:40] for name in unknown[:5])}"
            )
        sid, status = params[spec.sid], params.get(spec.status)
        if not sid or status not in spec.statuses.order:
            raise CallbackRefused(f"a signed callback that is not a {spec.channel} status")
        duration = params.get(spec.duration, "") if spec.duration else ""
        return StatusReport(
            channel=spec.channel,
            provider_ref=sid,
            status=status,
            reported_at=_reported_at(params.get("Timestamp")),
            notification_id=self._notification_of(callback.url),
            duration_seconds=int(duration) if duration.isdigit() else None,
        )

    def _notification_of(self, url: str) -> int | None:
        """The notification the URL names, checked against its token; ``None`` when it
        names none (the SID then finds it)."""
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


def _reported_at(timestamp: str | None) -> float:
    """Twilio's ``Timestamp`` (RFC 2822) in epoch seconds; now when absent or unreadable
    (a message's callbacks carry none)."""
    if timestamp:
        try:
            return email.utils.parsedate_to_datetime(timestamp).timestamp()
        except (TypeError, ValueError):
            pass
    return time.time()
