"""The lifecycles of a notification and of a process: their states and the transitions
between them, each named with the event that causes it, declared once.

The repository takes its state names from here; PostgreSQL refuses any transition these
tables do not list (``sql/0010_lifecycle_transitions.sql``: a test tries every pair);
``docs/lifecycle.md`` is drawn from them (``make docs``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar


class NotificationState(StrEnum):
    """Where a notification stands (``notification.state``)."""

    PENDING = "pending"
    CLAIMED = "claimed"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REJECTED = "rejected"
    COALESCED = "coalesced"


class NotificationEvent(StrEnum):
    """What moves a notification from one state to another."""

    CLAIM = "claim"
    RELEASE = "release"
    CONFIRM = "confirm"
    WITHDRAW = "withdraw"
    RECORD = "record"
    LAPSE = "lapse"
    CALLBACK = "callback"
    STOP = "stop"
    ABANDON = "abandon"
    EXPIRE = "expire"
    COALESCE = "coalesce"
    UNCOVER = "uncover"


class ProcessState(StrEnum):
    """Where an escalation process stands (``process.state``)."""

    ACTIVE = "active"
    STOPPED = "stopped"
    COMPLETED = "completed"


class ProcessEvent(StrEnum):
    """What ends a process."""

    STOP = "stop"
    COMPLETE = "complete"


S = TypeVar("S", bound=StrEnum)
E = TypeVar("E", bound=StrEnum)
T = TypeVar("T")


@dataclass(frozen=True)
class Transition(Generic[S, E]):
    """``source`` becomes ``target`` when ``event`` happens; ``guard``: what PostgreSQL
    also requires of the row (in words; the trigger spells it), if anything."""

    event: E
    source: S
    target: S
    guard: str | None = None


@dataclass(frozen=True)
class Lifecycle(Generic[S, E]):
    """The states a row of ``table`` may be in, the ones it is created in, and every
    transition between them."""

    table: str
    states: tuple[S, ...]
    initial: tuple[S, ...]
    transitions: tuple[Transition[S, E], ...]
    # What each event is, in words (the documentation's).
    events: Mapping[E, str]

    def allowed(self) -> frozenset[tuple[S, S]]:
        """Every (from, to) pair some event moves a row along."""
        return frozenset((item.source, item.target) for item in self.transitions)

    def sources(self, event: E) -> tuple[S, ...]:
        """The states ``event`` moves a row out of, in declaration order."""
        return _unique(item.source for item in self.transitions if item.event == event)

    def targets(self, event: E) -> tuple[S, ...]:
        """The states ``event`` moves a row into, in declaration order."""
        return _unique(item.target for item in self.transitions if item.event == event)

    def events_between(self, source: S, target: S) -> tuple[E, ...]:
        """The events that move a row from ``source`` to ``target`` (none: forbidden)."""
        return _unique(
            item.event
            for item in self.transitions
            if (item.source, item.target) == (source, target)
        )

    def final(self) -> tuple[S, ...]:
        """The states no event moves a row out of."""
        left = {item.source for item in self.transitions}
        return tuple(state for state in self.states if state not in left)


_N = NotificationState
_NE = NotificationEvent

NOTIFICATION = Lifecycle[NotificationState, NotificationEvent](
    table="notification",
    states=tuple(NotificationState),
    # (stored at ingest: rejected when its target is unusable)
    initial=(_N.PENDING, _N.REJECTED),
    transitions=(
        Transition(_NE.CLAIM, _N.PENDING, _N.CLAIMED),
        Transition(_NE.RELEASE, _N.CLAIMED, _N.PENDING),
        Transition(_NE.CONFIRM, _N.CLAIMED, _N.SENDING),
        Transition(
            _NE.WITHDRAW,
            _N.SENDING,
            _N.PENDING,
            guard="when its confirm is withdrawn (its token cleared) and no provider reported it",
        ),
        Transition(_NE.RECORD, _N.SENDING, _N.SENT),
        Transition(_NE.RECORD, _N.SENDING, _N.FAILED),
        Transition(_NE.RECORD, _N.SENDING, _N.UNKNOWN),
        Transition(_NE.LAPSE, _N.SENDING, _N.UNKNOWN),
        Transition(_NE.RECORD, _N.UNKNOWN, _N.SENT),
        Transition(_NE.RECORD, _N.UNKNOWN, _N.FAILED),
        Transition(_NE.CALLBACK, _N.UNKNOWN, _N.SENT),
        Transition(_NE.STOP, _N.PENDING, _N.CANCELLED),
        Transition(_NE.STOP, _N.CLAIMED, _N.CANCELLED),
        Transition(_NE.ABANDON, _N.SENDING, _N.CANCELLED),
        Transition(_NE.EXPIRE, _N.PENDING, _N.EXPIRED),
        Transition(_NE.EXPIRE, _N.CLAIMED, _N.EXPIRED),
        Transition(_NE.COALESCE, _N.CLAIMED, _N.COALESCED),
        Transition(_NE.UNCOVER, _N.COALESCED, _N.PENDING),
        Transition(_NE.UNCOVER, _N.COALESCED, _N.CANCELLED),
    ),
    events={
        _NE.CLAIM: "a tick claims it for its delivery window (the initiator does, for one "
        "falling due soon after it arrives)",
        _NE.RELEASE: "the claim goes back unconfirmed: its window failed, its claim grace "
        "ran out, or its confirm step failed",
        _NE.CONFIRM: "the confirm step hands it to its notifier (its process still active)",
        _NE.WITHDRAW: "the confirm step moved it to sending, then failed after its retries "
        "(its answers lost): its notifier never ran",
        _NE.RECORD: "the record step stores the notifier's outcome; a late outcome replaces "
        "unknown",
        _NE.LAPSE: "no outcome before the sending lease ran out: never sent again",
        _NE.CALLBACK: "a provider's status callback shows that it took the delivery",
        _NE.STOP: "its process was stopped",
        _NE.ABANDON: "a retried confirm finds its process ended: its notifier never ran",
        _NE.EXPIRE: "more than the maximum lateness late",
        _NE.COALESCE: "another process's delivery to the same recipient covers it (it waits, "
        "unfinished, while that one is still being sent)",
        _NE.UNCOVER: "its cover ended without reaching the person: due again, or cancelled "
        "when its process has ended",
    },
)

PROCESS = Lifecycle[ProcessState, ProcessEvent](
    table="process",
    states=tuple(ProcessState),
    initial=(ProcessState.ACTIVE,),
    transitions=(
        Transition(ProcessEvent.STOP, ProcessState.ACTIVE, ProcessState.STOPPED),
        Transition(ProcessEvent.COMPLETE, ProcessState.ACTIVE, ProcessState.COMPLETED),
    ),
    events={
        ProcessEvent.STOP: "a stop request",
        ProcessEvent.COMPLETE: "nothing is left to deliver",
    },
)

# The states in which a notification may still be delivered: a process holding one is
# not finished (nor is one holding a coalesced notification still waiting for its cover).
UNDELIVERED = (_N.PENDING, _N.CLAIMED, _N.SENDING)
# The outcomes of a delivery that may have reached the person: what waited for it (a
# notification it covered while being sent) is finished with it.
MAY_HAVE_REACHED = (_N.SENT, _N.UNKNOWN)

# What PostgreSQL answers a transition its lifecycle does not list with (SQLSTATE).
FORBIDDEN_TRANSITION = "LC001"


def _unique(items: Iterable[T]) -> tuple[T, ...]:
    return tuple(dict.fromkeys(items))
