"""The replacements of the adapter's rows for moto's Step Functions service: Express
executions as AWS serves them, the history quota, exact Waits, the aws-sdk integration,
what AWS refuses; and the clients a state machine's tasks call."""

from __future__ import annotations

import datetime
import functools
import json
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moto.logs.exceptions import ResourceNotFoundException as LogsResourceNotFound
from moto.logs.models import logs_backends
from moto.stepfunctions.exceptions import AWSError, InvalidArn
from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.choice.comparison.comparison_operator_type import (  # noqa: E501
    ComparisonOperatorType,
)
from moto.stepfunctions.parser.asl.component.state.choice.comparison.variable import (
    NoSuchVariable,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
    ResourceCondition,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.event.logging import is_logging_enabled_for
from moto.stepfunctions.parser.asl.eval.program_state import ProgramTimedOut

from devstack.emulation.moto_services.base import Emulation, History
from devstack.emulation.moto_services.express import (
    BEGINNING_SECONDS,
    EXPRESS_CAP_SECONDS,
    ExpressRuns,
)
from devstack.emulation.moto_services.sandboxes import DirectLambdaClient
from devstack.polling import NotInTime, wait_until

# A Standard execution's history holds at most this many events on AWS, which fails an
# execution that would write more.
HISTORY_EVENT_CAP = 25_000
HISTORY_LIMIT_ERROR = "ExecutionHistoryLimitExceeded"
# How often a .sync task looks at its child's status.
SYNC_POLL_SECONDS = 0.1


class StepFunctionsClient:
    """A Step Functions client that takes the parameters as a state machine names them
    (``StateMachineArn``) and passes them on as botocore names them (``stateMachineArn``)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        call = getattr(self._client, operation)

        def renamed(**parameters: Any) -> Any:
            return call(**{key[:1].lower() + key[1:]: value for key, value in parameters.items()})

        return renamed


def clients_once(original: Any, emulation: Emulation) -> Callable[..., Any]:
    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        if service == "lambda":
            return DirectLambdaClient(region, emulation.lambda_backend)
        return emulation.client(original, region, service, state_credentials)

    return boto_client_for


def sfn_parameters_renamed(original: Any, emulation: Emulation) -> Callable[..., Any]:
    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        return StepFunctionsClient(emulation.client(original, region, service, state_credentials))

    return boto_client_for


def sfn_results_as_aws_gives_them(original: Any, emulation: Emulation) -> Callable[..., None]:
    def _normalise_response(
        self: Any,
        response: Any,
        boto_service_name: str | None = None,
        service_action_name: str | None = None,
    ) -> None:
        """A Step Functions task's result as AWS gives it: ``ExecutionArn``, ``Output``...
        (botocore's ``executionArn``, ``output``), dates in epoch milliseconds."""
        if not isinstance(response, dict):
            return
        for key in list(response):
            value = response.pop(key)
            if isinstance(value, datetime.datetime):
                value = int(value.timestamp() * 1000)
            response[key[:1].upper() + key[1:]] = value

    return _normalise_response


def each_attempt_waits_anew(original: Any, emulation: Emulation) -> Callable[..., Any]:
    def _eval_integration_pattern(
        self: Any,
        env: Any,
        resource_runtime_part: Any,
        normalised_parameters: Any,
        state_credentials: Any,
    ) -> Any:
        if self.resource.condition in (ResourceCondition.Sync, ResourceCondition.Sync2):
            # A fresh endpoint for this attempt: the one the state made on entry was shut
            # by the attempt before (a retry would otherwise time out at once).
            env.callback_pool_manager.add(env.states.context_object.update_task_token())
        return original(self, env, resource_runtime_part, normalised_parameters, state_credentials)

    return _eval_integration_pattern


def express_runs_as_on_aws(original: Any, emulation: Emulation) -> Callable[..., Any]:
    express = emulation.lambdas.express

    def start_execution(
        self: Any,
        state_machine_arn: str,
        name: Any = None,
        execution_input: Any = None,
        trace_header: Any = None,
        *,
        rerun: bool = False,
        synchronous: bool = False,
    ) -> Any:
        is_express = self.describe_state_machine(state_machine_arn).type == "EXPRESS"
        if is_express:
            express.machines.add(state_machine_arn)
        # AWS names an execution started without a name by a UUID; moto names it "None",
        # the same ARN for all of them.
        execution = original(
            self, state_machine_arn, name or str(uuid.uuid4()), execution_input, trace_header
        )
        if not is_express:
            return execution
        express.register(execution)
        timer = threading.Timer(express.cap_seconds, _time_out, args=(execution, express))
        timer.daemon = True
        timer.start()
        if express.count_start(rerun=rerun, at_most_once=synchronous):
            start_execution(
                self, state_machine_arn, None, execution_input, trace_header, rerun=True
            )
        return execution

    return start_execution


def _time_out(execution: Any, express: ExpressRuns) -> None:
    """End an Express execution still running at its cap, as AWS does; one that has not
    begun yet (its definition still parsed, on a busy machine) as soon as it has entered
    its first state (ended before, moto would fail it, or end it without its end event)."""

    def begun() -> Any:
        environment = getattr(execution.exec_worker, "env", None)
        if environment is None or environment.event_history_context.last_published_event_id < 2:
            return None  # (event 1: ExecutionStarted; 2: the first state entered)
        return environment

    try:
        wait_until(
            lambda: begun() is not None or execution.status != "RUNNING",
            timeout=BEGINNING_SECONDS,
            interval=0.01,
            what="the execution's first state",
        )
    except NotInTime:
        return
    environment = begun()
    if environment is not None and environment.is_running():
        express.count_timeout()
        environment.set_timed_out()


class StateMachineTypeNotSupported(AWSError):  # type: ignore[misc]
    """What StartSyncExecution answers for a Standard state machine."""

    TYPE = "StateMachineTypeNotSupported"
    STATUS = 400


# How often a synchronous start looks whether its execution has ended.
SYNC_END_POLL_SECONDS = 0.01


def sync_express_started(original: Any, emulation: Emulation) -> Callable[..., Any]:
    def start_sync_execution(
        self: Any,
        state_machine_arn: str,
        name: Any = None,
        execution_input: Any = None,
        trace_header: Any = None,
    ) -> Any:
        """Start an Express execution (at most once) and wait until it has ended."""
        if self.describe_state_machine(state_machine_arn).type != "EXPRESS":
            raise StateMachineTypeNotSupported(
                "This operation is not supported by this type of state machine"
            )
        execution = self.start_execution(
            state_machine_arn, name, execution_input, trace_header, synchronous=True
        )
        # (it ends by its cap at the latest, once it has begun)
        wait_until(
            lambda: execution.status != "RUNNING",
            timeout=emulation.lambdas.express.cap_seconds + BEGINNING_SECONDS,
            interval=SYNC_END_POLL_SECONDS,
            what="the synchronous Express execution's end",
        )
        return execution

    return start_sync_execution


def sync_express_answered(original: Any, emulation: Emulation) -> Callable[..., Any]:
    from moto.core.responses import ActionResult

    def start_sync_execution(self: Any) -> Any:
        """StartSyncExecution's answer, as the API model gives it: the status (SUCCEEDED,
        FAILED or TIMED_OUT), and the output only when it succeeded."""
        execution = self.stepfunction_backend.start_sync_execution(
            self._get_param("stateMachineArn"),
            self._get_param("name"),
            self._get_param("input", if_none="{}"),
            self._get_param("traceHeader"),
        )
        status = execution.status if execution.status in ("SUCCEEDED", "TIMED_OUT") else "FAILED"
        answer: dict[str, Any] = {
            "executionArn": execution.execution_arn,
            "stateMachineArn": execution.state_machine_arn,
            "name": execution.name,
            "startDate": execution.start_date,
            "stopDate": execution.stop_date,
            "status": status,
            "input": execution.execution_input,
            "billingDetails": {
                "billedMemoryUsedInMB": 64,
                "billedDurationInMilliseconds": max(
                    100,
                    int((execution.stop_date - execution.start_date).total_seconds() * 1000),
                ),
            },
        }
        if status == "SUCCEEDED":
            output = execution.output
            answer["output"] = output if isinstance(output, str) else json.dumps(output)
        if execution.error is not None:
            answer["error"] = execution.error
        if execution.cause is not None:
            answer["cause"] = execution.cause
        return ActionResult(answer)

    return start_sync_execution


# What AWS answers DescribeExecution, GetExecutionHistory and StopExecution for an
# Express execution, and ListExecutions for an Express state machine (recorded against
# AWS: LocalStack's tests/aws/services/stepfunctions/v2/test_sfn_api_express.snapshot.json;
# the API reference: "not supported by EXPRESS state machines").
NOT_FOR_EXPRESS = "Invalid Arn: 'Resource type not valid in this context: express'"
TYPE_NOT_SUPPORTED = "This operation is not supported by this type of state machine"
# An Express execution's ARN: arn:aws:states:REGION:ACCOUNT:express:MACHINE:NAME:RUN-ID.
_EXPRESS_EXECUTION_ARN = re.compile(r"arn:[-a-z]+:states:[-0-9a-z]+:[0-9]{12}:express:")


def express_arns_as_on_aws(original: Any, emulation: Emulation) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        """An Express execution's ARN as AWS gives it: ``express`` where a Standard one
        says ``execution``, and an id of the run after its name."""
        original(self, *args, **kwargs)
        if self.state_machine.type == "EXPRESS":
            arn = self.exec_arn.replace(":execution:", ":express:", 1) + f":{uuid.uuid4()}"
            self.exec_arn = self.execution_arn = arn

    return __init__


def express_executions_not_served(original: Any, emulation: Emulation) -> Callable[..., None]:
    def _validate_execution_arn(self: Any, execution_arn: str) -> None:
        """DescribeExecution, GetExecutionHistory and StopExecution refuse an Express
        execution (InvalidArn), as AWS does: it keeps no record of one to serve."""
        if _EXPRESS_EXECUTION_ARN.match(execution_arn or ""):
            raise InvalidArn(NOT_FOR_EXPRESS)
        original(self, execution_arn)

    return _validate_execution_arn


def express_machines_not_listed(original: Any, emulation: Emulation) -> Callable[..., Any]:
    def list_executions(
        self: Any, state_machine_arn: str, status_filter: str | None = None, **pages: Any
    ) -> Any:
        """ListExecutions refuses an Express state machine (StateMachineTypeNotSupported),
        as AWS does."""
        if self.describe_state_machine(state_machine_arn).type == "EXPRESS":
            raise StateMachineTypeNotSupported(TYPE_NOT_SUPPORTED)
        return original(self, state_machine_arn, status_filter, **pages)

    return list_executions


class ExecutionLog:
    """Where an execution's events go, as Step Functions writes them to the log group of
    its state machine's logging configuration (moto has the pieces, never switched on,
    and writes neither AWS's format nor at all): the events of its level (ALL, ERROR,
    FATAL: ``is_logging_enabled_for``, AWS's table of log levels), one JSON message each
    (id, type, details, previous_event_id, event_timestamp in epoch milliseconds,
    execution_arn, redrive_count; without input and output unless includeExecutionData),
    in a stream of the execution's own. Delivery is best effort, as on AWS: an event that
    cannot be written (no such log group) is dropped."""

    def __init__(
        self,
        execution_arn: str,
        machine_name: str,
        level: str,
        include_execution_data: bool,
        logs: Any,
        log_group: str,
    ) -> None:
        self.execution_arn = execution_arn
        self.level = level
        # (what moto's event manager reads of a logging session's configuration)
        self.configuration = _LogConfiguration(include_execution_data)
        self._logs = logs
        self._log_group = log_group
        now = datetime.datetime.now(datetime.UTC)
        self._stream = f"states/{machine_name}/{now:%Y-%m-%d-%H-%M}/{uuid.uuid4().hex[:8]}"
        self._stream_created = False
        self._lock = threading.Lock()

    @classmethod
    def of(cls, execution: Any) -> ExecutionLog | None:
        """The log of a moto execution, as its state machine's logging configuration says
        (``None``: OFF, or no log group)."""
        configuration = execution.state_machine.loggingConfiguration or {}
        level = configuration.get("level", "OFF")
        destinations = configuration.get("destinations") or []
        if level == "OFF" or len(destinations) != 1:
            return None
        # arn:aws:logs:REGION:ACCOUNT:log-group:NAME[:*]
        group_arn = destinations[0].get("cloudWatchLogsLogGroup", {}).get("logGroupArn", "")
        parts = group_arn.split(":")
        if len(parts) < 7 or parts[5] != "log-group":
            return None
        return cls(
            execution.exec_arn,
            execution.state_machine.name,
            level,
            bool(configuration.get("includeExecutionData", False)),
            logs_backends[parts[4]][parts[3]],
            parts[6],
        )

    def log_level_filter(self, history_event_type: Any) -> bool:
        return bool(
            is_logging_enabled_for(log_level=self.level, history_event_type=history_event_type)
        )

    def publish_history_log(self, history_log: dict[str, Any]) -> None:
        stamp = history_log["event_timestamp"]
        if isinstance(stamp, str):
            stamp = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        millis = int(stamp.timestamp() * 1000)
        message = {
            "id": str(history_log["id"]),
            "type": str(getattr(history_log["type"], "value", history_log["type"])),
            "details": history_log.get("details") or {},
            "previous_event_id": str(history_log["previous_event_id"]),
            "event_timestamp": str(millis),
            "execution_arn": self.execution_arn,
            "redrive_count": "0",
        }
        event = {"timestamp": millis, "message": json.dumps(message, default=str)}
        with self._lock:
            try:
                if not self._stream_created:
                    self._logs.create_log_stream(self._log_group, self._stream)
                    self._stream_created = True
                self._logs.put_log_events(self._log_group, self._stream, [event])
            except LogsResourceNotFound:
                pass  # (best effort, as on AWS)


@dataclass(frozen=True)
class _LogConfiguration:
    include_execution_data: bool


def executions_logged_as_on_aws(original: Any, emulation: Emulation) -> Callable[..., Any]:
    def _get_start_execution_worker(self: Any) -> Any:
        """The execution's events go to its state machine's log group (moto starts every
        execution without a logging session)."""
        if self._cloud_watch_logging_session is None:
            self._cloud_watch_logging_session = ExecutionLog.of(self)
        return original(self)

    return _get_start_execution_worker


def aws_sdk_reaches_the_emulation(original: Any, emulation: Emulation) -> Callable[..., Any]:
    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        return AwsSdkClient(
            emulation.client(_client_without_host_prefix, region, service, state_credentials)
        )

    return boto_client_for


class AwsSdkClient:
    """What an aws-sdk task calls, as Step Functions calls it: the parameters as the state
    machine names them (``StateMachineArn``, passed on as botocore names them), the answer
    as the task sees it (``Status``, ``Output``..., dates as ISO 8601 text)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        call = getattr(self._client, operation)

        def renamed(**parameters: Any) -> Any:
            answer = call(**{key[:1].lower() + key[1:]: value for key, value in parameters.items()})
            answer.pop("ResponseMetadata", None)
            return _pascal_cased(answer)

        return renamed


def _pascal_cased(value: Any) -> Any:
    if isinstance(value, dict):
        return {key[:1].upper() + key[1:]: _pascal_cased(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_pascal_cased(item) for item in value]
    if isinstance(value, datetime.datetime):
        return (
            value.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
    return value


def _client_without_host_prefix(region: str, service: str, state_credentials: Any = None) -> Any:
    """moto's client for a task (``boto_client.boto_client_for``), without the host prefix
    some operations put before the endpoint (StartSyncExecution's ``sync-``): the
    emulation answers at one host."""
    import boto3
    from botocore.config import Config
    from moto.core.models import botocore_stubber
    from moto.settings import moto_server_port

    extra: dict[str, Any] = {}
    if not botocore_stubber.enabled:
        extra["endpoint_url"] = f"http://localhost:{moto_server_port()}"
    return boto3.client(
        service_name=service,
        region_name=region,
        aws_access_key_id="ak",
        aws_secret_access_key="sk",  # noqa: S106 - the emulator's
        config=Config(
            parameter_validation=False,
            retries={"max_attempts": 0, "total_max_attempts": 1},
            connect_timeout=EXPRESS_CAP_SECONDS + 60,
            read_timeout=EXPRESS_CAP_SECONDS + 60,
            inject_host_prefix=False,
        ),
        **extra,
    )


def sdk_call_abandoned_on_stop(original: Any, emulation: Emulation) -> Callable[..., None]:
    def _eval_service_task(
        self: Any,
        env: Any,
        resource_runtime_part: Any,
        normalised_parameters: Any,
        state_credentials: Any,
    ) -> None:
        """The call in a thread of its own, abandoned when the execution is stopped (a
        StartSyncExecution waits for its child): AWS stops a Standard execution at once,
        whatever its task waits for; moto waited for the call to return."""
        outcome: list[Any] = []

        def call() -> None:
            try:
                original(self, env, resource_runtime_part, normalised_parameters, state_credentials)
                outcome.append(None)
            except BaseException as exc:  # (raised again in the execution's thread)
                outcome.append(exc)

        caller = threading.Thread(target=call, name="aws-sdk-call", daemon=True)
        caller.start()
        while caller.is_alive() and env.is_running():
            caller.join(SYNC_END_POLL_SECONDS * 10)
        if not outcome:  # stopped: what the call answers later is dropped
            env.stack.append({})
            return
        if isinstance(outcome[0], BaseException):
            raise outcome[0]

    return _eval_service_task


def missing_choice_variable_fails(original: Any, emulation: Emulation) -> Callable[..., None]:
    def _eval_body(self: Any, env: Any) -> None:
        """A Choice rule whose Variable is missing fails the execution (States.Runtime),
        unless it asks whether it is present."""
        self.variable.eval(env)
        value = env.stack[-1]
        if (
            isinstance(value, NoSuchVariable)
            and self.comparison_function.operator_type != ComparisonOperatorType.IsPresent
        ):
            path = self.variable.string_sampler.literal_value
            raise FailureEventException(
                FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=StatesErrorNameType.StatesRuntime),
                    event_type=HistoryEventType.ExecutionFailed,
                    event_details=EventDetails(
                        executionFailedEventDetails=ExecutionFailedEventDetails(
                            error=StatesErrorNameType.StatesRuntime.to_name(),
                            cause=f"Invalid path '{path}': The choice state's condition path "
                            "references an invalid value.",
                        )
                    ),
                )
            )
        self.comparison_function.eval(env)

    return _eval_body


# Programs parsed in this process, by definition and the rows left out of the emulation
# that parsed them (a row may shape what the parser builds).
_PARSED_PROGRAMS: dict[tuple[str, frozenset[str]], Any] = {}
_PARSED_PROGRAMS_LOCK = threading.Lock()


def definitions_parsed_once(original: Any, emulation: Emulation) -> Callable[[Any], Any]:
    # The parsed program holds no state of an evaluation (that is all in the
    # execution's environment), so executions of one definition share it, in every test.
    def _get_evaluation_entrypoint(self: Any) -> Any:
        key = (self._evaluation_details.state_machine_details.definition, emulation.omitted)
        with _PARSED_PROGRAMS_LOCK:
            if key not in _PARSED_PROGRAMS:
                _PARSED_PROGRAMS[key] = original(self)
            return _PARSED_PROGRAMS[key]

    return _get_evaluation_entrypoint


# Definitions that passed moto's validation, in this process: whether one is valid does
# not depend on the emulation (so the set outlives each one, and every test's deploy
# of the same template finds its definitions here).
_VALID_DEFINITIONS: set[str] = set()


def definitions_validated_once(original: Any, emulation: Emulation) -> staticmethod[..., None]:
    def _validate_definition(definition: str) -> None:
        if definition not in _VALID_DEFINITIONS:
            original(definition=definition)  # raises InvalidDefinition
            _VALID_DEFINITIONS.add(definition)

    return staticmethod(_validate_definition)


def sync_polled_often(original: Any, emulation: Emulation) -> float:
    return min(float(original), SYNC_POLL_SECONDS)


def parsed_once(original: Any, emulation: Emulation) -> Callable[..., Any]:
    return functools.lru_cache(maxsize=1024)(original)


def history_registered(original: Any, emulation: Emulation) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        machine = kwargs.get("context", args[2] if len(args) > 2 else {}) or {}
        if machine.get("StateMachine", {}).get("Id") in emulation.lambdas.express.machines:
            return  # AWS keeps no history of an Express execution, and sets it no quota
        # (a frame is built the same way, then shares its execution's event manager:
        # its own entry goes with the event manager it drops)
        emulation.histories[self.event_manager] = History(weakref.ref(self))

    return __init__


def history_capped(original: Any, emulation: Emulation) -> Callable[..., int]:
    cap = emulation.history_cap
    quota = {
        "error": HISTORY_LIMIT_ERROR,
        "cause": f"The execution history reached {cap} events, its quota.",
    }

    def add_event(self: Any, *args: Any, **kwargs: Any) -> int:
        history = emulation.histories.get(self)
        if history is None:  # an execution that began before this context
            added: int = original(self, *args, **kwargs)
            return added
        # Checking the quota and adding the event are one step: branches add events from
        # several threads at once.
        with history.lock:
            event_type = kwargs.get("event_type", args[1] if len(args) > 1 else None)
            if history.capped is not None and "ExecutionFailed" not in str(event_type):
                # On AWS nothing is written past the quota: what branches still in flight
                # do now is not recorded (moto's interpreter would go on until it notices).
                return history.capped
            event_id: int = original(self, *args, **kwargs)
            execution = history.execution()
            if event_id > cap and execution is not None and execution.is_running():
                history.capped = event_id
                # (moto refuses error names in the States. namespace from here)
                execution.set_error(error=dict(quota))
            return event_id

    return add_event


def history_quota_stays_the_reason(original: Any, emulation: Emulation) -> Callable[..., None]:
    def set_error(self: Any, error: Any) -> None:
        if isinstance(getattr(self, "_program_state", None), ProgramTimedOut):
            # (a state in flight when the Express cap came: moto's "Could not set NextState
            # value when in state ProgramTimedOut" would make it FAILED, States.Runtime)
            return
        history = emulation.histories.get(self.event_manager)
        if (
            history is not None
            and history.capped is not None
            and history.execution() is self
            and error.get("error") != HISTORY_LIMIT_ERROR
        ):
            return  # what a task or branch in flight raises after the quota is not the reason
        original(self, error=error)

    return set_error


def wait_seconds_exact(original: Any, emulation: Emulation) -> Callable[..., float]:
    def _get_wait_seconds(self: Any, env: Any) -> float:
        """Seconds from now until the state's timestamp (UTC, whatever the local zone)."""
        self.string.eval(env=env)
        text = env.stack.pop()
        at = self._from_timestamp_string(timestamp=text)
        if at is None:
            raise FailureEventException(self._create_failure_event(env, text))
        seconds: float = at.replace(tzinfo=datetime.UTC).timestamp() - time.time()
        return seconds

    return _get_wait_seconds


def wait_fractions(original: Any, emulation: Emulation) -> Callable[..., None]:
    def _wait_interval(self: Any, env: Any, wait_seconds: float) -> None:
        """Wait ``wait_seconds`` (fractions too), or until the execution stops."""
        deadline = time.monotonic() + wait_seconds
        while env.is_running():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            env.program_state_event.wait(remaining)

    return _wait_interval
