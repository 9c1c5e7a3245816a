"""Least privilege, measured (``make least-privilege``, which ``make mutate`` runs too;
docs/least-privilege.md).

    python -m devstack.mutation.least_privilege [--jobs N] [--template FILE] [--write] [GRANT ...]

Every grant of the synthesized template is taken away on its own, and ``SELECTION``
runs against the template without it: a grant is *caught* when a test fails. A grant is
each statement of each role's policies (its ``AWS::IAM::Policy`` and
``AWS::IAM::ManagedPolicy`` resources, its inline ``Policies``), each managed policy
attached to a role (``ManagedPolicyArns``) and each ``AWS::Lambda::Permission`` (a
statement of a function's resource-based policy: the function URL's). Each action of a
multi-action statement that was caught is then taken away on its own too; a statement
nothing caught is not split, as no test can miss part of a grant it does not miss whole
(every statement here allows: removing one only denies more).

How a template reaches the tests: each run is a pytest session of its own with
``ESCALATOR_TEMPLATE_FILE`` naming the changed template (devstack.emulation.template: every
process that asks for the synthesized template reads that file instead, the local stack
the tests start included; the rehearsal puts its provider settings into it). The
sessions share one embedded PostgreSQL (``DATABASE_URL``; mutate.py's), run ``jobs`` at
a time, stop at their first failure (``-x``) and run the selection in its order, after
the test that caught the same grant last time (the committed table); a first failure is
confirmed by running that test again, alone, so that a test that failed by chance does
not count a grant caught.

A grant nothing catches is explained by ``REASONS`` (an AWS service the emulation does
not model uses it, with the AWS page that says so) or reported ``UNEXPLAINED`` (exit
status 1): then either a test is missing or the grant is not needed, and goes. GRANT
names (or globs: ``'DeliveryRoleDefaultPolicy*'``) measure only those; ``--template``
measures a template of your own (``cdk synth``'s, or one you edited); ``--write`` writes
the results into docs/least-privilege.md (only a run of every grant of the synthesized
template may).

As a pytest plugin (``-p devstack.mutation.least_privilege``, in every session it starts): the
selection runs in the order given; the first failure (its test and message) and the
tests that passed are written to ``ESCALATOR_LEAST_PRIVILEGE_REPORT``; and the sessions
set up their PostgreSQL one at a time (as mutate.py's do).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from devstack import PROJECT
from devstack.emulation.template import GIVEN_TEMPLATE_VARIABLE, resources

# (this module is also the sessions' plugin: one session at a time sets up its PostgreSQL,
# with make mutate's hook)
from devstack.mutation.mutate import pytest_fixture_setup  # noqa: F401

ROOT = PROJECT
DOCUMENT = ROOT / "docs" / "least-privilege.md"

# What runs against each template, in this order; together they take every path that
# uses a permission the emulation checks (devstack.emulation.iam), each test some path the ones
# before it do not.
_INTEGRATION = "tests/integration/"
SELECTION: tuple[str, ...] = (
    # deploy (the event source mapping's role), the schedule's role starting the tick, the
    # tick's role (its activator, its window), the window's role (Confirm, Record, the
    # phone, e-mail and PubNub notifiers)
    _INTEGRATION + "test_delivery.py::test_phone_email_and_pubnub_are_each_delivered_once_when_due",
    # the SMS notifier; the status callbacks through the function URL (its resource
    # policy), the receiver invoking the recorder
    _INTEGRATION + "test_sms.py::"
    "test_a_message_goes_out_and_its_signed_status_callbacks_are_recorded",
    # the tick handing over to a fresh execution of itself
    _INTEGRATION + "test_window_failures.py::"
    "test_a_hand_over_that_finds_its_execution_started_keeps_the_summary",
    # the rehearsal: each function in a process of its own with its role's credentials,
    # rds-db:connect for every database function, the secrets, the launcher invoking the
    # migration, the event source polling as the initiator, the initiator starting the
    # window of what arrives near its due time, the console notifier
    _INTEGRATION + "test_rehearsal.py::test_the_migration_runs_as_the_trigger_invokes_it",
    _INTEGRATION + "test_rehearsal.py::"
    "test_start_delivery_and_stop_run_through_the_rehearsed_functions",
    _INTEGRATION + "test_rehearsal.py::"
    "test_a_status_callback_runs_through_the_rehearsed_receiver_and_recorder",
    _INTEGRATION + "test_rehearsal.py::"
    "test_each_function_reads_the_secrets_its_environment_names_as_its_role",
    # the purge's schedule invoking it as the schedule's role, the purge signing in as
    # its own database role
    _INTEGRATION + "test_rehearsal.py::"
    "test_the_purge_runs_as_its_schedule_invokes_it_and_signs_in_as_its_own_role",
    # the local stack: its schedule starting ticks as the schedule's role, its event
    # source polling as the initiator's
    _INTEGRATION + "test_local_stack.py::test_every_contract_rule_holds_end_to_end",
)

# Longer than any session may take (the local stack's test alone has two minutes).
SESSION_SECONDS = 900
REPORT_VARIABLE = "ESCALATOR_LEAST_PRIVILEGE_REPORT"

STATEMENT = "statement"
ACTION = "action"
MANAGED = "managed policy"
RESOURCE_POLICY = "resource policy"


# ---- the grants of a template -----------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """One thing a template allows that can be taken away on its own.

    ``key`` names it (``<policy>/<index>``, ``<policy>/<index>/<action>``,
    ``<role>/<policy name>/<index>`` for an inline policy, ``<role>/<managed policy>``,
    ``<permission>``); ``where`` says how to find it again in a template."""

    key: str
    kind: str
    role: str  # the role's logical id (of a resource policy: the function's)
    policy: str
    statement: str  # its Sid, else its index
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    trusted: tuple[str, ...]  # the services the role trusts (lambda.amazonaws.com...)
    where: tuple[Any, ...] = field(compare=False, repr=False)

    @property
    def multi_action(self) -> bool:
        return self.kind == STATEMENT and len(self.actions) > 1


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def render(value: Any) -> str:
    """A template value as text: references as ``${Name}`` and ``${Name.Attribute}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((name, argument),) = value.items()
        if name == "Ref":
            return f"${{{argument}}}"
        if name == "Fn::GetAtt":
            return "${" + ".".join(str(part) for part in _as_list(argument)) + "}"
        if name == "Fn::Join":
            separator, parts = argument
            return str(separator).join(render(part) for part in parts)
        if name == "Fn::Sub" and isinstance(argument, str):
            return argument
    return json.dumps(value, sort_keys=True)


