"""Domain records the service layer passes around."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
