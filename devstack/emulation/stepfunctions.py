"""The state machines exactly as the CDK app synthesizes them, executed by moto.

``deploy`` creates a moto Lambda function per function of the template (each logging to
Lambda's default log group: devstack.emulation.function_logs), resolves the
definitions' references to them, creates their log groups, and registers the delivery
window (Express) and the tick (Standard) that starts it, each with the template's
logging configuration.

What the harness learns of a delivery window is what an operator learns on AWS, where
Step Functions lists, describes and keeps the history of no Express execution: what a
tick's window did is the tick's output (or its failure's cause), and what any window
did is in its log group (``window_log``: at the template's level, ERROR, only failures;
``deploy(window_log_level="ALL")`` as ``cdk deploy -c delivery_log_level=ALL``). When
the windows end is harness plumbing (``settle_windows``), from the emulation's own
bookkeeping (``ExpressRuns``), never from the Step Functions API.
"""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from devstack.emulation.context import default_log_group
from devstack.emulation.function_logs import FunctionLogGroup
from devstack.emulation.iam import STAND_IN_ROLE, STAND_IN_ROLE_ARN
from devstack.emulation.template import ACCOUNT, EXPRESS, REGION, STANDARD, resolve, resources
from devstack.polling import wait_until

__all__ = ["REGION", "DeployedStateMachine", "deploy"]


# While an execution starts (a hand-over, a window), moto lists it before it has a
# status, and listing or stopping it fails: AttributeError in-process, HTTP 500 from the
# moto server. That lasts a moment; the same error for longer than this is a real one.
_STARTING_SECONDS = 5.0


def _listing_a_starting_execution(error: Exception) -> bool:
    """Whether ``error`` is what listing executions raises while one starts."""
    if isinstance(error, ClientError):
        return bool(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 500)
    return isinstance(error, AttributeError)


def _empty_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("placeholder.py", "# the tests run the real handlers in-process\n")
    return buffer.getvalue()


