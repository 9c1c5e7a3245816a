"""Initiator Lambda: applies the requests of an SQS FIFO batch, one transaction each.

A message that fails (the database is down) is reported with the rest of its message
group as batch item failures; other groups go on. If every message fails, Powertools
raises instead, so the invocation errors and the event source backs off.
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from escalator import bootstrap
from escalator.logs import logger
from escalator.metrics import metrics
from escalator.model import ORIGINAL_MESSAGE_ID, RequestMessage

# Failed records are logged through the service's logger, so they are JSON and masked too.
processor = SqsFifoPartialProcessor(
    skip_group_on_error=True, logger=logging.getLogger(logger.service)
)


def request_message(record: SQSRecord) -> RequestMessage:
    """The request a record carries. A request redriven from the dead-letter queue is
    known by the id it first arrived with, so it is applied once however often it comes
    back."""
    original = (record.raw_event.get("messageAttributes") or {}).get(ORIGINAL_MESSAGE_ID) or {}
    message_id = original.get("stringValue") or record.message_id
    return RequestMessage(message_id, record.body, record.attributes.message_group_id)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Lambda entry point for the SQS event source: each request applied (an exception
    marks it and the rest of its group failed), then its near-due notifications' window."""
    batch = bootstrap.initiator().batch()
    response = process_partial_response(
        event=event,
        record_handler=lambda record: batch.apply(request_message(record)),
        processor=processor,
        context=context,
    )
    batch.finish()
    return response
