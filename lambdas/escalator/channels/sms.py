"""Text messages (SMS) through Twilio's Messages API, from the caller-id registry's
numbers; the destination is an E.164 number, judged as for calls."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from escalator.channels import phone, twilio
from escalator.channels.base import Channel, Notifier, ProviderStatuses
from escalator.channels.twilio import SECRET, TwilioAccount
from escalator.config import present
from escalator.errors import ConfigError, PermanentDeliveryError
from escalator.model import Delivery, Receipt

# What Twilio reports about a message it sends (MessageStatus), in the order a message
# goes through them; the last three are final, and a final status is never replaced.
STATUSES = ProviderStatuses(
    order=("queued", "sending", "sent", "delivered", "undelivered", "failed"),
    final=frozenset({"delivered", "undelivered", "failed"}),
    # a message that never reached the phone
    failed=frozenset({"undelivered", "failed"}),
    metric_prefix="Messages",
    failed_share_metric="MessagesUndeliveredPercent",
    failed_meaning="never reached the phone",
    noun="text messages",
    graph="Text message outcomes (Twilio status callbacks)",
)
# What Twilio posts to a message's status callback beside its request parameters (those
# of a message, the status callback's own, the carrier's delivery receipt): anything else
# is refused.
CALLBACK_PARAMETERS = frozenset(
    {
        *("MessageSid", "MessageStatus", "SmsSid", "SmsStatus", "SmsMessageSid"),
        *("MessagingServiceSid", "Body", "NumMedia", "NumSegments", "RawDlrDoneDate"),
        *("ChannelToAddress", "ChannelPrefix", "ChannelInstallSid", "StructuredMessage"),
    }
)
CALLBACKS = twilio.CallbackFormat(
    channel="sms",
    statuses=STATUSES,
    sid="MessageSid",
    status="MessageStatus",
    parameters=CALLBACK_PARAMETERS,
)

# The notifier's environment, beside the account's (``escalator.channels.twilio``).
SMS_BODY = "SMS_BODY"
# Twilio sends a longer body as several segments, up to this many characters.
MAX_BODY = 1600


@dataclass(frozen=True, kw_only=True)
class SmsSettings(TwilioAccount):
    """Text messages: ``Client.messages.create(to, from_=caller id, body=SMS_BODY)``;
    Twilio reports each message's fate to ``status_callback_url`` when one is set."""

    body: str = "A new order is waiting for your confirmation."

    def __post_init__(self) -> None:
        if not self.body.strip() or len(self.body) > MAX_BODY:
            raise ConfigError(f"{SMS_BODY} must be 1 to {MAX_BODY} characters")


def load_settings(environ: Mapping[str, str] | None = None) -> SmsSettings:
    """SMS settings; the account SID and token may come from ``TWILIO_SECRET_ARN``."""
    env = twilio.environment(environ)
    return SmsSettings(**twilio.account_settings(env), **present(body=env.get(SMS_BODY) or None))


class TwilioMessages:
    """Sends one text message per notification with the ``twilio`` client."""

    def __init__(self, settings: SmsSettings) -> None:
        self._settings = settings
        self._client = twilio.client(settings)

    def deliver(self, delivery: Delivery) -> Receipt:
        """Send the message. Raises ``TransientDeliveryError`` (the request never reached
        Twilio, or Twilio did not take it), ``PermanentDeliveryError`` (Twilio refused it),
        ``AmbiguousDeliveryError`` (Twilio may have sent it: never retried)."""
        if not delivery.caller_id:
            raise PermanentDeliveryError("no caller id to send from")
        sender, body = delivery.caller_id, self._settings.body
        callback = self._settings.status_callback(delivery.notification_id)
        message = twilio.create(
            lambda: self._client.messages.create(
                to=delivery.target,
                from_=sender,
                body=body,
                **({"status_callback": callback} if callback else {}),
            ),
            consequence="the message may have been sent",
        )
        return Receipt(provider_ref=str(message.sid), detail={"from": sender, "body": body})


def _notifier() -> Notifier:
    return TwilioMessages(load_settings())


CHANNEL = Channel(
    name="sms",
    target_field="phone-number",
    target_problem=phone.target_problem,
    recipient=phone.recipient,
    task_name="Send SMS",
    notifier=_notifier,
    calls_from_caller_id=True,
    secret=SECRET,
    settings={"sms_body": SMS_BODY},
    callbacks=twilio.status_callbacks(CALLBACKS),
)
