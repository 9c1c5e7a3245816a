"""The delivery use cases, one per step of the state machine, and the provider's later
account of a delivery.

claim (activator) -> confirm -> deliver (notifier, no database) -> record;
record_provider_status (a provider's status callbacks, through the receiver).
"""

from __future__ import annotations

import contextvars
import dataclasses
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from escalator import metrics
from escalator.caller_ids import CALLER_ID_REGISTRY, CallerIdError, choose_caller_id
from escalator.channels import CHANNELS, RECIPIENT_CHANNELS, Notifier
from escalator.channels.base import ProviderStatuses
from escalator.config import DeliveryConfig
from escalator.database import UnitOfWork
from escalator.errors import AmbiguousDeliveryError, TransientDeliveryError
from escalator.lifecycle import NotificationState
from escalator.logs import logger
from escalator.model import (
    CONFIRM_TOKEN_SEPARATOR,
    Ambiguous,
    ClaimedNotification,
    Delivery,
    Failure,
    Outcome,
    Receipt,
    Recorded,
    RecordedKind,
    StatusRecorded,
    StatusReport,
)
from escalator.repository import CoverSettled, Finished, ProviderRecord

NOTHING_SETTLED = CoverSettled(finished=[], reopened=[], cancelled=[], process_refs=[])


@dataclass(frozen=True)
class Claim:
    """What one activation claimed, and whether more is due right now."""

    notifications: list[ClaimedNotification]
    more: bool

    def to_event(self) -> dict[str, Any]:
        return {
            "notifications": [item.to_event() for item in self.notifications],
            "more": self.more,
            "claimed": len(self.notifications),
        }


def claim_due(
    uow: UnitOfWork, *, execution: str, config: DeliveryConfig, lookahead: int | None = None
) -> Claim:
    """Tidy lapsed claims and leases, expire what is too late, complete finished
    processes, then claim the notifications due within the lookahead, oldest first."""
    window = lookahead or config.lookahead_seconds
    with uow:
        tidied = uow.notifications.housekeep(expire_after=config.expire_after)
        # (before the claim: what a failed cover leaves owed is claimed in this one)
        settled = uow.notifications.settle_covered()
        completed = len(
            uow.processes.complete_finished(tidied.unknown + tidied.expired + settled.process_refs)
        )
        claimed = uow.notifications.claim_due(
            owner=execution,
            lookahead=window,
            limit=config.claim_batch_size,
            grace=config.claim_grace_seconds,
        )
        more = len(claimed) == config.claim_batch_size and uow.notifications.any_due(
            lookahead=window
        )
        uow.commit()
    metrics.count(metrics.EXPIRED, len(tidied.expired))
    metrics.count(metrics.UNKNOWN, len(tidied.unknown))
    _report_settled(settled, execution=execution)
    if more:  # the tick hands over to a fresh one once it has delivered this batch
        metrics.count(metrics.HANDED_OVER)
    logger.info(
        "notifications claimed",
        extra={
            "execution": execution,
            "claimed": len(claimed),
            "more": more,
            "released": tidied.released,
            "unknown": len(tidied.unknown),
            "expired": len(tidied.expired),
            "completed": completed,
        },
    )
    return Claim(notifications=claimed, more=more)


# How much of a failed window's cause the tick's summary keeps.
CAUSE_LIMIT = 2000


@dataclass(frozen=True)
class WindowFailure:
    """A delivery window that failed, ran out of time or never started, as the tick saw
    it, and how many of its claims went back to pending."""

    status: str
    error: str
    cause: str
    released: int

    @classmethod
    def of(cls, window: Mapping[str, Any], released: int) -> WindowFailure:
        """From StartSyncExecution's answer (``Status``, ``Error``, ``Cause``: only the
        status is always there) or the error the start failed with (``Error``, ``Cause``)."""
        error = str(window.get("Error") or "")
        status = window.get("Status")
        if not status:
            status = "NOT_STARTED" if error.startswith("Sfn.") else "UNANSWERED"
        return cls(
            status=str(status),
            error=error or str(status),
            cause=str(window.get("Cause") or "")[:CAUSE_LIMIT],
            released=released,
        )

    def to_event(self) -> dict[str, Any]:
        return {
            "failed": True,
            "status": self.status,
            "error": self.error,
            "cause": self.cause,
            "released": self.released,
        }


