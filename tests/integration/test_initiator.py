"""The initiator Lambda against a real PostgreSQL: every rule of the request contract."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from aws_lambda_powertools.utilities.typing import LambdaContext

from devstack.emulation.events import body, sqs_event, sqs_record
from devstack.peers.postgres import PostgresServer, query
from escalator import bootstrap
from escalator.handlers import initiator
from escalator.lifecycle import NotificationState
from tests.support import state
from tests.support.contract_cases import (
    EMAIL,
    PHONE,
    InvalidCase,
    UnusableCase,
    email,
    invalid_cases,
    phone,
    pubnub,
    start,
    stop,
    unusable_target_cases,
)
from tests.support.lifecycle import bring_to
from tests.support.steps import Steps, claimed_ids

Handle = Callable[..., dict[str, Any]]
LogLines = Callable[[], list[dict[str, Any]]]
CASES = invalid_cases()
UNUSABLE = unusable_target_cases()


@pytest.fixture
def handle(initiator_env: str, lambda_context: LambdaContext) -> Handle:
    """``handle(record, ...)``: invoke the initiator with an event of these records."""

    def invoke(*records: dict[str, Any]) -> dict[str, Any]:
        return dict(initiator.handler(sqs_event(*records), lambda_context))

    return invoke


def use_database(monkeypatch: pytest.MonkeyPatch, dsn: str) -> None:
    """Point the initiator at another database, as a new cold start would."""
    monkeypatch.setenv("DATABASE_URL", dsn)
    bootstrap.reset()


def failed_ids(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def test_start_creates_the_process_and_its_pending_notifications(
    handle: Handle, database_url: str, log_lines: LogLines
) -> None:
    # GIVEN a start with a phone call, an e-mail and a PubNub message
    document = start("restaurant-42", phone(), email(), pubnub())
    record = sqs_record(document)

    # WHEN the initiator handles it
    response = handle(record)

    # THEN the process is active with three pending notifications, due when asked
    assert failed_ids(response) == []
    assert state.processes(database_url) == [("restaurant-42", 1, "active")]
    due = [item["at"] for item in document["notifications"]]
    assert state.notifications(database_url) == [
        ("restaurant-42", 1, 0, "phone", PHONE, due[0], "pending"),
        ("restaurant-42", 1, 1, "email", EMAIL, due[1], "pending"),
        ("restaurant-42", 1, 2, "pubnub", "ch13234", due[2], "pending"),
    ]
    assert state.requests(database_url) == [
        (record["messageId"], "started", "restaurant-42", "start", None)
    ]
    # AND one log line tells it, with the process id and no personal data
    (line,) = [line for line in log_lines() if line.get("outcome")]
    assert line["outcome"] == "started"
    assert line["process_id"] == "restaurant-42"
    assert line["message_id"] == record["messageId"]
    assert line["notifications"] == 3


def test_logs_never_hold_a_phone_number_or_an_email_address(
    handle: Handle, log_lines: LogLines
) -> None:
    handle(
        sqs_record(start(PHONE, phone(), email())),
        sqs_record(start("r", email(f"x{EMAIL}"), phone("+38500000"))),
        sqs_record(stop(EMAIL)),
    )
    text = repr(log_lines())
    assert "+385911234567" not in text
    assert "+38500000" not in text
    assert EMAIL not in text
    assert "+385*******67" in text  # masked, not dropped


def test_duplicate_start_is_ignored(handle: Handle, database_url: str) -> None:
    first = sqs_record(start("restaurant-42", phone()))
    second = sqs_record(start("restaurant-42", email(), pubnub()))

    response = handle(first, second)

    assert failed_ids(response) == []
    assert state.processes(database_url) == [("restaurant-42", 1, "active")]
    assert [row[3] for row in state.notifications(database_url)] == ["phone"]
    outcomes = {row[0]: row[1:] for row in state.requests(database_url)}
    assert outcomes[second["messageId"]] == (
        "ignored",
        "restaurant-42",
        "start",
        "an active process has this id",
    )


def test_stop_cancels_undelivered_notifications_and_leaves_sending_ones(
    handle: Handle, database_url: str
) -> None:
    # GIVEN an active process whose notifications are pending, claimed and being sent
    handle(sqs_record(start("restaurant-42", phone(), email(), pubnub())))
    bring_to(database_url, NotificationState.CLAIMED, "position = 1")
    bring_to(database_url, NotificationState.SENDING, "position = 2")

    # WHEN it is stopped
    record = sqs_record(stop("restaurant-42"))
    assert failed_ids(handle(record)) == []

    # THEN pending and claimed are cancelled; the one already sending keeps its course
    assert state.processes(database_url) == [("restaurant-42", 1, "stopped")]
    assert [row[-1] for row in state.notifications(database_url)] == [
        "cancelled",
        "cancelled",
        "sending",
    ]
    outcomes = {row[0]: row[1] for row in state.requests(database_url)}
    assert outcomes[record["messageId"]] == "stopped"


def test_stop_of_an_unknown_process_is_ignored(handle: Handle, database_url: str) -> None:
    record = sqs_record(stop("nobody"))

    assert failed_ids(handle(record)) == []

    assert state.processes(database_url) == []
    assert state.requests(database_url) == [
        (record["messageId"], "ignored", "nobody", "stop", "no active process has this id")
    ]


def test_restart_after_the_process_ended_creates_a_new_process(
    handle: Handle, database_url: str
) -> None:
    # GIVEN a process that was stopped, and one that completed
    handle(sqs_record(start("stopped-one", phone())), sqs_record(stop("stopped-one")))
    handle(sqs_record(start("done-one", email())))
    bring_to(
        database_url,
        NotificationState.SENT,
        "process_ref = (SELECT id FROM process WHERE process_id = 'done-one')",
    )
    query(
        database_url,
        "UPDATE process SET state = 'completed', ended_at = now() WHERE process_id = 'done-one'",
    )

    # WHEN both are started again
    response = handle(
        sqs_record(start("stopped-one", pubnub())), sqs_record(start("done-one", pubnub()))
    )

    # THEN each has a second, active process with its own notifications
    assert failed_ids(response) == []
    assert state.processes(database_url) == [
        ("done-one", 1, "completed"),
        ("done-one", 2, "active"),
        ("stopped-one", 1, "stopped"),
        ("stopped-one", 2, "active"),
    ]
    assert [(row[0], row[1], row[3], row[-1]) for row in state.notifications(database_url)] == [
        ("done-one", 1, "email", "sent"),
        ("done-one", 2, "pubnub", "pending"),
        ("stopped-one", 1, "phone", "cancelled"),
        ("stopped-one", 2, "pubnub", "pending"),
    ]


def test_redelivered_message_changes_nothing(
    handle: Handle, database_url: str, log_lines: LogLines
) -> None:
    # GIVEN a start that was applied and then stopped
    first = sqs_record(start("restaurant-42", phone()))
    handle(first, sqs_record(stop("restaurant-42")))
    before = state.snapshot(database_url)

    # WHEN SQS delivers the same start message again (same message id)
    response = handle(first)

    # THEN it is acknowledged and nothing changes: no second process is started
    assert failed_ids(response) == []
    assert state.snapshot(database_url) == before
    assert log_lines()[-1]["outcome"] == "duplicate"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_invalid_request_is_recorded_with_its_reason_and_nothing_else(
    case: InvalidCase, handle: Handle, database_url: str, log_lines: LogLines
) -> None:
    record = sqs_record(case.body, group="group-1")

    response = handle(record)

    # acknowledged, never retried
    assert failed_ids(response) == []
    rows = query(database_url, "SELECT message_id, outcome, reason, body FROM request_log")
    assert len(rows) == 1
    message_id, outcome, reason, stored_body = rows[0]
    assert (message_id, outcome, reason) == (record["messageId"], "rejected", case.reason)
    assert stored_body.replace("\\x00", "\x00") == body(case.body)
    assert query(database_url, "SELECT count(*) FROM process") == [(0,)]
    assert query(database_url, "SELECT count(*) FROM notification") == [(0,)]
    rejected = [line for line in log_lines() if line.get("outcome") == "rejected"]
    assert [line["reason"] for line in rejected] == [case.reason]
    assert rejected[0]["level"] == "WARNING"


@pytest.mark.parametrize("case", UNUSABLE, ids=[case.id for case in UNUSABLE])
def test_an_unusable_target_is_stored_rejected_and_the_rest_of_the_start_applied(
    case: UnusableCase, handle: Handle, database_url: str, log_lines: LogLines
) -> None:
    record = sqs_record(case.body)

    assert failed_ids(handle(record)) == []

    rows = query(
        database_url,
        "SELECT position, state, error, finished_at IS NOT NULL"
        " FROM notification ORDER BY position",
    )
    expected = [
        (position, "rejected", case.reason, True)
        if position == case.position
        else (position, "pending", None, False)
        for position in range(len(case.body["notifications"]))
    ]
    assert rows == expected
    assert state.processes(database_url) == [("r", 1, "active" if len(rows) > 1 else "completed")]
    assert query(
        database_url, "SELECT outcome, reason, rejected_notifications FROM request_log"
    ) == [("started", None, 1)]
    (line,) = [line for line in log_lines() if line.get("outcome")]
    assert (line["outcome"], line["level"]) == ("started", "WARNING")
    assert line["rejected_reasons"] == [case.reason]
    assert line["notifications"] == len(rows) - 1


def test_a_start_with_only_unusable_targets_creates_its_process_and_completes_it(
    handle: Handle, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a start whose two targets are both unusable
    document = start("restaurant-42", phone("+38500000"), email("nobody"))

    # WHEN it is applied
    assert failed_ids(handle(sqs_record(document))) == []

    # THEN the process is on record and already ended; nothing will be delivered
    assert state.processes(database_url) == [("restaurant-42", 1, "completed")]
    assert query(database_url, "SELECT state FROM notification") == [("rejected",), ("rejected",)]
    # AND a later start for that restaurant is applied, not ignored as a duplicate
    assert failed_ids(handle(sqs_record(start("restaurant-42", phone())))) == []
    assert state.processes(database_url)[-1] == ("restaurant-42", 2, "active")
    # AND the rejections are counted in the NotificationsRejected metric
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    counts = [metric.get("NotificationsRejected", 0) for metric in metrics]
    assert sum(sum(c) if isinstance(c, list) else c for c in counts) == 2


def test_any_failure_while_reading_a_body_rejects_it_and_never_blocks_its_group(
    handle: Handle, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN validation that fails in a way nobody foresaw, for one body only
    from escalator.contract import parse_request as real_parse

    def parse_or_fail(body: str, **rules: Any) -> Any:
        if "poison" in body:
            raise LookupError("a validator bug quoting +385911234567")
        return real_parse(body, **rules)

    monkeypatch.setattr("escalator.service.parse_request", parse_or_fail)
    records = [
        sqs_record(stop("poison"), group="restaurant-42"),
        sqs_record(start("restaurant-42", phone()), group="restaurant-42"),
    ]

    # WHEN both arrive in one batch
    response = handle(*records)

    # THEN the first is rejected (recorded, acknowledged, its reason masked), the second applied
    assert failed_ids(response) == []
    assert query(database_url, "SELECT outcome, reason FROM request_log ORDER BY received_at") == [
        ("rejected", "body could not be read (LookupError): a validator bug quoting +385*******67"),
        ("started", None),
    ]
    assert state.processes(database_url) == [("restaurant-42", 1, "active")]


def test_invalid_request_does_not_block_its_group(
    handle: Handle, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [
        sqs_record("{broken", group="restaurant-42"),
        sqs_record(start("restaurant-42", phone()), group="restaurant-42"),
    ]
    capsys.readouterr()

    assert failed_ids(handle(*records)) == []

    assert state.processes(database_url) == [("restaurant-42", 1, "active")]
    # AND the dashboard's requests count one rejected, one accepted; a redelivery neither
    handle(records[1])
    assert request_counts(capsys) == {"RequestsRejected": 1, "RequestsAccepted": 1}


def request_counts(capsys: pytest.CaptureFixture[str]) -> dict[str, float]:
    """The request counters written since the last look."""
    documents = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line
    ]
    return {
        name: sum(sum(document[name]) for document in documents if name in document)
        for name in ("RequestsAccepted", "RequestsRejected")
    }


KILL_CONNECTION_ON_POISON = """
CREATE FUNCTION test_kill_connection() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.process_id = 'poison' THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_kill_connection BEFORE INSERT ON process
    FOR EACH ROW EXECUTE FUNCTION test_kill_connection();
