"""Lambda in this process: each function's handler in as many sandboxes as its reserved
concurrency, throttled beyond them, timed out past its timeout, with the faults AWS now
and then injects (a throttle, a lost answer)."""

from __future__ import annotations

import importlib
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

from botocore.credentials import ReadOnlyCredentials
from moto.awslambda.exceptions import LambdaClientError
from moto.core.models import DEFAULT_ACCOUNT_ID

from devstack.emulation import function_logs, iam, thread_metrics
from devstack.emulation.context import DEFAULT_TIMEOUT_SECONDS, LocalContext, default_log_group
from devstack.emulation.function_logs import FunctionLogGroup
from devstack.emulation.moto_services.express import ExpressRuns

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
    What an invocation logs goes to its function's log group (``log_groups``, from the
    template's deploy; devstack.emulation.function_logs), in its sandbox's stream.
    """

    def __init__(self) -> None:
        thread_metrics.per_thread()  # (each sandbox's metrics its own, as on Lambda)
        self.overrides: dict[str, Handler] = {}
        self.faults = LambdaFaults()
        # The emulation's IAM, and what each function calls AWS with: its role's
        # credentials (``deploy`` gives them; devstack.emulation.iam).
        self.permissions = iam.Permissions(enforce=False)
        self.credentials: dict[str, ReadOnlyCredentials] = {}
        # Where each function logs (``deploy`` gives them).
        self.log_groups: dict[str, FunctionLogGroup] = {}
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
            invocation = _Sandboxed(
                name, timeout, self.credentials.get(name), self.log_groups.get(name)
            )
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
        """Call AWS from this thread as the function does (its role's credentials), and
        log to its log group: for a handler run directly, outside a sandbox."""
        with iam.acting_as(self.credentials.get(function_name)), self.logging_as(function_name):
            yield

    @contextmanager
    def logging_as(self, function_name: str) -> Iterator[None]:
        """What this thread logs goes to the function's log group, as an invocation's."""
        log = function_logs.sandbox_log(self.log_groups.get(function_name))
        with function_logs.writing_to(log):
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
    log_group: FunctionLogGroup | None = None
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
    context = LocalContext(
        function_name=invocation.name,
        log_group_name=default_log_group(invocation.name),
        deadline=invocation.deadline,
    )
    log = function_logs.sandbox_log(invocation.log_group)
    started = time.perf_counter()
    try:
        with iam.acting_as(invocation.credentials), function_logs.writing_to(log):
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