def release_window(uow: UnitOfWork, *, execution: str, window: Mapping[str, Any]) -> WindowFailure:
    """The tick's delivery window failed or never started: what it still holds claimed
    (not confirmed) goes back to pending at once, for the next tick; what it confirmed
    stays its own (recorded, or unknown once its sending lease runs out). Counted, so its
    alarm goes off."""
    with uow:
        released = uow.notifications.release(execution)
        uow.commit()
    failure = WindowFailure.of(window, released)
    metrics.count(metrics.WINDOWS_FAILED)
    logger.error(
        "delivery window failed: its claims released to the next tick",
        extra={"execution": execution, **failure.to_event()},
    )
    return failure


def release_unconfirmed(uow: UnitOfWork, *, notification_id: int, execution: str, run: str) -> bool:
    """The confirm step of one Map iteration (``run``) failed after its retries: the
    notifier never ran, whatever the step committed (an answer lost each time), so the
    notification goes back to pending for the next tick, not to ``unknown`` when its
    sending lease runs out. Whether it was released."""
    with uow:
        released = uow.notifications.release_unconfirmed(notification_id, owner=execution, run=run)
        uow.commit()
    logger.warning(
        "not confirmed: released to the next tick" if released else "not confirmed",
        extra={"notification_id": notification_id, "execution": execution, "released": released},
    )
    return released


ConfirmationKind = Literal["confirmed", "resumed", "skipped", "expired", "failed", "coalesced"]


@dataclass(frozen=True)
class Confirmation:
    """The answer of the confirm step: deliver this (``confirmed``, or ``resumed`` by a
    retry), or do not (``skipped``, ``expired``, ``failed``, ``coalesced``), with a
    reason; ``channel`` is the failed delivery's."""

    delivery: Delivery | None
    reason: str | None = None
    kind: ConfirmationKind = "confirmed"
    channel: str | None = None
    # a coalesced notification's: the notification whose delivery covered it
    covered_by: int | None = None

    def to_event(self) -> dict[str, Any]:
        if self.delivery is None:
            event: dict[str, Any] = {"deliver": False, "reason": self.reason}
            if self.covered_by is not None:
                event["covered_by"] = self.covered_by
            return event
        return {"deliver": True, "delivery": self.delivery.to_event()}


def confirm(
    uow: UnitOfWork,
    *,
    notification_id: int,
    execution: str,
    config: DeliveryConfig,
    due: str | None = None,
    retry_count: int = 0,
    entered: str | None = None,
    run: str | None = None,
) -> Confirmation:
    """The last check before sending: claimed by this execution, process still active,
    not too late. Moves the notification to ``sending`` and adds the caller id of a
    delivery whose channel calls from one; all in one transaction.

    Which entry of the step made the move is remembered with it (``confirm_token``: the
    step's ``$$.State.EnteredTime``, ``entered``, and the ``run`` of the window its Map
    iteration drew): a retry of the same entry (``retry_count`` > 0; the first attempt's
    answer was lost) gets the same delivery back, unless the process ended meanwhile
    (then the notification is cancelled: its notifier never ran). A second run of the
    execution, even one entering the step in the same millisecond, never delivers again.
    """
    _wait_for(due, config.confirm_max_wait_seconds)
    tokens = confirm_tokens(entered, run)
    with uow:
        confirmation = _check(uow, notification_id, execution, config, retry_count, tokens)
        uow.commit()
    _report(confirmation, notification_id=notification_id, execution=execution)
    return confirmation


def confirm_tokens(entered: str | None, run: str | None) -> tuple[str, ...]:
    """What tells one entry of the confirm step from any other: the first is stored with
    the move to ``sending``, and a retry resumes a delivery stored with any of them.

    ``entered`` alone cannot tell two runs of one window apart (an Express execution may
    run twice, with the same input and id, and enter the step in the same millisecond):
    with ``run`` (drawn once per Map iteration, the same for each retry of its steps), the
    token is both. A move the confirm function of the release before made (``entered``
    alone: a deploy lands while windows are in flight) is still resumed by the retry of
    its entry; a definition of the release before sends no ``run``, and is answered as
    that release answered it."""
    if not entered:
        return ()
    if not run:
        return (entered,)
    return (f"{entered}{CONFIRM_TOKEN_SEPARATOR}{run}", entered)


def _wait_for(due: str | None, at_most: float) -> None:
    """Wait out what is left before ``due``, at most ``at_most`` seconds: the Wait state
    before the confirm step resolves whole seconds and may end a fraction early, and
    nothing is delivered before its due time."""
    if due is not None:
        early = _epoch(due) - time.time()
        if early > 0:
            time.sleep(min(early, at_most))


