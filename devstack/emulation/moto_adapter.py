"""The one module that adapts moto (pinned: ``MOTO_VERSION``) to run Escalator in-process.

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

import contextlib
import datetime
import functools
import importlib
import inspect
import io
import json
import random
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from unittest import mock

import moto
from botocore.credentials import ReadOnlyCredentials
from moto import backends
from moto.awslambda import models as lambda_models
from moto.awslambda.exceptions import LambdaClientError
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.iam.access_control import IAMRequestBase
from moto.logs.exceptions import ResourceNotFoundException as LogsResourceNotFound
from moto.logs.models import LogsBackend, logs_backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.sqs import models as sqs_models
from moto.sqs.exceptions import BatchRequestTooLong, InvalidParameterValue, SQSException
from moto.stepfunctions.exceptions import AWSError, InvalidArn
from moto.stepfunctions.models import StepFunctionBackend
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
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.component.state.choice.comparison import comparison_variable
from moto.stepfunctions.parser.asl.component.state.choice.comparison.comparison_operator_type import (  # noqa: E501
    ComparisonOperatorType,
)
from moto.stepfunctions.parser.asl.component.state.choice.comparison.variable import (
    NoSuchVariable,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk,
    state_task_service_callback,
    state_task_service_sfn,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
    ResourceCondition,
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
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.event.logging import is_logging_enabled_for
from moto.stepfunctions.parser.asl.eval.program_state import ProgramTimedOut
from moto.stepfunctions.parser.asl.utils import boto_client, json_path
from moto.stepfunctions.parser.backend.execution import Execution
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
from moto.stepfunctions.parser.models import StepFunctionsParserBackend
from moto.stepfunctions.responses import StepFunctionResponse

from devstack.emulation import iam, thread_metrics
from devstack.emulation.context import DEFAULT_TIMEOUT_SECONDS, LocalContext
from devstack.polling import NotInTime, wait_until
from escalator.sqs_ids import refusal

# The version this module was written against (requirements-dev.txt pins it).
MOTO_VERSION = "5.2.5"
# A Standard execution's history holds at most this many events on AWS, which fails an
# execution that would write more.
HISTORY_EVENT_CAP = 25_000
HISTORY_LIMIT_ERROR = "ExecutionHistoryLimitExceeded"
# How often a .sync task looks at its child's status.
SYNC_POLL_SECONDS = 0.1
# An Express execution runs at most five minutes on AWS.
EXPRESS_CAP_SECONDS = 300.0
# Lambda refuses a response larger than this (moto's Lambda API checks it too).
MAX_RESPONSE_BYTES = 6 * 1024 * 1024

Handler = Callable[[dict[str, Any], Any], Any]
# How Step Functions names a throttled Lambda invocation, and one whose answer was lost.
THROTTLED = "Lambda.TooManyRequestsException"
SERVICE_EXCEPTION = "Lambda.ServiceException"


class TooManyRequests(LambdaClientError):  # type: ignore[misc]
    """Every sandbox of the function's reserved concurrency is busy (HTTP 429)."""

    code = 429

    def __init__(self, function_name: str) -> None:
        super().__init__(
            "TooManyRequestsException",
            f"Rate Exceeded: all of the reserved concurrency of {function_name} is in use",
        )


class LostAnswer(LambdaClientError):  # type: ignore[misc]
    """The function ran, and its answer never reached the caller (HTTP 500)."""

    code = 500

    def __init__(self, function_name: str) -> None:
        super().__init__(
            "ServiceException",
            f"Lambda encountered an internal error after running {function_name} (injected)",
        )


# The kinds of fault ``LambdaFaults`` injects.
FAULT_THROTTLED = "throttled"
FAULT_LOST_ANSWER = "lost-answer"


class LambdaFaults:
    """Faults injected into the emulated Lambda service, each with ``probability``:
    before a function runs, the invocation is throttled (``TooManyRequestsException``, as
    when every sandbox is busy; nothing ran); after it ran, its answer is lost
    (``ServiceException``: the caller sees an error, the function's work stands).

    ``functions`` limits them to those function names (``None``: every function), and
    ``kinds`` to those kinds. ``seed`` makes the draws repeatable. ``counts`` holds what
    was injected, by function and kind.
    """

    def __init__(
        self,
        probability: float = 0.0,
        *,
        functions: Iterable[str] | None = None,
        kinds: Iterable[str] = (FAULT_THROTTLED, FAULT_LOST_ANSWER),
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"a fault probability is between 0 and 1, not {probability}")
        self.probability = probability
        self.functions = None if functions is None else frozenset(functions)
        self.kinds = frozenset(kinds)
        self.seed = seed
        self.counts: dict[str, dict[str, int]] = {}
        self._random = random.Random(seed)  # noqa: S311 - faults, not secrets
        self._lock = threading.Lock()

    def strikes(self, function_name: str, kind: str) -> bool:
        """Whether this invocation of ``function_name`` suffers a fault of ``kind`` (counted)."""
        if (
            self.probability <= 0.0
            or kind not in self.kinds
            or (self.functions is not None and function_name not in self.functions)
        ):
            return False
        with self._lock:
            if self._random.random() >= self.probability:
                return False
            by_kind = self.counts.setdefault(function_name, {})
            by_kind[kind] = by_kind.get(kind, 0) + 1
            return True

    def total(self, kind: str | None = None) -> int:
        """How many faults were injected (of ``kind``, or of every kind)."""
        with self._lock:
            return sum(
                count
                for by_kind in self.counts.values()
                for name, count in by_kind.items()
                if kind is None or name == kind
            )

    def summary(self) -> str:
        """One line: the injected faults by function and kind."""
        with self._lock:
            parts = [
                f"{function} {kind} {count}"
                for function, by_kind in sorted(self.counts.items())
                for kind, count in sorted(by_kind.items())
            ]
        return ", ".join(parts) or "none"


