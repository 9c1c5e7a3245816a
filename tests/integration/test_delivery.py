"""The delivery pipeline, through the synthesized state machine executed by moto.

Real PostgreSQL, real handlers (in-process), real protocol peers on loopback.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from moto.stepfunctions.parser.models import StepFunctionsParserBackend

from devstack.peers.postgres import ConnectionSampler, query
from escalator.channels.twilio import status_callback_for
from tests.support import state
from tests.support.contract_cases import EMAIL, PHONE, PUBNUB, email, phone, pubnub, start, stop
from tests.support.pipeline import CALLER_IDS, Pipeline

# Long: started first, so that the parallel run ends with the short tests.
pytestmark = pytest.mark.long


def test_phone_email_and_pubnub_are_each_delivered_once_when_due(pipeline: Pipeline) -> None:
    # GIVEN a process with a call, an e-mail and a PubNub message due in 2 seconds
    due = int(time.time()) + 2
    pipeline.submit(start("restaurant-42", phone(at=due), email(at=due), pubnub(at=due)))

    # WHEN the state machine runs
    pipeline.machine.run()

    # THEN each peer got exactly one, with the right content, no earlier than due
    (call,) = pipeline.peers.twilio.calls
    assert call.form == {
        "To": PHONE,
        "From": "+38591000000",  # the longest matching prefix, +38591
        "Url": "https://restaurant.example.com/twiml/escalation.xml",
        "Method": "GET",
        "StatusCallback": status_callback_for(pipeline.status_callback_url, 1, "test-token"),
        "StatusCallbackMethod": "POST",
    }
    assert call.account_sid == "AC00000000000000000000000000000001"
    assert call.auth == "AC00000000000000000000000000000001:test-token"
    (mail,) = pipeline.peers.smtp.mails
    assert mail.recipients == [EMAIL]
    assert mail.message["To"] == EMAIL
    assert mail.message["From"] == "escalator@roomorders.example.com"
    assert mail.message["Subject"] == "Order waiting"
    body = mail.message.get_body()
    assert body is not None
    assert body.get_content().strip() == "An order is waiting for your confirmation."
    (publication,) = pipeline.peers.pubnub.publications
    assert publication.channel == PUBNUB
    assert publication.message["process-id"] == "restaurant-42"
    for received_at in (call.received_at, mail.received_at, publication.received_at):
        assert received_at >= due

    # AND each ends sent with the provider's reference, and the process completed
    states = pipeline.notification_states()
    assert [(channel, status) for channel, status, _, _ in states] == [
        ("phone", "sent"),
        ("email", "sent"),
        ("pubnub", "sent"),
    ]
    refs = [ref for _, _, ref, _ in states]
    assert refs[0].startswith("CA")
    assert refs[1] == mail.message["Message-ID"]
    assert refs[2].isdigit()
    assert state.processes(pipeline.database_url) == [("restaurant-42", 1, "completed")]


def test_stop_after_the_claim_but_before_due_prevents_every_delivery(pipeline: Pipeline) -> None:
    # GIVEN notifications claimed by a running execution, due in a few seconds
    due = int(time.time()) + 4
    pipeline.submit(start("restaurant-42", phone(at=due), email(at=due), pubnub(at=due)))
    execution = pipeline.machine.start()
    pipeline.wait_for(lambda: pipeline.states() == ["claimed"] * 3)

    # WHEN the restaurant confirms an order before they are due
    pipeline.submit(stop("restaurant-42"))

    # THEN the execution ends well, nothing is delivered, and all are cancelled
    assert pipeline.machine.wait(execution)["status"] == "SUCCEEDED"
    assert pipeline.peers.twilio.calls == []
    assert pipeline.peers.smtp.mails == []
    assert pipeline.peers.pubnub.publications == []
    assert pipeline.states() == ["cancelled"] * 3
    assert state.processes(pipeline.database_url) == [("restaurant-42", 1, "stopped")]


def test_overlapping_executions_deliver_each_notification_once(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN 30 notifications due at once, claimed in small batches
    pipeline.configure(CLAIM_BATCH_SIZE="4")
    due = int(time.time()) + 2
    for process in range(3):
        pipeline.submit(
            start(
                f"restaurant-{process}", *[pubnub(f"ch-{process}-{n}", at=due) for n in range(10)]
            )
        )

    # WHEN two executions run at the same time (each handing over while more is due)
    executions = [pipeline.machine.start(), pipeline.machine.start()]
    descriptions = pipeline.machine.settle()

    # THEN all succeed and every notification was published exactly once
    assert {description["executionArn"] for description in descriptions} >= set(executions)
    assert {description["status"] for description in descriptions} == {"SUCCEEDED"}
    channels = [publication.channel for publication in pipeline.peers.pubnub.publications]
    assert sorted(channels) == sorted(f"ch-{p}-{n}" for p in range(3) for n in range(10))
    assert pipeline.states() == ["sent"] * 30
    owners = query(pipeline.database_url, "SELECT DISTINCT claim_owner FROM notification")
    assert len(owners) >= 2  # both executions (and those they handed over to) took part


def lambda_events(pipeline: Pipeline, event_type: str) -> int:
    """Events of this type in the delivery windows' log group (AWS keeps no history of
    an Express execution; the template logs its failures, level ERROR)."""
    return len(pipeline.machine.window_events(event_type))


def test_twilio_busy_twice_then_accepting_delivers_the_call_once(pipeline: Pipeline) -> None:
    # GIVEN Twilio answers 429 (never processed, as Twilio documents) twice before it
    # accepts the call
    pipeline.peers.twilio.script.extend([429, 429])
    pipeline.submit(start("restaurant-42", phone(at=int(time.time()))))

    # WHEN the state machine runs
    execution = pipeline.machine.start()
    assert pipeline.machine.wait(execution)["status"] == "SUCCEEDED"

    # THEN the call was placed once, after two refused attempts visible in the history
    assert len(pipeline.peers.twilio.calls) == 1
    assert len(pipeline.peers.twilio.refused) == 2
    assert lambda_events(pipeline, "LambdaFunctionFailed") == 2
    assert pipeline.states() == ["sent"]


def test_invalid_number_at_twilio_fails_without_retry_and_spares_the_others(
    pipeline: Pipeline,
) -> None:
    # GIVEN Twilio refuses the number (HTTP 400, error 21211)
    pipeline.peers.twilio.script.append(21211)
    now = int(time.time())
    pipeline.submit(start("restaurant-42", phone(at=now), email(at=now), pubnub(at=now)))

    # WHEN the state machine runs
    execution = pipeline.machine.start()
    assert pipeline.machine.wait(execution)["status"] == "SUCCEEDED"

    # THEN the call failed with the reason, once, and the others were delivered
    assert len(pipeline.peers.twilio.refused) == 1
    assert pipeline.peers.twilio.calls == []
    (phone_row, email_row, pubnub_row) = pipeline.notification_states()
    assert phone_row[1] == "failed"
    assert "21211" in phone_row[3]
    assert "PermanentDeliveryError" in phone_row[3]
    assert (email_row[1], pubnub_row[1]) == ("sent", "sent")
    assert len(pipeline.peers.smtp.mails) == 1
    assert len(pipeline.peers.pubnub.publications) == 1
    assert state.processes(pipeline.database_url) == [("restaurant-42", 1, "completed")]


def test_notifier_crashing_after_confirm_ends_unknown_and_is_never_sent(
    pipeline: Pipeline,
) -> None:
    # GIVEN the phone notifier hangs after the confirm step, and the execution dies
    entered, release = threading.Event(), threading.Event()

    def hanging_notifier(event: dict[str, Any], context: Any) -> Any:
        entered.set()
        release.wait(20)
        raise RuntimeError("sandbox crashed")

    notifier = pipeline.machine.function_named("FunctionsNotifierPhone")
    pipeline.lambdas.overrides[notifier] = hanging_notifier
    pipeline.submit(start("restaurant-42", phone(at=int(time.time()))))
    execution = pipeline.machine.start()
    assert entered.wait(20)
    assert pipeline.machine.crash(execution, wait=False) == 1  # (its window)
    release.set()
    pipeline.machine.settle_windows()
    assert pipeline.states() == ["sending"]

    # WHEN the sending lease (3 s) has run out and later executions run, with a working
    # notifier again
    del pipeline.lambdas.overrides[notifier]
    pipeline.wait_for(lambda: lease_over(pipeline), timeout=10)
    pipeline.machine.run()
    pipeline.machine.run()

    # THEN the notification is unknown and was never sent
    assert pipeline.states() == ["unknown"]
    assert pipeline.peers.twilio.calls == []
    assert state.processes(pipeline.database_url) == [("restaurant-42", 1, "completed")]


def lease_over(pipeline: Pipeline) -> bool:
    rows = query(pipeline.database_url, "SELECT bool_and(lease_until < now()) FROM notification")
    return rows == [(True,)]


def test_execution_stopped_after_the_claim_leaves_work_the_next_one_delivers(
    pipeline: Pipeline,
) -> None:
    # GIVEN an execution that claimed a notification and died while its window's start
    # was under way (held here until after the crash: a stopped tick's StartSyncExecution
    # is abandoned, not undone, and brings its window up after the tick has ended)
    due = int(time.time()) + 3
    pipeline.submit(start("restaurant-42", phone(at=due)))
    starting, proceed = threading.Event(), threading.Event()
    with held_window_starts(starting, proceed):
        execution = pipeline.machine.start()
        assert starting.wait(30)
        assert pipeline.states() == ["claimed"]
        assert pipeline.machine.crash(execution) == 0  # (no window runs yet)
        started = pipeline.lambdas.express.started
        proceed.set()
        pipeline.wait_for(lambda: pipeline.lambdas.express.started > started)
    pipeline.machine.settle_windows()

    # WHEN its claim has lapsed (due + 2 s of grace), or something was sent
    pipeline.wait_for(lambda: lease_over(pipeline) or pipeline.peers.twilio.calls, timeout=10)

    # THEN its window died with it: nothing was sent, the claim is still its
    assert pipeline.peers.twilio.calls == []
    assert pipeline.states() == ["claimed"]

    # AND the next execution delivers it, once
    pipeline.machine.run()
    assert len(pipeline.peers.twilio.calls) == 1
    assert pipeline.states() == ["sent"]


@contextmanager
def held_window_starts(starting: threading.Event, proceed: threading.Event) -> Iterator[None]:
    """While open, the emulation's StartSyncExecution sets ``starting`` and waits for
    ``proceed`` before it starts the window. (Restored before the pipeline closes: the
    emulation's own replacement is gone after that.)"""
    start_sync = StepFunctionsParserBackend.start_sync_execution

    def held(self: Any, *args: Any, **kwargs: Any) -> Any:
        starting.set()
        proceed.wait(30)
        return start_sync(self, *args, **kwargs)

    setattr(StepFunctionsParserBackend, "start_sync_execution", held)  # noqa: B010
    try:
        yield
    finally:
        proceed.set()
        setattr(StepFunctionsParserBackend, "start_sync_execution", start_sync)  # noqa: B010


def test_notification_older_than_the_maximum_lateness_expires_unsent(pipeline: Pipeline) -> None:
    # GIVEN a notification that was due 300 seconds ago when it arrived (in time then),
    # and a maximum lateness since brought down to 10 seconds (a redeploy): it is later
    # than that and the slack an accepted one is given (185 s with this schedule)
    now = int(time.time())
    pipeline.submit(start("restaurant-42", phone(at=now - 300), email(at=now)))
    pipeline.configure(MAX_LATENESS_SECONDS="10")

    # WHEN the state machine runs
    pipeline.machine.run()

    # THEN it expired and was not sent; the fresh one was
    assert pipeline.states() == ["expired", "sent"]
    assert pipeline.peers.twilio.calls == []
    assert len(pipeline.peers.smtp.mails) == 1
    assert state.processes(pipeline.database_url) == [("restaurant-42", 1, "completed")]


def test_caller_id_falls_back_to_the_default(pipeline: Pipeline) -> None:
    pipeline.submit(start("restaurant-1", phone("+14155550123", at=int(time.time()))))

    pipeline.machine.run()

    (call,) = pipeline.peers.twilio.calls
    assert call.form["From"] == CALLER_IDS["default"]
    assert pipeline.states() == ["sent"]


def test_caller_id_uses_the_shorter_prefix_when_the_longer_does_not_match(
    pipeline: Pipeline,
) -> None:
    pipeline.submit(start("restaurant-1", phone("+38512345678", at=int(time.time()))))

    pipeline.machine.run()

    (call,) = pipeline.peers.twilio.calls
    assert call.form["From"] == CALLER_IDS["+385"]


def test_no_caller_id_is_a_recorded_failure(pipeline: Pipeline) -> None:
    # GIVEN a registry with neither a matching prefix nor a default
    query(
        pipeline.database_url,
        "UPDATE property SET property_value = %s WHERE property_key = 'caller-id-registry'",
        (json.dumps({"+44": "+442071838750"}),),
    )
    pipeline.submit(start("restaurant-1", phone(at=int(time.time()))))

    pipeline.machine.run()

    assert pipeline.peers.twilio.calls == []
    ((_, status, _, error),) = pipeline.notification_states()
    assert status == "failed"
    assert error == (
        "no caller id: no prefix in caller-id-registry matches the number and there is no default"
    )


@pytest.mark.long(seconds=10)
def test_200_notifications_are_delivered_once_within_the_concurrency_limit(
    pipeline: Pipeline,
) -> None:
    # GIVEN 200 notifications due in the same window (five times the Map's concurrency),
    # and a peer that takes a moment
    pipeline.peers.pubnub.delay = 0.05
    due = int(time.time()) + 2
    for process in range(5):
        pipeline.submit(
            start(
                f"restaurant-{process}", *[pubnub(f"ch-{process}-{n}", at=due) for n in range(40)]
            )
        )

    # WHEN the state machine runs
    with ConnectionSampler(pipeline.database_url) as connections:
        pipeline.machine.run(timeout=300)

    # THEN each was published exactly once, with at most MaxConcurrency in flight, and
    # the functions together never held more database connections than the cap
    assert 0 < connections.peak <= 30
    channels = [publication.channel for publication in pipeline.peers.pubnub.publications]
    assert len(channels) == 200
    assert len(set(channels)) == 200
    assert pipeline.peers.pubnub.in_flight.peak in range(2, 41)  # parallel, never above 40
    assert pipeline.states() == ["sent"] * 200
