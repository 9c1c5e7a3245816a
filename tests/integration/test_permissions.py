"""Every role's permissions enforced in the emulation as AWS enforces them (devstack.emulation.iam):
for each enforcement point, the synthesized template with one grant taken away fails
where AWS fails it, and the same run without enforcement (moto's own, ``enforce_iam=False``)
passes: what every test would have let through before. (The database's ``rds-db:connect``
is in test_rehearsal, moto's rows in tests/unit/test_moto_strictness.py.)"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from devstack.emulation.iam import FUNCTION_URL_FORBIDDEN
from devstack.emulation.stepfunctions import EventSourceRefused
from devstack.emulation.template import resources, synthesized_template
from devstack.local.pipeline import Pipeline, running_pipeline
from devstack.peers.postgres import PostgresServer, query
from tests.support.contract_cases import phone, start

pytestmark = [pytest.mark.long, pytest.mark.usefixtures("aws_credentials")]

PipelineOf = Callable[..., Any]


def without(
    template: dict[str, Any], policy: str, action: str, *, naming: str = ""
) -> dict[str, Any]:
    """The template with ``action`` taken out of the statements of the ``AWS::IAM::Policy``
    whose logical id starts with ``policy`` (only those whose resources mention
    ``naming``); a statement left with no action goes."""
    changed = copy.deepcopy(template)
    ((policy_id, found),) = [
        (logical_id, resource)
        for logical_id, resource in resources(changed, "AWS::IAM::Policy").items()
        if logical_id.startswith(policy)
    ]
    document = found["Properties"]["PolicyDocument"]
    kept = []
    for statement in document["Statement"]:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        if action in actions and naming in json.dumps(statement["Resource"]):
            actions = [item for item in actions if item != action]
        if actions:
            kept.append({**statement, "Action": actions})
    assert kept != document["Statement"], f"{policy} grants no {action}"
    document["Statement"] = kept
    if not kept:  # (CDK writes no policy without a statement)
        del changed["Resources"][policy_id]
    return changed


@pytest.fixture
def pipeline_of(postgres: PostgresServer) -> PipelineOf:
    """``pipeline_of(template, enforce_iam=...)``: a pipeline on a database of its own."""

    @contextmanager
    def start_pipeline(template: dict[str, Any], *, enforce_iam: bool = True) -> Iterator[Pipeline]:
        with (
            postgres.scratch_database() as name,
            running_pipeline(
                postgres.dsn(name),
                {"CLAIM_GRACE_SECONDS": "2", "SENDING_LEASE_SECONDS": "3"},
                application_url=postgres.application_dsn(name),
                template=template,
                enforce_iam=enforce_iam,
            ) as pipeline,
        ):
            yield pipeline

    return start_pipeline


def test_a_function_calls_aws_as_its_own_role(pipeline_of: PipelineOf) -> None:
    # GIVEN the status-callback receiver's role without lambda:InvokeFunction (on the
    # recorder, which it hands each report to)
    template = without(
        synthesized_template(), "FunctionsCallStatusReceiverServiceRole", "lambda:InvokeFunction"
    )

    def callback(enforce_iam: bool) -> tuple[int, list[Any]]:
        with pipeline_of(template, enforce_iam=enforce_iam) as pipeline:
            pipeline.submit(start("restaurant-42", phone(at=int(time.time()))))
            pipeline.machine.run()
            (call,) = pipeline.peers.twilio.calls
            # WHEN Twilio reports on the call
            answer = pipeline.peers.twilio.report(call, "completed")
            statuses = query(pipeline.database_url, "SELECT provider_status FROM notification")
            return answer, statuses

    # THEN the receiver's invocation of the recorder is refused (502, nothing recorded),
    # as Lambda refuses a caller whose role does not allow it
    assert callback(enforce_iam=True) == (502, [(None,)])
    # (moto lets any function invoke any other)
    assert callback(enforce_iam=False) == (200, [("completed",)])


def test_a_task_its_state_machine_may_not_run_fails_as_on_aws(pipeline_of: PipelineOf) -> None:
    # GIVEN the tick's role without lambda:InvokeFunction on its activator
    template = without(synthesized_template(), "DeliveryRoleDefaultPolicy", "lambda:InvokeFunction")

    def tick(enforce_iam: bool) -> tuple[list[dict[str, Any]], list[str]]:
        with pipeline_of(template, enforce_iam=enforce_iam) as pipeline:
            pipeline.submit(start("restaurant-42", phone(at=int(time.time()))))
            # WHEN the schedule starts the tick
            arn = pipeline.machine.start()

            def failed() -> list[dict[str, Any]]:
                return [
                    details
                    for event in pipeline.machine.history(arn)
                    for key, details in event.items()
                    if key.endswith("FailedEventDetails") and event["type"] != "ExecutionFailed"
                ]

            def ended() -> bool:
                status = pipeline.machine.sfn.describe_execution(executionArn=arn)["status"]
                return bool(status != "RUNNING")

            # (its first failure says it all: the retries that follow, Claim's budget for
            # an answer lost after the function ran, would take half a minute)
            pipeline.wait_for(lambda: failed() or ended(), timeout=60)
            if not ended():
                pipeline.machine.stop(arn)
            pipeline.machine.settle()
            return failed(), pipeline.states()

    # THEN its Claim task fails as Step Functions fails it, before the function runs,
    # and nothing is delivered
    failed, states = tick(enforce_iam=True)
    assert failed
    error, cause = failed[0]["error"], failed[0]["cause"]
    assert error == "Lambda.AWSLambdaException"
    assert cause.startswith("User: arn:aws:sts::123456789012:assumed-role/DeliveryRole")
    activator = "arn:aws:lambda:eu-central-1:123456789012:function:FunctionsActivator"
    assert f"is not authorized to perform: lambda:InvokeFunction on resource: {activator}" in cause
    assert "(Service: AWSLambda; Status Code: 403; Error Code: AccessDeniedException;" in cause
    assert states == ["pending"]
    # (moto runs the task whatever the role says)
    failed, states = tick(enforce_iam=False)
    assert (failed, states) == ([], ["sent"])


def test_the_schedule_starts_the_tick_as_its_role(pipeline_of: PipelineOf) -> None:
    # GIVEN the schedule's role without states:StartExecution on the tick
    template = without(synthesized_template(), "ScheduleRoleDefaultPolicy", "states:StartExecution")

    # WHEN the schedule fires, THEN Step Functions refuses it the start
    with pipeline_of(template) as pipeline, pytest.raises(ClientError) as refused:
        pipeline.machine.start()
    error = refused.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert error["Message"].startswith("User: arn:aws:sts::123456789012:assumed-role/ScheduleRole")
    assert error["Message"].endswith(
        "is not authorized to perform: states:StartExecution on resource:"
        " arn:aws:states:eu-central-1:123456789012:stateMachine:Escalator-delivery"
        " because no identity-based policy allows the states:StartExecution action"
    )
    # (moto starts it for anyone)
    with pipeline_of(template, enforce_iam=False) as pipeline:
        assert pipeline.machine.start()


def test_an_event_source_its_function_may_not_poll_fails_the_deploy(
    pipeline_of: PipelineOf,
) -> None:
    # GIVEN the initiator's role without sqs:ReceiveMessage on the request queue
    template = without(
        synthesized_template(), "FunctionsInitiatorServiceRole", "sqs:ReceiveMessage"
    )

    # WHEN the stack deploys, THEN Lambda refuses the event source mapping, as AWS does
    with pytest.raises(
        EventSourceRefused, match="does not have permissions to call ReceiveMessage on SQS"
    ):
        pipeline_of(template).__enter__()
    # (moto creates whatever it is asked to)
    with pipeline_of(template, enforce_iam=False) as pipeline:
        assert pipeline.machine.arn


def test_the_function_url_serves_only_what_its_resource_policy_allows(
    pipeline_of: PipelineOf,
) -> None:
    # GIVEN the receiver's resource-based policy with lambda:InvokeFunctionUrl for anyone,
    # but not lambda:InvokeFunction (required of function URLs since October 2025)
    template = copy.deepcopy(synthesized_template())
    (permission,) = [
        logical_id
        for logical_id, resource in resources(template, "AWS::Lambda::Permission").items()
        if resource["Properties"]["Action"] == "lambda:InvokeFunction"
    ]
    del template["Resources"][permission]

    def post(enforce_iam: bool) -> tuple[requests.Response, bool]:
        with pipeline_of(template, enforce_iam=enforce_iam) as pipeline:
            # WHEN anyone posts to the function URL
            answer = requests.post(
                pipeline.status_callback_url, data={"CallSid": "CA1"}, timeout=30
            )
            receiver = pipeline.machine.function_named("FunctionsCallStatusReceiver")
            return answer, receiver in pipeline.lambdas.invocations

    # THEN the URL refuses it as AWS does, and the function never runs
    answer, ran = post(enforce_iam=True)
    assert (answer.status_code, ran) == (403, False)
    assert answer.json() == {"Message": FUNCTION_URL_FORBIDDEN}
    assert answer.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    # (moto's would hand it to the function, which judges its signature itself)
    answer, ran = post(enforce_iam=False)
    assert ran
