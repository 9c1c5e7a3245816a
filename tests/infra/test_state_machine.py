"""The synthesized state machines: the tick (Standard) and its delivery window (Express):
states, concurrency, retries, catches and the window's time budget."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import pytest

from devstack.emulation.template import EXPRESS, STANDARD, state_machine, state_machine_definition
from escalator.channels import CHANNELS
from escalator.config import DeliveryConfig, Env
from escalator.delivery import Claim
from infra.settings import HAND_OVER_RETRIES, THROTTLE_RETRY, WINDOW_RETRIES
from infra.timings import (
    CONFIRM_DATABASE_RETRIES,
    DATABASE_ERROR_RETRIES,
    DATABASE_SERVICE_RETRIES,
    NOTIFIER_ATTEMPTS,
    NOTIFIER_RETRIES,
    RECORD_DATABASE_RETRIES,
)
from tests.support.contexts import CUSTOM_CONTEXT

# AWS runs at most 40 iterations of an inline Map state at once.
INLINE_MAP_LIMIT = 40
THROTTLED = "Lambda.TooManyRequestsException"
# An Express execution runs at most five minutes.
EXPRESS_CAP_SECONDS = 300


@pytest.fixture(scope="module")
def states(template: dict[str, Any]) -> dict[str, Any]:
    """The tick's states."""
    top: dict[str, Any] = state_machine_definition(template, STANDARD)["States"]
    return top


@pytest.fixture(scope="module")
def window(template: dict[str, Any]) -> dict[str, Any]:
    """The delivery window's definition."""
    return state_machine_definition(template, EXPRESS)


def inner_states(window: dict[str, Any]) -> dict[str, Any]:
    """The states of one notification's iteration in the window's Map."""
    inner: dict[str, Any] = window["States"]["Deliver notifications"]["ItemProcessor"]["States"]
    return inner


