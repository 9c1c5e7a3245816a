"""``escalator verify``: proof, after a deploy, that the deployment delivers by both of
its paths, read as an operator can read it on AWS (where the database is out of reach).

One start goes through the deployed request queue with two console notifications: one
due later than the initiator claims at ingest (its near-due horizon, read from the
deployed initiator's settings, and a margin for the way there), which a tick must claim,
and one due within it, which the window the initiator starts for it delivers (a near-due
arrival). The console notifier logs each delivery: its label, the claim it went out under
(a tick's execution, or ``arrival-<message id>``: the path it took), its due time and when
it went out. Those lines are read from the notifier's log group (CloudWatch Logs'
FilterLogEvents) until both have come, and a little longer (a second delivery would come
then); then a stop goes out, so nothing of the run stays active. Verified: each delivered
exactly once, by its own path, never early.

``verify`` takes the deployment resolved (``Deployment``) and its clients; the upgrade
rehearsal calls it so. ``deployment_of_stack`` resolves a deployed stack by its name
(CloudFormation: its outputs and resources), ``deployment_at_endpoint`` the deployment
an endpoint serves (the local stack's).

Not part of the Lambda bundle's work: nothing there imports it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from escalator.channels.console import LOGGED
from escalator.client import Producer
from escalator.config import initiator_lookahead
from escalator.errors import ConfigError
from escalator.limits import near_due_horizon
from escalator.service import arrival_owner

# The functions verify looks up, by the start of their logical ids in the template.
CONSOLE_NOTIFIER = "FunctionsNotifierConsole"
INITIATOR = "FunctionsInitiator"
# The stack's output that names the request queue.
QUEUE_OUTPUT = "RequestQueueUrl"
# Where a function logs unless its logging configuration names a log group (Lambda's rule).
DEFAULT_LOG_GROUP = "/aws/lambda/{}"

# What the way from the queue to the initiator may take (a cold start in the VPC): the
# tick's notification is due this much later than the initiator claims at ingest.
INGEST_MARGIN_SECONDS = 20
# The arrival is due this long after it is sent (half the horizon if that is shorter):
# time for the initiator and its window to start cold, so that its lateness is theirs.
ARRIVAL_LEAD_SECONDS = 10
# How long to look on once both were delivered: a second delivery would show then (a
# line reaches CloudWatch Logs seconds after it was written).
SETTLE_SECONDS = 10
TIMEOUT_SECONDS = 300
POLL_SECONDS = 2.0
PROGRESS_SECONDS = 15.0
# Lines written up to this long before the start are read too (clocks differ).
CLOCK_SKEW_SECONDS = 60

Kind = Literal["arrival", "tick"]
Path = Literal["initiator", "tick", "unknown"]
EXPECTED_PATH: dict[Kind, Path] = {"arrival": "initiator", "tick": "tick"}
PATH_NAMES: dict[Path, str] = {
    "initiator": "the initiator's window",
    "tick": "a tick",
    "unknown": "an unknown path (a confirm step that does not name its claim)",
}


@dataclass(frozen=True)
class Deployment:
    """What verify acts on: the request queue, the console notifier's log group, and how
    soon after arriving a notification is delivered by the initiator's own window."""

    queue_url: str
    log_group: str
    near_due_horizon: int


@dataclass(frozen=True)
class Delivered:
    """One delivery, as the console notifier logged it."""

    owner: str | None
    due_at: int
    delivered_at: float

    @property
    def path(self) -> Path:
        if not self.owner:
            return "unknown"
        return "initiator" if self.owner.startswith(arrival_owner("")) else "tick"

    @property
    def late_seconds(self) -> float:
        return self.delivered_at - self.due_at

    def describe(self) -> str:
        """``by the tick tick-1, 0.42 s late``."""
        if self.path == "tick" and self.owner:
            by = f"the tick {self.owner.rsplit(':', 1)[-1]}"
        else:
            by = PATH_NAMES[self.path]
        return f"by {by}, {self.late_seconds:.2f} s late"

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "owner": self.owner,
            "delivered_at": self.delivered_at,
            "late_seconds": round(self.late_seconds, 3),
        }


