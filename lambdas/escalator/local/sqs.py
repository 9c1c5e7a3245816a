"""Turn messages received from SQS into the event Lambda's SQS event source delivers."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Mapping
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


Handler = Callable[[dict[str, Any], Any], Any]


class EventSource:
    """Feeds an SQS FIFO queue to a handler as Lambda's event source mapping does.

    Batches of up to 10; what the handler reports as failed (or the whole batch, when it
    raises) stays on the queue and comes back after the visibility timeout, blocking the
    rest of its message group meanwhile; every other message is deleted.
    """

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        handler: Handler,
        *,
        context: Any,
        batch_size: int = 10,
        visibility_timeout: int = 30,
        wait_seconds: int = 1,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self._handler = handler
        self._context = context
        self._batch_size = batch_size
        self._visibility_timeout = visibility_timeout
        self._wait_seconds = wait_seconds

    def poll_once(self) -> int:
        """Receive one batch, hand it to the handler, delete what succeeded; return its size."""
        messages = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=self._batch_size,
            MessageSystemAttributeNames=["All"],
            VisibilityTimeout=self._visibility_timeout,
            WaitTimeSeconds=self._wait_seconds,
        ).get("Messages", [])
        if not messages:
            return 0
        try:
            response = self._handler(
                lambda_event(messages, queue_arn=self._queue_arn), self._context
            )
            failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        except Exception:  # the invocation failed: the whole batch is retried
            failed = {message["MessageId"] for message in messages}
        done = [message for message in messages if message["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(number), "ReceiptHandle": message["ReceiptHandle"]}
                    for number, message in enumerate(done[start : start + 10])
                ],
            )
        return len(messages)

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.poll_once()
            except Exception:  # the queue endpoint is going away, or hiccuped: try again
                if stop.wait(1):
                    return
