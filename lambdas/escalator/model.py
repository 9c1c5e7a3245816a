"""Domain records the service layer passes around."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

OutcomeKind = Literal["started", "stopped", "ignored", "rejected", "duplicate"]


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


@dataclass(frozen=True)
class ClaimedNotification:
    """A notification the activator claimed: what the state machine carries per item."""

    id: int
    channel: str
    due: str  # RFC 3339 in UTC ending in Z, for the Wait state's TimestampPath

    def to_event(self) -> dict[str, object]:
        return {"id": self.id, "channel": self.channel, "due": self.due}


@dataclass(frozen=True)
class Delivery:
    """Everything a notifier needs to deliver one notification; it never reads the database."""

    notification_id: int
    process_id: str
    channel: str
    target: str
    due_at: int
    caller_id: str | None = None

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
        )


@dataclass(frozen=True)
class Receipt:
    """The provider's acknowledgement: its reference (call SID, Message-ID, timetoken)."""

    provider_ref: str
    detail: dict[str, str] | None = None

    def to_event(self) -> dict[str, object]:
        return {"provider_ref": self.provider_ref, "detail": self.detail or {}}
