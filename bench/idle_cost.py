"""Idle cost: the monthly bill of the synthesized stack with no traffic, itemised from
the template. Target: under 22 USD a month, and no NAT gateway."""

from __future__ import annotations

import json
import re
from typing import Any

from common import progress, report

from devstack.docs.dashboard import count_metrics, dashboards, read

PRICES_DATE = "2026-11 (us-east-1 list prices)"
HOURS = 730
RDS_HOURLY = {"db.t4g.micro": 0.016, "db.t4g.small": 0.032, "db.t4g.medium": 0.065}
GP3_GB_MONTH = 0.115
ENDPOINT_AZ_HOUR = 0.01
NAT_HOUR = 0.045
SECRET_MONTH = 0.40
TRANSITION = 0.000025
FREE_TRANSITIONS = 4000
ALARM_MONTH = 0.10
# A custom dashboard: free for the first three of an account that each reference at most
# 50 metrics (assumed: the account has no other custom dashboard), else 3 USD a month.
DASHBOARD_MONTH = 3.00
FREE_DASHBOARDS = 3
FREE_DASHBOARD_METRICS = 50
LAMBDA_GB_SECOND = 0.0000166667
LAMBDA_REQUEST = 0.0000002
SQS_FIFO_REQUEST = 0.0000005
LOG_GB = 0.50


def resources(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in template["Resources"].values() if r["Type"] == kind]


# What the activator answers when nothing is due.
IDLE_STATE = {"claim": {"notifications": [], "more": False, "claimed": 0}}


def _holds(rule: dict[str, Any], data: dict[str, Any]) -> bool:
    """A Choice rule's condition on ``data`` (the comparisons the definition uses)."""
    value: Any = data
    for key in rule["Variable"].removeprefix("$.").split("."):
        value = value.get(key) if isinstance(value, dict) else None
    for operator in ("BooleanEquals", "NumericEquals", "StringEquals"):
        if operator in rule:
            return bool(value == rule[operator])
    raise ValueError(f"the bench cannot evaluate the Choice rule {rule}")


def idle_transitions(definition: dict[str, Any]) -> int:
    """State transitions of an execution that claims nothing: start, then each state on
    the path it takes (each Choice decided on what the activator answers when idle)."""
    states = definition["States"]
    name, count = definition["StartAt"], 1
    while name:
        count += 1
        state = states[name]
        if state["Type"] == "Choice":
            chosen = [rule["Next"] for rule in state["Choices"] if _holds(rule, IDLE_STATE)]
            name = chosen[0] if chosen else state.get("Default")
        else:
            name = (
                None if state.get("End") or state["Type"] in ("Succeed", "Fail") else state["Next"]
            )
    return count


def fixed_items(template: dict[str, Any]) -> list[tuple[str, float]]:
    """What the stack costs a month whatever runs (the schedule's executions aside), by item."""
    items: list[tuple[str, float]] = []
    (database,) = resources(template, "AWS::RDS::DBInstance")
    properties = database["Properties"]
    copies = 2 if properties.get("MultiAZ") else 1
    instance = properties["DBInstanceClass"]
    items.append((f"RDS {instance} x{copies}, {HOURS} h", RDS_HOURLY[instance] * HOURS * copies))
    storage = int(properties["AllocatedStorage"])
    items.append((f"RDS storage {storage} GiB gp3 x{copies}", storage * GP3_GB_MONTH * copies))
    subnets = len(resources(template, "AWS::EC2::Subnet"))
    for endpoint in resources(template, "AWS::EC2::VPCEndpoint"):
        service = json.dumps(endpoint["Properties"]["ServiceName"])
        name = next(word for word in re.findall(r"[a-z]+", service.split(".")[-1]))
        items.append(
            (f"interface endpoint ({name}), {subnets} AZs", ENDPOINT_AZ_HOUR * HOURS * subnets)
        )
    nats = len(resources(template, "AWS::EC2::NatGateway"))
    items.append((f"NAT gateways: {nats}", nats * NAT_HOUR * HOURS))
    secrets = len(resources(template, "AWS::SecretsManager::Secret"))
    items.append((f"Secrets Manager, {secrets} secrets", secrets * SECRET_MONTH))
    alarms = len(resources(template, "AWS::CloudWatch::Alarm"))
    items.append((f"CloudWatch: {alarms} alarms", alarms * ALARM_MONTH))
    items += dashboard_items(template)
    items.append(("SQS: event source long polling (~130k requests)", 130_000 * SQS_FIFO_REQUEST))
    items.append(("EventBridge Scheduler (14 M invocations free)", 0.0))
    return items


