"""The request contract, rule by rule, on the parser alone."""

from __future__ import annotations

import json
import time

import pytest

from devstack.emulation.events import body
from escalator.channels.pubnub import MAX_CHANNEL_NAME
from escalator.contract import (
    InvalidRequest,
    Notification,
    StartRequest,
    StopRequest,
    parse_request,
)
from escalator.limits import MAX_BODY_BYTES, MAX_NOTIFICATIONS, MAX_PROCESS_ID_LENGTH
from tests.support.contract_cases import (
    EMAIL,
    OUTSIDE,
    PHONE,
    PUBNUB,
    InvalidCase,
    UnusableCase,
    email,
    invalid_cases,
    phone,
    pubnub,
    sms,
    start,
    stop,
    unusable_target_cases,
)

CASES = invalid_cases()
UNUSABLE = unusable_target_cases()
# Numbers of the original component's tests and README: possible, not valid by today's
# number plans; whether they exist is Twilio's to say.
ORIGINAL_NUMBERS = ("+38591111111", "+3851111111")


def now() -> int:
    return int(time.time())


def test_the_table_covers_at_least_25_distinct_invalid_bodies() -> None:
    assert len({body(case.body) for case in CASES}) >= 25
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_invalid_body_is_rejected_with_its_specific_reason(case: InvalidCase) -> None:
    with pytest.raises(InvalidRequest) as rejected:
        parse_request(body(case.body), now=now())
    assert rejected.value.reason == case.reason


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_reason_never_quotes_a_phone_number_or_an_email_address(case: InvalidCase) -> None:
    with pytest.raises(InvalidRequest) as rejected:
        parse_request(body(case.body), now=now())
    for secret in (PHONE, EMAIL, "owner.example.com", "0911234567", "+38500000"):
        assert secret not in rejected.value.reason


def test_start_is_parsed_into_typed_notifications() -> None:
    document = start("restaurant-42", phone(), email(), pubnub(), sms())
    request = parse_request(json.dumps(document), now=now())
    assert request == StartRequest(
        process_id="restaurant-42",
        notifications=(
            Notification("phone", PHONE, document["notifications"][0]["at"], recipient=PHONE),
            Notification("email", EMAIL, document["notifications"][1]["at"], recipient=EMAIL),
            Notification("pubnub", PUBNUB, document["notifications"][2]["at"], recipient=PUBNUB),
            Notification("sms", PHONE, document["notifications"][3]["at"], recipient=PHONE),
        ),
    )


def test_stop_is_parsed() -> None:
    assert parse_request(json.dumps(stop("restaurant-42")), now=now()) == StopRequest(
        "restaurant-42"
    )


def test_unknown_extra_fields_are_ignored() -> None:
    document = {**start("r", {**phone(), "priority": "high"}), "order": {"id": 7}}
    request = parse_request(json.dumps(document), now=now())
    assert isinstance(request, StartRequest)
    assert request.notifications[0].target == PHONE


def test_stop_ignores_notifications() -> None:
    document = {**stop("r"), "notifications": "anything"}
    assert parse_request(json.dumps(document), now=now()) == StopRequest("r")


def test_at_may_be_a_whole_float_and_a_little_in_the_past() -> None:
    document = start("r", phone(at=float(now() - 600)))
    request = parse_request(json.dumps(document), now=now())
    assert isinstance(request, StartRequest)
    assert request.notifications[0].at == document["notifications"][0]["at"]
    assert isinstance(request.notifications[0].at, int)
    assert request.notifications[0].rejected is None


def test_an_at_older_than_the_maximum_lateness_rejects_its_notification_only() -> None:
    document = start("r", phone(at=1555057084), email())
    request = parse_request(json.dumps(document), now=now(), max_lateness=900)
    assert isinstance(request, StartRequest)
    assert request.notifications[0].rejected == (
        "notifications[0].at is already too late (due more than 900 seconds ago)"
    )
    assert request.notifications[1].rejected is None


def test_limits_are_inclusive() -> None:
    document = start("r" * MAX_PROCESS_ID_LENGTH, *[phone()] * MAX_NOTIFICATIONS)
    request = parse_request(json.dumps(document), now=now())
    assert isinstance(request, StartRequest)
    assert len(request.notifications) == MAX_NOTIFICATIONS


def test_schedule_horizon_is_configurable() -> None:
    document = start("r", phone(at=now() + 7200))
    with pytest.raises(InvalidRequest, match="more than 0 days in the future"):
        parse_request(json.dumps(document), now=now(), max_schedule_ahead=3600)


