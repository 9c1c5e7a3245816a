"""Purge Lambda, started hourly by its schedule: deletes what finished longer ago than
the retention period (``escalator.retention``), a batch per transaction, until nothing
is left or its time runs short; the next run goes on from there."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from escalator import bootstrap
from escalator.logs import logger
from escalator.metrics import metrics


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    time_left = lambda: context.get_remaining_time_in_millis() / 1000  # noqa: E731
    return bootstrap.purger().purge(time_left).to_event()
