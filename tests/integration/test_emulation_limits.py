"""What AWS enforces, the emulation enforces: each function's timeout (from the
template), the function URL's 6 MB request cap; and what the pipeline does about it: a
provider that trickles its answer ends the delivery unknown before the function's
timeout, and the record step rides out a database outage."""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse
from typing import Any

import pytest
from psycopg2.extensions import parse_dsn

from devstack.emulation.template import resources, synthesized_template
from devstack.peers.postgres import query
from escalator.handlers import notifier as notifier_handler
from tests.support.contract_cases import email, phone, pubnub, start
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.long


def test_the_emulated_functions_have_the_templates_timeouts(pipeline: Pipeline) -> None:
    template = resources(synthesized_template(), "AWS::Lambda::Function")
    for logical_id, function in template.items():
        assert pipeline.lambdas.timeouts[logical_id] == function["Properties"]["Timeout"]


def test_an_invocation_past_its_timeout_ends_timed_out_and_its_delivery_unknown(
    pipeline: Pipeline,
) -> None:
    # GIVEN an e-mail notifier that hangs, and a function timeout of 2 seconds
    notifier = pipeline.machine.function_named("FunctionsNotifierEmail")
    release = threading.Event()

    def hanging(event: dict[str, Any], context: Any) -> Any:
        release.wait(60)
        return {}

    pipeline.lambdas.overrides[notifier] = hanging
    pipeline.lambdas.timeouts[notifier] = 2
    pipeline.submit(start("restaurant-42", email(at=int(time.time()))))

    # WHEN the state machine runs
    try:
        pipeline.machine.run()
    finally:
        release.set()

    # THEN Lambda answered Sandbox.Timedout, and the e-mail may have gone: unknown
    assert pipeline.lambdas.timed_out == {notifier: 1}
    ((_, state, _, error),) = pipeline.notification_states()
    assert state == "unknown"
    assert error == "Sandbox.Timedout: Task timed out after 2.00 seconds"


def test_a_provider_trickling_its_answer_ends_unknown_before_the_function_times_out(
    pipeline: Pipeline,
) -> None:
    # GIVEN Twilio answers one byte every half second (no per-read timeout ever trips),
    # and the phone notifier's function times out after 4 seconds
    pipeline.peers.twilio.trickle = 0.5
    notifier = pipeline.machine.function_named("FunctionsNotifierPhone")
    pipeline.lambdas.timeouts[notifier] = 4
    pipeline.submit(start("restaurant-42", phone(at=int(time.time()))))

    # WHEN the state machine runs
    pipeline.machine.run()

    # THEN the call was placed once, the notifier gave up on its own before its
    # timeout, and the call is unknown (Twilio's callback may still settle it)
    assert len(pipeline.peers.twilio.calls) == 1
    assert pipeline.lambdas.timed_out == {}
    ((_, state, _, error),) = pipeline.notification_states()
    assert state == "unknown"
    assert error.startswith("AmbiguousDeliveryError: no answer from the provider within 2.0 s")


def test_the_notifier_waits_for_its_provider_until_shortly_before_its_timeout(
    pipeline: Pipeline,
) -> None:
    # A provider answering within the time left is waited for, however slow each byte.
    pipeline.peers.pubnub.trickle = 0.01
    pipeline.submit(start("restaurant-42", pubnub(at=int(time.time()))))

    pipeline.machine.run()

    assert pipeline.states() == ["sent"]
    assert len(pipeline.peers.pubnub.publications) == 1


def test_the_function_url_refuses_a_request_over_6_mb_without_reading_it(
    pipeline: Pipeline,
) -> None:
    # GIVEN a request announcing a 256 MiB unsigned body, of which only a little is sent
    address = urllib.parse.urlsplit(pipeline.status_callback_url)
    invocations = len(pipeline.lambdas.invocations)
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        connection.sendall(
            b"POST /?notification=1 HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 268435456\r\n\r\n" + b"A" * 1024
        )
        # WHEN the endpoint answers
        answer = connection.recv(1024)

    # THEN it is refused as AWS refuses it, and no function ran
    assert answer.startswith(b"HTTP/1.0 413") or answer.startswith(b"HTTP/1.1 413")
    assert len(pipeline.lambdas.invocations) == invocations


def test_the_record_step_rides_out_a_database_outage(pipeline: Pipeline) -> None:
    # GIVEN the database refuses the functions for a second from the moment the
    # notifier has delivered (the record step's connection is cut too): shorter than
    # the record step's retries take, whatever their jitter draws (four retries of up to
    # 2, 4, 8 and 8 s: at least a second in all but about one run in 12,000)
    database = parse_dsn(pipeline.database_url)["dbname"]
    notifier = pipeline.machine.function_named("FunctionsNotifierPubnub")
    restored = threading.Event()

    def restore() -> None:
        query(pipeline.database_url, f'GRANT CONNECT ON DATABASE "{database}" TO PUBLIC')
        restored.set()

    def deliver_then_cut(event: dict[str, Any], context: Any) -> Any:
        answer = notifier_handler.handler(event, context)
        query(pipeline.database_url, f'REVOKE CONNECT ON DATABASE "{database}" FROM PUBLIC')
        query(
            pipeline.database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE usename = 'escalator_app' AND datname = current_database()",
        )
        threading.Timer(1, restore).start()
        return answer

    pipeline.lambdas.overrides[notifier] = deliver_then_cut
    pipeline.submit(start("restaurant-42", pubnub(at=int(time.time()))))

    # WHEN the state machine runs
    pipeline.machine.run()

    # THEN the record step failed on the database, retried, and recorded the delivery
    assert restored.is_set()
    # (what its window's log group says: the template logs failures, level ERROR)
    (window,) = pipeline.machine.window_log().values()
    failures = [
        event["details"]["error"] for event in window if event["type"] == "LambdaFunctionFailed"
    ]
    assert "DatabaseError" in failures
    assert pipeline.states() == ["sent"]
    assert len(pipeline.peers.pubnub.publications) == 1
