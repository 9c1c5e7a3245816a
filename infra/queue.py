"""The SQS FIFO request queue and its dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

# A message that failed this often goes to the dead-letter queue for an operator.
MAX_RECEIVE_COUNT = 5


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
            retention_period=Duration.days(14),
        )
        self.queue = sqs.Queue(
            self,
            "Requests",
            fifo=True,
            content_based_deduplication=False,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=visibility_timeout,
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT
            ),
        )
