"""The Escalator stack. Issue 4 completes it (database, functions, state machine)."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from constructs import Construct

from infra.queue import RequestQueue

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
        CfnOutput(self, "RequestQueueUrl", value=requests.queue.queue_url)
        CfnOutput(self, "DeadLetterQueueUrl", value=requests.dead_letter_queue.queue_url)
