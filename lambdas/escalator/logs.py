"""Structured JSON logs (Powertools) with phone numbers and e-mail addresses masked.

Masking happens on the serialized line, so nothing reaches the log unmasked: not a
field we add, not an exception message quoting a value back at us.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.logging.types import LogRecord

from escalator import SERVICE
from escalator.masking import mask, mask_email, mask_phone

__all__ = ["logger", "mask", "mask_email", "mask_phone"]


class MaskingFormatter(LambdaPowertoolsFormatter):
    """The Powertools JSON formatter, masking personal data in the finished line."""

    def serialize(self, log: LogRecord) -> str:
        return mask(super().serialize(log))


# What a document json.loads reads can start with (whitespace, then a value; NaN and
# Infinity are Python's).
_JSON_START = frozenset(' \t\n\r{["-0123456789tfnNI')


def _json_message(message: Any) -> Any:
    """Powertools' reading of a str message as JSON (a document is logged as one), without
    the JSONDecodeError a plain sentence costs (a tenth of the line): text that no JSON
    document starts with is returned as it is, as Powertools does when parsing fails."""
    if isinstance(message, str) and message[:1] not in _JSON_START:
        return message
    return json.loads(message)


logger = Logger(service=SERVICE, logger_formatter=MaskingFormatter(json_deserializer=_json_message))
