"""The stress suite: nothing lost, nothing twice, under concurrency, floods and faults.

Reduced sizes by default (CI runs them inside ``make test``); ``make stress`` sets
``ESCALATOR_STRESS=full`` for the sizes of the issue.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from psycopg2.extensions import parse_dsn

from devstack.emulation.context import LocalContext
from devstack.emulation.events import lambda_context, sqs_event, sqs_record
from devstack.emulation.sqs import EventSource, queues_from_template
from devstack.emulation.template import synthesized_template
from devstack.local.pipeline import running_pipeline
from devstack.peers.postgres import PostgresServer, query
from devstack.polling import wait_until
from escalator.handlers import initiator
from escalator.migrations import default_sql_dir, migrate
from tests.integration.test_initiator_properties import assert_only_valid_processes, bodies
from tests.support.contract_cases import pubnub_starts
from tests.support.pipeline import Pipeline

FULL = os.environ.get("ESCALATOR_STRESS") == "full"
pytestmark = [
    pytest.mark.stress,
    pytest.mark.long,
    # (the full sizes wait up to an hour for their executions to end)
    *([pytest.mark.timeout(2 * 3600)] if FULL else []),
]
TERMINAL = {"sent", "failed", "cancelled", "expired", "unknown"}


def test_four_overlapping_executions_deliver_each_notification_exactly_once(
    pipeline: Pipeline,
) -> None:
    count = 10_000 if FULL else 120
    # Four executions' worth of threads share one process here: give the peer and the
    # sending lease room, so what is measured is exactly-once, not the emulator's speed.
    pipeline.configure(
        CLAIM_BATCH_SIZE="50",
        PUBNUB_TIMEOUT_SECONDS="120",
        SENDING_LEASE_SECONDS="600",
    )
    due = int(time.time()) + 3
    for document in pubnub_starts(count, due):
        pipeline.submit(document)

    executions = [pipeline.machine.start() for _ in range(4)]
    descriptions = pipeline.machine.settle(timeout=3600)

    assert {description["executionArn"] for description in descriptions} >= set(executions)
    assert {description["status"] for description in descriptions} == {"SUCCEEDED"}
    channels = Counter(p.channel for p in pipeline.peers.pubnub.publications)
    assert len(channels) == count
    assert set(channels.values()) == {1}
    assert set(pipeline.states()) == {"sent"}
    owners = query(pipeline.database_url, "SELECT count(DISTINCT claim_owner) FROM notification")
    assert owners[0][0] >= 2


@pytest.fixture(scope="module")
def flood_database(postgres: PostgresServer) -> Iterator[str]:
    with postgres.scratch_database() as name:
        yield postgres.dsn(name)


def test_a_flood_of_generated_bodies_never_crashes_and_leaves_only_valid_rows(
    flood_database: str, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (reduced: test_initiator_properties draws 500 bodies of the same kind already)
    examples = 10_000 if FULL else 200
    name = str(parse_dsn(flood_database)["dbname"])
    monkeypatch.setenv("DATABASE_URL", postgres.application_dsn(name))
    context = lambda_context()
    handled: list[str] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=bodies, group=st.sampled_from(["g1", "g2", "g3"]))
    def handle(body: str, group: str) -> None:
        record = sqs_record(body, group=group)
        assert initiator.handler(sqs_event(record), context) == {"batchItemFailures": []}
        handled.append(record["messageId"])

    handle()
    assert len(handled) >= examples
    assert query(flood_database, "SELECT count(*) FROM request_log") == [(len(handled),)]
    assert_only_valid_processes(flood_database)


class RestartablePostgres:
    """An embedded PostgreSQL of its own, which the test stops and starts again."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.server: Any = None
        self.url = ""

    def start(self) -> None:
        from pgserver import postgres_server

        self.server = postgres_server.get_server(self.data_dir, cleanup_mode="stop")
        self.url = str(self.server.get_uri())

    def stop(self) -> None:
        self.server.cleanup()


# The dead-letter queue took a request (and the rest of its group in the batch) after 5
# receives: a 15-minute outage moved waiting requests there, out of their group's order.
OLD_RECEIVE_BUDGET = 5


