"""Each strict row of the moto adapter makes the emulation behave as AWS does, and moto
without that row does not: each test runs a tiny state machine under ``mock_aws`` with
every row, asserts AWS's behaviour, and runs it again with the row left out
(``lambdas_in_process(omit=...)``) to show moto's own. So a row whose moto no longer
needs it, or whose replacement stopped working, fails here."""

from __future__ import annotations

import functools
import json
import threading
import time
import types
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from devstack.emulation import moto_adapter, sessions
from devstack.emulation.moto_services.express import ExpressRuns
from devstack.emulation.moto_services.sandboxes import (
    FAULT_LOST_ANSWER,
    FAULT_THROTTLED,
    SERVICE_EXCEPTION,
    THROTTLED,
    TIMED_OUT,
    InProcessLambdas,
    LambdaFaults,
)
from devstack.emulation.moto_services.stepfunctions import HISTORY_EVENT_CAP, HISTORY_LIMIT_ERROR
from devstack.emulation.stepfunctions import DeployedStateMachine, deploy
from devstack.emulation.template import REGION
from devstack.polling import NotInTime, wait_until

pytestmark = pytest.mark.usefixtures("aws_credentials", "no_docker")

CONFIG: Any = {"stepfunctions": {"execute_state_machine": True}}
ROLE = "arn:aws:iam::123456789012:role/escalator-test"  # (the role deploy() creates)
# The rows the tests of this module prove, filled by @proves.
PROVEN: set[str] = set()


def proves(*rows: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark a test as the behavioural proof of these strict rows."""
    PROVEN.update(rows)
    return lambda test: test


@pytest.fixture
def no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto without the in-process Lambda runs functions in Docker: there is none here
    (as on a machine without it), so stock moto fails at once instead of pulling images."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A handler found by its path, as Lambda finds one."""
    return {"n": event["n"] + 1, "function": context.function_name}


@contextmanager
def emulated(
    omit: Collection[str] = (),
    history_cap: int = HISTORY_EVENT_CAP,
    express: ExpressRuns | None = None,
) -> Iterator[InProcessLambdas]:
    with (
        mock_aws(config=CONFIG),
        moto_adapter.lambdas_in_process(history_cap, omit=omit, express=express) as lambdas,
    ):
        yield lambdas


def deployed(
    lambdas: InProcessLambdas, definition: dict[str, Any], **functions: dict[str, Any]
) -> DeployedStateMachine:
    """The state machine and its functions (by name: their template properties),
    deployed as the suite deploys the synthesized template."""
    function_resources = {
        name: {
            "Type": "AWS::Lambda::Function",
            "Properties": {"Runtime": "python3.12", "Handler": f"{__name__}.echo", **properties},
        }
        for name, properties in functions.items()
    }
    machine = {
        "Type": "AWS::StepFunctions::StateMachine",
        "Properties": {"DefinitionString": json.dumps(definition)},
    }
    template = {"Resources": {**function_resources, "Machine": machine}}
    return deploy(sessions.session(region_name=REGION), template, lambdas=lambdas)


def one_task(function_name: str) -> dict[str, Any]:
    """A machine of one Task that invokes the function with the machine's input, as the
    delivery machine's tasks do (``lambda:invoke``)."""
    call = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": function_name, "Payload.$": "$"},
        "OutputPath": "$.Payload",
        "End": True,
    }
    return {"StartAt": "Call", "States": {"Call": call}}


@proves("LambdaFunction.invoke")
def test_a_task_runs_the_functions_handler_in_this_process() -> None:
    def run(omit: Collection[str] = ()) -> dict[str, Any]:
        # GIVEN a function whose Handler names a function of this module
        with emulated(omit) as lambdas:
            machine = deployed(lambdas, one_task("Echo"), Echo={})
            # WHEN a task invokes it
            return machine.wait(machine.start({"n": 41}), timeout=30)

    # THEN the handler ran, with a Lambda context, and answered
    described = run()
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"]) == {"n": 42, "function": "Echo"}
    # (moto alone runs Lambda code only in Docker)
    assert run(omit={"LambdaFunction.invoke"})["status"] == "FAILED"


@proves("LambdaFunction.invoke")
def test_an_invocation_beyond_the_reserved_concurrency_is_throttled() -> None:
    def run(omit: Collection[str] = ()) -> tuple[dict[str, Any], dict[str, int]]:
        # GIVEN a function with a reserved concurrency of 1, whose invocation is running
        release = threading.Event()
        with emulated(omit) as lambdas:
            lambdas.overrides["Busy"] = lambda event, context: release.wait(10)
            branch = one_task("Busy")
            parallel = {"Type": "Parallel", "Branches": [branch, branch], "End": True}
            machine = deployed(
                lambdas,
                {"StartAt": "Both", "States": {"Both": parallel}},
                Busy={"ReservedConcurrentExecutions": 1},
            )
            # WHEN a second invocation comes
            try:
                described = machine.wait(machine.start({}), timeout=30)
            finally:
                release.set()
            return described, lambdas.throttles

    # THEN Lambda refused it, and Step Functions names the error as on AWS
    described, throttles = run()
    assert (described["status"], described["error"]) == ("FAILED", THROTTLED)
    assert throttles == {"Busy": 1}
    assert run(omit={"LambdaFunction.invoke"})[0]["error"] != THROTTLED


@proves("LambdaFunction.invoke")
def test_an_invocation_past_the_functions_timeout_answers_timed_out() -> None:
    def run(omit: Collection[str] = ()) -> tuple[dict[str, Any], bool, dict[str, int]]:
        # GIVEN a function with a timeout of 1 s whose handler runs until it is released
        release, returned = threading.Event(), threading.Event()

        def slow(event: dict[str, Any], context: Any) -> None:
            release.wait(10)
            returned.set()

        with emulated(omit) as lambdas:
            lambdas.overrides["Slow"] = slow
            machine = deployed(lambdas, one_task("Slow"), Slow={"Timeout": 1})
            # WHEN a task invokes it
            try:
                described = machine.wait(machine.start({}), timeout=30)
                handler_returned = returned.is_set()
            finally:
                release.set()
            return described, handler_returned, lambdas.timed_out

    # THEN Lambda answered Sandbox.Timedout while the handler still ran, not the handler
    described, handler_returned, timed_out = run()
    assert (described["status"], described["error"]) == ("FAILED", TIMED_OUT)
    assert handler_returned is False
    assert timed_out == {"Slow": 1}
    assert run(omit={"LambdaFunction.invoke"})[0]["error"] != TIMED_OUT


