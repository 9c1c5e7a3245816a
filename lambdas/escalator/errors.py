"""The project's own exceptions, raised at the adapter boundaries."""

from __future__ import annotations

from escalator.masking import mask


class EscalatorError(Exception):
    """Base of every error Escalator raises on purpose."""


class DatabaseError(EscalatorError):
    """PostgreSQL could not be reached or failed the transaction; it was rolled back
    and the work can be retried."""


class DeliveryError(EscalatorError):
    """A notifier could not deliver a notification.

    The message is masked here: providers quote the number or address back in their
    errors, and the message goes to logs, the runtime's error line and the database.
    """

    def __init__(self, message: str) -> None:
        super().__init__(mask(message))


class TransientDeliveryError(DeliveryError):
    """The request provably never reached the provider (DNS, connection refused, TLS
    handshake) or the provider's documented answer says it did not act on it (Twilio's
    HTTP 429, an SMTP 4yz reply); trying again later may succeed. The state machine
    retries these by their class name."""


class PermanentDeliveryError(DeliveryError):
    """The provider refused the notification: trying again would fail again. Recorded as
    a failure."""


class AmbiguousDeliveryError(DeliveryError):
    """The request may have reached the provider, but no answer came (the connection
    dropped or timed out after it was written, the reply to DATA never came, an HTTP
    5xx, which no provider documents as "not acted on"): trying again risks a second
    call. Never retried; recorded ``unknown``."""


class ConfigError(EscalatorError):
    """A required setting is missing or malformed; the message names it."""


class CallbackRefused(EscalatorError):
    """A provider callback whose signature is missing or wrong, or whose fields make no
    sense: answered 403, nothing written."""
