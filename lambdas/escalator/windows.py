"""Starting a delivery window (the Express state machine) for notifications that arrive
near their due time: the initiator's way to deliver them without waiting for a tick."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from escalator.errors import EscalatorError
from escalator.model import ClaimedNotification


class WindowNotStarted(EscalatorError):
    """Step Functions did not take the start (or its answer was lost)."""


# Who a window started by the initiator says started it (a tick names its execution).
INITIATOR = "initiator"


class DeliveryWindows(Protocol):
    """Starts a delivery window for claimed notifications (each names its claim's owner)."""

    def start(self, notifications: Sequence[ClaimedNotification]) -> str:
        """The started execution's ARN. Raises ``WindowNotStarted``."""
        ...


def window_input(notifications: Sequence[ClaimedNotification]) -> dict[str, Any]:
    """What a delivery window started by the initiator is given."""
    return {"owner": INITIATOR, "notifications": [item.to_event() for item in notifications]}


class StepFunctionsWindows:
    """Delivery windows started through the Step Functions API (at its dual-stack
    endpoint from the VPC: ``AWS_USE_DUALSTACK_ENDPOINT``). ``config`` (a
    ``botocore.config.Config``) shapes the client made here when no ``client`` is given."""

    def __init__(self, state_machine_arn: str, client: Any = None, *, config: Any = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("stepfunctions", config=config)
        self._client = client
        self._arn = state_machine_arn

    def start(self, notifications: Sequence[ClaimedNotification]) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.start_execution(
                stateMachineArn=self._arn, input=json.dumps(window_input(notifications))
            )
        except (BotoCoreError, ClientError) as exc:
            raise WindowNotStarted(f"cannot start a delivery window: {exc}") from exc
        arn: str = response["executionArn"]
        return arn
