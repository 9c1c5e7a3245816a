"""A near-due delivery window that did not start gives its claims back to the ticks, and
only those: Step Functions may have started the window and lost its answer, and what
that window confirmed meanwhile is its own. Releasing it would let a tick deliver it a
second time.

Real PostgreSQL (as the application role); the initiator's use case wired by
``bootstrap``, with a window starter whose window ran but whose answer was lost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from devstack.peers.postgres import query
from escalator.bootstrap import Initiator
from escalator.config import load_initiator_config
from escalator.database import Database
from escalator.handlers import record
from escalator.model import ClaimedNotification, RequestMessage
from escalator.windows import WindowNotStarted
from tests.support.contract_cases import pubnub, start
from tests.support.steps import Steps

RECEIPT = {"provider_ref": "17000000000000000", "detail": {"message": "{}"}}


class Started:
    """Starts every window."""

    def start(self, notifications: Sequence[ClaimedNotification]) -> str:
        return "arn:aws:states:eu-central-1:123456789012:express:Escalator-window:other"


class StartedButAnswerLost:
    """Starts the window (``window`` runs with what it was given), then fails as a start
    whose answer was lost fails."""

    def __init__(self, window: Callable[[Sequence[ClaimedNotification]], None]) -> None:
        self._window = window

    def start(self, notifications: Sequence[ClaimedNotification]) -> str:
        self._window(notifications)
        raise WindowNotStarted("cannot start a delivery window: Read timeout on endpoint URL")


def rows(dsn: str) -> list[tuple[Any, ...]]:
    """(id, state, claim_owner) of every notification."""
    return query(dsn, "SELECT id, state, claim_owner FROM notification ORDER BY id")


@pytest.mark.parametrize("recorded", [False, True], ids=["confirmed", "delivered"])
def test_a_window_that_did_not_start_releases_only_what_is_still_claimed_by_it(
    steps: Steps, initiator_env: str, recorded: bool
) -> None:
    now = int(time.time())
    config = load_initiator_config()

    # GIVEN another start whose near-due claim its own window holds
    other = Initiator(Database(config.database), config, windows=Started()).batch()
    other.apply(
        RequestMessage("m-other", json.dumps(start("restaurant-2", pubnub("ch-9", at=now))))
    )
    other.deliver_near_due()

    # AND a start of two near-due notifications whose window ran while the answer to its
    # start was lost: it confirmed the first (and, ``recorded``, recorded it delivered)
    # and had not reached the second yet
    def window(notifications: Sequence[ClaimedNotification]) -> None:
        first = min(notifications, key=lambda item: item.id)
        answer = steps.confirm(first.id, execution=first.owner)
        assert answer["deliver"] is True, answer
        if recorded:
            event = {"notification_id": first.id, "execution": first.owner, "receipt": RECEIPT}
            outcome = record.handler(event, steps.context)
            assert outcome["outcome"] == "sent", outcome

    batch = Initiator(
        Database(config.database), config, windows=StartedButAnswerLost(window)
    ).batch()
    document = start("restaurant-1", pubnub("ch-0", at=now), pubnub("ch-1", at=now))
    batch.apply(RequestMessage("m-1", json.dumps(document)))

    # WHEN the initiator learns that its window did not start
    batch.deliver_near_due()

    # THEN only the notification still claimed by it goes back to the ticks; the one
    # its window confirmed stays its window's (delivered once), and the other start's
    # claim stays the other's
    assert rows(initiator_env) == [
        (1, "claimed", "arrival-m-other"),
        (2, "sent" if recorded else "sending", "arrival-m-1"),
        (3, "pending", None),
    ]
