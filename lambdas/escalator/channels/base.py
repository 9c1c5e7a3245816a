"""What every channel module provides."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from escalator.model import Delivery, Receipt


class Notifier(Protocol):
    """The port of one channel: delivers one notification through its provider."""

    def deliver(self, delivery: Delivery) -> Receipt:
        """Deliver and return the provider's reference.

        Raises ``TransientDeliveryError`` when the provider did not accept it and a retry
        may succeed, ``PermanentDeliveryError`` when it refused it or may have acted on it.
        """
        ...


@dataclass(frozen=True)
class ProviderSecret:
    """A provider's credentials in Secrets Manager.

    ``variable`` names the secret to the notifier; ``fields`` maps the notifier's
    settings (environment variable names) to keys of the secret's JSON object. The stack
    creates the secret with a random value for ``generated`` and a placeholder for the
    other keys, unless the context key ``<name lowercased>_secret_name`` names an
    existing one.
    """

    name: str
    variable: str
    fields: Mapping[str, str]
    generated: str

    @property
    def context_key(self) -> str:
        return f"{self.name.lower()}_secret_name"


@dataclass(frozen=True)
class Channel:
    """What Escalator knows about one channel.

    ``target_field`` is the request field that holds the destination, and
    ``target_problem`` tells why a destination is unusable (``None`` when it is fine).
    A problem never quotes the destination itself: reasons end up in logs.
    ``task_name`` names the channel's state in the Step Functions console, and
    ``notifier`` builds the adapter from the environment (once per cold start).
    ``calls_from_caller_id``: the confirm step chooses a caller id for each delivery.
    ``secret`` holds the provider's credentials, and ``settings`` maps CDK context keys
    to the provider's settings that are not secret (environment variable names).
    """

    name: str
    target_field: str
    target_problem: Callable[[str], str | None]
    task_name: str
    notifier: Callable[[], Notifier]
    calls_from_caller_id: bool = False
    secret: ProviderSecret | None = None
    settings: Mapping[str, str] = field(default_factory=dict)
