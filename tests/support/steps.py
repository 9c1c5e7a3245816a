"""The state machine's database steps, called through their handlers as the state machine
calls them (the ``steps`` fixture), on this test's own database."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

from devstack.emulation.events import sqs_event, sqs_record
from devstack.peers.postgres import query
from escalator.config import DatabaseSettings, DeliveryConfig
from escalator.handlers import activator, confirm, initiator, record

EXECUTION = "arn:aws:states:eu-central-1:123456789012:execution:Escalator-delivery:tick-1"
ENTERED = "2026-11-30T10:00:00.123Z"
# What the window's Map drew for the iteration (``States.UUID()``), as its payload sends it.
RUN = "3f0d7a52-6c1e-4c55-9a51-0d3b3f0f6a11"


@pytest.fixture
def steps(initiator_env: str, lambda_context: LambdaContext) -> Steps:
    return Steps(lambda_context)


class Steps:
    """The handlers, called as the state machine calls them."""

    def __init__(self, context: LambdaContext) -> None:
        self.context = context

    def submit(self, document: dict[str, Any]) -> None:
        answer = initiator.handler(sqs_event(sqs_record(document)), self.context)
        assert answer == {"batchItemFailures": []}

    def claim(self, execution: str = EXECUTION) -> dict[str, Any]:
        event = {"execution": execution, "input": {"period_seconds": 60}}
        answer: dict[str, Any] = activator.handler(event, self.context)
        return answer

    def confirm(
        self,
        notification_id: int,
        *,
        retry_count: int = 0,
        entered: str = ENTERED,
        execution: str = EXECUTION,
        run: str | None = RUN,
    ) -> dict[str, Any]:
        """The confirm step's payload; ``run=None``: as a window of the release before
        sends it (no run)."""
        event: dict[str, Any] = {
            "notification_id": notification_id,
            "execution": execution,
            "retry_count": retry_count,
            "entered": entered,
        }
        if run is not None:
            event["run"] = run
        answer: dict[str, Any] = confirm.handler(event, self.context)
        return answer

    def record(self, notification_id: int, **outcome: Any) -> dict[str, Any]:
        """Record ``outcome`` (``receipt=...``, ...) for ``execution`` (the tick's by default)."""
        event = {"notification_id": notification_id, "execution": EXECUTION, **outcome}
        answer: dict[str, Any] = record.handler(event, self.context)
        return answer


def state_of(dsn: str, notification_id: int) -> tuple[Any, ...]:
    ((row),) = query(
        dsn, "SELECT state, provider_ref, error FROM notification WHERE id = %s", (notification_id,)
    )
    return tuple(row)


def claimed_ids(answer: dict[str, Any]) -> list[int]:
    return [item["id"] for item in answer["notifications"]]


# How late a notification is when the housekeeping or the confirm step expires it, with
# the delivery settings by default (the maximum lateness and the slack one accepted at
# that limit is given), and a second later.
EXPIRE_AFTER = DeliveryConfig(DatabaseSettings(dsn="")).expire_after
PAST_THE_EXPIRY_LIMIT = EXPIRE_AFTER + 1


def make_late(dsn: str, seconds: int) -> None:
    """Make every notification due ``seconds`` ago."""
    query(dsn, "UPDATE notification SET due_at = now() - make_interval(secs => %s)", (seconds,))
