"""The claim grace and the sending lease keep one rule (``infra.timings``) on AWS and in
the local stack: each is read as its functions get it (the synthesized template's
environments and timeouts, the local stack's defaults), and the rule reads the retries
the window's tasks are synthesized with."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from devstack.emulation.template import EXPRESS, TemplateError, resources, state_machine_definition
from devstack.local.stack import local_defaults
from escalator.config import Env, load_delivery_config, load_initiator_config
from infra.timings import (
    CONFIRM_RETRIERS,
    NOTIFIER_RETRIERS,
    RECORD_RETRIERS,
    Leases,
    Retrier,
    minimum_leases,
)

# (A database URL stands in for the template's database settings: the leases are read.)
DATABASE = {Env.DATABASE_URL: "postgresql://escalator@127.0.0.1/escalator"}


def functions(template: dict[str, Any], handler: str) -> list[dict[str, Any]]:
    """The properties of the template's functions running ``escalator.handlers.<handler>``."""
    return [
        function["Properties"]
        for function in resources(template, "AWS::Lambda::Function").values()
        if function["Properties"].get("Handler") == f"escalator.handlers.{handler}.handler"
    ]


def environment(function: dict[str, Any]) -> dict[str, str]:
    variables = function.get("Environment", {}).get("Variables", {})
    return {name: value for name, value in variables.items() if isinstance(value, str)}


def window(template: dict[str, Any]) -> dict[str, Any]:
    return dict(state_machine_definition(template, EXPRESS))


def task_states(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The Task states of one notification's iteration in the delivery window."""
    (mapped,) = [state for state in window(template)["States"].values() if state["Type"] == "Map"]
    return {
        name: state
        for name, state in mapped["ItemProcessor"]["States"].items()
        if state["Type"] == "Task"
    }


def as_retriers(retry: list[dict[str, Any]]) -> list[Retrier]:
    assert {entry["BackoffRate"] for entry in retry} == {2}  # (the rule doubles each delay)
    return [
        Retrier(
            retries=entry["MaxAttempts"],
            interval=entry["IntervalSeconds"],
            max_delay=entry.get("MaxDelaySeconds"),
        )
        for entry in retry
    ]


def rule(template: dict[str, Any], lookahead: int) -> Leases:
    """The rule for the template's function timeouts and window timeout."""
    (confirm,) = functions(template, "confirm")
    (record,) = functions(template, "record")
    assert confirm["Timeout"] == record["Timeout"]
    return minimum_leases(
        lookahead_seconds=lookahead,
        database_step_timeout=confirm["Timeout"],
        notifier_timeout=max(item["Timeout"] for item in functions(template, "notifier")),
        window_timeout=window(template)["TimeoutSeconds"],
    )


def test_the_rule_reads_the_retries_the_window_is_synthesized_with(
    template: dict[str, Any],
) -> None:
    tasks = task_states(template)
    expected = {
        name: list(
            CONFIRM_RETRIERS
            # (releasing what a failed confirm held retries as the confirm step does: the
            # failed path, confirm then release, is shorter than confirm, notifier, record)
            if name.startswith(("Confirm", "Release what was not confirmed"))
            else RECORD_RETRIERS
            if name.startswith("Record")
            else NOTIFIER_RETRIERS
        )
        for name in tasks
    }

    assert {name: as_retriers(state["Retry"]) for name, state in tasks.items()} == expected
    assert len(tasks) >= 6  # confirm, its release, the three records and a notifier at least


def test_the_stack_on_aws_keeps_the_rule(template: dict[str, Any]) -> None:
    # GIVEN what the stack's functions read: the claim grace (the activator and the
    # initiator claim) and the sending lease (the confirm step moves to sending)
    (activator,) = functions(template, "activator")
    (confirm,) = functions(template, "confirm")
    (initiator,) = functions(template, "initiator")
    claims = load_delivery_config({**environment(activator), **DATABASE})
    sends = load_delivery_config({**environment(confirm), **DATABASE})
    arrivals = load_initiator_config({**environment(initiator), **DATABASE})
    assert claims.lookahead_seconds == sends.lookahead_seconds == arrivals.lookahead_seconds

    # THEN each keeps the rule for the template's timeouts and retries
    minimum = rule(template, claims.lookahead_seconds)
    for grace in (claims.claim_grace_seconds, arrivals.claim_grace_seconds):
        assert grace >= minimum.claim_grace_seconds
    assert sends.sending_lease_seconds >= minimum.sending_lease_seconds
    # (a sending lease outlives the window: Step Functions ends it at its timeout)
    assert sends.sending_lease_seconds > window(template)["TimeoutSeconds"]


@pytest.mark.parametrize("tick", [1, 2, 3, 5, 10, 60])
def test_the_local_stack_keeps_the_rule_of_the_stack_on_aws(
    template: dict[str, Any], tick: int
) -> None:
    # GIVEN the delivery settings the local stack runs with for a schedule of this period
    # (the same template: the same timeouts, retries and Express cap are enforced there)
    config = load_delivery_config({**local_defaults(tick, template), **DATABASE})

    # THEN they keep the rule too
    minimum = rule(template, config.lookahead_seconds)
    leases = Leases(config.claim_grace_seconds, config.sending_lease_seconds)
    assert leases.keeps(minimum), (leases, minimum)
    assert config.sending_lease_seconds > window(template)["TimeoutSeconds"]


def test_the_local_stack_scales_its_leases_to_the_template_it_runs(
    template: dict[str, Any],
) -> None:
    # GIVEN a template (given with --template) whose confirm, record and notifier
    # functions have longer timeouts than the app synthesizes
    longer = copy.deepcopy(template)
    for handler in ("confirm", "record", "notifier"):
        for function in functions(longer, handler):
            function["Timeout"] = 3 * function["Timeout"]

    # WHEN the local stack takes its defaults for it
    config = load_delivery_config({**local_defaults(5, longer), **DATABASE})

    # THEN they keep the rule for those timeouts, not for the app's own
    minimum = rule(longer, config.lookahead_seconds)
    assert minimum != rule(template, config.lookahead_seconds)
    assert Leases(config.claim_grace_seconds, config.sending_lease_seconds).keeps(minimum)


def test_a_template_without_the_delivery_functions_cannot_be_run_locally(
    template: dict[str, Any],
) -> None:
    # GIVEN a template whose notifiers are gone (not Escalator's, or cut down)
    cut = copy.deepcopy(template)
    for function in functions(cut, "notifier"):
        function["Handler"] = "something.else.handler"

    # WHEN the local stack reads its timeouts, THEN it says which functions are missing
    with pytest.raises(TemplateError, match="the template has no notifier function"):
        local_defaults(5, cut)
