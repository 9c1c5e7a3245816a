"""Record Lambda: writes a notification's outcome (``receipt`` or caught ``failure``)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from escalator import bootstrap
from escalator.delivery import record_outcome
from escalator.logs import logger
from escalator.metrics import metrics


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return record_outcome(
        bootstrap.unit_of_work(),
        notification_id=int(event["notification_id"]),
        execution=str(event["execution"]),
        receipt=event.get("receipt"),
        failure=event.get("failure"),
    )
