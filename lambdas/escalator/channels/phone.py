"""Phone calls through Twilio; the destination is an E.164 number."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import phonenumbers

from escalator.channels.base import Channel, Notifier
from escalator.errors import PermanentDeliveryError, TransientDeliveryError
from escalator.model import Delivery, Receipt

if TYPE_CHECKING:
    from escalator.config import TwilioSettings

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
# Twilio answers these when it did not take the request: worth another try.
_TRANSIENT_STATUS = frozenset({429, 503})
CALLER_ID_REGISTRY = "caller-id-registry"


# Pure, and restaurants send the same destinations order after order.
@functools.lru_cache(maxsize=4096)
def target_problem(number: str) -> str | None:
    """Why ``number`` is not a valid E.164 phone number, or ``None``."""
    if not _E164.fullmatch(number):
        return "is not an E.164 phone number (+ and up to 15 digits)"
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return "is not a valid E.164 phone number"
    if not phonenumbers.is_valid_number(parsed):
        return "is not a valid E.164 phone number"
    return None


class CallerIdError(ValueError):
    """No caller id can be chosen for a destination."""


def choose_caller_id(registry_json: str | None, number: str) -> str:
    """The caller id for ``number``: the entry with the longest prefix of it, else ``default``.

    The registry is the JSON object under ``caller-id-registry`` in the ``property``
    table, e.g. ``{"default": "+12025550123", "+385": "+38512345678"}``; a prefix without
    a leading ``+`` is read as if it had one. Raises ``CallerIdError`` with a reason.
    """
    if registry_json is None:
        raise CallerIdError(f"there is no {CALLER_ID_REGISTRY} property")
    try:
        registry: Any = json.loads(registry_json)
    except json.JSONDecodeError:
        raise CallerIdError(f"the {CALLER_ID_REGISTRY} property is not valid JSON") from None
    if not isinstance(registry, Mapping):
        raise CallerIdError(f"the {CALLER_ID_REGISTRY} property is not a JSON object")
    matches = [
        (len(prefix), caller_id)
        for key, caller_id in registry.items()
        if key != "default" and isinstance(caller_id, str)
        for prefix in [key if key.startswith("+") else f"+{key}"]
        if number.startswith(prefix)
    ]
    if matches:
        return max(matches)[1]
    default = registry.get("default")
    if isinstance(default, str) and default:
        return default
    raise CallerIdError(
        f"no prefix in {CALLER_ID_REGISTRY} matches the number and there is no default"
    )


class TwilioCalls:
    """Places calls with the ``twilio`` client; the call plays the TwiML at ``TWILIO_URL``."""

    def __init__(self, settings: TwilioSettings) -> None:
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        self._settings = settings
        self._client = Client(
            settings.account_sid,
            settings.auth_token,
            http_client=TwilioHttpClient(timeout=settings.timeout_seconds),
        )
        self._client.api.base_url = settings.api_base_url

    def deliver(self, delivery: Delivery) -> Receipt:
        """Place the call. Raises ``TransientDeliveryError``, ``PermanentDeliveryError``."""
        import requests
        from twilio.base.exceptions import TwilioRestException

        if not delivery.caller_id:
            raise PermanentDeliveryError("no caller id to call from")
        try:
            call = self._client.calls.create(
                to=delivery.target, from_=delivery.caller_id, url=self._settings.twiml_url
            )
        except TwilioRestException as exc:
            problem = f"Twilio answered HTTP {exc.status} (error {exc.code}): {exc.msg}"
            if exc.status in _TRANSIENT_STATUS:
                raise TransientDeliveryError(problem) from exc
            raise PermanentDeliveryError(problem) from exc
        except (requests.ConnectionError, requests.exceptions.ConnectTimeout) as exc:
            raise TransientDeliveryError(f"cannot reach Twilio: {type(exc).__name__}") from exc
        except requests.Timeout as exc:
            # The request was sent: the call may have been placed, so it is not retried.
            raise PermanentDeliveryError("Twilio did not answer in time; not retried") from exc
        return Receipt(
            provider_ref=str(call.sid),
            detail={"from": delivery.caller_id, "url": self._settings.twiml_url},
        )


def _notifier() -> Notifier:
    from escalator.config import load_twilio_settings  # at cold start of the notifier only

    return TwilioCalls(load_twilio_settings())


CHANNEL = Channel(
    name="phone",
    target_field="phone-number",
    target_problem=target_problem,
    task_name="Call phone",
    notifier=_notifier,
)
