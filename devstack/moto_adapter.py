"""The one module that adapts moto (pinned: ``MOTO_VERSION``) to run Escalator in-process.

moto executes Lambda code only in Docker, which this project does not need, and its Step
Functions interpreter pays for work AWS does elsewhere. While ``lambdas_in_process()``
is open, these attributes of moto are replaced (``PATCHED``), and restored afterwards:

- ``LambdaFunction.invoke`` imports the function's ``Handler`` (e.g.
  ``escalator.handlers.confirm.handler``) and calls it in a pool of threads sized by
  its reserved concurrency, answering as Lambda does (``errorType`` = the exception's
  class name when it raises). ``InProcessLambdas.overrides`` replaces a handler for
  fault injection.
- The interpreter's ``boto_client_for`` built a new boto3 client for every Lambda task
  and sent each invocation through botocore and moto's HTTP emulation: Lambda tasks now
  go straight to moto's Lambda backend (which calls ``LambdaFunction.invoke``), and
  clients of other services are built once.
- A function whose reserved concurrency is all busy is throttled at once, as Lambda
  does: the invocation fails with ``TooManyRequestsException`` (HTTP 429), which Step
  Functions sees as ``Lambda.TooManyRequestsException``. ``InProcessLambdas.throttles``
  counts them per function.
- ``InProcessLambdas.faults`` (``LambdaFaults``) injects what AWS does now and then:
  an invocation throttled before it runs, or one that runs and whose answer is lost
  (``ServiceException``, HTTP 500; Step Functions sees ``Lambda.ServiceException``).
- The ``states:startExecution`` task hands its parameters to botocore as the state
  machine names them (``StateMachineArn``, ``Input``, ``Name``), which botocore refuses
  (its names are ``stateMachineArn``...): its client passes them on renamed.
- A Standard execution fails once its history passes ``HISTORY_EVENT_CAP`` events (AWS's
  quota is 25,000), with the history as it stands; moto lets it grow without end.
- The interpreter built a new JSONPath parser (a ply LR parser) for every path it
  evaluated: parsed paths are cached.
- A ``Wait`` state until a timestamp waited whole seconds, truncated (up to a second
  before the time, so the Confirm step slept out the rest in its sandbox): it waits
  until the time itself, as Step Functions does, unless the execution stops first.
- The moto server listed moto's package directory and tried every service's URL pattern
  for each request, under one lock: the list and each host's service are remembered.
- SQS read the clock through ``datetime`` (several times per message per request), and
  counted every message of the queue three times for each message sent or received (the
  ``Approximate...`` attributes, computed with every attribute though only the queue's
  settings were read): the clock is ``time.time()``, and the counts are computed only
  when a client asks for them (``GetQueueAttributes`` with ``All`` or their names).

``check_moto()`` says what no longer matches when moto changes; patching refuses then,
and a test runs it, so an upgrade fails loudly instead of silently testing less.
"""

from __future__ import annotations