class ExpressRuns:
    """How the emulation runs Express executions, as AWS does and moto does not: each is
    failed (``TIMED_OUT``) once it has run ``cap_seconds`` (AWS: five minutes; tests scale
    it down), and, with ``rerun_probability``, started a second time with the same input
    (AWS runs an Express execution at least once). ``seed`` makes the draws repeatable;
    ``started``, ``reruns`` and ``timed_out`` count what happened."""

    def __init__(
        self,
        cap_seconds: float = EXPRESS_CAP_SECONDS,
        *,
        rerun_probability: float = 0.0,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= rerun_probability <= 1.0:
            raise ValueError(f"a rerun probability is between 0 and 1, not {rerun_probability}")
        self.cap_seconds = cap_seconds
        self.rerun_probability = rerun_probability
        self.started = 0
        self.reruns = 0
        self.timed_out = 0
        # The Express state machines' ARNs (AWS keeps no history of their executions,
        # so the history quota does not apply to them).
        self.machines: set[str] = set()
        self._runs: list[Any] = []
        self._crashed: set[str] = set()
        self._random = random.Random(seed)  # noqa: S311 - faults, not secrets
        self._lock = threading.Lock()

    def count_start(self, *, rerun: bool = False, at_most_once: bool = False) -> bool:
        """Count a start (or its rerun); whether it is to run a second time (never for a
        synchronous start: AWS runs it at most once)."""
        with self._lock:
            self.started += 1
            if rerun:
                self.reruns += 1
                return False
            if at_most_once:
                return False
            return self._random.random() < self.rerun_probability

    def count_timeout(self) -> None:
        with self._lock:
            self.timed_out += 1

    # What follows is the harness's bookkeeping of the Express executions it started
    # (AWS lists and describes none of them): when they end, and, for a crash, stopping
    # them. What they did is in their log group, or in the tick's output.

    def register(self, execution: Any) -> None:
        """Keep an Express execution just started (moto's, with its status); one started
        by a crashed execution (``stop_running(started_by=...)``) dies as it starts."""
        with self._lock:
            self._runs.append(execution)
            given = str(execution.execution_input)
            dead = any(owner in given for owner in self._crashed)
        if dead:
            _stop_express(execution)

    def running(self) -> list[str]:
        """The ARNs of the Express executions still running, oldest first."""
        with self._lock:
            runs = list(self._runs)
        return [run.execution_arn for run in runs if run.status == "RUNNING"]

    def stop_running(self, *, started_by: str | None = None) -> list[str]:
        """Stop every Express execution still running, as if its process had died (AWS
        has no API for it: StopExecution refuses an Express execution); their ARNs.
        ``started_by``: an execution that died with them, whose windows (those whose
        input names it, as a tick's claims do) die as they start too, should its start
        still be under way (a stopped tick's StartSyncExecution is abandoned, not undone)."""
        with self._lock:
            if started_by is not None:
                self._crashed.add(started_by)
            runs = [run for run in self._runs if run.status == "RUNNING"]
        for run in runs:
            _stop_express(run)
        return [run.execution_arn for run in runs]


def _stop_express(execution: Any) -> None:
    """Stop a running moto execution (as StopExecution did, through its worker)."""

    # (a worker that is only starting has no program to stop yet: moto ignores a stop
    # until its program runs, then runs it. One that never begins is stopped all the
    # same: it has nothing to run.)
    def begun() -> bool:
        environment = getattr(execution.exec_worker, "env", None)
        return environment is not None and environment.program_state() is not None

    with contextlib.suppress(NotInTime):
        wait_until(
            lambda: begun() or execution.status != "RUNNING",
            timeout=_BEGINNING_SECONDS,
            interval=0.01,
            what="the execution's program",
        )
    execution.stop(stop_date=datetime.datetime.now(datetime.UTC), error=None, cause=None)


# What Lambda answers for an invocation that ran out of time (Step Functions names the
# error after it).
TIMED_OUT = "Sandbox.Timedout"


# Sandboxes of a function without reserved concurrency (Lambda's would scale further).
DEFAULT_SANDBOXES = 64


class InProcessLambdas:
    """The handlers behind moto's functions; ``overrides`` by function name.

    Each function runs in a pool of threads, its "sandboxes": as many as its reserved
    concurrency (``reserve``), so a function holds at most that many database
    connections at once, as on Lambda; invocations beyond it wait for a free sandbox.
    An invocation that outlasts the function's timeout (``timeouts``, from the template)
    is answered ``Sandbox.Timedout`` as Lambda answers it; its thread cannot be killed and
    runs on, holding its sandbox, while the caller goes on (``timed_out`` counts them).
    """

    def __init__(self) -> None:
        thread_metrics.per_thread()  # (each sandbox's metrics its own, as on Lambda)
        self.overrides: dict[str, Handler] = {}
        self.faults = LambdaFaults()
        # The emulation's IAM, and what each function calls AWS with: its role's
        # credentials (``deploy`` gives them; devstack.emulation.iam).
        self.permissions = iam.Permissions(enforce=False)
        self.credentials: dict[str, ReadOnlyCredentials] = {}
        # How Express executions run (this context's: ``lambdas_in_process`` sets it).
        self.express = ExpressRuns()
        self.invocations: list[str] = []
        self.timeouts: dict[str, float] = {}
        self.timed_out: dict[str, int] = {}
        self._reserved: dict[str, int] = {}
        self._busy: dict[str, int] = {}
        self._sandboxes: dict[str, ThreadPoolExecutor] = {}
        # Invocations refused because every reserved sandbox was busy, per function.
        self.throttles: dict[str, int] = {}
        self._lock = threading.Lock()
        # Wall time spent inside the handlers, per function (for the benchmarks).
        self.handler_seconds: dict[str, float] = {}

    def reserve(self, function_name: str, concurrency: int) -> None:
        """Give ``function_name`` this many sandboxes (its reserved concurrency)."""
        self._reserved[function_name] = concurrency

    def handler_for(self, function_name: str, handler_path: str) -> Handler:
        """The override of ``function_name``, else the handler ``module.attribute``."""
        override = self.overrides.get(function_name)
        if override is not None:
            return override
        module_name, _, attribute = handler_path.rpartition(".")
        handler: Handler = getattr(importlib.import_module(module_name), attribute)
        return handler

    def invoke(self, function: Any, body: str | None, response_headers: dict[str, str]) -> bytes:
        """Run the function's handler with ``body`` as its event; what Lambda answers.

        Raises ``TooManyRequests`` when every sandbox of its reserved concurrency is busy.
        """
        name = function.function_name
        if self.faults.strikes(name, FAULT_THROTTLED):
            raise TooManyRequests(name)
        reserved = self._reserved.get(name)
        with self._lock:
            busy = self._busy.get(name, 0)
            if reserved is not None and busy >= reserved:
                self.throttles[name] = self.throttles.get(name, 0) + 1
                raise TooManyRequests(name)
            self._busy[name] = busy + 1
            self.invocations.append(name)
        timeout = self.timeouts.get(name, DEFAULT_TIMEOUT_SECONDS)
        try:
            event = json.loads(body) if body else {}
            handler = self.handler_for(name, function.handler)
            invocation = _Sandboxed(name, timeout, self.credentials.get(name))
            running = self._pool(name).submit(_run, handler, event, invocation)
            failed, payload, seconds = _within(running, invocation)
        finally:
            with self._lock:
                self._busy[name] -= 1
        with self._lock:
            self.handler_seconds[name] = self.handler_seconds.get(name, 0.0) + seconds
            if seconds >= timeout:
                self.timed_out[name] = self.timed_out.get(name, 0) + 1
        if self.faults.strikes(name, FAULT_LOST_ANSWER):
            raise LostAnswer(name)
        if failed:  # Lambda reports any exception as a function error
            response_headers["x-amz-function-error"] = "Unhandled"
        return payload

    @contextmanager
    def acting_as(self, function_name: str) -> Iterator[None]:
        """Call AWS from this thread as the function does (its role's credentials): for
        a handler run directly, outside a sandbox."""
        with iam.acting_as(self.credentials.get(function_name)):
            yield

    def _pool(self, function_name: str) -> ThreadPoolExecutor:
        with self._lock:
            pool = self._sandboxes.get(function_name)
            if pool is None:
                size = self._reserved.get(function_name, DEFAULT_SANDBOXES)
                pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix=function_name)
                self._sandboxes[function_name] = pool
            return pool

    def shutdown(self) -> None:
        for pool in self._sandboxes.values():
            pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class _Sandboxed:
    """One invocation in its sandbox: when it started there, and until when it may run."""

    name: str
    timeout: float
    credentials: ReadOnlyCredentials | None = None
    started: threading.Event = field(default_factory=threading.Event)
    deadline: float = 0.0


