"""The delivery pipeline under test: the synthesized state machine run by moto, the real
handlers in-process, a real PostgreSQL and the protocol peers on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from escalator import bootstrap
from escalator.handlers import initiator
from escalator.local.lambdas import InProcessLambdas, lambdas_in_process
from escalator.local.stepfunctions import (
    REGION,
    DeployedStateMachine,
    deploy,
    synthesized_template,
)
from tests.support.events import lambda_context, sqs_event, sqs_record
from tests.support.peers import Peers, running_peers
from tests.support.postgres import query

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

    def states(self) -> list[str]:
        return [row[1] for row in self.notification_states()]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not met in time"
            time.sleep(0.05)

    def configure(self, monkeypatch: pytest.MonkeyPatch, **settings: str) -> None:
        """Change the functions' settings, as a redeploy (new cold start) would."""
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        bootstrap.reset()


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
            machine = deploy(boto3.Session(region_name=REGION), template, lambdas=lambdas)
            yield Pipeline(database_url, peers, machine, lambdas)
        bootstrap.reset()
