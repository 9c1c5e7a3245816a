"""How long finished work is kept, and the purge that deletes what is older.

A process that ended (stopped or completed) and owes nothing (none of its notifications
is still being sent or waiting for another's outcome) is deleted with its notifications
and their provider records once it ended more than the retention period ago. The
request log is kept longer when it must be: as long as a request can still come back
(``REQUEST_LOG_HORIZON``), so that a request redriven from the dead-letter queue finds
its entry and is applied once. Each batch is one short transaction over rows nobody
else changes (a claim, a confirm or a stop only touches what is active or owed): a purge
never waits on, and never holds up, a claim. A provider's callback may hold a finished
notification for a moment; a batch waits for it at most ``LOCK_WAIT_MILLISECONDS``, else
the purge stops there and the next one goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2.errors

from escalator.database import Database, UnitOfWork
from escalator.errors import DatabaseError
from escalator.logs import logger

# How long each queue keeps a request (infra/queue.py sets them from these). A FIFO
# queue's message starts its dead-letter retention anew when it is moved there.
REQUEST_QUEUE_RETENTION_DAYS = 4
DEAD_LETTER_RETENTION_DAYS = 14
# A redrive (escalator dlq redrive) puts a request back into the request queue, where it
# is applied within minutes; a day covers a redrive run and an outage during it.
REDRIVE_ALLOWANCE_DAYS = 1
# The longest a request can come back after it was first applied: a request log entry is
# never deleted younger than this, whatever the retention period.
REQUEST_LOG_HORIZON = timedelta(
    days=REQUEST_QUEUE_RETENTION_DAYS + DEAD_LETTER_RETENTION_DAYS + REDRIVE_ALLOWANCE_DAYS
)
# The retention period unless the stack's ``retention_days`` says otherwise.
DEFAULT_RETENTION_DAYS = 30
# Processes (or request-log entries) per batch: each batch is one short transaction.
PURGE_BATCH = 500
# How long a batch waits for a row another transaction holds before trying later.
LOCK_WAIT_MILLISECONDS = 500


@dataclass(frozen=True)
class Purged:
    """What a purge deleted (or, in a dry run, would delete)."""

    processes: int = 0
    notifications: int = 0
    requests: int = 0

    def __add__(self, other: Purged) -> Purged:
        return Purged(
            self.processes + other.processes,
            self.notifications + other.notifications,
            self.requests + other.requests,
        )

    def describe(self) -> str:
        return (
            f"{self.processes} processes, {self.notifications} notifications, "
            f"{self.requests} request-log entries"
        )


@dataclass(frozen=True)
class Cutoffs:
    """What is old enough to go: processes that ended before ``finished_before``, request
    log entries received before ``requests_before`` (never later than the horizon)."""

    finished_before: datetime
    requests_before: datetime

    @classmethod
    def at(cls, now: datetime, older_than: timedelta) -> Cutoffs:
        if older_than < timedelta(0):
            raise ValueError(f"a retention period is not negative: {older_than}")
        return cls(now - older_than, now - max(older_than, REQUEST_LOG_HORIZON))


@dataclass(frozen=True)
class PurgeResult:
    """A purge's outcome: what went, and whether it stopped before the end (its time ran
    out: the next purge goes on)."""

    purged: Purged
    cutoffs: Cutoffs
    complete: bool
    # why it stopped before the end: its time ran out, or a row stayed held
    stopped: str | None = None

    def to_event(self) -> dict[str, Any]:
        """What the purge function returns."""
        return {
            "processes": self.purged.processes,
            "notifications": self.purged.notifications,
            "requests": self.purged.requests,
            "finished_before": self.cutoffs.finished_before.isoformat(),
            "requests_before": self.cutoffs.requests_before.isoformat(),
            "complete": self.complete,
            "stopped": self.stopped,
        }


def purge(
    database: Database,
    older_than: timedelta,
    *,
    now: datetime | None = None,
    batch: int = PURGE_BATCH,
    time_left: Callable[[], float] | None = None,
    progress: Callable[[Purged], None] | None = None,
) -> PurgeResult:
    """Delete what finished longer than ``older_than`` ago, a batch per transaction, until
    nothing is left or ``time_left()`` (seconds) falls below what a batch needs."""
    cutoffs = Cutoffs.at(now or datetime.now(UTC), older_than)
    total = Purged()
    batch_seconds = 0.0
    while time_left is None or time_left() > 2 * batch_seconds + 1:
        started = time.monotonic()
        try:
            with UnitOfWork(database) as uow:
                uow.retention.limit_lock_waits(LOCK_WAIT_MILLISECONDS)
                processes, notifications = uow.retention.purge_finished(
                    before=cutoffs.finished_before, limit=batch
                )
                requests = uow.retention.purge_requests(before=cutoffs.requests_before, limit=batch)
                uow.commit()
        except DatabaseError as exc:
            if not isinstance(exc.__cause__, psycopg2.errors.LockNotAvailable):
                raise
            return PurgeResult(total, cutoffs, complete=False, stopped="a row stayed held")
        batch_seconds = max(batch_seconds, time.monotonic() - started)
        total += Purged(processes, notifications, requests)
        if progress is not None:
            progress(total)
        if processes < batch and requests < batch:
            return PurgeResult(total, cutoffs, complete=True)
    return PurgeResult(total, cutoffs, complete=False, stopped="its time ran out")


def purge_and_report(
    database: Database, older_than: timedelta, *, time_left: Callable[[], float] | None = None
) -> PurgeResult:
    """``purge``, as the hourly function runs it: what went is logged (one line, its counts
    as fields; no metric of its own: the dashboard holds the fifty a free one may)."""
    result = purge(database, older_than, time_left=time_left)
    purged = result.purged
    logger.info(
        f"purged {purged.describe()}"
        + ("" if result.complete else f"; stopped before the end: {result.stopped}"),
        extra={
            "purged": {
                "processes": purged.processes,
                "notifications": purged.notifications,
                "requests": purged.requests,
            },
            "finished_before": result.cutoffs.finished_before.isoformat(),
            "requests_before": result.cutoffs.requests_before.isoformat(),
            "complete": result.complete,
        },
    )
    return result


def purgeable(
    database: Database, older_than: timedelta, *, now: datetime | None = None
) -> PurgeResult:
    """What ``purge`` would delete now (a dry run: nothing is deleted)."""
    cutoffs = Cutoffs.at(now or datetime.now(UTC), older_than)
    with UnitOfWork(database) as uow:
        row = uow.retention.count_purgeable(
            finished_before=cutoffs.finished_before, requests_before=cutoffs.requests_before
        )
    return PurgeResult(Purged(row.processes, row.notifications, row.requests), cutoffs, True)


def statistics(database: Database) -> dict[str, Any]:
    """The tables' sizes (data, indexes, dead rows) and their rows by state, with the oldest."""
    with UnitOfWork(database) as uow:
        sizes = uow.retention.sizes()
        counts = uow.retention.counts_by_state()
    return {
        "tables": [row._asdict() for row in sizes],
        "rows": [row._asdict() for row in counts],
    }
