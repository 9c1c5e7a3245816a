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

metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def count(name: str, value: int = 1) -> None:
    """Add ``value`` to the counter ``name`` (nothing is written for zero)."""
    if value:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def lateness(seconds: float) -> None:
    """How long after its due time a notification was delivered."""
    metrics.add_metric(name=LATENESS, unit=MetricUnit.Seconds, value=max(seconds, 0.0))
