"""What the request log keeps of each request, and what a stop reports, through the
initiator's handler on a real PostgreSQL. Written for mutants that survived ``make
mutate`` (docs/mutation.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from devstack.emulation.events import body, sqs_event, sqs_record
from devstack.peers.postgres import query
from escalator.handlers import initiator
from tests.support.contract_cases import PHONE, phone, pubnub, start, stop
from tests.support.steps import Steps, claimed_ids


def test_a_stop_is_recorded_with_its_process_and_reports_what_it_cancelled(
    steps: Steps, database_url: str, log_lines: Callable[[], list[dict[str, Any]]]
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
    database_url: str, initiator_env: str, lambda_context: LambdaContext
) -> None:
    accepted = start("restaurant-1", phone(PHONE, at=int(time.time()) + 60))
    refused = {"process-id": "restaurant-2", "action": "pause"}
    records = [
        sqs_record(document, group=f"group-of-{document['process-id']}")
        for document in (accepted, refused)
    ]
    assert initiator.handler(sqs_event(*records), lambda_context) == {"batchItemFailures": []}

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
