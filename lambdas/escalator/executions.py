"""Recent ticks of the delivery state machine with the outcome of each notification their
delivery window had, read from the Step Functions API (each tick's output): works
against the local stack and against AWS. Windows started for near-due arrivals are
Express executions, which AWS lists nowhere: their outcomes are in the database
(``escalator status``) and, at delivery_log_level ALL, in their log group."""

from __future__ import annotations

import json
from typing import Any

from escalator.errors import ConfigError


def find_state_machine(sfn: Any) -> str:
    """The ARN of the tick (the Standard delivery state machine) when none is given."""
    machines = sfn.list_state_machines()["stateMachines"]
    matching = [
        machine["stateMachineArn"]
        for machine in machines
        if machine.get("type", "STANDARD") == "STANDARD"
        and ("delivery" in machine["name"].lower() or "escalator" in machine["name"].lower())
    ]
    if len(matching) != 1:
        names = ", ".join(machine["name"] for machine in machines) or "none"
        raise ConfigError(f"give --state-machine-arn (state machines found: {names})")
    arn: str = matching[0]
    return arn


def outcomes(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    """What one tick's delivery window did, notification by notification: the tick's
    output (nothing while it runs, or when it claimed nothing)."""
    output = sfn.describe_execution(executionArn=execution_arn).get("output")
    window = (json.loads(output) if output else {}).get("window") or {}
    return [
        {"notification_id": item.get("id"), "outcome": item.get("outcome")}
        for item in window.get("notifications") or []
    ]


def recent_executions(
    *,
    state_machine_arn: str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    limit: int = 10,
    sfn: Any = None,
) -> list[dict[str, Any]]:
    """The ``limit`` most recent executions, newest first, with their outcomes."""
    if sfn is None:
        import boto3

        sfn = boto3.client("stepfunctions", endpoint_url=endpoint_url, region_name=region)
    arn = state_machine_arn or find_state_machine(sfn)
    listed = sfn.list_executions(stateMachineArn=arn, maxResults=limit)["executions"]
    listed.sort(key=lambda execution: execution["startDate"], reverse=True)
    return [
        {
            "name": execution["name"],
            "status": execution["status"],
            "started": execution["startDate"].isoformat(),
            "outcomes": outcomes(sfn, execution["executionArn"]),
        }
        for execution in listed[:limit]
    ]
