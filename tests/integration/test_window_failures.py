"""A delivery window that fails, or never starts, ends as a failure: the tick releases
what the window held claimed at once, counts it, says why in its summary and fails (its
alarm goes off); a malformed answer of the confirm step fails no window. Through the
synthesized state machines, executed by moto with AWS's rules for Choice states."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.emulation.moto_services.express import ExpressRuns
from devstack.local.pipeline import Pipeline, running_pipeline
from escalator import metrics
from tests.support.contract_cases import pubnub, start
from tests.support.emf import emf_lines


def counted(capsys: pytest.CaptureFixture[str], name: str) -> int:
    """How many ``name`` the handlers counted since ``capsys`` was last read."""
    return sum(
        int(document[name]) if not isinstance(document[name], list) else sum(document[name])
        for document in emf_lines(capsys)
        if name in document
    )


def test_a_window_that_never_starts_releases_its_claims_at_once_and_fails_the_tick(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a notification due in 2 s, and a delivery window Step Functions cannot start
    # (its state machine is gone; on AWS also: a role that may not start it)
    sfn = pipeline.machine.sfn
    window = sfn.describe_state_machine(stateMachineArn=pipeline.machine.window_arn)
    sfn.delete_state_machine(stateMachineArn=pipeline.machine.window_arn)
    pipeline.submit(start("restaurant-42", pubnub(at=int(time.time()) + 2)))
    capsys.readouterr()

    # WHEN a tick runs
    description = pipeline.machine.wait(pipeline.machine.start())

    # THEN it fails, and says why: its summary is the failure's cause
    assert (description["status"], description["error"]) == ("FAILED", "DeliveryWindowFailed")
    summary = json.loads(description["cause"])
    assert summary["claimed"] == 1
    window_failure: dict[str, Any] = summary["window"]
    assert window_failure["failed"] is True
    assert window_failure["status"] == "NOT_STARTED"
    assert window_failure["error"] == "Sfn.StateMachineDoesNotExistException"
    assert window_failure["released"] == 1
    # AND its claim went back at once (no claim grace to wait out), counted for the alarm
    assert pipeline.states() == ["pending"]
    assert pipeline.peers.pubnub.publications == []
    assert counted(capsys, metrics.WINDOWS_FAILED) == 1

    # WHEN the window is back and the next tick runs
    sfn.create_state_machine(
        name=window["name"],
        definition=window["definition"],
        roleArn=window["roleArn"],
        type="EXPRESS",
    )
    pipeline.machine.run()

    # THEN it is delivered, once
    assert pipeline.states() == ["sent"]
    assert len(pipeline.peers.pubnub.publications) == 1


@pytest.fixture
def capped(
    database_url: str, tls_application_url: str, aws_credentials: None
) -> Iterator[Pipeline]:
    """A pipeline whose Express executions end at 3 s (AWS: five minutes)."""
    with running_pipeline(
        database_url,
        {"CLAIM_GRACE_SECONDS": "2", "SENDING_LEASE_SECONDS": "3"},
        application_url=tls_application_url,
        express=ExpressRuns(3.0),
    ) as running:
        yield running


# (long: started first, so that the parallel run ends with short tests)
@pytest.mark.long(seconds=9)
def test_a_window_that_fails_releases_only_what_it_has_not_confirmed(capped: Pipeline) -> None:
    # GIVEN one notification due now and one due in 9 s, claimed by one tick: its window
    # delivers the first, then runs out of its time (3 s here) waiting for the second
    pipeline = capped
    now = int(time.time())
    pipeline.submit(
        start("restaurant-1", pubnub("now", at=now)),
        start("restaurant-2", pubnub("later", at=now + 9)),
    )

    # WHEN the tick runs
    description = pipeline.machine.wait(pipeline.machine.start())

    # THEN it fails and releases the one its window had not confirmed; the one delivered
    # stays sent (a release never touches what a window confirmed)
    assert description["status"] == "FAILED"
    summary = json.loads(description["cause"])
    assert (summary["window"]["status"], summary["window"]["released"]) == ("TIMED_OUT", 1)
    assert pipeline.states() == ["sent", "pending"]
    assert [p.channel for p in pipeline.peers.pubnub.publications] == ["now"]

    # AND the next tick, once the second is due, delivers it: each sent once
    pipeline.wait_for(lambda: time.time() > now + 9, timeout=30)
    pipeline.machine.run()
    assert pipeline.states() == ["sent", "sent"]
    assert sorted(p.channel for p in pipeline.peers.pubnub.publications) == ["later", "now"]


def test_a_malformed_confirm_answer_fails_no_window(pipeline: Pipeline) -> None:
    # GIVEN a confirm step that answers what this release never writes (as one of another
    # release might, during a deploy): no delivery, no reason
    name = pipeline.machine.function_named("FunctionsConfirm")
    pipeline.lambdas.overrides[name] = lambda event, context: {"deliver": "maybe"}
    pipeline.submit(start("restaurant-42", pubnub(at=int(time.time()) + 1)))

    # WHEN a tick runs (on AWS, a Choice on a missing field fails the whole window)
    description = pipeline.machine.run()

    # THEN the window ends, and its summary says the notification was not delivered
    summary = json.loads(description["output"])
    (outcome,) = summary["window"]["notifications"]
    assert outcome["outcome"] == "not delivered"
    assert "neither a delivery nor a reason" in outcome["reason"]
    assert pipeline.peers.pubnub.publications == []


def test_a_hand_over_that_finds_its_execution_started_keeps_the_summary(
    pipeline: Pipeline,
) -> None:
    # GIVEN two notifications due, a claim of one at a time (a full batch hands over), and
    # the execution the tick's hand-over would start there already (a retried hand-over
    # after a start whose answer was lost finds it so)
    pipeline.configure(CLAIM_BATCH_SIZE="1")
    name = "tick-hand-over"
    handed_over = "more-" + hashlib.md5(name.encode()).hexdigest()  # noqa: S324 - as the tick names it
    sfn = pipeline.machine.sfn
    before = sfn.start_execution(
        stateMachineArn=pipeline.machine.arn,
        name=handed_over,
        input=json.dumps({"period_seconds": 60, "started": "before"}),
    )["executionArn"]
    assert pipeline.machine.wait(before)["status"] == "SUCCEEDED"  # (nothing was due yet)
    now = int(time.time())
    pipeline.submit(
        start("restaurant-1", pubnub("one", at=now)), start("restaurant-2", pubnub("two", at=now))
    )

    # WHEN the tick runs
    execution = sfn.start_execution(
        stateMachineArn=pipeline.machine.arn, name=name, input=json.dumps({"period_seconds": 60})
    )["executionArn"]
    description = pipeline.machine.wait(execution)

    # THEN it succeeds with its summary as its output (not the hand-over's error), and the
    # hand-over was tried once: what exists already is not retried
    assert description["status"] == "SUCCEEDED"
    summary = json.loads(description["output"])
    assert (summary["claimed"], summary["more"]) == (1, True)
    (outcome,) = summary["window"]["notifications"]
    assert outcome["outcome"] == "sent"
    attempts = [
        event
        for event in pipeline.machine.history(execution)
        if event["type"] == "TaskScheduled"
        and "startExecution" in event["taskScheduledEventDetails"]["resource"]
    ]
    assert len(attempts) == 1
    pipeline.machine.settle()