def _trusted(role: Mapping[str, Any]) -> tuple[str, ...]:
    trust = role.get("Properties", {}).get("AssumeRolePolicyDocument", {})
    services: list[str] = []
    for statement in trust.get("Statement", []):
        principal = statement.get("Principal", {})
        if isinstance(principal, dict):
            services += [render(service) for service in _as_list(principal.get("Service", []))]
    return tuple(sorted(services))


def _statement_grant(
    key: str,
    policy: str,
    index: int,
    statement: Mapping[str, Any],
    roles: Sequence[str],
    trusted: tuple[str, ...],
    where: tuple[Any, ...],
) -> Grant:
    return Grant(
        key=key,
        kind=STATEMENT,
        role=", ".join(roles),
        policy=policy,
        statement=str(statement.get("Sid") or index),
        actions=tuple(str(action) for action in _as_list(statement.get("Action", []))),
        resources=tuple(render(resource) for resource in _as_list(statement.get("Resource", []))),
        trusted=trusted,
        where=where,
    )


def _managed_policy_document(arn: str) -> Mapping[str, Any]:
    """An AWS managed policy's document (moto's copy), to show what it allows."""
    from devstack.emulation.iam import _aws_managed_policies

    document: Mapping[str, Any] = (
        _aws_managed_policies().get(arn.rpartition("/")[2], {}).get("Document", {})
    )
    return document


