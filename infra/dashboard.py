"""The operators' CloudWatch dashboard, generated: every metric of the registry
(``escalator.metrics.registry()``, each drawn as it declares), the queue, the executions,
the throttles of every function of the stack and the state of every alarm. A metric,
channel, function or alarm added to those appears here without a change to this module.

One dashboard within CloudWatch's free allowance: at most ``FREE_METRICS`` metrics
(counted as ``devstack/docs/dashboard.py`` says; a template test holds the count).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aws_cdk import Aws, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from escalator import metrics
from infra.alarms import escalator_metric

# CloudWatch's free tier: three custom dashboards referencing up to 50 metrics each.
FREE_METRICS = 50
PERIOD = Duration.minutes(5)
GRAPH_WIDTH = 8
GRAPH_HEIGHT = 6
ROW_WIDTH = 24
QUEUE_GRAPH = "Request queue"
THROTTLES_GRAPH = "Lambda throttles, by function"
ALARMS_TITLE = "Alarms"
# How many alarms an alarm status widget shows in a row, at the dashboard's full width.
ALARMS_PER_ROW = 6


@dataclass
class _Graph:
    left: list[cloudwatch.IMetric] = field(default_factory=list)
    right: list[cloudwatch.IMetric] = field(default_factory=list)


class OperationsDashboard(Construct):
    """The dashboard ``dashboard_name``: alarms on top, then three graphs a row in the
    registry's order, the throttles last."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dashboard_name: str,
        request_queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        tick: sfn.StateMachine,
        window: sfn.StateMachine,
        functions: Sequence[lambda_.Function],
        alarms: Sequence[cloudwatch.Alarm],
        breakdowns: Mapping[str, Sequence[str]],
    ):
        super().__init__(scope, construct_id)
        graphs: dict[str, _Graph] = {metrics.REQUESTS_GRAPH: _Graph()}
        graphs[QUEUE_GRAPH] = _Graph(
            left=[
                request_queue.metric_approximate_age_of_oldest_message(
                    period=PERIOD, statistic="Maximum", label="oldest request (s)"
                )
            ],
            right=[
                dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=PERIOD, statistic="Maximum", label="dead letters"
                )
            ],
        )
        graphs[metrics.EXECUTIONS_GRAPH] = _Graph(
            left=[
                tick.metric_started(period=PERIOD, label="ticks started"),
                tick.metric_failed(period=PERIOD, label="ticks failed"),
                window.metric_failed(period=PERIOD, label="windows failed"),
            ]
        )
        for declared in metrics.registry().values():
            for graph_title, metric in registered(declared, breakdowns):
                graph = graphs.setdefault(graph_title, _Graph())
                (graph.right if declared.right_axis else graph.left).append(metric)
        graphs[THROTTLES_GRAPH] = _Graph(
            left=[
                function.metric_throttles(period=PERIOD, statistic="Sum", label=function.node.id)
                for function in functions
            ]
        )

        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=dashboard_name,
            default_interval=Duration.hours(12),
        )
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                title=ALARMS_TITLE,
                alarms=list(alarms),
                width=ROW_WIDTH,
                height=1 + math.ceil(len(alarms) / ALARMS_PER_ROW),
            )
        )
        row: list[cloudwatch.IWidget] = []
        for title, graph in graphs.items():
            wide = title == THROTTLES_GRAPH
            if row and (wide or sum(widget.width for widget in row) + GRAPH_WIDTH > ROW_WIDTH):
                self.dashboard.add_widgets(*row)
                row = []
            row.append(
                cloudwatch.GraphWidget(
                    title=title,
                    left=graph.left,
                    right=graph.right,
                    width=ROW_WIDTH if wide else GRAPH_WIDTH,
                    height=GRAPH_HEIGHT,
                    left_y_axis=cloudwatch.YAxisProps(min=0, show_units=False),
                    right_y_axis=cloudwatch.YAxisProps(min=0, show_units=False),
                    legend_position=cloudwatch.LegendPosition.RIGHT
                    if wide
                    else cloudwatch.LegendPosition.BOTTOM,
                )
            )
        self.dashboard.add_widgets(*row)

    @property
    def url(self) -> str:
        """Where the console shows it."""
        return (
            f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region={Aws.REGION}"
            f"#dashboards/dashboard/{self.dashboard.dashboard_name}"
        )


def registered(
    declared: metrics.Metric, breakdowns: Mapping[str, Sequence[str]]
) -> list[tuple[str, cloudwatch.Metric]]:
    """The lines a registered metric is drawn as, each with the title of its graph: one
    per statistic, or one per value of its breakdown (and its total, when it has a graph
    for it)."""

    def line(label: str, statistic: str, **dimensions: str) -> cloudwatch.Metric:
        return escalator_metric(
            declared.name, statistic=statistic, period=PERIOD, label=label, **dimensions
        )

    def label(statistic: str, name: str = declared.name) -> str:
        return name if len(declared.statistics) == 1 else f"{name} {statistic}"

    if declared.per is None:
        return [(declared.graph, line(label(stat), stat)) for stat in declared.statistics]
    if declared.per not in breakdowns:
        raise ValueError(f"the dashboard knows no values of {declared.per} ({declared.name})")
    lines = [
        (
            declared.graph,
            line(label(stat, value), stat, **{declared.per: value}),
        )
        for value in breakdowns[declared.per]
        for stat in declared.statistics
    ]
    if declared.total_graph is not None:
        lines += [(declared.total_graph, line(label(stat), stat)) for stat in declared.statistics]
    return lines
