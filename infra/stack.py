"""The Escalator stack. Issue 4 completes it (network, database, schedule, alarms)."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.functions import EscalatorFunctions
from infra.queue import RequestQueue
from infra.state_machine import DEFAULT_MAX_CONCURRENCY, delivery_definition

INITIATOR_TIMEOUT = Duration.seconds(30)


class EscalatorStack(Stack):
    """Everything Escalator runs on, in one stack."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        # Six times the initiator's timeout, as AWS advises for an SQS event source.
        requests = RequestQueue(
            self,
            "RequestQueue",
            visibility_timeout=Duration.seconds(INITIATOR_TIMEOUT.to_seconds() * 6),
        )
        functions = EscalatorFunctions(self, "Functions", environment={})
        max_concurrency = int(
            self.node.try_get_context("max_concurrency") or DEFAULT_MAX_CONCURRENCY
        )
        definition = delivery_definition(
            self,
            activator=functions.activator,
            confirm=functions.confirm,
            record=functions.record,
            notifiers=functions.notifiers,
            max_concurrency=max_concurrency,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "Delivery",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            state_machine_type=sfn.StateMachineType.STANDARD,
        )
        CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn)
        CfnOutput(self, "RequestQueueUrl", value=requests.queue.queue_url)
        CfnOutput(self, "DeadLetterQueueUrl", value=requests.dead_letter_queue.queue_url)