@dataclass
class Observed:
    """One of the run's notifications and what became of it."""

    kind: Kind
    label: str
    due_at: int
    message_id: str = ""
    deliveries: list[Delivered] = field(default_factory=list)

    @property
    def problem(self) -> str | None:
        """Why it does not verify; ``None`` when it does."""
        if not self.deliveries:
            return "not delivered"
        if len(self.deliveries) > 1:
            return f"delivered {len(self.deliveries)} times"
        (delivered,) = self.deliveries
        expected = EXPECTED_PATH[self.kind]
        if delivered.path != expected:
            return f"delivered by {PATH_NAMES[delivered.path]}, not {PATH_NAMES[expected]}"
        if delivered.owner != self.expected_owner and expected == "initiator":
            return f"delivered under another arrival's claim ({delivered.owner})"
        if delivered.late_seconds < 0:
            return f"delivered {-delivered.late_seconds:.2f} s early"
        return None

    @property
    def expected_owner(self) -> str | None:
        return arrival_owner(self.message_id) if self.kind == "arrival" else None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "due_at": self.due_at,
            "expected_path": EXPECTED_PATH[self.kind],
            "deliveries": [item.to_json() for item in self.deliveries],
            "problem": self.problem,
        }


@dataclass
class Verification:
    """What a run sent and saw."""

    process_id: str
    message_id: str
    queue_url: str
    log_group: str
    notifications: list[Observed]
    waited_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(item.problem is None for item in self.notifications)

    def to_json(self) -> dict[str, Any]:
        return {
            "verified": self.ok,
            "process_id": self.process_id,
            "message_id": self.message_id,
            "queue_url": self.queue_url,
            "log_group": self.log_group,
            "waited_seconds": round(self.waited_seconds, 1),
            "notifications": [item.to_json() for item in self.notifications],
        }


