"""What every channel module provides."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from escalator.model import Delivery, Receipt


class Notifier(Protocol):
    """The port of one channel: delivers one notification through its provider."""

    def deliver(self, delivery: Delivery) -> Receipt:
        """Deliver and return the provider's reference.

        Raises ``TransientDeliveryError`` when the request provably never reached the
        provider or it did not take it (a retry may succeed), ``PermanentDeliveryError``
        when it refused it, ``AmbiguousDeliveryError`` when it may have it (never retried).
        """
        ...


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps: causes, contexts, and the ``reason`` or
    arguments that HTTP libraries keep the underlying error in; outermost first."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [getattr(current, "reason", None), current.__cause__, current.__context__]
        nested += list(current.args)
        pending += [item for item in nested if isinstance(item, BaseException)]


def failed_tls_handshake(exc: BaseException) -> bool:
    """Whether ``exc`` wraps a TLS error raised by the handshake itself: it happens while
    connecting, before a byte of the request is written."""
    import ssl

    for cause in exception_chain(exc):
        if isinstance(cause, ssl.SSLError):
            frames = traceback.extract_tb(cause.__traceback__)
            if any(frame.name == "do_handshake" for frame in frames):
                return True
    return False


def innermost(exc: BaseException) -> str:
    """The type of the deepest exception ``exc`` wraps (messages may quote URLs)."""
    *_, deepest = exception_chain(exc)
    return type(deepest).__name__


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
    ``guarded``: the per-recipient guard applies (a delivery covers other processes'
    notifications to the same target due soon after it).
    """

    name: str
    target_field: str
    target_problem: Callable[[str], str | None]
    task_name: str
    notifier: Callable[[], Notifier]
    calls_from_caller_id: bool = False
    secret: ProviderSecret | None = None
    settings: Mapping[str, str] = field(default_factory=dict)
    guarded: bool = True
