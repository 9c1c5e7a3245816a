"""CloudWatch metrics (Powertools, embedded metric format): the registry of every metric
the functions write, and the only way to write one.

Each metric is declared once, in ``registry()``: its name, unit and meaning, the dashboard
graph that draws it and with which statistics, and the dimension it is also broken down
by (``per``, e.g. ``Channel``). Writing a name that is not declared, with another unit
or with another dimension raises ``UndeclaredMetric``. The dashboard
(``infra/dashboard.py``) is generated from this registry: a new metric is on it once it
is declared here.

Every metric has the ``service`` dimension (the series the alarms watch); one written
with its ``per`` dimension is also counted in the series of that value, in the same
document (two dimension sets), so that every total stays what the alarms see.

Every handler that records one is decorated with ``metrics.log_metrics``, which writes
them at the end of the invocation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
    AmazonCloudWatchEMFProvider,
)

from escalator import SERVICE

NAMESPACE = "Escalator"
# A dimension a metric may also be broken down by: the channel of the notification.
CHANNEL = "Channel"

# The dashboard's graphs that registered metrics are drawn in (a metric may name a new
# one: the dashboard adds it).
REQUESTS_GRAPH = "Requests"
EXECUTIONS_GRAPH = "Executions"
LATENESS_GRAPH = "Lateness: delivered after due (s)"
NOT_DELIVERED_GRAPH = "Notifications not delivered"


@dataclass(frozen=True)
class Metric:
    """One metric of the ``Escalator`` namespace and how the dashboard draws it: in the
    graph titled ``graph``, one line per statistic; with ``per``, one line per value of
    that dimension instead, and its total (the ``service`` series, which the alarms
    watch) in ``total_graph`` when one is named."""

    name: str
    unit: MetricUnit
    meaning: str
    graph: str
    statistics: tuple[str, ...] = ("Sum",)
    per: str | None = None
    total_graph: str | None = None
    right_axis: bool = False


class UndeclaredMetric(ValueError):
    """A metric written that ``registry()`` does not declare as written."""


REQUESTS_ACCEPTED = "RequestsAccepted"
REQUESTS_REJECTED = "RequestsRejected"
HANDED_OVER = "TicksHandedOver"
# A delivery window that failed, timed out or never started: its claims released at once.
WINDOWS_FAILED = "DeliveryWindowsFailed"
SENT = "NotificationsSent"
FAILED = "NotificationsFailed"
EXPIRED = "NotificationsExpired"
UNKNOWN = "NotificationsUnknown"
REJECTED = "NotificationsRejected"
# Not delivered: another process's delivery to the same target covered it.
COALESCED = "NotificationsCoalesced"
LATENESS = "DeliveryLateness"
# (each channel with status callbacks declares the metrics of its provider's statuses:
# escalator.channels.base.ProviderStatuses)


_COUNT = MetricUnit.Count

# The metrics of the pipeline itself; the channels declare those of their providers' statuses.
_CORE: tuple[Metric, ...] = (
    Metric(
        REQUESTS_ACCEPTED,
        _COUNT,
        "valid start and stop requests, applied or ignored (a start for an active "
        "process, a stop for an unknown one)",
        REQUESTS_GRAPH,
    ),
    Metric(
        REQUESTS_REJECTED,
        _COUNT,
        "requests rejected whole (their body broke the contract), kept in request_log",
        REQUESTS_GRAPH,
    ),
    Metric(
        HANDED_OVER,
        _COUNT,
        "ticks that claimed a full batch with more due: each hands over to a fresh tick",
        EXECUTIONS_GRAPH,
    ),
    Metric(
        WINDOWS_FAILED,
        _COUNT,
        "delivery windows that failed, ran out of time or never started (a tick's, or the "
        "initiator's for near-due arrivals): what they held claimed went back to the ticks",
        EXECUTIONS_GRAPH,
    ),
    Metric(
        SENT, _COUNT, "notifications delivered (recorded sent)", "Sent, by channel", per=CHANNEL
    ),
    Metric(
        FAILED,
        _COUNT,
        "notifications recorded failed: nothing went out (the provider refused it, no "
        "caller id, retries exhausted)",
        "Failed, by channel",
        per=CHANNEL,
    ),
    Metric(
        UNKNOWN,
        _COUNT,
        "notifications recorded unknown: the provider may have them (by channel those the "
        "record step settled; the total also counts sending leases that lapsed)",
        "Unknown outcome, by channel",
        per=CHANNEL,
        total_graph=NOT_DELIVERED_GRAPH,
    ),
    Metric(
        LATENESS,
        MetricUnit.Seconds,
        "seconds from a notification's due time to its delivery",
        LATENESS_GRAPH,
        statistics=("p50", "p99"),
    ),
    Metric(
        REJECTED,
        _COUNT,
        "notifications stored rejected at ingest: their target was unusable",
        NOT_DELIVERED_GRAPH,
    ),
    Metric(
        EXPIRED,
        _COUNT,
        "notifications expired: due longer ago than the maximum lateness",
        NOT_DELIVERED_GRAPH,
    ),
    Metric(
        COALESCED,
        _COUNT,
        "notifications coalesced by the per-recipient guard: another process's delivery "
        "to the same target covered them",
        NOT_DELIVERED_GRAPH,
    ),
)


_DECLARED: dict[str, Metric] = {}


def declare(*declared: Metric) -> None:
    """Declare metrics: the pipeline's below; each channel with status callbacks declares
    those of its provider's final statuses when the channel registry is built
    (``escalator.channels``). A name is declared once (the same declaration again is
    harmless)."""
    for metric in declared:
        if _DECLARED.get(metric.name, metric) != metric:
            raise ValueError(f"metric {metric.name} is declared twice")
        _DECLARED[metric.name] = metric


declare(*_CORE)


def registry() -> Mapping[str, Metric]:
    """Every declared metric: the pipeline's, and the channels' (once
    ``escalator.channels`` is imported, as everything that writes or draws them does)."""
    return MappingProxyType(_DECLARED)


metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def _write(name: str, unit: MetricUnit, value: float, dimensions: Mapping[str, str | None]) -> None:
    """Add ``value`` to the declared metric ``name``, in the series of its ``per``
    dimension's value too when that is given."""
    metric = registry().get(name)
    if metric is None:
        raise UndeclaredMetric(f"metric {name} is not declared in escalator.metrics.registry()")
    if metric.unit != unit:
        raise UndeclaredMetric(
            f"metric {name} is declared in {metric.unit.value}, not {unit.value}"
        )
    given = {key: item for key, item in dimensions.items() if item is not None}
    if set(given) - {metric.per}:
        raise UndeclaredMetric(
            f"metric {name} has no dimension {sorted(set(given) - {metric.per})}"
        )
    if not given:
        metrics.add_metric(name=name, unit=unit, value=value)
        return
    # Its own document, written now: one data point in two dimension sets, the service's
    # (what the alarms watch) and the breakdown's.
    document = AmazonCloudWatchEMFProvider(namespace=NAMESPACE, service=SERVICE)
    document.add_metric(name=name, unit=unit, value=value)
    document.add_dimensions(service=SERVICE, **given)
    document.flush_metrics()


def count(name: str, value: int = 1, **dimensions: str | None) -> None:
    """Add ``value`` to the counter ``name`` (nothing is written for zero), and to the
    series of its ``per`` dimension's value when given (``Channel="phone"``)."""
    if value:
        _write(name, _COUNT, value, dimensions)


def lateness(seconds: float) -> None:
    """How long after its due time a notification was delivered."""
    _write(LATENESS, MetricUnit.Seconds, max(seconds, 0.0), {})


def status_ended(metric: str, share_metric: str, *, failed: bool) -> None:
    """A delivery reached its final status, as its provider reported it: counted in
    ``metric``, and 100 (``failed``) or 0 in ``share_metric``, whose average is the
    share that failed."""
    count(metric)
    _write(share_metric, MetricUnit.Percent, 100.0 if failed else 0.0, {})