def test_a_tick_claims_waits_for_its_window_and_hands_over_while_more_is_due(
    states: dict[str, Any], template: dict[str, Any]
) -> None:
    assert set(states) == {
        "Claim due notifications",
        "Anything claimed?",
        "Nothing due",
        "Deliver notifications",
        "Window delivered?",
        "Window outcome",
        "Summary",
        "More due?",
        "Hand over to a fresh execution",
        "Handed over",
        "Done",
        "Release the window's claims",
        "Claims not released",
        "Failure summary",
        "Window failed",
    }
    assert states["Claim due notifications"]["Next"] == "Anything claimed?"
    # an idle tick ends right after its claim: one transition a minute fewer
    assert states["Anything claimed?"]["Choices"] == [
        {"Variable": "$.claim.claimed", "NumericEquals": 0, "Next": "Nothing due"}
    ]
    assert states["Anything claimed?"]["Default"] == "Deliver notifications"
    assert states["Nothing due"]["Type"] == "Succeed"
    # the claim goes to an Express window, which the tick starts and waits for as AWS
    # supports an Express child (StartSyncExecution; .sync cannot follow one)
    deliver = states["Deliver notifications"]
    assert deliver["Resource"] == "arn:aws:states:::aws-sdk:sfn:startSyncExecution"
    _, window_machine = state_machine(template, EXPRESS)
    name = window_machine["Properties"]["StateMachineName"]
    assert deliver["Parameters"]["StateMachineArn"].endswith(f":stateMachine:{name}")
    assert deliver["Parameters"]["Input.$"] == "States.JsonToString($.claim)"
    assert deliver["ResultPath"] == "$.window"
    # it waits no longer than a window may run, and a little for the answer
    assert EXPRESS_CAP_SECONDS < deliver["TimeoutSeconds"] <= EXPRESS_CAP_SECONDS + 60
    # a start refused or unanswered is tried once more (a re-run is harmless)
    (retrier,) = deliver["Retry"]
    assert (retrier["ErrorEquals"], retrier["MaxAttempts"]) == (
        ["Sfn.SfnException", "Sfn.StateMachineDeletingException"],
        1,
    )
    (catch,) = deliver["Catch"]
    assert (catch["ErrorEquals"], catch["ResultPath"], catch["Next"]) == (
        ["States.ALL"],
        "$.window",
        "Release the window's claims",
    )
    # a window's answer is read only once it says it succeeded with an output
    delivered = states["Window delivered?"]
    (rule,) = delivered["Choices"]
    assert rule["Next"] == "Window outcome"
    assert rule["And"][0] == {"Variable": "$.window.Status", "IsPresent": True}
    assert {"Variable": "$.window.Output", "IsPresent": True} in rule["And"]
    assert delivered["Default"] == "Release the window's claims"
    assert states["Window outcome"]["Parameters"] == {
        "notifications.$": "States.StringToJson($.window.Output)"
    }
    # the tick's output says what it claimed and what became of each notification
    assert states["Summary"]["Parameters"] == {
        "claimed.$": "$.claim.claimed",
        "more.$": "$.claim.more",
        "window.$": "$.window",
    }
    assert states["Summary"]["Next"] == "More due?"
    # a window that failed or never started: its claims released, a summary, a failure
    release = states["Release the window's claims"]
    assert release["Parameters"] == {"execution.$": "$$.Execution.Id", "window.$": "$.window"}
    assert release["Next"] == "Failure summary"
    assert release["Catch"][0]["Next"] == "Claims not released"
    assert states["Failure summary"]["Parameters"] == states["Summary"]["Parameters"]
    assert states["Failure summary"]["Next"] == "Window failed"
    assert states["Window failed"] == {
        "Type": "Fail",
        "Error": "DeliveryWindowFailed",
        "CausePath": "States.JsonToString($)",
    }
    assert states["More due?"]["Choices"] == [
        {"Variable": "$.more", "BooleanEquals": True, "Next": "Hand over to a fresh execution"}
    ]
    hand_over = states["Hand over to a fresh execution"]
    assert hand_over["Resource"] == "arn:aws:states:::states:startExecution"
    _, tick = state_machine(template, STANDARD)
    tick_name = tick["Properties"]["StateMachineName"]
    assert hand_over["Parameters"]["StateMachineArn"].endswith(f":stateMachine:{tick_name}")
    # named from its parent, so a retried hand-over starts nothing twice
    assert hand_over["Parameters"]["Name.$"] == (
        "States.Format('more-{}', States.Hash($$.Execution.Name, 'MD5'))"
    )
    assert hand_over["Parameters"]["Input.$"] == "$$.Execution.Input"
    # what exists already is not retried (the first matching retrier decides), and the
    # summary stays the tick's output
    exists = "StepFunctions.ExecutionAlreadyExistsException"
    assert hand_over["Retry"][0] == {"ErrorEquals": [exists], "MaxAttempts": 0}
    assert hand_over["Catch"] == [
        {"ErrorEquals": [exists], "ResultPath": None, "Next": "Handed over"}
    ]


def test_every_iteration_ends_with_its_notification_and_outcome(window: dict[str, Any]) -> None:
    ends = {
        name: state
        for name, state in inner_states(window).items()
        if state.get("End") or state["Type"] == "Succeed"
    }
    assert set(ends) == {
        *("Recorded", "Not delivered", "Coalesced", "Not confirmed", "Outcome not recorded"),
        "No delivery confirmed",
    }
    for name, state in ends.items():
        # a small object per notification: the window's output, a list of them, stays
        # far below the 256 KB a state may hold
        assert state["Type"] == "Pass", name
        assert state["Parameters"]["id.$"] == "$.notification.id", name
        assert "outcome" in state["Parameters"] or "outcome.$" in state["Parameters"], name
    assert ends["Recorded"]["Parameters"]["outcome.$"] == "$.recorded.outcome"
    # a coalesced notification is told by the presence of what covered it, which a confirm
    # function of the release before (during a deploy) never answers: asked first
    still_wanted = inner_states(window)["Still wanted?"]["Choices"]
    assert still_wanted[0] == {
        "Variable": "$.confirmed.covered_by",
        "IsPresent": True,
        "Next": "Coalesced",
    }