def grants(template: Mapping[str, Any]) -> list[Grant]:
    """Every statement-level grant of the template (see ``Grant``), in template order."""
    roles = resources(template, "AWS::IAM::Role")
    trust = {logical_id: _trusted(role) for logical_id, role in roles.items()}
    found: list[Grant] = []
    for logical_id, role in roles.items():
        properties = role.get("Properties", {})
        for inline in properties.get("Policies", []):
            name = str(inline["PolicyName"])
            for index, statement in enumerate(inline["PolicyDocument"]["Statement"]):
                found.append(
                    _statement_grant(
                        f"{logical_id}/{name}/{index}",
                        f"{name} (inline)",
                        index,
                        statement,
                        [logical_id],
                        trust[logical_id],
                        ("inline", logical_id, name, index),
                    )
                )
        for arn in properties.get("ManagedPolicyArns", []):
            name = render(arn).rpartition("/")[2]
            statements = _as_list(_managed_policy_document(render(arn)).get("Statement", []))
            found.append(
                Grant(
                    key=f"{logical_id}/{name}",
                    kind=MANAGED,
                    role=logical_id,
                    policy=render(arn).replace("${AWS::Partition}", "aws"),
                    statement="(all)",
                    actions=tuple(
                        str(action)
                        for statement in statements
                        for action in _as_list(statement.get("Action", []))
                    ),
                    resources=tuple(
                        dict.fromkeys(
                            render(resource)
                            for statement in statements
                            for resource in _as_list(statement.get("Resource", []))
                        )
                    ),
                    trusted=trust[logical_id],
                    where=("managed", logical_id, json.dumps(arn, sort_keys=True)),
                )
            )
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for logical_id, policy in resources(template, kind).items():
            properties = policy["Properties"]
            attached = [render(role).strip("${}") for role in properties.get("Roles", [])]
            trusted = tuple(
                sorted({service for role in attached for service in trust.get(role, ())})
            )
            for index, statement in enumerate(properties["PolicyDocument"]["Statement"]):
                found.append(
                    _statement_grant(
                        f"{logical_id}/{index}",
                        logical_id,
                        index,
                        statement,
                        attached,
                        trusted,
                        ("policy", logical_id, index),
                    )
                )
    for logical_id, permission in resources(template, "AWS::Lambda::Permission").items():
        properties = permission["Properties"]
        conditions = [
            f"{name} {render(properties[name])}"
            for name in ("FunctionUrlAuthType", "InvokedViaFunctionUrl", "SourceArn")
            if name in properties
        ]
        found.append(
            Grant(
                key=logical_id,
                kind=RESOURCE_POLICY,
                role=render(properties["FunctionName"]).strip("${}").removesuffix(".Arn"),
                policy=logical_id,
                statement=f"Principal {render(properties.get('Principal'))}"
                + "".join(f", {condition}" for condition in conditions),
                actions=(str(properties["Action"]),),
                resources=(render(properties["FunctionName"]),),
                trusted=(),
                where=("permission", logical_id),
            )
        )
    return found


def action_grants(grant: Grant) -> list[Grant]:
    """Each action of a multi-action statement, as a grant of its own."""
    if not grant.multi_action:
        return []
    return [
        Grant(
            key=f"{grant.key}/{action}",
            kind=ACTION,
            role=grant.role,
            policy=grant.policy,
            statement=grant.statement,
            actions=(action,),
            resources=grant.resources,
            trusted=grant.trusted,
            where=(*grant.where, action),
        )
        for action in grant.actions
    ]


