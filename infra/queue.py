"""The SQS FIFO request queue and its dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration, Names
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

# (the request log is kept as long as a request can come back: escalator.retention)
from escalator.retention import DEAD_LETTER_RETENTION_DAYS, REQUEST_QUEUE_RETENTION_DAYS

# A message received this often goes to the dead-letter queue. Only a database that
# cannot be reached or written makes a request fail (a broken body is rejected, never
# retried), and every message received with the failing one counts a receive too (the
# rest of its group in the batch): so this, times the visibility timeout, is how long an
# outage may last before requests need a redrive. 100 x 3 minutes: 5 hours.
MAX_RECEIVE_COUNT = 100

# What Lambda's poller calls with the consuming function's execution role: "The Lambda
# execution role must include ... sqs:DeleteMessage, sqs:GetQueueAttributes,
# sqs:ReceiveMessage" (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/
# SQSDeveloperGuide/sqs-configure-lambda-function-trigger.html; AWS's managed policy
# AWSLambdaSQSQueueExecutionRole holds the same three). CDK's SqsEventSource grants every
# consumer action (grantConsumeMessages: ChangeMessageVisibility and GetQueueUrl too),
# which neither the poller nor the initiator calls: docs/least-privilege.md.
POLLER_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")


# The largest request body either queue takes, stated rather than left to SQS's default
# (which AWS has changed: 256 KiB, then 1 MiB for new queues): a start request is well
# under a kilobyte, and what the local queue refuses is then exactly what AWS does.
MAX_MESSAGE_BYTES = 262_144


class RequestQueue(Construct):
    """Where producers send start and stop requests.

    FIFO, because requests of one process must apply in order; content-based
    deduplication off, because two identical requests (start, stop, start) are
    distinct: producers set a unique ``MessageDeduplicationId``.
    """

    def __init__(self, scope: Construct, construct_id: str, *, visibility_timeout: Duration):
        super().__init__(scope, construct_id)
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetters",
            fifo=True,
            content_based_deduplication=False,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(DEAD_LETTER_RETENTION_DAYS),
            max_message_size_bytes=MAX_MESSAGE_BYTES,
        )
        self.queue = sqs.Queue(
            self,
            "Requests",
            fifo=True,
            content_based_deduplication=False,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=visibility_timeout,
            retention_period=Duration.days(REQUEST_QUEUE_RETENTION_DAYS),
            max_message_size_bytes=MAX_MESSAGE_BYTES,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT
            ),
        )

    def feed(
        self, function: lambda_.Function, *, batch_size: int, max_concurrency: int
    ) -> lambda_.EventSourceMapping:
        """Lambda polls the requests for ``function`` (partial batch failures reported),
        its role allowed what the poller calls and nothing more."""
        mapping = function.add_event_source_mapping(
            # (the id SqsEventSource gives it: the same resource as before)
            f"SqsEventSource:{Names.node_unique_id(self.queue.node)}",
            event_source_arn=self.queue.queue_arn,
            batch_size=batch_size,
            report_batch_item_failures=True,
            max_concurrency=max_concurrency,
        )
        function.add_to_role_policy(
            iam.PolicyStatement(actions=list(POLLER_ACTIONS), resources=[self.queue.queue_arn])
        )
        return mapping