def test_database_outage_during_ingest_loses_nothing_and_keeps_group_order(
    tmp_path: Path, aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    groups, rounds = (50, 20) if FULL else (10, 6)
    database = RestartablePostgres(tmp_path / "pg")
    database.start()
    migrate(database.url, default_sql_dir())
    monkeypatch.setenv("DATABASE_URL", database.url)
    monkeypatch.setenv("DB_IDLE_CHECK_SECONDS", "0")
    due = int(time.time()) + 3600
    try:
        with mock_aws():
            sqs = boto3.client("sqs", region_name="eu-central-1")
            queues = queues_from_template(synthesized_template(), sqs)
            (url,) = [queue.url for name, queue in queues.items() if "DeadLetters" not in name]
            (dead,) = [queue.url for name, queue in queues.items() if "DeadLetters" in name]
            # GIVEN each group alternates start and stop, so order matters
            for round_number in range(rounds):
                for group in range(groups):
                    action = "start" if round_number % 2 == 0 else "stop"
                    document: dict[str, Any] = {"process-id": f"r{group}", "action": action}
                    if action == "start":
                        document["notifications"] = [
                            {"channel": "console", "at": due, "label": f"order {round_number}"}
                        ]
                    sqs.send_message(
                        QueueUrl=url,
                        MessageBody=json.dumps(document),
                        MessageGroupId=f"r{group}",
                        MessageDeduplicationId=str(uuid.uuid4()),
                    )
            # The template's receive count; its visibility timeout (3 minutes) scaled down.
            source = EventSource(
                sqs, url, initiator.handler, context=LocalContext(), visibility_timeout=0.2,
                wait_seconds=0,
            )  # fmt: skip

            def ingest_until(condition: Callable[[], bool], timeout: float) -> None:
                """Poll the queue as Lambda's poller does, a batch or a group's retry at a
                time, until ``condition`` holds (polled here, not by a thread: the outage
                then begins after exactly the batches it takes, however busy the machine)."""

                def polled() -> bool:
                    source.poll_once()
                    return condition()

                wait_until(polled, timeout=timeout, interval=0.01, max_interval=0.05)

            # WHEN the database goes away in the middle of the ingest and comes back
            ingest_until(lambda: applied(database.url) >= groups * rounds // 3, timeout=60)
            # for longer than the old budget: twice its 5 receives of the requests held up
            database.stop()
            ingest_until(lambda: source.most_receives > 2 * OLD_RECEIVE_BUDGET, timeout=60)
            database.start()
            ingest_until(lambda: applied(database.url) == groups * rounds, timeout=60)
            lost = sqs.get_queue_attributes(
                QueueUrl=dead, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
        # THEN nothing went to the dead-letter queue, and every request was applied exactly
        # once, in its group's order
        assert lost == "0"
        outcomes = query(
            database.url, "SELECT outcome, count(*) FROM request_log GROUP BY 1 ORDER BY 1"
        )
        assert outcomes == [("started", groups * rounds // 2), ("stopped", groups * rounds // 2)]
        per_group = query(
            database.url,
            "SELECT process_id, count(*), bool_and(state = 'stopped') FROM process GROUP BY 1",
        )
        assert len(per_group) == groups
        assert all(n == rounds // 2 and stopped for _, n, stopped in per_group)
    finally:
        database.stop()


def applied(url: str) -> int:
    """How many requests the database holds; -1 while it cannot be reached."""
    try:
        return int(query(url, "SELECT count(*) FROM request_log")[0][0])
    except psycopg2.OperationalError:  # the database is down for a moment
        return -1


BOUNDARIES = ["after claim", "after confirm", "after send", "before record"]


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_a_crash_at_each_step_boundary_duplicates_nothing_and_leaves_nothing_open(
    boundary: str, pipeline: Pipeline
) -> None:
    count = 100 if FULL else 20
    machine = pipeline.machine
    due = int(time.time()) + 2
    for document in pubnub_starts(count, due):
        pipeline.submit(document)
    crashed = threading.Event()
    current: dict[str, str] = {}

    def crashing(name: str, *, run_first: bool) -> Callable[[dict[str, Any], Any], Any]:
        """Every invocation of the crashed execution dies at the boundary (after running
        the real step when the boundary is after it); the first one stops the execution."""
        real = pipeline.lambdas.handler_for(name, handler_path(name))

        def handler(event: dict[str, Any], context: Any) -> Any:
            if run_first:
                real(event, context)
            if not crashed.is_set():
                crashed.set()
                machine.sfn.stop_execution(executionArn=current["arn"])
            raise RuntimeError(f"crash {boundary}")

        return handler

    target = {
        "after claim": ("FunctionsConfirm", False),
        "after confirm": ("FunctionsConfirm", True),
        "after send": ("FunctionsNotifierPubnub", True),
        "before record": ("FunctionsRecord", False),
    }[boundary]
    name = machine.function_named(target[0])
    pipeline.lambdas.overrides[name] = crashing(name, run_first=target[1])

    # WHEN an execution crashes at the boundary, and later ones run after the leases
    current["arn"] = machine.start()
    assert crashed.wait(30)
    assert machine.wait(current["arn"])["status"] in ("ABORTED", "FAILED")
    del pipeline.lambdas.overrides[name]

    def settled() -> bool:
        machine.run()
        return not set(pipeline.states()) - TERMINAL

    wait_until(settled, timeout=60, interval=1, what="every notification ending")

    # THEN nothing is left open, nothing was delivered twice, and only a notification
    # caught between confirm and record may lack its delivery (it is unknown, not
    # resent). A notifier that crashed after sending, caught before the stop took
    # effect, is recorded as failed with the crash as its reason (its message went out).
    rows = pipeline.notification_states()
    states = Counter(state for _, state, _, _ in rows)
    assert set(states) <= TERMINAL
    channels = Counter(p.channel for p in pipeline.peers.pubnub.publications)
    assert set(channels.values()) <= {1}
    failed = [error for _, state, _, error in rows if state == "failed"]
    assert failed == [] or (
        boundary == "after send" and set(failed) == {f"RuntimeError: crash {boundary}"}
    )
    assert states["sent"] + states["unknown"] + states["failed"] == count
    if boundary == "after claim":
        assert states == {"sent": count}
    elif boundary == "after confirm":
        # (no notifier ran: what an iteration released after its confirm failed, a later
        # tick delivered; what the stop ended before its release is unknown)
        assert states["failed"] == 0
        assert len(channels) == states["sent"]
    else:
        assert states["unknown"] + states["failed"] >= 1
        assert len(channels) >= states["sent"] + states["failed"]


def handler_path(logical_id: str) -> str:
    """The ``Handler`` the template gives the function (moto names it by its logical id)."""
    handler: str = synthesized_template()["Resources"][logical_id]["Properties"]["Handler"]
    return handler


def test_many_due_at_once_are_delivered_once_and_no_execution_outgrows_its_history(
    database_url: str,
    application_url: str,
    aws_credentials: None,
    record_property: Callable[[str, object], None],
) -> None:
    # Full size: 5,000 due at once, the quota of 25,000 events, claims of 200. Reduced:
    # 120 due, a quota of 1,000, claims of 20, where one execution claiming in a loop
    # (about 23 events a delivery) would pass the quota more than twice over.
    count, cap, batch = (5_000, 25_000, 200) if FULL else (120, 1_000, 20)
    settings = {"CLAIM_BATCH_SIZE": str(batch), "SENDING_LEASE_SECONDS": "600"}
    with running_pipeline(
        database_url, settings, application_url=application_url, history_cap=cap
    ) as pipeline:
        pipeline.submit(*pubnub_starts(count, int(time.time()) + 2))

        first = pipeline.machine.start()
        executions = pipeline.machine.settle(timeout=3600)

        assert first in {execution["executionArn"] for execution in executions}
        assert {execution["status"] for execution in executions} == {"SUCCEEDED"}
        sizes = [len(pipeline.machine.history(e["executionArn"])) for e in executions]
        record_property("largest_execution_events", max(sizes))
        print(f"{len(executions)} executions, the largest with {max(sizes)} events (cap {cap})")
        assert max(sizes) < cap
        assert len(executions) >= count // batch
        published = Counter(p.channel for p in pipeline.peers.pubnub.publications)
        assert len(published) == count
        assert set(published.values()) == {1}
        assert Counter(pipeline.states()) == {"sent": count}


def test_the_tick_stays_within_the_history_quota_whatever_its_window_delivers(
    database_url: str, application_url: str, aws_credentials: None
) -> None:
    # GIVEN a quota of 200 events, and 30 deliveries: about 700 events, had the tick run
    # them itself (it did before its deliveries moved into an Express window); the
    # window logs every event (delivery_log_level ALL), to count them
    with running_pipeline(
        database_url, application_url=application_url, history_cap=200, window_log_level="ALL"
    ) as pipeline:
        pipeline.submit(*pubnub_starts(30, int(time.time())))

        # WHEN a tick runs
        description = pipeline.machine.wait(pipeline.machine.start())

        # THEN it succeeded, its own history far below the quota (the window's has no
        # quota on AWS: an Express execution keeps no history), and everything was sent
        assert description["status"] == "SUCCEEDED", description
        assert len(pipeline.machine.history(description["executionArn"])) < 40
        (window,) = pipeline.machine.window_log().values()
        assert len(window) > 200
        assert window[-1]["type"] == "ExecutionSucceeded"
        assert pipeline.states() == ["sent"] * 30
