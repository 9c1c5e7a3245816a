"""The synthesized delivery state machine: states, concurrency, retries and catches."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import pytest

from devstack.template import resources, state_machine_definition, synthesized_template
from escalator.channels import CHANNELS
from escalator.config import DeliveryConfig, Env
from tests.infra.conftest import CUSTOM_CONTEXT

# AWS runs at most 40 iterations of an inline Map state at once.
INLINE_MAP_LIMIT = 40
THROTTLED = "Lambda.TooManyRequestsException"


@pytest.fixture(scope="module")
def states() -> dict[str, Any]:
    top: dict[str, Any] = state_machine_definition(synthesized_template())["States"]
    return top


def test_an_execution_hands_over_to_a_fresh_one_while_more_is_due(
    states: dict[str, Any], template: dict[str, Any]
) -> None:
    assert set(states) == {
        "Claim due notifications",
        "Anything claimed?",
        "Nothing due",
        "Deliver notifications",
        "More due?",
        "Hand over to a fresh execution",
        "Handed over",
        "Done",
    }
    assert states["Claim due notifications"]["Next"] == "Anything claimed?"
    # an idle tick ends right after its claim: one transition a minute fewer
    assert states["Anything claimed?"]["Choices"] == [
        {"Variable": "$.claim.claimed", "NumericEquals": 0, "Next": "Nothing due"}
    ]
    assert states["Anything claimed?"]["Default"] == "Deliver notifications"
    assert states["Nothing due"]["Type"] == "Succeed"
    assert states["More due?"]["Choices"] == [
        {
            "Variable": "$.claim.more",
            "BooleanEquals": True,
            "Next": "Hand over to a fresh execution",
        }
    ]
    hand_over = states["Hand over to a fresh execution"]
    assert hand_over["Resource"] == "arn:aws:states:::states:startExecution"
    ((_, machine),) = resources(template, "AWS::StepFunctions::StateMachine").items()
    name = machine["Properties"]["StateMachineName"]
    assert hand_over["Parameters"]["StateMachineArn"].endswith(f":stateMachine:{name}")
    # named from its parent, so a retried hand-over starts nothing twice
    assert hand_over["Parameters"]["Name.$"] == (
        "States.Format('more-{}', States.Hash($$.Execution.Name, 'MD5'))"
    )
    assert hand_over["Parameters"]["Input.$"] == "$$.Execution.Input"
    assert hand_over["Catch"][0]["ErrorEquals"] == ["StepFunctions.ExecutionAlreadyExistsException"]


def test_map_delivers_in_parallel_with_bounded_concurrency(
    states: dict[str, Any], template: dict[str, Any]
) -> None:
    deliver = states["Deliver notifications"]
    assert deliver["Type"] == "Map"
    assert deliver["ItemsPath"] == "$.claim.notifications"
    inner = deliver["ItemProcessor"]["States"]
    # every sandbox reserved for confirm and record has an iteration to serve, and no
    # more run than an inline Map can
    reserved = [
        function_of(template, inner[name])["Properties"]["ReservedConcurrentExecutions"]
        for name in ("Confirm still wanted", "Record delivery")
    ]
    assert min(reserved) <= deliver["MaxConcurrency"] <= INLINE_MAP_LIMIT
    expected = {
        "Wait until due",
        "Confirm still wanted",
        "Still wanted?",
        "Which channel?",
        "Record delivery",
        "Record failure",
        *(channel.task_name for channel in CHANNELS.values()),
    }
    assert expected <= set(inner)
    assert inner["Wait until due"]["TimestampPath"] == "$.notification.due"
    assert deliver["ItemProcessor"]["StartAt"] == "Wait until due"


def test_every_channel_has_a_task_with_jittered_retry_and_a_catch(states: dict[str, Any]) -> None:
    inner = states["Deliver notifications"]["ItemProcessor"]["States"]
    routes = {
        choice["StringEquals"]: choice["Next"] for choice in inner["Which channel?"]["Choices"]
    }
    assert routes == {name: channel.task_name for name, channel in CHANNELS.items()}
    for channel in CHANNELS.values():
        task = inner[channel.task_name]
        # only what means the provider did not take it, or the function did not run
        transient, throttled = task["Retry"]
        assert transient["ErrorEquals"] == ["TransientDeliveryError"]
        assert transient["JitterStrategy"] == "FULL"
        assert transient["MaxAttempts"] == 2  # three attempts in all
        assert transient["BackoffRate"] == 2
        assert throttled["ErrorEquals"] == [THROTTLED]
        # failed only for what proves nothing was delivered; anything else (a lost
        # answer, a timeout, an ambiguous send) is recorded unknown
        not_delivered, anything_else = task["Catch"]
        assert not_delivered["Next"] == "Record failure"
        assert set(not_delivered["ErrorEquals"]) == {
            "PermanentDeliveryError",
            "TransientDeliveryError",
            "ConfigError",
            "Lambda.TooManyRequestsException",
        }
        assert anything_else == {
            "ErrorEquals": ["States.ALL"],
            "ResultPath": "$.unknown",
            "Next": "Record unknown outcome",
        }
        assert task["Next"] == "Record delivery"
    unknown = inner["Record unknown outcome"]
    assert unknown["Parameters"]["unknown.$"] == "$.unknown"


def database_tasks(states: dict[str, Any]) -> dict[str, Any]:
    inner = states["Deliver notifications"]["ItemProcessor"]["States"]
    names = [
        "Claim due notifications",
        "Confirm still wanted",
        "Record delivery",
        "Record failure",
        "Record unknown outcome",
    ]
    return {name: states.get(name) or inner[name] for name in names}


def test_database_steps_retry_a_lost_answer_and_notifiers_never_do(
    states: dict[str, Any],
) -> None:
    # A database step is idempotent under its own retry: it retries every error after
    # which the function may have run. A notifier may have placed the call: it does not.
    may_have_run = {"Lambda.ServiceException", "Lambda.SdkClientException", "Sandbox.Timedout"}
    for name, task in database_tasks(states).items():
        retried = {error for retrier in task["Retry"] for error in retrier["ErrorEquals"]}
        assert may_have_run <= retried, name
    inner = states["Deliver notifications"]["ItemProcessor"]["States"]
    for channel in CHANNELS.values():
        retried = {
            error
            for retrier in inner[channel.task_name]["Retry"]
            for error in retrier["ErrorEquals"]
        }
        assert retried == {"TransientDeliveryError", "Lambda.TooManyRequestsException"}


def test_confirm_is_told_a_retry_from_a_second_run(states: dict[str, Any]) -> None:
    inner = states["Deliver notifications"]["ItemProcessor"]["States"]
    parameters = inner["Confirm still wanted"]["Parameters"]
    assert parameters["retry_count.$"] == "$$.State.RetryCount"
    assert parameters["entered.$"] == "$$.State.EnteredTime"


def retry_delays(retrier: dict[str, Any]) -> list[float]:
    """The longest delay before each retry, as Step Functions computes them (with full
    jitter each delay is drawn between 0 and that)."""
    delays = [
        retrier.get("IntervalSeconds", 1) * retrier.get("BackoffRate", 2.0) ** attempt
        for attempt in range(retrier.get("MaxAttempts", 3))
    ]
    cap = retrier.get("MaxDelaySeconds")
    return [float(min(delay, cap) if cap else delay) for delay in delays]


def retry_seconds(retrier: dict[str, Any]) -> float:
    """The longest a retrier waits in all."""
    return sum(retry_delays(retrier))


def function_of(template: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """The template's function a Lambda task invokes."""
    logical_id = task["Resource"].rsplit(":function:", 1)[1]
    function: dict[str, Any] = template["Resources"][logical_id]
    return function


