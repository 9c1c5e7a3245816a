"""Each function's log lines in its CloudWatch log group, as Lambda writes them: what a
function writes during an invocation goes to its log group, one event per line stamped
when it was written, in a stream of its sandbox's own; an operator reads them with
FilterLogEvents as on AWS (``escalator verify`` does).

The log group is Lambda's default, ``/aws/lambda/<function name>`` (``context.DEFAULT_LOG_GROUP``):
moto's functions have no logging configuration of their own, so that is where their
configuration says they log (on AWS, the template's log group: the same rule,
``LoggingConfig.LogGroup``, finds either). ``deploy`` creates it and registers it with
the functions (``InProcessLambdas.log_groups``).

A function in this process writes what its logger (``escalator``) writes, formatted as
its handler formats it (Powertools' JSON, masked), for the invocation whose context the
record is emitted in (a thread the function starts carries the context on); a function in
a process of its own (``devstack.emulation.sandbox``) hands back with its answer what it
wrote to stdout and stderr. Delivery is best effort, as on AWS: a line whose log group
is gone is dropped.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from moto.logs.exceptions import ResourceNotFoundException
from moto.logs.models import logs_backends


@dataclass(frozen=True)
class FunctionLogGroup:
    """A function's log group, in moto's Logs backend of its account and region."""

    account: str
    region: str
    name: str


# Writes to moto's Logs backend, which has no lock of its own.
_LOCK = threading.Lock()


class SandboxLog:
    """One sandbox's stream in its function's log group (Lambda names it after the day,
    the version and the execution environment), created with its first line."""

    def __init__(self, group: FunctionLogGroup) -> None:
        self.group = group
        self.stream = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self._created = False

    def write(self, lines: Iterable[tuple[float, str]]) -> None:
        """Write ``(epoch seconds, line)`` pairs as log events, in order."""
        events = [{"timestamp": int(at * 1000), "message": line} for at, line in lines]
        if not events:
            return
        logs = logs_backends[self.group.account][self.group.region]
        with _LOCK:
            try:
                if not self._created:
                    logs.create_log_stream(self.group.name, self.stream)
                    self._created = True
                logs.put_log_events(self.group.name, self.stream, events)
            except ResourceNotFoundException:
                pass  # (best effort, as on AWS: its log group is gone)


# This thread's sandbox log of each function (a pool thread is one sandbox).
_SANDBOXES = threading.local()


def sandbox_log(group: FunctionLogGroup | None) -> SandboxLog | None:
    """The log of this thread's sandbox of the function that logs to ``group``."""
    if group is None:
        return None
    logs: dict[FunctionLogGroup, SandboxLog] = _SANDBOXES.__dict__.setdefault("logs", {})
    if group not in logs:
        logs[group] = SandboxLog(group)
    return logs[group]


_CURRENT: contextvars.ContextVar[SandboxLog | None] = contextvars.ContextVar(
    "function_log", default=None
)


@contextmanager
def writing_to(log: SandboxLog | None) -> Iterator[None]:
    """While open, what the function logs in this context goes to ``log`` (``None``:
    nowhere but the process's own output)."""
    token = _CURRENT.set(log)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current() -> SandboxLog | None:
    """The log of the invocation running in this context, if any."""
    return _CURRENT.get()


class _Records(logging.Handler):
    """A logger's records emitted during an invocation, to its function's log group."""

    def emit(self, record: logging.LogRecord) -> None:
        log = _CURRENT.get()
        if log is None:
            return
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        log.write([(record.created, line)])


@contextmanager
def records_of(logger: logging.Logger, formatter: logging.Formatter | None) -> Iterator[None]:
    """While open, ``logger``'s records emitted during an invocation also go to the
    invocation's log group, formatted by ``formatter`` (that of the logger's own handler:
    the same line). Nested, the outermost one writes them, once."""
    if any(isinstance(handler, _Records) for handler in logger.handlers):
        yield
        return
    handler = _Records()
    if formatter is not None:
        handler.setFormatter(formatter)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
