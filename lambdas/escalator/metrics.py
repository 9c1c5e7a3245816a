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
LATENESS = "DeliveryLateness"
# Per final call status (Twilio's status callbacks): CallsCompleted, CallsNoAnswer, ...
# (each channel with status callbacks declares its own: escalator.channels)
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


def status_ended(metric: str, share_metric: str, *, failed: bool) -> None:
    """A delivery reached its final status, as its provider reported it: counted in
    ``metric``, and 100 (``failed``) or 0 in ``share_metric``, whose average is the
    share that failed."""
    count(metric)
    metrics.add_metric(name=share_metric, unit=MetricUnit.Percent, value=100.0 if failed else 0.0)
