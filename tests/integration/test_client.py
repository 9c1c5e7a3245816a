"""The producer client and the ``escalator send`` / ``status`` commands."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devstack.peers.postgres import query
from escalator.client import InvalidRequest, Producer
from escalator_cli.commands import parse_notification
from escalator_cli.main import main
from tests.support.contract_cases import PHONE, console, phone, start


@pytest.fixture
def queue(aws_credentials: None) -> Iterator[tuple[Any, str]]:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="eu-central-1")
        url = sqs.create_queue(
            QueueName="escalator-requests.fifo",
            Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"},
        )["QueueUrl"]
        yield sqs, url


def received(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    ).get("Messages", [])
    return messages


def test_start_and_stop_are_sent_with_group_and_unique_deduplication_ids(
    queue: tuple[Any, str],
) -> None:
    sqs, url = queue
    producer = Producer(url, sqs=sqs)
    notification = phone()

    producer.start("restaurant-42", [notification])
    producer.stop("restaurant-42")
    producer.stop("restaurant-42")  # the same body again is a new request

    messages = received(sqs, url)
    assert [json.loads(m["Body"])["action"] for m in messages] == ["start", "stop", "stop"]
    assert {m["Attributes"]["MessageGroupId"] for m in messages} == {"restaurant-42"}
    assert len({m["Attributes"]["MessageDeduplicationId"] for m in messages}) == 3
    assert json.loads(messages[0]["Body"])["notifications"] == [notification]


def test_invalid_requests_are_refused_before_sending(queue: tuple[Any, str]) -> None:
    sqs, url = queue
    producer = Producer(url, sqs=sqs)

    with pytest.raises(InvalidRequest, match=r"notifications\[0\]\.at is before 1970"):
        producer.start("restaurant-42", [phone(at=-1)])
    with pytest.raises(InvalidRequest, match="process-id is empty"):
        producer.stop("")

    assert received(sqs, url) == []


def test_a_start_with_an_unusable_target_is_sent_as_the_initiator_applies_it(
    queue: tuple[Any, str],
) -> None:
    # The initiator stores that notification rejected and delivers the others.
    sqs, url = queue
    Producer(url, sqs=sqs).start("restaurant-42", [phone("+38500000"), phone()])

    (message,) = received(sqs, url)
    assert json.loads(message["Body"])["notifications"][0]["phone-number"] == "+38500000"


def test_notification_option_takes_relative_and_absolute_times() -> None:
    now = 1_800_000_000
    assert parse_notification(f"channel=phone,at=+90,phone-number={PHONE}", now=now) == {
        "channel": "phone",
        "at": now + 90,
        "phone-number": PHONE,
    }
    assert (
        parse_notification("channel=email,at=1800000123,email=a@b.example", now=now)["at"]
        == 1_800_000_123
    )


def test_send_command_starts_stops_and_sends_files(
    queue: tuple[Any, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sqs, url = queue
    request = tmp_path / "request.json"
    request.write_text(json.dumps(start("restaurant-7", phone())))

    codes = [
        main(["send", "start", "restaurant-9", "--queue-url", url, "--region", "eu-central-1",
              "--notification", f"channel=phone,at=+60,phone-number={PHONE}"]),
        main(["send", "stop", "restaurant-9", "--queue-url", url, "--region", "eu-central-1"]),
        main(["send", "--file", str(request), "--queue-url", url, "--region", "eu-central-1"]),
        main(["send", "start", "restaurant-9", "--queue-url", url, "--region", "eu-central-1",
              "--notification", "channel=fax,at=+60"]),
    ]  # fmt: skip

    assert codes == [0, 0, 0, 2]
    assert "invalid request: notifications[0].channel must be one of" in capsys.readouterr().err
    bodies = [json.loads(m["Body"]) for m in received(sqs, url)]
    assert [(b["process-id"], b["action"]) for b in bodies] == [
        ("restaurant-9", "start"),
        ("restaurant-9", "stop"),
        ("restaurant-7", "start"),
    ]
    assert abs(bodies[0]["notifications"][0]["at"] - (time.time() + 60)) < 5


def test_status_command_shows_the_process_and_its_notifications(
    initiator_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from devstack.emulation.events import lambda_context, sqs_event, sqs_record
    from escalator.handlers import initiator

    initiator.handler(sqs_event(sqs_record(start("restaurant-5", phone()))), lambda_context())
    capsys.readouterr()  # the initiator's own lines (its metrics)

    assert main(["status", "restaurant-5", "--json"]) == 0
    (process,) = json.loads(capsys.readouterr().out)
    assert process["state"] == "active"
    assert [(n["channel"], n["state"], n["target"]) for n in process["notifications"]] == [
        ("phone", "pending", PHONE)
    ]
    assert main(["status", "restaurant-5"]) == 0
    assert "restaurant-5: active" in capsys.readouterr().out
    assert main(["status", "nobody"]) == 1


def test_status_shows_what_producers_wrote_escaped_and_refuses_an_id_not_in_utf8(
    initiator_env: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from devstack.emulation.events import lambda_context, sqs_event, sqs_record
    from escalator.handlers import initiator

    # GIVEN a producer's start whose label holds terminal escape sequences (stored, with
    # the notification rejected), and such text in its process id (a row from before
    # process ids were printable ASCII), its error and its provider's reference
    clear_screen, retitle = "\x1b[2J\x1b[H", "\x1b]0;owned\x07"
    document = start("restaurant-6", console(label=f"order{clear_screen}"))
    initiator.handler(sqs_event(sqs_record(document)), lambda_context())
    process_id = f"restaurant-6{retitle}"
    query(database_url, "UPDATE process SET process_id = %s", (process_id,))
    query(
        database_url,
        "UPDATE notification SET error = error || %s, provider_ref = %s",
        (retitle, f"CA{clear_screen}\u202e1"),
    )

    capsys.readouterr()  # (the initiator's log lines)

    # WHEN an operator asks for its status
    assert main(["status", process_id]) == 0
    text = capsys.readouterr().out
    assert main(["status", process_id, "--json"]) == 0
    printed = capsys.readouterr().out

    # THEN what the database holds is shown with every control character escaped
    for written in (text, printed):
        assert "\x1b" not in written
        assert "\x07" not in written
        assert "\u202e" not in written
    assert text.startswith("restaurant-6\\x1b]0;owned\\x07: completed")
    assert "order\\x1b[2J\\x1b[H" in text
    assert " ref=CA\\x1b[2J\\x1b[H\\u202e1 " in text
    assert "contains control characters\\x1b]0;owned\\x07" in text
    (process,) = json.loads(printed)
    assert process["process_id"] == process_id
    assert process["notifications"][0]["target"] == f"order{clear_screen}"

    # AND an id that is not valid UTF-8, as Python hands it over from the command line
    # (its bytes as lone surrogates: os.fsdecode), gets a clear usage error, not the
    # traceback of the database driver that cannot encode it
    with pytest.raises(SystemExit) as exited:
        main(["status", os.fsdecode(b"caf\xe9-7"), "--database-url", database_url])
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith(
        "escalator status: error: argument PROCESS_ID: is not valid UTF-8"
        " (the byte 0xE9 at character 4)"
    )
