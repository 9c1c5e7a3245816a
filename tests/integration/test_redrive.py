"""A database outage longer than the queue's receive budget, and the way back: the
dead-lettered requests redriven in order and applied once. The queues are the
template's (visibility timeout scaled down, receive counts as they are)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devstack.emulation.context import LocalContext
from devstack.emulation.sqs import EventSource, queues_from_template
from devstack.emulation.template import synthesized_template
from devstack.peers.postgres import query
from escalator import bootstrap
from escalator.client import ORIGINAL_MESSAGE_ID
from escalator.config import DatabaseSettings
from escalator.database import Database
from escalator.handlers import initiator
from escalator.retention import REQUEST_LOG_HORIZON, purge
from escalator_cli.main import main
from tests.support import state
from tests.support.contract_cases import console, start, stop

UNREACHABLE = "postgresql://escalator@127.0.0.1:9/escalator?connect_timeout=1"


@pytest.fixture
def queues(aws_credentials: None) -> Iterator[tuple[Any, str, str]]:
    """(sqs client, request queue URL, dead-letter queue URL), from the template."""
    with mock_aws():
        sqs = boto3.client("sqs", region_name="eu-central-1")
        created = queues_from_template(synthesized_template(), sqs)
        (requests,) = [q.url for name, q in created.items() if "DeadLetters" not in name]
        (dead,) = [q.url for name, q in created.items() if "DeadLetters" in name]
        yield sqs, requests, dead


def send(sqs: Any, url: str, document: dict[str, Any]) -> str:
    message_id: str = sqs.send_message(
        QueueUrl=url,
        MessageBody=json.dumps(document),
        MessageGroupId=document["process-id"],
        MessageDeduplicationId=str(uuid.uuid4()),
    )["MessageId"]
    return message_id


def drain(source: EventSource) -> None:
    while source.poll_once() or source.waiting():
        pass


def dead_letters(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def retention(sqs: Any, url: str) -> timedelta:
    """How long a queue keeps a message."""
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MessageRetentionPeriod"])
    return timedelta(seconds=int(attributes["Attributes"]["MessageRetentionPeriod"]))


def test_dead_lettered_requests_are_redriven_in_order_and_applied_once(
    queues: tuple[Any, str, str],
    initiator_env: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sqs, url, dead = queues
    # GIVEN start, stop, start for one restaurant, and a database down for longer than
    # the receive budget (scaled: 2 receives), so all three end in the dead-letter queue
    sent = [
        send(sqs, url, start("restaurant-42", console())),
        send(sqs, url, stop("restaurant-42")),
        send(sqs, url, start("restaurant-42", console())),
    ]
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE)
    bootstrap.reset()
    source = EventSource(
        sqs, url, initiator.handler, context=LocalContext(), visibility_timeout=0.05,
        wait_seconds=0, max_receive_count=2,
    )  # fmt: skip
    drain(source)
    assert dead_letters(sqs, dead) == 3
    assert query(database_url, "SELECT count(*) FROM request_log") == [(0,)]

    # WHEN the database is back and the operator redrives the dead-letter queue
    monkeypatch.setenv("DATABASE_URL", initiator_env)
    bootstrap.reset()
    assert main(["dlq", "redrive", "--queue-url", url, "--dead-letter-queue-url", dead]) == 0
    assert "moved 3 request(s)" in capsys.readouterr().out
    drain(source)

    # THEN each was applied once, in order, by the id it first arrived with
    assert state.processes(database_url) == [
        ("restaurant-42", 1, "stopped"),
        ("restaurant-42", 2, "active"),
    ]
    logged = query(database_url, "SELECT message_id, outcome FROM request_log ORDER BY received_at")
    assert logged == [(sent[0], "started"), (sent[1], "stopped"), (sent[2], "started")]
    assert dead_letters(sqs, dead) == 0

    # AND a request redriven a second time (an interrupted redrive run again) changes nothing
    sqs.send_message(
        QueueUrl=url,
        MessageBody=json.dumps(stop("restaurant-42")),
        MessageGroupId="restaurant-42",
        MessageDeduplicationId=str(uuid.uuid4()),
        MessageAttributes={ORIGINAL_MESSAGE_ID: {"DataType": "String", "StringValue": sent[1]}},
    )
    drain(source)
    assert state.processes(database_url)[-1] == ("restaurant-42", 2, "active")
    assert query(database_url, "SELECT count(*) FROM request_log") == [(3,)]


def test_a_request_redriven_just_inside_the_log_horizon_after_a_purge_is_applied_once(
    queues: tuple[Any, str, str],
    initiator_env: str,
    database_url: str,
    purger_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sqs, url, dead = queues
    source = EventSource(
        sqs, url, initiator.handler, context=LocalContext(), visibility_timeout=0.05,
        wait_seconds=0, max_receive_count=2,
    )  # fmt: skip
    # GIVEN a start and a stop, applied; the start's answer was lost, so SQS kept
    # delivering it until it was dead-lettered, although it had been applied
    first = send(sqs, url, start("restaurant-42", console()))
    send(sqs, url, stop("restaurant-42"))
    drain(source)
    assert state.processes(database_url) == [("restaurant-42", 1, "stopped")]
    # ... and that was almost as long ago as a request can come back: the queue keeps it
    # for its retention period, then the dead-letter queue for its own (a FIFO queue's
    # clock starts again there), as the template sets them
    almost = retention(sqs, url) + retention(sqs, dead) - timedelta(hours=1)
    assert almost < REQUEST_LOG_HORIZON
    query(
        database_url,
        "UPDATE request_log SET received_at = received_at - %s;"
        " UPDATE process SET started_at = started_at - %s, ended_at = ended_at - %s",
        (almost, almost, almost),
    )
    # ... and everything finished was purged (the shortest retention an operator can ask)
    purged = purge(Database(DatabaseSettings.from_url(purger_url)), timedelta(0))
    assert (purged.purged.processes, purged.purged.requests) == (1, 0)
    sqs.send_message(
        QueueUrl=dead,
        MessageBody=json.dumps(start("restaurant-42", console())),
        MessageGroupId="restaurant-42",
        MessageDeduplicationId=str(uuid.uuid4()),
        MessageAttributes={ORIGINAL_MESSAGE_ID: {"DataType": "String", "StringValue": first}},
    )

    # WHEN the operator redrives the dead-letter queue
    assert main(["dlq", "redrive", "--queue-url", url, "--dead-letter-queue-url", dead]) == 0
    assert "moved 1 request(s)" in capsys.readouterr().out
    drain(source)

    # THEN the start is found in the request log and not applied again: no process
    # started, nobody called an hour from now
    assert state.processes(database_url) == []
    assert query(database_url, "SELECT count(*) FROM request_log") == [(2,)]
