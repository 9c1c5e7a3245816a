"""``escalator verify`` against hand-written fakes of a deployment: a queue that takes the
run's requests and a console notifier's log group that shows each delivery as the
scenario says (how often, by which path, how late), on a clock of the test's own.

What it proves against the real thing (the local stack): tests/integration/test_local_stack.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from moto import mock_aws

from escalator.errors import ConfigError
from escalator.limits import near_due_horizon
from escalator.verification import (
    INGEST_MARGIN_SECONDS,
    Deployment,
    Verification,
    deployment_at_endpoint,
    deployment_of_stack,
    verify,
)
from escalator_cli.commands import show_verification
from escalator_cli.main import main

HORIZON = near_due_horizon(120)
DEPLOYMENT = Deployment(
    queue_url="https://sqs.eu-central-1.amazonaws.com/123456789012/Escalator-requests.fifo",
    log_group="/aws/lambda/Escalator-FunctionsNotifierConsole",
    near_due_horizon=HORIZON,
)
TICK = "arn:aws:states:eu-central-1:123456789012:execution:Escalator-delivery:tick-7"

# How a scenario delivers each of the run's notifications: (path, seconds late) per delivery.
Script = dict[str, list[tuple[str, float]]]
ON_TIME: Script = {"arrival": [("initiator", 0.4)], "tick": [("tick", 0.1)]}
# Whose claim a delivery by each path went out under (the run's start is message m-1).
OWNERS = {"tick": TICK, "initiator": "arrival-m-1", "other-arrival": "arrival-m-9", "unknown": None}


class Clock:
    """The test's time: it moves only when verify sleeps."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Deployed:
    """A deployment as verify sees it: its queue (``send_message``) and the console
    notifier's log group (``filter_log_events``), where each notification of the run the
    queue took is logged as ``script`` says once its time has come, a line at a time
    (one event per page), among lines of other runs and Lambda's own."""

    def __init__(self, clock: Clock, script: Script) -> None:
        self.clock = clock
        self.script = script
        self.sent: list[dict[str, Any]] = []
        self.filters: set[str] = set()

    def send_message(self, **request: Any) -> dict[str, str]:
        self.sent.append(json.loads(request["MessageBody"]))
        return {"MessageId": f"m-{len(self.sent)}"}

    def filter_log_events(self, **request: Any) -> dict[str, Any]:
        self.filters.add(request["filterPattern"])
        events = [
            "START RequestId: 1f4e Version: $LATEST",
            self.line("verify-0123456789ab-tick", 1, TICK, 2.0),  # another run's
        ]
        (start, *_) = self.sent
        for notification in start["notifications"]:
            kind = notification["label"].rsplit("-", 1)[1]
            for path, late in self.script.get(kind, []):
                owner = OWNERS[path]
                if notification["at"] + late <= self.clock.now:
                    events.append(self.line(notification["label"], notification["at"], owner, late))
        page = int(request.get("nextToken", 0))
        answer: dict[str, Any] = {"events": [{"message": events[page]}]}
        if page + 1 < len(events):
            answer["nextToken"] = str(page + 1)
        return answer

    @staticmethod
    def line(label: str, due_at: int, owner: str | None, late: float) -> str:
        logged = {"level": "INFO", "message": "console notification", "label": label}
        return json.dumps(
            {**logged, "due_at": due_at, "owner": owner, "delivered_at": due_at + late}
        )


def run(script: Script, *, timeout: float = 300) -> tuple[Verification, Deployed, list[str]]:
    clock = Clock()
    deployed = Deployed(clock, script)
    said: list[str] = []
    report = verify(
        DEPLOYMENT,
        sqs=deployed,
        logs=deployed,
        timeout=timeout,
        progress=said.append,
        clock=clock,
        sleep=clock.sleep,
    )
    return report, deployed, said