def _within(running: Any, invocation: _Sandboxed) -> tuple[bool, bytes, float]:
    """The invocation's answer, or Lambda's ``Sandbox.Timedout`` once it has run for its
    timeout in its sandbox (waiting for a free sandbox does not count)."""
    while not invocation.started.wait(0.5):
        if running.done():  # (never started: the pool was shut down)
            break
    try:
        answer: tuple[bool, bytes, float] = running.result(
            timeout=max(0.0, invocation.deadline - time.monotonic())
            if invocation.started.is_set()
            else None
        )
    except FutureTimeout:
        error = {
            "errorType": TIMED_OUT,
            "errorMessage": f"Task timed out after {invocation.timeout:.2f} seconds",
        }
        return True, json.dumps(error).encode(), invocation.timeout
    return answer


def _run(
    handler: Handler, event: dict[str, Any], invocation: _Sandboxed
) -> tuple[bool, bytes, float]:
    invocation.deadline = time.monotonic() + invocation.timeout
    invocation.started.set()
    context = LocalContext(function_name=invocation.name, deadline=invocation.deadline)
    started = time.perf_counter()
    try:
        with iam.acting_as(invocation.credentials):
            payload = json.dumps(handler(event, context)).encode()
    except Exception as exc:
        error = {"errorType": type(exc).__name__, "errorMessage": str(exc), "stackTrace": []}
        return True, json.dumps(error).encode(), time.perf_counter() - started
    return False, payload, time.perf_counter() - started