@dataclass
class DeployedStateMachine:
    """The synthesized state machine registered in moto, and the functions behind it."""

    sfn: Any
    arn: str  # the tick's (Standard), which the schedule starts
    functions: dict[str, str]  # logical id -> function name
    window_arn: str = ""  # the delivery window's (Express), which the tick starts
    # A Step Functions client with the schedule's role's credentials (the template's
    # AWS::Scheduler::Schedule target role), which ``start`` starts the tick with, as
    # EventBridge Scheduler does; ``sfn`` (the harness's) when there is none.
    scheduler: Any = None
    # The emulation's bookkeeping of Express executions
    # (devstack.emulation.moto_services.express.ExpressRuns): when windows end, and a crash's way to
    # stop them.
    express: Any = None
    logs: Any = None  # a CloudWatch Logs client of the same endpoint
    window_log_group: str = ""  # the delivery window's log group (its logging configuration)

    def function_named(self, prefix: str) -> str:
        """The moto function name of the template function whose logical id starts so."""
        (name,) = [
            name for logical_id, name in self.functions.items() if logical_id.startswith(prefix)
        ]
        return name

    def start(self, execution_input: dict[str, Any] | None = None) -> str:
        """Start the tick as the schedule does: with the schedule's role (a ClientError,
        AccessDeniedException, when it may not)."""
        # A name of our own, as EventBridge Scheduler gives one: moto leaves $$.Execution.Id
        # ending in ":None" without it, the same for every execution.
        response = (self.scheduler or self.sfn).start_execution(
            stateMachineArn=self.arn,
            name=f"tick-{uuid.uuid4()}",
            input=json.dumps(execution_input or {"period_seconds": 60}),
        )
        execution_arn: str = response["executionArn"]
        return execution_arn

    def wait(self, execution_arn: str, timeout: float = 120) -> dict[str, Any]:
        """The description of the execution once it has ended."""
        ended: list[dict[str, Any]] = []

        def has_ended() -> bool:
            description = self.sfn.describe_execution(executionArn=execution_arn)
            ended[:] = [description] if description["status"] != "RUNNING" else []
            return bool(ended)

        # (each look is a request to the emulator, in the process that runs the execution)
        wait_until(
            has_ended, timeout=timeout, interval=0.05, max_interval=0.5, what="the execution's end"
        )
        return ended[0]

    def run(
        self, execution_input: dict[str, Any] | None = None, timeout: float = 120
    ) -> dict[str, Any]:
        """Start an execution and wait for it and the executions it handed over to;
        fail unless every one of them succeeded. Returns the first one's description."""
        before = {item["executionArn"] for item in self.settle(timeout)}
        description = self.wait(self.start(execution_input), timeout)
        assert description["status"] == "SUCCEEDED", description
        for ended in self.settle(timeout):
            assert ended["executionArn"] in before or ended["status"] == "SUCCEEDED", ended
        return description

    def settle(self, timeout: float = 120) -> list[dict[str, Any]]:
        """Wait until no execution of the state machine runs (hand-overs included);
        the descriptions of them all, oldest first."""

        failing_since: list[float] = []

        def none_running() -> bool:
            try:
                running = self.sfn.list_executions(stateMachineArn=self.arn, statusFilter="RUNNING")
            except (AttributeError, ClientError) as error:
                if not failing_since:
                    failing_since.append(time.monotonic())
                lasting = time.monotonic() - failing_since[0]
                if not _listing_a_starting_execution(error) or lasting > _STARTING_SECONDS:
                    raise
                return False  # (one a hand-over is starting): look again
            failing_since.clear()
            return not running["executions"]

        wait_until(
            none_running,
            timeout=timeout,
            interval=0.05,
            max_interval=0.5,
            what="every execution's end",
        )
        listed = self.sfn.list_executions(stateMachineArn=self.arn, maxResults=1000)
        return [
            self.sfn.describe_execution(executionArn=item["executionArn"])
            for item in sorted(listed["executions"], key=lambda item: item["startDate"])
        ]

    def stop(self, execution_arn: str, *, wait: bool = True) -> None:
        """Stop an execution and (``wait``) wait until it has ended.

        moto reports a stopped execution as FAILED where AWS says ABORTED.
        """
        started = time.monotonic()

        def stopped() -> bool:
            try:
                self.sfn.stop_execution(executionArn=execution_arn)
            except (AttributeError, ClientError) as error:
                # (an execution that is only starting has nothing moto can stop yet)
                if not _listing_a_starting_execution(error):
                    raise
                if time.monotonic() - started > _STARTING_SECONDS:
                    raise
                return False
            return True

        wait_until(stopped, timeout=2 * _STARTING_SECONDS, what="the execution's stop")
        if wait:
            assert self.wait(execution_arn)["status"] in ("ABORTED", "FAILED")

    def _express_runs(self) -> Any:
        if self.express is None:
            raise RuntimeError("deploy() was given no InProcessLambdas: no Express bookkeeping")
        return self.express

    def windows_running(self) -> list[str]:
        """The delivery windows running now (the emulation's bookkeeping: AWS lists none)."""
        running: list[str] = self._express_runs().running()
        return running

    def settle_windows(self, timeout: float = 120) -> int:
        """Wait until no delivery window runs (a tick waits for its own; those the
        initiator starts for near-due arrivals run on their own); how many were started
        so far (reruns included). What they did: ``window_log``, the ticks' outputs."""
        wait_until(
            lambda: not self.windows_running(),
            timeout=timeout,
            interval=0.05,
            max_interval=0.5,
            what="every delivery window's end",
        )
        started: int = self._express_runs().started
        return started

    def window_log(self) -> dict[str, list[dict[str, Any]]]:
        """The delivery windows' log events, read from their log group as an operator
        reads them (CloudWatch Logs' FilterLogEvents), by execution ARN, each execution's
        in event order: ``id``, ``type``, ``details``, ``previous_event_id``,
        ``event_timestamp``, ``execution_arn``. At the template's level (ERROR) only
        failures are logged; execution data never is (the template leaves it out)."""
        by_execution: dict[str, list[dict[str, Any]]] = {}
        kwargs: dict[str, Any] = {"logGroupName": self.window_log_group}
        while True:
            page = self.logs.filter_log_events(**kwargs)
            for item in page["events"]:
                event = json.loads(item["message"])
                by_execution.setdefault(event["execution_arn"], []).append(event)
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        for events in by_execution.values():
            events.sort(key=lambda event: int(event["id"]))
        return by_execution

    def window_events(self, *types: str) -> list[dict[str, Any]]:
        """The windows' logged events of these types (all of them when none is given)."""
        return [
            event
            for events in self.window_log().values()
            for event in events
            if not types or event["type"] in types
        ]

    def crash(self, execution_arn: str, *, wait: bool = True) -> int:
        """As if the tick and the windows still running had died: the tick is stopped
        (StopExecution), the windows through the emulation's internals, since AWS has no
        API that stops an Express execution (``ExpressRuns.stop_running``; a window the
        tick's start still brings up dies as it starts); how many windows were stopped.
        ``wait``: until they have ended (a window whose task is still running ends when
        its function returns)."""
        self.stop(execution_arn)
        stopped = self._express_runs().stop_running(started_by=execution_arn)
        if wait:
            self.settle_windows()
        return len(stopped)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        """A Standard execution's history (AWS keeps none of an Express one)."""
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        while True:
            page = self.sfn.get_execution_history(**kwargs)
            events += page["events"]
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]


