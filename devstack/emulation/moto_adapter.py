"""How moto (pinned: ``MOTO_VERSION``) is adapted to run Escalator in-process: the one table
of the attributes replaced, and the one place that applies it. The replacements
themselves are in ``devstack.emulation.moto_services``, a module per service of moto's
(``awslambda``, ``stepfunctions``, ``sqs``, ``authorization``, ``server``).

moto executes Lambda code only in Docker, which this project does not need; its Step
Functions interpreter lets an execution do what AWS refuses, and pays for work AWS does
elsewhere. While ``lambdas_in_process()`` is open, the attributes of moto listed in
``STRICT`` and ``FAST`` are replaced (``unittest.mock.patch.object``, one per row, in an
``ExitStack``) and restored afterwards; contexts nest. Each row says what it replaces,
why, and of which kind:

- ``strict``: AWS behaves so and moto does not; the emulation would pass what fails on
  AWS. Each has a behavioural test that fails when its row is left out
  (``tests/unit/test_moto_strictness.py``, with ``lambdas_in_process(omit=...)``), so a
  moto that changes its behaviour is noticed too.
- ``moto-bug``: moto gets AWS's own contract wrong; kept with the strict rows.
- ``fast``: the same behaviour, only faster (``bench/fanout.py`` measures them).

``check_moto()`` says what no longer matches when moto changes (its version, and the
parameters of every attribute replaced or called); patching refuses then, and a test
runs it, so an upgrade fails loudly instead of silently testing less.

The rows, as ``PATCHES`` lists them:
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Collection, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

import moto
from moto import backends
from moto.awslambda import models as lambda_models
from moto.core.authorization import ActionAuthenticatorMixin
from moto.iam.access_control import IAMRequestBase
from moto.logs.models import LogsBackend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.sqs import models as sqs_models
from moto.stepfunctions.models import StepFunctionBackend
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.component.state.choice.comparison import comparison_variable
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk,
    state_task_service_callback,
    state_task_service_sfn,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (  # noqa: E501
    StateTaskService,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import (
    StateTaskLambda,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function import (
    timestamp as wait_timestamp,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function import (
    wait_function,
)
from moto.stepfunctions.parser.asl.eval import environment
from moto.stepfunctions.parser.asl.eval.event import event_manager
from moto.stepfunctions.parser.asl.eval.event import logging as event_logging
from moto.stepfunctions.parser.asl.utils import boto_client, json_path
from moto.stepfunctions.parser.backend.execution import Execution
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
from moto.stepfunctions.parser.models import StepFunctionsParserBackend
from moto.stepfunctions.responses import StepFunctionResponse

from devstack.emulation import function_logs
from devstack.emulation.moto_services.authorization import (
    functions_invoked_as_their_role_allows,
    requests_authorized_as_on_aws,
    tasks_checked_against_their_role,
)
from devstack.emulation.moto_services.awslambda import invoke_in_process
from devstack.emulation.moto_services.base import Called, Emulation, Patch
from devstack.emulation.moto_services.express import ExpressRuns
from devstack.emulation.moto_services.sandboxes import InProcessLambdas
from devstack.emulation.moto_services.server import (
    hosts_routed_once,
    millis_read_directly,
    modules_listed_once,
    seconds_read_directly,
)
from devstack.emulation.moto_services.sqs import (
    COUNTS,
    counts_when_asked,
    queue_settings_only,
    sqs_batches_measured_in_bytes,
    sqs_ids_checked,
)
from devstack.emulation.moto_services.stepfunctions import (
    HISTORY_EVENT_CAP,
    HISTORY_LIMIT_ERROR,
    NOT_FOR_EXPRESS,
    TYPE_NOT_SUPPORTED,
    aws_sdk_reaches_the_emulation,
    clients_once,
    definitions_parsed_once,
    definitions_validated_once,
    each_attempt_waits_anew,
    executions_logged_as_on_aws,
    express_arns_as_on_aws,
    express_executions_not_served,
    express_machines_not_listed,
    express_runs_as_on_aws,
    history_capped,
    history_quota_stays_the_reason,
    history_registered,
    missing_choice_variable_fails,
    parsed_once,
    sdk_call_abandoned_on_stop,
    sfn_parameters_renamed,
    sfn_results_as_aws_gives_them,
    sync_express_answered,
    sync_express_started,
    sync_polled_often,
    wait_fractions,
    wait_seconds_exact,
)
from escalator.logs import logger

# The version this module was written against (requirements-dev.txt pins it).
MOTO_VERSION = "5.2.5"


# ---- the table ----------------------------------------------------------------------

_INVOKE = ("self", "body", "request_headers", "response_headers")
_CLIENT_FOR = ("region", "service", "state_credentials")

STRICT: tuple[Patch, ...] = (
    Patch(
        lambda_models.LambdaFunction,
        "invoke",
        invoke_in_process,
        "moto runs Lambda code only in Docker: the function's Handler runs in this process "
        "(InProcessLambdas; overrides inject faults), in as many sandboxes as its reserved "
        "concurrency; beyond them an invocation is throttled (TooManyRequestsException, "
        "Step Functions: Lambda.TooManyRequestsException); one past the function's timeout "
        "is answered Sandbox.Timedout; LambdaFaults throttles invocations or loses answers "
        "(Lambda.ServiceException) as AWS now and then does; a handler's exception is a "
        "function error named after its class",
        "strict",
        _INVOKE,
    ),
    Patch(
        environment.Environment,
        "__init__",
        history_registered,
        "the history quota (with EventManager.add_event): each Standard execution's event "
        "manager is known with its execution, so the event past the quota can fail it "
        "(an Express execution has no history on AWS, and no quota)",
        "strict",
        (
            "self",
            "aws_execution_details",
            "execution_type",
            "context",
            "event_history_context",
            "cloud_watch_logging_session",
            "activity_store",
            "variable_store",
            "mock_test_case",
        ),
    ),
    Patch(
        event_manager.EventManager,
        "add_event",
        history_capped,
        f"AWS fails a Standard execution whose history passes {HISTORY_EVENT_CAP:,} events "
        f"({HISTORY_LIMIT_ERROR}) and writes nothing more but its end; moto lets it grow "
        "without end (lambdas_in_process(history_cap) scales the quota down for tests)",
        "strict",
        ("self", "context", "event_type", "event_details", "timestamp", "update_source_event_id"),
    ),
    Patch(
        environment.Environment,
        "set_error",
        history_quota_stays_the_reason,
        "the history quota stays the execution's failure reason: the error that a task or "
        "branch in flight raises after it does not replace it; nor does it replace an "
        "Express execution's time-out at its cap (moto ended it FAILED, States.Runtime, "
        "when the cap came between two states)",
        "strict",
        ("self", "error"),
    ),
    Patch(
        wait_timestamp.Timestamp,
        "_get_wait_seconds",
        wait_seconds_exact,
        "a Wait until a timestamp ends at the timestamp, never before: moto truncates the "
        "seconds to wait (ending up to a second early) and compares the UTC timestamp "
        "with the local time (a moto bug outside UTC)",
        "strict",
        ("self", "env"),
    ),
    Patch(
        wait_function.WaitFunction,
        "_wait_interval",
        wait_fractions,
        "waits fractions of a second (moto's waits whole seconds, and loops forever on a "
        "fraction), until the execution stops",
        "strict",
        ("self", "env", "wait_seconds"),
    ),
    Patch(
        state_task_service_sfn,
        "boto_client_for",
        sfn_parameters_renamed,
        "moto bug: the states:startExecution task hands botocore its parameters as the "
        "state machine names them (StateMachineArn, Input, Name), which botocore refuses: "
        "its client passes them on renamed (stateMachineArn...), and is built once",
        "moto-bug",
        _CLIENT_FOR,
    ),
    Patch(
        state_task_service_sfn.StateTaskServiceSfn,
        "_normalise_response",
        sfn_results_as_aws_gives_them,
        "moto bug: a Step Functions task's result keeps botocore's names (executionArn) "
        "and dates, where AWS gives ExecutionArn, Output and epoch milliseconds; moto's "
        "own states:startExecution.sync:2 then fails (it reads ExecutionArn) and a date "
        "cannot be written to the execution's JSON",
        "moto-bug",
        ("self", "response", "boto_service_name", "service_action_name"),
    ),
    Patch(
        state_task_service_callback.StateTaskServiceCallback,
        "_eval_integration_pattern",
        each_attempt_waits_anew,
        "moto bug: a retried .sync task (the tick retrying its delivery window) reuses the "
        "callback endpoint its first attempt shut down, and times out at once "
        "(States.Timeout) instead of starting the child again",
        "moto-bug",
        ("self", "env", "resource_runtime_part", "normalised_parameters", "state_credentials"),
    ),
    Patch(
        StepFunctionsParserBackend,
        "start_execution",
        express_runs_as_on_aws,
        "moto runs every state machine as Standard: an Express execution is failed "
        "(TIMED_OUT) at five minutes (ExpressRuns.cap_seconds, scaled down in tests) and "
        "is, with ExpressRuns.rerun_probability, started twice (AWS runs it at least "
        "once); and an execution started without a name gets a UUID, as on AWS (moto "
        "names it None: every such execution had the same ARN)",
        "strict",
        ("self", "state_machine_arn", "name", "execution_input", "trace_header"),
    ),
    Patch(
        StepFunctionsParserBackend,
        "start_sync_execution",
        sync_express_started,
        "StartSyncExecution, which moto lacks: an Express execution started at most once "
        "(AWS: a synchronous Express execution is never run again) and waited for; a "
        "Standard state machine is refused (StateMachineTypeNotSupported)",
        "strict",
        (),
        adds=True,
    ),
    Patch(
        StepFunctionResponse,
        "start_sync_execution",
        sync_express_answered,
        "and its answer as the API model gives it: status SUCCEEDED, FAILED or TIMED_OUT "
        "(a failed execution is a 200 answer, not an error), output only on success",
        "strict",
        (),
        adds=True,
    ),
    Patch(
        state_task_service_aws_sdk,
        "boto_client_for",
        aws_sdk_reaches_the_emulation,
        "an aws-sdk task's client reaches the emulation: botocore puts StartSyncExecution's "
        "host prefix (sync-) before the endpoint, a host that neither mock_aws nor the moto "
        "server answers; clients are built once",
        "strict",
        _CLIENT_FOR,
    ),
    Patch(
        state_task_service_aws_sdk.StateTaskServiceAwsSdk,
        "_eval_service_task",
        sdk_call_abandoned_on_stop,
        "a Standard execution stopped while an aws-sdk task waits (the tick waiting for its "
        "window: StartSyncExecution) stops at once, as on AWS; moto waited for the call",
        "strict",
        ("self", "env", "resource_runtime_part", "normalised_parameters", "state_credentials"),
    ),
    Patch(
        Execution,
        "__init__",
        express_arns_as_on_aws,
        "an Express execution's ARN is AWS's: arn:aws:states:REGION:ACCOUNT:express:MACHINE:"
        "NAME:RUN-ID (moto gave it a Standard one's, ...:execution:MACHINE:NAME)",
        "strict",
        (
            "self",
            "name",
            "sm_type",
            "role_arn",
            "exec_arn",
            "account_id",
            "region_name",
            "state_machine",
            "start_date",
            "cloud_watch_logging_session",
            "activity_store",
            "input_data",
            "trace_header",
        ),
    ),
    Patch(
        StepFunctionBackend,
        "_validate_execution_arn",
        express_executions_not_served,
        "DescribeExecution, GetExecutionHistory and StopExecution refuse an Express "
        f"execution as AWS does (InvalidArn, {NOT_FOR_EXPRESS!r}): AWS keeps no record of "
        "one (its log group has its events); so does a .sync task, which follows its "
        "child with DescribeExecution (StepFunctions.InvalidArnException); moto served "
        "them all",
        "strict",
        ("self", "execution_arn"),
    ),
    Patch(
        StepFunctionBackend,
        "list_executions",
        express_machines_not_listed,
        "ListExecutions refuses an Express state machine as AWS does "
        f"(StateMachineTypeNotSupported, {TYPE_NOT_SUPPORTED!r}); moto listed its executions",
        "strict",
        ("self", "state_machine_arn", "status_filter"),
    ),
    Patch(
        Execution,
        "_get_start_execution_worker",
        executions_logged_as_on_aws,
        "an execution writes its events to its state machine's log group, at the "
        "configuration's level, in AWS's format (ExecutionLog); moto started every "
        "execution without logging, so an Express execution left no trace at all",
        "strict",
        ("self",),
    ),
    Patch(
        comparison_variable.ComparisonVariable,
        "_eval_body",
        missing_choice_variable_fails,
        "a Choice rule on a missing field fails the execution with States.Runtime on AWS "
        "(only IsPresent may ask about a field that is not there); moto took the rule as "
        "false and went on to the Default",
        "strict",
        ("self", "env"),
    ),
    Patch(
        sqs_models.SQSBackend,
        "_validate_message",
        sqs_ids_checked,
        "SQS refuses a MessageGroupId or MessageDeduplicationId that is not 1 to 128 "
        "characters of printable ASCII without the space (InvalidParameterValue, with its "
        "message), a body longer than the queue's MaximumMessageSize in bytes of UTF-8 "
        "(InvalidParameterValue) and a body with a character outside its set "
        "(InvalidMessageContents); moto took any id and body characters, and counted "
        "characters, not bytes, so a request that fails on AWS went out locally "
        "(SendMessage; a SendMessageBatch with such an entry is refused whole here)",
        "strict",
        (
            "self",
            "queue",
            "message_body",
            "delay_seconds",
            "deduplication_id",
            "group_id",
            "validate_group_id",
        ),
    ),
    Patch(
        sqs_models.SQSBackend,
        "send_message_batch",
        sqs_batches_measured_in_bytes,
        "and a SendMessageBatch whose bodies together are longer than SQS's limit in bytes "
        "of UTF-8 (BatchRequestTooLong); moto counted their characters",
        "strict",
        ("self", "queue_name", "entries"),
    ),
    Patch(
        ActionAuthenticatorMixin,
        "_authenticate_and_authorize_normal_action",
        requests_authorized_as_on_aws,
        "moto authorizes a request as its operation (lambda:Invoke, sqs:DeleteMessageBatch) "
        "on the resource * (SQS's queue excepted), so a policy that grants "
        "lambda:InvokeFunction on a function allows nothing, and answers a denial in XML: "
        "each request is authorized as AWS does (devstack.emulation.iam.authorize: its IAM "
        "action on its function's, state machine's, execution's, secret's or queue's ARN) and "
        "refused with the service's own AccessDeniedException",
        "strict",
        ("self", "resource"),
    ),
    Patch(
        StateTaskService,
        "_before_eval_execution",
        tasks_checked_against_their_role,
        "moto runs a task whatever its state machine's role allows: each is checked first "
        "against devstack.emulation.iam.INTEGRATIONS (what its integration needs of the role, from "
        "AWS's pages), and a denied one fails with the error and cause AWS gives it "
        "(Lambda.AWSLambdaException, StepFunctions.AWSStepFunctionsException, "
        "Sfn.SfnException), so Retry and Catch run as on AWS",
        "strict",
        ("self", "env", "resource_runtime_part", "raw_parameters", "state_credentials"),
    ),
    Patch(
        StateTaskLambda,
        "_eval_execution",
        functions_invoked_as_their_role_allows,
        "the same for a task whose Resource is a function's ARN (the delivery machines' "
        "tasks): Lambda.AWSLambdaException when the role may not invoke it",
        "strict",
        ("self", "env"),
    ),
)

FAST: tuple[Patch, ...] = (
    Patch(
        lambda_eval_utils,
        "boto_client_for",
        clients_once,
        "moto built a boto3 client for every Lambda task and sent each invocation through "
        "botocore and its HTTP emulation: Lambda tasks go straight to moto's Lambda backend "
        "(DirectLambdaClient), and clients of other services are built once",
        "fast",
        _CLIENT_FOR,
    ),
    Patch(
        ExecutionWorker,
        "_get_evaluation_entrypoint",
        definitions_parsed_once,
        "moto parsed a state machine's definition (ANTLR, 0.16 s for the delivery "
        "window) for every execution: parsed once per definition in a process, the "
        "program shared",
        "fast",
        ("self",),
    ),
    Patch(
        StepFunctionsParserBackend,
        "_validate_definition",
        definitions_validated_once,
        "and parsed it again to validate it whenever a state machine was created (each "
        "test's deploy): a definition that passed is not parsed again",
        "fast",
        ("definition",),
    ),
    Patch(
        state_task_service_callback,
        "_DELAY_SECONDS_SYNC_CONDITION_CHECK",
        sync_polled_often,
        "a .sync task looked at its child's status every 0.5 s, so each tick ended up to "
        "half a second after its window: every 100 ms (AWS learns of the child's end "
        "from an event, at once; more often costs the emulator's CPU more than it saves)",
        "fast",
        (),
    ),
    Patch(
        json_path,
        "parse",
        parsed_once,
        "moto built a JSONPath parser (a ply LR parser) for every path it evaluated: "
        "parsed paths are cached",
        "fast",
        ("path", "debug"),
    ),
    Patch(
        result_path,
        "parse",
        parsed_once,
        "the same for ResultPath expressions",
        "fast",
        ("string",),
    ),
    Patch(
        backends,
        "list_of_moto_modules",
        modules_listed_once,
        "the moto server listed moto's package directory for each request: listed once",
        "fast",
        (),
    ),
    Patch(
        DomainDispatcherApplication,
        "get_backend_for_host",
        hosts_routed_once,
        "the moto server tried every service's URL pattern for each request, under one "
        "lock: each host's service is remembered",
        "fast",
        ("self", "host"),
    ),
    Patch(
        sqs_models,
        "unix_time",
        seconds_read_directly,
        "SQS read the clock through datetime, several times per message per request: "
        "now is time.time()",
        "fast",
        ("dt",),
    ),
    Patch(
        sqs_models,
        "unix_time_millis",
        millis_read_directly,
        "the same, in milliseconds",
        "fast",
        ("dt",),
    ),
    Patch(
        sqs_models.Queue,
        "attributes",
        queue_settings_only,
        "SQS counted every message of the queue three times for each message sent or "
        "received (the Approximate... counts, computed with every attribute though only "
        "the queue's settings were read): a queue's attributes are its settings",
        "fast",
        ("self",),
    ),
    Patch(
        sqs_models.SQSBackend,
        "get_queue_attributes",
        counts_when_asked,
        "and the counts are computed when a client asks for them (GetQueueAttributes with "
        "All or their names)",
        "fast",
        ("self", "queue_name", "attribute_names"),
    ),
)

PATCHES: tuple[Patch, ...] = STRICT + FAST

# What the replacements call of moto, unchanged.
CALLED: tuple[Called, ...] = (
    Called(
        lambda_models.LambdaBackend,
        "invoke",
        ("self", "function_name", "qualifier", "body", "headers", "response_headers"),
    ),
    Called(boto_client, "boto_client_for", _CLIENT_FOR),
    Called(environment.Environment, "is_running", ("self",)),
    Called(wait_timestamp.Timestamp, "_from_timestamp_string", ("timestamp",)),
    Called(wait_timestamp.Timestamp, "_create_failure_event", ("self", "env", "timestamp_str")),
    Called(sqs_models.SQSBackend, "get_queue", ("self", "queue_name")),
    Called(
        ActionAuthenticatorMixin,
        "_authenticate_and_authorize_action",
        ("self", "iam_request_cls", "resource"),
    ),
    Called(
        IAMRequestBase,
        "__init__",
        ("self", "account_id", "method", "path", "data", "body", "headers", "action"),
    ),
    Called(event_logging, "is_logging_enabled_for", ("log_level", "history_event_type")),
    Called(
        event_manager.EventManager,
        "_publish_history_log",
        ("self", "event_id", "source_event_id", "event_type", "timestamp", "event_details"),
    ),
    Called(LogsBackend, "create_log_stream", ("self", "log_group_name", "log_stream_name")),
    Called(
        LogsBackend, "put_log_events", ("self", "log_group_name", "log_stream_name", "log_events")
    ),
    Called(Execution, "stop", ("self", "stop_date", "error", "cause")),
    *(Called(sqs_models.Queue, counted, ("self",)) for counted in COUNTS.values()),
)

_CHECKED: tuple[Patch | Called, ...] = (*PATCHES, *CALLED)
# moto's own, as imported (this module is the only one that replaces them).
_ORIGINALS: dict[tuple[Any, str], Any] = {
    (row.owner, row.attribute): getattr(row.owner, row.attribute, None) for row in _CHECKED
}


def check_moto() -> list[str]:
    """What no longer matches this module in the installed moto (empty when all does)."""
    problems = []
    if moto.__version__ != MOTO_VERSION:
        problems.append(f"moto is {moto.__version__}, this adapter was written for {MOTO_VERSION}")
    for row in _CHECKED:
        target = _ORIGINALS[(row.owner, row.attribute)]
        if isinstance(row, Patch) and row.adds:
            if target is not None:
                problems.append(f"moto now has {row.name}: the row that adds it may go")
            continue
        if isinstance(target, property):
            target = target.fget
        if target is None:
            problems.append(f"{row.name} is gone")
            continue
        if not callable(target):  # a setting of moto's: a number, its parameters ()
            if not isinstance(target, int | float) or row.parameters:
                problems.append(f"{row.name} is {target!r}, no longer a number")
            continue
        found = tuple(inspect.signature(target).parameters)
        if found != row.parameters:
            problems.append(f"{row.name} now takes {found}, not {row.parameters}")
    return problems


@contextmanager
def lambdas_in_process(
    history_cap: int = HISTORY_EVENT_CAP,
    *,
    omit: Collection[str] = (),
    express: ExpressRuns | None = None,
    enforce_iam: bool = True,
) -> Iterator[InProcessLambdas]:
    """Apply the rows of ``PATCHES`` while the context is open; yield its handlers.

    ``history_cap`` scales the history quota down for tests that prove it at small size;
    ``express`` says how Express executions run (their cap, reruns); ``omit`` names rows
    (``Patch.name``) left out, to show what moto does without them; ``enforce_iam``
    (devstack.emulation.iam): whether every call and task is checked against its role, as on AWS,
    or nothing is, as in moto. While it is open, what the functions log also goes to their
    log groups, as on Lambda (devstack.emulation.function_logs).
    """
    problems = check_moto()
    if problems:
        raise RuntimeError(
            "devstack.emulation.moto_adapter does not fit this moto: " + "; ".join(problems)
        )
    unknown = set(omit) - {row.name for row in PATCHES}
    if unknown:
        raise ValueError(f"no such patch: {', '.join(sorted(unknown))}")
    emulation = Emulation(history_cap, express, enforce_iam=enforce_iam, omitted=frozenset(omit))
    with ExitStack() as patches:
        patches.callback(emulation.lambdas.shutdown)
        patches.enter_context(emulation.permissions.enforced())
        # What the functions log, to their log groups too (devstack.emulation.function_logs).
        patches.enter_context(
            function_logs.records_of(logging.getLogger(logger.service), logger.registered_formatter)
        )
        for row in PATCHES:
            if row.name in omit:
                continue
            # What is there now: moto's own, or an enclosing context's replacement.
            original = getattr(row.owner, row.attribute, None)
            replacement = row.replacement_factory(original, emulation)
            patches.enter_context(
                mock.patch.object(row.owner, row.attribute, replacement, create=row.adds)
            )
        yield emulation.lambdas


def _describe(rows: Iterable[Patch]) -> str:
    return "\n".join(f"- ``{row.name}`` ({row.kind}): {row.why}." for row in rows)


__doc__ = f"{__doc__ or ''}\nStrict:\n\n{_describe(STRICT)}\n\nFast:\n\n{_describe(FAST)}\n"