def test_record_rides_out_a_database_outage_of_minutes(states: dict[str, Any]) -> None:
    for name in ("Record delivery", "Record failure", "Record unknown outcome"):
        (database,) = [
            retrier
            for retrier in database_tasks(states)[name]["Retry"]
            if retrier["ErrorEquals"] == ["DatabaseError"]
        ]
        # with full jitter each delay is drawn below its ceiling: on average half
        assert retry_seconds(database) / 2 >= 180, name


def test_state_machine_is_standard_and_uses_jsonpath_only(states: dict[str, Any]) -> None:
    template = synthesized_template()
    ((_, machine),) = resources(template, "AWS::StepFunctions::StateMachine").items()
    assert machine["Properties"].get("StateMachineType", "STANDARD") == "STANDARD"
    assert "JSONata" not in str(state_machine_definition(template))


def test_max_concurrency_comes_from_context(
    states: dict[str, Any], customized: dict[str, Any]
) -> None:
    deliver = state_machine_definition(customized)["States"]["Deliver notifications"]
    assert deliver["MaxConcurrency"] == CUSTOM_CONTEXT["max_concurrency"]
    assert deliver["MaxConcurrency"] != states["Deliver notifications"]["MaxConcurrency"]


def lambda_tasks(template: dict[str, Any]) -> dict[str, Any]:
    top = state_machine_definition(template)["States"]
    inner = top["Deliver notifications"]["ItemProcessor"]["States"]
    return {
        name: state
        for name, state in [*top.items(), *inner.items()]
        if state["Type"] == "Task" and ":lambda:" in state["Resource"]
    }


def longest_hold_seconds(template: dict[str, Any], task: dict[str, Any]) -> float:
    """How long one iteration holds a sandbox of the confirm step at most: it waits out
    at most CONFIRM_MAX_WAIT_SECONDS of the due second, then a second of database work."""
    variables = function_of(template, task)["Properties"]["Environment"]["Variables"]
    (default,) = [f.default for f in fields(DeliveryConfig) if f.name == "confirm_max_wait_seconds"]
    return float(variables.get(Env.CONFIRM_MAX_WAIT_SECONDS, default)) + 1


@pytest.mark.parametrize("which", ["default", "customized"])
def test_every_lambda_task_retries_a_throttle_with_a_bounded_delay(
    which: str, request: pytest.FixtureRequest
) -> None:
    template: dict[str, Any] = request.getfixturevalue("template" if which == "default" else which)
    tasks = lambda_tasks(template)
    assert len(tasks) == 5 + len(CHANNELS)  # claim, confirm, three records, the notifiers
    # The Map's iterations queue for the reserved sandboxes of confirm and record: the
    # last of a sandbox's queue waits for every one before it.
    deliver = state_machine_definition(template)["States"]["Deliver notifications"]
    confirm = tasks["Confirm still wanted"]
    sandboxes = min(
        function_of(template, tasks[name])["Properties"]["ReservedConcurrentExecutions"]
        for name in ("Confirm still wanted", "Record delivery")
    )
    queued = math.ceil(deliver["MaxConcurrency"] / sandboxes)
    throttled_for = queued * longest_hold_seconds(template, confirm)
    for name, task in tasks.items():
        (retrier,) = [r for r in task["Retry"] if THROTTLED in r["ErrorEquals"]]
        assert retrier["ErrorEquals"] == [THROTTLED], name
        # jittered, so a burst throttled at once does not come back at once
        assert retrier["JitterStrategy"] == "FULL", name
        # a sandbox that frees up is taken within seconds, not minutes
        assert max(retry_delays(retrier)) <= 10, name
        # and on average it waits out the longest queue for a sandbox (with full jitter
        # each delay is on average half its ceiling)
        assert retry_seconds(retrier) / 2 >= throttled_for, name
