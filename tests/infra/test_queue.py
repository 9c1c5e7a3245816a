"""The synthesized request queue: FIFO, encrypted, TLS only, with a FIFO dead-letter queue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from infra.queue import MAX_RECEIVE_COUNT
from infra.stack import INITIATOR_TIMEOUT, EscalatorStack


@pytest.fixture(scope="module")
def template() -> Template:
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    return Template.from_stack(EscalatorStack(app, "Escalator"))


def queues(template: Template) -> Mapping[str, Any]:
    return template.find_resources("AWS::SQS::Queue")


def test_request_queue_is_fifo_without_content_based_deduplication(template: Template) -> None:
    template.resource_count_is("AWS::SQS::Queue", 2)
    for queue in queues(template).values():
        assert queue["Properties"]["FifoQueue"] is True
        assert queue["Properties"]["ContentBasedDeduplication"] is False
        assert queue["Properties"]["SqsManagedSseEnabled"] is True


def test_failed_requests_go_to_the_dead_letter_queue(template: Template) -> None:
    template.has_resource_properties(
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


def test_queues_deny_access_without_tls(template: Template) -> None:
    policies = template.find_resources("AWS::SQS::QueuePolicy")
    assert len(policies) == 2
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            statement["Effect"] == "Deny"
            and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for statement in statements
        )
