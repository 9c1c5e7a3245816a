"""Recent ticks of the delivery state machine and what each one's delivery window did,
read from the Step Functions API as AWS serves it: works against AWS and the local stack.

A tick (Standard) is listed and described; its window (Express) is not: AWS lists,
describes and keeps the history of no Express execution. What a tick's window did is in
the tick: its output when the window succeeded (the outcome of each notification), its
failure's cause when the window failed, timed out or never started (the tick's summary,
JSON: the window's status, error and cause, and how many claims went back). Windows the
initiator starts for near-due arrivals belong to no tick: their failures are in the
window's log group (``window_logs``), what each notification became in the database
(``escalator status PROCESS_ID``)."""

from __future__ import annotations

import json
from typing import Any

from escalator.errors import ConfigError

# How the tick fails when its window failed or never started (infra/state_machine.py).
WINDOW_FAILED = "DeliveryWindowFailed"


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


def window_of(description: dict[str, Any]) -> dict[str, Any]:
    """What one tick's delivery window did, from the tick's description: ``outcomes``
    (notification by notification, when it delivered), or ``failed`` with the window's
    ``status``, ``error``, ``cause`` and how many claims were ``released`` (when it
    failed, timed out or never started). Empty while the tick runs, or when it claimed
    nothing."""
    if description.get("status") == "SUCCEEDED":
        output = description.get("output")
        window = (json.loads(output) if output else {}).get("window") or {}
        return {
            "outcomes": [
                {"notification_id": item.get("id"), "outcome": item.get("outcome")}
                for item in window.get("notifications") or []
            ]
        }
    if description.get("error") == WINDOW_FAILED:
        try:
            summary = json.loads(description.get("cause") or "{}")
        except ValueError:
            summary = {}
        window = summary.get("window") if isinstance(summary, dict) else None
        if isinstance(window, dict):
            found = {"failed": True, "claimed": summary.get("claimed")}
            for key in ("status", "error", "cause", "released"):
                if key in window:
                    found[key] = window[key]
            if "window" in window:  # (its claims could not be released: what it answered)
                found["answer"] = window["window"]
            return found
    if description.get("status") in ("FAILED", "TIMED_OUT", "ABORTED"):
        # (the tick itself failed: its own error and cause)
        return {
            "failed": True,
            "tick_error": description.get("error"),
            "tick_cause": description.get("cause"),
        }
    return {}


def recent_executions(
    *,
    state_machine_arn: str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    limit: int = 10,
    sfn: Any = None,
) -> list[dict[str, Any]]:
    """The ``limit`` most recent ticks, newest first, each with what its window did:
    ``outcomes`` (empty unless it delivered) and ``window`` (``window_of``)."""
    if sfn is None:
        import boto3

        sfn = boto3.client("stepfunctions", endpoint_url=endpoint_url, region_name=region)
    arn = state_machine_arn or find_state_machine(sfn)
    listed = sfn.list_executions(stateMachineArn=arn, maxResults=limit)["executions"]
    listed.sort(key=lambda execution: execution["startDate"], reverse=True)
    found = []
    for execution in listed[:limit]:
        window = window_of(sfn.describe_execution(executionArn=execution["executionArn"]))
        found.append(
            {
                "name": execution["name"],
                "status": execution["status"],
                "started": execution["startDate"].isoformat(),
                "outcomes": window.pop("outcomes", []),
                "window": window,
            }
        )
    return found


def window_logs(sfn: Any) -> list[dict[str, str]]:
    """Where the delivery windows (the Express state machines) log, and at which level:
    ``{"state_machine", "log_group", "level"}`` each (DescribeStateMachine serves an
    Express state machine; its logging configuration names the log group)."""
    found = []
    for machine in sfn.list_state_machines()["stateMachines"]:
        if machine.get("type") != "EXPRESS":
            continue
        described = sfn.describe_state_machine(stateMachineArn=machine["stateMachineArn"])
        logging = described.get("loggingConfiguration") or {}
        for destination in logging.get("destinations") or []:
            group_arn = destination.get("cloudWatchLogsLogGroup", {}).get("logGroupArn", "")
            # arn:aws:logs:REGION:ACCOUNT:log-group:NAME[:*]
            parts = group_arn.split(":")
            if len(parts) >= 7 and parts[5] == "log-group":
                found.append(
                    {
                        "state_machine": machine["name"],
                        "log_group": parts[6],
                        "level": str(logging.get("level", "OFF")),
                    }
                )
    return found


def where_windows_are(sfn: Any) -> str:
    """What an operator reads about the windows ticks did not start (one paragraph)."""
    groups = window_logs(sfn)
    where = (
        ", ".join(f"{group['log_group']} (level {group['level']})" for group in groups)
        or "the delivery window's log group"
    )
    return (
        "Windows the initiator starts for near-due arrivals are Express executions, which "
        f"Step Functions neither lists nor describes: their events are in {where} (at "
        "ERROR: only failures, time-outs and aborts); what each notification became is in "
        "the database: escalator status PROCESS_ID."
    )
