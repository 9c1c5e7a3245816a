"""Notifier Lambda, one function per channel: delivers one notification, no database.

Input: the ``delivery`` the confirm step produced; output the provider's receipt.
Errors are raised by class name (``TransientDeliveryError`` is retried by the state
machine; an error proving nothing was delivered is recorded ``failed``, anything else
``unknown``). The provider's answer is awaited until shortly before the function's own
timeout.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from escalator import bootstrap
from escalator.logs import logger
from escalator.model import Delivery


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    time_left = context.get_remaining_time_in_millis() / 1000
    return bootstrap.notifiers().deliver(Delivery.from_event(event), time_left).to_event()
