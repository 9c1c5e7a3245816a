"""A confirm step that fails after its retries (every answer lost, with 50 % of Lambda's
answers lost in the drill: one notification in a thousand) leaves its notification to the
next tick, never to ``unknown``: its notifier never ran, whatever the step committed."""

from __future__ import annotations

import time
from typing import Any

from escalator.handlers import record
from tests.support.contract_cases import pubnub, start
from tests.support.steps import EXECUTION, RUN, Steps, claimed_ids, state_of

OTHER_RUN = "9b2e4c1d-0000-4000-8000-000000000001"
CAUGHT = {"Error": "Lambda.ServiceException", "Cause": "the answer was lost"}


def release(steps: Steps, notification_id: int, run: str) -> dict[str, Any]:
    """The window's "Release what was not confirmed" step, as its payload calls Record."""
    event = {
        "notification_id": notification_id,
        "execution": EXECUTION,
        "run": run,
        "not_confirmed": CAUGHT,
    }
    answer: dict[str, Any] = record.handler(event, steps.context)
    return answer


def test_a_confirm_whose_answers_were_all_lost_goes_back_to_pending(
    steps: Steps, initiator_env: str
) -> None:
    # GIVEN a notification its iteration's confirm step moved to sending (the answers lost)
    steps.submit(start("restaurant-1", pubnub(at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())
    assert steps.confirm(notification_id)["deliver"] is True
    assert state_of(initiator_env, notification_id)[0] == "sending"

    # WHEN another iteration's release comes (a second run of the window), nothing moves
    assert release(steps, notification_id, OTHER_RUN) == {"released": False}
    assert state_of(initiator_env, notification_id)[0] == "sending"

    # WHEN its own iteration releases it after the step failed
    assert release(steps, notification_id, RUN) == {"released": True}

    # THEN it is pending again, and the next tick claims and delivers it
    assert state_of(initiator_env, notification_id)[0] == "pending"
    assert claimed_ids(steps.claim()) == [notification_id]


def test_a_confirm_that_never_ran_releases_its_claim_at_once(
    steps: Steps, initiator_env: str
) -> None:
    steps.submit(start("restaurant-1", pubnub(at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())

    assert release(steps, notification_id, RUN) == {"released": True}

    assert state_of(initiator_env, notification_id)[0] == "pending"


def test_what_was_delivered_is_never_released(steps: Steps, initiator_env: str) -> None:
    steps.submit(start("restaurant-1", pubnub(at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())
    assert steps.confirm(notification_id)["deliver"] is True
    steps.record(notification_id, receipt={"provider_ref": "17000000000000000"})

    assert release(steps, notification_id, RUN) == {"released": False}

    assert state_of(initiator_env, notification_id)[0] == "sent"
