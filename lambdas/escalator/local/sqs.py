"""Turn messages received from SQS into the event Lambda's SQS event source delivers."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any


def lambda_event(messages: Iterable[Mapping[str, Any]], *, queue_arn: str) -> dict[str, Any]:
    """The ``{"Records": [...]}`` event for messages from ``receive_message``.

    Receive with ``MessageSystemAttributeNames=["All"]`` so the FIFO attributes
    (``MessageGroupId``, ``SequenceNumber``, ...) reach the function, as they do on AWS.
    """
    region = queue_arn.split(":")[3]
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": dict(message.get("Attributes", {})),
                "messageAttributes": _message_attributes(message.get("MessageAttributes", {})),
                "md5OfBody": message.get("MD5OfBody")
                or hashlib.md5(message["Body"].encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


def _message_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    # The Lambda event spells the attribute fields in camelCase, receive_message in PascalCase.
    return {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value["DataType"],
        }
        for name, value in attributes.items()
    }
