"""The request contract at its edges: the exact limits, what a rejection keeps, what is
stored for a missing target. Written for mutants that survived ``make mutate``
(docs/mutation.md)."""

from __future__ import annotations

import json
import time

import pytest

from escalator.channels.pubnub import MAX_CHANNEL_NAME
from escalator.contract import InvalidRequest, StartRequest, parse_request
from escalator.limits import MAX_BODY_BYTES
from tests.support.contract_cases import phone, pubnub, start

NOW = int(time.time())


def padded(document: dict[str, object], size: int) -> str:
    """The document's JSON, padded with spaces to exactly ``size`` bytes."""
    text = json.dumps(document)
    return text + " " * (size - len(text.encode()))


def test_a_body_of_exactly_the_maximum_size_is_read_and_one_byte_more_is_not() -> None:
    document = start("restaurant-1", pubnub(at=NOW))

    assert isinstance(parse_request(padded(document, MAX_BODY_BYTES), now=NOW), StartRequest)
    with pytest.raises(InvalidRequest) as refused:
        parse_request(padded(document, MAX_BODY_BYTES + 1), now=NOW)
    assert refused.value.reason == f"body is larger than {MAX_BODY_BYTES} bytes"


def test_a_body_nested_too_deeply_for_the_parser_is_refused_with_the_reason() -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_request("[" * 20_000 + "]" * 20_000, now=NOW)
    assert refused.value.reason == "body is not valid JSON: nested too deeply"


def test_a_key_given_twice_is_quoted_in_the_reason_up_to_40_characters() -> None:
    key = "k" * 50
    with pytest.raises(InvalidRequest) as refused:
        parse_request(f'{{"{key}": 1, "{key}": 2}}', now=NOW)
    assert refused.value.reason == f"body has the key {'k' * 40!r} twice in one object"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"process-id": "restaurant-7"}, "action is missing"),
        ({"process-id": "restaurant-7", "action": "pause"}, "action must be 'start' or 'stop'"),
    ],
)
def test_a_request_without_a_valid_action_keeps_its_process_id(
    document: dict[str, str], reason: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_request(json.dumps(document), now=NOW)
    assert (refused.value.reason, refused.value.process_id, refused.value.action) == (
        reason,
        "restaurant-7",
        None,
    )


def test_a_missing_target_is_stored_empty_beside_its_reason() -> None:
    request = parse_request(json.dumps(start("r", {"channel": "phone", "at": NOW})), now=NOW)

    assert isinstance(request, StartRequest)
    (notification,) = request.notifications
    assert (notification.target, notification.rejected) == (
        "",
        "notifications[0].phone-number is missing (required for channel phone)",
    )


def test_an_at_of_the_epoch_itself_is_not_before_1970_but_too_late() -> None:
    request = parse_request(json.dumps(start("r", phone(at=0))), now=NOW)

    assert isinstance(request, StartRequest)
    assert request.notifications[0].rejected == (
        "notifications[0].at is already too late (due more than 900 seconds ago)"
    )


def test_a_pubnub_channel_name_may_have_the_maximum_length_and_no_more() -> None:
    longest, longer = "c" * MAX_CHANNEL_NAME, "c" * (MAX_CHANNEL_NAME + 1)
    request = parse_request(json.dumps(start("r", pubnub(longest), pubnub(longer))), now=NOW)

    assert isinstance(request, StartRequest)
    assert [item.rejected for item in request.notifications] == [
        None,
        f"notifications[1].pubnub-channel is longer than {MAX_CHANNEL_NAME} characters",
    ]


@pytest.mark.parametrize("character", ["\x07", "\u200b", "\u2028"])
def test_a_pubnub_channel_name_with_an_invisible_character_is_rejected(character: str) -> None:
    request = parse_request(json.dumps(start("r", pubnub(f"ch{character}1"))), now=NOW)

    assert isinstance(request, StartRequest)
    assert request.notifications[0].rejected == (
        "notifications[0].pubnub-channel contains a character PubNub does not allow"
        " (space, control, or one of , : * / \\)"
    )


def test_a_process_id_of_129_characters_is_refused_with_the_limit_named() -> None:
    now = int(time.time())
    assert parse_request(json.dumps(start("r" * 128, phone())), now=now).process_id == "r" * 128
    with pytest.raises(InvalidRequest) as refused:
        parse_request(json.dumps(start("r" * 129, phone())), now=now)
    assert refused.value.reason == "process-id is longer than 128 characters"