def test_each_delivered_once_by_its_own_path_is_verified_and_the_run_stopped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report, deployed, said = run(ON_TIME)

    # THEN it sent one start of two console notifications, then its stop
    start, stop = deployed.sent
    assert stop == {"process-id": report.process_id, "action": "stop"}
    assert start["process-id"] == report.process_id
    assert [n["label"] for n in start["notifications"]] == [
        f"{report.process_id}-arrival",
        f"{report.process_id}-tick",
    ]
    assert deployed.filters == {f'"{report.process_id}"'}
    # AND saw each delivered once, by its path, this late
    assert report.ok
    arrival, tick = report.notifications
    assert [(d.path, d.owner, round(d.late_seconds, 2)) for d in arrival.deliveries] == [
        ("initiator", "arrival-m-1", 0.4)
    ]
    assert [(d.path, round(d.late_seconds, 2)) for d in tick.deliveries] == [("tick", 0.1)]
    # AND says so, exit 0, with progress on the way
    assert show_verification(report) == 0
    out = capsys.readouterr().out
    assert "delivered once, by the initiator's window, 0.40 s late  ok" in out
    assert "delivered once, by the tick tick-7, 0.10 s late  ok" in out
    assert out.splitlines()[-1] == "verified: each delivered once, by its own path"
    assert said[0].startswith(f"sent {report.process_id} (message m-1): the arrival due in")
    assert any(line.startswith("waiting: arrival: delivered; tick: due in") for line in said)
    assert show_verification(report, as_json=True) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["verified"] is True
    assert [(n["kind"], n["deliveries"][0]["path"]) for n in shown["notifications"]] == [
        ("arrival", "initiator"),
        ("tick", "tick"),
    ]


def test_the_arrival_is_due_within_the_near_due_horizon_and_the_ticks_beyond_it() -> None:
    clock = Clock()
    deployed = Deployed(clock, ON_TIME)
    sent_at = int(clock.now)
    verify(DEPLOYMENT, sqs=deployed, logs=deployed, clock=clock, sleep=clock.sleep)

    arrival, tick = deployed.sent[0]["notifications"]
    assert 0 < arrival["at"] - sent_at < HORIZON
    assert tick["at"] - sent_at >= HORIZON + INGEST_MARGIN_SECONDS


