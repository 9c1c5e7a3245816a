"""Run moto's Lambda functions in-process, with the real handlers (local stack and tests).

moto (pinned: 5.2.5) executes Lambda code only in Docker, which this project does not
need. This is the one patch that changes that: ``LambdaFunction.invoke`` imports the
function's ``Handler`` (e.g. ``escalator.handlers.confirm.handler``) and calls it with
the event, answering as Lambda does, with ``errorType`` set to the exception's class
name when it raises. ``overrides`` replaces a function's handler for fault injection.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from moto.awslambda.models import LambdaFunction

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LocalContext:
    """The attributes of the Lambda context object that Powertools reads."""

    function_name: str = "escalator-local"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:eu-central-1:123456789012:function:escalator"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "local-request"
    log_group_name: str = "/aws/lambda/escalator-local"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


# Sandboxes of a function without reserved concurrency (Lambda's would scale further).
DEFAULT_SANDBOXES = 64


class InProcessLambdas:
    """The handlers behind moto's functions; ``overrides`` by function name.

    Each function runs in a pool of threads, its "sandboxes": as many as its reserved
    concurrency (``reserve``), so a function holds at most that many database
    connections at once, as on Lambda; invocations beyond it wait for a free sandbox.
    """

    def __init__(self) -> None:
        self.overrides: dict[str, Handler] = {}
        self.invocations: list[str] = []
        self._reserved: dict[str, int] = {}
        self._sandboxes: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()
        # Wall time spent inside the handlers, per function (for the benchmarks).
        self.handler_seconds: dict[str, float] = {}

    def reserve(self, function_name: str, concurrency: int) -> None:
        """Give ``function_name`` this many sandboxes (its reserved concurrency)."""
        self._reserved[function_name] = concurrency

    def handler_for(self, function: Any) -> Handler:
        override = self.overrides.get(function.function_name)
        if override is not None:
            return override
        module_name, _, attribute = function.handler.rpartition(".")
        handler: Handler = getattr(importlib.import_module(module_name), attribute)
        return handler

    def invoke(self, function: Any, body: str | None, response_headers: dict[str, str]) -> bytes:
        self.invocations.append(function.function_name)
        event = json.loads(body) if body else {}
        handler = self.handler_for(function)
        future = self._pool(function.function_name).submit(
            _run, handler, event, LocalContext(function_name=function.function_name)
        )
        failed, payload, seconds = future.result()
        with self._lock:
            name = function.function_name
            self.handler_seconds[name] = self.handler_seconds.get(name, 0.0) + seconds
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


def _run(
    handler: Handler, event: dict[str, Any], context: LocalContext
) -> tuple[bool, bytes, float]:
    started = time.perf_counter()
    try:
        payload = json.dumps(handler(event, context)).encode()
    except Exception as exc:
        error = {"errorType": type(exc).__name__, "errorMessage": str(exc), "stackTrace": []}
        return True, json.dumps(error).encode(), time.perf_counter() - started
    return False, payload, time.perf_counter() - started


@contextmanager
def lambdas_in_process() -> Iterator[InProcessLambdas]:
    """Route every moto Lambda invocation to the real handler while the context is open."""
    lambdas = InProcessLambdas()
    original = LambdaFunction.invoke

    def invoke(self: Any, body: str, request_headers: Any, response_headers: Any) -> bytes:
        return lambdas.invoke(self, body, response_headers)

    LambdaFunction.invoke = invoke  # type: ignore[method-assign]
    try:
        yield lambdas
    finally:
        LambdaFunction.invoke = original  # type: ignore[method-assign]
        lambdas.shutdown()