def _check(
    uow: UnitOfWork,
    notification_id: int,
    execution: str,
    config: DeliveryConfig,
    retry_count: int,
    tokens: tuple[str, ...],
) -> Confirmation:
    # (the housekeeping's bound: what it left pending for a tick is delivered here)
    if uow.notifications.expire_if_late(
        notification_id, owner=execution, expire_after=config.expire_after
    ):
        return Confirmation(None, "too late: expired", "expired")
    coalesced = _coalesce_if_covered(uow, notification_id, execution, config)
    if coalesced is not None:
        return coalesced
    delivery = uow.notifications.start_sending(
        notification_id,
        owner=execution,
        lease=config.sending_lease_seconds,
        token=tokens[0] if tokens else None,
    )
    if delivery is not None:
        return _with_caller_id(uow, delivery, execution, "confirmed")
    if retry_count > 0 and tokens:
        resumed = uow.notifications.resume_sending(notification_id, owner=execution, tokens=tokens)
        if isinstance(resumed, Delivery):
            return _with_caller_id(uow, resumed, execution, "resumed")
        return Confirmation(None, resumed, "skipped")
    return Confirmation(
        None, uow.notifications.why_not_sending(notification_id, owner=execution), "skipped"
    )


def _coalesce_if_covered(
    uow: UnitOfWork, notification_id: int, execution: str, config: DeliveryConfig
) -> Confirmation | None:
    """The per-recipient guard: another process's recent delivery to the same target
    covers this notification (``coalesced``, not delivered again); ``None`` otherwise."""
    if config.recipient_guard_seconds <= 0:
        return None
    coalesced = uow.notifications.coalesce_if_covered(
        notification_id,
        owner=execution,
        window=config.recipient_guard_seconds,
        channels=RECIPIENT_CHANNELS,
    )
    if coalesced is None:
        return None
    if coalesced.waiting:
        reason = f"coalesced: covered by notification {coalesced.covered_by}, still being sent"
    else:
        uow.processes.complete_finished([coalesced.process_ref])
        reason = f"coalesced: covered by notification {coalesced.covered_by}"
    return Confirmation(None, reason, "coalesced", covered_by=coalesced.covered_by)


def _with_caller_id(
    uow: UnitOfWork, delivery: Delivery, execution: str, kind: ConfirmationKind
) -> Confirmation:
    """The delivery, naming the claim's owner, with the caller id its channel calls from,
    if it calls from one; a recorded failure when there is none."""
    delivery = dataclasses.replace(delivery, owner=execution)
    channel = CHANNELS.get(delivery.channel)
    if channel is None or not channel.calls_from_caller_id:
        return Confirmation(delivery, kind=kind)
    try:
        caller_id = choose_caller_id(uow.properties.get(CALLER_ID_REGISTRY), delivery.target)
    except CallerIdError as exc:
        reason = f"no caller id: {exc}"
        finished = _finish_notification(uow, delivery.notification_id, execution, Failure(reason))
        if finished is not None:
            uow.processes.complete_finished([finished.process_ref])
        return Confirmation(None, reason, "failed", channel=delivery.channel)
    return Confirmation(dataclasses.replace(delivery, caller_id=caller_id), kind=kind)


def _report(confirmation: Confirmation, *, notification_id: int, execution: str) -> None:
    """One log line (and the metric) for what the confirm step decided."""
    keys: dict[str, object] = {
        "notification_id": notification_id,
        "execution": execution,
        "outcome": confirmation.kind,
    }
    if confirmation.delivery is not None:
        keys["process_id"] = confirmation.delivery.process_id
    if confirmation.kind == "expired":
        metrics.count(metrics.EXPIRED)
        logger.warning("notification expired", extra=keys)
    elif confirmation.kind == "failed":
        metrics.count(metrics.FAILED, Channel=confirmation.channel)
        logger.warning("delivery failed", extra={**keys, "reason": confirmation.reason})
    elif confirmation.kind == "coalesced":
        metrics.count(metrics.COALESCED)
        logger.info("notification coalesced", extra={**keys, "reason": confirmation.reason})
    elif confirmation.kind == "skipped":
        logger.info("delivery skipped", extra={**keys, "reason": confirmation.reason})
    elif confirmation.kind == "resumed":
        logger.info("delivery resumed: a retry after a lost answer", extra=keys)