def test_the_schedule_horizon_includes_its_last_second() -> None:
    # GIVEN one clock reading, and notifications due exactly at the horizon and one later
    moment = now()
    at_the_edge = start("r", phone(at=moment + 3600))
    beyond = start("r", phone(at=moment + 3601))

    # THEN the first is accepted and the second refused
    request = parse_request(json.dumps(at_the_edge), now=moment, max_schedule_ahead=3600)
    assert isinstance(request, StartRequest)
    with pytest.raises(InvalidRequest, match="in the future"):
        parse_request(json.dumps(beyond), now=moment, max_schedule_ahead=3600)


def test_the_maximum_lateness_includes_its_last_second() -> None:
    moment = now()
    at_the_edge = start("r", phone(at=moment - 900), phone(at=moment - 901))

    request = parse_request(json.dumps(at_the_edge), now=moment, max_lateness=900)

    assert isinstance(request, StartRequest)
    assert [item.rejected for item in request.notifications] == [
        None,
        "notifications[1].at is already too late (due more than 900 seconds ago)",
    ]


def test_rejection_keeps_the_valid_process_id_and_action() -> None:
    with pytest.raises(InvalidRequest) as rejected:
        parse_request(json.dumps(start("restaurant-7", phone(at="soon"))), now=now())
    assert (rejected.value.process_id, rejected.value.action) == ("restaurant-7", "start")


@pytest.mark.parametrize("case", UNUSABLE, ids=[case.id for case in UNUSABLE])
def test_an_unusable_target_rejects_its_notification_only(case: UnusableCase) -> None:
    request = parse_request(body(case.body), now=now())
    assert isinstance(request, StartRequest)
    reasons = [item.rejected for item in request.notifications]
    assert reasons[case.position] == case.reason
    assert [reason for reason in reasons if reason is not None] == [case.reason]
    assert request.rejected == (request.notifications[case.position],)
    for secret in (PHONE, EMAIL, "owner.example.com", "0911234567", "+38500000"):
        assert secret not in case.reason


@pytest.mark.parametrize("number", ORIGINAL_NUMBERS)
def test_the_original_components_example_numbers_are_accepted(number: str) -> None:
    request = parse_request(json.dumps(start("r", phone(number))), now=now())
    assert isinstance(request, StartRequest)
    assert request.notifications[0] == Notification(
        "phone", number, request.notifications[0].at, recipient=number
    )


def test_a_target_that_is_not_a_string_is_kept_beside_its_reason() -> None:
    request = parse_request(json.dumps(start("r", phone(385911234567), email())), now=now())
    assert isinstance(request, StartRequest)
    assert request.notifications[0].target == "385911234567"
    assert request.notifications[0].rejected == "notifications[0].phone-number must be a string"
    assert request.notifications[1].rejected is None


def test_a_process_id_may_be_any_printable_ascii_but_the_space() -> None:
    # the whole alphabet (0x21 to 0x7E), its ends included, in ids of at most 128
    alphabet = "".join(map(chr, range(0x21, 0x7F)))
    for process_id in (alphabet[:64], alphabet[64:], "!", "~", "~" * MAX_PROCESS_ID_LENGTH):
        assert parse_request(json.dumps(stop(process_id)), now=now()) == StopRequest(process_id)


@pytest.mark.parametrize(
    ("process_id", "character"),
    [
        # the look-alikes
        ("caf\u00e9-7", "4 is U+00E9 LATIN SMALL LETTER E WITH ACUTE"),
        ("cafe\u0301-7", "5 is U+0301 COMBINING ACUTE ACCENT"),
        ("restaurant-42 ", "14 is U+0020 SPACE"),
        ("restaurant 42", "11 is U+0020 SPACE"),
        ("restaurant\u00a042", "11 is U+00A0 NO-BREAK SPACE"),
        ("rest\u0430urant-43", "5 is U+0430 CYRILLIC SMALL LETTER A"),
        # and more
        ("restaurant\u2028", "11 is U+2028 LINE SEPARATOR"),
        ("restaurant\u2029", "11 is U+2029 PARAGRAPH SEPARATOR"),
        ("\U0001f355", "1 is U+1F355 SLICE OF PIZZA"),
        ("r\x1b[2J", "2 is U+001B"),
    ],
)
def test_a_process_id_outside_the_alphabet_is_refused_naming_the_character(
    process_id: str, character: str
) -> None:
    with pytest.raises(InvalidRequest) as rejected:
        parse_request(json.dumps(stop(process_id)), now=now())
    assert rejected.value.reason == f"{OUTSIDE}; character {character}"
    assert rejected.value.reason.isascii()
    assert rejected.value.reason.isprintable()


