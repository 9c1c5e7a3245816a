"""Recent executions of the delivery state machine with the outcome of each notification,
read from the Step Functions API: works against the local stack and against AWS."""

from __future__ import annotations

import json
from typing import Any

from escalator.errors import ConfigError

RECORD_STATES = ("Record delivery", "Record failure")


def find_state_machine(sfn: Any) -> str:
    """The ARN of the delivery state machine when none is given."""
    machines = sfn.list_state_machines()["stateMachines"]
    matching = [
        machine["stateMachineArn"]
        for machine in machines
        if "delivery" in machine["name"].lower() or "escalator" in machine["name"].lower()
    ]
    if len(matching) != 1:
        names = ", ".join(machine["name"] for machine in machines) or "none"
        raise ConfigError(f"give --state-machine-arn (state machines found: {names})")
    arn: str = matching[0]
    return arn


def outcomes(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    """What the record steps of one execution wrote, notification by notification."""
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        for event in page["events"]:
            details = event.get("stateExitedEventDetails")
            if not details or details.get("name") not in RECORD_STATES:
                continue
            recorded = json.loads(details.get("output") or "{}").get("recorded")
            if isinstance(recorded, dict):
                found.append(recorded)
        if not page.get("nextToken"):
            return found
        kwargs["nextToken"] = page["nextToken"]


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
