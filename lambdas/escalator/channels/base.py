"""What every channel module provides."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
class Channel:
    """What Escalator knows about one channel.

    ``target_field`` is the request field that holds the destination, and
    ``target_problem`` tells why a destination is unusable (``None`` when it is fine).
    A problem never quotes the destination itself: reasons end up in logs.
    ``task_name`` names the channel's state in the Step Functions console, and
    ``notifier`` builds the adapter from the configuration (called once per cold start).
    """

    name: str
    target_field: str
    target_problem: Callable[[str], str | None]
    task_name: str
    notifier: Callable[[], Notifier]