def leads(horizon: int) -> dict[Kind, int]:
    """How long after sending each notification is due: the arrival within the
    initiator's near-due ``horizon``, the tick's notification beyond it and the margin."""
    return {
        "arrival": max(1, min(ARRIVAL_LEAD_SECONDS, horizon // 2)),
        "tick": horizon + INGEST_MARGIN_SECONDS,
    }


def verify(
    deployment: Deployment,
    *,
    sqs: Any,
    logs: Any,
    timeout: float = TIMEOUT_SECONDS,
    settle: float = SETTLE_SECONDS,
    poll: float = POLL_SECONDS,
    progress: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Verification:
    """Send the run's start, watch the console notifier's log group until each of its
    notifications was delivered and ``settle`` seconds more, or for ``timeout`` seconds at
    most, then send its stop; what was seen. ``ConfigError`` (and nothing sent) when
    ``timeout`` ends before the tick's notification could have been delivered."""
    say = progress or (lambda _: None)
    due_in = leads(deployment.near_due_horizon)
    if timeout < due_in["tick"] + settle:
        raise ConfigError(
            f"a timeout of {timeout:g} s ends before the tick's notification (due "
            f"{due_in['tick']} s after it is sent) can be seen delivered: give at least "
            f"{due_in['tick'] + settle:g} s"
        )
    run = uuid.uuid4().hex[:12]
    process_id = f"verify-{run}"
    started = clock()
    notifications = [
        Observed(kind, f"{process_id}-{kind}", int(started) + lead) for kind, lead in due_in.items()
    ]
    producer = Producer(deployment.queue_url, sqs=sqs)
    message_id = producer.start(
        process_id,
        [{"channel": "console", "at": item.due_at, "label": item.label} for item in notifications],
    )
    for item in notifications:
        item.message_id = message_id
    arrival, tick = (item.due_at - int(started) for item in notifications)
    say(
        f"sent {process_id} (message {message_id}): the arrival due in {arrival} s, the "
        f"tick's notification in {tick} s; reading {deployment.log_group}"
    )
    try:
        _watch(
            deployment,
            logs,
            process_id,
            notifications,
            started,
            timeout,
            settle,
            poll,
            say,
            clock,
            sleep,
        )
    finally:
        producer.stop(process_id)
    return Verification(
        process_id=process_id,
        message_id=message_id,
        queue_url=deployment.queue_url,
        log_group=deployment.log_group,
        notifications=notifications,
        waited_seconds=clock() - started,
    )


def _watch(
    deployment: Deployment,
    logs: Any,
    process_id: str,
    notifications: list[Observed],
    started: float,
    timeout: float,
    settle: float,
    poll: float,
    say: Callable[[str], None],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    """Read the deliveries into ``notifications`` until the run is settled: each
    delivered and ``settle`` seconds passed, one delivered twice, or ``timeout``."""
    deadline = started + timeout
    settled_at: float | None = None
    shown = started
    while True:
        found = deliveries(logs, deployment.log_group, process_id, since=started)
        for item in notifications:
            item.deliveries = found.get(item.label, [])
        now = clock()
        if any(len(item.deliveries) > 1 for item in notifications) or now >= deadline:
            return
        if settled_at is None and all(item.deliveries for item in notifications):
            settled_at = min(now + settle, deadline)
        if settled_at is not None and now >= settled_at:
            return
        if now - shown >= PROGRESS_SECONDS:
            shown = now
            say(_waiting(notifications, now))
        sleep(poll)


def _waiting(notifications: list[Observed], now: float) -> str:
    if all(item.deliveries for item in notifications):
        return "waiting: each delivered; looking on for a second delivery"
    parts = []
    for item in notifications:
        if item.deliveries:
            parts.append(f"{item.kind}: delivered")
        elif item.due_at > now:
            parts.append(f"{item.kind}: due in {item.due_at - now:.0f} s")
        else:
            parts.append(f"{item.kind}: due {now - item.due_at:.0f} s ago, not seen yet")
    return "waiting: " + "; ".join(parts)


def deliveries(
    logs: Any, log_group: str, process_id: str, *, since: float
) -> dict[str, list[Delivered]]:
    """The console notifier's deliveries of the run's notifications (labelled
    ``<process id>-<kind>``), by label, in the order they were logged."""
    labels = {f"{process_id}-{kind}" for kind in EXPECTED_PATH}
    found: dict[str, list[Delivered]] = {}
    for line in _lines(logs, log_group, process_id, since):
        label = line.get("label")
        if line.get("message") != LOGGED or label not in labels:
            continue
        owner = line.get("owner")
        found.setdefault(str(label), []).append(
            Delivered(
                owner=None if owner is None else str(owner),
                due_at=int(line["due_at"]),
                delivered_at=float(line["delivered_at"]),
            )
        )
    return found


def _lines(logs: Any, log_group: str, term: str, since: float) -> Iterator[dict[str, Any]]:
    """The JSON lines of ``log_group`` holding ``term``, written since ``since`` (every
    page; a line that is not JSON, such as Lambda's START and REPORT, is left out)."""
    request: dict[str, Any] = {
        "logGroupName": log_group,
        "startTime": int((since - CLOCK_SKEW_SECONDS) * 1000),
        "filterPattern": json.dumps(term),
    }
    while True:
        page = logs.filter_log_events(**request)
        for event in page.get("events", []):
            try:
                line = json.loads(event["message"])
            except ValueError:
                continue
            if isinstance(line, dict):
                yield line
        token = page.get("nextToken")
        if not token:
            return
        request["nextToken"] = token


# ---- finding the deployment ------------------------------------------------------------


def deployment_of_stack(stack_name: str, *, cloudformation: Any, lambda_client: Any) -> Deployment:
    """The deployment of a CloudFormation stack: the request queue from its outputs, the
    functions from its resources. ``ConfigError`` when there is no such stack or it is
    not Escalator's."""
    from botocore.exceptions import ClientError

    try:
        (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ValidationError":
            raise
        raise ConfigError(
            f"no stack {stack_name!r} ({exc.response['Error'].get('Message', '')}): give the "
            "name cdk deploy deployed, in its region (--region)"
        ) from None
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs") or []}
    if QUEUE_OUTPUT not in outputs:
        raise ConfigError(
            f"stack {stack_name!r} ({stack.get('StackStatus')}) has no output {QUEUE_OUTPUT}:"
            " not an Escalator stack, or not deployed yet"
        )
    functions: dict[str, str] = {}
    request = {"StackName": stack_name}
    while True:
        page = cloudformation.list_stack_resources(**request)
        for resource in page["StackResourceSummaries"]:
            if resource["ResourceType"] == "AWS::Lambda::Function":
                functions[resource["LogicalResourceId"]] = resource["PhysicalResourceId"]
        if not page.get("NextToken"):
            break
        request["NextToken"] = page["NextToken"]
    return _deployment(outputs[QUEUE_OUTPUT], functions, lambda_client, f"stack {stack_name!r}")


def deployment_at_endpoint(*, sqs: Any, lambda_client: Any, endpoint: str) -> Deployment:
    """The one deployment an endpoint serves (the local stack's, whose functions are named
    by their logical ids): its request queue (the FIFO queue with a dead-letter queue)
    and its functions. ``ConfigError`` unless it serves exactly one."""
    queues = [
        url
        for url in sqs.list_queues().get("QueueUrls", [])
        if url.endswith(".fifo")
        and "RedrivePolicy"
        in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"]).get(
            "Attributes", {}
        )
    ]
    if len(queues) != 1:
        raise ConfigError(
            f"{endpoint} serves {len(queues)} request queues (FIFO, with a dead-letter "
            "queue), not one: is the local stack running there? (for a deployed stack: "
            "--stack NAME)"
        )
    functions: dict[str, str] = {}
    request: dict[str, Any] = {}
    while True:
        page = lambda_client.list_functions(**request)
        functions |= {item["FunctionName"]: item["FunctionName"] for item in page["Functions"]}
        if not page.get("NextMarker"):
            break
        request["Marker"] = page["NextMarker"]
    return _deployment(queues[0], functions, lambda_client, endpoint)


def _deployment(
    queue_url: str, functions: Mapping[str, str], lambda_client: Any, where: str
) -> Deployment:
    """From the functions (logical id -> name): where the console notifier logs (its
    logging configuration's log group, else Lambda's default) and the initiator's
    near-due horizon (from the lookahead its environment sets)."""
    console = _named(functions, CONSOLE_NOTIFIER, where)
    initiator = _named(functions, INITIATOR, where)
    logging = lambda_client.get_function_configuration(FunctionName=console).get("LoggingConfig")
    log_group = (logging or {}).get("LogGroup") or DEFAULT_LOG_GROUP.format(console)
    configuration = lambda_client.get_function_configuration(FunctionName=initiator)
    variables = (configuration.get("Environment") or {}).get("Variables") or {}
    return Deployment(
        queue_url=queue_url,
        log_group=log_group,
        near_due_horizon=near_due_horizon(initiator_lookahead(variables)),
    )


def _named(functions: Mapping[str, str], prefix: str, where: str) -> str:
    """The name of the one function whose logical id starts with ``prefix``."""
    found = [name for logical_id, name in functions.items() if logical_id.startswith(prefix)]
    if len(found) != 1:
        raise ConfigError(f"{where} has {len(found)} functions {prefix}*, not one")
    return found[0]


def moment(epoch: float) -> str:
    """``2025-01-01T12:00:05Z``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
