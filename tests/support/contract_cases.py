# ruff: noqa: E501  (the table reads best one case a line)
"""The request contract as a table: invalid bodies and the exact reason each must get,
and starts with one unusable target and the reason that notification must get.

Shared by the unit tests of the parser and the integration tests of the initiator, so
both prove the same rules. ``at`` values are relative to the current time, because
the initiator checks them against its own clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

PHONE = "+385911234567"
EMAIL = "owner@example.com"
PUBNUB = "ch13234"
# Why a process id outside the SQS MessageGroupId alphabet is refused (then: which character).
OUTSIDE = (
    "process-id may hold only printable ASCII without spaces (letters, digits, punctuation:"
    " what SQS allows in a MessageGroupId)"
)
# Ids that a screen shows alike, as (case, id, look-alike): each pair holds at least one id
# outside printable ASCII without spaces (both, in the first and third), which is refused.
LOOKALIKES = (
    ("nfc-and-nfd", "caf\u00e9-7", "cafe\u0301-7"),
    ("trailing-space", "restaurant-42", "restaurant-42 "),
    ("no-break-space", "restaurant 42", "restaurant\u00a042"),
    ("cyrillic-a", "restaurant-43", "rest\u0430urant-43"),
)


def soon(seconds: int = 60) -> int:
    return int(time.time()) + seconds


def phone(number: Any = PHONE, **extra: Any) -> dict[str, Any]:
    return {"channel": "phone", "at": soon(), "phone-number": number, **extra}


def sms(number: Any = PHONE, **extra: Any) -> dict[str, Any]:
    return {"channel": "sms", "at": soon(), "phone-number": number, **extra}


def email(address: Any = EMAIL, **extra: Any) -> dict[str, Any]:
    return {"channel": "email", "at": soon(90), "email": address, **extra}


def pubnub(name: Any = PUBNUB, **extra: Any) -> dict[str, Any]:
    return {"channel": "pubnub", "at": soon(120), "pubnub-channel": name, **extra}


def console(label: str = "order 1", **extra: Any) -> dict[str, Any]:
    return {"channel": "console", "at": soon(3600), "label": label, **extra}


def start(process_id: Any = "restaurant-42", *notifications: Any) -> dict[str, Any]:
    return {
        "process-id": process_id,
        "action": "start",
        "notifications": list(notifications) or [phone(), email(), pubnub()],
    }


def stop(process_id: Any = "restaurant-42") -> dict[str, Any]:
    return {"process-id": process_id, "action": "stop"}


def pubnub_starts(count: int, due: int, prefix: str = "p") -> list[dict[str, Any]]:
    """Starts of ``count`` PubNub notifications all due at ``due``, 100 to a process."""
    documents = []
    for process in range((count + 99) // 100):
        size = min(100, count - process * 100)
        documents.append(
            {
                "process-id": f"{prefix}-{process}",
                "action": "start",
                "notifications": [
                    {"channel": "pubnub", "at": due, "pubnub-channel": f"{prefix}-{process}-{n}"}
                    for n in range(size)
                ],
            }
        )
    return documents


def without(document: dict[str, Any], key: str) -> dict[str, Any]:
    return {name: value for name, value in document.items() if name != key}


@dataclass(frozen=True)
class InvalidCase:
    id: str
    body: Any  # a str is sent as it is; anything else as JSON
    reason: str


@dataclass(frozen=True)
class UnusableCase:
    """A start whose structure is valid but one target is unusable: it is applied, and
    the notification whose reason names it is stored ``rejected`` with that reason."""

    id: str
    body: dict[str, Any]
    reason: str

    @property
    def position(self) -> int:
        return int(self.reason.split("]", 1)[0].removeprefix("notifications["))


def unusable_target_cases() -> list[UnusableCase]:
    """One start per target rule, each with the reason its notification must get."""
    return [
        UnusableCase(
            "at-already-too-late",
            start("r", phone(at=int(time.time()) - 3600), email()),
            "notifications[0].at is already too late (due more than 900 seconds ago)",
        ),
        UnusableCase(
            "phone-number-missing",
            start("r", without(phone(), "phone-number")),
            "notifications[0].phone-number is missing (required for channel phone)",
        ),
        UnusableCase(
            "email-missing",
            start("r", phone(), without(email(), "email")),
            "notifications[1].email is missing (required for channel email)",
        ),
        UnusableCase(
            "pubnub-channel-missing",
            start("r", phone(), email(), without(pubnub(), "pubnub-channel")),
            "notifications[2].pubnub-channel is missing (required for channel pubnub)",
        ),
        UnusableCase(
            "target-of-another-channel",
            start("r", {"channel": "phone", "at": soon(), "email": EMAIL}),
            "notifications[0].phone-number is missing (required for channel phone)",
        ),
        UnusableCase(
            "phone-number-not-string",
            start("r", phone(385911234567)),
            "notifications[0].phone-number must be a string",
        ),
        UnusableCase(
            "phone-number-national",
            start("r", phone("0911234567")),
            "notifications[0].phone-number is not an E.164 phone number (+ and up to 15 digits)",
        ),
        UnusableCase(
            "phone-number-formatted",
            start("r", phone("+385 91 123 4567")),
            "notifications[0].phone-number is not an E.164 phone number (+ and up to 15 digits)",
        ),
        UnusableCase(
            "phone-number-not-assigned",
            start("r", phone("+38500000")),
            "notifications[0].phone-number is not a possible phone number (wrong length for its country)",
        ),
        UnusableCase(
            "phone-number-unknown-country",
            start("r", phone("+99912345")),
            "notifications[0].phone-number is not a possible phone number (no such country code)",
        ),
        UnusableCase(
            "sms-phone-number-not-assigned",
            start("r", sms("+38500000"), phone()),
            "notifications[0].phone-number is not a possible phone number (wrong length for its country)",
        ),
        UnusableCase(
            "email-no-at-sign",
            start("r", email("owner.example.com")),
            "notifications[0].email is not a valid e-mail address (An email address must have an @-sign.)",
        ),
        UnusableCase(
            "email-two-at-signs",
            start("r", email("owner@@example.com")),
            "notifications[0].email is not a valid e-mail address (The part after the @-sign contains invalid characters: '@'.)",
        ),
        UnusableCase(
            "email-no-domain-dot",
            start("r", email("owner@example")),
            "notifications[0].email is not a valid e-mail address (The part after the @-sign is not valid. It should have a period.)",
        ),
        UnusableCase(
            "pubnub-channel-reserved-char",
            start("r", pubnub("orders,all")),
            "notifications[0].pubnub-channel contains a character PubNub does not allow (space, control, or one of , : * / \\)",
        ),
        UnusableCase(
            "pubnub-channel-empty",
            start("r", pubnub("")),
            "notifications[0].pubnub-channel is empty",
        ),
        UnusableCase(
            "second-notification-invalid",
            start("r", phone(), email("nobody")),
            "notifications[1].email is not a valid e-mail address (An email address must have an @-sign.)",
        ),
    ]


def invalid_cases() -> list[InvalidCase]:
    """At least one body per contract rule, each with its specific reason."""
    far = int(time.time()) + 10**9
    at_problem = "notifications[0].at must be a whole number of epoch seconds"
    return [
        InvalidCase(
            "not-json",
            "{not json",
            "body is not valid JSON: Expecting property name enclosed in double quotes at position 1",
        ),
        InvalidCase("empty-body", "", "body is not valid JSON: Expecting value at position 0"),
        InvalidCase("json-array", [stop()], "body is not a JSON object"),
        InvalidCase("json-string", '"start"', "body is not a JSON object"),
        InvalidCase("json-null", "null", "body is not a JSON object"),
        InvalidCase(
            "oversized", {**stop(), "padding": "x" * 70_000}, "body is larger than 65536 bytes"
        ),
        InvalidCase("process-id-missing", without(stop(), "process-id"), "process-id is missing"),
        InvalidCase("process-id-null", stop(None), "process-id is missing"),
        InvalidCase("process-id-number", stop(42), "process-id must be a string"),
        InvalidCase("process-id-empty", stop(""), "process-id is empty"),
        *[
            InvalidCase(f"process-id-{name}", stop(process_id), f"{OUTSIDE}; character {where}")
            for name, process_id, where in (
                ("blank", "   ", "1 is U+0020 SPACE"),
                ("control-char", "rest\u0000aurant", "5 is U+0000"),
                ("delete-char", "restaurant\u007f42", "11 is U+007F"),
                ("trailing-newline", "restaurant-42\n", "14 is U+000A"),
                ("zero-width-space", "restaurant\u200b42", "11 is U+200B ZERO WIDTH SPACE"),
                ("bidi-override", "restaurant\u202e42", "11 is U+202E RIGHT-TO-LEFT OVERRIDE"),
            )
        ],
        InvalidCase(
            "process-id-lone-surrogate",
            '{"process-id": "\\ud800", "action": "stop"}',
            f"{OUTSIDE}; character 1 is U+D800",
        ),
        InvalidCase(
            "duplicate-key",
            '{"process-id": "restaurant-42", "action": "stop", "action": "start",'
            ' "notifications": [{"channel": "console", "at": 1, "label": "x"}]}',
            "body has the key 'action' twice in one object",
        ),
        InvalidCase(
            "duplicate-key-in-a-notification",
            '{"process-id": "r", "action": "start", "notifications":'
            ' [{"channel": "console", "channel": "phone", "at": 1, "label": "x"}]}',
            "body has the key 'channel' twice in one object",
        ),
        InvalidCase(
            "integer-too-long",
            '{"process-id": "r", "action": "start", "notifications":'
            ' [{"channel": "console", "label": "x", "at": ' + "9" * 5000 + "}]}",
            "body is not usable JSON: Exceeds the limit (4300 digits) for integer string"
            " conversion: value has 5000 digits; use sys.set_int_max_str_digits() to increase"
            " the limit",
        ),
        InvalidCase("action-missing", without(stop(), "action"), "action is missing"),
        InvalidCase(
            "action-unknown", {**stop(), "action": "pause"}, "action must be 'start' or 'stop'"
        ),
        InvalidCase(
            "action-not-string", {**stop(), "action": 1}, "action must be 'start' or 'stop'"
        ),
        InvalidCase(
            "start-without-notifications",
            without(start(), "notifications"),
            "notifications is missing (a start needs at least one)",
        ),
        InvalidCase(
            "notifications-not-list",
            {**start(), "notifications": {"channel": "phone"}},
            "notifications must be a list",
        ),
        InvalidCase(
            "notifications-empty",
            {**start(), "notifications": []},
            "notifications is empty (a start needs at least one)",
        ),
        InvalidCase(
            "notifications-too-many",
            start("r", *[phone()] * 101),
            "notifications has more than 100 entries",
        ),
        InvalidCase(
            "notification-not-object", start("r", "phone"), "notifications[0] is not an object"
        ),
        InvalidCase(
            "channel-missing",
            start("r", without(phone(), "channel")),
            "notifications[0].channel is missing",
        ),
        InvalidCase(
            "channel-unknown",
            start("r", {**phone(), "channel": "fax"}),
            "notifications[0].channel must be one of: console, email, phone, pubnub, sms",
        ),
        InvalidCase(
            "channel-not-string",
            start("r", {**phone(), "channel": ["phone"]}),
            "notifications[0].channel must be one of: console, email, phone, pubnub, sms",
        ),
        InvalidCase(
            "at-missing", start("r", without(phone(), "at")), "notifications[0].at is missing"
        ),
        InvalidCase("at-boolean", start("r", phone(at=True)), at_problem),
        InvalidCase("at-fractional", start("r", phone(at=soon() + 0.5)), at_problem),
        InvalidCase("at-string", start("r", phone(at=str(soon()))), at_problem),
        InvalidCase(
            "at-nan",
            '{"process-id": "r", "action": "start", "notifications": [{"channel": "phone", "at": NaN, "phone-number": "+385911234567"}]}',
            "body is not valid JSON: NaN is not a JSON value",
        ),
        InvalidCase(
            "infinity-in-an-ignored-field",
            '{"process-id": "r", "action": "stop", "priority": Infinity}',
            "body is not valid JSON: Infinity is not a JSON value",
        ),
        InvalidCase("at-negative", start("r", phone(at=-1)), "notifications[0].at is before 1970"),
        InvalidCase(
            "at-far-future",
            start("r", phone(at=far)),
            "notifications[0].at is more than 30 days in the future",
        ),
    ]
