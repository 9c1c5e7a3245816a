"""The synthesized delivery state machine: states, concurrency, retries and catches."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.template import resources, state_machine_definition, synthesized_template
from escalator.channels import CHANNELS
from tests.infra.conftest import CUSTOM_CONTEXT


@pytest.fixture(scope="module")
def states() -> dict[str, Any]:
    top: dict[str, Any] = state_machine_definition(synthesized_template())["States"]
    return top


def test_top_level_states_loop_until_nothing_more_is_due(states: dict[str, Any]) -> None:
    assert set(states) == {"Claim due notifications", "Deliver notifications", "More due?", "Done"}
    assert states["Claim due notifications"]["Next"] == "Deliver notifications"
    assert states["More due?"]["Choices"] == [
        {"Variable": "$.claim.more", "BooleanEquals": True, "Next": "Claim due notifications"}
    ]


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
        (retry,) = task["Retry"]
        # only what means the function did not run, or did not reach the provider
        assert set(retry["ErrorEquals"]) == {
            "TransientDeliveryError",
            "Lambda.TooManyRequestsException",
        }
        assert retry["JitterStrategy"] == "FULL"
        assert retry["MaxAttempts"] == 2  # three attempts in all
        assert retry["BackoffRate"] == 2
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
