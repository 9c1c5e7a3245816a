"""The state machine's database steps, called through their handlers as the state machine
calls them (the ``steps`` fixture), on this test's own database."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

from devstack.emulation.events import sqs_event, sqs_record
from devstack.peers.postgres import query
from escalator.config import DatabaseSettings, DeliveryConfig
from escalator.database import Database, UnitOfWork
from escalator.handlers import activator, confirm, initiator, record
from escalator.service import store_caller_id_registry
from tests.support.contract_cases import start

EXECUTION = "arn:aws:states:eu-central-1:123456789012:execution:Escalator-delivery:tick-1"
ENTERED = "2026-11-30T10:00:00.123Z"
# What the window's Map drew for the iteration (``States.UUID()``), as its payload sends it.
RUN = "3f0d7a52-6c1e-4c55-9a51-0d3b3f0f6a11"
# A caller-id registry: a default, and a longer prefix within a shorter one.
CALLER_IDS = {"default": "+12025550123", "+385": "+38512345678", "+38591": "+38591000000"}


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


def sending(steps: Steps, *notifications: dict[str, Any]) -> list[int]:
    """Start one process (``restaurant-1``) with these notifications, claim them, and
    confirm each: their ids, each notification ``sending`` with no outcome yet."""
    steps.submit(start("restaurant-1", *notifications))
    ids = claimed_ids(steps.claim())
    for notification_id in ids:
        assert steps.confirm(notification_id)["deliver"] is True
    return ids


def store_registry(dsn: str, registry: dict[str, str]) -> None:
    """Store the caller-id registry as the migration stores it (administrator: the
    functions' role may only read it)."""
    database = Database(DatabaseSettings(dsn=dsn))
    try:
        store_caller_id_registry(UnitOfWork(database), json.dumps(registry))
    finally:
        database.discard()
