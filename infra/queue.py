"""The SQS FIFO request queue and its dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

# A message received this often goes to the dead-letter queue. Only a database that
# cannot be reached or written makes a request fail (a broken body is rejected, never
# retried), and every message received with the failing one counts a receive too (the
# rest of its group in the batch): so this, times the visibility timeout, is how long an
# outage may last before requests need a redrive. 100 x 3 minutes: 5 hours.
MAX_RECEIVE_COUNT = 100


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