import datetime
import functools
import importlib
import inspect
import io
import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import moto
from moto import backends
from moto.awslambda import models as lambda_models
from moto.awslambda.exceptions import LambdaClientError
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.sqs import models as sqs_models
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_sfn,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function import (
    timestamp as wait_timestamp,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function import (
    wait_function,
)
from moto.stepfunctions.parser.asl.eval import environment
from moto.stepfunctions.parser.asl.eval.event import event_manager
from moto.stepfunctions.parser.asl.utils import boto_client, json_path

# The version this module was written against (requirements-dev.txt pins it).
MOTO_VERSION = "5.2.5"
# What is replaced: (module, attribute, the parameters the original must have).
PATCHED: list[tuple[Any, str, tuple[str, ...]]] = [
    (
        lambda_models.LambdaFunction,
        "invoke",
        ("self", "body", "request_headers", "response_headers"),
    ),
    (lambda_eval_utils, "boto_client_for", ("region", "service", "state_credentials")),
    (state_task_service_sfn, "boto_client_for", ("region", "service", "state_credentials")),
    (json_path, "parse", ("path", "debug")),
    (result_path, "parse", ("string",)),
    (
        environment.Environment,
        "__init__",
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
    (
        event_manager.EventManager,
        "add_event",
        ("self", "context", "event_type", "event_details", "timestamp", "update_source_event_id"),
    ),
    (wait_timestamp.Timestamp, "_get_wait_seconds", ("self", "env")),
    (wait_function.WaitFunction, "_wait_interval", ("self", "env", "wait_seconds")),
    (backends, "list_of_moto_modules", ()),
    (DomainDispatcherApplication, "get_backend_for_host", ("self", "host")),
    (sqs_models, "unix_time", ("dt",)),
    (sqs_models, "unix_time_millis", ("dt",)),
    (sqs_models.Queue, "attributes", ("self",)),
    (sqs_models.SQSBackend, "get_queue_attributes", ("self", "queue_name", "attribute_names")),
]
# A Standard execution's history holds at most this many events on AWS, which fails an
# execution that would write more.
HISTORY_EVENT_CAP = 25_000
HISTORY_LIMIT_ERROR = "ExecutionHistoryLimitExceeded"
# What the replacements call of moto, unchanged.
CALLED: list[tuple[Any, str, tuple[str, ...]]] = [
    (
        lambda_models.LambdaBackend,
        "invoke",
        ("self", "function_name", "qualifier", "body", "headers", "response_headers"),
    ),
    (boto_client, "boto_client_for", ("region", "service", "state_credentials")),
]
# moto's own, as imported (this module is the only one that replaces them).
_ORIGINALS: dict[tuple[Any, str], Any] = {
    (owner, name): getattr(owner, name, None) for owner, name, _ in PATCHED + CALLED
}
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


def check_moto() -> list[str]:
    """What no longer matches this module in the installed moto (empty when all does)."""
    problems = []
    if moto.__version__ != MOTO_VERSION:
        problems.append(f"moto is {moto.__version__}, this adapter was written for {MOTO_VERSION}")
    for owner, name, parameters in PATCHED + CALLED:
        target = _ORIGINALS[(owner, name)]
        if isinstance(target, property):
            target = target.fget
        where = f"{getattr(owner, '__name__', owner)}.{name}"
        if target is None:
            problems.append(f"{where} is gone")
            continue
        found = tuple(inspect.signature(target).parameters)
        if found != parameters:
            problems.append(f"{where} now takes {found}, not {parameters}")
    return problems


@dataclass
class LocalContext:
    """The attributes of the Lambda context object that Powertools reads; the remaining
    time counts down to ``deadline`` (``time.monotonic()``; 30 s from creation if unset)."""

    function_name: str = "escalator-local"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:eu-central-1:123456789012:function:escalator"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "local-request"
    log_group_name: str = "/aws/lambda/escalator-local"
    log_stream_name: str = "local"
    deadline: float = field(default_factory=lambda: time.monotonic() + DEFAULT_TIMEOUT_SECONDS)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


# Lambda's own default timeout is 3 s; the stack gives every function one explicitly.
DEFAULT_TIMEOUT_SECONDS = 30.0
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
        self.overrides: dict[str, Handler] = {}
        self.faults = LambdaFaults()
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
            invocation = _Sandboxed(name, timeout)
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
        payload = json.dumps(handler(event, context)).encode()
    except Exception as exc:
        error = {"errorType": type(exc).__name__, "errorMessage": str(exc), "stackTrace": []}
        return True, json.dumps(error).encode(), time.perf_counter() - started
    return False, payload, time.perf_counter() - started


class DirectLambdaClient:
    """What the interpreter uses of a Lambda client, ``invoke``, answered by moto's Lambda
    backend in this process (under ``mock_aws`` and in the moto server alike)."""

    def __init__(self, region: str) -> None:
        self._region = region

    def invoke(
        self, *, FunctionName: str, Payload: Any = None, Qualifier: str | None = None, **_: Any
    ) -> dict[str, Any]:
        # A function ARN carries its account: arn:aws:lambda:REGION:ACCOUNT:function:NAME
        parts = FunctionName.split(":")
        account = parts[4] if len(parts) > 5 else DEFAULT_ACCOUNT_ID
        backend = _lambda_backend(account, self._region)
        body = Payload.decode() if isinstance(Payload, bytes) else Payload
        headers: dict[str, str] = {}
        try:
            payload = backend.invoke(FunctionName, Qualifier, body, {}, headers)
        except (TooManyRequests, LostAnswer) as exc:
            # moto names an error of the Lambda API "Exception"; Step Functions says
            # Lambda.TooManyRequestsException or Lambda.ServiceException, so it is
            # answered under that name.
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


_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()
_backends: dict[tuple[str, str], Any] = {}


def _lambda_backend(account: str, region: str) -> Any:
    """moto's Lambda backend, looked up once (each lookup takes moto's global lock)."""
    key = (account, region)
    backend = _backends.get(key)
    if backend is None:
        backend = _backends[key] = lambda_models.lambda_backends[account][region]
    return backend


def _client_for(region: str, service: str, state_credentials: Any = None) -> Any:
    if service == "lambda":
        return DirectLambdaClient(region)
    with _clients_lock:  # building boto3 clients concurrently is not thread-safe
        key = (region, service)
        if key not in _clients:
            _clients[key] = boto_client.boto_client_for(region, service, state_credentials)
        return _clients[key]


def _capped_history(cap: int) -> tuple[Callable[..., None], Callable[..., int]]:
    """An ``Environment.__init__`` that lets the execution's event manager reach its
    execution, and an ``add_event`` that fails the execution past ``cap`` events."""
    init = _ORIGINALS[(environment.Environment, "__init__")]
    add_event = _ORIGINALS[(event_manager.EventManager, "add_event")]

    def init_with_owner(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.event_manager.escalator_execution = self

    def add_capped_event(self: Any, *args: Any, **kwargs: Any) -> int:
        # Checking the quota and adding the event are one step: branches add events from
        # several threads at once.
        with self.__dict__.setdefault("escalator_lock", threading.RLock()):
            execution = getattr(self, "escalator_execution", None)
            event_type = kwargs.get("event_type", args[1] if len(args) > 1 else None)
            capped: int | None = getattr(self, "escalator_capped", None)
            if capped is not None and "ExecutionFailed" not in str(event_type):
                # On AWS nothing is written past the quota: what branches still in flight
                # do now is not recorded (moto's interpreter would go on until it notices).
                return capped
            event_id: int = add_event(self, *args, **kwargs)
            if event_id > cap and execution is not None and execution.is_running():
                self.escalator_capped = event_id
                # (moto refuses error names in the States. namespace from here)
                execution.set_error(
                    {
                        "error": HISTORY_LIMIT_ERROR,
                        "cause": f"The execution history reached {cap} events, its quota.",
                    }
                )
                # The quota is why it failed: what a branch cut short raises after it is not.
                execution.set_error = lambda *_args, **_kwargs: None
            return event_id

    return init_with_owner, add_capped_event


def _get_wait_seconds(self: Any, env: Any) -> float:
    """Seconds from now until the state's timestamp (UTC, whatever the local zone)."""
    self.string.eval(env=env)
    text = env.stack.pop()
    at = self._from_timestamp_string(timestamp=text)
    if at is None:
        raise FailureEventException(self._create_failure_event(env, text))
    seconds: float = at.replace(tzinfo=datetime.UTC).timestamp() - time.time()
    return seconds


def _wait_interval(self: Any, env: Any, wait_seconds: float) -> None:
    """Wait ``wait_seconds`` (fractions too), or until the execution stops."""
    deadline = time.monotonic() + wait_seconds
    while env.is_running():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        env.program_state_event.wait(remaining)


def _routing() -> tuple[Callable[[], Any], Callable[[Any, str | None], Any]]:
    """moto's package directory, listed once; each host's backend, found once per host."""
    list_modules = _ORIGINALS[(backends, "list_of_moto_modules")]
    backend_for_host = _ORIGINALS[(DomainDispatcherApplication, "get_backend_for_host")]
    modules = functools.cache(lambda: tuple(list_modules()))
    found: dict[str | None, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        # (moto calls this under its dispatcher's lock; the patterns never change)
        if host not in found:
            found[host] = backend_for_host(self, host)
        return found[host]

    return modules, get_backend_for_host


def _sqs_clock() -> tuple[Callable[..., float], Callable[..., float]]:
    """moto's ``unix_time`` and ``unix_time_millis`` for "now" read ``time.time()``."""
    unix_time = _ORIGINALS[(sqs_models, "unix_time")]

    def now(dt: Any = None) -> float:
        return time.time() if dt is None else float(unix_time(dt))

    def now_millis(dt: Any = None) -> float:
        return now(dt) * 1000.0

    return now, now_millis


# The queue attributes that count messages (each a scan of the whole queue).
_COUNTS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
)
_counting = threading.local()


class _WithoutCounts:
    """A queue whose message counts read as zero (dropped again from its attributes)."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue

    def __getattr__(self, name: str) -> Any:
        if name.startswith("approximate_number_of_messages"):
            return 0
        return getattr(self._queue, name)


def _counts_on_demand() -> tuple[property, Callable[..., dict[str, Any]]]:
    """``Queue.attributes`` without the message counts, unless ``get_queue_attributes``
    was asked for them."""
    attributes = _ORIGINALS[(sqs_models.Queue, "attributes")].fget
    get_queue_attributes = _ORIGINALS[(sqs_models.SQSBackend, "get_queue_attributes")]

    def queue_attributes(self: Any) -> dict[str, Any]:
        if getattr(_counting, "wanted", False):
            return dict(attributes(self))
        settings: dict[str, Any] = attributes(_WithoutCounts(self))
        return {key: value for key, value in settings.items() if key not in _COUNTS}

    def get_queue_attributes_counted(
        self: Any, queue_name: str, attribute_names: list[str]
    ) -> dict[str, Any]:
        names = attribute_names or []
        _counting.wanted = "All" in names or any(name in _COUNTS for name in names)
        try:
            return dict(get_queue_attributes(self, queue_name, attribute_names))
        finally:
            _counting.wanted = False

    return property(queue_attributes), get_queue_attributes_counted


@contextmanager
def lambdas_in_process(history_cap: int = HISTORY_EVENT_CAP) -> Iterator[InProcessLambdas]:
    """Apply the patches (``PATCHED``) while the context is open; yield the handlers.
    ``history_cap`` scales the history quota down for tests that prove it at small size."""
    problems = check_moto()
    if problems:
        raise RuntimeError("devstack.moto_adapter does not fit this moto: " + "; ".join(problems))
    lambdas = InProcessLambdas()

    def invoke(self: Any, body: str, request_headers: Any, response_headers: Any) -> bytes:
        return lambdas.invoke(self, body, response_headers)

    originals = [_ORIGINALS[(owner, name)] for owner, name, _ in PATCHED]
    replacements = [
        invoke,
        _client_for,
        lambda *args, **kwargs: StepFunctionsClient(_client_for(*args, **kwargs)),
        functools.lru_cache(maxsize=1024)(originals[3]),
        functools.lru_cache(maxsize=1024)(originals[4]),
        *_capped_history(history_cap),
        _get_wait_seconds,
        _wait_interval,
        *_routing(),
        *_sqs_clock(),
        *_counts_on_demand(),
    ]
    _clients.clear()  # clients and backends of an earlier mock_aws session
    _backends.clear()
    for (owner, name, _), replacement in zip(PATCHED, replacements, strict=True):
        setattr(owner, name, replacement)
    try:
        yield lambdas
    finally:
        for (owner, name, _), original in zip(PATCHED, originals, strict=True):
            setattr(owner, name, original)
        lambdas.shutdown()