def deploy(
    boto_session: Any,
    template: dict[str, Any],
    endpoint_url: str | None = None,
    lambdas: Any = None,
    references: Mapping[str, str] | None = None,
    *,
    window_log_level: str | None = None,
) -> DeployedStateMachine:
    """Register the template's functions, log groups and state machines in moto
    (``mock_aws`` or the moto server at ``endpoint_url``); give ``lambdas``
    (``InProcessLambdas``) each function's reserved concurrency, timeout and role.
    ``window_log_level`` logs the delivery window at another level than the template's,
    as the context ``delivery_log_level`` would (``ALL``: every event, its end too).

    With ``lambdas``, its permissions (devstack.emulation.iam) get the template's roles: each
    function and state machine acts with its own, the schedule's role starts the tick
    (``DeployedStateMachine.start``), and an event source mapping whose function's role
    may not poll its queue fails the deploy, as Lambda refuses to create it.
    ``references`` says what a ``Ref`` or ``Fn::GetAtt`` of a resource created
    elsewhere stands for (a queue's ARN, by ``"<id>.Arn"``)."""
    permissions = getattr(lambdas, "permissions", None)
    if permissions is not None:
        permissions.admit_session(boto_session)
        permissions.install(template, references)
    else:
        iam = boto_session.client("iam", endpoint_url=endpoint_url)
        iam.create_role(
            RoleName=STAND_IN_ROLE,
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )

    def role_arn(role: Any) -> str:
        return str(permissions.role_arn(role)) if permissions is not None else STAND_IN_ROLE_ARN

    arns: dict[str, str] = {}
    functions: dict[str, str] = {}
    # (one client of each for every function: a client costs as much as the call)
    functions_api = boto_session.client("lambda", endpoint_url=endpoint_url)
    logs = boto_session.client("logs", endpoint_url=endpoint_url)
    for logical_id, function in resources(template, "AWS::Lambda::Function").items():
        arns[logical_id] = create_function(
            functions_api,
            logs,
            logical_id,
            function["Properties"],
            role_arn=role_arn(function["Properties"].get("Role")),
            lambdas=lambdas,
            permissions=permissions,
        )
        functions[logical_id] = logical_id
    if permissions is not None and permissions.enforce:
        _create_event_source_mappings(permissions, template)
    log_groups: dict[str, str] = {}  # ARN -> name
    for logical_id, group in resources(template, "AWS::Logs::LogGroup").items():
        name = group["Properties"].get("LogGroupName")
        if name is None:
            continue  # (a function's: it logs to Lambda's default, create_function's)
        logs.create_log_group(logGroupName=name)
        arns[logical_id] = _log_group_arn(boto_session.region_name, name)
        log_groups[arns[logical_id]] = name
    sfn = boto_session.client("stepfunctions", endpoint_url=endpoint_url)
    machine_arns: dict[str, str] = {}
    by_type: dict[str, str] = {}
    window_log_group = ""
    machines = resources(template, "AWS::StepFunctions::StateMachine")
    # The delivery window first: the tick's definition starts it by its ARN.
    for logical_id, machine in sorted(
        machines.items(), key=lambda item: item[1]["Properties"].get("StateMachineType") != EXPRESS
    ):
        properties = machine["Properties"]
        machine_type = properties.get("StateMachineType", STANDARD)
        definition = resolve(properties["DefinitionString"], {**arns, **machine_arns})
        logging = _logging_configuration(properties.get("LoggingConfiguration"), arns)
        if machine_type == EXPRESS and logging.get("destinations"):
            if window_log_level is not None:
                logging["level"] = window_log_level
            group_arn = logging["destinations"][0]["cloudWatchLogsLogGroup"]["logGroupArn"]
            window_log_group = log_groups[group_arn]
        # The template's own name: the tick hands over to its state machine by it.
        machine_arns[logical_id] = by_type[machine_type] = sfn.create_state_machine(
            name=properties.get("StateMachineName", logical_id),
            definition=definition,
            roleArn=role_arn(machine["Properties"].get("RoleArn")),
            type=machine_type,
            loggingConfiguration=logging,
        )["stateMachineArn"]
    scheduler = None
    if permissions is not None and permissions.enforce:
        for schedule_id, schedule in resources(template, "AWS::Scheduler::Schedule").items():
            target = schedule["Properties"]["Target"]
            if target["Arn"] == {"Ref": _id_of(machine_arns, by_type.get(STANDARD))}:
                credentials = permissions.credentials(role_arn(target.get("RoleArn")), schedule_id)
                scheduler = boto_session.client(
                    "stepfunctions", endpoint_url=endpoint_url, **permissions.signing(credentials)
                )
    return DeployedStateMachine(
        sfn=sfn,
        arn=by_type[STANDARD],
        functions=functions,
        window_arn=by_type.get(EXPRESS, ""),
        scheduler=scheduler,
        express=None if lambdas is None else lambdas.express,
        logs=logs,
        window_log_group=window_log_group,
    )


