"""Status recorder Lambda (in the VPC): writes what a provider reported about a delivery
(a call, a message), as the status-callback receiver handed it over.

Input: a ``StatusReport`` event; output ``{"outcome": ..., "notification_id": ...,
"provider_status": ...}``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from escalator import bootstrap
from escalator.logs import logger
from escalator.metrics import metrics
from escalator.model import StatusReport


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = StatusReport.from_event(event)
    return bootstrap.delivery_steps().record_provider_status(report).to_event()