"""


@pytest.fixture
def undisturbed_database_url(postgres: PostgresServer) -> Iterator[str]:
    with postgres.scratch_database() as name:
        yield postgres.dsn(name)


def test_database_failure_fails_only_its_message_and_the_rest_of_its_group(
    handle: Handle,
    database_url: str,
    undisturbed_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a batch over four groups, where the database connection dies while the
    # first message of group "poison" is applied
    query(database_url, KILL_CONNECTION_ON_POISON)
    batch = [
        sqs_record(start("poison", phone()), group="poison"),
        sqs_record(start("alpha", phone(), email()), group="alpha"),
        sqs_record(stop("poison"), group="poison"),
        sqs_record("not json", group="beta"),
        sqs_record(start("gamma", pubnub()), group="gamma"),
        sqs_record(start("poison", email()), group="poison"),
        sqs_record(stop("alpha"), group="alpha"),
    ]

    # WHEN the initiator handles it
    response = handle(*batch)

    # THEN exactly the failed message and the later ones of its group are returned
    poison = [
        record["messageId"]
        for record in batch
        if record["attributes"]["MessageGroupId"] == "poison"
    ]
    assert failed_ids(response) == poison
    # AND the other groups were committed, on a fresh connection
    assert state.processes(database_url) == [("alpha", 1, "stopped"), ("gamma", 1, "active")]
    assert {row[0] for row in state.requests(database_url)} == {
        record["messageId"] for record in batch
    } - set(poison)

    # WHEN the database recovers and SQS redelivers the failed messages
    query(database_url, "DROP TRIGGER test_kill_connection ON process")
    retry = [record for record in batch if record["messageId"] in poison]
    assert failed_ids(handle(*retry)) == []

    # THEN the final state is the one an undisturbed run produces
    use_database(monkeypatch, undisturbed_database_url)
    assert failed_ids(handle(*batch)) == []
    assert state.snapshot(database_url) == state.snapshot(undisturbed_database_url)
    assert ("poison", 2, "active") in state.processes(database_url)


def test_database_down_fails_the_whole_batch_and_writes_nothing(
    handle: Handle, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the database cannot be reached
    use_database(monkeypatch, "postgresql://escalator@127.0.0.1:9/escalator?connect_timeout=2")
    batch = [sqs_record(start("alpha", phone())), sqs_record(stop("beta"))]

    # WHEN a batch arrives, every message fails and the invocation errors, so the
    # event source retries them all later
    with pytest.raises(BatchProcessingError, match="All records failed processing"):
        handle(*batch)

    # THEN once the database is back, the same messages apply normally
    use_database(monkeypatch, database_url)
    assert failed_ids(handle(*batch)) == []
    assert state.processes(database_url) == [("alpha", 1, "active")]


def test_connection_dropped_while_idle_is_replaced(
    handle: Handle, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a warm initiator whose connection the server closed while it was idle (its
    # only client as the application role: an autovacuum worker may be there too, and
    # the backend of the test's own administrator connection that just closed)
    monkeypatch.setenv("DB_IDLE_CHECK_SECONDS", "0")
    handle(sqs_record(start("alpha", phone())))
    killed = query(
        database_url,
        """
        SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid()
          AND backend_type = 'client backend' AND usename <> current_user
        """,
    )
    assert killed == [(True,)]

    # WHEN the next message arrives, THEN it is applied on a new connection
    assert failed_ids(handle(sqs_record(stop("alpha")))) == []
    assert state.processes(database_url) == [("alpha", 1, "stopped")]


# ---- What the request log keeps of each request, and what a stop reports (``make
# mutate`` found these untested: docs/mutation.md).


def test_a_stop_is_recorded_with_its_process_and_reports_what_it_cancelled(
    steps: Steps, database_url: str, log_lines: LogLines
) -> None:
    # GIVEN a process with one notification claimed and two pending
    now = int(time.time())
    steps.submit(
        start(
            "restaurant-1",
            pubnub("ch-1", at=now),
            pubnub("ch-2", at=now + 3600),
            phone(at=now + 3600),
        )
    )
    assert claimed_ids(steps.claim()) == [1]

    # WHEN it is stopped
    steps.submit(stop("restaurant-1"))

    # THEN the request log names the process it stopped, and the log line what it cancelled
    ((process_ref,),) = query(database_url, "SELECT id FROM process")
    stopped = query(database_url, "SELECT process_ref FROM request_log WHERE action = 'stop'")
    assert stopped == [(process_ref,)]
    (line,) = [line for line in log_lines() if line["message"] == "process stopped"]
    assert (line["process_id"], line["cancelled"]) == ("restaurant-1", 3)


def test_the_request_log_keeps_the_group_and_the_body_of_a_rejected_request_only(
    handle: Handle, database_url: str
) -> None:
    accepted = start("restaurant-1", phone(PHONE, at=int(time.time()) + 60))
    refused = {"process-id": "restaurant-2", "action": "pause"}
    records = [
        sqs_record(document, group=f"group-of-{document['process-id']}")
        for document in (accepted, refused)
    ]
    assert handle(*records) == {"batchItemFailures": []}

    rows = query(
        database_url,
        "SELECT process_id, group_id, outcome, body FROM request_log ORDER BY process_id",
    )
    assert rows == [
        ("restaurant-1", "group-of-restaurant-1", "started", None),
        ("restaurant-2", "group-of-restaurant-2", "rejected", body(refused)),
    ]


def test_a_rejected_target_is_stored_with_nul_and_lone_surrogates_escaped(
    steps: Steps, database_url: str
) -> None:
    # GIVEN a PubNub channel name holding a NUL and a lone surrogate (JSON escapes)
    channel = "ch\x00-\ud800"
    steps.submit(start("restaurant-1", pubnub(channel, at=int(time.time()) + 60)))

    # THEN the notification is stored rejected, its target readable and escaped
    rows = query(database_url, "SELECT state, target FROM notification")
    assert rows == [("rejected", "ch\\x00-\\ud800")]
