"""Structured JSON logs (Powertools) with phone numbers and e-mail addresses masked.

Masking happens on the serialized line, so nothing reaches the log unmasked: not a
field we add, not an exception message quoting a value back at us.
"""

from __future__ import annotations

import re

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.logging.types import LogRecord

from escalator import SERVICE

_PHONE = re.compile(r"\+[0-9]{6,15}")
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def mask_phone(number: str) -> str:
    """``+385911234567`` -> ``+385*******67``: the country prefix and last two digits."""
    return number[:4] + "*" * max(len(number) - 6, 0) + number[-2:]


def mask_email(address: str) -> str:
    """``owner@example.com`` -> ``o***@example.com``."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"


def mask(text: str) -> str:
    """Mask every phone number and e-mail address in ``text``."""
    text = _EMAIL.sub(lambda match: mask_email(match.group()), text)
    return _PHONE.sub(lambda match: mask_phone(match.group()), text)


class MaskingFormatter(LambdaPowertoolsFormatter):
    """The Powertools JSON formatter, masking personal data in the finished line."""

    def serialize(self, log: LogRecord) -> str:
        return mask(super().serialize(log))


logger = Logger(service=SERVICE, logger_formatter=MaskingFormatter())
