"""PubNub messages; the destination is a channel name."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from escalator.channels.base import Channel, Notifier, ProviderSecret, innermost
from escalator.config import integer, present, require, with_secret
from escalator.errors import (
    AmbiguousDeliveryError,
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from escalator.model import Delivery, Receipt

# The notifier's environment.
PUBNUB_PUB_KEY = "PUBNUB_PUB_KEY"
PUBNUB_SUB_KEY = "PUBNUB_SUB_KEY"
PUBNUB_UUID = "PUBNUB_UUID"
PUBNUB_ORIGIN = "PUBNUB_ORIGIN"
PUBNUB_TIMEOUT_SECONDS = "PUBNUB_TIMEOUT_SECONDS"
SECRET = ProviderSecret(
    name="PubNub",
    variable="PUBNUB_SECRET_ARN",
    fields={PUBNUB_PUB_KEY: "publish_key", PUBNUB_SUB_KEY: "subscribe_key"},
    generated="publish_key",
)

MAX_CHANNEL_NAME = 92
# PubNub reserves these for channel groups, wildcards and multiplexing.
_RESERVED = set(",:*/\\")


def target_problem(name: str) -> str | None:
    """Why ``name`` is not a usable PubNub channel name, or ``None``."""
    if not name.strip():
        return "is empty"
    if len(name) > MAX_CHANNEL_NAME:
        return f"is longer than {MAX_CHANNEL_NAME} characters"
    if any(char in _RESERVED or not char.isprintable() or char.isspace() for char in name):
        return "contains a character PubNub does not allow (space, control, or one of , : * / \\)"
    return None


@dataclass(frozen=True)
class PubNubSettings:
    """PubNub publish over its REST API."""

    publish_key: str = field(repr=False)
    subscribe_key: str
    uuid: str = "escalator"
    origin: str = "https://ps.pndsn.com"
    timeout_seconds: int = 10


def load_settings(environ: Mapping[str, str] | None = None) -> PubNubSettings:
    """PubNub settings; the keys may come from ``PUBNUB_SECRET_ARN``."""
    env = with_secret(os.environ if environ is None else environ, SECRET.variable, SECRET.fields)
    require(env, PUBNUB_PUB_KEY, PUBNUB_SUB_KEY)
    return PubNubSettings(
        publish_key=env[PUBNUB_PUB_KEY],
        subscribe_key=env[PUBNUB_SUB_KEY],
        **present(
            uuid=env.get(PUBNUB_UUID) or None,
            origin=env.get(PUBNUB_ORIGIN) or None,
            timeout_seconds=integer(env, PUBNUB_TIMEOUT_SECONDS),
        ),
    )


def message_for(delivery: Delivery) -> dict[str, object]:
    """What is published: enough for a subscriber to find the order's restaurant."""
    return {
        "type": "escalation",
        "process-id": delivery.process_id,
        "notification-id": delivery.notification_id,
        "at": delivery.due_at,
    }


class PubNubPublisher:
    """Publishes with PubNub's REST API (``GET /publish/...``), answering a timetoken.

    Each publish connects first and only then sends the request, so a failure to
    connect (never sent: retried) is told apart from one after the request was written
    (PubNub may have published it: never retried, recorded unknown).
    """

    def __init__(self, settings: PubNubSettings) -> None:
        self._settings = settings
        origin = urllib.parse.urlsplit(settings.origin)
        if origin.scheme not in ("https", "http") or not origin.hostname:
            raise ConfigError(f"{PUBNUB_ORIGIN} must be an http(s) URL, not {settings.origin!r}")
        self._origin = origin

    def deliver(self, delivery: Delivery) -> Receipt:
        """Publish. Raises ``TransientDeliveryError``, ``PermanentDeliveryError``,
        ``AmbiguousDeliveryError``."""
        settings = self._settings
        message = message_for(delivery)
        path = "/".join(
            urllib.parse.quote(part, safe="")
            for part in (
                "publish",
                settings.publish_key,
                settings.subscribe_key,
                "0",
                delivery.target,
                "0",
                json.dumps(message, separators=(",", ":")),
            )
        )
        query = urllib.parse.urlencode({"uuid": settings.uuid})
        connection = self._connection()
        try:
            try:
                connection.connect()
            except OSError as exc:  # refused, unreachable, DNS, TLS handshake, timeout
                raise TransientDeliveryError(f"cannot reach PubNub: {innermost(exc)}") from exc
            try:
                connection.request("GET", f"{self._origin.path.rstrip('/')}/{path}?{query}")
                response = connection.getresponse()
                status, body = response.status, response.read()
            except (OSError, http.client.HTTPException) as exc:
                raise AmbiguousDeliveryError(
                    f"no answer from PubNub after the publish was sent ({innermost(exc)}); "
                    "it may have been published: not retried"
                ) from exc
        finally:
            connection.close()
        if status != 200:
            raise _error_status(status)
        try:
            answer = json.loads(body)
        except ValueError as exc:
            raise AmbiguousDeliveryError("PubNub answered something that is not JSON") from exc
        if not (isinstance(answer, list) and len(answer) == 3 and answer[0] == 1):
            raise PermanentDeliveryError(f"PubNub did not publish: {answer!r:.200}")
        return Receipt(provider_ref=str(answer[2]), detail={"message": json.dumps(message)})

    def _connection(self) -> http.client.HTTPConnection:
        timeout = self._settings.timeout_seconds
        host, port = self._origin.hostname or "", self._origin.port
        if self._origin.scheme == "https":
            context = ssl.create_default_context()
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        return http.client.HTTPConnection(host, port, timeout=timeout)


def _error_status(status: int) -> DeliveryError:
    """What a publish answered with ``status`` (not 200) became. PubNub documents no
    status as "not published", so none is retried:

    - 503: "Request processing exceeded the maximum allowed time. Retry the request."
      (https://www.pubnub.com/docs/general/resources/troubleshooting): the publish was
      being processed when the answer was given up, and may have gone out.
    - 429: PubNub's status tables list none; its limits page says only that requests
      "can be throttled" (https://www.pubnub.com/docs/platform/resources/limits), not that a
      throttled publish was not published.
    - Any other 5xx: a server or a gateway failed while the request was in its hands.

    Those are ambiguous (recorded unknown). A 4xx otherwise is a refusal of the request
    as it stands: "Errors specific to Publish will occur when the URL (for example,
    message payload) is too large (>=32K) and invalid publish and/or subscribe keys are
    used." (https://www.pubnub.com/docs/sdks/rest-api/publish-introduction), 403 "Not
    authorized" (the troubleshooting page): recorded failed.
    """
    problem = f"PubNub answered HTTP {status}"
    if 400 <= status < 500 and status != 429:
        return PermanentDeliveryError(problem)
    return AmbiguousDeliveryError(f"{problem}; it may have been published: not retried")


def _notifier() -> Notifier:
    return PubNubPublisher(load_settings())


CHANNEL = Channel(
    name="pubnub",
    target_field="pubnub-channel",
    target_problem=target_problem,
    task_name="Publish to PubNub",
    notifier=_notifier,
    secret=SECRET,
    settings={"pubnub_origin": PUBNUB_ORIGIN, "pubnub_uuid": PUBNUB_UUID},
)
