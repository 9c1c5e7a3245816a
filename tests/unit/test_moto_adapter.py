"""The one module that adapts moto fails loudly when moto changes under it."""

from __future__ import annotations

import json
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devstack import moto_adapter
from devstack.stepfunctions import DeployedStateMachine

ROLE = "arn:aws:iam::123456789012:role/escalator-test"

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements-dev.txt"


def test_the_installed_moto_is_the_one_the_adapter_was_written_for() -> None:
    assert moto_adapter.check_moto() == []
    assert version("moto") == moto_adapter.MOTO_VERSION
    pinned = [line for line in REQUIREMENTS.read_text().splitlines() if line.startswith("moto[")]
    assert pinned == [f"moto[server,stepfunctions]=={moto_adapter.MOTO_VERSION}"]


def test_a_changed_signature_is_reported_and_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    owner, name, parameters = moto_adapter.PATCHED[1]
    originals = dict(moto_adapter._ORIGINALS)
    originals[(owner, name)] = lambda region, service: None  # as if moto dropped a parameter
    monkeypatch.setattr(moto_adapter, "_ORIGINALS", originals)

    (problem,) = moto_adapter.check_moto()

    assert problem.endswith(f"now takes ('region', 'service'), not {parameters}")
    with (
        pytest.raises(RuntimeError, match="does not fit this moto"),
        moto_adapter.lambdas_in_process(),
    ):
        pass


def test_patches_are_in_place_only_while_the_context_is_open() -> None:
    before = [getattr(owner, name) for owner, name, _ in moto_adapter.PATCHED]
    with moto_adapter.lambdas_in_process():
        during = [getattr(owner, name) for owner, name, _ in moto_adapter.PATCHED]
    after = [getattr(owner, name) for owner, name, _ in moto_adapter.PATCHED]
    assert all(a is not b for a, b in zip(before, during, strict=True))
    assert after == before


def test_queue_counts_are_exact_when_asked_for(aws_credentials: None) -> None:
    # GIVEN a FIFO queue holding three messages, one of them received (in flight)
    with mock_aws(), moto_adapter.lambdas_in_process():
        sqs = boto3.client("sqs", region_name="eu-central-1")
        url = sqs.create_queue(QueueName="q.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        for n in range(3):
            sqs.send_message(
                QueueUrl=url,
                MessageBody=str(n),
                MessageGroupId=str(n),
                MessageDeduplicationId=str(n),
            )
        assert len(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]) == 1

        # WHEN a client asks for every attribute, and for one setting only
        every = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        one = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["FifoQueue"])["Attributes"]

    # THEN the counts are there and exact, and only what was asked for is answered
    assert every["ApproximateNumberOfMessages"] == "2"
    assert every["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert every["ApproximateNumberOfMessagesDelayed"] == "0"
    assert one == {"FifoQueue": "true"}


def test_a_wait_state_ends_at_its_timestamp_not_before(aws_credentials: None) -> None:
    # GIVEN a state machine that waits until a timestamp a second or two away
    definition = {
        "StartAt": "Wait",
        "States": {"Wait": {"Type": "Wait", "TimestampPath": "$.due", "End": True}},
    }
    config: Any = {"stepfunctions": {"execute_state_machine": True}}
    with mock_aws(config=config), moto_adapter.lambdas_in_process():
        sfn = boto3.client("stepfunctions", region_name="eu-central-1")
        arn = sfn.create_state_machine(
            name="wait", definition=json.dumps(definition), roleArn=ROLE
        )["stateMachineArn"]
        due = int(time.time()) + 2
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(due))

        # WHEN it runs
        machine = DeployedStateMachine(sfn=sfn, arn=arn, functions={})
        description = machine.wait(machine.start({"due": stamp}), timeout=30)

    # THEN it succeeded, and ended not before the timestamp (moto alone waits whole
    # seconds, truncated, and may end up to a second early)
    assert description["status"] == "SUCCEEDED"
    assert description["stopDate"].timestamp() >= due
