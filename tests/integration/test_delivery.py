"""The delivery pipeline, through the synthesized state machine executed by moto.

Real PostgreSQL, real handlers (in-process), real protocol peers on loopback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from escalator import bootstrap
from escalator.handlers import initiator
from tests.support import state
from tests.support.contract_cases import EMAIL, PHONE, PUBNUB, email, phone, pubnub, start
from tests.support.events import lambda_context, sqs_event, sqs_record
from tests.support.moto_lambda import InProcessLambdas, lambdas_in_process
from tests.support.peers import Peers, running_peers
from tests.support.postgres import query
from tests.support.stepfunctions import REGION, DeployedStateMachine, deploy, synthesized_template

CALLER_IDS = {"default": "+12025550123", "+385": "+38512345678", "+38591": "+38591000000"}


@dataclass
class Pipeline:
    database_url: str
    peers: Peers
    machine: DeployedStateMachine
    lambdas: InProcessLambdas

    def submit(self, *documents: Any) -> None:
        """Send requests through the initiator, as the queue would."""
        response = initiator.handler(sqs_event(*map(sqs_record, documents)), lambda_context())
        assert response == {"batchItemFailures": []}

    def notification_states(self) -> list[tuple[Any, ...]]:
        return query(
            self.database_url,
            "SELECT channel, state, provider_ref, error FROM notification ORDER BY id",
        )


@pytest.fixture
def pipeline(
    database_url: str, aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Pipeline]:
    template = synthesized_template()
    with running_peers() as peers:
        for name, value in {
            **peers.environment(),
            "DATABASE_URL": database_url,
            "CLAIM_GRACE_SECONDS": "2",
            "SENDING_LEASE_SECONDS": "3",
        }.items():
            monkeypatch.setenv(name, value)
        bootstrap.reset()
        query(
            database_url,
            "INSERT INTO property (property_key, property_value) VALUES ('caller-id-registry', %s)",
            (json.dumps(CALLER_IDS),),
        )
        config: Any = {"stepfunctions": {"execute_state_machine": True}}
        with mock_aws(config=config), lambdas_in_process() as lambdas:
            machine = deploy(boto3.Session(region_name=REGION), template)
            yield Pipeline(database_url, peers, machine, lambdas)
        bootstrap.reset()


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
