"""Each database step of the state machine is idempotent under its own retry: Step
Functions retries a task whose answer was lost (the function ran, ``Lambda.
ServiceException``), so a retry must answer as the first attempt did. A second run of
the same execution (Express workflows run at least once) is not a retry: it never
delivers again.

The handlers are called with the events the state machine builds (``$$.State.
RetryCount`` and ``$$.State.EnteredTime`` included), on a real PostgreSQL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

from devstack.peers.pglink import PostgresLink, postgres_link
from devstack.peers.postgres import query
from devstack.peers.providers import Peers, running_peers
from escalator import bootstrap
from escalator.errors import DatabaseError
from escalator.handlers.notifier import handler as notifier_handler
from tests.support.contract_cases import email, phone, pubnub, start, stop
from tests.support.emf import counts_by_series
from tests.support.logs import logged
from tests.support.steps import (
    CALLER_IDS,
    ENTERED,
    EXECUTION,
    RUN,
    Steps,
    claimed_ids,
    sending,
    state_of,
    store_registry,
)

# Two runs of one window: each Map iteration draws its own (``States.UUID()``).
FIRST_RUN = RUN
SECOND_RUN = "9b2e61c4-3d0a-4f7e-8c55-6a1f2e3d4c5b"


def test_a_retried_claim_returns_the_batch_the_first_attempt_claimed(
    steps: Steps, initiator_env: str
) -> None:
    # GIVEN a claim whose answer was lost after it committed
    now = int(time.time())
    steps.submit(start("restaurant-1", pubnub("ch-1", at=now), email(at=now + 5)))
    first = steps.claim()
    assert len(claimed_ids(first)) == 2

    # WHEN Step Functions retries it
    retried = steps.claim()

    # THEN the retry answers the same batch, still claimed by this execution
    assert retried == first
    rows = query(initiator_env, "SELECT state, claim_owner FROM notification ORDER BY id")
    assert rows == [("claimed", EXECUTION), ("claimed", EXECUTION)]


def test_a_claim_by_another_execution_does_not_take_what_one_holds(steps: Steps) -> None:
    steps.submit(start("restaurant-1", pubnub("ch-1", at=int(time.time()))))
    assert len(claimed_ids(steps.claim())) == 1

    assert claimed_ids(steps.claim(execution=EXECUTION + "-other")) == []


def confirmed_notification(steps: Steps) -> int:
    """A notification the first attempt of the confirm step moved to sending."""
    steps.submit(start("restaurant-1", pubnub("ch-1", at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())
    assert steps.confirm(notification_id)["deliver"] is True
    return notification_id


def test_a_retried_confirm_returns_the_same_delivery(steps: Steps, initiator_env: str) -> None:
    # GIVEN a confirm whose answer was lost after it moved the notification to sending
    steps.submit(start("restaurant-1", pubnub("ch-1", at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())
    first = steps.confirm(notification_id)

    # WHEN Step Functions retries it (same state entry, RetryCount 1)
    retried = steps.confirm(notification_id, retry_count=1)

    # THEN the retry delivers the same notification, once moved to sending
    assert first["deliver"] is True
    assert retried == first
    assert state_of(initiator_env, notification_id)[0] == "sending"
    ((attempts,),) = query(
        initiator_env, "SELECT attempts FROM notification WHERE id = %s", (notification_id,)
    )
    assert attempts == 1


def test_a_second_run_of_the_execution_does_not_deliver_again(steps: Steps) -> None:
    notification_id = confirmed_notification(steps)

    # A second run enters the state anew: another EnteredTime, RetryCount 0 and later.
    again = steps.confirm(notification_id, entered="2026-11-30T10:00:07.456Z")
    again_retried = steps.confirm(notification_id, retry_count=1, entered="2026-11-30T10:00:07Z")

    assert again == {"deliver": False, "reason": "notification is sending"}
    assert again_retried["deliver"] is False


@pytest.fixture
def notifier(monkeypatch: pytest.MonkeyPatch) -> Iterator[Peers]:
    """The notifier function's settings pointing at the protocol peers on loopback."""
    with running_peers() as peers:
        for name, value in peers.environment().items():
            monkeypatch.setenv(name, value)
        bootstrap.reset()
        yield peers