def without(template: Mapping[str, Any], grant: Grant) -> dict[str, Any]:
    """A copy of the template without the grant. A policy (or inline policy) left with no
    statement goes, as CDK writes none; so does every ``DependsOn`` on a resource that
    went."""
    changed: dict[str, Any] = copy.deepcopy(dict(template))
    found = changed["Resources"]
    kind, *where = grant.where
    gone: str | None = None
    if kind == "policy":
        logical_id, index, *action = where
        statements = found[logical_id]["Properties"]["PolicyDocument"]["Statement"]
        if action:
            _take_action(statements[index], action[0])
        else:
            del statements[index]
            if not statements:
                gone = logical_id
    elif kind == "inline":
        role_id, name, index, *action = where
        policies = found[role_id]["Properties"]["Policies"]
        (inline,) = [policy for policy in policies if policy["PolicyName"] == name]
        statements = inline["PolicyDocument"]["Statement"]
        if action:
            _take_action(statements[index], action[0])
        else:
            del statements[index]
            if not statements:
                policies.remove(inline)
            if not policies:
                del found[role_id]["Properties"]["Policies"]
    elif kind == "managed":
        role_id, arn = where
        properties = found[role_id]["Properties"]
        arns = properties["ManagedPolicyArns"]
        arns.remove(json.loads(arn))
        if not arns:
            del properties["ManagedPolicyArns"]
    elif kind == "permission":
        (gone,) = where
    else:  # pragma: no cover - every kind grants() makes is above
        raise ValueError(f"no such grant kind: {kind}")
    if gone is not None:
        del found[gone]
        for resource in found.values():
            depends = resource.get("DependsOn")
            if depends == gone or (isinstance(depends, list) and gone in depends):
                kept = [name for name in _as_list(depends) if name != gone]
                if kept:
                    resource["DependsOn"] = kept
                else:
                    del resource["DependsOn"]
    return changed


def _take_action(statement: dict[str, Any], action: str) -> None:
    actions = [item for item in _as_list(statement["Action"]) if item != action]
    if len(actions) == len(_as_list(statement["Action"])) or not actions:
        raise ValueError(f"{action} is not one of several actions of {statement}")
    statement["Action"] = actions


# ---- why a grant no test needs is still needed on AWS ---------------------------------------


@dataclass(frozen=True)
class Reason:
    """Why a grant no test catches must stay: the AWS service that uses it, which the
    emulation does not model, and the AWS page that says so."""

    label: str
    why: str
    sources: tuple[str, ...]
    applies: Callable[[Grant], bool] = field(repr=False)


def _actions_within(grant: Grant, allowed: set[str]) -> bool:
    return bool(grant.actions) and set(grant.actions) <= allowed


def _managed(grant: Grant, name: str) -> bool:
    return grant.kind == MANAGED and grant.policy.endswith(f"/{name}")


def _trusts(grant: Grant, service: str) -> bool:
    return service in grant.trusted


_LAMBDA = "lambda.amazonaws.com"
_STATES = "states.amazonaws.com"
_STATES_XRAY = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
}
_STATES_LOG_DELIVERY = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}

