"""Domain records the service layer passes around."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

OutcomeKind = Literal["started", "stopped", "ignored", "rejected", "duplicate"]
# Reasons are stored and logged; an unbounded exception message is cut here.
MAX_REASON_LENGTH = 1000


# The message attribute a redriven request carries: the id it first arrived with, which
# the initiator records it by, so a request redriven twice is applied once.
ORIGINAL_MESSAGE_ID = "escalator-original-message-id"

# A confirm token joins the confirm step's entry time and its Map iteration's run
# (escalator.delivery.confirm_tokens); a later step knows the run only, and finds the
# token by it.
CONFIRM_TOKEN_SEPARATOR = " "  # noqa: S105 - a separator, not a secret


@dataclass(frozen=True)
class RequestMessage:
    """One request as it arrived on the queue."""

    message_id: str
    body: str
    group_id: str | None = None


@dataclass(frozen=True)
class RequestOutcome:
    """What applying one request did. ``duplicate`` outcomes are not recorded again."""

    message_id: str
    kind: OutcomeKind
    process_id: str | None = None
    action: str | None = None
    reason: str | None = None
    process_ref: int | None = None
    notifications: int = 0
    cancelled: int = 0
    rejected: int = 0  # notifications of a start stored as rejected (unusable targets)
    rejected_reasons: tuple[str, ...] = ()
    # notifications of a start due too soon for a tick: claimed at once, for a window
    arrivals: tuple[ClaimedNotification, ...] = ()


@dataclass(frozen=True)
class ClaimedNotification:
    """A claimed notification: what a delivery window carries per item, with who holds
    the claim (a tick's execution, or the arrival that claimed it at ingest)."""

    id: int
    channel: str
    due: str  # RFC 3339 in UTC ending in Z, for the Wait state's TimestampPath
    owner: str = ""

    def to_event(self) -> dict[str, object]:
        return {"id": self.id, "channel": self.channel, "due": self.due, "owner": self.owner}


@dataclass(frozen=True)
class Delivery:
    """Everything a notifier needs to deliver one notification; it never reads the database."""

    notification_id: int
    process_id: str
    channel: str
    target: str
    due_at: int
    caller_id: str | None = None
    # Who holds the claim it is delivered under: a tick's execution, or the arrival that
    # claimed it at ingest (``service.arrival_owner``); what tells which path delivered it.
    # (None from a confirm step of the release before, which did not say.)
    owner: str | None = None

    def to_event(self) -> dict[str, object]:
        event: dict[str, object] = {
            "notification_id": self.notification_id,
            "process_id": self.process_id,
            "channel": self.channel,
            "target": self.target,
            "due_at": self.due_at,
        }
        if self.caller_id is not None:
            event["caller_id"] = self.caller_id
        if self.owner is not None:
            event["owner"] = self.owner
        return event

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> Delivery:
        return cls(
            notification_id=int(event["notification_id"]),
            process_id=str(event["process_id"]),
            channel=str(event["channel"]),
            target=str(event["target"]),
            due_at=int(event["due_at"]),
            caller_id=event.get("caller_id"),
            owner=event.get("owner"),
        )


@dataclass(frozen=True)
class Receipt:
    """The provider's acknowledgement: its reference (call SID, Message-ID, timetoken)."""

    provider_ref: str
    detail: dict[str, str] | None = None

    def to_event(self) -> dict[str, object]:
        return {"provider_ref": self.provider_ref, "detail": self.detail or {}}

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> Receipt:
        detail = event.get("detail")
        return cls(
            provider_ref=str(event["provider_ref"]),
            detail={str(key): str(value) for key, value in detail.items()} if detail else None,
        )


@dataclass(frozen=True)
class Failure:
    """Why a delivery failed: a readable reason, at most ``MAX_REASON_LENGTH`` long."""

    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", self.reason[:MAX_REASON_LENGTH])


@dataclass(frozen=True)
class Ambiguous:
    """A delivery whose fate is not known: the provider may have it (the connection
    dropped after the request was written, the notifier's answer was lost). Recorded
    ``unknown`` with the reason, never retried; a provider's callback may settle it."""

    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", self.reason[:MAX_REASON_LENGTH])


# What the record step is told about one delivery.
Outcome = Receipt | Failure | Ambiguous
RecordedKind = Literal["sent", "failed", "unknown", "stale"]


@dataclass(frozen=True)
class Recorded:
    """What the record step wrote (or had written before: ``repeated``, a retry); ``stale``
    when this execution no longer owned the notification."""

    notification_id: int
    outcome: RecordedKind
    process_completed: bool = False
    repeated: bool = False

    def to_event(self) -> dict[str, object]:
        return {"notification_id": self.notification_id, "outcome": self.outcome}


@dataclass(frozen=True)
class Migrated:
    """What the migration function did: the files it applied, in order."""

    applied: tuple[str, ...]
    caller_ids_stored: bool = False

    def to_event(self) -> dict[str, object]:
        return {"applied": list(self.applied), "caller_ids_stored": self.caller_ids_stored}


@dataclass(frozen=True)
class MasterCredentials:
    """The database's master user, handed from the launcher to the migration. Never in
    a repr, a log line or an error message."""

    username: str
    password: str = field(repr=False)

    def to_event(self) -> dict[str, object]:
        return {"master": {"username": self.username, "password": self.password}}

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> MasterCredentials | None:
        master = event.get("master")
        if not isinstance(master, dict):
            return None
        return cls(str(master["username"]), str(master["password"]))


@dataclass(frozen=True)
class SignedCallback:
    """A provider's callback as it arrived: the full URL it was sent to, its form
    fields, and its headers (names in lower case), the provider's signature among them."""

    url: str
    params: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusReport:
    """What a provider reported about one delivery (a call's or a message's status),
    verified by the receiver; ``provider_ref`` is the provider's reference of it (the call
    or message SID). ``notification_id`` comes from the callback URL, which the provider
    signs with the rest."""

    channel: str
    provider_ref: str
    status: str
    reported_at: float
    notification_id: int | None = None
    duration_seconds: int | None = None

    def to_event(self) -> dict[str, object]:
        return {
            "channel": self.channel,
            "provider_ref": self.provider_ref,
            # (what the recorder of the release before reads, while a deploy replaces it)
            "call_sid": self.provider_ref,
            "status": self.status,
            "reported_at": self.reported_at,
            "notification_id": self.notification_id,
            "duration_seconds": self.duration_seconds,
        }

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> StatusReport:
        notification_id = event.get("notification_id")
        duration = event.get("duration_seconds")
        # A receiver of the release before reports calls only, by ``call_sid``.
        reference = event["provider_ref"] if "provider_ref" in event else event["call_sid"]
        return cls(
            channel=str(event.get("channel", "phone")),
            provider_ref=str(reference),
            status=str(event["status"]),
            reported_at=float(event["reported_at"]),
            notification_id=None if notification_id is None else int(notification_id),
            duration_seconds=None if duration is None else int(duration),
        )


StatusOutcome = Literal["recorded", "settled", "superseded", "unknown-delivery"]


@dataclass(frozen=True)
class StatusRecorded:
    """What recording a provider's status did: ``recorded`` it, ``settled`` a
    notification whose outcome was unknown (now sent), found it ``superseded`` by what
    was recorded before, or found no notification for that delivery
    (``unknown-delivery``)."""

    outcome: StatusOutcome
    notification_id: int | None = None
    provider_status: str | None = None
    became_final: bool = False

    def to_event(self) -> dict[str, object]:
        return {
            "outcome": self.outcome,
            "notification_id": self.notification_id,
            "provider_status": self.provider_status,
        }


@dataclass(frozen=True)
class CallbackAnswer:
    """The HTTP answer to a provider's callback (a function URL response)."""

    status_code: int
    message: str

    def to_event(self) -> dict[str, object]:
        return {
            "statusCode": self.status_code,
            "headers": {"Content-Type": "text/plain"},
            "body": self.message,
        }