class DirectLambdaClient:
    """What the interpreter uses of a Lambda client, ``invoke``, answered by moto's Lambda
    backend in this process (under ``mock_aws`` and in the moto server alike)."""

    def __init__(self, region: str, backend_for: Callable[[str, str], Any]) -> None:
        self._region = region
        self._backend_for = backend_for

    def invoke(
        self, *, FunctionName: str, Payload: Any = None, Qualifier: str | None = None, **_: Any
    ) -> dict[str, Any]:
        # A function ARN carries its account: arn:aws:lambda:REGION:ACCOUNT:function:NAME
        parts = FunctionName.split(":")
        account = parts[4] if len(parts) > 5 else DEFAULT_ACCOUNT_ID
        backend = self._backend_for(account, self._region)
        body = Payload.decode() if isinstance(Payload, bytes) else Payload
        headers: dict[str, str] = {}
        try:
            payload = backend.invoke(FunctionName, Qualifier, body, {}, headers)
        except (TooManyRequests, LostAnswer) as exc:
            # Answered as the function error Step Functions names it, as the HTTP path
            # would (Lambda.TooManyRequestsException, Lambda.ServiceException).
            headers["x-amz-function-error"] = "Unhandled"
            error_type = THROTTLED if isinstance(exc, TooManyRequests) else SERVICE_EXCEPTION
            payload = json.dumps({"errorType": error_type, "errorMessage": exc.message})
        data = payload if isinstance(payload, bytes) else str(payload).encode()
        if len(data) > MAX_RESPONSE_BYTES:
            headers["x-amz-function-error"] = "Unhandled"
            error = {
                "errorType": "Function.ResponseSizeTooLarge",
                "errorMessage": "Response payload size exceeded maximum allowed payload size.",
            }
            data = json.dumps(error).encode()
        response: dict[str, Any] = {"StatusCode": 200, "Payload": io.BytesIO(data)}
        if "x-amz-function-error" in headers:
            response["FunctionError"] = headers["x-amz-function-error"]
        return response


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


@dataclass
class _History:
    """One execution's history against its quota: the execution (its root environment,
    weakly: the history must not keep it alive) and the event id that passed the quota."""

    execution: weakref.ref[Any]
    lock: threading.RLock = field(default_factory=threading.RLock)
    capped: int | None = None


class Emulation:
    """What one ``lambdas_in_process()`` context holds: its handlers, its history quota,
    and its caches (of boto3 clients and moto backends, looked up once per context)."""

    def __init__(
        self,
        history_cap: int,
        express: ExpressRuns | None = None,
        *,
        enforce_iam: bool = True,
        omitted: frozenset[str] = frozenset(),
    ) -> None:
        self.omitted = omitted  # the rows of PATCHES left out
        self.lambdas = InProcessLambdas()
        self.lambdas.express = express or ExpressRuns()
        self.permissions = self.lambdas.permissions = iam.Permissions(enforce=enforce_iam)
        self.history_cap = history_cap
        # Each Step Functions environment's event manager -> its execution's history.
        self.histories: weakref.WeakKeyDictionary[Any, _History] = weakref.WeakKeyDictionary()
        self._clients: dict[tuple[str, str], Any] = {}
        self._clients_lock = threading.Lock()
        self._backends: dict[tuple[str, str], Any] = {}

    def client(
        self, build: Callable[..., Any], region: str, service: str, state_credentials: Any
    ) -> Any:
        """The boto3 client for ``service``, built once (by moto's ``build``)."""
        with self._clients_lock:  # building boto3 clients concurrently is not thread-safe
            key = (region, service)
            if key not in self._clients:
                self._clients[key] = build(region, service, state_credentials)
            return self._clients[key]

    def lambda_backend(self, account: str, region: str) -> Any:
        """moto's Lambda backend, looked up once (each lookup takes moto's global lock)."""
        key = (account, region)
        backend = self._backends.get(key)
        if backend is None:
            backend = self._backends[key] = lambda_models.lambda_backends[account][region]
        return backend


Kind = Literal["strict", "moto-bug", "fast"]
# A row's replacement, made per context from moto's original (what was there before).
Factory = Callable[[Any, Emulation], Any]