def test_map_delivers_in_parallel_with_bounded_concurrency(
    window: dict[str, Any], template: dict[str, Any]
) -> None:
    deliver = window["States"]["Deliver notifications"]
    assert deliver["Type"] == "Map"
    assert deliver["ItemsPath"] == "$.notifications"
    # every iteration is owned by whoever claimed the notifications: the tick, or the
    # arrival that the initiator claimed at once
    assert deliver["ItemSelector"]["execution.$"] == "$$.Map.Item.Value.owner"
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


def test_every_channel_has_a_task_with_jittered_retry_and_a_catch(window: dict[str, Any]) -> None:
    inner = inner_states(window)
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
        assert transient["MaxAttempts"] == NOTIFIER_RETRIES  # (two: three attempts in all)
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


def database_tasks(states: dict[str, Any], window: dict[str, Any]) -> dict[str, Any]:
    inner = inner_states(window)
    names = ["Confirm still wanted", "Record delivery", "Record failure", "Record unknown outcome"]
    return {"Claim due notifications": states["Claim due notifications"]} | {
        name: inner[name] for name in names
    }


def test_database_steps_retry_a_lost_answer_and_notifiers_never_do(
    states: dict[str, Any], window: dict[str, Any]
) -> None:
    # A database step is idempotent under its own retry: it retries every error after
    # which the function may have run. A notifier may have placed the call: it does not.
    may_have_run = {"Lambda.ServiceException", "Lambda.SdkClientException", "Sandbox.Timedout"}
    for name, task in database_tasks(states, window).items():
        retried = {error for retrier in task["Retry"] for error in retrier["ErrorEquals"]}
        assert may_have_run <= retried, name
    inner = inner_states(window)
    for channel in CHANNELS.values():
        retried = {
            error
            for retrier in inner[channel.task_name]["Retry"]
            for error in retrier["ErrorEquals"]
        }
        assert retried == {"TransientDeliveryError", "Lambda.TooManyRequestsException"}


def test_each_retry_count_is_the_retries_its_constant_names(
    states: dict[str, Any], window: dict[str, Any]
) -> None:
    # A Retry's MaxAttempts counts the tries after the first (retries); a name ending in
    # _ATTEMPTS counts every try, the first included: a notifier is called three times in
    # all when its provider says "not now" each time.
    assert NOTIFIER_RETRIES == NOTIFIER_ATTEMPTS - 1 == 2
    inner = inner_states(window)
    for channel in CHANNELS.values():
        transient, throttled = inner[channel.task_name]["Retry"]
        assert (transient["MaxAttempts"], throttled["MaxAttempts"]) == (
            NOTIFIER_ATTEMPTS - 1,
            THROTTLE_RETRY.retries,
        ), channel.task_name
    database = {
        **database_tasks(states, window),
        "Release what was not confirmed": inner["Release what was not confirmed"],
        "Release the window's claims": states["Release the window's claims"],
    }
    for name, task in database.items():
        lost_answer, database_error, throttled = task["Retry"]
        expected = (
            CONFIRM_DATABASE_RETRIES
            if name.startswith(("Confirm", "Release what"))
            else RECORD_DATABASE_RETRIES
            if name.startswith("Record")
            else DATABASE_ERROR_RETRIES
        )
        assert (
            lost_answer["MaxAttempts"],
            database_error["ErrorEquals"],
            database_error["MaxAttempts"],
            throttled["MaxAttempts"],
        ) == (DATABASE_SERVICE_RETRIES, ["DatabaseError"], expected, THROTTLE_RETRY.retries), name
    (window_start,) = states["Deliver notifications"]["Retry"]
    assert window_start["MaxAttempts"] == WINDOW_RETRIES
    _, hand_over = states["Hand over to a fresh execution"]["Retry"]
    assert hand_over["MaxAttempts"] == HAND_OVER_RETRIES


