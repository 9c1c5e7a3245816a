"""CloudWatch metrics (Powertools, embedded metric format) of the delivery pipeline.

Every handler that records one is decorated with ``metrics.log_metrics``, which writes
them at the end of the invocation.
"""

from __future__ import annotations

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from escalator import SERVICE

NAMESPACE = "Escalator"
SENT = "NotificationsSent"
FAILED = "NotificationsFailed"
EXPIRED = "NotificationsExpired"
UNKNOWN = "NotificationsUnknown"
REJECTED = "NotificationsRejected"
# Not delivered: another process's delivery to the same target covered it.
COALESCED = "NotificationsCoalesced"
LATENESS = "DeliveryLateness"
# Per final call status (Twilio's status callbacks): CallsCompleted, CallsNoAnswer, ...
CALLS_PREFIX = "Calls"
# 100 for a call nobody took (busy, no-answer, failed, canceled), 0 for one answered:
# its average over a period is the share of unanswered calls, in percent (one metric,
# so its alarm costs one alarm metric).
UNANSWERED_CALLS = "CallsUnansweredPercent"

metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def count(name: str, value: int = 1) -> None:
    """Add ``value`` to the counter ``name`` (nothing is written for zero)."""
    if value:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def lateness(seconds: float) -> None:
    """How long after its due time a notification was delivered."""
    metrics.add_metric(name=LATENESS, unit=MetricUnit.Seconds, value=max(seconds, 0.0))


def call_metric(status: str) -> str:
    """``no-answer`` -> ``CallsNoAnswer``."""
    return CALLS_PREFIX + "".join(part.title() for part in status.split("-"))


def call_ended(status: str, *, unanswered: bool) -> None:
    """A call reached its final status."""
    count(call_metric(status))
    metrics.add_metric(
        name=UNANSWERED_CALLS, unit=MetricUnit.Percent, value=100.0 if unanswered else 0.0
    )
