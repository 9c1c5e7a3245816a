"""What every channel module provides."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from aws_lambda_powertools.metrics import MetricUnit

from escalator.metrics import Metric
from escalator.model import Delivery, Receipt, SignedCallback, StatusReport


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
class ProviderStatuses:
    """What a provider reports about a delivery after it took it (its status callbacks).

    ``order`` holds every status in the order a delivery goes through them; ``final``
    those after which nothing changes (the first one reported stays: callbacks arrive
    more than once and out of order), and ``failed`` the final ones in which it never
    reached the person. Each final status is counted as ``<metric_prefix><Status>``,
    and ``failed_share_metric`` gets 100 for a failed one, 0 for another: its average
    is the share that failed, in percent.
    """

    order: tuple[str, ...]
    final: frozenset[str]
    failed: frozenset[str]
    metric_prefix: str
    failed_share_metric: str
    # what the deliveries are called, and the dashboard graph that draws these metrics
    noun: str = "deliveries"
    graph: str = "Provider outcomes"
    # what a failed one means to the person (an alarm's description)
    failed_meaning: str = "failed"

    def __post_init__(self) -> None:
        if not self.failed <= self.final <= set(self.order):
            raise ValueError("failed statuses must be final, and final ones known")

    def supersedes(self, status: str, current: str | None) -> bool:
        """Whether ``status`` is news after ``current``: later in a delivery's life, and
        never after a final status."""
        return current is None or self._rank(status) > self._rank(current)

    def _rank(self, status: str) -> int:
        # Every final status ranks the same, above all others: the first one stays.
        return len(self.order) if status in self.final else self.order.index(status)

    def declared_metrics(self) -> list[Metric]:
        """The metrics these statuses are counted by (``escalator.metrics.registry``)."""
        counts = [
            Metric(
                self.metric(status),
                MetricUnit.Count,
                f"{self.noun} whose final status the provider reported {status} (each "
                "counted once, at its first final status)",
                self.graph,
            )
            for status in self.order
            if status in self.final
        ]
        share = Metric(
            self.failed_share_metric,
            MetricUnit.Percent,
            f"100 for each of the {self.noun} that failed "
            f"({', '.join(sorted(self.failed))}), 0 for another: its average is the "
            "failed share",
            self.graph,
            statistics=("Average",),
            right_axis=True,
        )
        return [*counts, share]

    def metric(self, status: str) -> str:
        """``no-answer`` -> ``<metric_prefix>NoAnswer``."""
        return self.metric_prefix + "".join(part.title() for part in status.split("-"))


class CallbackReader(Protocol):
    """Checks and reads one channel's status callbacks."""

    def read(self, callback: SignedCallback) -> StatusReport | None:
        """The report ``callback`` carries, ``None`` when it is not one of this channel's.
        Raises ``CallbackRefused`` when it is, but its signature is missing or wrong or
        its fields are not a status report."""
        ...


@dataclass(frozen=True)
class StatusCallbacks:
    """How a channel's provider reports on each delivery later, at the status-callback
    receiver: what it reports (``statuses``), the notifier's setting that names the
    receiver's URL (``url_variable``: the stack sets it), and ``reader``, which builds
    the reader of its callbacks from the receiver's environment (once per cold start)."""

    statuses: ProviderStatuses
    url_variable: str
    reader: Callable[[], CallbackReader]


@dataclass(frozen=True)
class Channel:
    """What Escalator knows about one channel.

    ``target_field`` is the request field that holds the destination, and
    ``target_problem`` tells why a destination is unusable (``None`` when it is fine).
    A problem never quotes the destination itself: reasons end up in logs.
    ``task_name`` names the channel's state in the Step Functions console, and
    ``notifier`` builds the adapter from the environment (once per cold start).
    ``calls_from_caller_id``: the confirm step chooses a caller id (the number it calls
    or sends from) for each delivery. ``secret`` holds the provider's credentials (two
    channels of one provider declare the same secret: the stack makes it once), and
    ``settings`` maps CDK context keys to the provider's settings that are not secret
    (environment variable names). ``callbacks``: the provider reports on each delivery
    later, through the status-callback receiver. ``development``: a channel for trials
    (console): the per-recipient guard does not apply to it (everywhere else a delivery
    covers other processes' notifications to the same target due soon after it), and
    the dashboard does not break its deliveries out by channel. ``recipient``: who a
    usable target reaches, normalised (one phone written two ways is one recipient).
    """

    name: str
    target_field: str
    target_problem: Callable[[str], str | None]
    task_name: str
    notifier: Callable[[], Notifier]
    calls_from_caller_id: bool = False
    secret: ProviderSecret | None = None
    settings: Mapping[str, str] = field(default_factory=dict)
    development: bool = False
    callbacks: StatusCallbacks | None = None
    # Who a usable target reaches, as the per-recipient guard tells recipients apart:
    # its normalised form (the target itself unless the channel says otherwise).
    recipient: Callable[[str], str] = str