@proves("LambdaFunction.invoke")
@pytest.mark.parametrize(
    ("kind", "error", "ran"),
    [(FAULT_LOST_ANSWER, SERVICE_EXCEPTION, 1), (FAULT_THROTTLED, THROTTLED, 0)],
)
def test_an_injected_fault_fails_the_invocation_as_lambda_does(
    kind: str, error: str, ran: int
) -> None:
    def run(omit: Collection[str] = ()) -> tuple[dict[str, Any], int]:
        # GIVEN every invocation suffers the fault
        calls: list[dict[str, Any]] = []
        with emulated(omit) as lambdas:
            lambdas.overrides["Flaky"] = lambda event, context: calls.append(event)
            lambdas.faults = LambdaFaults(1.0, kinds=[kind])
            machine = deployed(lambdas, one_task("Flaky"), Flaky={})
            # WHEN a task invokes the function
            return machine.wait(machine.start({}), timeout=30), len(calls)

    # THEN a lost answer comes after the handler ran, a throttle before; both are the
    # errors Step Functions names
    described, calls = run()
    assert (described["status"], described["error"], calls) == ("FAILED", error, ran)
    assert run(omit={"LambdaFunction.invoke"})[0]["error"] != error


HISTORY_ROWS = ("Environment.__init__", "EventManager.add_event", "Environment.set_error")


@proves(*HISTORY_ROWS)
@pytest.mark.parametrize("row", HISTORY_ROWS)
def test_an_execution_past_its_history_quota_fails_with_the_quota(row: str) -> None:
    cap = 3

    def run(omit: Collection[str] = ()) -> tuple[dict[str, Any], list[str]]:
        # GIVEN a quota of 3 events, and a task whose function fails once the history
        # has passed it (ExecutionStarted, TaskStateEntered, TaskScheduled, TaskStarted)
        release = threading.Event()

        def fails_later(event: dict[str, Any], context: Any) -> None:
            release.wait(10)
            raise ValueError("a failure after the quota")

        with emulated(omit, history_cap=cap) as lambdas:
            lambdas.overrides["Step"] = fails_later
            machine = deployed(lambdas, one_task("Step"), Step={})
            # WHEN it runs
            arn = machine.start({})
            try:
                wait_until(lambda: len(machine.history(arn)) > cap, timeout=30)
            finally:
                release.set()
            described = machine.wait(arn, timeout=30)
            return described, [event["type"] for event in machine.history(arn)]

    # THEN it failed for its quota, and its history holds nothing past it but its end
    described, events = run()
    assert (described["status"], described["error"]) == ("FAILED", HISTORY_LIMIT_ERROR)
    assert events[cap:] == ["TaskStarted", "ExecutionFailed"]
    # (moto lets the history grow; or, with its own set_error, the task's failure after
    # the quota replaces the quota as the reason)
    stock, _ = run(omit={row})
    assert stock["error"] != HISTORY_LIMIT_ERROR


def waited_until_a_timestamp(omit: Collection[str] = ()) -> tuple[float | None, float]:
    """When an execution that waits until a timestamp 0.5 to 0.9 s away ended (``None``:
    not within 1.5 s after the timestamp), and the timestamp."""
    wait = {"Type": "Wait", "TimestampPath": "$.due", "End": True}
    with emulated(omit) as lambdas:
        machine = deployed(lambdas, {"StartAt": "Wait", "States": {"Wait": wait}})
        # whole seconds, as the delivery machine's timestamps: start early in a second
        wait_until(lambda: 0.1 <= time.time() % 1 < 0.5, timeout=2, interval=0.01)
        due = int(time.time()) + 1
        arn = machine.start({"due": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(due))})
        try:
            described = machine.wait(arn, timeout=due + 1.5 - time.time())
        except NotInTime:
            machine.stop(arn)
            return None, due
        assert described["status"] == "SUCCEEDED", described
        ended: float = described["stopDate"].timestamp()
        return ended, due


@proves("Timestamp._get_wait_seconds")
def test_a_wait_until_a_timestamp_never_ends_before_it() -> None:
    # GIVEN a Wait until a timestamp, WHEN it runs, THEN it ends not before it
    ended, due = waited_until_a_timestamp()
    assert ended is not None
    assert ended >= due
    # (moto waits the whole seconds until it, truncated: up to a second early)
    stock, due = waited_until_a_timestamp(omit={"Timestamp._get_wait_seconds"})
    assert stock is not None
    assert stock < due


@proves("WaitFunction._wait_interval")
def test_a_wait_of_a_fraction_of_a_second_ends() -> None:
    # GIVEN a Wait until a timestamp a fraction of a second off the clock's seconds,
    # WHEN it runs, THEN it ends, within a second after the timestamp
    ended, due = waited_until_a_timestamp()
    assert ended is not None
    assert due <= ended < due + 1
    # (moto's wait, given the fraction, waits it again and again)
    stock, _ = waited_until_a_timestamp(omit={"WaitFunction._wait_interval"})
    assert stock is None


