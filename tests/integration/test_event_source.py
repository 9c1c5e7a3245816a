"""The local stack's event source emulation keeps group order and isolates failures."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devstack.emulation.context import LocalContext
from devstack.emulation.sqs import EventSource
from devstack.polling import wait_until


@pytest.fixture
def sqs(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="eu-central-1")


class FlakyHandler:
    """Applies bodies in order; fails a body the first time it sees it, when told to."""

    def __init__(self, fail_once: set[str]) -> None:
        self.fail_once = set(fail_once)
        self.applied: list[str] = []
        self.batches: list[list[str]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        records = event["Records"]
        self.batches.append([record["body"] for record in records])
        failures: list[dict[str, str]] = []
        failed_groups: set[str] = set()
        for record in records:
            group = record["attributes"]["MessageGroupId"]
            if group in failed_groups or record["body"] in self.fail_once:
                self.fail_once.discard(record["body"])
                failed_groups.add(group)
                failures.append({"itemIdentifier": record["messageId"]})
            else:
                self.applied.append(record["body"])
        return {"batchItemFailures": failures}


def send(sqs: Any, url: str, group: str, body: str) -> None:
    sqs.send_message(
        QueueUrl=url,
        MessageBody=body,
        MessageGroupId=group,
        MessageDeduplicationId=str(uuid.uuid4()),
    )


def test_a_failed_message_and_its_group_come_back_in_order_while_others_go_on(sqs: Any) -> None:
    url = sqs.create_queue(
        QueueName="requests.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"},
    )["QueueUrl"]
    for body in ("a1", "a2", "a3"):
        send(sqs, url, "a", body)
    for body in ("b1", "b2"):
        send(sqs, url, "b", body)
    handler = FlakyHandler(fail_once={"a2"})
    source = EventSource(
        sqs, url, handler, context=LocalContext(), visibility_timeout=1, wait_seconds=0
    )

    # WHEN the first batches are handled: a2 fails
    while source.poll_once():
        pass

    # THEN a1 and group b are applied; a2 and a3 wait
    assert handler.applied == ["a1", "b1", "b2"]

    # WHEN the visibility timeout has passed: the failed message and its group come back
    wait_until(source.poll_once, timeout=10, what="the failed group's return")
    while source.poll_once():
        pass

    # THEN a2 and a3 are applied, in order, and the queue is empty
    assert [body for body in handler.applied if body.startswith("a")] == ["a1", "a2", "a3"]
    assert sorted(handler.applied) == ["a1", "a2", "a3", "b1", "b2"]
    assert all(len(batch) <= 10 for batch in handler.batches)
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_a_crashing_handler_keeps_the_whole_batch(sqs: Any) -> None:
    url = sqs.create_queue(
        QueueName="requests.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"},
    )["QueueUrl"]
    send(sqs, url, "a", json.dumps({"n": 1}))
    calls: list[int] = []

    def crash(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(len(event["Records"]))
        raise RuntimeError("database down")

    source = EventSource(
        sqs, url, crash, context=LocalContext(), visibility_timeout=1, wait_seconds=0
    )
    assert source.poll_once() == 1
    # (the batch comes back once its visibility timeout has passed)
    wait_until(source.poll_once, timeout=10, what="the batch's return")
    assert calls == [1, 1]


def test_a_message_failing_five_times_moves_to_the_dead_letter_queue(sqs: Any) -> None:
    attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "false"}
    url = sqs.create_queue(QueueName="requests.fifo", Attributes=attributes)["QueueUrl"]
    dead = sqs.create_queue(QueueName="dead.fifo", Attributes=attributes)["QueueUrl"]
    send(sqs, url, "a", "poison")
    send(sqs, url, "b", "fine")
    handler = FlakyHandler(fail_once=set())
    attempts: list[str] = []

    def always_fails_poison(event: dict[str, Any], context: Any) -> dict[str, Any]:
        attempts.extend(record["body"] for record in event["Records"] if record["body"] == "poison")
        handler.fail_once.add("poison")
        return handler(event, context)

    source = EventSource(
        sqs,
        url,
        always_fails_poison,
        context=LocalContext(),
        visibility_timeout=0,
        wait_seconds=0,
        dead_letter_queue_url=dead,
    )
    for _ in range(10):
        source.poll_once()

    assert attempts == ["poison"] * 5
    assert handler.applied == ["fine"]
    (dead_letter,) = sqs.receive_message(QueueUrl=dead, MaxNumberOfMessages=10)["Messages"]
    assert dead_letter["Body"] == "poison"