# What a notifier keeps of its function's remaining time to log and answer.
ANSWER_MARGIN_SECONDS = 2.0


def deliver(notifier: Notifier, delivery: Delivery, time_left: float | None = None) -> Receipt:
    """Hand the delivery to the channel's provider (no database involved), within the
    function's ``time_left`` (seconds) less a margin to answer: a provider that has not
    answered by then (one trickling its answer never trips a per-read timeout) may have
    the request, so the delivery ends ``AmbiguousDeliveryError`` rather than never.

    Raises ``TransientDeliveryError``, ``PermanentDeliveryError`` or
    ``AmbiguousDeliveryError`` from the adapter.
    """
    keys = {"notification_id": delivery.notification_id, "process_id": delivery.process_id}
    try:
        if time_left is None:
            receipt = notifier.deliver(delivery)
        else:
            receipt = _within(notifier, delivery, time_left - ANSWER_MARGIN_SECONDS)
    except Exception as exc:
        logger.warning(
            "delivery attempt failed",
            extra={
                **keys,
                "channel": delivery.channel,
                "error": type(exc).__name__,
                "reason": str(exc),
            },
        )
        raise
    logger.info(
        "notification delivered",
        extra={**keys, "channel": delivery.channel, "provider_ref": receipt.provider_ref},
    )
    return receipt


def _within(notifier: Notifier, delivery: Delivery, seconds: float) -> Receipt:
    """``notifier.deliver(delivery)``, given up after ``seconds`` (its thread is left to
    end on its own: the function answers, and its sandbox freezes it)."""
    if seconds <= 0:
        raise TransientDeliveryError("no time left to deliver before the function's timeout")
    outcome: list[Receipt | BaseException] = []

    def run() -> None:
        try:
            outcome.append(notifier.deliver(delivery))
        except BaseException as exc:  # (raised again in the caller's thread)
            outcome.append(exc)

    # (in the invocation's context: what the call logs is the invocation's)
    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(run,), name="provider-call", daemon=True)
    worker.start()
    worker.join(seconds)
    if not outcome:
        raise AmbiguousDeliveryError(
            f"no answer from the provider within {seconds:.1f} s, before the function's "
            "timeout; it may have the request: not retried"
        )
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def record_outcome(
    uow: UnitOfWork, *, notification_id: int, execution: str, outcome: Outcome
) -> Recorded:
    """Record ``sent`` with the provider's reference, ``failed`` with the reason, or
    ``unknown`` when the provider may have it; complete the process when nothing is left
    to deliver. A retry after a committed outcome changes nothing and answers what was
    recorded; ``stale`` when this execution no longer owns the notification."""
    with uow:
        # (first: a confirm deciding whether this delivery covers it waits for the outcome)
        uow.notifications.lock_recipient(notification_id, channels=RECIPIENT_CHANNELS)
        finished = _finish_notification(uow, notification_id, execution, outcome)
        if finished is not None:
            # (two statements saved on most records: the recipient's lock keeps a confirm
            # from coalescing into this one between the finish and here)
            settled = (
                uow.notifications.settle_covered(notification_id)
                if finished.awaited
                else NOTHING_SETTLED
            )
            completed = finished.process_ref in uow.processes.complete_finished(
                [finished.process_ref, *settled.process_refs]
            )
            uow.commit()
            _report_settled(settled, execution=execution)
            result = Recorded(notification_id, cast(RecordedKind, finished.state), completed)
        else:
            before = uow.notifications.recorded(notification_id, owner=execution)
            result = (
                Recorded(notification_id, "stale")
                if before is None
                else Recorded(
                    notification_id,
                    cast(RecordedKind, before.state),
                    before.completed_process,
                    repeated=True,
                )
            )
    if finished is not None:
        _count(result.outcome, finished)
    logger.info(
        "outcome recorded" if not result.repeated else "outcome recorded before",
        extra={
            "notification_id": notification_id,
            "execution": execution,
            "outcome": result.outcome,
            "provider_ref": outcome.provider_ref if isinstance(outcome, Receipt) else None,
            "reason": None if isinstance(outcome, Receipt) else outcome.reason,
            "process_completed": result.process_completed,
            "repeated": result.repeated,
        },
    )
    return result


