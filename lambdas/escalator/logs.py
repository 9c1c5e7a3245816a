"""Structured JSON logs (Powertools) with phone numbers and e-mail addresses masked.

Masking happens on the serialized line, so nothing reaches the log unmasked: not a
field we add, not an exception message quoting a value back at us.
"""

from __future__ import annotations

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


logger = Logger(service=SERVICE, logger_formatter=MaskingFormatter())
