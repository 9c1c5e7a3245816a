"""The synthesized delivery state machine: states, concurrency, retries and catches."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.template import resources, state_machine_definition, synthesized_template
from escalator.channels import CHANNELS
from infra.settings import THROTTLE_RETRY
from tests.infra.conftest import CUSTOM_CONTEXT

# A throttled invocation (every reserved sandbox busy) is retried until one is free.
THROTTLE_RETRIER = {
    "ErrorEquals": ["Lambda.TooManyRequestsException"],
    "IntervalSeconds": THROTTLE_RETRY.interval_seconds,
    "MaxDelaySeconds": THROTTLE_RETRY.max_delay_seconds,
    "MaxAttempts": THROTTLE_RETRY.attempts,
    "BackoffRate": 2,
    "JitterStrategy": "FULL",
}


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


def test_map_delivers_in_parallel_with_bounded_concurrency(states: dict[str, Any]) -> None:
    deliver = states["Deliver notifications"]
    assert deliver["Type"] == "Map"
    assert deliver["MaxConcurrency"] == 40
    assert deliver["ItemsPath"] == "$.claim.notifications"
    inner = deliver["ItemProcessor"]["States"]
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
        assert throttled == THROTTLE_RETRIER
        assert task["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Record failure"}
        ]
        assert task["Next"] == "Record delivery"


def test_state_machine_is_standard_and_uses_jsonpath_only(states: dict[str, Any]) -> None:
    template = synthesized_template()
    ((_, machine),) = resources(template, "AWS::StepFunctions::StateMachine").items()
    assert machine["Properties"].get("StateMachineType", "STANDARD") == "STANDARD"
    assert "JSONata" not in str(state_machine_definition(template))


def test_max_concurrency_comes_from_context(customized: dict[str, Any]) -> None:
    assert CUSTOM_CONTEXT["max_concurrency"] == 7
    assert (
        state_machine_definition(customized)["States"]["Deliver notifications"]["MaxConcurrency"]
        == 7
    )


def test_every_lambda_task_retries_a_throttle_with_a_bounded_delay(states: dict[str, Any]) -> None:
    inner = states["Deliver notifications"]["ItemProcessor"]["States"]
    tasks = {
        name: state
        for name, state in [*states.items(), *inner.items()]
        if state["Type"] == "Task" and ":lambda:" in state["Resource"]
    }
    assert len(tasks) == 4 + len(CHANNELS)  # claim, confirm, two records, the notifiers
    for name, task in tasks.items():
        assert THROTTLE_RETRIER in task["Retry"], name
    assert THROTTLE_RETRY.attempts * THROTTLE_RETRY.max_delay_seconds >= 60
