"""The request queues as the template defines them, and Lambda's SQS event source: the
messages received turned into the event it delivers, retried and dead-lettered as it
does."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from devstack.emulation.template import resources
from escalator.model import ORIGINAL_MESSAGE_ID


@dataclass(frozen=True)
class Queue:
    url: str
    arn: str


def queues_from_template(
    template: dict[str, Any], sqs: Any, names: Mapping[str, str] | None = None
) -> dict[str, Queue]:
    """Create the template's queues with its attributes (FIFO, deduplication, visibility
    timeout, largest message, retention, redrive policy), dead-letter queues first; by
    logical id.
    ``names`` maps a logical id to the queue's name (its logical id otherwise)."""
    queues = resources(template, "AWS::SQS::Queue")
    ordered = sorted(queues, key=lambda name: "RedrivePolicy" in queues[name]["Properties"])
    created: dict[str, Queue] = {}
    for name in ordered:
        properties = queues[name]["Properties"]
        attributes = {
            key: str(properties[key]).lower()
            if isinstance(properties[key], bool)
            else str(properties[key])
            for key in (
                "FifoQueue",
                "ContentBasedDeduplication",
                "VisibilityTimeout",
                "MaximumMessageSize",
                "MessageRetentionPeriod",
            )
            if key in properties
        }
        redrive = properties.get("RedrivePolicy")
        if redrive:
            target = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": created[target].arn,
                    "maxReceiveCount": redrive["maxReceiveCount"],
                }
            )
        suffix = ".fifo" if properties.get("FifoQueue") else ""
        queue_name = (names or {}).get(name, name) + suffix
        url = sqs.create_queue(QueueName=queue_name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        created[name] = Queue(url=url, arn=arn)
    return created


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

    Batches of up to 10. A message the handler reports as failed (or the whole batch,
    when it raises) comes back with the rest of its message group after the visibility
    timeout, in order, while other groups go on. Every receive of a message counts, the
    followers' that the handler skipped too, as SQS counts them; at the queue's
    ``maxReceiveCount`` (its redrive policy, unless ``max_receive_count`` is given) the
    message moves to its dead-letter queue, keeping its id in the ``ORIGINAL_MESSAGE_ID``
    attribute (SQS keeps the id itself). Successes are deleted. ``visibility_timeout``
    (the queue's, unless given) may be scaled down in tests: the receive count is what
    the outage budget is made of.

    The failed messages stay in flight on the queue meanwhile (so the queue keeps their
    group blocked) and are retried from here: moto's FIFO queue would hand a group's
    returning messages back out of order.

    ``sqs`` is what Lambda polls with: on AWS, the function's execution role (receive,
    delete, the queue's attributes). A message moved to the dead-letter queue is moved by
    SQS itself: with ``redrive_sqs`` (``sqs`` unless given), the queue's own credentials.
    """

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        handler: Handler,
        *,
        context: Any,
        batch_size: int = 10,
        visibility_timeout: float | None = None,
        wait_seconds: int = 1,
        max_receive_count: int | None = None,
        dead_letter_queue_url: str | None = None,
        redrive_sqs: Any = None,
    ) -> None:
        self._sqs = sqs
        self._redrive_sqs = redrive_sqs or sqs
        self._queue_url = queue_url
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])[
            "Attributes"
        ]
        self._queue_arn = attributes["QueueArn"]
        redrive = json.loads(attributes.get("RedrivePolicy") or "{}")
        if visibility_timeout is None:
            visibility_timeout = float(attributes.get("VisibilityTimeout", 30))
        if max_receive_count is None:
            max_receive_count = int(redrive.get("maxReceiveCount", 5))
        if dead_letter_queue_url is None and redrive.get("deadLetterTargetArn"):
            dead_letter_queue_url = self._redrive_sqs.get_queue_url(
                QueueName=redrive["deadLetterTargetArn"].rsplit(":", 1)[1]
            )["QueueUrl"]
        self._handler = handler
        self._context = context
        self._batch_size = batch_size
        self._visibility_timeout = visibility_timeout
        self._wait_seconds = wait_seconds
        self._max_receive_count = max_receive_count
        self._dead_letter_queue_url = dead_letter_queue_url
        # group -> (when to retry, its failed messages in order)
        self._retries: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._attempts: dict[str, int] = {}

    def waiting(self) -> bool:
        """Whether failed messages wait for their retry (their group blocked meanwhile)."""
        return bool(self._retries)

    @property
    def most_receives(self) -> int:
        """The most times any message now in flight has been received."""
        return max(self._attempts.values(), default=0)

    def poll_once(self) -> int:
        """Retry one group whose time has come, or receive one new batch; return its size."""
        now = time.monotonic()
        due = next((group for group, (at, _) in self._retries.items() if at <= now), None)
        if due is not None:
            _, messages = self._retries.pop(due)
        else:
            messages = self._sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=self._batch_size,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
                # Long enough that the queue never hands them out again by itself.
                VisibilityTimeout=_HOLD_SECONDS,
                WaitTimeSeconds=self._wait_seconds,
            ).get("Messages", [])
        if messages:
            self._deliver(messages)
        return len(messages)

    def _deliver(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            self._attempts[message["MessageId"]] = self._attempts.get(message["MessageId"], 0) + 1
        try:
            event = lambda_event(messages, queue_arn=self._queue_arn)
            response = self._handler(event, self._context)
            failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        except Exception:  # the invocation failed: the whole batch is retried
            failed = {message["MessageId"] for message in messages}
        self._delete([message for message in messages if message["MessageId"] not in failed])
        retry_at = time.monotonic() + self._visibility_timeout
        for message in messages:
            if message["MessageId"] not in failed:
                continue
            if self._attempts[message["MessageId"]] >= self._max_receive_count:
                self._dead_letter(message)
                continue
            group = message["Attributes"]["MessageGroupId"]
            _, waiting = self._retries.get(group, (retry_at, []))
            self._retries[group] = (retry_at, [*waiting, message])

    def _dead_letter(self, message: dict[str, Any]) -> None:
        if self._dead_letter_queue_url is not None:
            attributes = dict(message.get("MessageAttributes") or {})
            attributes.setdefault(
                ORIGINAL_MESSAGE_ID, {"DataType": "String", "StringValue": message["MessageId"]}
            )
            self._redrive_sqs.send_message(
                QueueUrl=self._dead_letter_queue_url,
                MessageBody=message["Body"],
                MessageGroupId=message["Attributes"]["MessageGroupId"],
                MessageDeduplicationId=message["MessageId"],
                MessageAttributes=attributes,
            )
        self._delete([message], self._redrive_sqs)

    def _delete(self, messages: list[dict[str, Any]], sqs: Any = None) -> None:
        for start in range(0, len(messages), 10):
            (sqs or self._sqs).delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(number), "ReceiptHandle": message["ReceiptHandle"]}
                    for number, message in enumerate(messages[start : start + 10])
                ],
            )
        for message in messages:
            self._attempts.pop(message["MessageId"], None)

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; an error of the queue's endpoint is tried again a
        second later, any other error ends the polling (and is raised)."""
        while not stop.is_set():
            try:
                if not self.poll_once() and self._retries:
                    stop.wait(0.2)
            except (BotoCoreError, ClientError):  # the endpoint is going away, or hiccuped
                if stop.wait(1):
                    return


# Received messages stay invisible this long; retries are driven by the EventSource.
_HOLD_SECONDS = 12 * 3600
