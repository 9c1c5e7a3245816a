"""The request contract (docs/request-contract.md): a message body in, a typed
request out.

``parse_request`` either returns a ``StartRequest`` or a ``StopRequest``, or raises
``InvalidRequest`` with a specific, human-readable reason when the structure is broken
(process id, action, the list of notifications, a channel, an ``at``). A notification
whose target is unusable (missing, not a string, impossible) does not sink the start: it
comes back with ``rejected`` set to its reason, to be stored and never delivered.
Reasons name the offending field but never quote a phone number or an e-mail address,
because they are logged.
"""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass
from typing import Any

from escalator.channels import CHANNELS
from escalator.limits import (
    MAX_BODY_BYTES,
    MAX_LATENESS_SECONDS,
    MAX_NOTIFICATIONS,
    MAX_PROCESS_ID_LENGTH,
    MAX_SCHEDULE_AHEAD_SECONDS,
)
from escalator.sqs_ids import first_outside_the_alphabet

ACTIONS = ("start", "stop")


# What is kept of a target that is not a string (it is stored beside its reason).
MAX_STORED_TARGET = 200


@dataclass(frozen=True)
class Notification:
    """One notification of a start request: where, how, and when (epoch seconds).

    ``rejected`` says why its target is unusable; such a notification is never delivered.
    """

    channel: str
    target: str
    at: int
    rejected: str | None = None
    # Who the target reaches, normalised (the channel's ``recipient``); none if rejected.
    recipient: str | None = None


@dataclass(frozen=True)
class StartRequest:
    """Start an escalation process unless one with this id is active."""

    process_id: str
    notifications: tuple[Notification, ...]
    action: str = "start"

    @property
    def rejected(self) -> tuple[Notification, ...]:
        """The notifications whose target is unusable."""
        return tuple(item for item in self.notifications if item.rejected is not None)


@dataclass(frozen=True)
class StopRequest:
    """Stop the active process with this id and cancel what it has not delivered."""

    process_id: str
    action: str = "stop"


Request = StartRequest | StopRequest