def dashboard_items(template: dict[str, Any]) -> list[tuple[str, float]]:
    """The stack's dashboards: the first three of at most 50 metrics are free (assumed:
    the account has no other custom dashboard), any other 3 USD a month."""
    items, free_left = [], FREE_DASHBOARDS
    for resource in dashboards(template).values():
        _, body = read(resource)
        metrics = count_metrics(body)
        free = metrics <= FREE_DASHBOARD_METRICS and free_left > 0
        free_left -= free
        label = f"CloudWatch dashboard, {metrics} metrics ({'free tier' if free else 'billed'})"
        items.append((label, 0.0 if free else DASHBOARD_MONTH))
    return items


def scheduled_executions(template: dict[str, Any]) -> int:
    """How many ticks the tick's schedule starts in a month."""
    from devstack.emulation.template import tick_schedule

    _, schedule = tick_schedule(template)
    minutes = int(re.findall(r"\d+", schedule["Properties"]["ScheduleExpression"])[0])
    return HOURS * 60 // minutes


def purge_runs(template: dict[str, Any]) -> int:
    """How many times the purge's schedule invokes it in a month (hourly)."""
    expressions = [
        schedule["Properties"]["ScheduleExpression"]
        for schedule in resources(template, "AWS::Scheduler::Schedule")
    ]
    return HOURS * expressions.count("rate(1 hour)")


def main() -> None:
    from devstack.emulation.template import state_machine_definition, synthesized_template

    progress("synthesizing the stack")
    template = synthesized_template()
    items = fixed_items(template)
    nats = len(resources(template, "AWS::EC2::NatGateway"))
    executions = scheduled_executions(template)
    # The tick (Standard), which the schedule starts; an idle tick starts no window.
    per_execution = idle_transitions(state_machine_definition(template))
    transitions = per_execution * executions
    items.append(
        (
            f"Step Functions: {executions:,} executions x {per_execution} transitions",
            max(0, transitions - FREE_TRANSITIONS) * TRANSITION,
        )
    )
    items.append(
        (
            f"Lambda: {executions:,} activator runs (0.1 s, 256 MB)",
            executions * (0.1 * 0.25 * LAMBDA_GB_SECOND + LAMBDA_REQUEST),
        )
    )
    items.append(("CloudWatch Logs: ~1.5 KB per idle execution", executions * 1.5e-6 * LOG_GB))
    # The hourly purge with nothing to delete: one connection and two statements.
    runs = purge_runs(template)
    items.append(
        (
            f"Lambda: {runs:,} purge runs with nothing to delete (0.3 s, 256 MB)",
            runs * (0.3 * 0.25 * LAMBDA_GB_SECOND + LAMBDA_REQUEST),
        )
    )
    total = sum(cost for _, cost in items)
    rows = [(label, f"{cost:8.2f} USD") for label, cost in items]
    rows += [("total per month", f"{total:8.2f} USD"), ("prices", PRICES_DATE)]
    report(
        "idle_cost",
        rows=rows,
        value=total,
        unit="USD/month",
        baseline=None,
        target="< 22 USD/month, no NAT gateway",
        met=total < 22 and nats == 0,
        extra={"nat_gateways": nats},
    )


if __name__ == "__main__":
    main()
