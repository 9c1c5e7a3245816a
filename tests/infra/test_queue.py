"""The synthesized request queue: FIFO, encrypted, TLS only, with a FIFO dead-letter queue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from infra.queue import MAX_RECEIVE_COUNT
from infra.stack import INITIATOR_TIMEOUT


@pytest.fixture(scope="module")
def queue_template(template: dict[str, Any]) -> Template:
    return Template.from_json(template)


def queues(queue_template: Template) -> Mapping[str, Any]:
    return queue_template.find_resources("AWS::SQS::Queue")


def test_request_queue_is_fifo_without_content_based_deduplication(
    queue_template: Template,
) -> None:
    queue_template.resource_count_is("AWS::SQS::Queue", 2)
    for queue in queues(queue_template).values():
        assert queue["Properties"]["FifoQueue"] is True
        assert queue["Properties"]["ContentBasedDeduplication"] is False
        assert queue["Properties"]["SqsManagedSseEnabled"] is True


def test_failed_requests_go_to_the_dead_letter_queue(queue_template: Template) -> None:
    queue_template.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "RedrivePolicy": {
                "deadLetterTargetArn": Match.any_value(),
                "maxReceiveCount": MAX_RECEIVE_COUNT,
            },
            "VisibilityTimeout": INITIATOR_TIMEOUT.to_seconds() * 6,
        },
    )
    assert MAX_RECEIVE_COUNT >= 5


def test_queues_deny_access_without_tls(queue_template: Template) -> None:
    policies = queue_template.find_resources("AWS::SQS::QueuePolicy")
    assert len(policies) == 2
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            statement["Effect"] == "Deny"
            and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for statement in statements
        )