class InvalidRequest(ValueError):
    """A body that breaks the contract. ``process_id``/``action`` are kept when valid."""

    def __init__(self, reason: str, *, process_id: str | None = None, action: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.process_id = process_id
        self.action = action


def parse_request(
    body: str,
    *,
    now: int,
    max_schedule_ahead: int = MAX_SCHEDULE_AHEAD_SECONDS,
    max_lateness: int = MAX_LATENESS_SECONDS,
) -> Request:
    """Validate a message body against the contract; raise ``InvalidRequest`` if it breaks
    it. A notification due more than ``max_lateness`` seconds before ``now`` is rejected
    (already too late), as is one whose target is unusable."""
    document = _load(body)
    process_id = _process_id(document)
    action = document.get("action")
    if action is None:
        raise InvalidRequest("action is missing", process_id=process_id)
    if action not in ACTIONS:
        raise InvalidRequest("action must be 'start' or 'stop'", process_id=process_id)
    if action == "stop":
        return StopRequest(process_id=process_id)
    try:
        notifications = _notifications(
            document, now=now, max_schedule_ahead=max_schedule_ahead, max_lateness=max_lateness
        )
    except InvalidRequest as exc:
        raise InvalidRequest(exc.reason, process_id=process_id, action=action) from None
    return StartRequest(process_id=process_id, notifications=notifications)


def _load(body: str) -> dict[str, Any]:
    if len(body.encode("utf-8", errors="surrogatepass")) > MAX_BODY_BYTES:
        raise InvalidRequest(f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        document = json.loads(body, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise InvalidRequest("body is not valid JSON: nested too deeply") from None
    except DuplicateKey as exc:
        raise InvalidRequest(f"body has the key {exc.key!r} twice in one object") from None
    except NotJson as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc} is not a JSON value") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts
        raise InvalidRequest(f"body is not usable JSON: {str(exc)[:200]}") from None
    if not isinstance(document, dict):
        raise InvalidRequest("body is not a JSON object")
    return document


class DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key[:40]


class NotJson(ValueError):
    """What Python's parser reads and JSON has not: ``NaN``, ``Infinity``, ``-Infinity``."""


def _no_constant(name: str) -> Any:
    raise NotJson(name)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (``"action":"stop","action":"start"``
    must not quietly become a start)."""
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return document


def _process_id(document: dict[str, Any]) -> str:
    value = document.get("process-id")
    if value is None:
        raise InvalidRequest("process-id is missing")
    if not isinstance(value, str):
        raise InvalidRequest("process-id must be a string")
    if not value:
        raise InvalidRequest("process-id is empty")
    if len(value) > MAX_PROCESS_ID_LENGTH:
        raise InvalidRequest(f"process-id is longer than {MAX_PROCESS_ID_LENGTH} characters")
    position = first_outside_the_alphabet(value)
    if position is not None:
        raise InvalidRequest(
            "process-id may hold only printable ASCII without spaces (letters, digits,"
            " punctuation: what SQS allows in a MessageGroupId); character"
            f" {position + 1} is {_code_point(value[position])}"
        )
    return value


def _code_point(char: str) -> str:
    """``U+0430 CYRILLIC SMALL LETTER A``: a character named without being written (it may
    be a control character, or one that looks like another)."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" {name}" if name else "")


def _notifications(
    document: dict[str, Any], *, now: int, max_schedule_ahead: int, max_lateness: int
) -> tuple[Notification, ...]:
    items = document.get("notifications")
    if items is None:
        raise InvalidRequest("notifications is missing (a start needs at least one)")
    if not isinstance(items, list):
        raise InvalidRequest("notifications must be a list")
    if not items:
        raise InvalidRequest("notifications is empty (a start needs at least one)")
    if len(items) > MAX_NOTIFICATIONS:
        raise InvalidRequest(f"notifications has more than {MAX_NOTIFICATIONS} entries")
    return tuple(
        _notification(
            item,
            f"notifications[{index}]",
            now=now,
            max_ahead=max_schedule_ahead,
            max_lateness=max_lateness,
        )
        for index, item in enumerate(items)
    )


def _notification(
    item: Any, where: str, *, now: int, max_ahead: int, max_lateness: int
) -> Notification:
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where} is not an object")
    name = item.get("channel")
    if name is None:
        raise InvalidRequest(f"{where}.channel is missing")
    channel = CHANNELS.get(name) if isinstance(name, str) else None
    if channel is None:
        raise InvalidRequest(f"{where}.channel must be one of: {', '.join(sorted(CHANNELS))}")
    at = _at(item, where, now, max_ahead)
    field = f"{where}.{channel.target_field}"
    target = item.get(channel.target_field)
    if target is None:
        problem: str | None = f"{field} is missing (required for channel {channel.name})"
    elif not isinstance(target, str):
        problem = f"{field} must be a string"
        target = json.dumps(target)[:MAX_STORED_TARGET]
    else:
        unusable = channel.target_problem(target)
        problem = None if unusable is None else f"{field} {unusable}"
    if problem is None and at < now - max_lateness:
        problem = f"{where}.at is already too late (due more than {max_lateness} seconds ago)"
    return Notification(
        channel=channel.name,
        target=target or "",
        at=at,
        rejected=problem,
        recipient=None if problem is not None else channel.recipient(str(target)),
    )


def _at(item: dict[str, Any], where: str, now: int, max_ahead: int) -> int:
    value = item.get("at")
    if value is None:
        raise InvalidRequest(f"{where}.at is missing")
    # bool is an int in Python, and a float is acceptable only when it is a whole number.
    whole_float = isinstance(value, float) and math.isfinite(value) and value.is_integer()
    if isinstance(value, bool) or not (isinstance(value, int) or whole_float):
        raise InvalidRequest(f"{where}.at must be a whole number of epoch seconds")
    at = int(value)
    if at < 0:
        raise InvalidRequest(f"{where}.at is before 1970")
    if at > now + max_ahead:
        raise InvalidRequest(f"{where}.at is more than {max_ahead // 86400} days in the future")
    return at
