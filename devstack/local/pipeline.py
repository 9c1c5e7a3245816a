"""The delivery pipeline on one machine: the synthesized state machine run by moto, the
real handlers in-process, a real PostgreSQL and the protocol peers on loopback. The
tests' ``pipeline`` fixture and the benchmarks run on it."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from moto import mock_aws

from devstack import CALLER_IDS
from devstack.emulation import sessions
from devstack.emulation.events import lambda_context, sqs_event, sqs_record
from devstack.emulation.function_url import FunctionUrl
from devstack.emulation.moto_adapter import lambdas_in_process
from devstack.emulation.moto_services.express import ExpressRuns
from devstack.emulation.moto_services.sandboxes import InProcessLambdas
from devstack.emulation.moto_services.stepfunctions import HISTORY_EVENT_CAP
from devstack.emulation.stepfunctions import REGION, DeployedStateMachine, deploy
from devstack.emulation.template import synthesized_template
from devstack.peers.postgres import query
from devstack.peers.providers import Peers, running_peers
from devstack.polling import wait_until
from escalator import bootstrap
from escalator.caller_ids import CALLER_ID_REGISTRY
from escalator.channels import CHANNELS
from escalator.handlers import initiator

__all__ = ["CALLER_IDS", "Pipeline", "running_pipeline"]


@dataclass
class Pipeline:
    database_url: str
    peers: Peers
    machine: DeployedStateMachine
    lambdas: InProcessLambdas
    # The status-callback receiver's function URL, on loopback.
    status_callback_url: str
    _saved: dict[str, str | None] = field(default_factory=dict, repr=False)

    def submit(self, *documents: Any) -> None:
        """Apply requests through the initiator, ten to a batch, as the queue would (the
        initiator calling AWS as its role)."""
        for start in range(0, len(documents), 10):
            records = [sqs_record(document) for document in documents[start : start + 10]]
            with self.lambdas.acting_as(self.machine.function_named("FunctionsInitiator")):
                response = initiator.handler(sqs_event(*records), lambda_context())
            assert response == {"batchItemFailures": []}, response

    def notification_states(self) -> list[tuple[Any, ...]]:
        """(channel, state, provider_ref, error) of every notification, in id order."""
        return query(
            self.database_url,
            "SELECT channel, state, provider_ref, error FROM notification ORDER BY id",
        )

    def states(self) -> list[str]:
        return [row[1] for row in self.notification_states()]

    def wait_for(self, condition: Callable[[], object], timeout: float = 30) -> None:
        wait_until(condition, timeout=timeout, max_interval=0.5)

    def configure(self, **settings: str) -> None:
        """Change the functions' settings, as a redeploy (new cold starts) would; the
        previous values come back when the pipeline closes."""
        for name, value in settings.items():
            self._saved.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        bootstrap.reset()

    def start_near_due(self) -> None:
        """Let the initiator start a delivery window for what arrives due too soon for a
        tick (as deployed: the template gives it the window's ARN). Off by default, so
        that a test's ticks claim what it submits."""
        self.configure(DELIVERY_WINDOW_ARN=self.machine.window_arn)

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()
        bootstrap.reset()


@contextmanager
def running_pipeline(
    database_url: str,
    settings: Mapping[str, str] | None = None,
    *,
    application_url: str | None = None,
    history_cap: int = HISTORY_EVENT_CAP,
    express: ExpressRuns | None = None,
    template: dict[str, Any] | None = None,
    enforce_iam: bool = True,
    window_log_level: str | None = None,
) -> Iterator[Pipeline]:
    """The pipeline on ``database_url`` (migrated), the functions' environment set from
    the peers and ``settings``, the caller-id registry stored. The functions connect
    with ``application_url`` when given (the application role). ``history_cap`` scales
    the quota of history events per execution down, for tests at a small size;
    ``express`` says how Express executions run (their cap, reruns). ``template`` is the
    synthesized one unless given; ``enforce_iam``: every call and task checked against
    its role, as on AWS (devstack.emulation.iam), or nothing, as in moto; ``window_log_level`` logs
    the delivery window at another level than the template's (``ALL``: every event, as
    ``cdk deploy -c delivery_log_level=ALL``)."""
    template = template or synthesized_template()
    query(
        database_url,
        "INSERT INTO property (property_key, property_value) VALUES (%s, %s)"
        " ON CONFLICT (property_key) DO UPDATE SET property_value = EXCLUDED.property_value",
        (CALLER_ID_REGISTRY, json.dumps(CALLER_IDS)),
    )
    with running_peers() as peers:
        config: Any = {"stepfunctions": {"execute_state_machine": True}}
        with (
            mock_aws(config=config),
            lambdas_in_process(history_cap, express=express, enforce_iam=enforce_iam) as lambdas,
        ):
            session = sessions.session(region_name=REGION)
            machine = deploy(session, template, lambdas=lambdas, window_log_level=window_log_level)
            receiver = machine.function_named("FunctionsCallStatusReceiver")
            refusal = functools.partial(lambdas.permissions.function_url_refusal, receiver)
            with FunctionUrl(session.client("lambda"), receiver, refusal=refusal) as callbacks:
                pipeline = Pipeline(database_url, peers, machine, lambdas, callbacks.url)
                pipeline.configure(
                    **peers.environment(),
                    DATABASE_URL=application_url or database_url,
                    AWS_DEFAULT_REGION=REGION,
                    **{
                        channel.callbacks.url_variable: callbacks.url
                        for channel in CHANNELS.values()
                        if channel.callbacks is not None
                    },
                    CALL_STATUS_FUNCTION=machine.function_named("FunctionsCallStatusRecorder"),
                    **(settings or {}),
                )
                try:
                    yield pipeline
                finally:
                    pipeline.restore()
