"""The deploy lifecycle as the synthesized template states it (docs/deploy.md, "What
waits for what" and "A failed first deploy leaves nothing behind"; docs/operations.md,
"Tearing down"): what a failed first deploy removes and a deletion keeps, what waits
for the migration, and timeouts that let every waiter hear its answer."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from devstack.emulation.template import resources, tick_schedule
from devstack.loopback import LoopbackServer
from escalator import bootstrap
from escalator.lambda_invoker import InvocationError
from tests.infra.test_stack import LAUNCHER_HANDLER, RUNTIME_HANDLERS, our_functions

RETAIN_EXCEPT_ON_CREATE = "RetainExceptOnCreate"
MIGRATE_HANDLER = "escalator.handlers.migrate.handler"


def references(value: Any) -> set[str]:
    """The logical ids a property value refers to (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``)."""
    found: set[str] = set()
    if isinstance(value, dict):
        if isinstance(value.get("Ref"), str):
            found.add(value["Ref"])
        if isinstance(value.get("Fn::GetAtt"), list):
            found.add(value["Fn::GetAtt"][0])
        if "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            found |= {part.split("}")[0].split(".")[0] for part in text.split("${")[1:]}
        for item in value.values():
            found |= references(item)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return found


def dependencies(template: Mapping[str, Any]) -> dict[str, set[str]]:
    """What each resource waits for: its ``DependsOn`` and the resources it refers to."""
    names = set(template["Resources"])
    graph = {}
    for logical_id, resource in template["Resources"].items():
        depends_on = resource.get("DependsOn", [])
        depends_on = [depends_on] if isinstance(depends_on, str) else depends_on
        needs = set(depends_on) | references(resource.get("Properties", {}))
        graph[logical_id] = needs & names
    return graph


def waits_for(template: Mapping[str, Any], logical_id: str) -> set[str]:
    """Every resource created before ``logical_id``: its dependencies, transitively."""
    graph = dependencies(template)
    seen: set[str] = set()
    pending = [logical_id]
    while pending:
        for needed in graph[pending.pop()] - seen:
            seen.add(needed)
            pending.append(needed)
    return seen


def only(template: Mapping[str, Any], resource_type: str) -> tuple[str, dict[str, Any]]:
    ((logical_id, resource),) = resources(dict(template), resource_type).items()
    return logical_id, resource


def function_id(template: Mapping[str, Any], handler: str) -> str:
    (logical_id,) = [
        logical_id
        for logical_id, function in our_functions(template).items()
        if function["Properties"]["Handler"] == handler
    ]
    return logical_id


def sdk_call(value: Any, instance_id: str) -> dict[str, Any]:
    """An ``AwsCustomResource`` call (JSON joined around ``Ref``s), the instance's
    ``Ref`` written as ``<instance>``; any other reference fails the test."""
    text = value
    if not isinstance(value, str):
        separator, parts = value["Fn::Join"]
        assert all(isinstance(part, str) or part == {"Ref": instance_id} for part in parts)
        text = separator.join(part if isinstance(part, str) else "<instance>" for part in parts)
    parsed: dict[str, Any] = json.loads(text)
    return parsed


# 1. Kept on update and deletion, removed when the deploy that created them fails.


def test_the_database_its_subnet_group_and_the_secrets_go_only_with_a_failed_first_deploy(
    template: dict[str, Any],
) -> None:
    kept = {
        **resources(template, "AWS::RDS::DBInstance"),
        **resources(template, "AWS::RDS::DBSubnetGroup"),
        **resources(template, "AWS::SecretsManager::Secret"),  # the master's and providers'
    }
    assert len(kept) == 2 + 1 + 3
    for logical_id, resource in kept.items():
        assert resource.get("DeletionPolicy") == RETAIN_EXCEPT_ON_CREATE, logical_id
        # A replaced resource is kept too (UpdateReplacePolicy has no "except on create").
        assert resource.get("UpdateReplacePolicy") == "Retain", logical_id


def test_the_snapshot_policy_still_snapshots_and_keeps_the_password_for_it(
    customized: dict[str, Any],
) -> None:
    _, instance = only(customized, "AWS::RDS::DBInstance")
    assert instance["DeletionPolicy"] == "Snapshot"
    _, subnet_group = only(customized, "AWS::RDS::DBSubnetGroup")
    assert subnet_group.get("DeletionPolicy", "Delete") == "Delete"  # goes with the instance
    secrets = resources(customized, "AWS::SecretsManager::Secret")
    assert len(secrets) == 3  # master, SMTP and PubNub: Twilio's is referenced by name
    assert {secret.get("DeletionPolicy") for secret in secrets.values()} == {
        RETAIN_EXCEPT_ON_CREATE
    }


# 2. Deletion protection comes last, so that a rollback can still delete the instance.


def test_deletion_protection_is_switched_on_only_once_everything_else_exists(
    template: dict[str, Any],
) -> None:
    instance_id, instance = only(template, "AWS::RDS::DBInstance")
    # Left out, not false: CloudFormation sends it with every update of the instance.
    assert "DeletionProtection" not in instance["Properties"]
    switch_id, switch = only(template, "Custom::AWS")
    for event in ("Create", "Update"):
        call = sdk_call(switch["Properties"][event], instance_id)
        assert (call["service"], call["action"]) == ("RDS", "modifyDBInstance")
        assert call["parameters"] == {
            "DBInstanceIdentifier": "<instance>",
            "DeletionProtection": True,
            "ApplyImmediately": True,
        }
    assert "Delete" not in switch["Properties"]  # deleting the stack keeps the protection
    before = waits_for(template, switch_id)
    assert set(template["Resources"]) - {switch_id} <= before
    # ... and nothing waits for it: it is the deploy's last step.
    assert all(switch_id not in needs for needs in dependencies(template).values())


def test_the_switch_may_modify_that_one_instance_only(template: dict[str, Any]) -> None:
    instance_id, _ = only(template, "AWS::RDS::DBInstance")
    _, switch = only(template, "Custom::AWS")
    provider_id = switch["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
    role_id = template["Resources"][provider_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = [
        statement
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    (statement,) = statements
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "rds:ModifyDBInstance"
    resource = statement["Resource"]
    assert isinstance(resource, dict), resource  # an ARN built from the instance, not "*"
    assert resource["Fn::Join"][1][-2:] == [":db:", {"Ref": instance_id}]


def test_without_deletion_protection_the_template_says_false_and_switches_nothing(
    customized: dict[str, Any],
) -> None:
    _, instance = only(customized, "AWS::RDS::DBInstance")
    assert instance["Properties"]["DeletionProtection"] is False
    assert resources(customized, "Custom::AWS") == {}


# 3. Traffic and new code wait for the migration.


def test_new_code_and_its_traffic_start_only_after_the_migration(
    template: dict[str, Any],
) -> None:
    trigger_id, _ = only(template, "Custom::Trigger")
    mapping_id, _ = only(template, "AWS::Lambda::EventSourceMapping")
    schedule_id, _ = tick_schedule(template)
    runtime = [function_id(template, handler) for handler in sorted(RUNTIME_HANDLERS)]
    assert len(runtime) == 5
    for logical_id in [*runtime, mapping_id, schedule_id]:
        assert trigger_id in waits_for(template, logical_id), logical_id
    # The queue's requests and the schedule's executions wait for it directly.
    graph = dependencies(template)
    assert trigger_id in graph[mapping_id]
    assert trigger_id in graph[schedule_id]


# 4. Timeouts: each waiter outlasts what it waits for.


def seconds(function: Mapping[str, Any]) -> int:
    return int(function["Properties"].get("Timeout", 3))


def test_trigger_outlasts_the_launcher_which_outlasts_the_migration(
    template: dict[str, Any],
) -> None:
    functions = template["Resources"]
    migration = functions[function_id(template, MIGRATE_HANDLER)]
    launcher = functions[function_id(template, LAUNCHER_HANDLER)]
    _, trigger = only(template, "Custom::Trigger")
    # The trigger's client gives up (and invokes the launcher again) after this long.
    trigger_seconds = int(trigger["Properties"]["Timeout"]) / 1000
    provider = functions[trigger["Properties"]["ServiceToken"]["Fn::GetAtt"][0]]
    assert seconds(migration) < seconds(launcher) <= trigger_seconds < seconds(provider)
    variables = launcher["Properties"]["Environment"]["Variables"]
    assert int(variables["MIGRATION_TIMEOUT_SECONDS"]) == seconds(migration)


class SecretsAndLambda:
    """Secrets Manager that holds the master secret, and a Lambda API that takes each
    invocation and drops the connection before it answers (the answer is lost)."""

    def __init__(self) -> None:
        self.invocations = 0
        self.server = LoopbackServer(self.serve)

    def serve(self, request: BaseHTTPRequestHandler) -> None:
        request.rfile.read(int(request.headers.get("Content-Length", 0)))
        if request.path.startswith("/2015-03-31/functions/"):
            self.invocations += 1
            request.close_connection = True  # no answer: the connection just ends
            return
        assert request.headers["X-Amz-Target"] == "secretsmanager.GetSecretValue"
        body = json.dumps(
            {"Name": "master", "SecretString": json.dumps({"username": "u", "password": "p"})}
        ).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/x-amz-json-1.1")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)


@pytest.fixture
def aws() -> Iterator[SecretsAndLambda]:
    peer = SecretsAndLambda()
    peer.server.start()
    yield peer
    peer.server.stop()


def test_the_launcher_waits_out_the_migration_and_never_invokes_it_twice(
    template: dict[str, Any],
    aws: SecretsAndLambda,
    aws_credentials: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    functions = template["Resources"]
    migration = functions[function_id(template, MIGRATE_HANDLER)]
    launcher = functions[function_id(template, LAUNCHER_HANDLER)]
    for name, value in launcher["Properties"]["Environment"]["Variables"].items():
        monkeypatch.setenv(name, value if isinstance(value, str) else f"resolved-{name}")
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.server.url)
    bootstrap.reset()

    launching = bootstrap.migration_launcher()
    client = launching.invoker._client.meta.config
    assert seconds(migration) < client.read_timeout < seconds(launcher)
    with pytest.raises(InvocationError, match="cannot invoke"):
        launching.launch()
    assert aws.invocations == 1  # a lost answer is reported, never retried
