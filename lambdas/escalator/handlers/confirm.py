"""Confirm Lambda: the last check before sending one notification.

Input: ``{"notification_id": ..., "execution": ..., "due": "...Z", "retry_count":
$$.State.RetryCount, "entered": $$.State.EnteredTime, "run": ...}`` (``run``: drawn once
per Map iteration; a window of the release before sends none); output ``{"deliver":
true, "delivery": {...}}`` or ``{"deliver": false, "reason": ...}``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from escalator import bootstrap
from escalator.logs import logger
from escalator.metrics import metrics


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    confirmation = bootstrap.delivery_steps().confirm(
        notification_id=int(event["notification_id"]),
        execution=str(event["execution"]),
        due=event.get("due"),
        retry_count=int(event.get("retry_count") or 0),
        entered=event.get("entered"),
        run=event.get("run"),
    )
    return confirmation.to_event()
