"""The use cases outside the state machine: apply one request from the queue, exactly
once (the initiator), bring the database up to date (the migration function), and take
a provider's status callback (the receiver outside the VPC)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from escalator import metrics
from escalator.caller_ids import CALLER_ID_REGISTRY
from escalator.channels.base import CallbackReader
from escalator.config import DatabaseSettings
from escalator.contract import InvalidRequest, StartRequest, parse_request
from escalator.database import UnitOfWork
from escalator.errors import CallbackRefused
from escalator.lambda_invoker import InvocationError, LambdaInvoker
from escalator.limits import MAX_LATENESS_SECONDS
from escalator.logs import logger
from escalator.masking import mask
from escalator.migrations import migrate
from escalator.model import (
    MAX_REASON_LENGTH,
    CallbackAnswer,
    MasterCredentials,
    Migrated,
    OutcomeKind,
    RequestMessage,
    RequestOutcome,
    SignedCallback,
    StatusReport,
)
from escalator.windows import DeliveryWindows, WindowNotStarted


@dataclass(frozen=True)
class NearDue:
    """Notifications of a start due sooner than ``horizon`` seconds are claimed at ingest
    (their claim lapses ``grace`` seconds after their due time if nothing confirms them)
    and delivered by a window of their own (``deliver_near_due``)."""

    horizon: int
    grace: int


def arrival_owner(message_id: str) -> str:
    """Who holds the near-due notifications a request's start claimed."""
    return f"arrival-{message_id}"


def handle_request(
    uow: UnitOfWork,
    message: RequestMessage,
    *,
    now: int,
    max_schedule_ahead: int,
    max_lateness: int = MAX_LATENESS_SECONDS,
    near_due: NearDue | None = None,
) -> RequestOutcome:
    """Validate and apply one request in one transaction, then log its outcome.

    A message seen before changes nothing. Invalid requests are recorded with their
    reason and acknowledged, whatever went wrong while reading them: only
    ``DatabaseError`` (PostgreSQL could not be reached or failed the transaction) is
    raised, nothing is written then, and the message can be retried. With ``near_due``,
    a start claims what falls due before a tick could (``RequestOutcome.arrivals``).
    """
    rules = {"now": now, "max_schedule_ahead": max_schedule_ahead, "max_lateness": max_lateness}
    with uow:
        outcome = _apply(uow, message, rules, near_due)
        # The request log is keyed by message id: a message applied before (a redelivery,
        # or a concurrent delivery that committed first) conflicts here, and everything
        # this transaction did is rolled back. The common path pays no extra look-up.
        if uow.requests.record(message, outcome):
            uow.commit()
        else:
            outcome = RequestOutcome(message_id=message.message_id, kind="duplicate")
    _log(outcome)
    return outcome


def _apply(
    uow: UnitOfWork, message: RequestMessage, rules: dict[str, int], near_due: NearDue | None
) -> RequestOutcome:
    try:
        request = parse_request(message.body, **rules)
    except InvalidRequest as exc:
        return RequestOutcome(
            message_id=message.message_id,
            kind="rejected",
            process_id=exc.process_id,
            action=exc.action,
            reason=exc.reason,
        )
    except Exception as exc:
        # Reading a body is pure: whatever fails there fails again on every retry, and a
        # retried message blocks its group. Rejected and recorded, like any broken body.
        return RequestOutcome(
            message_id=message.message_id,
            kind="rejected",
            reason=f"body could not be read ({type(exc).__name__}): {mask(str(exc))}"[
                :MAX_REASON_LENGTH
            ],
        )

    def result(kind: OutcomeKind, **details: Any) -> RequestOutcome:
        return RequestOutcome(
            message_id=message.message_id,
            kind=kind,
            process_id=request.process_id,
            action=request.action,
            **details,
        )

    if isinstance(request, StartRequest):
        process_ref = uow.processes.start(request.process_id, request.notifications)
        if process_ref is None:
            return result("ignored", reason="an active process has this id")
        rejected = request.rejected
        if len(rejected) == len(request.notifications):
            # Nothing to deliver: the process exists (it is on record) and ends at once.
            uow.processes.complete_finished([process_ref])
        arrivals = (
            uow.notifications.claim_arrivals(
                process_ref,
                owner=arrival_owner(message.message_id),
                horizon=near_due.horizon,
                grace=near_due.grace,
            )
            if near_due is not None
            else []
        )
        return result(
            "started",
            process_ref=process_ref,
            notifications=len(request.notifications) - len(rejected),
            rejected=len(rejected),
            rejected_reasons=tuple(item.rejected or "" for item in rejected),
            arrivals=tuple(arrivals),
        )
    stopped = uow.processes.stop(request.process_id)
    if stopped is None:
        return result("ignored", reason="no active process has this id")
    return result("stopped", process_ref=stopped.process_ref, cancelled=stopped.cancelled)


