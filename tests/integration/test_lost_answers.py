"""Lambda as AWS runs it: an invocation may run and still answer an error (its answer
was lost, ``Lambda.ServiceException``), and Step Functions then retries it; one may be
throttled before it runs. The emulated Lambda service injects both (``LambdaFaults``),
and every notification is still delivered exactly once."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from devstack.emulation.moto_services.sandboxes import (
    FAULT_LOST_ANSWER,
    FAULT_THROTTLED,
    LambdaFaults,
)
from devstack.peers.providers import DROP
from tests.support.contract_cases import email, phone, pubnub, start
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.long

DATABASE_STEPS = ("FunctionsActivator", "FunctionsConfirm", "FunctionsRecord")
# The first draws of this seed: the first claim runs and its answer is lost, the retry
# answers (the activator is invoked before any other function).
SEED = 37
PROCESSES = 7


@pytest.mark.long(seconds=10)
def test_lost_answers_of_every_database_step_deliver_each_notification_once(
    pipeline: Pipeline,
) -> None:
    # GIVEN 30% of the invocations of claim, confirm and record throttled before they
    # run, and 30% of those that ran answering Lambda.ServiceException
    steps = [pipeline.machine.function_named(prefix) for prefix in DATABASE_STEPS]
    faults = pipeline.lambdas.faults = LambdaFaults(0.3, functions=steps, seed=SEED)
    due = int(time.time()) + 2
    for n in range(PROCESSES):
        pipeline.submit(
            start(
                f"restaurant-{n}",
                phone(f"+3859112345{n:02d}", at=due),
                email(f"owner{n}@example.com", at=due),
                pubnub(f"ch-{n}", at=due),
            )
        )

    # WHEN one execution runs
    pipeline.machine.run(timeout=180)

    # THEN every notification reached its peer exactly once, and each is recorded sent
    calls = Counter(call.form["To"] for call in pipeline.peers.twilio.calls)
    mails = Counter(mail.recipients[0] for mail in pipeline.peers.smtp.mails)
    publications = Counter(item.channel for item in pipeline.peers.pubnub.publications)
    assert calls == {f"+3859112345{n:02d}": 1 for n in range(PROCESSES)}
    assert mails == {f"owner{n}@example.com": 1 for n in range(PROCESSES)}
    assert publications == {f"ch-{n}": 1 for n in range(PROCESSES)}
    assert pipeline.states() == ["sent"] * 3 * PROCESSES
    # AND every step lost answers and was throttled along the way
    for step in steps[1:]:
        assert faults.counts[step][FAULT_LOST_ANSWER] > 0, faults.summary()
        assert faults.counts[step][FAULT_THROTTLED] > 0, faults.summary()
    assert faults.counts[steps[0]][FAULT_LOST_ANSWER] >= 1, faults.summary()


def test_a_provider_that_drops_the_connection_gets_one_request_and_it_is_unknown(
    pipeline: Pipeline,
) -> None:
    # GIVEN Twilio, the SMTP server and PubNub each take the request and then drop the
    # connection before answering
    pipeline.peers.twilio.script.append(DROP)
    pipeline.peers.smtp.handler.drop_after_data = True
    pipeline.peers.pubnub.script.append(DROP)
    now = int(time.time())
    pipeline.submit(start("restaurant-42", phone(at=now), email(at=now), pubnub(at=now)))

    # WHEN the state machine runs
    pipeline.machine.run()

    # THEN each provider got exactly one request, none was retried, and each
    # notification is unknown with the reason (none failed, none claimed sent)
    assert len(pipeline.peers.twilio.calls) == 1
    assert len(pipeline.peers.smtp.mails) == 1
    assert len(pipeline.peers.pubnub.publications) == 1
    rows = pipeline.notification_states()
    assert [(channel, state) for channel, state, _, _ in rows] == [
        ("phone", "unknown"),
        ("email", "unknown"),
        ("pubnub", "unknown"),
    ]
    assert all(error.startswith("AmbiguousDeliveryError: ") for _, _, _, error in rows)


def test_a_notifier_whose_answer_was_lost_is_unknown_until_twilio_reports_the_call(
    pipeline: Pipeline,
) -> None:
    # GIVEN every answer of the phone notifier is lost after it ran (the call was placed)
    notifier = pipeline.machine.function_named("FunctionsNotifierPhone")
    faults = pipeline.lambdas.faults = LambdaFaults(
        1.0, functions=[notifier], kinds=[FAULT_LOST_ANSWER]
    )
    pipeline.submit(start("restaurant-42", phone(at=int(time.time()))))

    # WHEN the state machine runs
    pipeline.machine.run()

    # THEN the call was placed once, never retried, and its outcome is unknown, not failed
    (call,) = pipeline.peers.twilio.calls
    assert faults.counts == {notifier: {FAULT_LOST_ANSWER: 1}}
    ((_, state, provider_ref, error),) = pipeline.notification_states()
    assert (state, provider_ref) == ("unknown", None)
    assert error.startswith("Lambda.ServiceException")

    # AND Twilio's status callback for that call settles it as sent
    assert pipeline.peers.twilio.report(call, "completed", duration=12) == 200
    ((_, state, provider_ref, error),) = pipeline.notification_states()
    assert (state, provider_ref, error) == ("sent", call.sid, None)


def test_a_lost_answer_after_twilio_reported_the_call_is_sent_whatever_comes_first(
    pipeline: Pipeline,
) -> None:
    # GIVEN Twilio reports the call's progress at once, and the notifier's answer is lost
    pipeline.peers.twilio.auto_report = ("initiated", "ringing", "in-progress", "completed")
    notifier = pipeline.machine.function_named("FunctionsNotifierPhone")
    pipeline.lambdas.faults = LambdaFaults(1.0, functions=[notifier], kinds=[FAULT_LOST_ANSWER])
    pipeline.submit(start("restaurant-42", phone(at=int(time.time()))))

    # WHEN the state machine runs and Twilio's callbacks have all arrived
    pipeline.machine.run()
    pipeline.wait_for(lambda: len(pipeline.peers.twilio.callbacks) == 4)

    # THEN the notification is sent with the call's SID, whichever came first
    (call,) = pipeline.peers.twilio.calls
    assert {callback.answer for callback in pipeline.peers.twilio.callbacks} == {200}
    ((_, state, provider_ref, error),) = pipeline.notification_states()
    assert (state, provider_ref, error) == ("sent", call.sid, None)