@dataclass(frozen=True)
class Patch:
    """One attribute of moto replaced while ``lambdas_in_process()`` is open."""

    owner: Any
    attribute: str
    replacement_factory: Factory
    why: str
    kind: Kind
    # The original's parameters, as the replacement expects them (``check_moto``).
    parameters: tuple[str, ...]
    # What moto does not have at all (an API it lacks): added, and checked to be absent.
    adds: bool = False

    @property
    def name(self) -> str:
        return f"{_short_name(self.owner)}.{self.attribute}"


@dataclass(frozen=True)
class Called:
    """An attribute of moto that a replacement calls unchanged, and its parameters."""

    owner: Any
    attribute: str
    parameters: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{_short_name(self.owner)}.{self.attribute}"


def _short_name(owner: Any) -> str:
    """A class by its name, a module by its last part (``sqs.models`` for a ``models``)."""
    parts = str(owner.__name__).split(".")
    return ".".join(parts[-2:]) if parts[-1] == "models" else parts[-1]


# ---- the replacements, one factory per row -------------------------------------------


def _invoke_in_process(original: Any, emulation: Emulation) -> Callable[..., bytes]:
    lambdas = emulation.lambdas

    def invoke(self: Any, body: str, request_headers: Any, response_headers: Any) -> bytes:
        return lambdas.invoke(self, body, response_headers)

    return invoke


def _clients_once(original: Any, emulation: Emulation) -> Callable[..., Any]:
    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        if service == "lambda":
            return DirectLambdaClient(region, emulation.lambda_backend)
        return emulation.client(original, region, service, state_credentials)

    return boto_client_for


def _sfn_parameters_renamed(original: Any, emulation: Emulation) -> Callable[..., Any]:
    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        return StepFunctionsClient(emulation.client(original, region, service, state_credentials))

    return boto_client_for


def _sfn_results_as_aws_gives_them(original: Any, emulation: Emulation) -> Callable[..., None]:
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


def _each_attempt_waits_anew(original: Any, emulation: Emulation) -> Callable[..., Any]:
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


def _express_runs_as_on_aws(original: Any, emulation: Emulation) -> Callable[..., Any]:
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


# How long an execution may take to begin its evaluation (its definition parsed) before
# its cap is given up on (a worker that died never makes its environment).
_BEGINNING_SECONDS = 60.0


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
            timeout=_BEGINNING_SECONDS,
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


def _sync_express_started(original: Any, emulation: Emulation) -> Callable[..., Any]:
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
            timeout=emulation.lambdas.express.cap_seconds + _BEGINNING_SECONDS,
            interval=SYNC_END_POLL_SECONDS,
            what="the synchronous Express execution's end",
        )
        return execution

    return start_sync_execution


def _sync_express_answered(original: Any, emulation: Emulation) -> Callable[..., Any]:
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


def _express_arns_as_on_aws(original: Any, emulation: Emulation) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        """An Express execution's ARN as AWS gives it: ``express`` where a Standard one
        says ``execution``, and an id of the run after its name."""
        original(self, *args, **kwargs)
        if self.state_machine.type == "EXPRESS":
            arn = self.exec_arn.replace(":execution:", ":express:", 1) + f":{uuid.uuid4()}"
            self.exec_arn = self.execution_arn = arn

    return __init__


def _express_executions_not_served(original: Any, emulation: Emulation) -> Callable[..., None]:
    def _validate_execution_arn(self: Any, execution_arn: str) -> None:
        """DescribeExecution, GetExecutionHistory and StopExecution refuse an Express
        execution (InvalidArn), as AWS does: it keeps no record of one to serve."""
        if _EXPRESS_EXECUTION_ARN.match(execution_arn or ""):
            raise InvalidArn(NOT_FOR_EXPRESS)
        original(self, execution_arn)

    return _validate_execution_arn


def _express_machines_not_listed(original: Any, emulation: Emulation) -> Callable[..., Any]:
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


def _executions_logged_as_on_aws(original: Any, emulation: Emulation) -> Callable[..., Any]:
    def _get_start_execution_worker(self: Any) -> Any:
        """The execution's events go to its state machine's log group (moto starts every
        execution without a logging session)."""
        if self._cloud_watch_logging_session is None:
            self._cloud_watch_logging_session = ExecutionLog.of(self)
        return original(self)

    return _get_start_execution_worker


def _aws_sdk_reaches_the_emulation(original: Any, emulation: Emulation) -> Callable[..., Any]:
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


def _sdk_call_abandoned_on_stop(original: Any, emulation: Emulation) -> Callable[..., None]:
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


def _missing_choice_variable_fails(original: Any, emulation: Emulation) -> Callable[..., None]:
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


def _definitions_parsed_once(original: Any, emulation: Emulation) -> Callable[[Any], Any]:
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


def _definitions_validated_once(original: Any, emulation: Emulation) -> staticmethod[..., None]:
    def _validate_definition(definition: str) -> None:
        if definition not in _VALID_DEFINITIONS:
            original(definition=definition)  # raises InvalidDefinition
            _VALID_DEFINITIONS.add(definition)

    return staticmethod(_validate_definition)