def deliver_near_due(
    uow: UnitOfWork, windows: DeliveryWindows, outcomes: Sequence[RequestOutcome]
) -> None:
    """Start one delivery window for what the starts of a batch claimed at ingest
    (``RequestOutcome.arrivals``) and, for each request seen before, what its first
    application claimed and nothing has confirmed yet (its window may never have
    started). A second window for a claim is harmless: the confirm step lets one of them
    deliver each notification.

    A window that did not start releases its claims to the ticks (what a window that
    started after all confirms first stays its own). Raises only ``DatabaseError``."""
    arrivals = [item for outcome in outcomes for item in outcome.arrivals]
    seen_before = [outcome for outcome in outcomes if outcome.kind == "duplicate"]
    if seen_before:
        with uow:
            for outcome in seen_before:
                arrivals += uow.notifications.claimed_by(arrival_owner(outcome.message_id))
    if not arrivals:
        return
    owners = sorted({item.owner for item in arrivals})
    keys = {"owners": owners, "notification_ids": [item.id for item in arrivals]}
    try:
        execution = windows.start(arrivals)
    except WindowNotStarted as exc:
        with uow:
            released = sum(uow.notifications.release(owner) for owner in owners)
            uow.commit()
        metrics.count(metrics.WINDOWS_FAILED)
        logger.warning(
            "near-due delivery not started: left to the next tick",
            extra={**keys, "released": released, "reason": str(exc)},
        )
        return
    logger.info("near-due delivery started", extra={**keys, "execution": execution})


# Valid requests, applied or ignored (a redelivered one is counted when it first came).
_ACCEPTED = frozenset({"started", "stopped", "ignored"})
_MESSAGES = {
    "started": "process started",
    "stopped": "process stopped",
    "ignored": "request ignored",
    "rejected": "request rejected",
    "duplicate": "redelivered request skipped",
}


def _log(outcome: RequestOutcome) -> None:
    fields = {
        key: value
        for key, value in {
            "outcome": outcome.kind,
            "message_id": outcome.message_id,
            "process_id": outcome.process_id,
            "action": outcome.action,
            "reason": outcome.reason,
            "notifications": outcome.notifications if outcome.kind == "started" else None,
            "cancelled": outcome.cancelled if outcome.kind == "stopped" else None,
            "rejected_notifications": outcome.rejected or None,
            "rejected_reasons": list(outcome.rejected_reasons) or None,
        }.items()
        if value is not None
    }
    level = logger.warning if outcome.kind == "rejected" or outcome.rejected else logger.info
    level(_MESSAGES[outcome.kind], extra=fields)


def count_requests(outcomes: Sequence[RequestOutcome]) -> None:
    """The dashboard's request counters for a batch's outcomes: one data point each per
    batch (an EMF value costs as much as the SQL of a request; CloudWatch sums them)."""
    metrics.count(metrics.REJECTED, sum(outcome.rejected for outcome in outcomes))
    metrics.count(metrics.REQUESTS_ACCEPTED, sum(outcome.kind in _ACCEPTED for outcome in outcomes))
    metrics.count(
        metrics.REQUESTS_REJECTED, sum(outcome.kind == "rejected" for outcome in outcomes)
    )


def store_caller_id_registry(uow: UnitOfWork, registry_json: str) -> None:
    """Store the caller-id registry (``property`` table), replacing the previous one."""
    with uow:
        uow.properties.put(CALLER_ID_REGISTRY, registry_json)
        uow.commit()
    logger.info("caller-id registry stored", extra={"entries": len(json.loads(registry_json))})


def migrate_database(
    uow: UnitOfWork, *, database: DatabaseSettings, sql_dir: Path, caller_id_registry: str | None
) -> Migrated:
    """Apply the pending migrations, then store the caller-id registry when one is given.

    Raises ``MigrationError`` naming the file that failed; the database stays at the last
    good version.
    """
    applied = migrate(database, sql_dir, progress=logger.info)
    if caller_id_registry is not None:
        store_caller_id_registry(uow, caller_id_registry)
    return Migrated(
        applied=tuple(migration.filename for migration in applied),
        caller_ids_stored=caller_id_registry is not None,
    )


def launch_migration(
    invoker: LambdaInvoker, migration_function: str, master: MasterCredentials
) -> dict[str, object]:
    """Hand the master credentials to the migration function and return its answer.

    The credentials travel only in the invocation's payload: nothing here logs them,
    and an error names the migration's failure, never them. Raises ``InvocationError``.
    """
    answer = invoker.invoke(migration_function, master.to_event())
    logger.info("migration finished", extra={"applied": answer.get("applied")})
    return answer


def receive_status_callback(
    readers: Sequence[CallbackReader],
    invoker: LambdaInvoker,
    recorder_function: str,
    callback: SignedCallback,
) -> CallbackAnswer:
    """Check a status callback with the reader of the channel it is of, and hand the
    report to the recorder in the VPC.

    403 and nothing written for a callback of no channel, or with a bad or missing
    signature; 200 for every report the recorder took, an unknown delivery included;
    502 when the recorder failed (nothing written: its transaction rolled back).
    """
    try:
        report = _read(readers, callback)
    except CallbackRefused as exc:
        logger.warning("status callback refused", extra={"reason": str(exc)})
        return CallbackAnswer(403, "forbidden")
    try:
        answer = invoker.invoke(recorder_function, report.to_event())
    except InvocationError as exc:
        logger.error(
            "status callback not recorded",
            extra={"notification_id": report.notification_id, "reason": str(exc)},
        )
        return CallbackAnswer(502, "not recorded")
    return CallbackAnswer(200, str(answer.get("outcome", "")))


def _read(readers: Sequence[CallbackReader], callback: SignedCallback) -> StatusReport:
    """The report of the first reader whose channel the callback is of."""
    for reader in readers:
        report = reader.read(callback)
        if report is not None:
            return report
    raise CallbackRefused("not a status callback of any channel")