REASONS: tuple[Reason, ...] = (
    Reason(
        "Lambda writes the function's logs",
        "Lambda sends each function's logs to CloudWatch Logs with the function's execution"
        " role (AWSLambdaBasicExecutionRole: logs:CreateLogGroup, logs:CreateLogStream,"
        " logs:PutLogEvents); the emulation writes no CloudWatch Logs.",
        (
            "https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html",
            "https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html",
        ),
        lambda grant: _managed(grant, "AWSLambdaBasicExecutionRole"),
    ),
    Reason(
        "Lambda attaches the function to the VPC",
        "Lambda creates, describes and deletes the network interfaces of a function in a VPC"
        " with the function's execution role (AWSLambdaVPCAccessExecutionRole:"
        " ec2:CreateNetworkInterface, DescribeNetworkInterfaces, DeleteNetworkInterface,"
        " AssignPrivateIpAddresses, UnassignPrivateIpAddresses); the emulation has no VPC.",
        ("https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html",),
        lambda grant: _managed(grant, "AWSLambdaVPCAccessExecutionRole"),
    ),
    Reason(
        "Lambda sends the function's X-Ray traces",
        "With active tracing (every function's Tracing: Active) Lambda uploads trace data"
        " with the function's execution role (xray:PutTraceSegments,"
        " xray:PutTelemetryRecords, as in AWSXRayDaemonWriteAccess); the emulation does not"
        " trace.",
        (
            "https://docs.aws.amazon.com/lambda/latest/dg/services-xray.html",
            "https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSXRayDaemonWriteAccess.html",
        ),
        lambda grant: (
            _trusts(grant, _LAMBDA)
            and _actions_within(grant, {"xray:PutTraceSegments", "xray:PutTelemetryRecords"})
        ),
    ),
    Reason(
        "Step Functions delivers the state machine's logs",
        "A state machine with a LoggingConfiguration needs these CloudWatch Logs log-delivery"
        " actions in its role (CloudFormation checks them when it creates the state"
        " machine); the emulation writes no CloudWatch Logs.",
        ("https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html",),
        lambda grant: _trusts(grant, _STATES) and _actions_within(grant, _STATES_LOG_DELIVERY),
    ),
    Reason(
        "Step Functions sends the state machine's X-Ray traces",
        "A state machine with X-Ray tracing enabled needs xray:PutTraceSegments,"
        " PutTelemetryRecords, GetSamplingRules and GetSamplingTargets in its role; the"
        " emulation does not trace.",
        ("https://docs.aws.amazon.com/step-functions/latest/dg/xray-iam.html",),
        lambda grant: _trusts(grant, _STATES) and _actions_within(grant, _STATES_XRAY),
    ),
    Reason(
        "VPC Flow Logs publishes the VPC's flow logs",
        "The flow log's role lets the VPC Flow Logs service publish to its log group"
        " (logs:CreateLogStream, logs:PutLogEvents, logs:DescribeLogStreams); the emulation"
        " has no VPC.",
        ("https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-iam-role.html",),
        lambda grant: _trusts(grant, "vpc-flow-logs.amazonaws.com"),
    ),
    Reason(
        "CDK's log-retention function, at deploy time",
        "The Custom::LogRetention resource (CDK's LogRetention function) sets the retention"
        " of the log group RDS creates for the database's logs, calling PutRetentionPolicy"
        " (and DeleteRetentionPolicy) during the deploy; the emulation deploys no custom"
        " resources.",
        (
            "https://docs.aws.amazon.com/cdk/api/v2/docs/aws-cdk-lib.aws_logs.LogRetention.html",
            "https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html",
        ),
        lambda grant: _actions_within(
            grant, {"logs:PutRetentionPolicy", "logs:DeleteRetentionPolicy"}
        ),
    ),
    Reason(
        "The deploy switches deletion protection on",
        "The DatabaseProtection custom resource (CDK's AwsCustomResource) calls RDS"
        " ModifyDBInstance on the instance as the deploy's last step; the emulation deploys"
        " no custom resources.",
        (
            "https://docs.aws.amazon.com/cdk/api/v2/docs/aws-cdk-lib.custom_resources.AwsCustomResource.html",
            "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_ModifyDBInstance.html",
        ),
        lambda grant: _actions_within(grant, {"rds:ModifyDBInstance"}),
    ),
    Reason(
        "CDK's trigger runs the migration launcher at deploy time",
        "The Custom::Trigger resource's provider function invokes the launcher (a version of"
        " it: <launcher>:*) when the stack deploys; the emulation deploys no custom"
        " resources (the rehearsal invokes the launcher itself).",
        ("https://docs.aws.amazon.com/cdk/api/v2/docs/aws-cdk-lib.triggers-readme.html",),
        lambda grant: (
            grant.policy.endswith("(inline)")
            and "CustomResourceProvider" in grant.role
            and _actions_within(grant, {"lambda:InvokeFunction"})
        ),
    ),
)
UNEXPLAINED = "UNEXPLAINED"


def reason_for(grant: Grant) -> Reason | None:
    """The first reason that explains why the grant is needed though no test catches it."""
    return next((reason for reason in REASONS if reason.applies(grant)), None)


# ---- running the selection against a template ----------------------------------------------


@dataclass(frozen=True)
class Session:
    """What one pytest session against a template found."""

    failed: str | None  # the first failing test (its node id), if any
    message: str  # its failure, one line
    passed: tuple[str, ...]
    seconds: float
    exit_status: int