def _sync_polled_often(original: Any, emulation: Emulation) -> float:
    return min(float(original), SYNC_POLL_SECONDS)


def _parsed_once(original: Any, emulation: Emulation) -> Callable[..., Any]:
    return functools.lru_cache(maxsize=1024)(original)


def _history_registered(original: Any, emulation: Emulation) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        machine = kwargs.get("context", args[2] if len(args) > 2 else {}) or {}
        if machine.get("StateMachine", {}).get("Id") in emulation.lambdas.express.machines:
            return  # AWS keeps no history of an Express execution, and sets it no quota
        # (a frame is built the same way, then shares its execution's event manager:
        # its own entry goes with the event manager it drops)
        emulation.histories[self.event_manager] = _History(weakref.ref(self))

    return __init__


def _history_capped(original: Any, emulation: Emulation) -> Callable[..., int]:
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


def _history_quota_stays_the_reason(original: Any, emulation: Emulation) -> Callable[..., None]:
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


def _wait_seconds_exact(original: Any, emulation: Emulation) -> Callable[..., float]:
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


def _wait_fractions(original: Any, emulation: Emulation) -> Callable[..., None]:
    def _wait_interval(self: Any, env: Any, wait_seconds: float) -> None:
        """Wait ``wait_seconds`` (fractions too), or until the execution stops."""
        deadline = time.monotonic() + wait_seconds
        while env.is_running():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            env.program_state_event.wait(remaining)

    return _wait_interval


def _modules_listed_once(original: Any, emulation: Emulation) -> Callable[[], Any]:
    return functools.cache(lambda: tuple(original()))