def test_a_second_run_entering_confirm_in_the_same_millisecond_never_delivers_again(
    steps: Steps, notifier: Peers, lambda_context: LambdaContext
) -> None:
    # GIVEN a window's run whose confirm moved the notification to sending, and whose
    # answer was lost: Step Functions retries the step; meanwhile its notifier publishes
    steps.submit(start("restaurant-1", pubnub("ch-1", at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())
    first = steps.confirm(notification_id, entered=ENTERED, run=FIRST_RUN)
    deliveries = [first]

    # WHEN a second run of the same window (same input, same execution id) enters the
    # confirm step in the same millisecond, and is on a retry too
    second = steps.confirm(notification_id, retry_count=1, entered=ENTERED, run=SECOND_RUN)
    deliveries.append(second)
    # (and the first run's retry comes)
    retried = steps.confirm(notification_id, retry_count=1, entered=ENTERED, run=FIRST_RUN)

    # THEN the second run does not get the delivery: it is published once
    for answer in deliveries:
        if answer["deliver"]:
            notifier_handler(answer["delivery"], lambda_context)
    assert [p.channel for p in notifier.pubnub.publications] == ["ch-1"]
    assert second == {"deliver": False, "reason": "notification is sending"}
    # AND the first run's own retry gets its delivery back
    assert retried == first


def test_a_move_by_the_confirm_function_of_the_release_before_is_resumed_by_its_retry(
    steps: Steps,
) -> None:
    # GIVEN a window of this release whose confirm's first attempt ran the function of
    # the release before (a deploy under way): it stored the entry without the run
    steps.submit(start("restaurant-1", pubnub("ch-1", at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())
    first = steps.confirm(notification_id, run=None)

    # WHEN its answer was lost, and the retry runs this release's function with the run
    retried = steps.confirm(notification_id, retry_count=1, run=FIRST_RUN)

    # THEN it gets the delivery back (not left sending, to end unknown, never sent)
    assert first["deliver"] is True
    assert retried == first


def test_a_window_of_the_release_before_is_answered_as_that_release_answered_it(
    steps: Steps,
) -> None:
    # GIVEN a window started before a deploy: its payload has no run
    steps.submit(start("restaurant-1", pubnub("ch-1", at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())
    first = steps.confirm(notification_id, run=None)

    # WHEN its confirm is retried (this release's function), and a second run enters anew
    retried = steps.confirm(notification_id, retry_count=1, run=None)
    again = steps.confirm(notification_id, retry_count=1, entered="2026-11-30T10:00:07Z", run=None)

    # THEN the retry resumes the delivery, the second run gets nothing
    assert first["deliver"] is True
    assert retried == first
    assert again == {"deliver": False, "reason": "notification is sending"}


def test_a_first_attempt_never_resumes_a_delivery(steps: Steps) -> None:
    # RetryCount 0 with the same EnteredTime cannot be a retry: it does not deliver.
    notification_id = confirmed_notification(steps)

    assert steps.confirm(notification_id, retry_count=0)["deliver"] is False


def test_a_retried_confirm_after_a_stop_cancels_instead_of_delivering(
    steps: Steps, initiator_env: str
) -> None:
    # GIVEN the first attempt moved the notification to sending, then the restaurant
    # confirmed an order before the retry
    notification_id = confirmed_notification(steps)
    steps.submit(stop("restaurant-1"))

    # WHEN the confirm step is retried
    retried = steps.confirm(notification_id, retry_count=1)

    # THEN it is not delivered: the notifier never ran, so it is cancelled
    assert retried == {"deliver": False, "reason": "process is stopped"}
    assert state_of(initiator_env, notification_id)[0] == "cancelled"


RECEIPT = {"provider_ref": "17000000000000000", "detail": {"message": "{}"}}


def test_a_retried_record_answers_as_the_first_did_and_counts_once(
    steps: Steps, initiator_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a record step whose answer was lost after it committed the receipt
    notification_id = confirmed_notification(steps)
    first = steps.record(notification_id, receipt=RECEIPT)

    # WHEN it is retried
    retried = steps.record(notification_id, receipt=RECEIPT)

    # THEN it answers the same, changes nothing, and the delivery is counted once
    assert first == {"notification_id": notification_id, "outcome": "sent"}
    assert retried == first
    assert state_of(initiator_env, notification_id) == ("sent", RECEIPT["provider_ref"], None)
    metrics = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
    ]
    assert [m["NotificationsSent"] for m in metrics if "NotificationsSent" in m] == [[1.0]]


def test_a_retried_failure_record_keeps_the_recorded_failure(
    steps: Steps, initiator_env: str
) -> None:
    notification_id = confirmed_notification(steps)
    failure = {"failure": {"Error": "PermanentDeliveryError", "Cause": "HTTP 400"}}
    first = steps.record(notification_id, **failure)

    retried = steps.record(notification_id, **failure)

    assert first == retried == {"notification_id": notification_id, "outcome": "failed"}
    assert state_of(initiator_env, notification_id) == (
        "failed",
        None,
        "PermanentDeliveryError: HTTP 400",
    )


def test_a_record_never_turns_a_recorded_delivery_into_a_failure(
    steps: Steps, initiator_env: str
) -> None:
    # A receipt recorded, then a failure reported for the same notification (a retry
    # that went a different way): the delivery stands.
    notification_id = confirmed_notification(steps)
    steps.record(notification_id, receipt=RECEIPT)

    late = steps.record(notification_id, failure={"Error": "Lambda.Unknown", "Cause": ""})

    assert late["outcome"] == "sent"
    assert state_of(initiator_env, notification_id)[0] == "sent"


@pytest.fixture
def link(
    steps: Steps, initiator_env: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PostgresLink]:
    """The functions reach the database through a relay that can lose a commit's answer
    (a cold start after the switch, as a redeploy would make)."""
    with postgres_link(initiator_env) as running:
        monkeypatch.setenv("DATABASE_URL", running.dsn)
        bootstrap.reset()
        yield running


def test_a_confirm_whose_commit_answer_was_lost_is_resumed_by_its_retry(
    steps: Steps, link: PostgresLink, initiator_env: str
) -> None:
    # GIVEN a confirm whose commit reached the database, but not its answer
    steps.submit(start("restaurant-1", pubnub("ch-1", at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())
    link.lose_next_commit_answer()
    with pytest.raises(DatabaseError):
        steps.confirm(notification_id)
    assert link.answers_lost == 1
    assert state_of(initiator_env, notification_id)[0] == "sending"

    # WHEN Step Functions retries it (DatabaseError is retried: same entry, RetryCount 1)
    retried = steps.confirm(notification_id, retry_count=1)

    # THEN the delivery goes ahead
    assert retried["deliver"] is True
    assert retried["delivery"]["notification_id"] == notification_id


def test_a_record_whose_commit_answer_was_lost_answers_sent_on_its_retry(
    steps: Steps, link: PostgresLink, initiator_env: str
) -> None:
    notification_id = confirmed_notification(steps)
    link.lose_next_commit_answer()
    with pytest.raises(DatabaseError):
        steps.record(notification_id, receipt=RECEIPT)
    assert state_of(initiator_env, notification_id)[0] == "sent"

    retried = steps.record(notification_id, receipt=RECEIPT)

    assert retried == {"notification_id": notification_id, "outcome": "sent"}


# ---- A retried confirm answers as its first attempt did, and says so: the same caller
# id, "resumed", or why it delivers nothing (``make mutate`` found these untested:
# docs/mutation.md).


def test_a_retried_confirm_of_a_call_answers_the_same_caller_id(
    steps: Steps, database_url: str, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    store_registry(database_url, CALLER_IDS)
    steps.submit(start("restaurant-1", phone("+38512345678", at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())
    first = steps.confirm(notification_id, entered=ENTERED)

    retried = steps.confirm(notification_id, retry_count=1, entered=ENTERED)

    assert retried == first
    assert retried["delivery"]["caller_id"] == "+38512345678"
    (line,) = logged(log_lines, "delivery resumed: a retry after a lost answer")
    assert (line["notification_id"], line["outcome"]) == (notification_id, "resumed")
    assert line["process_id"] == "restaurant-1"


def test_a_retried_confirm_of_a_message_is_logged_as_resumed(
    steps: Steps, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    steps.submit(start("restaurant-1", pubnub(at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())
    first = steps.confirm(notification_id, entered=ENTERED)

    assert steps.confirm(notification_id, retry_count=1, entered=ENTERED) == first
    (line,) = logged(log_lines, "delivery resumed: a retry after a lost answer")
    assert (line["notification_id"], line["outcome"]) == (notification_id, "resumed")


def test_a_retried_confirm_that_never_moved_its_notification_says_why(
    steps: Steps, initiator_env: str, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    # GIVEN a claimed notification whose process ended before its first confirm committed
    steps.submit(start("restaurant-1", pubnub(at=int(time.time()))))
    (notification_id,) = claimed_ids(steps.claim())
    query(initiator_env, "UPDATE process SET state = 'stopped', ended_at = now()")

    # WHEN Step Functions retries the confirm
    answer = steps.confirm(notification_id, retry_count=1, entered=ENTERED)

    # THEN it delivers nothing, and says why
    assert answer == {"deliver": False, "reason": "process is stopped"}
    (line,) = logged(log_lines, "delivery skipped")
    assert (line["outcome"], line["reason"]) == ("skipped", "process is stopped")


# ---- A record by another execution changes nothing; an unknown outcome is counted in
# its channel's series (``make mutate`` found these untested: docs/mutation.md).


def test_an_unknown_outcome_is_counted_and_a_stale_one_changes_nothing(
    steps: Steps, initiator_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (notification_id,) = sending(steps, pubnub(at=int(time.time())))
    capsys.readouterr()

    unknown = {"Error": "AmbiguousDeliveryError", "Cause": "no answer"}
    assert steps.record(notification_id, unknown=unknown)["outcome"] == "unknown"
    stale_answer = steps.record(
        notification_id, execution=EXECUTION + "-other", receipt={"provider_ref": "x"}
    )

    assert counts_by_series(capsys) == {
        ("NotificationsUnknown", ()): 1,
        ("NotificationsUnknown", ("Channel=pubnub",)): 1,
    }
    assert stale_answer == {"notification_id": notification_id, "outcome": "stale"}
    assert state_of(initiator_env, notification_id) == (
        "unknown",
        None,
        "AmbiguousDeliveryError: no answer",
    )
