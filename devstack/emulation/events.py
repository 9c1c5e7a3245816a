"""Factories for the events AWS delivers to the handlers."""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from typing import Any, cast

from aws_lambda_powertools.utilities.typing import LambdaContext

from devstack.emulation.context import LocalContext

QUEUE_ARN = "arn:aws:sqs:eu-central-1:123456789012:escalator-requests.fifo"
_SEQUENCE = itertools.count(18_000_000_000_000_000_000)


def body(document: Any) -> str:
    """A message body: JSON for anything but a ``str``, which is taken as it is."""
    return document if isinstance(document, str) else json.dumps(document)


def sqs_record(
    document: Any, *, group: str | None = None, message_id: str | None = None
) -> dict[str, Any]:
    """One record as the SQS FIFO event source delivers it to Lambda."""
    text = body(document)
    if group is None:
        parsed = document if isinstance(document, dict) else {}
        group = str(parsed.get("process-id", "group"))
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": f"receipt-{uuid.uuid4()}",
        "body": text,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1555057084000",
            "SequenceNumber": str(next(_SEQUENCE)),
            "MessageGroupId": group,
            "SenderId": "AIDAEXAMPLE",
            "MessageDeduplicationId": str(uuid.uuid4()),
            "ApproximateFirstReceiveTimestamp": "1555057084000",
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "eu-central-1",
    }


def sqs_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def lambda_context() -> LambdaContext:
    """A context object as Lambda passes it (typed as Powertools' ``LambdaContext``)."""
    return cast(LambdaContext, LocalContext(function_name="escalator-test"))
