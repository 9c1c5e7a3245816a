"""Activator Lambda, the state machine's first step: claims the notifications now due.

Input: ``{"execution": <execution id>, "input": <execution input>}``; the execution
input may carry ``period_seconds`` (the schedule period): the claim looks two periods
ahead (``limits.claim_lookahead``), as the schedule may fire anywhere within a period.

The tick's last step when its delivery window failed or never started:
``{"execution": <execution id>, "window": <StartSyncExecution's answer, or the error>}``
releases what the window still held claimed (``delivery.release_window``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from escalator import bootstrap
from escalator.limits import claim_lookahead
from escalator.logs import logger
from escalator.metrics import metrics


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    steps = bootstrap.delivery_steps()
    if "window" in event:  # the tick's delivery window failed or never started
        failure = steps.release_window(execution=str(event["execution"]), window=event["window"])
        return failure.to_event()
    period = (event.get("input") or {}).get("period_seconds")
    claim = steps.claim(
        execution=str(event["execution"]),
        lookahead=claim_lookahead(int(period)) if period else None,
    )
    return claim.to_event()
