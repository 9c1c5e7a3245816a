"""Phone calls through Twilio; the destination is an E.164 number."""

from __future__ import annotations

import re

import phonenumbers

from escalator.channels.base import Channel

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def target_problem(number: str) -> str | None:
    """Why ``number`` is not a valid E.164 phone number, or ``None``."""
    if not _E164.fullmatch(number):
        return "is not an E.164 phone number (+ and up to 15 digits)"
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return "is not a valid E.164 phone number"
    if not phonenumbers.is_valid_number(parsed):
        return "is not a valid E.164 phone number"
    return None


CHANNEL = Channel(name="phone", target_field="phone-number", target_problem=target_problem)
