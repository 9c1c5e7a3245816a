"""Phone calls through Twilio; the destination is an E.164 number."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

import phonenumbers

from escalator.channels import twilio
from escalator.channels.base import Channel, Notifier, ProviderStatuses
from escalator.channels.twilio import SECRET, TwilioAccount
from escalator.config import present
from escalator.errors import ConfigError, PermanentDeliveryError
from escalator.model import Delivery, Receipt

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
# What Twilio reports about a call (CallStatus), in the order a call goes through them;
# the last five are final, and a final status is never replaced.
STATUSES = ProviderStatuses(
    order=(
        *("queued", "initiated", "ringing", "in-progress"),
        *("completed", "busy", "no-answer", "failed", "canceled"),
    ),
    final=frozenset({"completed", "busy", "no-answer", "failed", "canceled"}),
    # a call nobody took
    failed=frozenset({"busy", "no-answer", "failed", "canceled"}),
    # CallsCompleted, CallsNoAnswer, ...; and 100 for a call nobody took, 0 for one
    # answered: one metric, whose average is the unanswered share (one alarm metric)
    metric_prefix="Calls",
    failed_share_metric="CallsUnansweredPercent",
    failed_meaning="were not answered",
    noun="calls",
    graph="Call outcomes (Twilio status callbacks)",
)
# What Twilio posts to a call's status callback beside its request parameters (those of
# a call, the status callback's own and those of answering machine detection): anything
# else is refused.
CALLBACK_PARAMETERS = frozenset(
    {
        *("CallSid", "CallStatus", "CallToken", "Direction", "ForwardedFrom", "CallerName"),
        *("ParentCallSid", "StirVerstat", "StirStatus"),
        *("Caller", "CallerCity", "CallerState", "CallerZip", "CallerCountry"),
        *("Called", "CalledCity", "CalledState", "CalledZip", "CalledCountry"),
        *("CallDuration", "Duration", "Timestamp", "CallbackSource", "SequenceNumber"),
        *("SipResponseCode", "RecordingUrl", "RecordingSid", "RecordingDuration"),
        *("AnsweredBy", "MachineDetectionDuration", "QueueTime"),
    }
)
CALLBACKS = twilio.CallbackFormat(
    channel="phone",
    statuses=STATUSES,
    sid="CallSid",
    status="CallStatus",
    parameters=CALLBACK_PARAMETERS,
    duration="CallDuration",
)

# The notifier's environment, beside the account's (``escalator.channels.twilio``).
TWILIO_URL = "TWILIO_URL"
TWILIO_METHOD = "TWILIO_METHOD"
TWIML_METHODS = ("GET", "POST")
# Every status change Twilio can report (queued is implied): each one is a callback.
STATUS_CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")


@dataclass(frozen=True, kw_only=True)
class TwilioSettings(TwilioAccount):
    """Phone calls: ``Client.calls.create(to, from_=caller id, url=TWILIO_URL)``.

    Twilio fetches the TwiML with ``twiml_method`` (GET, as the original asked: a static
    file on S3 or a CDN refuses POST) and reports the call's progress to
    ``status_callback_url`` when one is set.
    """

    twiml_url: str
    twiml_method: str = "GET"

    def __post_init__(self) -> None:
        if self.twiml_method not in TWIML_METHODS:
            raise ConfigError(f"{TWILIO_METHOD} must be GET or POST, not {self.twiml_method!r}")


def load_settings(environ: Mapping[str, str] | None = None) -> TwilioSettings:
    """Twilio settings; the account SID and token may come from ``TWILIO_SECRET_ARN``."""
    env = twilio.environment(environ)
    return TwilioSettings(
        **twilio.account_settings(env, TWILIO_URL),
        twiml_url=env[TWILIO_URL],
        **present(twiml_method=(env.get(TWILIO_METHOD) or "").upper() or None),
    )


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


@functools.lru_cache(maxsize=4096)
def recipient(number: str) -> str:
    """A usable number in E.164 (trunk prefixes and spacing gone: one phone, one form)."""
    return str(
        phonenumbers.format_number(
            phonenumbers.parse(number, None), phonenumbers.PhoneNumberFormat.E164
        )
    )


class TwilioCalls:
    """Places calls with the ``twilio`` client; the call plays the TwiML at ``TWILIO_URL``."""

    def __init__(self, settings: TwilioSettings) -> None:
        self._settings = settings
        self._client = twilio.client(settings)

    def deliver(self, delivery: Delivery) -> Receipt:
        """Place the call. Raises ``TransientDeliveryError`` (the request never reached
        Twilio, or Twilio did not take it), ``PermanentDeliveryError`` (Twilio refused it),
        ``AmbiguousDeliveryError`` (Twilio may have placed it: never retried)."""
        if not delivery.caller_id:
            raise PermanentDeliveryError("no caller id to call from")
        caller_id = delivery.caller_id
        call = twilio.create(
            lambda: self._client.calls.create(
                to=delivery.target,
                from_=caller_id,
                url=self._settings.twiml_url,
                method=self._settings.twiml_method,
                **self._status_callback(delivery),
            ),
            consequence="the call may have been placed",
        )
        return Receipt(
            provider_ref=str(call.sid),
            detail={"from": caller_id, "url": self._settings.twiml_url},
        )

    def _status_callback(self, delivery: Delivery) -> dict[str, object]:
        url = self._settings.status_callback(delivery.notification_id)
        if url is None:
            return {}
        return {
            "status_callback": url,
            "status_callback_method": "POST",
            "status_callback_event": list(STATUS_CALLBACK_EVENTS),
        }


def _notifier() -> Notifier:
    return TwilioCalls(load_settings())


CHANNEL = Channel(
    name="phone",
    target_field="phone-number",
    target_problem=target_problem,
    recipient=recipient,
    task_name="Call phone",
    notifier=_notifier,
    calls_from_caller_id=True,
    secret=SECRET,
    settings={"twilio_url": TWILIO_URL, "twilio_method": TWILIO_METHOD},
    callbacks=twilio.status_callbacks(CALLBACKS),
)