@dataclass(frozen=True)
class Result:
    """A grant's verdict: caught by a test, or not; ``note`` says anything unusual."""

    grant: Grant
    caught_by: str | None
    message: str
    seconds: float
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.caught_by is not None:
            return f"caught: `{self.caught_by}`"
        reason = reason_for(self.grant)
        return f"not caught: {reason.label if reason else UNEXPLAINED}"


@dataclass
class Runner:
    """Runs pytest sessions against templates: ``environment`` is the sessions' (the
    shared PostgreSQL, the lock), each under a directory of its own in ``scratch``."""

    scratch: Path
    environment: Mapping[str, str]
    _count: Iterator[int] = field(default_factory=lambda: iter(range(1, 1_000_000)))

    def session(self, template: Mapping[str, Any], tests: Sequence[str]) -> Session:
        directory = Path(tempfile.mkdtemp(prefix=f"run-{next(self._count)}-", dir=self.scratch))
        path, report = directory / "template.json", directory / "report.json"
        path.write_text(json.dumps(template), encoding="utf-8")
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
        command += ["-p", "devstack.mutation.least_privilege", f"--basetemp={directory / 'tmp'}"]
        command += list(tests)
        environment = {
            **self.environment,
            GIVEN_TEMPLATE_VARIABLE: str(path),
            REPORT_VARIABLE: str(report),
        }
        started = time.monotonic()
        with (directory / "output.txt").open("wb") as output:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                command,
                cwd=ROOT,
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # (its local stacks and servers end with it)
            )
            try:
                status = process.wait(timeout=SESSION_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                status = process.wait()
        seconds = time.monotonic() - started
        found: dict[str, Any] = (
            json.loads(report.read_text(encoding="utf-8")) if report.exists() else {}
        )
        failed = found.get("failed")
        message = str(found.get("message", ""))
        if failed is None and status != 0:  # no test failed, yet the session did
            tail = (directory / "output.txt").read_text(encoding="utf-8", errors="replace")
            failed, message = "(the session)", f"exit status {status}: " + tail[-300:].strip()
        return Session(failed, message, tuple(found.get("passed", ())), seconds, status)

    def measure(self, template: Mapping[str, Any], grant: Grant, first: Sequence[str]) -> Result:
        """Take the grant away and run the selection (``first`` first); a failure counts
        once the failing test fails again on its own."""
        changed = without(template, grant)
        order = [*dict.fromkeys([*first, *SELECTION])]
        seconds = 0.0
        session = self.session(changed, order)
        seconds += session.seconds
        if session.failed is None:
            return Result(grant, None, "", seconds)
        if session.failed == "(the session)":
            return Result(grant, None, session.message, seconds, note="the session failed")
        again = self.session(changed, [session.failed])
        seconds += again.seconds
        if again.failed is not None:
            return Result(grant, session.failed, session.message, seconds)
        # It passed alone: it failed by chance. The whole selection once more decides.
        last = self.session(changed, order)
        seconds += last.seconds
        note = f"{session.failed} failed once, then passed alone"
        if last.failed is None:
            return Result(grant, None, "", seconds, note=note)
        return Result(grant, last.failed, last.message, seconds, note=note + " (not confirmed)")


# ---- the report ---------------------------------------------------------------------------

BEGIN = (
    "<!-- measured: written by `make least-privilege` (devstack/mutation/least_privilege.py) -->"
)
END = "<!-- end of measured -->"
COLUMNS = ("grant", "role", "policy", "statement", "actions", "resources", "result")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(items: Sequence[str]) -> str:
    return "<br>".join(f"`{item}`" for item in items)


def row(grant: Grant, result: str) -> str:
    """The grant's row of the table."""
    cells = [
        f"`{grant.key}`",
        grant.role,
        grant.policy,
        grant.statement,
        _code(grant.actions),
        _code(grant.resources),
        result,
    ]
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def table_rows(text: str) -> dict[str, dict[str, str]]:
    """The rows of a written table, by grant key: each column's text."""
    rows: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == len(COLUMNS):
            rows[cells[0].strip("`")] = dict(zip(COLUMNS, cells, strict=True))
    return rows


def expected_cells(grant: Grant) -> dict[str, str]:
    """What the table's row of the grant says, but its result."""
    written = table_rows(row(grant, "-"))[grant.key]
    return {column: text for column, text in written.items() if column != "result"}


def previous_catchers(text: str) -> dict[str, str]:
    """The test that caught each grant in a written table."""
    found = {}
    for key, cells in table_rows(text).items():
        caught = re.fullmatch(r"caught: `([^`]+)`", cells["result"])
        if caught:
            found[key] = caught.group(1)
    return found


def report(results: Sequence[Result], skipped: Sequence[Grant], elapsed: float) -> str:
    """The measured section of docs/least-privilege.md: the figures, the table of every
    grant, and the reasons with their sources."""
    statements = [r for r in results if r.grant.kind != ACTION]
    actions = [r for r in results if r.grant.kind == ACTION]

    def count(kind: str, caught: bool | None = None) -> int:
        return sum(
            1
            for r in results
            if r.grant.kind == kind and (caught is None or (r.caught_by is not None) == caught)
        )

    lines = [BEGIN, "", "| grants | measured | caught | not caught |", "|---|---:|---:|---:|"]
    for kind, name in (
        (STATEMENT, "policy statements"),
        (MANAGED, "managed policies attached"),
        (RESOURCE_POLICY, "resource-policy statements"),
        (ACTION, "actions of caught multi-action statements"),
    ):
        lines.append(f"| {name} | {count(kind)} | {count(kind, True)} | {count(kind, False)} |")
    caught_by: dict[str, int] = {}
    for result in statements:
        if result.caught_by is not None:
            caught_by[result.caught_by] = caught_by.get(result.caught_by, 0) + 1
    by_reason: dict[str, int] = {}
    for result in statements:
        if result.caught_by is None:
            label = result.verdict.removeprefix("not caught: ")
            by_reason[label] = by_reason.get(label, 0) + 1
    lines += ["", f"Wall time: {elapsed / 60:.0f} min ({len(results)} grants)."]
    lines += ["", "First failing test, for the grants caught (actions not counted):", ""]
    lines += [f"- `{test}`: {n}" for test, n in sorted(caught_by.items(), key=lambda i: -i[1])]
    lines += ["", "Not caught, by reason (actions not counted):", ""]
    lines += [f"- {label}: {n}" for label, n in sorted(by_reason.items(), key=lambda i: -i[1])]
    if skipped:
        lines += ["", "Actions not measured on their own (their whole statement was not caught):"]
        lines.append(f"{len(skipped)}.")
    notes = [result for result in results if result.note]
    if notes:
        lines += ["", "Notes of this run:", ""]
        lines += [f"- `{result.grant.key}`: {result.note}" for result in notes]
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += [row(result.grant, result.verdict) for result in [*statements, *actions]]
    lines += ["", "Reasons (an AWS service the emulation does not model uses the grant):", ""]
    for reason in REASONS:
        sources = ", ".join(f"<{source}>" for source in reason.sources)
        lines.append(f"- **{reason.label}**: {reason.why} {sources}")
    lines += ["", END]
    return "\n".join(lines)


def write_report(section: str, document: Path = DOCUMENT) -> None:
    """Replace the measured section of the document."""
    text = document.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    document.write_text(text[:start] + section + text[end:], encoding="utf-8")


# ---- the command ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.mutation.least_privilege", description=__doc__
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="sessions at once")
    parser.add_argument("--template", type=Path, help="measure this template (a file)")
    parser.add_argument("--write", action="store_true", help="write docs/least-privilege.md")
    parser.add_argument("grants", nargs="*", help="measure only these (keys or globs)")
    options = parser.parse_args(argv)
    if options.write and (options.grants or options.template):
        parser.error("--write needs a run of every grant of the synthesized template")

    from devstack.emulation.template import load_template, synthesized_template
    from devstack.mutation.mutate import POSTGRES_LOCK, unsafe_and_fast
    from devstack.peers.postgres import embedded_postgres

    template = load_template(options.template) if options.template else synthesized_template()
    chosen = [
        grant
        for grant in grants(template)
        if not options.grants or any(fnmatchcase(grant.key, p) for p in options.grants)
    ]
    extra = [
        grant
        for statement in grants(template)
        for grant in action_grants(statement)
        if options.grants and any(fnmatchcase(grant.key, p) for p in options.grants)
    ]
    before = previous_catchers(DOCUMENT.read_text(encoding="utf-8")) if DOCUMENT.exists() else {}
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="escalator-least-privilege-") as scratch,
        embedded_postgres(Path(scratch) / "pgdata") as url,
    ):
        unsafe_and_fast(url)
        runner = Runner(
            Path(scratch),
            {
                **os.environ,
                "DATABASE_URL": url,
                POSTGRES_LOCK: str(Path(scratch) / "postgres.lock"),
                "TZ": "UTC",
            },
        )
        say(f"{len(chosen) + len(extra)} grants; the selection against the template as it is")
        baseline = runner.session(template, SELECTION)
        if baseline.failed is not None:
            say(f"the template as it is fails {baseline.failed}: {baseline.message}")
            return 2
        say(f"passed in {baseline.seconds:.0f} s: a grant no test catches costs that long")

        def measure(grant: Grant, first: Sequence[str]) -> Result:
            result = runner.measure(template, grant, first)
            failure = f": {result.message[:200]}" if result.caught_by else ""
            say(f"{grant.key}: {result.verdict} ({result.seconds:.0f} s){_note(result)}{failure}")
            return result

        with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
            results = list(
                pool.map(lambda g: measure(g, [before[g.key]] if g.key in before else []), chosen)
            )
            caught = {r.grant.key: r.caught_by for r in results if r.caught_by is not None}
            split = [
                grant
                for result in results
                if result.caught_by is not None
                for grant in action_grants(result.grant)
            ]
            skipped = [
                grant
                for result in results
                if result.caught_by is None
                for grant in action_grants(result.grant)
            ]
            pending = [grant for grant in [*split, *extra] if grant.key not in caught]
            results += list(
                pool.map(
                    lambda g: measure(
                        g,
                        [t for t in (before.get(g.key), caught.get(g.key.rpartition("/")[0])) if t],
                    ),
                    list({grant.key: grant for grant in pending}.values()),
                )
            )
    elapsed = time.monotonic() - started
    section = report(results, skipped, elapsed)
    print(section)
    if options.write:
        write_report(section)
        say(f"wrote {DOCUMENT}")
    unexplained = [r.grant.key for r in results if r.verdict.endswith(UNEXPLAINED)]
    if unexplained:
        say(f"not caught and not explained: {', '.join(unexplained)}")
        return 1
    return 0


def _note(result: Result) -> str:
    return f" [{result.note}]" if result.note else ""


def say(message: str) -> None:
    print(f"least-privilege: {message}", file=sys.stderr, flush=True)


# ---- the pytest plugin of every session (``-p devstack.mutation.least_privilege``) ------

# What this session found: its first failure, and the tests that passed.
_FOUND: dict[str, Any] = {"failed": None, "message": "", "passed": []}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests in the order the command line names them (the root conftest starts
    long tests first)."""
    named = [str(argument) for argument in config.args]

    def position(item: pytest.Item) -> int:
        for index, argument in enumerate(named):
            if item.nodeid == argument or item.nodeid.startswith((f"{argument}[", f"{argument}::")):
                return index
        return len(named)

    items.sort(key=position)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed and _FOUND["failed"] is None:
        crash = getattr(report.longrepr, "reprcrash", None)
        message = getattr(crash, "message", None) or str(report.longrepr)
        _FOUND["failed"] = report.nodeid
        _FOUND["message"] = " ".join(str(message).split())[:400]
    elif report.when == "call" and report.passed:
        _FOUND["passed"].append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get(REPORT_VARIABLE)
    if path:
        Path(path).write_text(json.dumps(_FOUND), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
