"""The producer client: sends start and stop requests to Escalator's queue, right by
construction (``MessageGroupId`` = process id, a unique ``MessageDeduplicationId``),
after checking them against the request contract. Needs only boto3. A tool for producers
and operators: not part of the Lambda bundle (nothing there imports it).

    producer = Producer(queue_url)
    producer.start("restaurant-42", [{"channel": "phone", "at": 1555057084,
                                      "phone-number": "+385911234567"}])
    producer.stop("restaurant-42")
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from escalator.contract import InvalidRequest, parse_request
from escalator.model import ORIGINAL_MESSAGE_ID
from escalator.sqs_ids import refusal

__all__ = ["ORIGINAL_MESSAGE_ID", "InvalidRequest", "Producer", "redrive"]


class Producer:
    """Sends requests to the FIFO request queue. Raises ``InvalidRequest`` before sending
    anything that breaks the contract."""

    def __init__(
        self,
        queue_url: str,
        *,
        sqs: Any = None,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        if sqs is None:
            import boto3

            sqs = boto3.client("sqs", endpoint_url=endpoint_url, region_name=region)
        self._sqs = sqs
        self.queue_url = queue_url

    def start(self, process_id: str, notifications: Sequence[Mapping[str, Any]]) -> str:
        """Start a process; returns the SQS message id."""
        return self.send(
            {"process-id": process_id, "action": "start", "notifications": list(notifications)}
        )

    def stop(self, process_id: str) -> str:
        """Stop a process; returns the SQS message id."""
        return self.send({"process-id": process_id, "action": "stop"})

    def send(self, request: Mapping[str, Any] | str) -> str:
        """Validate a request (a document or its JSON body) and send it."""
        body = request if isinstance(request, str) else json.dumps(request)
        parsed = parse_request(body, now=int(time.time()))
        return self.send_unchecked(body, group_id=parsed.process_id)

    def send_unchecked(self, body: str, *, group_id: str) -> str:
        """Send a body as it is, invalid or not (for trials of the rejection path). A group
        id SQS refuses is refused here as SQS refuses it: ``botocore``'s ``ClientError``,
        code ``InvalidParameterValue``, with SQS's message."""
        deduplication_id = str(uuid.uuid4())
        refuse_as_sqs_does(MessageGroupId=group_id, MessageDeduplicationId=deduplication_id)
        response = self._sqs.send_message(
            QueueUrl=self.queue_url,
            MessageBody=body,
            MessageGroupId=group_id,
            MessageDeduplicationId=deduplication_id,
        )
        message_id: str = response["MessageId"]
        return message_id


def refuse_as_sqs_does(**ids: str) -> None:
    """Raise the ``ClientError`` SQS answers ``SendMessage`` with when one of these ids
    (``MessageGroupId=...``, ``MessageDeduplicationId=...``) is outside its alphabet."""
    from botocore.exceptions import ClientError

    for parameter, value in ids.items():
        message = refusal(parameter, value)
        if message is not None:
            error = {"Code": "InvalidParameterValue", "Message": message, "Type": "Sender"}
            raise ClientError({"Error": error}, "SendMessage")


def redrive(
    sqs: Any,
    dead_letter_queue_url: str,
    queue_url: str,
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Move every request in the dead-letter queue back to the request queue, each group
    in its order; return how many moved.

    Each keeps its group and travels with the id it first arrived with (the
    ``ORIGINAL_MESSAGE_ID`` attribute, also its deduplication id): the initiator applies
    a request once, however often it is redriven. A message is deleted from the
    dead-letter queue only after it was sent on, so an interrupted redrive loses nothing
    and is simply run again.
    """
    moved = 0
    while True:
        messages = sqs.receive_message(
            QueueUrl=dead_letter_queue_url,
            MaxNumberOfMessages=10,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
            VisibilityTimeout=60,
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not messages:
            return moved
        for message in messages:
            attributes = dict(message.get("MessageAttributes") or {})
            original = (
                attributes.get(ORIGINAL_MESSAGE_ID, {}).get("StringValue") or message["MessageId"]
            )
            attributes[ORIGINAL_MESSAGE_ID] = {"DataType": "String", "StringValue": original}
            sqs.send_message(
                QueueUrl=queue_url,
                MessageBody=message["Body"],
                MessageGroupId=message["Attributes"]["MessageGroupId"],
                MessageDeduplicationId=original,
                MessageAttributes=attributes,
            )
            sqs.delete_message(
                QueueUrl=dead_letter_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
            moved += 1
            if progress is not None:
                progress(moved)
