"""What SQS takes as a group or deduplication id, and the producer client refusing what
SQS refuses, as SQS does (against a hand-written fake queue, which takes anything: the
refusal is the client's)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from escalator.client import Producer
from escalator.sqs_ids import first_outside_the_alphabet, refusal

REASON = "can only include alphanumeric and punctuation characters. 1 to 128 in length."


class FakeQueue:
    """An SQS client that takes every message (as moto alone does)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_message(self, **message: Any) -> dict[str, str]:
        self.sent.append(message)
        return {"MessageId": f"m-{len(self.sent)}"}


def test_the_alphabet_is_printable_ascii_without_the_space_1_to_128_long() -> None:
    assert refusal("MessageGroupId", "".join(map(chr, range(0x21, 0x7F)))) is None
    assert refusal("MessageGroupId", "~" * 128) is None
    for value in ("", "~" * 129, " r", "r\x7f", "r\x1b", "r\xa0", "r\u0430"):
        assert refusal("MessageGroupId", value) is not None, repr(value)
    assert first_outside_the_alphabet("rest\u0430urant") == 4
    assert first_outside_the_alphabet("restaurant\n") == 10
    assert first_outside_the_alphabet("restaurant") is None


def test_a_refusal_is_sqss_message_with_what_a_screen_hides_escaped() -> None:
    assert refusal("MessageDeduplicationId", "order\xa05\x1b[2J") == (
        "Value order\\xa05\\x1b[2J for parameter MessageDeduplicationId is invalid. Reason:"
        f" MessageDeduplicationId {REASON}"
    )


def test_the_client_refuses_a_group_id_sqs_refuses_as_sqs_refuses_it() -> None:
    queue = FakeQueue()
    producer = Producer("https://sqs.example/requests.fifo", sqs=queue)
    body = json.dumps({"process-id": "restaurant-42", "action": "stop"})

    with pytest.raises(ClientError) as refused:
        producer.send_unchecked(body, group_id="restaurant-42\u00a0")
    assert refused.value.operation_name == "SendMessage"
    assert refused.value.response["Error"] == {
        "Code": "InvalidParameterValue",
        "Message": "Value restaurant-42\\xa0 for parameter MessageGroupId is invalid. Reason:"
        f" MessageGroupId {REASON}",
        "Type": "Sender",
    }
    with pytest.raises(ClientError, match="MessageGroupId is invalid"):
        producer.send_unchecked(body, group_id="r" * 129)
    assert queue.sent == []

    producer.send_unchecked(body, group_id="!~" * 64)  # the alphabet's ends, 128 of them
    assert [message["MessageGroupId"] for message in queue.sent] == ["!~" * 64]
    assert refusal("MessageDeduplicationId", queue.sent[0]["MessageDeduplicationId"]) is None
