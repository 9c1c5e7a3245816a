"""Personal data never reaches a log line unmasked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from escalator.logs import logger, mask, mask_email, mask_phone

LogLines = Callable[[], list[dict[str, Any]]]


def test_phone_keeps_country_prefix_and_last_two_digits() -> None:
    assert mask_phone("+385911234567") == "+385*******67"


def test_email_keeps_first_letter_and_domain() -> None:
    assert mask_email("owner@example.com") == "o***@example.com"


def test_mask_finds_every_occurrence_in_free_text() -> None:
    text = "call +385911234567 then mail owner@example.com and +14155550123"
    assert mask(text) == "call +385*******67 then mail o***@example.com and +141******23"


def test_log_lines_are_json_with_personal_data_masked(log_lines: LogLines) -> None:
    logger.info("calling +385911234567", extra={"target": "owner@example.com"})
    (line,) = log_lines()
    assert line["message"] == "calling +385*******67"
    assert line["target"] == "o***@example.com"


def test_mask_finds_each_kind_alone() -> None:
    # (each expression runs only on text that has its character: '@', '+')
    assert mask("mail owner@example.com") == "mail o***@example.com"
    assert mask("call +385911234567") == "call +385*******67"
    assert mask("nothing personal, 385911234567") == "nothing personal, 385911234567"


def test_a_message_is_read_as_json_as_powertools_reads_it(log_lines: LogLines) -> None:
    logger.info('{"order": 42, "phone": "+385911234567"}')
    logger.info("process started")
    logger.info("  [1, 2]")
    logger.info("null")
    logger.info("not json")
    logger.info("")
    lines = log_lines()
    assert [line.get("message") for line in lines] == [
        {"order": 42, "phone": "+385*******67"},
        "process started",
        [1, 2],
        None,  # (Powertools drops a key whose value is None)
        "not json",
        "",
    ]