def test_each_usable_target_names_its_recipient_normalised_and_keeps_its_spelling() -> None:
    request = parse_request(
        json.dumps(
            start(
                "r",
                phone("+3850911110003"),
                sms("+3850911110003"),
                email("owner@EXAMPLE.COM"),
                phone("+1"),
            )
        ),
        now=now(),
    )
    assert isinstance(request, StartRequest)
    assert [(item.target, item.recipient) for item in request.notifications] == [
        ("+3850911110003", "+385911110003"),
        ("+3850911110003", "+385911110003"),
        ("owner@EXAMPLE.COM", "owner@example.com"),
        ("+1", None),  # (rejected: no recipient)
    ]


# ---- The contract at its edges: the exact limits, what a rejection keeps, what is
# stored for a missing target (``make mutate`` found these untested: docs/mutation.md).


def padded(document: dict[str, object], size: int) -> str:
    """The document's JSON, padded with spaces to exactly ``size`` bytes."""
    text = json.dumps(document)
    return text + " " * (size - len(text.encode()))


def test_a_body_of_exactly_the_maximum_size_is_read_and_one_byte_more_is_not() -> None:
    moment = now()
    document = start("restaurant-1", pubnub(at=moment))

    assert isinstance(parse_request(padded(document, MAX_BODY_BYTES), now=moment), StartRequest)
    with pytest.raises(InvalidRequest) as refused:
        parse_request(padded(document, MAX_BODY_BYTES + 1), now=moment)
    assert refused.value.reason == f"body is larger than {MAX_BODY_BYTES} bytes"


def test_a_body_nested_too_deeply_for_the_parser_is_refused_with_the_reason() -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_request("[" * 20_000 + "]" * 20_000, now=now())
    assert refused.value.reason == "body is not valid JSON: nested too deeply"


def test_a_key_given_twice_is_quoted_in_the_reason_up_to_40_characters() -> None:
    key = "k" * 50
    with pytest.raises(InvalidRequest) as refused:
        parse_request(f'{{"{key}": 1, "{key}": 2}}', now=now())
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
        parse_request(json.dumps(document), now=now())
    assert (refused.value.reason, refused.value.process_id, refused.value.action) == (
        reason,
        "restaurant-7",
        None,
    )


def test_a_missing_target_is_stored_empty_beside_its_reason() -> None:
    moment = now()
    request = parse_request(json.dumps(start("r", {"channel": "phone", "at": moment})), now=moment)

    assert isinstance(request, StartRequest)
    (notification,) = request.notifications
    assert (notification.target, notification.rejected) == (
        "",
        "notifications[0].phone-number is missing (required for channel phone)",
    )


def test_an_at_of_the_epoch_itself_is_not_before_1970_but_too_late() -> None:
    request = parse_request(json.dumps(start("r", phone(at=0))), now=now())

    assert isinstance(request, StartRequest)
    assert request.notifications[0].rejected == (
        "notifications[0].at is already too late (due more than 900 seconds ago)"
    )


def test_a_pubnub_channel_name_may_have_the_maximum_length_and_no_more() -> None:
    longest, longer = "c" * MAX_CHANNEL_NAME, "c" * (MAX_CHANNEL_NAME + 1)
    request = parse_request(json.dumps(start("r", pubnub(longest), pubnub(longer))), now=now())

    assert isinstance(request, StartRequest)
    assert [item.rejected for item in request.notifications] == [
        None,
        f"notifications[1].pubnub-channel is longer than {MAX_CHANNEL_NAME} characters",
    ]


@pytest.mark.parametrize("character", ["\x07", "\u200b", "\u2028"])
def test_a_pubnub_channel_name_with_an_invisible_character_is_rejected(character: str) -> None:
    request = parse_request(json.dumps(start("r", pubnub(f"ch{character}1"))), now=now())

    assert isinstance(request, StartRequest)
    assert request.notifications[0].rejected == (
        "notifications[0].pubnub-channel contains a character PubNub does not allow"
        " (space, control, or one of , : * / \\)"
    )


def test_a_process_id_of_129_characters_is_refused_with_the_limit_named() -> None:
    moment = now()
    assert parse_request(json.dumps(start("r" * 128, phone())), now=moment).process_id == "r" * 128
    with pytest.raises(InvalidRequest) as refused:
        parse_request(json.dumps(start("r" * 129, phone())), now=moment)
    assert refused.value.reason == "process-id is longer than 128 characters"
