"""Record Lambda: writes a notification's outcome.

Input: ``{"notification_id": ..., "execution": ..., "receipt": {...}}`` after a delivery,
``{..., "failure": {"Error": ..., "Cause": ...}}`` as the state machine caught an error
that proves nothing was delivered, or ``{..., "unknown": {"Error": ..., "Cause": ...}}``
for one after which the provider may have it; the handler turns each into a domain
value, so the use case never reads a catch. ``{..., "run": ..., "not_confirmed": {...}}``
after the confirm step failed: what that Map iteration holds goes back to pending.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from escalator import bootstrap
from escalator.logs import logger
from escalator.metrics import metrics
from escalator.model import Ambiguous, Failure, Outcome, Receipt


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "not_confirmed" in event:
        released = bootstrap.delivery_steps().release_unconfirmed(
            notification_id=int(event["notification_id"]),
            execution=str(event["execution"]),
            run=str(event["run"]),
        )
        return {"released": released}
    recorded = bootstrap.delivery_steps().record(
        notification_id=int(event["notification_id"]),
        execution=str(event["execution"]),
        outcome=outcome_of(event),
    )
    return recorded.to_event()


def outcome_of(event: dict[str, Any]) -> Outcome:
    """The receipt of a delivery, or what the state machine caught."""
    receipt = event.get("receipt")
    if isinstance(receipt, dict):
        return Receipt.from_event(receipt)
    unknown = event.get("unknown")
    if isinstance(unknown, dict):
        return Ambiguous(failure_of(unknown).reason)
    return failure_of(event.get("failure") or {})


def failure_of(caught: dict[str, Any]) -> Failure:
    """A readable reason from a Step Functions catch (``{"Error": ..., "Cause": ...}``):
    the error name and, when the cause is a Lambda error, its message."""
    error = str(caught.get("Error") or "Error")
    cause = caught.get("Cause")
    message = ""
    if isinstance(cause, str):
        try:
            parsed = json.loads(cause)
        except json.JSONDecodeError:
            message = cause
        else:
            message = str(parsed.get("errorMessage", "")) if isinstance(parsed, dict) else cause
    return Failure(f"{error}: {message}" if message else error)