@proves("state_task_service_sfn.boto_client_for")
def test_a_start_execution_task_starts_the_execution() -> None:
    def run(omit: Collection[str] = ()) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        # GIVEN a machine whose task starts another, parameters named as in the
        # delivery machine's hand-over (StateMachineArn, Input)
        with emulated(omit) as lambdas:
            started = deployed(
                lambdas, {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
            )
            start = {
                "Type": "Task",
                "Resource": "arn:aws:states:::states:startExecution",
                "Parameters": {"StateMachineArn": started.arn, "Input": {"n": 1}},
                "ResultPath": None,
                "End": True,
            }
            definition = {"StartAt": "Start", "States": {"Start": start}}
            arn = started.sfn.create_state_machine(
                name="starter", definition=json.dumps(definition), roleArn=ROLE
            )["stateMachineArn"]
            starter = DeployedStateMachine(sfn=started.sfn, arn=arn, functions={})
            # WHEN it runs
            described = starter.wait(starter.start({}), timeout=30)
            return described, started.settle(timeout=30)

    # THEN it started the other machine, with its input
    described, executions = run()
    assert described["status"] == "SUCCEEDED", described
    assert [json.loads(execution["input"]) for execution in executions] == [{"n": 1}]
    # (moto hands botocore StateMachineArn, which botocore refuses)
    described, executions = run(omit={"state_task_service_sfn.boto_client_for"})
    assert (described["status"], executions) == ("FAILED", [])


def express_machine(
    sfn: Any,
    definition: dict[str, Any],
    machine_type: str = "EXPRESS",
    *,
    name: str | None = None,
    logging: dict[str, Any] | None = None,
) -> str:
    """An Express state machine of this definition (or of ``machine_type``), logging as
    ``logging`` says (``logging_to``); its ARN."""
    arn: str = sfn.create_state_machine(
        name=name or f"window-{machine_type.lower()}",
        definition=json.dumps(definition),
        roleArn=ROLE,
        type=machine_type,
        **({} if logging is None else {"loggingConfiguration": logging}),
    )["stateMachineArn"]
    return arn


def logging_to(logs: Any, group: str, level: str, *, data: bool = False) -> dict[str, Any]:
    """A new log group, and the logging configuration that sends a state machine's
    events to it at ``level`` (``data``: with the execution's input and output)."""
    logs.create_log_group(logGroupName=group)
    arn = f"arn:aws:logs:{REGION}:123456789012:log-group:{group}:*"
    return {
        "level": level,
        "includeExecutionData": data,
        "destinations": [{"cloudWatchLogsLogGroup": {"logGroupArn": arn}}],
    }


def logged(logs: Any, group: str) -> dict[str, list[dict[str, Any]]]:
    """The log group's events (each message parsed), by execution ARN, in event order."""
    found: dict[str, list[dict[str, Any]]] = {}
    for item in logs.filter_log_events(logGroupName=group)["events"]:
        event = json.loads(item["message"])
        found.setdefault(event["execution_arn"], []).append(event)
    return {arn: sorted(events, key=lambda e: int(e["id"])) for arn, events in found.items()}


END_EVENTS = {"ExecutionSucceeded", "ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"}


def ended(logs: Any, group: str) -> bool:
    """Whether the log group holds executions, each of which has logged its end (a
    state machine that logs at level ALL)."""
    runs = logged(logs, group)
    return bool(runs) and all(events[-1]["type"] in END_EVENTS for events in runs.values())


def parent_of(machine: DeployedStateMachine, child_arn: str, **task: Any) -> DeployedStateMachine:
    """A state machine of one task that starts the child and waits for its output
    (``states:startExecution.sync:2``, for a Standard child); ``task`` adds to or
    replaces the task's fields."""
    start = {
        "Type": "Task",
        "Resource": "arn:aws:states:::states:startExecution.sync:2",
        "Parameters": {"StateMachineArn": child_arn, "Input": {}},
        "End": True,
        **task,
    }
    arn = machine.sfn.create_state_machine(
        name="parent",
        definition=json.dumps({"StartAt": "Start", "States": {"Start": start}}),
        roleArn=ROLE,
    )["stateMachineArn"]
    return DeployedStateMachine(sfn=machine.sfn, arn=arn, functions={})


@proves("StateTaskServiceSfn._normalise_response")
def test_a_start_execution_sync_task_gets_the_childs_output() -> None:
    def run(omit: Collection[str] = ()) -> dict[str, Any]:
        # GIVEN a machine whose task starts a Standard one and waits for it
        # (states:startExecution.sync:2)
        with emulated(omit) as lambdas:
            machine = deployed(lambdas, {"StartAt": "Nothing", "States": {"Nothing": PASS}})
            child = {"Type": "Pass", "Parameters": {"doubled.$": "States.MathAdd($.n, $.n)"}}
            child_arn = express_machine(
                machine.sfn,
                {"StartAt": "Double", "States": {"Double": {**child, "End": True}}},
                "STANDARD",
            )
            parent = parent_of(
                machine,
                child_arn,
                Parameters={"StateMachineArn": child_arn, "Input": {"n.$": "$.n"}},
                ResultSelector={"output.$": "$.Output", "status.$": "$.Status"},
            )
            # WHEN it runs
            return parent.wait(parent.start({"n": 21}), timeout=30)

    # THEN it has the child's output, as AWS names it
    described = run()
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"]) == {"output": {"doubled": 42}, "status": "SUCCEEDED"}
    # (moto keeps botocore's executionArn, and its own resolver looks for ExecutionArn)
    assert run(omit={"StateTaskServiceSfn._normalise_response"})["status"] == "FAILED"


PASS = {"Type": "Pass", "End": True}


@proves("StateTaskServiceCallback._eval_integration_pattern")
# (long: started first, so that the parallel run ends with short tests)
@pytest.mark.long
def test_a_retried_start_execution_sync_task_runs_the_child_again() -> None:
    def run(omit: Collection[str] = ()) -> tuple[dict[str, Any], int]:
        # GIVEN a Standard child whose function fails its first invocation only, and a
        # parent that retries the child once
        calls: list[int] = []

        def flaky(event: dict[str, Any], context: Any) -> dict[str, Any]:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("first run fails")
            return {"ok": True}

        with emulated(omit) as lambdas:
            lambdas.overrides["Flaky"] = flaky
            machine = deployed(lambdas, one_task("Flaky"), Flaky={})
            child_arn = express_machine(machine.sfn, one_task("Flaky"), "STANDARD")
            parent = parent_of(
                machine,
                child_arn,
                Retry=[{"ErrorEquals": ["States.ALL"], "MaxAttempts": 1, "IntervalSeconds": 1}],
                ResultSelector={"output.$": "$.Output"},
            )
            # WHEN it runs
            return parent.wait(parent.start({}), timeout=30), len(calls)

    # THEN the retry ran the child again, and the parent has its output
    described, calls = run()
    assert described["status"] == "SUCCEEDED", described
    assert (json.loads(described["output"]), calls) == ({"output": {"ok": True}}, 2)
    # (moto's retry reuses the first attempt's shut callback endpoint: it starts the
    # child and times out at once, without waiting for its output)
    described, _ = run(omit={"StateTaskServiceCallback._eval_integration_pattern"})
    assert described["status"] == "FAILED"


SYNC_ROWS = (
    "StepFunctionsParserBackend.start_sync_execution",
    "StepFunctionResponse.start_sync_execution",
    "state_task_service_aws_sdk.boto_client_for",
)
FAILING = {"StartAt": "Fail", "States": {"Fail": {"Type": "Fail", "Error": "Boom", "Cause": "why"}}}


@proves(*SYNC_ROWS)
@pytest.mark.parametrize("row", SYNC_ROWS)
def test_a_start_sync_execution_task_runs_an_express_child_once_and_answers_its_status(
    row: str,
) -> None:
    def run(omit: Collection[str] = ()) -> list[dict[str, Any]]:
        # GIVEN Express children, one that doubles its input and one that fails, run at
        # least once when started asynchronously (here: always twice), and a Standard
        # one; a parent that starts each as the tick starts its window
        express = ExpressRuns(rerun_probability=1.0, seed=3)
        with emulated(omit, express=express) as lambdas:
            machine = deployed(lambdas, {"StartAt": "Nothing", "States": {"Nothing": PASS}})
            double = {"Type": "Pass", "Parameters": {"doubled.$": "States.MathAdd($.n, $.n)"}}
            children = [
                express_machine(
                    machine.sfn, {"StartAt": "D", "States": {"D": {**double, "End": True}}}
                ),
                machine.sfn.create_state_machine(
                    name="failing", definition=json.dumps(FAILING), roleArn=ROLE, type="EXPRESS"
                )["stateMachineArn"],
                express_machine(machine.sfn, {"StartAt": "N", "States": {"N": PASS}}, "STANDARD"),
            ]
            described = []
            for child in children:
                parent = parent_of(
                    machine,
                    child,
                    Resource="arn:aws:states:::aws-sdk:sfn:startSyncExecution",
                    Parameters={"StateMachineArn": child, "Input.$": "States.JsonToString($)"},
                )
                described.append(parent.wait(parent.start({"n": 21}), timeout=30))
                machine.sfn.delete_state_machine(stateMachineArn=parent.arn)
            # (a synchronous Express execution is never run again)
            assert express.reruns == 0
            return described

    # WHEN the parents run
    succeeded, failed, standard = run()

    # THEN the task has the child's status and output (as JSON text), as AWS names them
    assert succeeded["status"] == "SUCCEEDED", succeeded
    answer = json.loads(succeeded["output"])
    assert (answer["Status"], json.loads(answer["Output"])) == ("SUCCEEDED", {"doubled": 42})
    assert json.loads(answer["Input"]) == {"n": 21}
    # a child that failed is an answer, not an error: its status, error and cause
    assert failed["status"] == "SUCCEEDED", failed
    answer = json.loads(failed["output"])
    assert (answer["Status"], answer["Error"], answer["Cause"]) == ("FAILED", "Boom", "why")
    assert "Output" not in answer
    # a Standard child is refused
    assert (standard["status"], standard["error"]) == (
        "FAILED",
        "Sfn.StateMachineTypeNotSupportedException",
    )
    # (moto has no StartSyncExecution; and botocore sends it to a host moto does not serve)
    assert run(omit={row})[0]["status"] == "FAILED"


@proves("StateTaskServiceAwsSdk._eval_service_task")
# (long: started first, so that the parallel run ends with short tests)
@pytest.mark.long
def test_a_standard_execution_waiting_for_a_synchronous_child_stops_at_once() -> None:
    def run(omit: Collection[str] = ()) -> tuple[str, str]:
        # GIVEN a parent waiting for an Express child (StartSyncExecution) whose function
        # is still running
        entered, release = threading.Event(), threading.Event()

        def busy(event: dict[str, Any], context: Any) -> dict[str, Any]:
            entered.set()
            release.wait(30)
            return {}

        with emulated(omit) as lambdas:
            lambdas.overrides["Busy"] = busy
            machine = deployed(lambdas, one_task("Busy"), Busy={"Timeout": 60})
            child = express_machine(machine.sfn, one_task("Busy"))
            parent = parent_of(
                machine,
                child,
                Resource="arn:aws:states:::aws-sdk:sfn:startSyncExecution",
                Parameters={"StateMachineArn": child, "Input": "{}"},
            )
            execution = parent.start({})
            assert entered.wait(30)
            # WHEN the parent is stopped
            machine.sfn.stop_execution(executionArn=execution)
            try:
                parent_status = parent.wait(execution, timeout=5)["status"]
            except NotInTime:
                parent_status = "RUNNING"
            # (AWS lists no Express execution: the emulation's bookkeeping says whether
            # the window still runs)
            window_status = "RUNNING" if lambdas.express.running() else "ENDED"
            release.set()
            return parent_status, window_status

    # THEN it ends at once, and its child runs on (nothing stops an Express execution)
    assert run() in (("ABORTED", "RUNNING"), ("FAILED", "RUNNING"))
    # (moto waits for the call to return first)
    assert run(omit={"StateTaskServiceAwsSdk._eval_service_task"}) == ("RUNNING", "RUNNING")


EXPRESS_ROWS = (
    "Execution.__init__",
    "StepFunctionBackend._validate_execution_arn",
    "StepFunctionBackend.list_executions",
)


@proves(*EXPRESS_ROWS[:2])
@pytest.mark.parametrize(
    ("row", "resource"),
    [
        (EXPRESS_ROWS[0], "arn:aws:states:::states:startExecution.sync:2"),
        (EXPRESS_ROWS[1], "arn:aws:states:::states:startExecution.sync"),
    ],
)
def test_a_start_execution_sync_task_cannot_follow_an_express_child(
    row: str, resource: str
) -> None:
    def run(omit: Collection[str] = ()) -> dict[str, Any]:
        # GIVEN a parent that starts an Express child with the .sync pattern
        with emulated(omit) as lambdas:
            machine = deployed(lambdas, {"StartAt": "Nothing", "States": {"Nothing": PASS}})
            child = express_machine(machine.sfn, {"StartAt": "N", "States": {"N": PASS}})
            parent = parent_of(machine, child, Resource=resource)
            # WHEN it runs
            return parent.wait(parent.start({}), timeout=30)

    # THEN it fails as on AWS, whose DescribeExecution (what .sync follows its child
    # with) serves no Express execution
    described = run()
    assert described["status"] == "FAILED"
    assert described["error"] == "StepFunctions.InvalidArnException"
    assert "Resource type not valid in this context: express" in described["cause"]
    # (moto follows it as if it were Standard; or, given an Express ARN, says that it
    # does not exist)
    stock = run(omit={row})
    assert "Resource type not valid in this context: express" not in stock.get("cause", "")


def refusal(call: Callable[[], Any], *, served: str = "served") -> str:
    """``Code: Message`` of the error a call answers (``served`` when it succeeds)."""
    try:
        call()
    except ClientError as exc:
        return f"{exc.response['Error']['Code']}: {exc.response['Error']['Message']}"
    return served


@proves(*EXPRESS_ROWS)
def test_an_express_execution_is_not_listed_described_stopped_or_its_history_given() -> None:
    def run(omit: Collection[str] = ()) -> tuple[list[str], list[str], list[str]]:
        # GIVEN an Express state machine and a Standard one
        with emulated(omit) as lambdas:
            machine = deployed(lambdas, {"StartAt": "Nothing", "States": {"Nothing": PASS}})
            window = express_machine(machine.sfn, {"StartAt": "N", "States": {"N": PASS}})
            # WHEN an execution of each is started (the Express one asynchronously and
            # synchronously), and asked about
            # (a client that sends StartSyncExecution to the emulation's one host)
            sync = boto3.client(
                "stepfunctions", region_name=REGION, config=Config(inject_host_prefix=False)
            )
            arns = [
                machine.sfn.start_execution(stateMachineArn=window)["executionArn"],
                sync.start_sync_execution(stateMachineArn=window)["executionArn"],
            ]
            standard = machine.start({})
            answers = [
                refusal(lambda: machine.sfn.describe_execution(executionArn=arns[0])),
                refusal(lambda: machine.sfn.get_execution_history(executionArn=arns[0])),
                refusal(lambda: machine.sfn.stop_execution(executionArn=arns[0])),
                refusal(lambda: machine.sfn.list_executions(stateMachineArn=window)),
            ]
            # (a Standard one is served)
            served = [
                refusal(lambda: machine.sfn.describe_execution(executionArn=standard)),
                refusal(lambda: machine.sfn.list_executions(stateMachineArn=machine.arn)),
            ]
            machine.settle_windows(timeout=30)
            return arns, answers, served

    # THEN each Express execution has AWS's ARN (express, the machine, its name, a run
    # id), and AWS's refusals come back
    not_for_express = "InvalidArn: Invalid Arn: 'Resource type not valid in this context: express'"
    expected = [
        not_for_express,
        not_for_express,
        not_for_express,
        "StateMachineTypeNotSupported: This operation is not supported by this type of state"
        " machine",
    ]
    arns, answers, served = run()
    assert [express_arn(arn) for arn in arns] == [True, True], arns
    assert answers == expected
    assert served == ["served", "served"]
    # (moto gives a Standard execution's ARN and serves them all; without the refusals,
    # it says an Express ARN names no execution, and lists the machine's executions)
    for row in EXPRESS_ROWS:
        arns, answers, _ = run(omit={row})
        assert ([express_arn(arn) for arn in arns], answers) != ([True, True], expected), row


def express_arn(arn: str) -> bool:
    """Whether an execution ARN is an Express one's as AWS gives it: express, the
    machine's name, the execution's name (a UUID when none was given), a run id."""
    prefix = f"arn:aws:states:{REGION}:123456789012:express:window-express:"
    if not arn.startswith(prefix):
        return False
    name, run_id = arn.removeprefix(prefix).split(":")
    return bool(uuid.UUID(name)) and bool(uuid.UUID(run_id))


@proves("Execution._get_start_execution_worker")
def test_an_execution_logs_its_events_as_aws_does_at_its_level() -> None:
    def run(omit: Collection[str] = ()) -> dict[str, dict[str, list[dict[str, Any]]]]:
        # GIVEN Express machines logging at ERROR (one that fails, one that succeeds)
        # and at ALL, without execution data, as the delivery window's template says
        with emulated(omit) as lambdas:
            machine = deployed(lambdas, {"StartAt": "Nothing", "States": {"Nothing": PASS}})
            logs = machine.logs
            groups = {"error-failing": "ERROR", "error-passing": "ERROR", "all": "ALL"}
            definitions = {
                "error-failing": FAILING,
                "error-passing": {"StartAt": "N", "States": {"N": PASS}},
                "all": {"StartAt": "N", "States": {"N": PASS}},
            }
            for group, level in groups.items():
                arn = express_machine(
                    machine.sfn,
                    definitions[group],
                    name=group,
                    logging=logging_to(logs, group, level),
                )
                # WHEN each runs once
                machine.sfn.start_execution(stateMachineArn=arn, input=json.dumps({"n": 1}))
            machine.settle_windows(timeout=30)
            return {group: logged(logs, group) for group in groups}

    # THEN each logged what its level says, in AWS's format, data left out
    runs = run()
    assert runs["error-passing"] == {}
    ((failing_arn, failing),) = runs["error-failing"].items()
    assert [(event["type"], event["details"]) for event in failing] == [
        ("FailStateEntered", {"name": "Fail"}),
        ("ExecutionFailed", {"error": "Boom", "cause": "why"}),
    ]
    ((arn, events),) = runs["all"].items()
    assert [event["type"] for event in events] == [
        "ExecutionStarted",
        "PassStateEntered",
        "PassStateExited",
        "ExecutionSucceeded",
    ]
    for event in [*failing, *events]:
        assert set(event) == {
            "id",
            "type",
            "details",
            "previous_event_id",
            "event_timestamp",
            "execution_arn",
            "redrive_count",
        }
        assert event["event_timestamp"].isdigit()
        assert event["execution_arn"] in (arn, failing_arn)
        assert ":express:" in event["execution_arn"]
        assert not {"input", "output"} & set(event["details"])
    # (as AWS numbers them: its log of a Pass machine ends with event 4, after 3)
    assert [event["id"] for event in events] == ["1", "2", "3", "4"]
    assert events[-1]["previous_event_id"] == "3"
    # (moto writes nothing)
    stock = run(omit={"Execution._get_start_execution_worker"})
    assert stock == {"error-failing": {}, "error-passing": {}, "all": {}}


def choosing(rule: dict[str, Any]) -> dict[str, Any]:
    """A machine of one Choice: ``rule`` leads to Yes, the default to No."""
    choice = {"Type": "Choice", "Choices": [{**rule, "Next": "Yes"}], "Default": "No"}
    yes = {"Type": "Pass", "Result": {"went": "yes"}, "End": True}
    no = {"Type": "Pass", "Result": {"went": "no"}, "End": True}
    return {"StartAt": "Choose", "States": {"Choose": choice, "Yes": yes, "No": no}}


@proves("ComparisonVariable._eval_body")
def test_a_choice_on_a_missing_field_fails_unless_it_asks_whether_it_is_present() -> None:
    missing = {"Variable": "$.confirmed.deliver", "BooleanEquals": False}
    guarded = {"And": [{"Variable": "$.confirmed.deliver", "IsPresent": True}, missing]}

    def run(rule: dict[str, Any], omit: Collection[str] = ()) -> dict[str, Any]:
        # GIVEN a Choice whose rule reads a field its input does not have
        with emulated(omit) as lambdas:
            machine = deployed(lambdas, choosing(rule))
            # WHEN it runs
            return machine.wait(machine.start({"confirmed": {}}), timeout=30)

    # THEN the execution fails with States.Runtime, as on AWS
    described = run(missing)
    assert (described["status"], described["error"]) == ("FAILED", "States.Runtime")
    assert "Invalid path '$.confirmed.deliver'" in described["cause"]
    # AND a rule that asks for its presence first goes on to the default
    described = run(guarded)
    assert (described["status"], json.loads(described["output"])) == ("SUCCEEDED", {"went": "no"})
    # (moto takes the rule as false and goes to the default)
    described = run(missing, omit={"ComparisonVariable._eval_body"})
    assert (described["status"], json.loads(described["output"])) == ("SUCCEEDED", {"went": "no"})


def express_run_events(
    states: dict[str, Any], cap_seconds: float, omit: Collection[str] = ()
) -> list[str]:
    """The logged event types of one run of an Express machine of ``states`` (starting at
    "Wait"), its cap scaled to ``cap_seconds``, logging ALL (AWS describes no Express
    execution: its log tells how it ended)."""
    with emulated(omit, express=ExpressRuns(cap_seconds)) as lambdas:
        machine = deployed(lambdas, {"StartAt": "Nothing", "States": {"Nothing": PASS}})
        arn = express_machine(
            machine.sfn,
            {"StartAt": "Wait", "States": states},
            logging=logging_to(machine.logs, "window", "ALL"),
        )
        machine.sfn.start_execution(stateMachineArn=arn)
        wait_until(lambda: ended(machine.logs, "window"), timeout=30)
        ((_, events),) = logged(machine.logs, "window").items()
        return [event["type"] for event in events]


@proves("StepFunctionsParserBackend.start_execution")
def test_an_express_execution_ends_at_its_cap() -> None:
    # GIVEN an Express machine that waits longer than its cap (scaled to 0.5 s)
    states = {"Wait": {"Type": "Wait", "Seconds": 3, "End": True}}

    # WHEN it runs, THEN AWS ends it at the cap
    assert express_run_events(states, 0.5)[-1] == "ExecutionTimedOut"
    # (moto runs it as a Standard one, to its end)
    omit = {"StepFunctionsParserBackend.start_execution"}
    assert express_run_events(states, 0.5, omit)[-1] == "ExecutionSucceeded"


@proves("StepFunctionsParserBackend.start_execution")
def test_an_express_execution_whose_cap_passes_before_it_begins_ends_at_its_cap() -> None:
    # GIVEN an Express machine whose definition takes a while to parse (a Wait of a
    # second, then 60 Pass states), and a cap that passes at once (0 s): before the
    # execution has begun
    states: dict[str, Any] = {"Wait": {"Type": "Wait", "Seconds": 1, "Next": "P0"}}
    states.update({f"P{n}": {"Type": "Pass", "Next": f"P{n + 1}"} for n in range(59)})
    states["P59"] = PASS

    # WHEN it runs, THEN it ends at its cap all the same
    assert express_run_events(states, 0.0)[-1] == "ExecutionTimedOut"
    # (moto runs it as a Standard one, to its end)
    omit = {"StepFunctionsParserBackend.start_execution"}
    assert express_run_events(states, 0.0, omit)[-1] == "ExecutionSucceeded"


class StartingProgram:
    """A moto execution's environment as its worker brings it up: made first, its program
    running a moment later (``run``). As moto's, it ignores a stop that comes before its
    program runs, and its program then runs all the same."""

    def __init__(self) -> None:
        self.state: str | None = None
        self.asked = threading.Event()

    def program_state(self) -> str | None:
        self.asked.set()
        return self.state

    def set_stop(self, **_: Any) -> None:
        if self.state == "running":
            self.state = "stopped"

    def run(self) -> None:
        self.state = "running" if self.state is None else self.state


class StartingExecution:
    """A moto Express execution whose worker has made its environment, not yet run."""

    def __init__(self, execution_input: str) -> None:
        self.execution_input = execution_input
        self.execution_arn = f"arn:aws:states:{REGION}:123456789012:express:window:{uuid.uuid4()}"
        self.exec_worker = types.SimpleNamespace(env=StartingProgram())

    @property
    def status(self) -> str:
        return "ABORTED" if self.exec_worker.env.state == "stopped" else "RUNNING"

    def stop(self, **details: Any) -> None:
        self.exec_worker.env.set_stop(**details)


def test_a_window_of_a_crashed_tick_that_starts_after_the_crash_never_runs() -> None:
    # GIVEN a tick that crashed while its window's start was under way
    runs = ExpressRuns()
    tick = f"arn:aws:states:{REGION}:123456789012:execution:tick:crashed"
    assert runs.stop_running(started_by=tick) == []

    # WHEN its window comes up: its environment made, its program not yet running
    window = StartingExecution(json.dumps({"claim": {"execution": tick}}))
    registering = threading.Thread(target=runs.register, args=(window,))
    registering.start()
    # (its program runs once the emulation looks at it, or is done with it)
    environment = window.exec_worker.env
    wait_until(lambda: environment.asked.is_set() or not registering.is_alive(), timeout=10)
    environment.run()
    registering.join(timeout=30)

    # THEN it is stopped once its program runs (a stop before that would be lost)
    assert not registering.is_alive()
    assert window.status == "ABORTED"


@proves("StepFunctionsParserBackend.start_execution")
def test_an_express_execution_may_run_twice_and_unnamed_ones_are_told_apart() -> None:
    def run(omit: Collection[str] = ()) -> list[tuple[str, str]]:
        # GIVEN Express executions that run at least once: here every one twice; its
        # log holds its input (includeExecutionData)
        with emulated(omit, express=ExpressRuns(rerun_probability=1.0, seed=1)) as lambdas:
            machine = deployed(lambdas, {"StartAt": "Nothing", "States": {"Nothing": PASS}})
            arn = express_machine(
                machine.sfn,
                {"StartAt": "Nothing", "States": {"Nothing": PASS}},
                logging=logging_to(machine.logs, "window", "ALL", data=True),
            )
            # WHEN one is started, without a name (as the initiator starts a window)
            machine.sfn.start_execution(stateMachineArn=arn, input=json.dumps({"n": 1}))
            wait_until(
                lambda: not lambdas.express.running() and ended(machine.logs, "window"),
                timeout=30,
            )
            return sorted(
                (execution, events[0]["details"]["input"])
                for execution, events in logged(machine.logs, "window").items()
            )

    # THEN it ran twice with the same input, each run an execution of its own (a UUID
    # name, as AWS gives one)
    runs = run()
    assert [json.loads(item_input) for _, item_input in runs] == [{"n": 1}, {"n": 1}]
    assert len({arn for arn, _ in runs}) == 2
    assert all(uuid.UUID(arn.split(":")[7]) for arn, _ in runs)
    # (moto runs it once, named "None")
    ((arn, _),) = run(omit={"StepFunctionsParserBackend.start_execution"})
    assert arn.split(":")[7] == "None"


@proves("SQSBackend._validate_message")
def test_a_group_or_deduplication_id_outside_the_sqs_alphabet_is_refused() -> None:
    sent = [
        ("restaurant-42", "order-1"),
        ("!~" * 64, "~!" * 64),  # the alphabet's ends, 128 characters
        ("rest\u0430urant-42", "order-2"),
        ("restaurant-42 ", "order-3"),
        ("r" * 129, "order-4"),
        ("restaurant-42", "order\u00a05"),
    ]

    def answers(sqs: Any, omit: Collection[str] = ()) -> list[str]:
        # GIVEN a FIFO queue as the stack defines it
        with moto_adapter.lambdas_in_process(omit=omit):
            url = sqs.create_queue(
                QueueName=f"requests-{len(omit)}.fifo",
                Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"},
            )["QueueUrl"]
            # WHEN messages are sent with ids of every kind
            return [
                refusal(
                    functools.partial(
                        sqs.send_message,
                        QueueUrl=url,
                        MessageBody="{}",
                        MessageGroupId=group,
                        MessageDeduplicationId=deduplication,
                    ),
                    served="sent",
                )
                for group, deduplication in sent
            ]

    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        strict, stock = answers(sqs), answers(sqs, omit={"SQSBackend._validate_message"})

    # THEN SQS refuses those outside 1 to 128 printable ASCII characters without the
    # space, as AWS does, with AWS's message (the value escaped)
    reason = "can only include alphanumeric and punctuation characters. 1 to 128 in length."
    assert strict == [
        "sent",
        "sent",
        "InvalidParameterValue: Value rest\\u0430urant-42 for parameter MessageGroupId is"
        f" invalid. Reason: MessageGroupId {reason}",
        "InvalidParameterValue: Value restaurant-42  for parameter MessageGroupId is invalid."
        f" Reason: MessageGroupId {reason}",
        f"InvalidParameterValue: Value {'r' * 129} for parameter MessageGroupId is invalid."
        f" Reason: MessageGroupId {reason}",
        "InvalidParameterValue: Value order\\xa05 for parameter MessageDeduplicationId is"
        f" invalid. Reason: MessageDeduplicationId {reason}",
    ]
    # (moto takes any string)
    assert stock == ["sent"] * len(sent)


@proves("SQSBackend._validate_message", "SQSBackend.send_message_batch")
def test_a_body_sqs_would_refuse_is_refused() -> None:
    euro = "\u20ac"  # (three bytes of UTF-8)
    bodies = [
        euro * 87_000,  # 261,000 bytes: taken
        euro * 100_000,  # 300,000 bytes in 100,000 characters
        '{"process-id": "r\x01"}',
        '{"process-id": "r\ufffe"}',
    ]

    def answers(sqs: Any, omit: Collection[str] = ()) -> list[str]:
        # GIVEN a FIFO queue as the stack defines it (256 KiB at most)
        with moto_adapter.lambdas_in_process(omit=omit):
            url = sqs.create_queue(
                QueueName=f"bodies-{len(omit)}.fifo",
                Attributes={"FifoQueue": "true", "MaximumMessageSize": "262144"},
            )["QueueUrl"]
            # WHEN bodies of every kind are sent, and a batch of ten 120,000-byte ones
            found = [
                refusal(
                    functools.partial(
                        sqs.send_message,
                        QueueUrl=url,
                        MessageBody=body,
                        MessageGroupId="g",
                        MessageDeduplicationId=str(n),
                    ),
                    served="sent",
                )
                for n, body in enumerate(bodies)
            ]
            entries = [
                {"Id": str(n), "MessageBody": euro * 40_000, "MessageGroupId": "g",
                 "MessageDeduplicationId": f"b{n}"}
                for n in range(10)
            ]  # fmt: skip
            batch = functools.partial(sqs.send_message_batch, QueueUrl=url, Entries=entries)
            return [*found, refusal(batch, served="sent")]

    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        strict = answers(sqs)
        stock = answers(sqs, omit={"SQSBackend._validate_message", "SQSBackend.send_message_batch"})

    # THEN SQS's limits hold in bytes, and its character set, with AWS's codes
    characters = (
        "InvalidMessageContents: Invalid characters found. Valid unicode characters are #x9 |"
        " #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF"
    )
    assert strict == [
        "sent",
        "InvalidParameterValue: One or more parameters are invalid. Reason: Message must be"
        " shorter than 262144 bytes.",
        characters,
        characters,
        "AWS.SimpleQueueService.BatchRequestTooLong: Batch requests cannot be longer than"
        " 1048576 bytes. You have"
        " sent 1200000 bytes.",
    ]
    # (moto counts characters, and takes any)
    assert stock == ["sent"] * 5


def role(logical_id: str, *statements: dict[str, Any]) -> dict[str, Any]:
    """An AWS::IAM::Role resource and its AWS::IAM::Policy, as CDK writes them."""
    trust = {"Version": "2012-10-17", "Statement": []}
    document = {"Version": "2012-10-17", "Statement": list(statements)}
    return {
        logical_id: {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": trust}},
        f"{logical_id}Policy": {
            "Type": "AWS::IAM::Policy",
            "Properties": {
                "PolicyDocument": document,
                "PolicyName": f"{logical_id}Policy",
                "Roles": [{"Ref": logical_id}],
            },
        },
    }


def allow(action: str, *resources: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": list(resources)}


def function_arn(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def deployed_template(lambdas: InProcessLambdas, resources: dict[str, Any]) -> DeployedStateMachine:
    return deploy(sessions.session(region_name=REGION), {"Resources": resources}, lambdas=lambdas)


def function(handler: str = "echo", **properties: Any) -> dict[str, Any]:
    """A function resource (30 s to run: a busy machine makes boto3 clients slowly)."""
    return {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "Runtime": "python3.12",
            "Handler": f"{__name__}.{handler}",
            "Timeout": 30,
            **properties,
        },
    }


def machine(definition: dict[str, Any], role_id: str) -> dict[str, Any]:
    return {
        "Type": "AWS::StepFunctions::StateMachine",
        "Properties": {
            "DefinitionString": json.dumps(definition),
            "RoleArn": {"Fn::GetAtt": [role_id, "Arn"]},
        },
    }


def invokes_both(event: dict[str, Any], context: Any) -> dict[str, str]:
    """Invoke the functions Allowed and Other (as the receiver invokes the recorder): what
    each invocation came to."""
    client = boto3.client("lambda", region_name=REGION)
    outcomes = {}
    for name in ("Allowed", "Other"):
        try:
            client.invoke(FunctionName=name, Payload=json.dumps({"n": 1}))
            outcomes[name] = "invoked"
        except ClientError as exc:
            outcomes[name] = f"{exc.response['Error']['Code']}: {exc.response['Error']['Message']}"
    return outcomes


REQUESTS_ROW = "ActionAuthenticatorMixin._authenticate_and_authorize_normal_action"


@proves(REQUESTS_ROW)
def test_a_function_calls_aws_with_its_role_and_may_do_what_its_policy_grants() -> None:
    def run(omit: Collection[str] = ()) -> dict[str, str]:
        # GIVEN a function whose role may invoke the function Allowed, by its ARN (as CDK
        # grants it), and nothing else
        with emulated(omit) as lambdas:
            machine_definition = one_task("Caller")
            resources = {
                "Caller": function("invokes_both", Role=function_arn("CallerRole")),
                "Allowed": function(),
                "Other": function(),
                "Machine": machine(machine_definition, "MachineRole"),
                **role("CallerRole", allow("lambda:InvokeFunction", function_arn("Allowed"))),
                **role("MachineRole", allow("lambda:InvokeFunction", function_arn("Caller"))),
            }
            deployed = deployed_template(lambdas, resources)
            # WHEN it runs (in its sandbox thread, with boto3's default credentials)
            described = deployed.wait(deployed.start({}), timeout=30)
            assert described["status"] == "SUCCEEDED", described
            outcomes: dict[str, str] = json.loads(described["output"])
            return outcomes

    # THEN it invoked Allowed, and Lambda refused it Other, as AWS words it
    assert run() == {
        "Allowed": "invoked",
        "Other": "AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/CallerRole"
        "/Caller is not authorized to perform: lambda:InvokeFunction on resource:"
        " arn:aws:lambda:eu-central-1:123456789012:function:Other because no identity-based"
        " policy allows the lambda:InvokeFunction action",
    }
    # (moto authorizes lambda:Invoke on *, which the grant on Allowed's ARN does not allow)
    assert run(omit={REQUESTS_ROW})["Allowed"] != "invoked"


TASK_ROWS = ("StateTaskService._before_eval_execution", "StateTaskLambda._eval_execution")


def lambda_task(resource: str, **task: Any) -> dict[str, Any]:
    """A Task invoking Echo: by its ARN as the Resource, or through lambda:invoke."""
    echo = "arn:aws:lambda:eu-central-1:123456789012:function:Echo"
    if resource == "function":
        call: dict[str, Any] = {"Type": "Task", "Resource": echo}
    else:
        call = {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": echo, "Payload.$": "$"},
            "OutputPath": "$.Payload",
        }
    return {**call, **task}


@proves(*TASK_ROWS)
@pytest.mark.parametrize(
    ("row", "resource"), list(zip(TASK_ROWS, ("lambda:invoke", "function"), strict=True))
)
def test_a_task_its_state_machines_role_may_not_run_fails_as_on_aws(
    row: str, resource: str
) -> None:
    def run(omit: Collection[str] = ()) -> tuple[dict[str, Any], list[str], int]:
        # GIVEN a machine whose role may invoke another function than its task's, and
        # whose task retries that error once and catches it
        calls: list[dict[str, Any]] = []
        with emulated(omit) as lambdas:

            def echo_counted(event: dict[str, Any], context: Any) -> dict[str, int]:
                calls.append(event)
                return {"n": 1}

            lambdas.overrides["Echo"] = echo_counted
            retry = [
                {
                    "ErrorEquals": ["Lambda.AWSLambdaException"],
                    "MaxAttempts": 1,
                    "IntervalSeconds": 1,
                }
            ]
            catch = [{"ErrorEquals": ["States.ALL"], "Next": "Denied"}]
            call = lambda_task(resource, Retry=retry, Catch=catch, End=True)
            definition = {
                "StartAt": "Call",
                "States": {"Call": call, "Denied": {"Type": "Pass", "End": True}},
            }
            resources = {
                "Echo": function(),
                "Other": function(),
                "Machine": machine(definition, "MachineRole"),
                **role("MachineRole", allow("lambda:InvokeFunction", function_arn("Other"))),
            }
            deployed = deployed_template(lambdas, resources)
            # WHEN it runs
            arn = deployed.start({"n": 0})
            described = deployed.wait(arn, timeout=30)
            failures = [
                event["type"] for event in deployed.history(arn) if event["type"].endswith("Failed")
            ]
            return described, failures, len(calls)

    # THEN the task failed, twice (its retry), as Step Functions fails it, before the
    # function ran; and its catcher got AWS's error and cause
    described, failures, calls = run()
    assert described["status"] == "SUCCEEDED", described
    assert calls == 0
    assert len(failures) == 2
    output = json.loads(described["output"])
    assert output["Error"] == "Lambda.AWSLambdaException"
    assert output["Cause"].startswith("User: arn:aws:sts::123456789012:assumed-role/MachineRole/")
    assert (
        " is not authorized to perform: lambda:InvokeFunction on resource:"
        " arn:aws:lambda:eu-central-1:123456789012:function:Echo because no identity-based"
        " policy allows the lambda:InvokeFunction action (Service: AWSLambda; Status Code: 403;"
        " Error Code: AccessDeniedException; Request ID: "
    ) in output["Cause"]
    assert output["Cause"].endswith("; Proxy: null)")
    # (moto runs the task whatever the role says)
    described, failures, calls = run(omit={row})
    assert (json.loads(described["output"]), failures, calls) == ({"n": 1}, [], 1)


CHILD = "arn:aws:states:eu-central-1:123456789012:stateMachine:Child"


@proves("StateTaskService._before_eval_execution")
@pytest.mark.parametrize(
    ("resource", "granted", "error", "denied", "tail"),
    [
        (
            "arn:aws:states:::states:startExecution",
            [],
            "StepFunctions.AWSStepFunctionsException",
            f"states:StartExecution on resource: {CHILD}",
            "(Service: AWSStepFunctions; Status Code: 400; Error Code: AccessDeniedException;",
        ),
        (  # a Standard child waited for: it needs more than the start
            "arn:aws:states:::states:startExecution.sync:2",
            [allow("states:StartExecution", CHILD)],
            "StepFunctions.AWSStepFunctionsException",
            "states:DescribeExecution on resource:"
            " arn:aws:states:eu-central-1:123456789012:execution:Child:child-1",
            "(Service: AWSStepFunctions; Status Code: 400; Error Code: AccessDeniedException;",
        ),
        (
            "arn:aws:states:::aws-sdk:sfn:startSyncExecution",
            [allow("states:StartExecution", CHILD)],
            "Sfn.SfnException",
            f"states:StartSyncExecution on resource: {CHILD}",
            "(Service: Sfn, Status Code: 400, Request ID: ",
        ),
    ],
)
def test_a_step_functions_task_needs_what_its_integration_needs_of_the_role(
    resource: str, granted: list[dict[str, Any]], error: str, denied: str, tail: str
) -> None:
    def run(omit: Collection[str] = ()) -> dict[str, Any]:
        # GIVEN a machine whose task starts a child, its role granted ``granted``
        with emulated(omit) as lambdas:
            start = {
                "Type": "Task",
                "Resource": resource,
                "Parameters": {"StateMachineArn": CHILD, "Name": "child-1", "Input": {}},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Denied"}],
                "End": True,
            }
            definition = {
                "StartAt": "Start",
                "States": {"Start": start, "Denied": {"Type": "Pass", "End": True}},
            }
            child = {"StartAt": "Done", "States": {"Done": PASS}}
            resources = {
                "Machine": machine(definition, "MachineRole"),
                **role("MachineRole", allow("logs:CreateLogDelivery", "*"), *granted),
            }
            deployed = deployed_template(lambdas, resources)
            deployed.sfn.create_state_machine(
                name="Child", definition=json.dumps(child), roleArn=ROLE, type="STANDARD"
            )
            # WHEN it runs
            described = deployed.wait(deployed.start({}), timeout=30)
            assert described["status"] == "SUCCEEDED", described
            output: dict[str, Any] = json.loads(described["output"])
            return output

    # THEN the task failed as Step Functions fails it, naming what the role lacks
    output = run()
    assert output["Error"] == error
    assert (
        f" is not authorized to perform: {denied} because no identity-based policy"
        in output["Cause"]
    )
    assert tail in output["Cause"]
    # (moto starts the child, or fails otherwise: it has no StartSyncExecution)
    assert "is not authorized" not in run(omit={"StateTaskService._before_eval_execution"}).get(
        "Cause", ""
    )


def test_every_strict_row_has_its_behavioural_test() -> None:
    assert {row.name for row in moto_adapter.STRICT} == PROVEN
    assert {row.kind for row in moto_adapter.STRICT} <= {"strict", "moto-bug"}
    assert {row.kind for row in moto_adapter.FAST} == {"fast"}


@proves("Environment.set_error")
def test_an_express_execution_timed_out_between_two_states_stays_timed_out() -> None:
    # GIVEN an execution whose cap came while a state was moving on to the next (moto then
    # raises "Could not set NextState value when in state ProgramTimedOut" and sets that
    # error)
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramTimedOut

    def after_the_error(omit: Collection[str] = ()) -> object:
        with emulated(omit=omit):
            execution = object.__new__(Environment)
            execution._program_state = ProgramTimedOut()
            execution._state_mutex = threading.RLock()
            execution._frames = []
            execution.program_state_event = threading.Event()
            execution.event_manager = None
            # WHEN the state's error arrives after the time-out
            execution.set_error(
                ExecutionFailedEventDetails(error="States.Runtime", cause="Could not set NextState")
            )
            return execution.program_state()

    # THEN the execution timed out, as AWS ends it at its cap (stock moto: it failed)
    assert isinstance(after_the_error(), ProgramTimedOut)
    assert not isinstance(after_the_error(omit={"Environment.set_error"}), ProgramTimedOut)