def create_function(
    functions_api: Any,
    logs: Any,
    logical_id: str,
    properties: Mapping[str, Any],
    *,
    role_arn: str,
    lambdas: Any = None,
    permissions: Any = None,
) -> str:
    """The template's function ``logical_id`` created in moto under that name (through
    the Lambda client ``functions_api``), logging to Lambda's default log group (made
    through ``logs``: moto's functions have no logging configuration of their own), and
    given to ``lambdas`` (``configure_function``); its ARN."""
    created = functions_api.create_function(
        FunctionName=logical_id,
        Runtime=properties["Runtime"],
        Role=role_arn,
        Handler=properties["Handler"],
        Code={"ZipFile": _empty_zip()},
    )
    group = default_log_group(logical_id)
    logs.create_log_group(logGroupName=group)
    if lambdas is not None:
        region = functions_api.meta.region_name
        lambdas.log_groups[logical_id] = FunctionLogGroup(ACCOUNT, region, group)
        configure_function(lambdas, permissions, logical_id, properties)
    return str(created["FunctionArn"])


def configure_function(
    lambdas: Any, permissions: Any, logical_id: str, properties: Mapping[str, Any]
) -> None:
    """What ``lambdas`` (``InProcessLambdas``) enforces of the function as the template
    defines it: its reserved concurrency, its timeout, its role's credentials."""
    reserved = properties.get("ReservedConcurrentExecutions")
    if reserved:
        lambdas.reserve(logical_id, int(reserved))
    # Lambda's default timeout is 3 seconds.
    lambdas.timeouts[logical_id] = float(properties.get("Timeout", 3))
    if permissions is not None and permissions.enforce:
        lambdas.credentials[logical_id] = permissions.function_credentials(logical_id)


