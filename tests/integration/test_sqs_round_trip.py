"""Requests through a real SQS FIFO queue API (moto) into the initiator and out again."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from moto import mock_aws

from devstack.emulation.events import sqs_event, sqs_record
from devstack.emulation.sqs import lambda_event
from escalator.handlers import initiator
from tests.support import state
from tests.support.contract_cases import email, phone, start, stop


@pytest.fixture
def sqs(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="eu-central-1")


@pytest.fixture
def queue(sqs: Any) -> tuple[str, str]:
    """The request queue as the stack defines it: FIFO, content-based deduplication off."""
    url = sqs.create_queue(
        QueueName="escalator-requests.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"},
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return url, arn["QueueArn"]


def send(sqs: Any, url: str, document: Any) -> str:
    """Send as a producer must: group = process id, a unique deduplication id."""
    text = document if isinstance(document, str) else json.dumps(document)
    group = document.get("process-id", "invalid") if isinstance(document, dict) else "invalid"
    response = sqs.send_message(
        QueueUrl=url,
        MessageBody=text,
        MessageGroupId=group,
        MessageDeduplicationId=str(uuid.uuid4()),
    )
    message_id: str = response["MessageId"]
    return message_id


def receive(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        MessageSystemAttributeNames=["All"],
        VisibilityTimeout=30,
    ).get("Messages", [])
    return messages


def deliver(
    sqs: Any, url: str, arn: str, messages: list[dict[str, Any]], context: LambdaContext
) -> PartialItemFailureResponse:
    """What Lambda's event source does: invoke, then delete what did not fail."""
    response: PartialItemFailureResponse = initiator.handler(
        lambda_event(messages, queue_arn=arn), context
    )
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    done = [message for message in messages if message["MessageId"] not in failed]
    if done:
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]}
                for n, message in enumerate(done)
            ],
        )
    return response


def test_fifo_queue_requires_a_deduplication_id(sqs: Any, queue: tuple[str, str]) -> None:
    url, _ = queue
    with pytest.raises(ClientError, match="MessageDeduplicationId"):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(stop()), MessageGroupId="r")


def test_requests_round_trip_through_the_queue(
    sqs: Any,
    queue: tuple[str, str],
    initiator_env: str,
    database_url: str,
    lambda_context: LambdaContext,
) -> None:
    url, arn = queue
    # GIVEN requests of three groups sent as a producer sends them
    sent = [
        send(sqs, url, start("restaurant-1", phone())),
        send(sqs, url, start("restaurant-2", email())),
        send(sqs, url, "this is not a request"),
        send(sqs, url, stop("restaurant-1")),
    ]

    # WHEN the event source feeds them to the initiator until the queue is empty
    received: list[dict[str, Any]] = []
    while messages := receive(sqs, url):
        received += messages
        assert deliver(sqs, url, arn, messages, lambda_context) == {"batchItemFailures": []}

    # THEN every message was handled once, in order within its group, and deleted
    assert sorted(message["MessageId"] for message in received) == sorted(sent)
    group_one = [
        m["MessageId"] for m in received if m["Attributes"]["MessageGroupId"] == "restaurant-1"
    ]
    assert group_one == [sent[0], sent[3]]
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attributes == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }
    assert state.processes(database_url) == [
        ("restaurant-1", 1, "stopped"),
        ("restaurant-2", 1, "active"),
    ]
    outcomes = {row[0]: row[1] for row in state.requests(database_url)}
    assert outcomes == {
        sent[0]: "started",
        sent[1]: "started",
        sent[2]: "rejected",
        sent[3]: "stopped",
    }


def test_message_redelivered_by_sqs_changes_nothing(
    sqs: Any,
    queue: tuple[str, str],
    initiator_env: str,
    database_url: str,
    lambda_context: LambdaContext,
) -> None:
    url, arn = queue
    message_id = send(sqs, url, start("restaurant-1", phone()))
    (message,) = receive(sqs, url)
    # GIVEN the initiator applied the start but its deletion was lost, and the process
    # has since ended (a stop applied; its notification could as well have been
    # delivered): applied again, the start would begin a second process and call again
    response = initiator.handler(lambda_event([message], queue_arn=arn), lambda_context)
    assert response == {"batchItemFailures": []}
    stopped = sqs_record(stop("restaurant-1"), message_id=f"stop-{uuid.uuid4()}")
    assert initiator.handler(sqs_event(stopped), lambda_context) == {"batchItemFailures": []}
    before = state.snapshot(database_url)
    assert [row[2] for row in before["processes"]] == ["stopped"]
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )

    # WHEN SQS delivers the start again, with the same message id
    (again,) = receive(sqs, url)
    assert again["MessageId"] == message_id
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"
    assert deliver(sqs, url, arn, [again], lambda_context) == {"batchItemFailures": []}

    # THEN nothing changed (no second process), and the queue is empty
    assert state.snapshot(database_url) == before
    assert receive(sqs, url) == []