def test_confirm_is_told_a_retry_from_a_second_run(window: dict[str, Any]) -> None:
    inner = inner_states(window)
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


def timeout_of(template: dict[str, Any], task: dict[str, Any]) -> float:
    """The timeout of the function a task invokes (Lambda's default: 3 s)."""
    return float(function_of(template, task)["Properties"].get("Timeout", 3))


def test_a_window_fits_the_five_minutes_of_an_express_execution(
    template: dict[str, Any], window: dict[str, Any], states: dict[str, Any]
) -> None:
    # GIVEN the last notification of a claim, due at the end of the tick's lookahead
    inner = inner_states(window)
    claim = states["Claim due notifications"]
    variables = function_of(template, claim)["Properties"]["Environment"]["Variables"]
    lookahead = float(variables[Env.LOOKAHEAD_SECONDS])

    def database_retries(task: dict[str, Any]) -> float:
        (retrier,) = [r for r in task["Retry"] if r["ErrorEquals"] == ["DatabaseError"]]
        attempts = int(retrier["MaxAttempts"]) + 1
        return attempts * timeout_of(template, task) + retry_seconds(retrier)

    # WHEN every step takes as long as it may, lost answers and throttles aside: the
    # confirm and the record each failing on the database until their last attempt, the
    # notifier running out of time on every attempt
    confirm = inner["Confirm still wanted"]
    record = inner["Record delivery"]
    slowest_notifier = max(
        (inner[channel.task_name] for channel in CHANNELS.values()),
        key=lambda task: timeout_of(template, task),
    )
    (transient,) = [
        r for r in slowest_notifier["Retry"] if r["ErrorEquals"] == ["TransientDeliveryError"]
    ]
    notifier = (transient["MaxAttempts"] + 1) * timeout_of(
        template, slowest_notifier
    ) + retry_seconds(transient)
    worst = lookahead + database_retries(confirm) + notifier + database_retries(record)

    # THEN the window still ends within its timeout, which is within Express's cap; and
    # the record step rides out a short database outage
    assert worst <= window["TimeoutSeconds"] <= EXPRESS_CAP_SECONDS, worst
    for name in ("Record delivery", "Record failure", "Record unknown outcome"):
        (database,) = [r for r in inner[name]["Retry"] if r["ErrorEquals"] == ["DatabaseError"]]
        assert retry_seconds(database) >= 10, name


def test_the_tick_is_standard_the_window_express_and_both_use_jsonpath_only(
    template: dict[str, Any],
) -> None:
    for machine_type in (STANDARD, EXPRESS):
        _, machine = state_machine(template, machine_type)
        assert machine["Properties"].get("StateMachineType", STANDARD) == machine_type
        assert "JSONata" not in str(state_machine_definition(template, machine_type))


def test_max_concurrency_comes_from_context(
    window: dict[str, Any], customized: dict[str, Any]
) -> None:
    deliver = state_machine_definition(customized, EXPRESS)["States"]["Deliver notifications"]
    assert deliver["MaxConcurrency"] == CUSTOM_CONTEXT["max_concurrency"]
    assert deliver["MaxConcurrency"] != window["States"]["Deliver notifications"]["MaxConcurrency"]


def lambda_tasks(template: dict[str, Any]) -> dict[str, Any]:
    top = state_machine_definition(template, STANDARD)["States"]
    inner = inner_states(state_machine_definition(template, EXPRESS))
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
    # claim, release, confirm, release what was not confirmed, 3 records, the notifiers
    assert len(tasks) == 7 + len(CHANNELS)
    # The Map's iterations queue for the reserved sandboxes of confirm and record: the
    # last of a sandbox's queue waits for every one before it.
    deliver = state_machine_definition(template, EXPRESS)["States"]["Deliver notifications"]
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