def _log_group_arn(region: str, name: str) -> str:
    """What ``Fn::GetAtt`` gives of a log group's ``Arn``."""
    return f"arn:aws:logs:{region}:{ACCOUNT}:log-group:{name}:*"


def update_state_machine(
    deployed: DeployedStateMachine,
    boto_session: Any,
    template: dict[str, Any],
    logical_id: str,
    *,
    endpoint_url: str | None = None,
    permissions: Any = None,
) -> None:
    """What a deploy that changes the state machine ``logical_id`` does to it:
    UpdateStateMachine with the template's definition, role and logging configuration,
    under the same name and ARN. Executions already running go on with the definition
    and role they started with (the API reference of UpdateStateMachine); new ones start
    with the new."""
    lambda_client = boto_session.client("lambda", endpoint_url=endpoint_url)
    arns: dict[str, str] = {
        function_id: lambda_client.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
        for function_id, name in deployed.functions.items()
    }
    for group_id, group in resources(template, "AWS::Logs::LogGroup").items():
        name = group["Properties"].get("LogGroupName")
        if name is not None:
            arns[group_id] = _log_group_arn(boto_session.region_name, name)
    machines = resources(template, "AWS::StepFunctions::StateMachine")
    sfn = boto_session.client("stepfunctions", endpoint_url=endpoint_url)
    for machine_id, machine in machines.items():
        name = machine["Properties"].get("StateMachineName", machine_id)
        arns[machine_id] = (
            f"arn:aws:states:{boto_session.region_name}:{ACCOUNT}:stateMachine:{name}"
        )
    properties = machines[logical_id]["Properties"]
    role = properties.get("RoleArn")
    sfn.update_state_machine(
        stateMachineArn=arns[logical_id],
        definition=resolve(properties["DefinitionString"], arns),
        roleArn=str(permissions.role_arn(role)) if permissions is not None else STAND_IN_ROLE_ARN,
        loggingConfiguration=_logging_configuration(properties.get("LoggingConfiguration"), arns),
    )


def _id_of(arns: Mapping[str, str], arn: str | None) -> str | None:
    return next((logical_id for logical_id, item in arns.items() if item == arn), None)


class EventSourceRefused(AssertionError):
    """Lambda refuses to create an event source mapping (the deploy fails)."""


def _create_event_source_mappings(permissions: Any, template: dict[str, Any]) -> None:
    """What Lambda checks when CloudFormation creates each SQS event source mapping:
    that the function's execution role may poll the queue."""
    for logical_id, mapping in resources(template, "AWS::Lambda::EventSourceMapping").items():
        properties = mapping["Properties"]
        function = properties["FunctionName"]
        function_id = function["Ref"] if isinstance(function, dict) else str(function)
        queue_arn = str(resolve(properties["EventSourceArn"], permissions.references))
        refusal = permissions.event_source_refusal(function_id, queue_arn)
        if refusal is not None:
            raise EventSourceRefused(f"{logical_id}: {refusal}")


def _logging_configuration(properties: dict[str, Any] | None, arns: dict[str, str]) -> Any:
    """A state machine's ``LoggingConfiguration`` as the API takes it (OFF when none)."""
    if not properties:
        return {"level": "OFF"}
    return {
        "level": properties.get("Level", "OFF"),
        "includeExecutionData": bool(properties.get("IncludeExecutionData", False)),
        "destinations": [
            {
                "cloudWatchLogsLogGroup": {
                    "logGroupArn": resolve(
                        destination["CloudWatchLogsLogGroup"]["LogGroupArn"], arns
                    )
                }
            }
            for destination in properties.get("Destinations", [])
        ],
    }
