"""docs/request.schema.json, the contract for producers in any language: generated from
the code, a valid Draft 2020-12 schema, and judging every case of the contract table as
the contract does, except the cases no schema can judge, excluded by name with the limit
that puts them beyond it."""

from __future__ import annotations

import decimal
import json
import time
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from devstack.docs.schema import BEYOND_THE_SCHEMA, DOCUMENT, DRAFT, document
from devstack.emulation.events import body
from escalator.channels import CHANNELS
from escalator.contract import InvalidRequest, parse_request
from escalator.limits import MAX_NOTIFICATIONS, MAX_PROCESS_ID_LENGTH
from tests.support.contract_cases import (
    LOOKALIKES,
    console,
    email,
    invalid_cases,
    phone,
    pubnub,
    start,
    stop,
    unusable_target_cases,
)

ROOT = Path(__file__).resolve().parents[2]
# The committed file: what producers get.
SCHEMA = json.loads(DOCUMENT.read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA)
# The table's cases that no schema can judge, each with the limit of BEYOND_THE_SCHEMA
# that puts it beyond one.
EXCLUDED = {
    "oversized": "body-size",
    "duplicate-key": "duplicate-keys",
    "duplicate-key-in-a-notification": "duplicate-keys",
    "integer-too-long": "integer-digits",
    "at-far-future": "schedule-horizon",
}


def parsed(text: str) -> tuple[bool, Any]:
    """(whether ``text`` is JSON, the document): read as RFC 8259 has it, integers of
    any length, no ``NaN`` or ``Infinity``. A body that is not JSON is no instance of any
    schema."""

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return True, json.loads(
            text, parse_int=lambda digits: int(decimal.Decimal(digits)), parse_constant=no_constant
        )
    except ValueError:
        return False, None


def schema_accepts(text: str) -> bool:
    is_json, instance = parsed(text)
    return is_json and VALIDATOR.is_valid(instance)


def contract_accepts(text: str) -> bool:
    try:
        parse_request(text, now=int(time.time()))
    except InvalidRequest:
        return False
    return True


def valid_bodies() -> list[tuple[str, Any]]:
    """Requests the contract applies, beyond the table's starts with an unusable target."""
    now = int(time.time())
    alphabet = "".join(map(chr, range(0x21, 0x7F)))
    return [
        ("start", start()),
        ("stop", stop()),
        ("every-channel", start("r", phone(), email(), pubnub(), console())),
        *[(f"example-{n}", example) for n, example in enumerate(SCHEMA["examples"])],
        ("alphabet-first-half", stop(alphabet[:64])),
        ("alphabet-second-half", stop(alphabet[64:])),
        ("longest-id", stop("~" * MAX_PROCESS_ID_LENGTH)),
        ("most-notifications", start("r", *[console()] * MAX_NOTIFICATIONS)),
        ("at-whole-float", start("r", phone(at=float(now + 60)))),
        ("at-zero", start("r", phone(at=0))),
        ("extra-fields", {**start("r", {**phone(), "priority": 1}), "order": {"id": 7}}),
        ("stop-ignores-notifications", {**stop(), "notifications": "anything"}),
        ("target-null", start("r", phone(None))),
    ]


def invalid_bodies() -> list[tuple[str, Any]]:
    """Requests the contract refuses, beyond the table."""
    return [
        *[(f"lookalike-{name}", stop(lookalike)) for name, _, lookalike in LOOKALIKES],
        ("line-separator", stop("restaurant\u202842")),
        ("id-too-long", stop("~" * (MAX_PROCESS_ID_LENGTH + 1))),
        ("at-negative-float", start("r", phone(at=-1.0))),
        ("at-null", start("r", phone(at=None))),
        ("channel-null", start("r", {**phone(), "channel": None})),
        ("notifications-null", {**start(), "notifications": None}),
        ("too-many-notifications", start("r", *[console()] * (MAX_NOTIFICATIONS + 1))),
        ("action-null", {**stop(), "action": None}),
    ]


def test_the_committed_schema_is_what_the_code_generates() -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == document(), "run `make docs`"


def test_it_is_a_draft_2020_12_schema_of_every_registered_channel() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == DRAFT
    notification = SCHEMA["$defs"]["notification"]["properties"]
    assert notification["channel"]["enum"] == sorted(CHANNELS)
    assert {channel.target_field for channel in CHANNELS.values()} <= notification.keys()


def test_the_schema_judges_every_case_as_the_contract_does() -> None:
    judged = [
        *[(case.id, case.body, False) for case in invalid_cases() if case.id not in EXCLUDED],
        *[(case.id, case.body, True) for case in unusable_target_cases()],
        *[(name, document, True) for name, document in valid_bodies()],
        *[(name, document, False) for name, document in invalid_bodies()],
    ]

    verdicts = {
        name: (schema_accepts(body(item)), contract_accepts(body(item))) for name, item, _ in judged
    }

    # (the cases are what they claim to be: the comparison below is not vacuous)
    assert [name for name, _, valid in judged if verdicts[name][1] != valid] == []
    assert len(verdicts) == len(judged)
    disagreements = {name: verdict for name, verdict in verdicts.items() if len(set(verdict)) > 1}
    assert disagreements == {}, "(schema, contract) accepts"


def test_what_no_schema_can_judge_is_excluded_by_name_and_said_beside_it() -> None:
    cases = {case.id: case for case in invalid_cases()}
    for case_id, limit in EXCLUDED.items():
        # an exclusion the table has, that the contract refuses and the schema cannot
        text = body(cases[case_id].body)
        assert (schema_accepts(text), contract_accepts(text)) == (True, False), case_id
        assert BEYOND_THE_SCHEMA[limit] in SCHEMA["description"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/request.schema.json" in readme