@pytest.mark.parametrize(
    ("script", "problem"),
    [
        ({"arrival": ON_TIME["arrival"]}, "tick: not delivered"),
        ({"tick": ON_TIME["tick"]}, "arrival: not delivered"),
        (
            {**ON_TIME, "arrival": [("initiator", 0.4), ("initiator", 0.9)]},
            "arrival: delivered 2 times",
        ),
        ({**ON_TIME, "tick": [("tick", 0.1), ("tick", 6.0)]}, "tick: delivered 2 times"),
        (
            {**ON_TIME, "tick": [("initiator", 0.1)]},
            "tick: delivered by the initiator's window, not a tick",
        ),
        (
            {**ON_TIME, "arrival": [("tick", 0.3)]},
            "arrival: delivered by a tick, not the initiator's window",
        ),
        ({**ON_TIME, "arrival": [("unknown", 0.3)]}, "arrival: delivered by an unknown path"),
        (
            {**ON_TIME, "arrival": [("other-arrival", 0.3)]},
            "arrival: delivered under another arrival's claim (arrival-m-9)",
        ),
        ({**ON_TIME, "arrival": [("initiator", -0.5)]}, "arrival: delivered 0.50 s early"),
    ],
    ids=[
        "tick-never",
        "arrival-never",
        "arrival-twice",
        "tick-twice-later",
        "tick-by-initiator",
        "arrival-by-tick",
        "unknown-path",
        "another-arrivals-claim",
        "early",
    ],
)
def test_a_delivery_missing_repeated_by_the_wrong_path_or_early_is_not_verified(
    script: Script, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    report, deployed, _ = run(script)

    assert not report.ok
    assert show_verification(report) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("NOT verified (after ")
    assert problem in out.splitlines()[-1]
    # (and the run was stopped: nothing of it stays active)
    assert deployed.sent[-1] == {"process-id": report.process_id, "action": "stop"}
    assert json.loads(json.dumps(report.to_json()))["verified"] is False


def test_a_second_delivery_ends_the_wait_at_once_and_a_missing_one_at_the_timeout() -> None:
    twice, _, _ = run({**ON_TIME, "arrival": [("initiator", 0.4), ("initiator", 0.9)]})
    never, _, _ = run({"arrival": ON_TIME["arrival"]}, timeout=200)

    assert twice.waited_seconds < 20
    assert 200 <= never.waited_seconds < 210


def test_a_timeout_too_short_for_the_ticks_notification_is_refused_before_sending() -> None:
    clock = Clock()
    deployed = Deployed(clock, ON_TIME)

    with pytest.raises(ConfigError, match=r"a timeout of 60 s ends before the tick's"):
        verify(DEPLOYMENT, sqs=deployed, logs=deployed, timeout=60, clock=clock, sleep=clock.sleep)
    assert deployed.sent == []


# ---- finding the deployment ------------------------------------------------------------


class Functions:
    """Lambda's GetFunctionConfiguration and ListFunctions (two to a page)."""

    def __init__(self, configurations: dict[str, dict[str, Any]]) -> None:
        self.configurations = configurations

    def get_function_configuration(self, FunctionName: str) -> dict[str, Any]:
        return {"FunctionName": FunctionName, **self.configurations[FunctionName]}

    def list_functions(self, Marker: str = "0") -> dict[str, Any]:
        names = sorted(self.configurations)
        start = int(Marker)
        page: dict[str, Any] = {
            "Functions": [{"FunctionName": n} for n in names[start : start + 2]]
        }
        if start + 2 < len(names):
            page["NextMarker"] = str(start + 2)
        return page


class Stacks:
    """CloudFormation's DescribeStacks and ListStackResources (a resource to a page)."""

    def __init__(self, outputs: dict[str, str], functions: dict[str, str]) -> None:
        self.outputs = outputs
        self.resources = [
            {"ResourceType": "AWS::IAM::Role", "LogicalResourceId": "FunctionsNotifierConsoleRole"},
            *(
                {"ResourceType": "AWS::Lambda::Function", "LogicalResourceId": logical_id}
                | {"PhysicalResourceId": name}
                for logical_id, name in functions.items()
            ),
        ]

    def describe_stacks(self, StackName: str) -> dict[str, Any]:
        outputs = [{"OutputKey": key, "OutputValue": value} for key, value in self.outputs.items()]
        return {
            "Stacks": [
                {"StackName": StackName, "StackStatus": "UPDATE_COMPLETE", "Outputs": outputs}
            ]
        }

    def list_stack_resources(self, StackName: str, NextToken: str = "0") -> dict[str, Any]:
        index = int(NextToken)
        page: dict[str, Any] = {
            "StackResourceSummaries": [{"PhysicalResourceId": "-"} | self.resources[index]]
        }
        if index + 1 < len(self.resources):
            page["NextToken"] = str(index + 1)
        return page


DEPLOYED_FUNCTIONS: dict[str, dict[str, Any]] = {
    "Escalator-FunctionsNotifierConsoleDAC45A8-x1": {
        "LoggingConfig": {
            "LogFormat": "Text",
            "LogGroup": "Escalator-FunctionsNotifierConsoleLogs-y2",
        }
    },
    "Escalator-FunctionsInitiator7B08CC97-z3": {
        "Environment": {"Variables": {"LOOKAHEAD_SECONDS": "300", "DB_HOST": "db.example"}}
    },
}


def test_a_stack_is_found_by_its_outputs_and_resources() -> None:
    stacks = Stacks(
        {"RequestQueueUrl": DEPLOYMENT.queue_url, "StateMachineArn": "arn:..."},
        {
            "FunctionsNotifierConsoleDAC45A82": "Escalator-FunctionsNotifierConsoleDAC45A8-x1",
            "FunctionsInitiator7B08CC97": "Escalator-FunctionsInitiator7B08CC97-z3",
            "FunctionsNotifierPhoneC55496EA": "Escalator-FunctionsNotifierPhoneC55496E-w4",
        },
    )

    found = deployment_of_stack(
        "Escalator", cloudformation=stacks, lambda_client=Functions(DEPLOYED_FUNCTIONS)
    )

    # (the log group its logging configuration names; the initiator's own lookahead)
    assert found == Deployment(
        queue_url=DEPLOYMENT.queue_url,
        log_group="Escalator-FunctionsNotifierConsoleLogs-y2",
        near_due_horizon=near_due_horizon(300),
    )


def test_a_stack_without_the_request_queue_or_a_function_is_not_escalators() -> None:
    functions = Functions(DEPLOYED_FUNCTIONS)
    with pytest.raises(ConfigError, match="has no output RequestQueueUrl"):
        deployment_of_stack("Other", cloudformation=Stacks({}, {}), lambda_client=functions)
    stacks = Stacks({"RequestQueueUrl": DEPLOYMENT.queue_url}, {"FunctionsInitiatorX": "i"})
    with pytest.raises(ConfigError, match=r"has 0 functions FunctionsNotifierConsole\*, not one"):
        deployment_of_stack("Escalator", cloudformation=stacks, lambda_client=functions)


class Queues:
    """SQS's ListQueues and GetQueueAttributes."""

    def __init__(self, queues: dict[str, dict[str, str]]) -> None:
        self.queues = queues

    def list_queues(self) -> dict[str, Any]:
        return {"QueueUrls": list(self.queues)} if self.queues else {}

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        return {
            "Attributes": {k: v for k, v in self.queues[QueueUrl].items() if k in AttributeNames}
        }


LOCAL = "http://127.0.0.1:4566/123456789012/"


def test_the_local_stacks_deployment_is_found_by_what_its_endpoint_serves() -> None:
    queues = Queues(
        {
            LOCAL + "escalator-dead-letters.fifo": {"FifoQueue": "true"},
            LOCAL + "escalator-requests.fifo": {"RedrivePolicy": "{...}"},
        }
    )
    functions = Functions(
        {
            "FunctionsActivator2F5996FB": {},
            "FunctionsNotifierConsoleDAC45A82": {},  # (no logging configuration: moto keeps none)
            "FunctionsInitiator7B08CC97": {
                "Environment": {"Variables": {"LOOKAHEAD_SECONDS": "4"}}
            },
            "FunctionsConfirm5AA9E8F6": {},
        }
    )

    found = deployment_at_endpoint(
        sqs=queues, lambda_client=functions, endpoint="http://127.0.0.1:4566"
    )

    assert found == Deployment(
        queue_url=LOCAL + "escalator-requests.fifo",
        log_group="/aws/lambda/FunctionsNotifierConsoleDAC45A82",
        near_due_horizon=near_due_horizon(4),
    )
    # (and nothing served there: said so)
    with pytest.raises(ConfigError, match="serves 0 request queues"):
        deployment_at_endpoint(sqs=Queues({}), lambda_client=functions, endpoint="http://x")


def test_verify_without_a_deployment_or_with_a_stack_that_does_not_exist_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    assert main(["verify", "--region", "eu-central-1"]) == 1
    assert "say which deployment: --stack NAME" in capsys.readouterr().err

    with mock_aws():
        status = main(["verify", "--stack", "Escalator", "--region", "eu-central-1"])
    error = capsys.readouterr().err
    assert status == 1
    assert error.startswith("escalator: error: no stack 'Escalator' (Stack with id Escalator")
    assert error.count("\n") == 1
