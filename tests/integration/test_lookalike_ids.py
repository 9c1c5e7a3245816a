"""Process ids that a screen shows alike (a composed and a decomposed accent, a trailing
space, a no-break space, a Cyrillic a, U+0430) cannot diverge silently: in each pair an id is
outside printable ASCII without spaces, and that id is refused when it is sent (by the
producer's client, and by SQS: the emulation the local stack runs on refuses it as AWS
does) and, sent anyway under another group id, recorded by the initiator as invalid with
the reason, never applied as a request of another id."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from devstack.emulation.events import lambda_context
from devstack.emulation.moto_adapter import lambdas_in_process
from devstack.emulation.sqs import lambda_event
from devstack.emulation.template import REGION
from escalator.client import InvalidRequest, Producer
from escalator.handlers import initiator
from escalator.sqs_ids import first_outside_the_alphabet
from tests.support import state
from tests.support.contract_cases import LOOKALIKES, OUTSIDE, console, start, stop

SQS_REFUSAL = "can only include alphanumeric and punctuation characters. 1 to 128 in length."


@pytest.fixture
def queue(aws_credentials: None) -> Iterator[tuple[Any, str]]:
    """The request queue on moto as the tests and the local stack run it (strict rows on)."""
    with mock_aws(), lambdas_in_process():
        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(
            QueueName="escalator-requests.fifo",
            Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"},
        )["QueueUrl"]
        yield sqs, url


def refused_by_sqs(error: ClientError) -> bool:
    answer: dict[str, str] = dict(error.response["Error"])
    return answer["Code"] == "InvalidParameterValue" and answer["Message"].endswith(
        f"MessageGroupId {SQS_REFUSAL}"
    )


def test_a_lookalike_id_is_refused_when_sent_and_recorded_invalid_when_it_arrives(
    queue: tuple[Any, str], initiator_env: str, database_url: str
) -> None:
    sqs, url = queue
    producer = Producer(url, sqs=sqs)
    outside = [
        item
        for _, *ids in LOOKALIKES
        for item in ids
        if first_outside_the_alphabet(item) is not None
    ]
    inside = [item for _, *ids in LOOKALIKES for item in ids if item not in outside]
    # (every pair has an id outside; the ids inside are distinct)
    assert all(set(ids) & set(outside) for _, *ids in LOOKALIKES)
    assert len(inside) == len(set(inside)) == 2

    for process_id in outside:
        # WHEN a producer sends a request with an id outside the alphabet
        # THEN its client refuses it, as a request and as a group id
        with pytest.raises(InvalidRequest) as invalid:
            producer.stop(process_id)
        assert invalid.value.reason.startswith(f"{OUTSIDE}; character ")
        with pytest.raises(ClientError) as refused:
            producer.send_unchecked(json.dumps(stop(process_id)), group_id=process_id)
        assert refused_by_sqs(refused.value)
        # AND SQS refuses it as the group id of a message sent without the client
        with pytest.raises(ClientError) as refused:
            sqs.send_message(
                QueueUrl=url,
                MessageBody=json.dumps(stop(process_id)),
                MessageGroupId=process_id,
                MessageDeduplicationId=str(uuid.uuid4()),
            )
        assert refused_by_sqs(refused.value)

    # WHEN each pair's first id is started and its look-alike stopped, sent under a group
    # id SQS takes (a producer that does not use the process id as the group id)
    sent = {}
    for _, first, lookalike in LOOKALIKES:
        for document in (start(first, console()), stop(lookalike)):
            message_id = producer.send_unchecked(json.dumps(document), group_id="smuggled")
            sent[message_id] = (document["action"], document["process-id"])
    messages = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )["Messages"]
    assert len(messages) == len(sent) == 2 * len(LOOKALIKES)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    response = initiator.handler(
        lambda_event(messages, queue_arn=arn["QueueArn"]), lambda_context()
    )
    assert response == {"batchItemFailures": []}

    # THEN only the ids inside the alphabet started a process, still active: no stop of a
    # look-alike applied to it; every request of an id outside is recorded as invalid,
    # with the reason naming the character
    assert state.processes(database_url) == [
        (process_id, 1, "active") for process_id in sorted(inside)
    ]
    recorded = {row[0]: row for row in state.requests(database_url)}
    assert recorded.keys() == sent.keys()
    for message_id, (action, process_id) in sent.items():
        _, outcome, _, _, reason = recorded[message_id]
        if process_id in inside:
            assert (action, outcome, reason) == ("start", "started", None)
        else:
            position = first_outside_the_alphabet(process_id)
            assert position is not None
            assert outcome == "rejected"
            assert reason.startswith(f"{OUTSIDE}; character {position + 1} is U+")