def _states_of(definition: dict[str, Any]) -> dict[str, Any]:
    """Every state of a definition, those inside its Maps too, by name."""
    found: dict[str, Any] = {}
    for name, state in definition["States"].items():
        found[name] = state
        if state["Type"] == "Map":
            found.update(_states_of(state["ItemProcessor"]))
    return found


def _unguarded(rule: dict[str, Any], present: frozenset[str] = frozenset()) -> set[str]:
    """The fields a Choice rule compares without having asked first whether they are
    present (an ``And`` asks in order: an IsPresent before guards what follows)."""
    if "And" in rule:
        found: set[str] = set()
        asked = set(present)
        for inner in rule["And"]:
            found |= _unguarded(inner, frozenset(asked))
            if inner.get("IsPresent") is True:
                asked.add(inner["Variable"])
        return found
    if "Or" in rule:
        return set().union(*(_unguarded(inner, present) for inner in rule["Or"]))
    if "Not" in rule:
        return _unguarded(rule["Not"], present)
    if "IsPresent" in rule or rule["Variable"] in present:
        return set()
    return {rule["Variable"]}


def test_every_choice_reads_only_what_its_input_always_has(template: dict[str, Any]) -> None:
    # On AWS a Choice rule on a missing field fails the execution (States.Runtime): a
    # malformed answer of one step would fail a whole window. Each rule asks first, or
    # reads what the state before it always writes.
    states = {
        **_states_of(state_machine_definition(template, STANDARD)),
        **_states_of(state_machine_definition(template, EXPRESS)),
    }
    unguarded = {
        (name, field)
        for name, state in states.items()
        if state["Type"] == "Choice"
        for rule in state["Choices"]
        for field in _unguarded(rule)
    }
    assert unguarded == {
        ("Anything claimed?", "$.claim.claimed"),
        ("More due?", "$.more"),
        ("Which channel?", "$.confirmed.delivery.channel"),
    }
    # each of them is always there: the claim always says how many it claimed...
    assert states["Claim due notifications"]["ResultPath"] == "$.claim"
    assert "claimed" in Claim(notifications=[], more=False).to_event()
    # ... "More due?" is entered only from the summary, which writes "more"...
    entering = {name for name, state in states.items() if state.get("Next") == "More due?"}
    assert entering == {"Summary"}
    assert "more.$" in states["Summary"]["Parameters"]
    # ... and "Which channel?" only from the rule that asked for the channel first
    entering = {
        name
        for name, state in states.items()
        if state.get("Next") == "Which channel?"
        or any(rule.get("Next") == "Which channel?" for rule in state.get("Choices", []))
    }
    assert entering == {"Still wanted?"}
    (asked,) = [r for r in states["Still wanted?"]["Choices"] if r["Next"] == "Which channel?"]
    assert asked == {
        "Variable": "$.confirmed.delivery.channel",
        "IsPresent": True,
        "Next": "Which channel?",
    }


def test_a_confirm_that_fails_releases_what_its_iteration_holds(window: dict[str, Any]) -> None:
    # GIVEN the confirm step, once its retries are spent (every answer lost)
    inner = inner_states(window)
    (caught,) = inner["Confirm still wanted"]["Catch"]
    assert caught["ErrorEquals"] == ["States.ALL"]

    # THEN its iteration releases what it holds, through the record function, named by
    # its run (the one token part a later state knows), before it says "not confirmed"
    release = inner[caught["Next"]]
    assert caught["Next"] == "Release what was not confirmed"
    assert release["Resource"] == inner["Record delivery"]["Resource"]
    payload = release["Parameters"]
    assert (payload["run.$"], payload["not_confirmed.$"]) == ("$.run", "$.confirmError")
    assert release["Next"] == "Not confirmed"
    # AND a release that fails still ends the iteration as not confirmed
    (failed,) = release["Catch"]
    assert (failed["ErrorEquals"], failed["Next"]) == (["States.ALL"], "Not confirmed")
