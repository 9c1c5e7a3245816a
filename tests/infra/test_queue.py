"""The synthesized request queue: FIFO, encrypted, TLS only, with a FIFO dead-letter queue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pytest

from devstack.emulation.template import resources

if TYPE_CHECKING:
    from aws_cdk.assertions import Template

# (the CDK's assertions run in its JavaScript runtime: on the one worker that starts it)
pytestmark = pytest.mark.xdist_group("cdk")


@pytest.fixture(scope="module")
def queue_template(template: dict[str, Any]) -> Template:
    from aws_cdk.assertions import Template

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
        # (stated, not SQS's default, which AWS has changed: the local queue, made from
        # the template, then refuses what AWS refuses)
        assert queue["Properties"]["MaximumMessageSize"] == 262_144
        assert queue["Properties"]["SqsManagedSseEnabled"] is True


def test_failed_requests_go_to_the_dead_letter_queue(
    queue_template: Template, template: dict[str, Any]
) -> None:
    every_queue = queues(queue_template)
    ((requests_id, requests),) = [
        (logical_id, queue)
        for logical_id, queue in every_queue.items()
        if "RedrivePolicy" in queue["Properties"]
    ]
    (dead_letter_id,) = set(every_queue) - {requests_id}
    properties = requests["Properties"]
    redrive = properties["RedrivePolicy"]
    # the other queue takes them, and keeps them longer than the requests queue would:
    # a message's age counts from when it was first sent
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dead_letter_id, "Arn"]}
    dead_letters = every_queue[dead_letter_id]["Properties"]
    assert dead_letters["MessageRetentionPeriod"] > properties["MessageRetentionPeriod"]
    # the initiator finishes a batch before it shows again: at least six times the
    # function's timeout, as AWS advises for an SQS event source
    ((_, mapping),) = resources(template, "AWS::Lambda::EventSourceMapping").items()
    initiator = template["Resources"][mapping["Properties"]["FunctionName"]["Ref"]]
    assert properties["VisibilityTimeout"] >= 6 * initiator["Properties"]["Timeout"]
    # and the database may be unreachable for 5 hours before a request is dead-lettered
    # (each failed receive costs a visibility timeout; docs/operations.md: the outage budget)
    outage_budget = redrive["maxReceiveCount"] * properties["VisibilityTimeout"]
    assert outage_budget >= 5 * 3600


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
