"""The delivery window (Express) as AWS runs it, and the near-due arrivals the initiator
delivers through it, through the synthesized definitions executed by moto.

Real PostgreSQL, real handlers (in-process), real protocol peers on loopback.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from devstack.emulation.events import lambda_context, sqs_event, sqs_record
from devstack.emulation.moto_services.express import ExpressRuns
from devstack.emulation.template import REGION
from devstack.local.demo import free_port as closed_port  # (a port nobody listens on)
from devstack.local.pipeline import Pipeline, running_pipeline
from devstack.peers.postgres import query
from escalator import bootstrap
from escalator.executions import recent_executions, window_logs
from escalator.handlers import initiator
from escalator.limits import claim_lookahead
from escalator_cli.main import main as escalator
from tests.support import state
from tests.support.contract_cases import PUBNUB, pubnub, pubnub_starts, start

# Long: started first, so that the parallel run ends with the short tests.
pytestmark = pytest.mark.long

SHORT_LEASES = {"CLAIM_GRACE_SECONDS": "2", "SENDING_LEASE_SECONDS": "3"}
# The ticks' schedule in these tests (the functions' lookahead is claimed for it).
TICK_PERIOD_SECONDS = 60


def owners(pipeline: Pipeline) -> list[str | None]:
    rows = query(pipeline.database_url, "SELECT claim_owner FROM notification ORDER BY id")
    return [row[0] for row in rows]


def claim_lapsed(pipeline: Pipeline) -> bool:
    rows = query(pipeline.database_url, "SELECT bool_and(lease_until < now()) FROM notification")
    return rows == [(True,)]


def test_notifications_arriving_near_their_due_time_are_delivered_without_a_tick(
    pipeline: Pipeline,
) -> None:
    # GIVEN an initiator that starts a delivery window for near-due arrivals
    pipeline.start_near_due()
    now = int(time.time())

    # WHEN one batch brings three starts: one with a notification due in 2 s and one due
    # in an hour, one due in 2 s, and one due 890 s ago (the limit of lateness is 900 s)
    records = [
        sqs_record(
            start("restaurant-1", pubnub("soon-1", at=now + 2), pubnub("later", at=now + 3600))
        ),
        sqs_record(start("restaurant-2", pubnub("soon-2", at=now + 2))),
        sqs_record(start("restaurant-3", pubnub("overdue", at=now - 890))),
    ]
    response = initiator.handler(sqs_event(*records), lambda_context())
    assert response == {"batchItemFailures": []}

    # THEN, with no tick at all, the near ones are delivered once each, none before its
    # time, the overdue one at once (not accepted, then expired); the later one waits
    # for the ticks
    pipeline.wait_for(lambda: pipeline.states().count("sent") == 3, timeout=30)
    assert pipeline.states() == ["sent", "pending", "sent", "sent"]
    received = {p.channel: p.received_at for p in pipeline.peers.pubnub.publications}
    assert sorted(received) == ["overdue", "soon-1", "soon-2"]
    assert min(received["soon-1"], received["soon-2"]) >= now + 2
    assert pipeline.machine.settle(timeout=5) == []  # no tick was needed
    # by one window the initiator started for the batch (AWS lists no Express execution:
    # the emulation counts them), each claim its message's own (as the database says)
    assert pipeline.machine.settle_windows(timeout=30) == 1
    assert owners(pipeline) == [
        f"arrival-{records[0]['messageId']}",
        None,
        f"arrival-{records[1]['messageId']}",
        f"arrival-{records[2]['messageId']}",
    ]
    # and none of them failed (the template logs a window's failures)
    assert pipeline.machine.window_log() == {}


def test_a_window_that_cannot_start_leaves_its_notifications_to_the_next_tick(
    pipeline: Pipeline, log_lines: Any
) -> None:
    # GIVEN an initiator whose delivery window does not exist (a broken deploy)
    pipeline.configure(DELIVERY_WINDOW_ARN=pipeline.machine.window_arn.replace("window", "missing"))

    # WHEN a start arrives with a notification due in 2 s
    pipeline.submit(start("restaurant-42", pubnub(at=int(time.time()) + 2)))

    # THEN its claim went back to pending at once, and the next tick delivers it once
    assert (pipeline.states(), owners(pipeline)) == (["pending"], [None])
    (line,) = [line for line in log_lines() if line["message"].startswith("near-due delivery not")]
    assert line["released"] == 1
    pipeline.machine.run()
    assert pipeline.states() == ["sent"]
    assert len(pipeline.peers.pubnub.publications) == 1


def test_an_arrival_accepted_at_the_lateness_limit_whose_window_cannot_start_is_delivered(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an initiator that starts a delivery window for near-due arrivals, whose Step
    # Functions endpoint cannot be reached
    pipeline.start_near_due()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", f"http://127.0.0.1:{closed_port()}")

    # WHEN a start arrives with a notification due 890 s ago (the limit is 900 s)
    pipeline.submit(start("restaurant-42", pubnub(at=int(time.time()) - 890)))

    # THEN it was accepted, and its claim went back to the ticks at once
    assert (pipeline.states(), owners(pipeline)) == (["pending"], [None])

    # WHEN the next tick comes as late as a tick may: two periods later
    monkeypatch.delenv("AWS_ENDPOINT_URL_SFN")
    query(
        pipeline.database_url,
        "UPDATE notification SET due_at = due_at - make_interval(secs => %s)",
        (claim_lookahead(TICK_PERIOD_SECONDS),),
    )
    pipeline.machine.run({"period_seconds": TICK_PERIOD_SECONDS})

    # THEN the tick claims and delivers it, once: accepted, it is never expired unsent
    assert pipeline.states() == ["sent"]
    assert len(pipeline.peers.pubnub.publications) == 1


def test_a_redelivered_start_whose_window_never_started_starts_it(pipeline: Pipeline) -> None:
    # GIVEN an initiator that committed a start with a near-due notification and died
    # before it started its window (SQS will deliver the message again)
    pipeline.start_near_due()
    record = sqs_record(start("restaurant-42", pubnub(at=int(time.time()) + 2)))
    bootstrap.initiator().batch().apply(initiator.request_message(SQSRecord(record)))
    assert pipeline.states() == ["claimed"]

    # WHEN the message comes again
    response = initiator.handler(sqs_event(record), lambda_context())

    # THEN it is not applied again, but its claim gets its window: delivered once
    assert response == {"batchItemFailures": []}
    pipeline.wait_for(lambda: pipeline.states() == ["sent"], timeout=30)
    assert len(pipeline.peers.pubnub.publications) == 1
    assert [row[1] for row in state.requests(pipeline.database_url)] == ["started"]


@pytest.fixture
def rerunning(
    database_url: str, tls_application_url: str, aws_credentials: None
) -> Iterator[Pipeline]:
    """A pipeline whose every Express execution runs twice (AWS runs one at least once)."""
    with running_pipeline(
        database_url,
        SHORT_LEASES,
        application_url=tls_application_url,
        express=ExpressRuns(rerun_probability=1.0, seed=19),
    ) as running:
        yield running


def test_every_window_run_twice_still_delivers_each_notification_once(
    rerunning: Pipeline,
) -> None:
    # GIVEN ten notifications due in 2 s, and a window that runs twice for each start
    # that AWS may run twice: an asynchronous one (StartExecution, the initiator's); the
    # tick's is synchronous (StartSyncExecution), which AWS runs at most once
    pipeline = rerunning
    pipeline.submit(*pubnub_starts(10, int(time.time()) + 2))

    # WHEN a tick runs, and near-due arrivals start their own (rerun) windows too
    pipeline.machine.run()
    pipeline.start_near_due()
    pipeline.submit(start("restaurant-near", pubnub("near", at=int(time.time()) + 2)))
    pipeline.wait_for(lambda: "pending" not in pipeline.states(), timeout=30)
    started = pipeline.machine.settle_windows(timeout=30)

    # THEN the initiator's window ran twice, the tick's once, and each notification was
    # delivered exactly once
    assert pipeline.lambdas.express.reruns == 1
    assert started == 3
    published = Counter(p.channel for p in pipeline.peers.pubnub.publications)
    assert len(published) == 11
    assert set(published.values()) == {1}
    assert pipeline.states() == ["sent"] * 11


def test_each_iteration_of_a_window_confirms_with_a_run_of_its_own(pipeline: Pipeline) -> None:
    # GIVEN three notifications due at once
    due = int(time.time()) + 2
    pipeline.submit(*[start(f"restaurant-{n}", pubnub(f"ch-{n}", at=due)) for n in range(3)])

    # WHEN a tick delivers them through one window
    pipeline.machine.run()

    # THEN each confirm step's move to sending is remembered with its entry and the run its
    # Map iteration drew: a second run of the window draws others, and never resumes it
    assert pipeline.states() == ["sent"] * 3
    tokens = [
        row[0] for row in query(pipeline.database_url, "SELECT confirm_token FROM notification")
    ]
    entries = [token.split(" ") for token in tokens]
    assert all(len(parts) == 2 for parts in entries), tokens
    runs = {run for _, run in entries}
    assert len(runs) == 3
    assert all(re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", run) for run in runs)


@pytest.fixture
def capped(
    database_url: str, tls_application_url: str, aws_credentials: None
) -> Iterator[Pipeline]:
    """A pipeline whose Express executions end at 1 s (AWS: five minutes)."""
    with running_pipeline(
        database_url,
        {**SHORT_LEASES, "CLAIM_GRACE_SECONDS": "1"},
        application_url=tls_application_url,
        express=ExpressRuns(1.0),
    ) as running:
        yield running


def test_a_window_past_its_cap_ends_and_what_it_held_is_delivered_later_once(
    capped: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a notification due in 7 s: later than a window (1 s here) can wait for it
    pipeline = capped
    due = int(time.time()) + 7
    pipeline.submit(start("restaurant-42", pubnub(at=due)))

    # WHEN a tick runs: its window ends at the cap
    description = pipeline.machine.wait(pipeline.machine.start())

    # THEN the tick fails, says why, and releases the claim at once; nothing was sent
    assert description["status"] == "FAILED"
    assert description["error"] == "DeliveryWindowFailed"
    summary = json.loads(description["cause"])
    assert summary["claimed"] == 1
    assert summary["window"] == {
        "failed": True,
        "status": "TIMED_OUT",
        "error": "TIMED_OUT",
        "cause": "",
        "released": 1,
    }
    assert pipeline.lambdas.express.timed_out == 1
    assert pipeline.peers.pubnub.publications == []
    assert pipeline.states() == ["pending"]
    # (the window's log group has its end: the template logs failures and time-outs)
    assert [event["type"] for event in pipeline.machine.window_events()] == ["ExecutionTimedOut"]

    # AND once it is due (no claim grace to wait out), a later tick delivers it once
    pipeline.wait_for(lambda: time.time() > due, timeout=30)
    pipeline.machine.run()
    assert pipeline.states() == ["sent"]
    (publication,) = pipeline.peers.pubnub.publications
    assert publication.channel == PUBNUB

    # AND `escalator executions` shows both ticks from the Step Functions API as AWS
    # serves it (Express executions refused): what the window delivered from the tick's
    # output, why the first failed from its cause, and where the other windows log
    delivered, failed = recent_executions(sfn=pipeline.machine.sfn)
    assert (delivered["status"], delivered["window"]) == ("SUCCEEDED", {})
    assert delivered["outcomes"] == [{"notification_id": 1, "outcome": "sent"}]
    assert (failed["status"], failed["outcomes"]) == ("FAILED", [])
    assert failed["window"] == {
        "failed": True,
        "claimed": 1,
        "status": "TIMED_OUT",
        "error": "TIMED_OUT",
        "cause": "",
        "released": 1,
    }
    assert window_logs(pipeline.machine.sfn) == [
        {
            "state_machine": "Escalator-delivery-window",
            "log_group": "/aws/vendedlogs/states/Escalator-delivery-window",
            "level": "ERROR",
        }
    ]
    # (as the command prints it)
    capsys.readouterr()
    assert escalator(["executions", "--region", REGION]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("#1 sent")
    assert lines[1].endswith("window TIMED_OUT: TIMED_OUT; 1 claims went back to the ticks")
    assert "/aws/vendedlogs/states/Escalator-delivery-window (level ERROR)" in lines[3]