def _report_settled(settled: CoverSettled, *, execution: str) -> None:
    """One log line for each notification whose cover's outcome decided its own."""
    for notification_id in settled.finished:
        logger.info(
            "coalesced notification finished: its cover may have reached the person",
            extra={"notification_id": notification_id, "execution": execution},
        )
    for notification_id in settled.reopened:
        logger.warning(
            "coalesced notification due again: its cover did not go out",
            extra={"notification_id": notification_id, "execution": execution},
        )
    for notification_id in settled.cancelled:
        logger.info(
            "coalesced notification cancelled: its cover did not go out, its process ended",
            extra={"notification_id": notification_id, "execution": execution},
        )


# The state an outcome is recorded as.
_STATE_OF: dict[type, RecordedKind] = {Receipt: "sent", Failure: "failed", Ambiguous: "unknown"}


def _count(kind: RecordedKind, finished: Finished) -> None:
    if kind == "sent":
        metrics.count(metrics.SENT, Channel=finished.channel)
        metrics.lateness(finished.lateness_seconds)
    elif kind == "failed":
        metrics.count(metrics.FAILED, Channel=finished.channel)
    elif kind == "unknown":
        metrics.count(metrics.UNKNOWN, Channel=finished.channel)


def record_provider_status(uow: UnitOfWork, report: StatusReport) -> StatusRecorded:
    """Record what the provider reported about a delivery (a call, a message), unless a
    later status is on record already (callbacks arrive more than once and out of order).

    A callback settles only its own delivery: once a notification knows its provider's
    reference (the call's or message's SID), only callbacks of that one are recorded;
    one that does not know it yet (being sent, or ``unknown``: the provider may have it)
    is bound to the first one reported, and an ``unknown`` one is settled ``sent``: the
    provider took it. A notification the provider never took (refused, no caller id,
    never attempted) is never touched by a callback. Raises ``ValueError`` for a status
    its channel does not report."""
    statuses = _reported_statuses(report)
    with uow:
        record = uow.provider_statuses.lock(
            channel=report.channel,
            notification_id=report.notification_id,
            provider_ref=report.provider_ref,
        )
        if record is None or not _may_be_its_delivery(record, report.provider_ref):
            result = StatusRecorded("unknown-delivery", notification_id=report.notification_id)
        elif not statuses.supersedes(report.status, record.provider_status):
            result = StatusRecorded("superseded", record.notification_id, record.provider_status)
        else:
            settle = record.state == NotificationState.UNKNOWN
            uow.provider_statuses.set_status(record.notification_id, report, settle=settle)
            uow.commit()
            result = StatusRecorded(
                "settled" if settle else "recorded",
                record.notification_id,
                report.status,
                became_final=report.status in statuses.final,
            )
    if result.became_final:
        metrics.status_ended(
            statuses.metric(report.status),
            statuses.failed_share_metric,
            failed=report.status in statuses.failed,
        )
    log = logger.warning if result.outcome == "unknown-delivery" else logger.info
    log(
        "provider status " + result.outcome.replace("-", " "),
        extra={
            "notification_id": result.notification_id,
            "channel": report.channel,
            "provider_ref": report.provider_ref,
            "provider_status": report.status,
            "outcome": result.outcome,
            "recorded_status": result.provider_status,
        },
    )
    return result


def _reported_statuses(report: StatusReport) -> ProviderStatuses:
    """The statuses the report's channel reports; ``ValueError`` unless its status is one."""
    channel = CHANNELS.get(report.channel)
    callbacks = None if channel is None else channel.callbacks
    if callbacks is None or report.status not in callbacks.statuses.order:
        raise ValueError(f"channel {report.channel!r} reports no status {report.status!r}")
    return callbacks.statuses


def _may_be_its_delivery(record: ProviderRecord, provider_ref: str) -> bool:
    """Whether the provider's delivery ``provider_ref`` may be this notification's."""
    if record.provider_ref is not None:
        return record.provider_ref == provider_ref
    return record.state in (NotificationState.SENDING, NotificationState.UNKNOWN)


def _finish_notification(
    uow: UnitOfWork, notification_id: int, execution: str, outcome: Outcome
) -> Finished | None:
    if isinstance(outcome, Receipt):
        return uow.notifications.finish(
            notification_id,
            owner=execution,
            state="sent",
            provider_ref=outcome.provider_ref,
            error=None,
        )
    return uow.notifications.finish(
        notification_id,
        owner=execution,
        state=_STATE_OF[type(outcome)],
        provider_ref=None,
        error=outcome.reason,
    )


def _epoch(timestamp: str) -> float:
    """Epoch seconds of an RFC 3339 timestamp ending in ``Z``."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