def _hosts_routed_once(original: Any, emulation: Emulation) -> Callable[[Any, str | None], Any]:
    found: dict[str | None, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        # (moto calls this under its dispatcher's lock; the patterns never change)
        if host not in found:
            found[host] = original(self, host)
        return found[host]

    return get_backend_for_host


def _seconds_read_directly(original: Any, emulation: Emulation) -> Callable[..., float]:
    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else float(original(dt))

    return unix_time


def _millis_read_directly(original: Any, emulation: Emulation) -> Callable[..., float]:
    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else float(original(dt))

    return unix_time_millis


# The queue attributes that count messages (each a scan of the whole queue), and the
# queue's properties that count them.
_COUNTS = {
    "ApproximateNumberOfMessages": "approximate_number_of_messages",
    "ApproximateNumberOfMessagesDelayed": "approximate_number_of_messages_delayed",
    "ApproximateNumberOfMessagesNotVisible": "approximate_number_of_messages_not_visible",
}


class _WithoutCounts:
    """A queue whose message counts read as zero (dropped again from its attributes)."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue

    def __getattr__(self, name: str) -> Any:
        if name.startswith("approximate_number_of_messages"):
            return 0
        return getattr(self._queue, name)


def _queue_settings_only(original: Any, emulation: Emulation) -> property:
    def attributes(self: Any) -> dict[str, Any]:
        settings: dict[str, Any] = original.fget(_WithoutCounts(self))
        return {key: value for key, value in settings.items() if key not in _COUNTS}

    return property(attributes)


def _counts_when_asked(original: Any, emulation: Emulation) -> Callable[..., dict[str, Any]]:
    def get_queue_attributes(
        self: Any, queue_name: str, attribute_names: list[str]
    ) -> dict[str, Any]:
        # (the queue's attributes are its settings only: the counts are added here)
        answer = dict(original(self, queue_name, attribute_names))
        names = attribute_names or []
        counts = [name for name in _COUNTS if "All" in names or name in names]
        if counts:
            queue = self.get_queue(queue_name)
            answer.update({name: getattr(queue, _COUNTS[name]) for name in counts})
        return answer

    return get_queue_attributes


def _sqs_ids_checked(original: Any, emulation: Emulation) -> Callable[..., None]:
    def _validate_message(
        self: Any,
        queue: Any,
        message_body: str,
        delay_seconds: int,
        deduplication_id: str | None = None,
        group_id: str | None = None,
        validate_group_id: bool = True,
    ) -> None:
        original(
            self, queue, message_body, delay_seconds, deduplication_id, group_id, validate_group_id
        )
        for parameter, value in (
            ("MessageGroupId", group_id),
            ("MessageDeduplicationId", deduplication_id),
        ):
            message = None if value is None else refusal(parameter, value)
            if message is not None:
                raise InvalidParameterValue(message)
        # (moto counted characters: SQS counts the bytes of the body's UTF-8)
        if len(message_body.encode("utf-8", "surrogatepass")) > queue.maximum_message_size:
            raise InvalidParameterValue(
                "One or more parameters are invalid. Reason: Message must be shorter than"
                f" {queue.maximum_message_size} bytes."
            )
        if _OUTSIDE_SQS_CHARACTERS.search(message_body):
            raise InvalidMessageContents()

    return _validate_message


# What SQS takes in a message body: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD |
# #x10000 to #x10FFFF (the W3C's XML characters); anything else refuses the message.
_OUTSIDE_SQS_CHARACTERS = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class InvalidMessageContents(SQSException):  # type: ignore[misc]
    """What SQS answers for a message body with a character outside its set."""

    def __init__(self) -> None:
        super().__init__(
            "InvalidMessageContents",
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD |"
            " #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
        )


def _sqs_batches_measured_in_bytes(original: Any, emulation: Emulation) -> Callable[..., Any]:
    def send_message_batch(self: Any, queue_name: str, entries: dict[str, dict[str, Any]]) -> Any:
        size = sum(
            len(entry["MessageBody"].encode("utf-8", "surrogatepass")) for entry in entries.values()
        )
        if size > sqs_models.MAXIMUM_MESSAGE_LENGTH:
            raise BatchRequestTooLong(size)
        return original(self, queue_name, entries)

    return send_message_batch


def _requests_authorized_as_on_aws(original: Any, emulation: Emulation) -> Callable[..., None]:
    def _authenticate_and_authorize_normal_action(self: Any, resource: str = "*") -> None:
        iam.authorize(self, resource)

    return _authenticate_and_authorize_normal_action


def _tasks_checked_against_their_role(original: Any, emulation: Emulation) -> Callable[..., None]:
    permissions = emulation.permissions

    def _before_eval_execution(
        self: Any, env: Any, resource_runtime_part: Any, raw_parameters: Any, state_credentials: Any
    ) -> None:
        original(self, env, resource_runtime_part, raw_parameters, state_credentials)
        iam.check_task(permissions, self, env, resource_runtime_part, raw_parameters)

    return _before_eval_execution


def _functions_invoked_as_their_role_allows(
    original: Any, emulation: Emulation
) -> Callable[..., None]:
    permissions = emulation.permissions

    def _eval_execution(self: Any, env: Any) -> None:
        self.resource.eval(env=env)
        runtime = env.stack.pop()
        iam.check_task(permissions, self, env, runtime, {})
        original(self, env)

    return _eval_execution


# ---- the table ----------------------------------------------------------------------

_INVOKE = ("self", "body", "request_headers", "response_headers")
_CLIENT_FOR = ("region", "service", "state_credentials")

STRICT: tuple[Patch, ...] = (
    Patch(
        lambda_models.LambdaFunction,
        "invoke",
        _invoke_in_process,
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
        _history_registered,
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
        _history_capped,
        f"AWS fails a Standard execution whose history passes {HISTORY_EVENT_CAP:,} events "
        f"({HISTORY_LIMIT_ERROR}) and writes nothing more but its end; moto lets it grow "
        "without end (lambdas_in_process(history_cap) scales the quota down for tests)",
        "strict",
        ("self", "context", "event_type", "event_details", "timestamp", "update_source_event_id"),
    ),
    Patch(
        environment.Environment,
        "set_error",
        _history_quota_stays_the_reason,
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
        _wait_seconds_exact,
        "a Wait until a timestamp ends at the timestamp, never before: moto truncates the "
        "seconds to wait (ending up to a second early) and compares the UTC timestamp "
        "with the local time (a moto bug outside UTC)",
        "strict",
        ("self", "env"),
    ),
    Patch(
        wait_function.WaitFunction,
        "_wait_interval",
        _wait_fractions,
        "waits fractions of a second (moto's waits whole seconds, and loops forever on a "
        "fraction), until the execution stops",
        "strict",
        ("self", "env", "wait_seconds"),
    ),
    Patch(
        state_task_service_sfn,
        "boto_client_for",
        _sfn_parameters_renamed,
        "moto bug: the states:startExecution task hands botocore its parameters as the "
        "state machine names them (StateMachineArn, Input, Name), which botocore refuses: "
        "its client passes them on renamed (stateMachineArn...), and is built once",
        "moto-bug",
        _CLIENT_FOR,
    ),
    Patch(
        state_task_service_sfn.StateTaskServiceSfn,
        "_normalise_response",
        _sfn_results_as_aws_gives_them,
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
        _each_attempt_waits_anew,
        "moto bug: a retried .sync task (the tick retrying its delivery window) reuses the "
        "callback endpoint its first attempt shut down, and times out at once "
        "(States.Timeout) instead of starting the child again",
        "moto-bug",
        ("self", "env", "resource_runtime_part", "normalised_parameters", "state_credentials"),
    ),
    Patch(
        StepFunctionsParserBackend,
        "start_execution",
        _express_runs_as_on_aws,
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
        _sync_express_started,
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
        _sync_express_answered,
        "and its answer as the API model gives it: status SUCCEEDED, FAILED or TIMED_OUT "
        "(a failed execution is a 200 answer, not an error), output only on success",
        "strict",
        (),
        adds=True,
    ),
    Patch(
        state_task_service_aws_sdk,
        "boto_client_for",
        _aws_sdk_reaches_the_emulation,
        "an aws-sdk task's client reaches the emulation: botocore puts StartSyncExecution's "
        "host prefix (sync-) before the endpoint, a host that neither mock_aws nor the moto "
        "server answers; clients are built once",
        "strict",
        _CLIENT_FOR,
    ),
    Patch(
        state_task_service_aws_sdk.StateTaskServiceAwsSdk,
        "_eval_service_task",
        _sdk_call_abandoned_on_stop,
        "a Standard execution stopped while an aws-sdk task waits (the tick waiting for its "
        "window: StartSyncExecution) stops at once, as on AWS; moto waited for the call",
        "strict",
        ("self", "env", "resource_runtime_part", "normalised_parameters", "state_credentials"),
    ),
    Patch(
        Execution,
        "__init__",
        _express_arns_as_on_aws,
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
        _express_executions_not_served,
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
        _express_machines_not_listed,
        "ListExecutions refuses an Express state machine as AWS does "
        f"(StateMachineTypeNotSupported, {TYPE_NOT_SUPPORTED!r}); moto listed its executions",
        "strict",
        ("self", "state_machine_arn", "status_filter"),
    ),
    Patch(
        Execution,
        "_get_start_execution_worker",
        _executions_logged_as_on_aws,
        "an execution writes its events to its state machine's log group, at the "
        "configuration's level, in AWS's format (ExecutionLog); moto started every "
        "execution without logging, so an Express execution left no trace at all",
        "strict",
        ("self",),
    ),
    Patch(
        comparison_variable.ComparisonVariable,
        "_eval_body",
        _missing_choice_variable_fails,
        "a Choice rule on a missing field fails the execution with States.Runtime on AWS "
        "(only IsPresent may ask about a field that is not there); moto took the rule as "
        "false and went on to the Default",
        "strict",
        ("self", "env"),
    ),
    Patch(
        sqs_models.SQSBackend,
        "_validate_message",
        _sqs_ids_checked,
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
        _sqs_batches_measured_in_bytes,
        "and a SendMessageBatch whose bodies together are longer than SQS's limit in bytes "
        "of UTF-8 (BatchRequestTooLong); moto counted their characters",
        "strict",
        ("self", "queue_name", "entries"),
    ),
    Patch(
        ActionAuthenticatorMixin,
        "_authenticate_and_authorize_normal_action",
        _requests_authorized_as_on_aws,
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
        _tasks_checked_against_their_role,
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
        _functions_invoked_as_their_role_allows,
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
        _clients_once,
        "moto built a boto3 client for every Lambda task and sent each invocation through "
        "botocore and its HTTP emulation: Lambda tasks go straight to moto's Lambda backend "
        "(DirectLambdaClient), and clients of other services are built once",
        "fast",
        _CLIENT_FOR,
    ),
    Patch(
        ExecutionWorker,
        "_get_evaluation_entrypoint",
        _definitions_parsed_once,
        "moto parsed a state machine's definition (ANTLR, 0.16 s for the delivery "
        "window) for every execution: parsed once per definition in a process, the "
        "program shared",
        "fast",
        ("self",),
    ),
    Patch(
        StepFunctionsParserBackend,
        "_validate_definition",
        _definitions_validated_once,
        "and parsed it again to validate it whenever a state machine was created (each "
        "test's deploy): a definition that passed is not parsed again",
        "fast",
        ("definition",),
    ),
    Patch(
        state_task_service_callback,
        "_DELAY_SECONDS_SYNC_CONDITION_CHECK",
        _sync_polled_often,
        "a .sync task looked at its child's status every 0.5 s, so each tick ended up to "
        "half a second after its window: every 100 ms (AWS learns of the child's end "
        "from an event, at once; more often costs the emulator's CPU more than it saves)",
        "fast",
        (),
    ),
    Patch(
        json_path,
        "parse",
        _parsed_once,
        "moto built a JSONPath parser (a ply LR parser) for every path it evaluated: "
        "parsed paths are cached",
        "fast",
        ("path", "debug"),
    ),
    Patch(
        result_path,
        "parse",
        _parsed_once,
        "the same for ResultPath expressions",
        "fast",
        ("string",),
    ),
    Patch(
        backends,
        "list_of_moto_modules",
        _modules_listed_once,
        "the moto server listed moto's package directory for each request: listed once",
        "fast",
        (),
    ),
    Patch(
        DomainDispatcherApplication,
        "get_backend_for_host",
        _hosts_routed_once,
        "the moto server tried every service's URL pattern for each request, under one "
        "lock: each host's service is remembered",
        "fast",
        ("self", "host"),
    ),
    Patch(
        sqs_models,
        "unix_time",
        _seconds_read_directly,
        "SQS read the clock through datetime, several times per message per request: "
        "now is time.time()",
        "fast",
        ("dt",),
    ),
    Patch(
        sqs_models,
        "unix_time_millis",
        _millis_read_directly,
        "the same, in milliseconds",
        "fast",
        ("dt",),
    ),
    Patch(
        sqs_models.Queue,
        "attributes",
        _queue_settings_only,
        "SQS counted every message of the queue three times for each message sent or "
        "received (the Approximate... counts, computed with every attribute though only "
        "the queue's settings were read): a queue's attributes are its settings",
        "fast",
        ("self",),
    ),
    Patch(
        sqs_models.SQSBackend,
        "get_queue_attributes",
        _counts_when_asked,
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
    *(Called(sqs_models.Queue, counted, ("self",)) for counted in _COUNTS.values()),
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
    or nothing is, as in moto.
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
