"""The operators' dashboard, read back from the synthesized template: within the free
allowance of metrics, with every metric the code writes (each channel's series too),
every alarm, every function's throttles, the queue and the executions; and its picture
in docs/ is drawn from it."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.docs.dashboard import (
    PICTURE,
    Line,
    alarm_ids,
    count_metrics,
    dashboard,
    dashboards,
    lines,
    svg,
)
from devstack.emulation.template import EXPRESS, STANDARD, resources, state_machine
from escalator import SERVICE, metrics
from escalator.channels import CHANNELS

# The channels whose deliveries the dashboard breaks out (all but those for trials).
BROKEN_OUT = [name for name, channel in CHANNELS.items() if not channel.development]


@pytest.fixture(scope="module")
def body(template: dict[str, Any]) -> dict[str, Any]:
    return dashboard(template)[1]


@pytest.fixture(scope="module")
def drawn(body: dict[str, Any]) -> list[Line]:
    return [
        line for widget in body["widgets"] if widget["type"] == "metric" for line in lines(widget)
    ]


Series = tuple[str, tuple[tuple[str, str], ...], str]


def series(drawn: list[Line], namespace: str) -> set[Series]:
    """Each line of ``namespace``: its metric, dimensions and statistic."""
    return {
        (line.name, tuple(sorted(line.dimensions.items())), line.statistic)
        for line in drawn
        if line.namespace == namespace
    }


def test_one_dashboard_within_the_free_allowance_of_metrics(
    template: dict[str, Any], body: dict[str, Any]
) -> None:
    assert len(dashboards(template)) == 1
    per_graph = {
        widget["properties"].get("title"): len(lines(widget))
        for widget in body["widgets"]
        if widget["type"] == "metric"
    }
    # (CloudWatch's free allowance, as the issue states it: not the code's own constant)
    assert sum(per_graph.values()) <= 50, per_graph
    assert count_metrics(body) == sum(per_graph.values())


def test_every_registered_metric_is_drawn_and_each_channel_has_its_series(
    drawn: list[Line],
) -> None:
    expected: set[Series] = set()
    for metric in metrics.registry().values():
        for statistic in metric.statistics:
            service = (("service", SERVICE),)
            if metric.per is None or metric.total_graph is not None:
                expected.add((metric.name, service, statistic))
            if metric.per is not None:
                for value in BROKEN_OUT if metric.per == metrics.CHANNEL else ():
                    dimensions = tuple(sorted([*service, (metric.per, value)]))
                    expected.add((metric.name, dimensions, statistic))
    assert len(expected) > len(metrics.registry())
    # nothing left off, and nothing drawn that the code does not write
    assert series(drawn, metrics.NAMESPACE) == expected
    # (what the issue asks for by name, whatever the registry declares)
    service = (("service", SERVICE),)
    assert {("DeliveryLateness", service, "p50"), ("DeliveryLateness", service, "p99")} <= expected
    for channel in ("phone", "sms", "email", "pubnub"):
        for outcome in ("NotificationsSent", "NotificationsFailed", "NotificationsUnknown"):
            assert (outcome, (("Channel", channel), *service), "Sum") in expected


def test_every_alarm_of_the_stack_is_in_the_alarm_widget(
    template: dict[str, Any], body: dict[str, Any]
) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    assert len(alarms) >= 12
    assert sorted(alarm_ids(body)) == sorted(alarms)


def test_every_function_of_the_stack_has_its_throttles_drawn(
    template: dict[str, Any], drawn: list[Line]
) -> None:
    # (CDK's own deploy-time helpers, with their own code, are not the stack's functions)
    functions = [
        logical_id
        for logical_id, function in resources(template, "AWS::Lambda::Function").items()
        if function["Properties"]["Handler"].startswith("escalator.handlers.")
        # (but the hourly purge's: a throttled run is done by the next one)
        and function["Properties"]["Handler"] != "escalator.handlers.purge.handler"
    ]
    assert len(functions) >= 8 + len(CHANNELS)
    assert series(drawn, "AWS/Lambda") == {
        ("Throttles", (("FunctionName", f"${{{logical_id}}}"),), "Sum") for logical_id in functions
    }


def test_the_queue_and_the_executions_are_drawn(
    template: dict[str, Any], drawn: list[Line]
) -> None:
    queue, dead_letters = (
        f"${{{logical_id}.QueueName}}"
        for logical_id in sorted(resources(template, "AWS::SQS::Queue"), reverse=True)
    )
    assert "Requests" in queue
    assert "DeadLetters" in dead_letters
    assert series(drawn, "AWS/SQS") == {
        ("ApproximateAgeOfOldestMessage", (("QueueName", queue),), "Maximum"),
        ("ApproximateNumberOfMessagesVisible", (("QueueName", dead_letters),), "Maximum"),
    }
    tick = (("StateMachineArn", "${" + state_machine(template, STANDARD)[0] + "}"),)
    window = (("StateMachineArn", "${" + state_machine(template, EXPRESS)[0] + "}"),)
    assert series(drawn, "AWS/States") == {
        ("ExecutionsStarted", tick, "Sum"),
        ("ExecutionsFailed", tick, "Sum"),
        ("ExecutionsFailed", window, "Sum"),
    }


def test_each_alarm_on_a_registered_metric_watches_the_series_the_code_writes(
    template: dict[str, Any],
) -> None:
    watched = [
        alarm["Properties"]
        for alarm in resources(template, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("Namespace") == metrics.NAMESPACE
    ]
    assert len(watched) >= 5
    for alarm in watched:
        declared = metrics.registry()[alarm["MetricName"]]
        # every data point is in the service's series, with or without its breakdown
        assert alarm["Dimensions"] == [{"Name": "service", "Value": SERVICE}], declared.name


def test_the_picture_is_drawn_from_the_synthesized_dashboard(template: dict[str, Any]) -> None:
    assert PICTURE.read_text(encoding="utf-8") == svg(template), "run `make docs`"
