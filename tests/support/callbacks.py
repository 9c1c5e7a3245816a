"""Status callbacks, set up: a call placed through the pipeline (its outcome recorded, or
never), a call being placed by the database steps alone, the recorder's report of one
callback as the receiver hands it over, and what a notification holds of its call."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from devstack.peers.postgres import query
from escalator.handlers import record_call_status
from tests.support.contract_cases import PHONE, phone, start
from tests.support.steps import CALLER_IDS, Steps, sending, store_registry

if TYPE_CHECKING:
    from devstack.peers.providers import Call
    from tests.support.pipeline import Pipeline

# Two calls of Twilio's, and when a callback reported on one.
SID = "CA0123456789abcdef0123456789abcdef"
OTHER_SID = "CAfedcba9876543210fedcba9876543210"
REPORTED_AT = 1_800_000_000.0


def call_record(dsn: str, notification_id: int | None = None) -> tuple[Any, ...]:
    """(state, provider_ref, provider_status, call_duration_seconds, error, when the
    status was reported in epoch seconds) of notification ``notification_id``, or of the
    only notification there is."""
    (found,) = query(
        dsn,
        "SELECT state, provider_ref, provider_status, call_duration_seconds, error,"
        " extract(epoch FROM provider_status_at)::bigint"
        " FROM notification WHERE %s::bigint IS NULL OR id = %s",
        (notification_id, notification_id),
    )
    return tuple(found)


def call_row(dsn: str, notification_id: int | None = None) -> tuple[Any, ...]:
    """(state, provider_ref, provider_status, call_duration_seconds) of notification
    ``notification_id``, or of the only notification there is."""
    return call_record(dsn, notification_id)[:4]


def lease_over(dsn: str) -> bool:
    """Whether the notification's sending lease has run out, by the database's clock (the
    one the activator judges it by)."""
    return query(dsn, "SELECT lease_until < now() FROM notification") == [(True,)]


# Through the pipeline


def placed_call(pipeline: Pipeline) -> tuple[Call, int]:
    """Deliver one call due now; the call as Twilio got it, and its notification id."""
    pipeline.submit(start("restaurant-42", phone(at=int(time.time()))))
    pipeline.machine.run()
    (call,) = pipeline.peers.twilio.calls
    ((notification_id,),) = query(pipeline.database_url, "SELECT id FROM notification")
    return call, notification_id


def placed_but_not_recorded(pipeline: Pipeline) -> Call:
    """A call Twilio placed whose outcome was never recorded (the record step crashed):
    its notification stays ``sending`` until its lease runs out."""
    record = pipeline.machine.function_named("FunctionsRecord")

    def record_unavailable(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError("sandbox crashed")

    pipeline.lambdas.overrides[record] = record_unavailable
    try:
        call, _ = placed_call(pipeline)
    finally:
        del pipeline.lambdas.overrides[record]
    return call


# Through the database steps and the recorder's handler


def calling(steps: Steps, dsn: str, channel: str = "phone") -> int:
    """A call (or a text message) being placed: claimed and confirmed, no outcome yet."""
    store_registry(dsn, CALLER_IDS)
    (notification_id,) = sending(steps, phone(PHONE, at=int(time.time()), channel=channel))
    return notification_id


def report(
    steps: Steps,
    status: str,
    *,
    notification_id: int | None,
    sid: str = SID,
    duration: int | None = None,
    channel: str = "phone",
) -> dict[str, Any]:
    """What the recorder answers to the receiver's report of one callback."""
    event = {
        "channel": channel,
        "provider_ref": sid,
        "status": status,
        "reported_at": REPORTED_AT,
        "notification_id": notification_id,
        "duration_seconds": duration,
    }
    answer: dict[str, Any] = record_call_status.handler(event, steps.context)
    return answer
